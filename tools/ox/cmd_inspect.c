/* 'ox inspect FILE': what a GGUF model file holds (architecture, sizes,
 * vocabulary, tensor types), optionally every tensor, as text or JSON. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPTION_TENSORS, OPTION_JSON };

static const cli_option inspect_options[] = {
    [OPTION_TENSORS] = {"tensors", NULL, "also list every tensor: name, type, shape, bytes, offset", 0},
    [OPTION_JSON] = {"json", NULL, "print one JSON object instead of text", 0},
    {NULL, NULL, NULL, 0},
};

/* llama.cpp's general.file_type values (enum llama_ftype) that name one
 * quantization mix. */
static const char *file_type_name(int64_t type)
{
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",   [7] = "Q8_0",
        [8] = "Q5_0",    [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K",   [32] = "BF16",
    };
    if (type >= 0 && type < (int64_t)(sizeof names / sizeof names[0]) && names[type])
        return names[type];
    return NULL;
}

/* ---- reading the summary --------------------------------------------------- */

#define TYPE_SLOTS 64 /* ggml type ids are below this */

typedef struct summary {
    char *architecture; /* malloc'ed copies; NULL when absent */
    char *name;
    int64_t file_type, context_length, embedding_length, feed_forward_length, block_count,
        head_count, head_count_kv, vocab_size; /* -1 when absent */
    uint64_t parameters;
    uint64_t tensor_bytes;
    int64_t type_count[TYPE_SLOTS];
    uint64_t type_bytes[TYPE_SLOTS];
} summary;

/* A string value as a malloc'ed C string, or NULL. */
static char *string_value(const ox_gguf *g, const char *key)
{
    const char *data;
    size_t size;
    int64_t i = ox_gguf_find(g, key);
    if (i < 0 || ox_gguf_get_string(g, i, &data, &size) != OX_OK) return NULL;
    char *copy = malloc(size + 1);
    if (copy) {
        memcpy(copy, data, size);
        copy[size] = '\0';
    }
    return copy;
}

/* An integer value of any width under "<arch>.<suffix>" (or `key` itself
 * when arch is NULL); -1 when absent or not an integer. */
static int64_t int_value(const ox_gguf *g, const char *arch, const char *suffix)
{
    char key[256];
    if (arch) snprintf(key, sizeof key, "%s.%s", arch, suffix);
    else snprintf(key, sizeof key, "%s", suffix);
    int64_t value, i = ox_gguf_find(g, key);
    if (i < 0 || ox_gguf_get_int(g, i, &value) != OX_OK) return -1;
    return value;
}

static int summarize(const cli_command *command, const ox_gguf *g, summary *s)
{
    memset(s, 0, sizeof *s);
    s->architecture = string_value(g, "general.architecture");
    s->name = string_value(g, "general.name");
    const char *arch = s->architecture;
    s->file_type = int_value(g, NULL, "general.file_type");
    s->context_length = arch ? int_value(g, arch, "context_length") : -1;
    s->embedding_length = arch ? int_value(g, arch, "embedding_length") : -1;
    s->feed_forward_length = arch ? int_value(g, arch, "feed_forward_length") : -1;
    s->block_count = arch ? int_value(g, arch, "block_count") : -1;
    s->head_count = arch ? int_value(g, arch, "attention.head_count") : -1;
    s->head_count_kv = arch ? int_value(g, arch, "attention.head_count_kv") : -1;
    s->vocab_size = -1;
    uint64_t count;
    int64_t tokens = ox_gguf_find(g, "tokenizer.ggml.tokens");
    if (tokens >= 0 && ox_gguf_get_array(g, tokens, NULL, &count) == OX_OK)
        s->vocab_size = (int64_t)count;
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        if (ox_gguf_tensor_info_get(g, i, &info) != OX_OK)
            return cli_error(command, "cannot describe tensor %lld", (long long)i);
        s->parameters += (uint64_t)info.nelements;
        s->tensor_bytes += info.nbytes;
        if (info.ggml_type < TYPE_SLOTS) {
            s->type_count[info.ggml_type]++;
            s->type_bytes[info.ggml_type] += info.nbytes;
        }
    }
    return CLI_EXIT_OK;
}

static void summary_free(summary *s)
{
    free(s->architecture);
    free(s->name);
}

static void format_shape(const ox_gguf_tensor_info *info, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t d = 0; d < info->n_dims && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? " x " : "",
                                 (long long)info->ne[d]);
}

/* ---- text output ------------------------------------------------------------- */

