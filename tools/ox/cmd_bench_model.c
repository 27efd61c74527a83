/* 'ox bench-model MODEL': prompt-processing and generation speed of a GGUF
 * model, measured like llama-bench: pp = one batch of P tokens into an
 * empty context, tg = G tokens generated one at a time into an empty
 * context; each repeated R times, mean and standard deviation reported.
 * Each result also as a share of the device's limit (ox_device_measure_limits):
 * generation is memory-bound (bytes read per token x tokens/s over the
 * bandwidth), a prompt compute-bound (FLOP per token x tokens/s over the
 * F32 FMA peak), the costs coming from ox_model_get_cost. Where every
 * device has an energy sensor (openxpu/energy.h), also the joules per
 * token; else the message naming the missing sensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
    OPTION_DEVICE,
    OPTION_SPLIT,
    OPTION_PROMPT,
    OPTION_GEN,
    OPTION_REPS,
    OPTION_JSON,
    OPTION_REPRODUCIBLE
};

static const cli_option bench_model_options[] = {
    [OPTION_DEVICE] = {"device", "SEL", "device(s): one, a list (cpu,opencl:0) or all (default: "
                       "the default device)", 0},
    [OPTION_SPLIT] = {"split", "HOW", "several devices: layer (default) or tensor", 0},
    [OPTION_PROMPT] = {"prompt", "P", "prompt tokens of the pp test (default 512; 0: skip)", 'p'},
    [OPTION_GEN] = {"gen", "G", "generated tokens of the tg test (default 128; 0: skip)", 'n'},
    [OPTION_REPS] = {"repetitions", "R", "repetitions of each test (default 3)", 'r'},
    [OPTION_JSON] = {"json", NULL, "print the results as JSON", 0},
    [OPTION_REPRODUCIBLE] = {"reproducible", NULL,
                             "reproducible mode: the same bits on every device (its cost)", 0},
    {NULL, NULL, NULL, 0},
};

typedef struct result {
    const char *test;
    int tokens;
    double mean, stddev;     /* tokens per second */
    double joules_per_token; /* < 0: not measured (energy.missing says why) */
    /* the roofline: per token, the bytes read (tg) or FLOP (pp); the
     * limit that bounds it and the share of it reached */
    double per_token;
    const char *limit;   /* "bandwidth" or "f32_fma" */
    double attainable;   /* GB/s or GFLOP/s */
    double percent;
    /* host costs per token: op calls, kernel launches, host waits */
    double ops, launches, syncs;
} result;

/* The devices' limits added up: with several devices, the sum of their
 * bandwidths and FMA rates, the best they could do if each worked on its
 * share of every token at the same time. A tensor split can approach it;
 * the stages of a layer split take turns on a sequence, so with layers
 * shared by speed they reach at most 1/n of it (the mean of the devices).
 * Returns CLI_EXIT_OK, or the failure after printing it; the limits of
 * each device go to `json` (an array) when it is not NULL. */
static int sum_limits(const cli_command *command, ox_device **devices, int n, cJSON *json,
                      double *bandwidth, double *fma)
{
    *bandwidth = *fma = 0;
    for (int i = 0; i < n; i++) {
        ox_device_limits l = {.struct_size = sizeof l};
        ox_status s = ox_device_measure_limits(devices[i], 0, &l);
        if (s != OX_OK) return cli_library_error(command, ox_device_context(devices[i]), s);
        *bandwidth += l.bandwidth_gbps;
        *fma += l.f32_gflops;
        ox_device_info info = {.struct_size = sizeof info};
        if (!json || ox_device_get_info(devices[i], &info) != OX_OK) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "device", info.id);
        cJSON_AddNumberToObject(o, "bandwidth_gbps", l.bandwidth_gbps);
        cJSON_AddNumberToObject(o, "f32_gflops", l.f32_gflops);
        cJSON_AddBoolToObject(o, "cached", l.cached);
        cJSON_AddItemToArray(json, o);
    }
    return CLI_EXIT_OK;
}

