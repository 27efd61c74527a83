/* 'ox bench': time a few ops at sizes that matter on each selected device
 * and print the achieved GFLOP/s (matmul, attention) or GB/s (add, softmax,
 * rms_norm, copy), and what share that is of the device's own limit
 * (ox_device_measure_limits, measured first or read from its cache). Each
 * case: one warm-up call, then the best of several, each waited for with
 * ox_queue_finish. The op cases come from check_ops.c. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli.h"

enum { OPTION_DEVICE, OPTION_JSON, OPTION_QUICK, OPTION_REMEASURE };

static const cli_option bench_options[] = {
    [OPTION_DEVICE] = {"device", "SEL", "benchmark the devices SEL selects (default: all)", 0},
    [OPTION_JSON] = {"json", NULL, "print one JSON object instead of the table", 0},
    [OPTION_QUICK] = {"quick", NULL, "smaller sizes and fewer runs", 0},
    [OPTION_REMEASURE] = {"remeasure", NULL, "measure the devices' limits again (not from the cache)",
                          0},
    {NULL, NULL, NULL, 0},
};

static const char *const bench_names[] = {"matmul", "attention", "add", "softmax", "rms_norm",
                                          "copy"};
#define BENCH_COUNT (int)(sizeof bench_names / sizeof bench_names[0])

/* ---- the cases ------------------------------------------------------------------ */

#define ADD(expression)                                                  \
    do {                                                                 \
        op_case add_case_ = (expression);                                \
        if (op_case_list_add(list, &add_case_) != 0) return -1;          \
    } while (0)

/* The cases of bench_names[which]. Returns 0, or -1 out of memory. */
static int bench_cases(int which, int quick, op_case_list *list)
{
    const ox_dtype f32 = OX_DTYPE_F32, f16 = OX_DTYPE_F16;
    /* Memory-bound ops: 4096 x 4096 F32 = 64 MiB per tensor, also with
     * --quick: smaller tensors would stay in the last-level cache between
     * runs, and their GB/s would not measure memory against its roofline. */
    const int64_t side = 4096;
    const int64_t big[4] = {side, side, 1, 1};
    switch (which) {
    case 0: { /* matmul: square (F32 and F16 a, the weights), matrix-vector */
        static const int64_t full[] = {512, 1024}, small[] = {256};
        const int64_t *sizes = quick ? small : full;
        const int64_t vector = 4096; /* 64 MiB of F32 weights: memory-bound, as side */
        for (int s = 0; s < (quick ? 1 : 2); s++) {
            ADD(op_case_matmul(f32, f32, sizes[s], sizes[s], sizes[s], 0, NULL, NULL));
            ADD(op_case_matmul(f16, f32, sizes[s], sizes[s], sizes[s], 0, NULL, NULL));
        }
        /* One token through a weight matrix stored as rows of K. */
        ADD(op_case_matmul(f32, f32, 1, vector, vector, OX_MATMUL_TRANS_B, NULL, NULL));
        ADD(op_case_matmul(f32, f16, 1, vector, vector, OX_MATMUL_TRANS_B, NULL, NULL));
        /* Decoding through quantized weights larger than the last-level
         * cache (16384 rows of 4096: 38-71 MiB), as a model's layers are. */
        static const ox_dtype quants[] = {OX_DTYPE_Q4_0, OX_DTYPE_Q8_0, OX_DTYPE_Q4_K,
                                          OX_DTYPE_Q6_K};
        for (int q = 0; q < (int)(sizeof quants / sizeof quants[0]); q++)
            ADD(op_case_matmul(f32, quants[q], 1, 16384, 4096,
                               OX_MATMUL_TRANS_B, NULL, NULL));
        return 0;
    }
    case 1: /* attention: decode over a long cache, causal prefill; F16 cache */
        ADD(op_case_attention(f16, 128, 128, 1, quick ? 1024 : 4096, 32, 8, 1, 0, 0));
        ADD(op_case_attention(f16, 128, 128, quick ? 128 : 512, quick ? 128 : 512, 8, 2, 1, 1,
                              0));
        return 0;
    case 2:
        ADD(op_case_binary(OX_BINARY_ADD, f32, big, big, 0));
        ADD(op_case_binary(OX_BINARY_ADD, f16, big, big, 0));
        return 0;
    case 3: ADD(op_case_softmax(f32, big, -1, 0, 0, 1.0f)); return 0;
    case 4: ADD(op_case_norm(1, f32, big, 1, 0, 1e-6f)); return 0;
    case 5:
        ADD(op_case_copy(f32, f32, big, 0));
        ADD(op_case_copy(f32, f16, big, 0));
        return 0;
    default: return 0;
    }
}

