/* Tests of bench/make_model (the random-weight benchmark models): a
 * 2-layer model of each weight type written, read back with the GGUF
 * reader (metadata, shapes, types as asked) and loaded with ox_model_load
 * on the CPU, whose logits for a few tokens are finite; qwen2's padded
 * vocabulary, biases and tied output; the same bytes for the same seed
 * whatever the threads; presets; bad arguments refused with exit status 2
 * and a message naming the problem. */
#include <sys/stat.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "run_ox.h"

typedef struct fixture {
    char dir[256];
    const char *bin; /* make_model */
    ox_context *ctx;
} fixture;

static void open_fixture(fixture *fx)
{
    fx->bin = getenv("OX_MAKE_MODEL");
    if (!fx->bin || !*fx->bin) OX_SKIP("make_model was not built (OX_BUILD_BENCH=OFF)");
    snprintf(fx->dir, sizeof fx->dir, "/tmp/ox_test_make_model_XXXXXX");
    ASSERT(mkdtemp(fx->dir) != NULL);
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS,
                            .log_level = OX_LOG_OFF};
    ASSERT_OK(NULL, ox_context_create(&o, &fx->ctx));
}

static void close_fixture(fixture *fx)
{
    ox_context_free(fx->ctx);
    ASSERT(rmdir(fx->dir) == 0);
}

static void path_in(const fixture *fx, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fx->dir, name);
}

/* make_model ARGS... (ends with NULL): exit status, stderr in `err`. */
#define MAKE_MODEL(fx, ...) run_program((char *const[]){(char *)(fx)->bin, __VA_ARGS__, NULL})

static int64_t meta_int(const ox_gguf *g, const char *key)
{
    int64_t i = ox_gguf_find(g, key), v = -1;
    ASSERT_MSG(i >= 0, "no key %s", key);
    ASSERT(ox_gguf_get_int(g, i, &v) == OX_OK);
    return v;
}

static void expect_string(const ox_gguf *g, const char *key, const char *expected)
{
    int64_t i = ox_gguf_find(g, key);
    ASSERT_MSG(i >= 0, "no key %s", key);
    const char *data;
    size_t size;
    ASSERT(ox_gguf_get_string(g, i, &data, &size) == OX_OK);
    ASSERT_MSG(size == strlen(expected) && memcmp(data, expected, size) == 0,
               "%s: '%.*s', expected '%s'", key, (int)size, data, expected);
}

/* Tensor `name` is ne0 x ne1 of ggml type `type`. */
static void expect_tensor(const ox_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                          const char *type)
{
    int64_t i = ox_gguf_find_tensor(g, name);
    ASSERT_MSG(i >= 0, "no tensor %s", name);
    ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
    ASSERT(ox_gguf_tensor_info_get(g, i, &ti) == OX_OK);
    ASSERT_MSG(ti.ne[0] == ne0 && ti.ne[1] == ne1 && strcmp(ti.type_name, type) == 0,
               "%s: %lld x %lld %s, expected %lld x %lld %s", name, (long long)ti.ne[0],
               (long long)ti.ne[1], ti.type_name, (long long)ne0, (long long)ne1, type);
}

/* Load `path` on the CPU, check its hyper-parameters, evaluate 4 tokens
 * and check the logits: finite, and not all the same. */
static void load_and_eval(fixture *fx, const char *path, int layers, int embd, int ffn, int heads,
                          int kv_heads, int vocab)
{
    ox_device *cpu;
    int n;
    ASSERT_OK(fx->ctx, ox_device_select(fx->ctx, "cpu", &cpu, 1, &n));
    ox_model *model;
    ASSERT_OK(fx->ctx, ox_model_load(cpu, path, &model));
    ox_model_info info = {.struct_size = sizeof info};
    ASSERT_OK(fx->ctx, ox_model_get_info(model, &info));
    ASSERT_EQ(info.n_layer, layers);
    ASSERT_EQ(info.n_embd, embd);
    ASSERT_EQ(info.n_ff, ffn);
    ASSERT_EQ(info.n_head, heads);
    ASSERT_EQ(info.n_head_kv, kv_heads);
    ASSERT_EQ(info.head_dim, embd / heads);
    ASSERT_EQ(info.n_vocab, vocab);
    ox_session *session;
    ASSERT_OK(fx->ctx, ox_session_create(model, 16, &session));
    float *logits = malloc((size_t)vocab * sizeof *logits);
    ASSERT(logits != NULL);
    const int32_t tokens[4] = {1, 450, 4996, vocab - 1};
    ASSERT_OK(fx->ctx, ox_session_eval(session, tokens, 4, logits));
    ASSERT_OK(fx->ctx, ox_session_eval(session, &tokens[2], 1, logits));
    float lo = logits[0], hi = logits[0];
    for (int i = 0; i < vocab; i++) {
        ASSERT_MSG(isfinite(logits[i]), "logit %d is %g", i, (double)logits[i]);
        lo = fminf(lo, logits[i]);
        hi = fmaxf(hi, logits[i]);
    }
    ASSERT_MSG(hi - lo > 0.1f, "the logits span only %g", (double)(hi - lo));
    free(logits);
    ox_session_free(session);
    ox_model_free(model);
}