/* r's share of the limit. tg: every weight byte a step reads (layers and
 * output) and the F16 KV cache at the average context, (G + 1) / 2 tokens
 * (step i attends to i + 1), over the bandwidth. pp: 2 FLOP per weight of
 * the layers, the output once per batch (only the last token's logits are
 * computed), attention at the average causal context (P + 1) / 2, over
 * the F32 FMA peak (the kernels compute in F32 whatever the weights). */
static void roofline(result *r, const ox_model_cost *c, double bandwidth, double fma)
{
    double context = (r->tokens + 1) / 2.0;
    if (strcmp(r->test, "tg") == 0) {
        r->per_token = (double)(c->layer_weight_bytes + c->output_weight_bytes) +
                       (double)c->kv_elements_per_token * 2.0 * context;
        r->limit = "bandwidth";
        r->attainable = bandwidth;
    } else {
        r->per_token = 2.0 * (double)c->layer_weight_params +
                       2.0 * (double)c->output_weight_params / r->tokens +
                       c->attention_flop_per_key * context;
        r->limit = "f32_fma";
        r->attainable = fma;
    }
    r->percent = 100.0 * r->per_token * r->mean / 1e9 / r->attainable; /* limits are > 0 */
}


/* The energy meters of the devices benchmarked, one per sensor: two
 * devices on one CPU package (cpu and an OpenCL CPU device) read the same
 * RAPL zones, counted once. */
typedef struct energy {
    ox_energy_meter *meters[CLI_MAX_DEVICES];
    int count;
    char source[512];   /* the sensors, joined by " + " */
    char missing[1024]; /* why there is no measurement; "" if there is one */
} energy;

static void append(char *text, size_t cap, const char *separator, const char *more)
{
    size_t used = strlen(text);
    snprintf(text + used, cap - used, "%s%s", used ? separator : "", more);
}

static void energy_close(energy *e)
{
    for (int i = 0; i < e->count; i++) ox_energy_meter_free(e->meters[i]);
    e->count = 0;
}

/* Open a meter for each device; if any device has none, measure nothing
 * and keep every reason. */
static void energy_open(energy *e, ox_context *ctx, ox_device *const *devices, int n)
{
    for (int i = 0; i < n; i++) {
        ox_energy_meter *meter;
        if (ox_energy_meter_open(devices[i], &meter) != OX_OK) {
            append(e->missing, sizeof e->missing, "; ", ox_errmsg(ctx));
            continue;
        }
        bool same = false;
        for (int j = 0; j < e->count; j++)
            same |= strcmp(ox_energy_meter_source(e->meters[j]), ox_energy_meter_source(meter)) == 0;
        if (same) {
            ox_energy_meter_free(meter);
            continue;
        }
        append(e->source, sizeof e->source, " + ", ox_energy_meter_source(meter));
        e->meters[e->count++] = meter;
    }
    if (e->missing[0]) energy_close(e);
}

/* The joules of every meter since it opened; on failure the measurement
 * stops and e->missing says why. */
static bool energy_read(energy *e, ox_context *ctx, double *joules)
{
    *joules = 0.0;
    if (e->missing[0] || e->count == 0) return false;
    for (int i = 0; i < e->count; i++) {
        double j;
        if (ox_energy_meter_read(e->meters[i], &j) != OX_OK) {
            snprintf(e->missing, sizeof e->missing, "%s", ox_errmsg(ctx));
            energy_close(e);
            return false;
        }
        *joules += j;
    }
    return true;
}

/* Tokens per second of `reps` runs; each run starts from an empty session.
 * prompt > 0: one batch of `prompt` tokens; else `gen` single tokens. The
 * logits of the last token of each evaluation are computed (into logits),
 * as llama-bench does. The energy is read around the timed part of each
 * run (evaluations return once the devices are done). */
