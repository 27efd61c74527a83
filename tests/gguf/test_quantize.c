/* ox_gguf_quantize (ox quantize): a llama-shaped model of 8 layers written
 * here in F32 goes through every preset, and the file that comes out is
 * checked against llama.cpp's rules as stated in llama-quant.cpp, restated
 * here by hand per tensor (which tensors convert, to which type: the _m
 * mixtures' "more bits" layers of 8 are 0, 3, 6 and 7), its blocks against
 * ox_row_from_f32 (itself checked byte for byte against ggml's quantizers
 * in tests/quant/test_quantize_ggml.c), its metadata against the input's.
 * Then what must not happen: a failure that leaves OUT changed or a
 * temporary file behind, a non-finite weight quantized silently, a thread
 * count that changes the bytes. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openxpu/openxpu.h>

#include "ox_test.h"
#include "test_helpers.h"

#define LAYERS 8
#define EMBD 256
#define ROWS 16 /* rows of every matrix: small files */

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/ox-test-quantize-XXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* Deterministic values in [-1, 1) for tensor number t. */
static float value(int t, int64_t i)
{
    uint64_t z = (uint64_t)t * 0x9e3779b97f4a7c15ull + (uint64_t)i * 0xbf58476d1ce4e5b9ull + 1;
    z ^= z >> 31;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 29;
    return (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
}

typedef struct model_spec {
    int tied;      /* no output.weight */
    int poison;    /* a NaN in blk.3.ffn_up.weight */
} model_spec;

static float *tensors_data[128];
static int n_tensors_data;

static void add(ox_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1, int n_dims)
{
    size_t n = (size_t)(ne0 * ne1);
    float *v = malloc(n * sizeof *v);
    ASSERT(v != NULL);
    for (size_t i = 0; i < n; i++) v[i] = value(n_tensors_data, (int64_t)i);
    tensors_data[n_tensors_data++] = v;
    int64_t ne[2] = {ne0, ne1};
    ASSERT_EQ(ox_gguf_writer_add_tensor(w, name, OX_GGML_TYPE_F32, (uint32_t)n_dims, ne, v,
                                        n * sizeof *v),
              OX_OK);
}

static void write_model(ox_context *ctx, const char *path, model_spec spec)
{
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    const char arch[] = "llama";
    uint32_t layers = LAYERS, ftype = 0, split = 1;
    const char *const tokens[] = {"a", "b", "d"};
    ASSERT_OK(ctx, ox_gguf_writer_add_string(w, "general.architecture", arch, strlen(arch)));
    ASSERT_OK(ctx, ox_gguf_writer_add_scalar(w, "llama.block_count", OX_GGUF_UINT32, &layers));
    ASSERT_OK(ctx, ox_gguf_writer_add_scalar(w, "general.file_type", OX_GGUF_UINT32, &ftype));
    ASSERT_OK(ctx, ox_gguf_writer_add_scalar(w, "split.count", OX_GGUF_UINT32, &split));
    ASSERT_OK(ctx, ox_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", tokens, 3));
    ASSERT_OK(ctx, ox_gguf_writer_add_string(w, "weird", "x\0y", 3)); /* a NUL inside */
    n_tensors_data = 0;
    add(w, "token_embd.weight", EMBD, ROWS, 2);
    char name[64];
    for (int l = 0; l < LAYERS; l++) {
        static const char *const mats[] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down"};
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        add(w, name, EMBD, 1, 1);
        for (int m = 0; m < 7; m++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[m]);
            add(w, name, EMBD, ROWS, 2);
            if (spec.poison && l == 3 && m == 5) tensors_data[n_tensors_data - 1][EMBD + 7] = NAN;
        }
    }
    add(w, "output_norm.weight", EMBD, 1, 1);
    add(w, "rows64.weight", 64, ROWS, 2); /* splits into 32, not 256 */
    add(w, "rows40.weight", 40, ROWS, 2); /* splits into neither */
    if (!spec.tied) add(w, "output.weight", EMBD, ROWS, 2);
    ASSERT_OK(ctx, ox_gguf_writer_write_file(w, path));
    ox_gguf_writer_free(w);
    for (int i = 0; i < n_tensors_data; i++) free(tensors_data[i]);
}

/* The type llama.cpp gives tensor `name` under `preset`, stated by hand. */
static const char *expected_type(const char *preset, const char *name, int tied)
{
    int layer = -1;
    sscanf(name, "blk.%d.", &layer);
    int more_bits = layer == 0 || layer == 3 || layer == 6 || layer == 7; /* of 8 layers */
    int km = strcmp(preset, "q4_k_m") == 0 || strcmp(preset, "q5_k_m") == 0;
    const char *base = strcmp(preset, "q4_k_m") == 0 ? "q4_k"
                       : strcmp(preset, "q5_k_m") == 0 ? "q5_k"
                                                        : preset;
    if (strstr(name, "_norm.weight")) return "f32";
    if (strcmp(base, "f16") == 0 || strcmp(base, "bf16") == 0) return base;
    if (strcmp(name, "rows40.weight") == 0) return "f16";
    if (strcmp(name, "rows64.weight") == 0) {
        if (strcmp(base, "q4_k") == 0) return "q5_0";
        if (strcmp(base, "q5_k") == 0) return "q5_1";
        if (strcmp(base, "q6_k") == 0) return "q8_0";
        return base;
    }
    if (strcmp(name, "output.weight") == 0 || (tied && strcmp(name, "token_embd.weight") == 0))
        return strcmp(base, "q8_0") == 0 ? "q8_0" : "q6_k";
    if (strstr(name, "attn_v.weight") || strstr(name, "ffn_down")) {
        if (km && more_bits) return "q6_k";
        if (strcmp(preset, "q4_k") == 0 && strstr(name, "attn_v") && layer < 4) return "q5_k";
        if (strcmp(preset, "q4_k") == 0 && strstr(name, "ffn_down") && layer < 1) return "q5_k";
    }
    return base;
}

static uint32_t file_type_of(const char *preset)
{
    static const struct {
        const char *name;
        uint32_t ftype;
    } t[] = {{"f16", 1},    {"bf16", 32},   {"q8_0", 7},    {"q4_0", 2},  {"q4_1", 3},
             {"q5_0", 8},   {"q5_1", 9},    {"q4_k", 14},   {"q4_k_m", 15}, {"q5_k", 16},
             {"q5_k_m", 17}, {"q6_k", 18}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].name, preset) == 0) return t[i].ftype;
    return 0;
}