/* A 2-layer llama of every weight type: what was asked is what the file
 * says, and it runs. */
OX_TEST(llama_each_type)
{
    fixture fx;
    open_fixture(&fx);
    static const struct {
        const char *type;
        int file_type; /* llama.cpp's general.file_type */
    } types[] = {{"f16", 1}, {"q8_0", 7}, {"q4_0", 2}, {"q4_k", 14}, {"q6_k", 18}};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        char path[512];
        path_in(&fx, "llama.gguf", path, sizeof path);
        ox_run *r = MAKE_MODEL(&fx, "--arch", "llama", "--layers", "2", "--embd", "256", "--ffn",
                               "512", "--heads", "4", "--kv-heads", "2", "--ctx", "2048",
                               "--type", (char *)types[t].type, "--threads", "2", path);
        ASSERT_MSG(r->status == 0, "make_model --type %s: exit %d: %s", types[t].type, r->status,
                   r->err);
        ASSERT_CONTAINS(r->out, "2 layers x 256");
        free(r);

        ox_gguf *g;
        ASSERT_OK(fx.ctx, ox_gguf_open(fx.ctx, path, &g));
        expect_string(g, "general.architecture", "llama");
        ASSERT_EQ(meta_int(g, "llama.block_count"), 2);
        ASSERT_EQ(meta_int(g, "llama.context_length"), 2048);
        ASSERT_EQ(meta_int(g, "llama.embedding_length"), 256);
        ASSERT_EQ(meta_int(g, "llama.feed_forward_length"), 512);
        ASSERT_EQ(meta_int(g, "llama.attention.head_count"), 4);
        ASSERT_EQ(meta_int(g, "llama.attention.head_count_kv"), 2);
        ASSERT_EQ(meta_int(g, "llama.rope.dimension_count"), 64);
        ASSERT_EQ(meta_int(g, "general.file_type"), types[t].file_type);
        ASSERT(ox_gguf_find(g, "llama.rope.freq_base") >= 0);
        ASSERT(ox_gguf_find(g, "llama.attention.layer_norm_rms_epsilon") >= 0);
        expect_string(g, "tokenizer.ggml.model", "llama");
        ox_gguf_type elem;
        uint64_t count;
        ASSERT_OK(fx.ctx, ox_gguf_get_array(g, ox_gguf_find(g, "tokenizer.ggml.tokens"), &elem,
                                            &count));
        ASSERT_EQ(count, 32000);
        const char *ty = types[t].type;
        expect_tensor(g, "token_embd.weight", 256, 32000, ty);
        expect_tensor(g, "output.weight", 256, 32000, ty);
        expect_tensor(g, "output_norm.weight", 256, 1, "f32");
        expect_tensor(g, "blk.1.attn_norm.weight", 256, 1, "f32");
        expect_tensor(g, "blk.1.attn_q.weight", 256, 256, ty);
        expect_tensor(g, "blk.1.attn_k.weight", 256, 128, ty);
        expect_tensor(g, "blk.1.attn_v.weight", 256, 128, ty);
        expect_tensor(g, "blk.1.attn_output.weight", 256, 256, ty);
        expect_tensor(g, "blk.1.ffn_norm.weight", 256, 1, "f32");
        expect_tensor(g, "blk.1.ffn_gate.weight", 256, 512, ty);
        expect_tensor(g, "blk.1.ffn_up.weight", 256, 512, ty);
        expect_tensor(g, "blk.1.ffn_down.weight", 512, 256, ty);
        ASSERT_EQ(ox_gguf_tensor_count(g), 2 + 2 * 9 + 1);
        ASSERT(ox_gguf_find_tensor(g, "blk.0.attn_q.bias") < 0);
        ox_gguf_close(g);

        load_and_eval(&fx, path, 2, 256, 512, 4, 2, 32000);
        ASSERT(unlink(path) == 0);
    }
    close_fixture(&fx);
}