static void print_count(const char *label, int64_t value)
{
    if (value >= 0) printf("%-18s %lld\n", label, (long long)value);
    else printf("%-18s -\n", label);
}

static void print_text(const char *path, const ox_gguf *g, const summary *s)
{
    char size[32], data_size[32];
    size_t file_size;
    ox_gguf_file_data(g, &file_size);
    cli_format_bytes(file_size, size, sizeof size);
    cli_format_bytes(s->tensor_bytes, data_size, sizeof data_size);
    char text[1024];
    printf("%-18s %s\n", "File:", cli_printable(path, text, sizeof text));
    printf("%-18s GGUF v%u, %lld metadata keys, %lld tensors, alignment %u\n", "Format:",
           ox_gguf_version(g), (long long)ox_gguf_kv_count(g), (long long)ox_gguf_tensor_count(g),
           ox_gguf_alignment(g));
    printf("%-18s %s\n", "Architecture:",
           s->architecture ? cli_printable(s->architecture, text, sizeof text) : "-");
    printf("%-18s %s\n", "Name:", s->name ? cli_printable(s->name, text, sizeof text) : "-");
    if (s->file_type >= 0) {
        const char *type = file_type_name(s->file_type);
        printf("%-18s %lld%s%s%s\n", "File type:", (long long)s->file_type, type ? " (" : "",
               type ? type : "", type ? ")" : "");
    } else {
        printf("%-18s -\n", "File type:");
    }
    printf("%-18s %.2f M (%llu)\n", "Parameters:", (double)s->parameters / 1e6,
           (unsigned long long)s->parameters);
    print_count("Context length:", s->context_length);
    print_count("Embedding length:", s->embedding_length);
    print_count("Feed-forward:", s->feed_forward_length);
    print_count("Blocks:", s->block_count);
    print_count("Attention heads:", s->head_count);
    print_count("KV heads:", s->head_count_kv);
    print_count("Vocabulary:", s->vocab_size);
    printf("%-18s %s (file %s)\n", "Tensor data:", data_size, size);
    printf("%-18s", "Tensor types:");
    for (int t = 0; t < TYPE_SLOTS; t++) {
        if (!s->type_count[t]) continue;
        char bytes[32];
        cli_format_bytes(s->type_bytes[t], bytes, sizeof bytes);
        printf(" %s %lld (%s)", ox_ggml_type_str((uint32_t)t), (long long)s->type_count[t], bytes);
    }
    printf("%s\n", ox_gguf_tensor_count(g) ? "" : " -");
}

static void print_tensors(const ox_gguf *g)
{
    int name_width = 4;
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        if (ox_gguf_tensor_info_get(g, i, &info) != OX_OK) continue;
        char text[300];
        int n = (int)strlen(cli_printable(info.name, text, sizeof text));
        if (n > name_width) name_width = n;
    }
    printf("\n%-*s  %-7s  %-26s  %12s  %12s\n", name_width, "NAME", "TYPE", "SHAPE", "BYTES",
           "OFFSET");
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        if (ox_gguf_tensor_info_get(g, i, &info) != OX_OK) continue;
        char shape[96], text[300];
        format_shape(&info, shape, sizeof shape);
        printf("%-*s  %-7s  %-26s  %12zu  %12llu\n", name_width,
               cli_printable(info.name, text, sizeof text), info.type_name, shape,
               info.nbytes, (unsigned long long)info.file_offset);
    }
}

/* ---- JSON output -------------------------------------------------------------- */

static void add_count(cJSON *object, const char *name, int64_t value)
{
    if (value >= 0) cJSON_AddNumberToObject(object, name, (double)value);
    else cJSON_AddNullToObject(object, name);
}

static void add_string(cJSON *object, const char *name, const char *value)
{
    if (value) cJSON_AddStringToObject(object, name, value);
    else cJSON_AddNullToObject(object, name);
}