static void check_output(ox_context *ctx, const char *in_path, const char *out_path,
                         const char *preset, int tied)
{
    ox_gguf *in, *out;
    ASSERT_OK(ctx, ox_gguf_open(ctx, in_path, &in));
    ASSERT_OK(ctx, ox_gguf_open(ctx, out_path, &out));
    ASSERT_EQ(ox_gguf_tensor_count(out), ox_gguf_tensor_count(in));
    for (int64_t i = 0; i < ox_gguf_tensor_count(in); i++) {
        ox_gguf_tensor_info a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
        ASSERT_OK(ctx, ox_gguf_tensor_info_get(in, i, &a));
        ASSERT_OK(ctx, ox_gguf_tensor_info_get(out, i, &b));
        ASSERT_STR_EQ(b.name, a.name);
        ASSERT_EQ(b.n_dims, a.n_dims);
        ASSERT_EQ(b.ne[0], a.ne[0]);
        ASSERT_EQ(b.ne[1], a.ne[1]);
        const char *want = expected_type(preset, a.name, tied);
        ASSERT_MSG(strcmp(b.type_name, want) == 0, "%s: %s under %s, llama.cpp gives %s", a.name,
                   b.type_name, preset, want);
        /* the bytes: each row as ox_row_from_f32 writes it */
        size_t row_out = b.nbytes / (size_t)a.ne[1];
        unsigned char *expect = malloc(row_out);
        ASSERT(expect != NULL);
        for (int64_t r = 0; r < a.ne[1]; r++) {
            const float *x = (const float *)a.data + r * a.ne[0];
            if (b.dtype == OX_DTYPE_F32) memcpy(expect, x, row_out);
            else ASSERT_EQ(ox_row_from_f32(b.dtype, x, expect, a.ne[0]), OX_OK);
            ASSERT_MSG(memcmp((const unsigned char *)b.data + (size_t)r * row_out, expect,
                              row_out) == 0,
                       "%s row %lld differs from ox_row_from_f32", a.name, (long long)r);
        }
        free(expect);
    }
    /* metadata: copied byte for byte, file type set, split keys gone */
    uint32_t ftype = 0, qv = 0;
    ASSERT_OK(ctx, ox_gguf_get_u32(out, ox_gguf_find(out, "general.file_type"), &ftype));
    ASSERT_EQ(ftype, file_type_of(preset));
    ASSERT_OK(ctx, ox_gguf_get_u32(out, ox_gguf_find(out, "general.quantization_version"), &qv));
    ASSERT_EQ(qv, 2u);
    ASSERT_EQ(ox_gguf_find(out, "split.count"), -1);
    const char *s;
    size_t n;
    ASSERT_OK(ctx, ox_gguf_get_string(out, ox_gguf_find(out, "weird"), &s, &n));
    ASSERT_EQ(n, 3u);
    ASSERT(memcmp(s, "x\0y", 3) == 0);
    ASSERT_OK(ctx, ox_gguf_get_array_string(out, ox_gguf_find(out, "tokenizer.ggml.tokens"), 1,
                                            &s, &n));
    ASSERT_EQ(n, 1u);
    ASSERT(s[0] == 'b');
    ox_gguf_close(in);
    ox_gguf_close(out);
}

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