static ox_status measure(ox_pipeline *s, ox_context *ctx, energy *e, const int32_t *ids,
                         int prompt, int gen, int reps, float *logits, result *r)
{
    double sum = 0, sum_sq = 0, joules = 0, before = 0, after = 0;
    bool metered = true;
    /* an untimed warm-up: kernels are built (and caches filled) on first
     * use. A prompt test warms up with the whole prompt, as llama-bench
     * does: the session's scratch is then already the size the timed runs
     * use (with 8 tokens, the timed run faulted in its fresh pages: 1-2% of
     * an F16 prompt's samples) */
    ox_status st = ox_pipeline_rewind(s, 0);
    for (int i = 0; st == OX_OK && i < (prompt > 0 ? 1 : 2); i++)
        st = ox_pipeline_eval(s, &ids[i], prompt > 0 ? prompt : 1, logits);
    if (st != OX_OK) return st;
    ox_counters c0 = {.struct_size = sizeof c0}, c1 = {.struct_size = sizeof c1};
    if ((st = ox_context_counters(ctx, &c0)) != OX_OK) return st;
    for (int rep = 0; rep < reps; rep++) {
        st = ox_pipeline_rewind(s, 0);
        if (st != OX_OK) return st;
        metered = metered && energy_read(e, ctx, &before);
        double t0 = cli_seconds();
        if (prompt > 0) {
            st = ox_pipeline_eval(s, ids, prompt, logits);
        } else { /* logits every step, as generation needs them */
            for (int i = 0; i < gen && st == OX_OK; i++)
                st = ox_pipeline_eval(s, &ids[i], 1, logits);
        }
        if (st != OX_OK) return st;
        double tps = (prompt > 0 ? prompt : gen) / (cli_seconds() - t0);
        metered = metered && energy_read(e, ctx, &after);
        joules += after - before;
        sum += tps;
        sum_sq += tps * tps;
    }
    if ((st = ox_context_counters(ctx, &c1)) != OX_OK) return st;
    double tokens = (double)(prompt > 0 ? prompt : gen) * reps;
    r->ops = (double)(c1.ops - c0.ops) / tokens;
    r->launches = (double)(c1.launches - c0.launches) / tokens;
    r->syncs = (double)(c1.syncs - c0.syncs) / tokens;
    r->joules_per_token = metered ? joules / ((double)(prompt > 0 ? prompt : gen) * reps) : -1.0;
    r->mean = sum / reps;
    r->stddev = reps > 1 ? sqrt(fmax(0.0, (sum_sq - sum * sum / reps) / (reps - 1))) : 0.0;
    return OX_OK;
}

static int parse_count(const cli_command *c, const char *name, const char *value, int lo, int *out)
{
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < lo || v > 1000000)
        return cli_usage_error(c, "--%s: '%s' is not a count >= %d", name, value, lo);
    *out = (int)v;
    return CLI_EXIT_OK;
}

