/* The real model: Gemma 3 270M (Q4_K_M), fetched by scripts/fetch-model.sh
 * (ctest names it in OX_FETCH_MODEL; OX_MODEL_PATH may name the .gguf file
 * directly). When it cannot be had, each case is skipped with the reason. */
#include "ox_test.h"

#include "openxpu/openxpu.h"

/* The model's path (static buffer), or a skip with the fetch script's
 * reason. */
static const char *model_path(void)
{
    static char path[4096];
    const char *given = getenv("OX_MODEL_PATH");
    if (given && given[0]) return given;
    const char *script = getenv("OX_FETCH_MODEL");
    if (!script || !script[0]) OX_SKIP("real model unavailable: OX_FETCH_MODEL is not set");
    char command[4200];
    snprintf(command, sizeof command, "'%s' 2>&1", script);
    FILE *out = popen(command, "r");
    if (!out) OX_SKIP("real model unavailable: cannot run %s", script);
    char line[4096] = "", last[4096] = "";
    while (fgets(line, sizeof line, out)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) memcpy(last, line, sizeof last);
    }
    int status = pclose(out);
    if (status != 0) OX_SKIP("real model unavailable: %s", last[0] ? last : "fetch-model.sh failed");
    snprintf(path, sizeof path, "%s", last);
    return path;
}

static ox_context *new_context(void)
{
    ox_context_options options = {.struct_size = sizeof options, .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    return ctx;
}

OX_TEST(model_metadata)
{
    const char *path = model_path();
    ox_context *ctx = new_context();
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open(ctx, path, &g));
    ASSERT(ox_gguf_version(g) == 2 || ox_gguf_version(g) == 3);
    const char *arch;
    size_t len;
    ASSERT_OK(ctx, ox_gguf_get_string(g, ox_gguf_find(g, "general.architecture"), &arch, &len));
    ASSERT(len == 6 && memcmp(arch, "gemma3", 6) == 0);
    int64_t value;
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "gemma3.block_count"), &value));
    ASSERT_EQ(value, 18);
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "gemma3.embedding_length"), &value));
    ASSERT_EQ(value, 640);
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "gemma3.context_length"), &value));
    ASSERT(value > 0);
    int64_t tokens = ox_gguf_find(g, "tokenizer.ggml.tokens");
    uint64_t count;
    ox_gguf_type elem;
    ASSERT_OK(ctx, ox_gguf_get_array(g, tokens, &elem, &count));
    ASSERT(elem == OX_GGUF_STRING && count > 200000);
    const char *token;
    ASSERT_OK(ctx, ox_gguf_get_array_string(g, tokens, count - 1, &token, &len));

    size_t file_size;
    ox_gguf_file_data(g, &file_size);
    ASSERT(ox_gguf_tensor_count(g) > 0);
    uint64_t parameters = 0;
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        ASSERT_OK(ctx, ox_gguf_tensor_info_get(g, i, &info));
        ASSERT(info.file_offset + info.nbytes <= file_size);
        ASSERT(ox_gguf_find_tensor(g, info.name) == i);
        parameters += (uint64_t)info.nelements;
    }
    printf("  %s: %lld tensors, %llu parameters\n", path, (long long)ox_gguf_tensor_count(g),
           (unsigned long long)parameters);
    ASSERT(parameters > 250000000 && parameters < 300000000);
    ASSERT(ox_gguf_find_tensor(g, "token_embd.weight") >= 0);
    ox_gguf_close(g);
    ox_context_free(ctx);
}

/* Every tensor, dequantized row by row, gives finite values. */
OX_TEST(model_dequantize_all)
{
    const char *path = model_path();
    ox_context *ctx = new_context();
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open(ctx, path, &g));
    float *row = NULL;
    int64_t row_capacity = 0, values = 0;
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        ASSERT_OK(ctx, ox_gguf_tensor_info_get(g, i, &info));
        ox_dtype dtype;
        const void *data;
        size_t nbytes;
        ASSERT_OK(ctx, ox_gguf_tensor_data(g, i, &dtype, &data, &nbytes));
        int64_t n = info.ne[0], rows = info.nelements / n;
        size_t row_bytes = ox_dtype_row_size(dtype, n);
        ASSERT(row_bytes > 0 && row_bytes * (size_t)rows == nbytes);
        if (n > row_capacity) {
            free(row);
            row = malloc((size_t)n * sizeof *row);
            ASSERT(row != NULL);
            row_capacity = n;
        }
        for (int64_t r = 0; r < rows; r++) {
            ASSERT_OK(NULL, ox_row_to_f32(dtype, (const char *)data + (size_t)r * row_bytes, row, n));
            for (int64_t k = 0; k < n; k++)
                ASSERT_MSG(isfinite(row[k]), "tensor '%s' (%s) row %lld element %lld is %g",
                           info.name, info.type_name, (long long)r, (long long)k, row[k]);
        }
        values += info.nelements;
    }
    printf("  dequantized %lld values of %lld tensors, all finite\n", (long long)values,
           (long long)ox_gguf_tensor_count(g));
    free(row);
    ox_gguf_close(g);
    ox_context_free(ctx);
}

OX_TEST_MAIN(model_metadata, model_dequantize_all)