static int leftovers(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".ox-tmp-") != NULL;
    if (d) closedir(d);
    return n;
}

OX_TEST(every_preset_as_llama_cpp)
{
    make_dir();
    ox_context *ctx = test_cpu_context();
    char in[300], out[300];
    path_of(in, sizeof in, "in.gguf");
    path_of(out, sizeof out, "out.gguf");
    write_model(ctx, in, (model_spec){0});
    for (int i = 0; ox_quantize_type_name(i); i++) {
        const char *preset = ox_quantize_type_name(i);
        if (strcmp(preset, "q4_k_s") == 0 || strcmp(preset, "q5_k_s") == 0) continue; /* aliases */
        ox_quantize_stats st = {.struct_size = sizeof st};
        ASSERT_OK(ctx, ox_gguf_quantize(ctx, in, out, preset, NULL, &st));
        ASSERT_EQ(st.tensors, 1 + LAYERS * 8 + 1 + 3);
        check_output(ctx, in, out, preset, 0);
    }
    ASSERT_EQ(leftovers(), 0);
    ox_context_free(ctx);
    remove_dir();
}

OX_TEST(tied_embeddings_take_the_output_type)
{
    make_dir();
    ox_context *ctx = test_cpu_context();
    char in[300], out[300];
    path_of(in, sizeof in, "in.gguf");
    path_of(out, sizeof out, "out.gguf");
    write_model(ctx, in, (model_spec){.tied = 1});
    ASSERT_OK(ctx, ox_gguf_quantize(ctx, in, out, "Q4_K_M", NULL, NULL)); /* any case */
    check_output(ctx, in, out, "q4_k_m", 1);
    ox_context_free(ctx);
    remove_dir();
}

static void count_tensor(void *user, const ox_quantize_tensor *t)
{
    int *n = user;
    ASSERT(t->struct_size == sizeof *t && t->count > t->index && t->done_bytes <= t->total_bytes);
    (*n)++;
}