static int run_bench_model(const cli_command *command, int argc, char **argv)
{
    const char *model_path = NULL, *device_sel = NULL, *value;
    int prompt = 512, gen = 128, reps = 3, json = 0, repro = 0, index, status = CLI_EXIT_OK;
    bool tensor = false;
    cli_parser p;
    cli_parser_init(&p, command, argc, argv);
    while ((index = cli_parse_next(&p, &value)) != CLI_PARSE_END && status == CLI_EXIT_OK) {
        switch (index) {
        case CLI_PARSE_OPERAND:
            if (model_path) return cli_usage_error(command, "one model only");
            model_path = value;
            break;
        case OPTION_DEVICE: device_sel = value; break;
        case OPTION_SPLIT:
            status = cli_parse_choice(command, "split", value, "layer", "tensor", &tensor);
            break;
        case OPTION_PROMPT: status = parse_count(command, "prompt", value, 0, &prompt); break;
        case OPTION_GEN: status = parse_count(command, "gen", value, 0, &gen); break;
        case OPTION_REPS: status = parse_count(command, "repetitions", value, 1, &reps); break;
        case OPTION_JSON: json = 1; break;
        case OPTION_REPRODUCIBLE: repro = 1; break;
        default: return cli_parse_stop(command, index);
        }
    }
    if (status != CLI_EXIT_OK) return status;
    if (!model_path) return cli_usage_error(command, "which model? (ox bench-model MODEL)");

    ox_context *ctx;
    if ((status = cli_context_open_mode(command, repro, &ctx)) != CLI_EXIT_OK) return status;
    ox_device *devices[CLI_MAX_DEVICES];
    ox_pipeline *session = NULL;
    ox_model_info info = {.struct_size = sizeof info};
    char device_text[512] = "";
    int n = 0, need = (prompt > gen ? prompt : gen) + 1;
    int32_t *ids = NULL;
    float *logits = NULL;
    result results[2];
    int n_results = 0;
    energy meters = {.count = 0};
    ox_model_cost cost = {.struct_size = sizeof cost};
    cJSON *limits = NULL;
    double bandwidth = 0, fma = 0;
    if ((status = cli_select_devices(command, ctx, device_sel, devices, &n)) != CLI_EXIT_OK)
        goto out;
    /* before the model takes the devices' memory */
    if (json && !(limits = cJSON_CreateArray())) {
        status = cli_error(command, "out of memory");
        goto out;
    }
    if ((status = sum_limits(command, devices, n, limits, &bandwidth, &fma)) != CLI_EXIT_OK)
        goto out;
    ox_pipeline_options po = {.struct_size = sizeof po, .n_ctx = need, .tensor_parallel = tensor};
    cli_guard_mapping(command, model_path);
    ox_status s = ox_pipeline_create(ctx, model_path, devices, n, &po, &session);
    if (s == OX_OK) s = ox_model_get_info(ox_pipeline_model(session, 0), &info);
    if (s == OX_OK) s = ox_model_get_cost(ox_pipeline_model(session, 0), &cost);
    if (s != OX_OK) {
        status = cli_library_error(command, ctx, s);
        goto out;
    }
    cli_describe_stages(session, device_text, sizeof device_text);
    if (n == 1) { /* one device: its id alone */
        char *space = strchr(device_text, ' ');
        if (space) *space = '\0';
    }
    ids = malloc((size_t)need * sizeof *ids);
    logits = malloc((size_t)info.n_vocab * sizeof *logits);
    if (!ids || !logits) {
        status = cli_error(command, "out of memory");
        goto out;
    }
    for (int i = 0; i < need; i++) ids[i] = (int32_t)((i * 7919 + 1000) % info.n_vocab);
    energy_open(&meters, ctx, devices, n);
    if (prompt > 0) {
        results[n_results] = (result){.test = "pp", .tokens = prompt};
        if ((s = measure(session, ctx, &meters, ids, prompt, 0, reps, logits,
                         &results[n_results])) != OX_OK)
            goto fail;
        roofline(&results[n_results++], &cost, bandwidth, fma);
    }
    if (gen > 0) {
        results[n_results] = (result){.test = "tg", .tokens = gen};
        if ((s = measure(session, ctx, &meters, ids, 0, gen, reps, logits,
                         &results[n_results])) != OX_OK)
            goto fail;
        roofline(&results[n_results++], &cost, bandwidth, fma);
    }
    if (meters.missing[0]) /* a sensor that failed mid-run spoils every figure */
        for (int i = 0; i < n_results; i++) results[i].joules_per_token = -1.0;
    if (json) {
        cJSON *doc = cli_json_document(), *arr = doc ? cJSON_AddArrayToObject(doc, "results") : NULL;
        if (doc) {
            cJSON_AddStringToObject(doc, "model", model_path);
            cJSON_AddStringToObject(doc, "device", device_text);
            cJSON_AddBoolToObject(doc, "reproducible", repro);
            if (meters.missing[0]) cJSON_AddNullToObject(doc, "energy_sensor");
            else cJSON_AddStringToObject(doc, "energy_sensor", meters.source);
            /* each device's limits, and their sums, which the percentages use */
            cJSON_AddItemToObject(doc, "limits", limits);
            limits = NULL;
            cJSON_AddNumberToObject(doc, "bandwidth_gbps", bandwidth);
            cJSON_AddNumberToObject(doc, "f32_gflops", fma);
            for (int i = 0; arr && i < n_results; i++) {
                const result *r = &results[i];
                cJSON *o = cJSON_CreateObject();
                char name[32];
                snprintf(name, sizeof name, "%s%d", r->test, r->tokens);
                cJSON_AddStringToObject(o, "test", name);
                cJSON_AddNumberToObject(o, "tokens_per_second", r->mean);
                cJSON_AddNumberToObject(o, "stddev", r->stddev);
                cJSON_AddNumberToObject(o, "percent_of_limit", r->percent);
                cJSON_AddNumberToObject(o, "ops_per_token", r->ops);
                cJSON_AddNumberToObject(o, "launches_per_token", r->launches);
                cJSON_AddNumberToObject(o, "syncs_per_token", r->syncs);
                cJSON_AddStringToObject(o, "limit", r->limit);
                cJSON_AddNumberToObject(o, "attainable", r->attainable);
                cJSON_AddNumberToObject(o, strcmp(r->test, "tg") == 0 ? "bytes_per_token"
                                                                      : "flop_per_token",
                                        r->per_token);
                if (results[i].joules_per_token >= 0) {
                    cJSON_AddNumberToObject(o, "joules_per_token", results[i].joules_per_token);
                } else {
                    cJSON_AddNullToObject(o, "joules_per_token");
                    cJSON_AddStringToObject(o, "energy_sensor_missing", meters.missing);
                }
                cJSON_AddItemToArray(arr, o);
            }
            char *text = cJSON_Print(doc);
            if (text) puts(text);
            free(text);
            cJSON_Delete(doc);
        }
    } else {
        printf("| model | size | device | test | t/s | of limit | J/token |\n"
               "|---|---:|---|---:|---:|---:|---:|\n");
        for (int i = 0; i < n_results; i++) {
            const result *r = &results[i];
            char joules[32] = "n/a";
            if (r->joules_per_token >= 0) snprintf(joules, sizeof joules, "%.4g", r->joules_per_token);
            double share = r->percent;
            char name[256]; /* from the file: its control characters escaped */
            cli_printable(info.name[0] ? info.name : info.arch, name, sizeof name);
            printf("| %s | %.2f MiB | %s | %s%d | %.2f ± %.2f | %.*f%% of %s | %s |\n",
                   name, (double)info.weight_bytes / 1048576.0,
                   device_text, r->test, r->tokens, r->mean, r->stddev,
                   share >= 10 ? 0 : share >= 1 ? 1 : 2, share,
                   strcmp(r->limit, "bandwidth") == 0 ? "bw" : "fma", joules);
        }
        if (meters.missing[0]) printf("\nJ/token not measured: %s\n", meters.missing);
        else if (n_results) printf("\nJ/token from %s\n", meters.source);
    }
    goto out;
fail:
    status = cli_library_error(command, ctx, s);
out:
    free(ids);
    free(logits);
    energy_close(&meters);
    cJSON_Delete(limits);
    ox_pipeline_free(session);
    ox_context_free(ctx);
    return status;
}