static int print_json(const cli_command *command, const char *path, const ox_gguf *g,
                      const summary *s, int tensors)
{
    cJSON *root = cli_json_document();
    if (!root) return cli_error(command, "out of memory");
    size_t file_size;
    ox_gguf_file_data(g, &file_size);
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddNumberToObject(root, "gguf_version", ox_gguf_version(g));
    cli_json_add_u64(root, "file_bytes", file_size);
    cJSON_AddNumberToObject(root, "alignment", ox_gguf_alignment(g));
    cJSON_AddNumberToObject(root, "metadata_count", (double)ox_gguf_kv_count(g));
    add_string(root, "architecture", s->architecture);
    add_string(root, "name", s->name);
    add_count(root, "file_type", s->file_type);
    add_string(root, "file_type_name", s->file_type >= 0 ? file_type_name(s->file_type) : NULL);
    cli_json_add_u64(root, "parameters", s->parameters);
    add_count(root, "context_length", s->context_length);
    add_count(root, "embedding_length", s->embedding_length);
    add_count(root, "feed_forward_length", s->feed_forward_length);
    add_count(root, "block_count", s->block_count);
    add_count(root, "head_count", s->head_count);
    add_count(root, "head_count_kv", s->head_count_kv);
    add_count(root, "vocab_size", s->vocab_size);
    cJSON_AddNumberToObject(root, "tensor_count", (double)ox_gguf_tensor_count(g));
    cli_json_add_u64(root, "tensor_bytes", s->tensor_bytes);
    cJSON *types = cJSON_AddObjectToObject(root, "tensor_types");
    for (int t = 0; types && t < TYPE_SLOTS; t++) {
        if (!s->type_count[t]) continue;
        cJSON *type = cJSON_AddObjectToObject(types, ox_ggml_type_str((uint32_t)t));
        cJSON_AddNumberToObject(type, "count", (double)s->type_count[t]);
        cli_json_add_u64(type, "bytes", s->type_bytes[t]);
    }
    if (tensors) {
        cJSON *list = cJSON_AddArrayToObject(root, "tensors");
        for (int64_t i = 0; list && i < ox_gguf_tensor_count(g); i++) {
            ox_gguf_tensor_info info = {.struct_size = sizeof info};
            if (ox_gguf_tensor_info_get(g, i, &info) != OX_OK) continue;
            cJSON *tensor = cJSON_CreateObject();
            cJSON_AddStringToObject(tensor, "name", info.name);
            cJSON_AddStringToObject(tensor, "type", info.type_name);
            cJSON *shape = cJSON_AddArrayToObject(tensor, "shape");
            for (uint32_t d = 0; shape && d < info.n_dims; d++)
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)info.ne[d]));
            cli_json_add_u64(tensor, "bytes", info.nbytes);
            cli_json_add_u64(tensor, "offset", info.file_offset);
            cJSON_AddItemToArray(list, tensor);
        }
    }
    int code = cli_json_write(command, root, "-");
    cJSON_Delete(root);
    return code;
}

/* ---- the command ------------------------------------------------------------ */

static int run_inspect(const cli_command *command, int argc, char **argv)
{
    const char *path = NULL, *value;
    int json = 0, tensors = 0, option;
    cli_parser parser;

    cli_parser_init(&parser, command, argc, argv);
    while ((option = cli_parse_next(&parser, &value)) != CLI_PARSE_END) {
        if (option == OPTION_JSON) {
            json = 1;
        } else if (option == OPTION_TENSORS) {
            tensors = 1;
        } else if (option == CLI_PARSE_OPERAND) {
            if (path) return cli_usage_error(command, "one FILE expected, got '%s' too", value);
            path = value;
        } else {
            return cli_parse_stop(command, option);
        }
    }
    if (!path) return cli_usage_error(command, "no FILE given");

    ox_context *ctx = NULL;
    ox_gguf *g = NULL;
    summary s;
    int code = cli_context_open(command, &ctx);
    if (code != CLI_EXIT_OK) return code;
    cli_guard_mapping(command, path);
    ox_status status = ox_gguf_open(ctx, path, &g);
    if (status != OX_OK) {
        code = cli_library_error(command, ctx, status);
        goto out_free_context;
    }
    code = summarize(command, g, &s);
    if (code == CLI_EXIT_OK) {
        if (json) {
            code = print_json(command, path, g, &s, tensors);
        } else {
            print_text(path, g, &s);
            if (tensors) print_tensors(g);
        }
    }
    summary_free(&s);
    ox_gguf_close(g);
out_free_context:
    ox_context_free(ctx);
    return code;
}

const cli_command cmd_inspect = {
    .name = "inspect",
    .summary = "describe a GGUF model file",
    .description = "Check a GGUF file and print its architecture, name, file type, parameter\n"
                   "count, context and embedding lengths, blocks, heads, vocabulary size and\n"
                   "tensors by type; --tensors lists every tensor. A malformed file fails with\n"
                   "the problem and its byte offset.",
    .options = inspect_options,
    .run = run_inspect,
    .operands = "FILE",
};
