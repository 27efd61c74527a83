/* Writes the seed corpus of the GGUF fuzz target (fuzz/corpus/gguf/): valid
 * files of versions 2 and 3 built with the writer, and broken variants of
 * them (truncated at many points, wrong magic, version 1, absurd counts,
 * offsets past the end, misaligned data, unknown types, nested arrays).
 * Usage: make_corpus DIR   The files are committed; rerun after a format
 * change. */
#include <stdio.h>

#include "../tests/gguf/gguf_sample.h"

static const char *out_dir;
static int written;

static int save(const char *name, const unsigned char *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        return 1;
    }
    written++;
    return 0;
}

static size_t find(const unsigned char *file, size_t size, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(file + i, needle, n) == 0) return i + n; /* just after it */
    fprintf(stderr, "make_corpus: '%s' not found\n", needle);
    exit(1);
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Save a copy of `file` with `bytes` bytes at `at` set to v. */
static int save_patched(const char *name, const unsigned char *file, size_t size, size_t at,
                        uint64_t v, int bytes)
{
    unsigned char *copy = malloc(size);
    memcpy(copy, file, size);
    put_le(copy + at, v, bytes);
    int failed = save(name, copy, size);
    free(copy);
    return failed;
}

/* A tiny file: one key, one f32 tensor. */
static int small_file(ox_context *ctx, uint32_t version, unsigned char **file, size_t *size)
{
    ox_gguf_writer *w;
    float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ne[2] = {4, 2};
    if (ox_gguf_writer_create(ctx, &w) != OX_OK) return 1;
    int failed = ox_gguf_writer_set_version(w, version) != OX_OK ||
                 ox_gguf_writer_add_string(w, "general.architecture", "tiny", 4) != OX_OK ||
                 ox_gguf_writer_add_tensor(w, "w", OX_GGML_TYPE_F32, 2, ne, data, sizeof data) !=
                     OX_OK ||
                 ox_gguf_writer_size(w, size) != OX_OK;
    if (!failed) {
        *file = malloc(*size);
        failed = ox_gguf_writer_write_memory(w, *file, *size) != OX_OK;
    }
    ox_gguf_writer_free(w);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    out_dir = argv[1];
    ox_context_options options = {.struct_size = sizeof options, .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx;
    if (ox_context_create(&options, &ctx) != OX_OK) return 1;

    unsigned char *v3, *v2, *a64, *tiny;
    size_t v3_size, v2_size, a64_size, tiny_size;
    int failed = sample_build(ctx, 3, 0, &v3, &v3_size) != OX_OK ||
                 sample_build(ctx, 2, 0, &v2, &v2_size) != OX_OK ||
                 sample_build(ctx, 3, 64, &a64, &a64_size) != OX_OK ||
                 small_file(ctx, 3, &tiny, &tiny_size);
    if (failed) {
        fprintf(stderr, "make_corpus: %s\n", ox_errmsg(ctx));
        return 1;
    }
    failed |= save("valid_v3", v3, v3_size);
    failed |= save("valid_v2", v2, v2_size);
    failed |= save("valid_align64", a64, a64_size);
    failed |= save("valid_tiny", tiny, tiny_size);

    /* Truncations: every byte of the tiny file's header, then a spread
     * over the sample. */
    char name[64];
    for (size_t n = 0; n < tiny_size; n += n < 96 ? 1 : 16) {
        snprintf(name, sizeof name, "trunc_tiny_%04zu", n);
        failed |= save(name, tiny, n);
    }
    for (size_t n = 24; n < v3_size; n += v3_size / 40) {
        snprintf(name, sizeof name, "trunc_v3_%05zu", n);
        failed |= save(name, v3, n);
    }
    failed |= save("empty", v3, 0);

    failed |= save_patched("bad_magic", v3, v3_size, 0, 0x4c4d4747u, 4); /* "GGML" */
    failed |= save_patched("bad_version1", v3, v3_size, 4, 1, 4);
    failed |= save_patched("bad_version_big_endian", v3, v3_size, 4, 0x03000000u, 4);
    failed |= save_patched("bad_version_99", v3, v3_size, 4, 99, 4);
    failed |= save_patched("bad_tensor_count", v3, v3_size, 8, UINT64_MAX, 8);
    failed |= save_patched("bad_kv_count", v3, v3_size, 16, UINT64_C(1) << 40, 8);
    failed |= save_patched("bad_kv_count_small", v3, v3_size, 16, 3, 8);

    size_t name_value = find(v3, v3_size, "general.name");
    failed |= save_patched("bad_value_type", v3, v3_size, name_value, 42, 4);
    failed |= save_patched("bad_string_length", v3, v3_size, name_value + 4, UINT64_MAX, 8);
    size_t ints = find(v3, v3_size, "test.ints");
    failed |= save_patched("bad_nested_array", v3, v3_size, ints + 4, 9, 4);
    failed |= save_patched("bad_array_count", v3, v3_size, ints + 8, UINT64_C(1) << 61, 8);
    size_t tokens = find(v3, v3_size, "tokenizer.ggml.tokens");
    failed |= save_patched("bad_string_array_count", v3, v3_size, tokens + 8, 1000000, 8);
    size_t flag = find(v3, v3_size, "test.bool");
    failed |= save_patched("bad_bool", v3, v3_size, flag + 4, 7, 1);
    size_t alignment = find(a64, a64_size, "general.alignment");
    failed |= save_patched("bad_alignment", a64, a64_size, alignment + 4, 24, 4);

    /* Tensor info of blk.0.ffn_up.weight (q4_k, 2 dims): n_dims, ne[2],
     * type, offset. */
    size_t t = find(v3, v3_size, "blk.0.ffn_up.weight");
    failed |= save_patched("bad_n_dims", v3, v3_size, t, 9, 4);
    failed |= save_patched("bad_dim_zero", v3, v3_size, t + 4, 0, 8);
    failed |= save_patched("bad_row_block", v3, v3_size, t + 4, 255, 8);
    failed |= save_patched("bad_dim_overflow", v3, v3_size, t + 12, UINT64_C(1) << 62, 8);
    failed |= save_patched("bad_type_unknown", v3, v3_size, t + 20, 1234, 4);
    failed |= save_patched("bad_type_removed", v3, v3_size, t + 20, 4, 4);
    failed |= save_patched("valid_type_q3_k_unsupported", v3, v3_size, t + 20, 11, 4);
    failed |= save_patched("bad_offset_past_end", v3, v3_size, t + 24, UINT64_C(1) << 32, 8);
    failed |= save_patched("bad_offset_misaligned", v3, v3_size, t + 24, 8, 8);
    failed |= save_patched("bad_offset_overlap", v3, v3_size, t + 24, 0, 8);
    failed |= save_patched("bad_offset_wrap", v3, v3_size, t + 24, UINT64_MAX - 31, 8);

    free(v3);
    free(v2);
    free(a64);
    free(tiny);
    ox_context_free(ctx);
    printf("make_corpus: wrote %d files to %s\n", written, out_dir);
    return failed;
}
