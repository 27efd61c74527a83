/* 'ox quantize IN.gguf OUT.gguf TYPE': a model's weights into another type
 * or mixture (ox_gguf_quantize), with a progress bar on a terminal, the
 * plan with --dry-run and a report with --json. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum { OPTION_THREADS, OPTION_DRY_RUN, OPTION_JSON };

static const cli_option quantize_options[] = {
    [OPTION_THREADS] = {"threads", "N", "threads converting rows (default: the CPUs allowed)", 't'},
    [OPTION_DRY_RUN] = {"dry-run", NULL, "print the type each tensor would get; write nothing", 0},
    [OPTION_JSON] = {"json", NULL, "print the tensors and totals as JSON", 0},
    {NULL, NULL, NULL, 0},
};

typedef struct progress {
    int bar;         /* draw a bar on stderr (a terminal) */
    int list;        /* print one line per tensor (--dry-run) */
    cJSON *tensors;  /* --json */
    int bar_drawn;
} progress;

static void shape(const ox_quantize_tensor *t, char *buf, size_t cap)
{
    size_t used = 0;
    for (uint32_t d = 0; d < t->n_dims && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? " x " : "",
                                 (long long)t->ne[d]);
}

static void on_tensor(void *user, const ox_quantize_tensor *t)
{
    progress *p = user;
    char dims[96];
    shape(t, dims, sizeof dims);
    if (p->tensors) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "from", ox_ggml_type_str(t->from_type));
        cJSON_AddStringToObject(o, "to", ox_ggml_type_str(t->to_type));
        cJSON *ne = cJSON_AddArrayToObject(o, "ne");
        for (uint32_t d = 0; d < t->n_dims; d++)
            cJSON_AddItemToArray(ne, cJSON_CreateNumber((double)t->ne[d]));
        cli_json_add_u64(o, "bytes_in", t->bytes_in);
        cli_json_add_u64(o, "bytes_out", t->bytes_out);
        cJSON_AddItemToArray(p->tensors, o);
    }
    if (p->list) {
        char in[32], out[32];
        cli_format_bytes(t->bytes_in, in, sizeof in);
        cli_format_bytes(t->bytes_out, out, sizeof out);
        printf("%-40s %-20s %6s -> %-6s %10s -> %s\n", t->name, dims, ox_ggml_type_str(t->from_type),
               ox_ggml_type_str(t->to_type), in, out);
    }
    if (p->bar) {
        int width = 30, pct = t->total_bytes ? (int)(100.0 * t->done_bytes / t->total_bytes) : 100;
        int fill = pct * width / 100;
        fprintf(stderr, "\r[%.*s%*s] %3d%% %lld/%lld %-36.36s %s -> %s  ", fill,
                "##############################", width - fill, "", pct,
                (long long)t->index + 1, (long long)t->count, t->name,
                ox_ggml_type_str(t->from_type), ox_ggml_type_str(t->to_type));
        fflush(stderr);
        p->bar_drawn = 1;
    }
}