#undef ADD

/* ---- limits ----------------------------------------------------------------------- */

/* The share of the relevant limit a case reached at `rate` (GB/s without a
 * FLOP count, else GFLOP/s), in percent; *limit names it ("bandwidth" or
 * "f32_fma") and *attainable is the limit in the rate's unit. Memory-bound
 * cases: of the bandwidth. The others: of the attainable roofline
 * min(F32 FMA peak, intensity x bandwidth), intensity = FLOP / bytes moved,
 * so a matrix-vector product (0.5 FLOP a byte in F32) is judged by the
 * bandwidth it reaches. The F32 peak whatever the data's dtype: the kernels
 * compute in F32. */
static double percent_of_limit(const op_case *c, double rate, const ox_device_limits *l,
                               const char **limit, double *attainable)
{
    *limit = "bandwidth";
    *attainable = l->bandwidth_gbps;
    if (c->flops > 0) {
        *attainable = c->flops / op_case_bytes(c) * l->bandwidth_gbps;
        if (*attainable > l->f32_gflops) {
            *limit = "f32_fma";
            *attainable = l->f32_gflops;
        }
    }
    return 100.0 * rate / *attainable;
}

/* "1.2 s" or "cached" */
static void describe_origin(const ox_device_limits *l, char *text, size_t size)
{
    if (l->cached) {
        snprintf(text, size, "cached");
    } else {
        char seconds[32];
        cli_format_seconds(l->seconds, seconds, sizeof seconds);
        snprintf(text, size, "measured in %s", seconds);
    }
}

/* Measure (or read) every device's limits before any op runs. *ok[i] says
 * which succeeded; each failure is printed and counted in *failed. */
static void measure_limits(const cli_command *command, ox_device **devices, int count,
                           unsigned flags, int json, ox_device_limits *limits, int *ok,
                           int *failed)
{
    int width = 0;
    for (int i = 0; i < count; i++) {
        ox_device_info info = {.struct_size = sizeof info};
        if (ox_device_get_info(devices[i], &info) == OX_OK && (int)strlen(info.id) > width)
            width = (int)strlen(info.id);
    }
    if (!json) printf("Device limits (the roofline: best streaming bandwidth, FMA throughput):\n");
    for (int i = 0; i < count; i++) {
        ox_device_info info;
        limits[i] = (ox_device_limits){.struct_size = sizeof limits[i]};
        ok[i] = 0;
        if (cli_device_info(command, devices[i], &info) != CLI_EXIT_OK) {
            ++*failed;
            continue;
        }
        ox_status s = ox_device_measure_limits(devices[i], flags, &limits[i]);
        if (s != OX_OK) {
            cli_library_error(command, ox_device_context(devices[i]), s);
            if (!json) printf("  %-*s  not measured (the error is above)\n", width, info.id);
            ++*failed;
            continue;
        }
        ok[i] = 1;
        if (json) continue;
        const ox_device_limits *l = &limits[i];
        char f16[32], origin[48];
        if (l->f16_gflops > 0) snprintf(f16, sizeof f16, "%.1f GFLOP/s", l->f16_gflops);
        else snprintf(f16, sizeof f16, "-");
        describe_origin(l, origin, sizeof origin);
        printf("  %-*s  copy %.1f GB/s, triad %.1f GB/s, F32 FMA %.1f GFLOP/s, F16 FMA %s (%s)\n",
               width, info.id, l->copy_gbps, l->triad_gbps, l->f32_gflops, f16, origin);
    }
    if (!json) printf("\n");
    fflush(stdout);
}