/* qwen2: the gpt-2 vocabulary with the qwen2 pre-tokenizer, padded with
 * unused [PADn] tokens; biases on q, k, v; output tied to token_embd;
 * k-quant rows of 320 fall back to q8_0 (q6_k's fallback). */
OX_TEST(qwen2_padded_vocabulary)
{
    fixture fx;
    open_fixture(&fx);
    char path[512];
    path_in(&fx, "qwen.gguf", path, sizeof path);
    ox_run *r = MAKE_MODEL(&fx, "--preset", "qwen-like", "--layers", "2", "--embd", "320",
                           "--ffn", "512", "--heads", "5", "--kv-heads", "1", "--vocab", "50304",
                           "--type", "q6_k", path);
    ASSERT_MSG(r->status == 0, "make_model: exit %d: %s", r->status, r->err);
    ASSERT_CONTAINS(r->err, "those matrices are q8_0");
    free(r);
    ox_gguf *g;
    ASSERT_OK(fx.ctx, ox_gguf_open(fx.ctx, path, &g));
    expect_string(g, "general.architecture", "qwen2");
    expect_string(g, "tokenizer.ggml.model", "gpt2");
    expect_string(g, "tokenizer.ggml.pre", "qwen2");
    ASSERT_EQ(meta_int(g, "qwen2.block_count"), 2);
    ASSERT_EQ(meta_int(g, "qwen2.attention.head_count_kv"), 1);
    int64_t tokens = ox_gguf_find(g, "tokenizer.ggml.tokens");
    int64_t types = ox_gguf_find(g, "tokenizer.ggml.token_type");
    ox_gguf_type elem;
    uint64_t count;
    ASSERT_OK(fx.ctx, ox_gguf_get_array(g, tokens, &elem, &count));
    ASSERT_EQ(count, 50304);
    ASSERT_OK(fx.ctx, ox_gguf_get_array(g, types, &elem, &count));
    ASSERT_EQ(count, 50304);
    const char *text;
    size_t len;
    ASSERT_OK(fx.ctx, ox_gguf_get_array_string(g, tokens, 50256, &text, &len));
    ASSERT(len == 13 && memcmp(text, "<|endoftext|>", 13) == 0);
    ASSERT_OK(fx.ctx, ox_gguf_get_array_string(g, tokens, 50300, &text, &len));
    ASSERT(len == 10 && memcmp(text, "[PAD50300]", 10) == 0);
    int64_t type;
    ASSERT_OK(fx.ctx, ox_gguf_get_array_int(g, types, 50300, &type));
    ASSERT_EQ(type, 5); /* unused */
    expect_tensor(g, "token_embd.weight", 320, 50304, "q8_0");
    expect_tensor(g, "blk.0.attn_q.bias", 320, 1, "f32");
    expect_tensor(g, "blk.0.attn_k.bias", 64, 1, "f32");
    expect_tensor(g, "blk.0.attn_v.bias", 64, 1, "f32");
    expect_tensor(g, "blk.0.ffn_down.weight", 512, 320, "q6_k");
    ASSERT(ox_gguf_find_tensor(g, "output.weight") < 0);
    ox_gguf_close(g);
    load_and_eval(&fx, path, 2, 320, 512, 5, 1, 50304);
    ASSERT(unlink(path) == 0);
    close_fixture(&fx);
}

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    *size = file_size(f);
    return read_all(f);
}

/* The same arguments give the same bytes whatever the threads; another
 * seed gives other weights. */
OX_TEST(same_seed_same_file)
{
    fixture fx;
    open_fixture(&fx);
    char a[512], b[512];
    path_in(&fx, "a.gguf", a, sizeof a);
    path_in(&fx, "b.gguf", b, sizeof b);
#define SMALL "--layers", "1", "--embd", "256", "--ffn", "256", "--heads", "2", "--type", "q4_k"
    ox_run *r = MAKE_MODEL(&fx, SMALL, "--threads", "1", "--seed", "5", a);
    ASSERT_MSG(r->status == 0, "%s", r->err);
    free(r);
    r = MAKE_MODEL(&fx, SMALL, "--threads", "3", "--seed", "5", b);
    ASSERT_MSG(r->status == 0, "%s", r->err);
    free(r);
    size_t na, nb;
    char *da = read_file(a, &na), *db = read_file(b, &nb);
    ASSERT(na == nb && memcmp(da, db, na) == 0);
    free(db);
    r = MAKE_MODEL(&fx, SMALL, "--seed", "6", b);
    ASSERT_MSG(r->status == 0, "%s", r->err);
    free(r);
#undef SMALL
    db = read_file(b, &nb);
    ASSERT(na == nb && memcmp(da, db, na) != 0);
    free(da);
    free(db);
    ASSERT(unlink(a) == 0 && unlink(b) == 0);
    close_fixture(&fx);
}