static int run_quantize(const cli_command *command, int argc, char **argv)
{
    cli_parser parser;
    cli_parser_init(&parser, command, argc, argv);
    const char *operands[3] = {NULL, NULL, NULL}, *value;
    int n_operands = 0, threads = 0, dry_run = 0, json = 0, r;
    while ((r = cli_parse_next(&parser, &value)) != CLI_PARSE_END) {
        switch (r) {
        case OPTION_THREADS: {
            char *end;
            long n = strtol(value, &end, 10);
            if (*end || n < 1 || n > 256)
                return cli_usage_error(command, "--threads takes 1 to 256, not '%s'", value);
            threads = (int)n;
            break;
        }
        case OPTION_DRY_RUN: dry_run = 1; break;
        case OPTION_JSON: json = 1; break;
        case CLI_PARSE_OPERAND:
            if (n_operands == 3) return cli_usage_error(command, "too many operands: '%s'", value);
            operands[n_operands++] = value;
            break;
        default: return cli_parse_stop(command, r);
        }
    }
    if (n_operands != 3) return cli_usage_error(command, "give IN.gguf OUT.gguf TYPE");
    const char *in = operands[0], *out = operands[1], *type = operands[2];
    if (!cli_name_known(ox_quantize_type_name, type, true)) {
        char list[256];
        cli_name_list(ox_quantize_type_name, list, sizeof list);
        return cli_usage_error(command, "unknown TYPE '%s' (one of %s)", type, list);
    }

    ox_context *ctx = NULL;
    int code = cli_context_open(command, &ctx);
    if (code != CLI_EXIT_OK) return code;
    cJSON *root = json ? cli_json_document() : NULL;
    progress p = {.bar = !json && !dry_run && isatty(STDERR_FILENO), .list = dry_run && !json,
                  .tensors = root ? cJSON_AddArrayToObject(root, "tensors") : NULL};
    ox_quantize_options o = {.struct_size = sizeof o, .threads = threads,
                             .flags = dry_run ? OX_QUANTIZE_DRY_RUN : 0u, .progress = on_tensor,
                             .user = &p};
    ox_quantize_stats st = {.struct_size = sizeof st};
    double start = cli_seconds();
    ox_status s = ox_gguf_quantize(ctx, in, out, type, &o, &st);
    double seconds = cli_seconds() - start;
    if (p.bar_drawn) fputc('\n', stderr);
    if (s != OX_OK) {
        code = cli_library_error(command, ctx, s);
        goto done;
    }
    double bpw = st.elements ? 8.0 * (double)st.bytes_out / (double)st.elements : 0.0;
    if (root) {
        cJSON_AddStringToObject(root, "input", in);
        cJSON_AddStringToObject(root, "output", out);
        cJSON_AddStringToObject(root, "type", type);
        cJSON_AddBoolToObject(root, "dry_run", dry_run);
        cJSON_AddNumberToObject(root, "file_type", st.file_type);
        cJSON_AddNumberToObject(root, "tensor_count", (double)st.tensors);
        cJSON_AddNumberToObject(root, "converted", (double)st.quantized);
        cli_json_add_u64(root, "elements", st.elements);
        cli_json_add_u64(root, "bytes_in", st.bytes_in);
        cli_json_add_u64(root, "bytes_out", st.bytes_out);
        cJSON_AddNumberToObject(root, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(root, "seconds", seconds);
        code = cli_json_write(command, root, "-");
        goto done;
    }
    char from[32], to[32], time[32];
    cli_format_bytes(st.bytes_in, from, sizeof from);
    cli_format_bytes(st.bytes_out, to, sizeof to);
    cli_format_seconds(seconds, time, sizeof time);
    printf("%s %s (%s): %lld tensors, %lld converted; %s -> %s, %.2f bits per weight, in %s\n",
           dry_run ? "would write" : "wrote", out, type, (long long)st.tensors,
           (long long)st.quantized, from, to, bpw, time);
    code = CLI_EXIT_OK;
done:
    cJSON_Delete(root);
    ox_context_free(ctx);
    return code;
}

const cli_command cmd_quantize = {
    .name = "quantize",
    .summary = "write a GGUF model with its weights in another type (q4_k_m, q8_0, ...)",
    .description =
        "Write OUT.gguf from IN.gguf with its weights as TYPE: f16, bf16, q8_0, q4_0,\n"
        "q4_1, q5_0, q5_1, q4_k (= q4_k_s), q5_k (= q5_k_s), q6_k, or the mixtures\n"
        "q4_k_m and q5_k_m. The same tensors get the same types and every block the\n"
        "same bytes as llama.cpp's llama-quantize (no importance matrix): norms and\n"
        "other small tensors stay as they are, the output projection goes to q6_k,\n"
        "the _m mixtures keep attn_v and ffn_down in q6_k on a third of the layers.\n"
        "Tensor by tensor, so memory stays near one tensor; OUT is written under a\n"
        "temporary name and replaced only when all went well. A progress bar shows\n"
        "on a terminal.",
    .options = quantize_options,
    .run = run_quantize,
    .operands = "IN.gguf OUT.gguf TYPE",
};