static cJSON *limits_json(const ox_device_limits *l)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddNumberToObject(object, "copy_gbps", l->copy_gbps);
    cJSON_AddNumberToObject(object, "triad_gbps", l->triad_gbps);
    cJSON_AddNumberToObject(object, "bandwidth_gbps", l->bandwidth_gbps);
    cJSON_AddNumberToObject(object, "f32_gflops", l->f32_gflops);
    cJSON_AddNumberToObject(object, "f16_gflops", l->f16_gflops);
    cJSON_AddNumberToObject(object, "seconds", l->seconds);
    cJSON_AddBoolToObject(object, "cached", l->cached);
    return object;
}

/* ---- output ----------------------------------------------------------------------- */

typedef struct bench_table {
    int device_width, op_width, dtype_width, shape_width;
} bench_table;

static void table_layout(bench_table *t, ox_device **devices, int count,
                         const op_case_list *cases)
{
    t->device_width = (int)strlen("DEVICE");
    t->op_width = (int)strlen("OP");
    t->dtype_width = (int)strlen("DTYPE");
    t->shape_width = (int)strlen("SHAPE");
    for (int i = 0; i < count; i++) {
        ox_device_info info = {.struct_size = sizeof info};
        if (ox_device_get_info(devices[i], &info) == OX_OK &&
            (int)strlen(info.id) > t->device_width)
            t->device_width = (int)strlen(info.id);
    }
    for (int i = 0; i < cases->count; i++) {
        const op_case *c = &cases->cases[i];
        if ((int)strlen(c->op) > t->op_width) t->op_width = (int)strlen(c->op);
        if ((int)strlen(c->dtype) > t->dtype_width) t->dtype_width = (int)strlen(c->dtype);
        if ((int)strlen(c->shape) > t->shape_width) t->shape_width = (int)strlen(c->shape);
    }
}

static void print_row(const bench_table *t, const char *device, const op_case *c,
                      const char *time, const char *rate, const char *share)
{
    printf("%-*s  %-*s  %-*s  %-*s  %9s  %16s  %s\n", t->device_width, device, t->op_width,
           c->op, t->dtype_width, c->dtype, t->shape_width, c->shape, time, rate, share);
    fflush(stdout);
}

static cJSON *result_json(const op_case *c, double seconds, int runs, double rate,
                          const char *error, double percent, const char *limit,
                          double attainable)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "op", c->op);
    cJSON_AddStringToObject(object, "dtype", c->dtype);
    cJSON_AddStringToObject(object, "shape", c->shape);
    cJSON_AddNumberToObject(object, "seconds", seconds);
    cJSON_AddNumberToObject(object, "runs", runs);
    if (!error && c->flops > 0) cJSON_AddNumberToObject(object, "gflops", rate);
    else cJSON_AddNullToObject(object, "gflops");
    if (!error && c->flops <= 0) cJSON_AddNumberToObject(object, "gbps", rate);
    else cJSON_AddNullToObject(object, "gbps");
    if (!error && limit) {
        cJSON_AddNumberToObject(object, "percent_of_limit", percent);
        cJSON_AddStringToObject(object, "limit", limit);
        /* in the unit of the rate: GFLOP/s with a FLOP count, else GB/s */
        cJSON_AddNumberToObject(object, "attainable", attainable);
    } else {
        cJSON_AddNullToObject(object, "percent_of_limit");
        cJSON_AddNullToObject(object, "limit");
        cJSON_AddNullToObject(object, "attainable");
    }
    if (error) cJSON_AddStringToObject(object, "error", error);
    else cJSON_AddNullToObject(object, "error");
    return object;
}

/* ---- the command ---------------------------------------------------------------------- */

/* Run every case on one device; `limits` is NULL when they could not be
 * measured. Returns the number that ran; *failed counts the errors. */