/* A preset's shape, with one option changed after it. */
OX_TEST(preset_then_option)
{
    fixture fx;
    open_fixture(&fx);
    char path[512];
    path_in(&fx, "preset.gguf", path, sizeof path);
    ox_run *r = MAKE_MODEL(&fx, "--preset", "llama-852m", "--layers", "1", "--type", "q4_0", path);
    ASSERT_MSG(r->status == 0, "%s", r->err);
    ASSERT_CONTAINS(r->out,
                    "llama-852m, llama, 1 layers x 2048, FFN 5632, 32/8 heads, vocab 32000");
    free(r);
    ox_gguf *g;
    ASSERT_OK(fx.ctx, ox_gguf_open(fx.ctx, path, &g));
    ASSERT_EQ(meta_int(g, "llama.block_count"), 1);
    ASSERT_EQ(meta_int(g, "llama.attention.head_count"), 32);
    expect_tensor(g, "blk.0.attn_k.weight", 2048, 512, "q4_0");
    expect_tensor(g, "blk.0.ffn_down.weight", 5632, 2048, "q4_0");
    ox_gguf_close(g);
    ASSERT(unlink(path) == 0);
    close_fixture(&fx);
}

/* Exit status 2, `needle` in the message, no file left behind. */
static void expect_usage_error(fixture *fx, ox_run *r, const char *needle)
{
    ASSERT_MSG(r->status == 2, "exit %d, expected 2 (%s): %s", r->status, needle, r->err);
    ASSERT_CONTAINS(r->err, needle);
    ASSERT_CONTAINS(r->err, "make_model --help");
    char path[512];
    struct stat st;
    path_in(fx, "bad.gguf", path, sizeof path);
    ASSERT_MSG(stat(path, &st) != 0, "a file was written for a bad argument (%s)", needle);
    free(r);
}

OX_TEST(bad_arguments)
{
    fixture fx;
    open_fixture(&fx);
    char out[512];
    path_in(&fx, "bad.gguf", out, sizeof out);
#define SHAPE "--layers", "2", "--embd", "256", "--ffn", "512", "--heads", "4"
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE), "which file?");
    expect_usage_error(&fx, MAKE_MODEL(&fx, "--layers", "2", out), "the model's shape is missing");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--type", "q3_k", out),
                       "--type: 'q3_k' is not one of");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--arch", "gpt2", out),
                       "--arch: 'gpt2' is not llama or qwen2");
    expect_usage_error(&fx, MAKE_MODEL(&fx, "--preset", "llama-7b", out),
                       "unknown preset 'llama-7b'");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--layers", "0", out),
                       "--layers: '0' is not a whole number from 1");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--heads", "3", out),
                       "--embd 256 is not a multiple of --heads 3");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--kv-heads", "3", out),
                       "--heads 4 is not a multiple of --kv-heads 3");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--ffn", "100", "--type", "q4_0", out),
                       "--ffn 100 is not a multiple of 32, the block of q4_0");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--vocab", "1000", out),
                       "--vocab 1000 is smaller than the 32000 tokens");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--vocab-file", "/nonexistent.gguf", out),
                       "/nonexistent.gguf");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--embd"), "--embd needs a value");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, "--frobnicate", "1", out),
                       "unknown option --frobnicate");
    expect_usage_error(&fx, MAKE_MODEL(&fx, SHAPE, out, "other.gguf"), "one output file only");
#undef SHAPE
    ox_run *r = MAKE_MODEL(&fx, "--help");
    ASSERT_EQ(r->status, 0);
    ASSERT_CONTAINS(r->out, "llama-852m");
    free(r);
    close_fixture(&fx);
}

OX_TEST_MAIN(llama_each_type, qwen2_padded_vocabulary, same_seed_same_file, preset_then_option,
             bad_arguments)