const cli_command cmd_bench_model = {
    .name = "bench-model",
    .summary = "prompt and generation speed of a GGUF model, like llama-bench",
    .description =
        "Measure a GGUF model's speed on a device (or several, the layers split by\n"
        "speed) as llama-bench does: pp = a batch\n"
        "of P prompt tokens into an empty context, tg = G tokens generated one at a\n"
        "time; each repeated R times (mean ± standard deviation, tokens/s).\n"
        "Each result is also a share of the device's limits (measured first, or\n"
        "read from their cache; see 'ox bench'): tg of the memory bandwidth (the\n"
        "weight bytes a step reads and the KV cache at the average context, times\n"
        "tokens/s), pp of the F32 FMA peak (2 FLOP per weight and attention's, per\n"
        "token). With several devices, of the sum of their limits.\n"
        "--json also gives the host's costs per token: op calls, kernel launches\n"
        "on devices and host waits (ops_per_token, launches_per_token,\n"
        "syncs_per_token). Each test starts with an untimed warm-up (pp: the\n"
        "whole prompt, as llama-bench; tg: two tokens).\n"
        "J/token: the devices' energy over the timed runs per token, from NVML\n"
        "(NVIDIA), ROCm SMI (hip) or RAPL powercap (CPUs); whole devices, so\n"
        "other processes' use counts too. Without a sensor for every device it\n"
        "is n/a and the line after the table names what is missing.\n"
        "bench/compare-llama.sh runs llama-bench on the same file for the ratio.",
    .options = bench_model_options,
    .run = run_bench_model,
    .operands = "MODEL",
};