static int bench_device(const cli_command *command, const bench_table *t, ox_device *device,
                        const ox_device_limits *limits, const op_case_list *cases, int quick,
                        cJSON *devices, int *failed)
{
    ox_device_info info;
    int ran = 0;
    if (cli_device_info(command, device, &info) != CLI_EXIT_OK) {
        ++*failed;
        return 0;
    }
    cJSON *results = NULL;
    if (devices) {
        cJSON *object = cJSON_CreateObject();
        cJSON_AddStringToObject(object, "id", info.id);
        cJSON_AddStringToObject(object, "name", info.name);
        cJSON_AddStringToObject(object, "backend", info.backend);
        if (limits) cJSON_AddItemToObject(object, "limits", limits_json(limits));
        else cJSON_AddNullToObject(object, "limits");
        results = cJSON_AddArrayToObject(object, "results");
        cJSON_AddItemToArray(devices, object);
    }
    for (int i = 0; i < cases->count; i++) {
        const op_case *c = &cases->cases[i];
        char error[1024], time[32], rate[64], share[1100];
        double best = 0, percent = 0, attainable = 0;
        const char *limit = NULL;
        int runs = 0;
        ox_status s = op_case_time(c, device, quick ? 3 : 10, quick ? 0.5 : 2.0, &best, &runs,
                                   error, sizeof error);
        double value = 0;
        if (s == OX_OK) {
            value = (c->flops > 0 ? c->flops : op_case_bytes(c)) / best / 1e9;
            cli_format_seconds(best, time, sizeof time);
            snprintf(rate, sizeof rate, "%.2f %s", value, c->flops > 0 ? "GFLOP/s" : "GB/s");
            if (limits) {
                percent = percent_of_limit(c, value, limits, &limit, &attainable);
                snprintf(share, sizeof share, "%.0f%% of %s", percent,
                         strcmp(limit, "bandwidth") == 0 ? "bw" : "fma");
            } else {
                snprintf(share, sizeof share, "-");
            }
            ran++;
        } else {
            snprintf(time, sizeof time, "-");
            snprintf(rate, sizeof rate, "-");
            snprintf(share, sizeof share, "ERROR: %.*s", (int)strcspn(error, "\n"), error);
            ++*failed;
        }
        if (!devices) print_row(t, info.id, c, time, rate, share);
        if (results)
            cJSON_AddItemToArray(results, result_json(c, best, runs, value,
                                                      s == OX_OK ? NULL : error, percent,
                                                      limit, attainable));
    }
    if (ran == 0 && cases->count > 0) {
        /* A benchmark that ran nothing must not pass. */
        cli_error(command, "nothing ran on %s: every case failed", info.id);
        ++*failed;
    }
    return ran;
}