OX_TEST(threads_do_not_change_the_bytes_and_dry_run_writes_nothing)
{
    make_dir();
    ox_context *ctx = test_cpu_context();
    char in[300], a[300], b[300], c[300];
    path_of(in, sizeof in, "in.gguf");
    path_of(a, sizeof a, "a.gguf");
    path_of(b, sizeof b, "b.gguf");
    path_of(c, sizeof c, "c.gguf");
    write_model(ctx, in, (model_spec){0});
    ox_quantize_options one = {.struct_size = sizeof one, .threads = 1};
    ox_quantize_options many = {.struct_size = sizeof many, .threads = 3};
    ASSERT_OK(ctx, ox_gguf_quantize(ctx, in, a, "q5_k_m", &one, NULL));
    ASSERT_OK(ctx, ox_gguf_quantize(ctx, in, b, "q5_k_m", &many, NULL));
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    ASSERT(fa && fb);
    int ca, cb;
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
        ASSERT_EQ(ca, cb);
    } while (ca != EOF);
    fclose(fa);
    fclose(fb);
    int seen = 0;
    ox_quantize_options dry = {.struct_size = sizeof dry, .flags = OX_QUANTIZE_DRY_RUN,
                               .progress = count_tensor, .user = &seen};
    ASSERT_OK(ctx, ox_gguf_quantize(ctx, in, c, "q4_0", &dry, NULL));
    ASSERT_EQ(seen, 1 + LAYERS * 8 + 1 + 3);
    ASSERT(access(c, F_OK) != 0);
    ox_context_free(ctx);
    remove_dir();
}

/* OUT holds `text`: a failed run must leave it so. */
static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void assert_text(const char *path, const char *text)
{
    char buf[64] = "";
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    ASSERT_STR_EQ(buf, text);
}

OX_TEST(failures_name_the_problem_and_leave_out_alone)
{
    make_dir();
    ox_context *ctx = test_cpu_context();
    char in[300], bad[300], out[300], missing[300], nodir[300];
    path_of(in, sizeof in, "poisoned.gguf");
    path_of(bad, sizeof bad, "not-a-model.gguf");
    path_of(out, sizeof out, "out.gguf");
    path_of(missing, sizeof missing, "missing.gguf");
    path_of(nodir, sizeof nodir, "no/such/dir/out.gguf");
    write_model(ctx, in, (model_spec){.poison = 1});
    write_text(bad, "this is not a GGUF file");
    write_text(out, "the old file");

    ASSERT_EQ(ox_gguf_quantize(ctx, in, out, "q4_k_m", NULL, NULL), OX_ERR_FORMAT);
    ASSERT_CONTAINS(ox_errmsg(ctx), "blk.3.ffn_up.weight");
    ASSERT_CONTAINS(ox_errmsg(ctx), "nan at row 1, column 7");
    ASSERT_CONTAINS(ox_errmsg(ctx), out); /* OUT named, not the temporary file */
    ASSERT(strstr(ox_errmsg(ctx), ".ox-tmp-") == NULL);
    assert_text(out, "the old file");

    ASSERT_EQ(ox_gguf_quantize(ctx, in, out, "q3_k_m", NULL, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "unknown type 'q3_k_m'");
    ASSERT_CONTAINS(ox_errmsg(ctx), "q4_k_m");

    ASSERT_EQ(ox_gguf_quantize(ctx, bad, out, "q8_0", NULL, NULL), OX_ERR_FORMAT);
    ASSERT_CONTAINS(ox_errmsg(ctx), "not-a-model.gguf");
    ASSERT_EQ(ox_gguf_quantize(ctx, missing, out, "q8_0", NULL, NULL), OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "missing.gguf");
    assert_text(out, "the old file");

    char good[300];
    path_of(good, sizeof good, "good.gguf");
    write_model(ctx, good, (model_spec){0});
    ASSERT_EQ(ox_gguf_quantize(ctx, good, nodir, "q8_0", NULL, NULL), OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "no/such/dir");
    ox_quantize_options small = {.struct_size = 4};
    ASSERT_EQ(ox_gguf_quantize(ctx, good, out, "q8_0", &small, NULL), OX_ERR_INVALID);
    ASSERT_EQ(ox_gguf_quantize(ctx, NULL, out, "q8_0", NULL, NULL), OX_ERR_INVALID);
    assert_text(out, "the old file");
    ASSERT_EQ(leftovers(), 0);
    /* and a good run replaces it */
    ASSERT_OK(ctx, ox_gguf_quantize(ctx, good, out, "q8_0", NULL, NULL));
    check_output(ctx, good, out, "q8_0", 0);
    ox_context_free(ctx);
    remove_dir();
}

OX_TEST_MAIN(every_preset_as_llama_cpp, tied_embeddings_take_the_output_type,
             threads_do_not_change_the_bytes_and_dry_run_writes_nothing,
             failures_name_the_problem_and_leave_out_alone)