static int run_bench(const cli_command *command, int argc, char **argv)
{
    const char *selection = "all", *value;
    int json = 0, quick = 0, option, wanted[BENCH_COUNT] = {0}, any = 0;
    unsigned limit_flags = 0;
    cli_parser parser;

    cli_parser_init(&parser, command, argc, argv);
    while ((option = cli_parse_next(&parser, &value)) >= 0 || option == CLI_PARSE_OPERAND) {
        if (option == OPTION_DEVICE) selection = value;
        else if (option == OPTION_JSON) json = 1;
        else if (option == OPTION_QUICK) quick = 1;
        else if (option == OPTION_REMEASURE) limit_flags = OX_LIMITS_REMEASURE;
        else if (option == CLI_PARSE_OPERAND) {
            int found = 0;
            for (int i = 0; i < BENCH_COUNT; i++)
                if (strcmp(value, bench_names[i]) == 0) found = wanted[i] = any = 1;
            if (!found) {
                char list[128] = "";
                for (int i = 0; i < BENCH_COUNT; i++)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                             i ? ", " : "", bench_names[i]);
                return cli_usage_error(command, "unknown op '%s'; the ops are: %s", value, list);
            }
        }
    }
    if (option != CLI_PARSE_END) return cli_parse_stop(command, option);

    op_case_list cases = {0};
    ox_context *ctx = NULL;
    ox_device **devices = NULL;
    ox_device_limits *limits = NULL;
    int *limits_ok = NULL;
    cJSON *root = NULL, *device_array = NULL;
    bench_table t;
    int count = 0, failed = 0, code = CLI_EXIT_OK;
    for (int i = 0; i < BENCH_COUNT; i++)
        if ((!any || wanted[i]) && bench_cases(i, quick, &cases) != 0) {
            code = cli_error(command, "out of memory");
            goto out_free_cases;
        }
    code = cli_context_open(command, &ctx);
    if (code != CLI_EXIT_OK) goto out_free_cases;
    code = cli_devices_select(command, ctx, selection, &devices, &count);
    if (code != CLI_EXIT_OK) goto out_free_context;
    if (count == 0) {
        code = cli_error(command, "the selection '%s' names no device: nothing was measured",
                         selection);
        goto out_free_devices;
    }
    limits = calloc((size_t)count, sizeof *limits);
    limits_ok = calloc((size_t)count, sizeof *limits_ok);
    if (!limits || !limits_ok) {
        code = cli_error(command, "out of memory");
        goto out_free_limits;
    }
    if (json) {
        root = cli_json_document();
        device_array = root ? cJSON_AddArrayToObject(root, "devices") : NULL;
        if (!device_array) {
            code = cli_error(command, "out of memory");
            goto out_free_json;
        }
        cJSON_AddBoolToObject(root, "quick", quick);
    }

    measure_limits(command, devices, count, limit_flags, json, limits, limits_ok, &failed);
    table_layout(&t, devices, count, &cases);
    if (!json)
        printf("%-*s  %-*s  %-*s  %-*s  %9s  %16s  %s\n", t.device_width, "DEVICE", t.op_width,
               "OP", t.dtype_width, "DTYPE", t.shape_width, "SHAPE", "TIME", "RATE",
               "OF LIMIT");
    for (int i = 0; i < count; i++)
        bench_device(command, &t, devices[i], limits_ok[i] ? &limits[i] : NULL, &cases, quick,
                     device_array, &failed);
    code = failed ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    if (root) {
        cJSON_AddBoolToObject(root, "passed", code == CLI_EXIT_OK);
        if (cli_json_write(command, root, "-") != CLI_EXIT_OK) code = CLI_EXIT_FAILURE;
    }
out_free_json:
    cJSON_Delete(root);
out_free_limits:
    free(limits);
    free(limits_ok);
out_free_devices:
    free(devices);
out_free_context:
    ox_context_free(ctx);
out_free_cases:
    op_case_list_free(&cases);
    return code;
}

const cli_command cmd_bench = {
    .name = "bench",
    .summary = "measure GFLOP/s and GB/s of a few ops on each device",
    .description =
        "Time the ops named (default: all of matmul, attention, add, softmax,\n"
        "rms_norm, copy) on each selected device: one warm-up call, then the best\n"
        "of up to 10 (3 with --quick), each waited for with ox_queue_finish.\n"
        "matmul (512^3, 1024^3, and 1 x 4096 x 4096 matrix-vector; F32 and F16\n"
        "weights) and attention report GFLOP/s; the others GB/s over the bytes\n"
        "read and written once (64 MiB tensors). Results are not checked: run\n"
        "'ox check' for that.\n"
        "\n"
        "First each device's limits are measured (ox_device_measure_limits:\n"
        "streaming copy and triad, F32 and F16 FMA throughput; a second or two,\n"
        "then read from a cache, see --remeasure), and each row shows its share of\n"
        "the relevant one: memory-bound ops of the bandwidth ('of bw'), matmul and\n"
        "attention of min(F32 FMA peak, FLOP per byte x bandwidth), whichever\n"
        "bounds them ('of fma' or 'of bw'). Exits 1 if a case fails, nothing ran\n"
        "on a device or its limits could not be measured.",
    .options = bench_options,
    .run = run_bench,
    .operands = "[OP...]",
};
