/* Tiny GGUF models with deterministic random weights, for checking the
 * llama, qwen2 and qwen3 graph builders against llama.cpp without
 * committing model files: tests/llm/test_tiny_models.c writes them at run
 * time, scripts/peer-reference-tiny.sh (through make_tiny_model) writes
 * the same bytes for llama.cpp.
 *
 * Every model: 2 blocks, n_embd 64, 4 query heads and 2 KV heads of 16,
 * feed-forward 128, context 256, llama.cpp's tensor names and metadata
 * types; the vocabulary is copied from one of tests/data/tokenizer's
 * files. What differs per architecture is what its builder must get
 * right:
 *
 *   llama  SentencePiece vocabulary, rope on adjacent pairs, base 1e4,
 *          its own output matrix, ffn_down in Q8_0 (a quantized weight)
 *   qwen2  byte-level BPE (gpt-2), rope on split halves, base 1e6,
 *          biases on q, k and v, output tied to token_embd
 *   qwen3  byte-level BPE (starcoder), rope on split halves, base 1e6,
 *          rms-norms on each q and k head, output tied to token_embd
 *
 * Weights are uniform in [-1, 1) from 24-bit integers of splitmix64 seeded
 * by the tensor's name and the architecture's seed, times a scale: the same
 * file on every machine, and a bias or gain can change without moving any
 * other tensor. */
#ifndef OX_TESTS_TINY_MODEL_H
#define OX_TESTS_TINY_MODEL_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"

#define TINY_N_EMBD 64
#define TINY_N_LAYER 2
#define TINY_N_HEAD 4
#define TINY_N_HEAD_KV 2
#define TINY_HEAD_DIM 16
#define TINY_N_FF 128
#define TINY_N_CTX 256
#define TINY_MAX_TENSORS 64

typedef struct tiny_arch {
    const char *arch;
    const char *vocab;       /* file name in tests/data/tokenizer */
    const char *pre;         /* tokenizer.ggml.pre written, NULL: the vocab's own */
    uint64_t seed;           /* of every weight; see tiny_archs */
    float rope_base;
    bool rope_dimension_key; /* write ARCH.rope.dimension_count */
    bool output;             /* own output.weight, else tied to token_embd */
    bool qkv_bias;
    bool qk_norm;            /* also writes attention.key_length/value_length */
    uint32_t ffn_down_type;  /* OX_GGML_TYPE_* */
} tiny_arch;

/* Each seed is, of 1 to 12, the one whose model keeps llama.cpp's two best
 * logits furthest apart over the 96 greedy steps of tests/data/tiny (at
 * least 0.023, 0.019, 0.024; most seeds have a step near 1e-3): a tie that
 * close could go either way in a correct implementation and end the
 * comparison there. */
static const tiny_arch tiny_archs[] = {
    {"llama", "ggml-vocab-llama-spm.gguf", NULL, 12, 10000.0f, true, true, false, false,
     OX_GGML_TYPE_Q8_0},
    {"qwen2", "ggml-vocab-gpt-2.gguf", "qwen2", 9, 1000000.0f, false, false, true, false,
     OX_GGML_TYPE_F32},
    {"qwen3", "ggml-vocab-starcoder.gguf", "qwen2", 7, 1000000.0f, false, false, false, true,
     OX_GGML_TYPE_F32},
};
#define TINY_ARCH_COUNT (sizeof tiny_archs / sizeof tiny_archs[0])

/* The architecture named `arch`, or NULL. */
static inline const tiny_arch *tiny_model_arch(const char *arch)
{
    for (size_t i = 0; i < TINY_ARCH_COUNT; i++)
        if (strcmp(tiny_archs[i].arch, arch) == 0) return &tiny_archs[i];
    return NULL;
}

/* Scales, chosen by running llama.cpp on the result (tests/data/tiny/README.md):
 * matrices are uniform in ±sqrt(3 / fan_in) * gain, so a gain of 1 keeps
 * the variance of a unit-variance input. With every gain 1 the sub-layers
 * add little to the embedding (±1), so the tied models (qwen2, qwen3) see
 * the last token's own embedding in the residual and repeat one token from
 * the first steps on, and llama's logits spread by only 1. With these, the
 * first-step logits have a standard deviation of 4 to 4.8 and greedy
 * decoding runs 32 steps without settling on one token. */
#define TINY_GAIN_QK 2.0f
#define TINY_GAIN_V 1.0f
#define TINY_GAIN_O 2.0f
#define TINY_GAIN_FFN_IN 2.0f
#define TINY_GAIN_FFN_DOWN 2.0f
#define TINY_GAIN_OUTPUT 4.0f

/* ---- deterministic values ------------------------------------------------- */

static inline uint64_t tiny_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* FNV-1a of the name, mixed with the model's seed: one stream per tensor. */
static inline uint64_t tiny_seed(const char *name, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ^ seed;
}

/* n values offset + scale * x, x uniform in [-1, 1). x = k / 2^23 - 1 for a
 * 24-bit integer k is exact in float, and scale * x is exact in double, so
 * the sum rounds the same way whether or not the compiler fuses it into
 * an FMA: the same bits on every machine. */
static inline void tiny_fill(float *dst, size_t n, const char *name, uint64_t seed, float offset,
                             float scale)
{
    uint64_t state = tiny_seed(name, seed);
    for (size_t i = 0; i < n; i++) {
        float x = (float)(int32_t)(tiny_splitmix64(&state) >> 40) / 8388608.0f - 1.0f;
        dst[i] = (float)((double)offset + (double)scale * (double)x);
    }
}

/* ---- errors ------------------------------------------------------------------ */

/* Failures of this file's own (not of an ox_ call) are described here. */
static char tiny_model_error[512];

__attribute__((format(printf, 2, 3)))
static inline ox_status tiny_fail(ox_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tiny_model_error, sizeof tiny_model_error, fmt, ap);
    va_end(ap);
    return s;
}

/* The message for the last failure of tiny_model_write on `ctx`. */
static inline const char *tiny_model_errmsg(ox_context *ctx)
{
    return tiny_model_error[0] ? tiny_model_error : ox_errmsg(ctx);
}

/* ---- the tokenizer, copied from a vocabulary file -------------------------- */

static inline size_t tiny_scalar_size(ox_gguf_type type)
{
    switch (type) {
    case OX_GGUF_UINT8: case OX_GGUF_INT8: case OX_GGUF_BOOL: return 1;
    case OX_GGUF_UINT16: case OX_GGUF_INT16: return 2;
    case OX_GGUF_UINT32: case OX_GGUF_INT32: case OX_GGUF_FLOAT32: return 4;
    case OX_GGUF_UINT64: case OX_GGUF_INT64: case OX_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* One scalar pair: read it with the getter of its width, store it in its
 * own host type for the writer. */
static inline ox_status tiny_copy_scalar(const ox_gguf *g, int64_t i, ox_gguf_writer *w,
                                         const char *key, ox_gguf_type type)
{
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        uint64_t u64; int64_t i64; float f32; double f64; bool b;
    } v;
    int64_t wide = 0;
    ox_status s = OX_OK;
    switch (type) {
    case OX_GGUF_UINT64: s = ox_gguf_get_u64(g, i, &v.u64); break;
    case OX_GGUF_FLOAT32: s = ox_gguf_get_f32(g, i, &v.f32); break;
    case OX_GGUF_FLOAT64: s = ox_gguf_get_f64(g, i, &v.f64); break;
    case OX_GGUF_BOOL: s = ox_gguf_get_bool(g, i, &v.b); break;
    default:
        s = ox_gguf_get_int(g, i, &wide);
        if (type == OX_GGUF_UINT8) v.u8 = (uint8_t)wide;
        else if (type == OX_GGUF_INT8) v.i8 = (int8_t)wide;
        else if (type == OX_GGUF_UINT16) v.u16 = (uint16_t)wide;
        else if (type == OX_GGUF_INT16) v.i16 = (int16_t)wide;
        else if (type == OX_GGUF_UINT32) v.u32 = (uint32_t)wide;
        else if (type == OX_GGUF_INT32) v.i32 = (int32_t)wide;
        else v.i64 = wide;
    }
    return s ? s : ox_gguf_writer_add_scalar(w, key, type, &v);
}

/* One array pair. Numeric arrays may be unaligned in the mapping, so they
 * are copied out; strings are NUL-terminated copies in one block. */
static inline ox_status tiny_copy_array(const ox_gguf *g, int64_t i, ox_gguf_writer *w,
                                        const char *key)
{
    ox_gguf_type elem;
    uint64_t count;
    ox_status s = ox_gguf_get_array(g, i, &elem, &count);
    if (s) return s;
    if (elem != OX_GGUF_STRING) {
        const void *data;
        size_t bytes = (size_t)count * tiny_scalar_size(elem);
        void *copy = malloc(bytes ? bytes : 1);
        if (!copy) return tiny_fail(OX_ERR_OUT_OF_MEMORY, "%s: out of memory", key);
        s = ox_gguf_get_array_data(g, i, &data);
        if (s == OX_OK) {
            memcpy(copy, data, bytes);
            s = ox_gguf_writer_add_array(w, key, elem, copy, count);
        }
        free(copy);
        return s;
    }
    size_t total = 0, len;
    const char *text;
    for (uint64_t j = 0; j < count && s == OX_OK; j++) {
        s = ox_gguf_get_array_string(g, i, j, &text, &len);
        total += len + 1;
    }
    const char **strings = malloc((size_t)count * sizeof *strings + 1);
    char *block = malloc(total + 1);
    if (s == OX_OK && (!strings || !block))
        s = tiny_fail(OX_ERR_OUT_OF_MEMORY, "%s: out of memory", key);
    char *p = block;
    for (uint64_t j = 0; j < count && s == OX_OK; j++) {
        s = ox_gguf_get_array_string(g, i, j, &text, &len);
        memcpy(p, text, len);
        p[len] = '\0';
        strings[j] = p;
        p += len + 1;
    }
    if (s == OX_OK) s = ox_gguf_writer_add_string_array(w, key, strings, count);
    free(block);
    free(strings);
    return s;
}

/* Every tokenizer.* pair of `vocab_path`, with tokenizer.ggml.pre set to
 * `pre` when it is not NULL. */
static inline ox_status tiny_copy_tokenizer(ox_context *ctx, const char *vocab_path,
                                            const char *pre, ox_gguf_writer *w)
{
    ox_gguf *g;
    ox_status s = ox_gguf_open(ctx, vocab_path, &g);
    if (s) return s;
    bool wrote_pre = false;
    for (int64_t i = 0; i < ox_gguf_kv_count(g) && s == OX_OK; i++) {
        const char *key = ox_gguf_kv_key(g, i);
        ox_gguf_type type = ox_gguf_kv_type(g, i);
        if (strncmp(key, "tokenizer.", 10) != 0) continue;
        if (pre && strcmp(key, "tokenizer.ggml.pre") == 0) {
            s = ox_gguf_writer_add_string(w, key, pre, strlen(pre));
            wrote_pre = true;
        } else if (type == OX_GGUF_STRING) {
            const char *data;
            size_t size;
            s = ox_gguf_get_string(g, i, &data, &size);
            if (s == OX_OK) s = ox_gguf_writer_add_string(w, key, data, size);
        } else if (type == OX_GGUF_ARRAY) {
            s = tiny_copy_array(g, i, w, key);
        } else {
            s = tiny_copy_scalar(g, i, w, key, type);
        }
    }
    if (s == OX_OK && pre && !wrote_pre)
        s = ox_gguf_writer_add_string(w, "tokenizer.ggml.pre", pre, strlen(pre));
    ox_gguf_close(g);
    return s;
}

/* ---- tensors ------------------------------------------------------------------ */

/* Tensor data lives until the writer has written the file. */
typedef struct tiny_tensors {
    uint64_t seed;
    void *data[TINY_MAX_TENSORS];
    int count;
} tiny_tensors;

/* Q8_0 blocks as this generator has always written them (the scale's
 * inverse taken from the rounded half, codes rounded to nearest even): the
 * bytes llama.cpp's outputs in tests/data/tiny were computed on, kept when
 * the library's quantizer became ggml's own (which rounds from the
 * unrounded scale, halves away from zero). */
static inline void tiny_q8_0(const float *x, unsigned char *out, int64_t n)
{
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(v[j]) > amax) amax = fabsf(v[j]);
        uint16_t dh = ox_f32_to_f16(amax / 127);
        float d = ox_f16_to_f32(dh), id = d != 0 && isfinite(d) ? 1.0f / d : 0.0f;
        memcpy(out + 34 * b, &dh, sizeof dh);
        for (int j = 0; j < 32; j++) {
            float q = v[j] * id;
            int c = !(q >= -127.0f) ? -127 : q > 127.0f ? 127 : (int)lrintf(q);
            out[34 * b + 2 + j] = (unsigned char)(int8_t)c;
        }
    }
}

/* A tensor of ne = {ne0, ne1} (ne1 = 1: a vector), values offset + scale * x,
 * stored as `type` (F32 or Q8_0, quantized row by row). */
static inline ox_status tiny_add_tensor(ox_gguf_writer *w, tiny_tensors *t, uint32_t type,
                                        const char *name, int64_t ne0, int64_t ne1, float offset,
                                        float scale)
{
    size_t n = (size_t)(ne0 * ne1);
    size_t bytes = type == OX_GGML_TYPE_Q8_0 ? n / 32 * 34 : n * sizeof(float);
    if (t->count == TINY_MAX_TENSORS)
        return tiny_fail(OX_ERR_INTERNAL, "%s: more than %d tensors", name, TINY_MAX_TENSORS);
    float *values = malloc(n * sizeof *values);
    void *data = type == OX_GGML_TYPE_F32 ? values : malloc(bytes);
    if (!values || !data) {
        free(values);
        return tiny_fail(OX_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    }
    tiny_fill(values, n, name, t->seed, offset, scale);
    ox_status s = OX_OK;
    if (type == OX_GGML_TYPE_Q8_0) {
        tiny_q8_0(values, data, (int64_t)n);
        free(values);
    }
    t->data[t->count++] = data;
    int64_t ne[2] = {ne0, ne1};
    return s ? s : ox_gguf_writer_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, data, bytes);
}

/* A weight matrix of ne = {in, out}: ±sqrt(3 / in) * gain. */
static inline ox_status tiny_add_matrix(ox_gguf_writer *w, tiny_tensors *t, uint32_t type,
                                        const char *name, int64_t in, int64_t out, float gain)
{
    return tiny_add_tensor(w, t, type, name, in, out, 0.0f, sqrtf(3.0f / (float)in) * gain);
}

static inline ox_status tiny_add_norm(ox_gguf_writer *w, tiny_tensors *t, const char *name,
                                      int64_t n)
{
    return tiny_add_tensor(w, t, OX_GGML_TYPE_F32, name, n, 1, 1.0f, 0.2f);
}

static inline ox_status tiny_add_u32(ox_gguf_writer *w, const char *arch, const char *key,
                                     uint32_t value)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    return ox_gguf_writer_add_scalar(w, name, OX_GGUF_UINT32, &value);
}

static inline ox_status tiny_add_f32(ox_gguf_writer *w, const char *arch, const char *key,
                                     float value)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    return ox_gguf_writer_add_scalar(w, name, OX_GGUF_FLOAT32, &value);
}

/* Metadata under ARCH.*, in llama.cpp's converter's value types. */
static inline ox_status tiny_add_hparams(ox_gguf_writer *w, const tiny_arch *a)
{
    const char *n = a->arch;
    ox_status s = OX_OK;
    if (!s) s = tiny_add_u32(w, n, "context_length", TINY_N_CTX);
    if (!s) s = tiny_add_u32(w, n, "embedding_length", TINY_N_EMBD);
    if (!s) s = tiny_add_u32(w, n, "block_count", TINY_N_LAYER);
    if (!s) s = tiny_add_u32(w, n, "feed_forward_length", TINY_N_FF);
    if (!s) s = tiny_add_u32(w, n, "attention.head_count", TINY_N_HEAD);
    if (!s) s = tiny_add_u32(w, n, "attention.head_count_kv", TINY_N_HEAD_KV);
    if (!s) s = tiny_add_f32(w, n, "attention.layer_norm_rms_epsilon", 1e-5f);
    if (!s) s = tiny_add_f32(w, n, "rope.freq_base", a->rope_base);
    if (!s && a->rope_dimension_key) s = tiny_add_u32(w, n, "rope.dimension_count", TINY_HEAD_DIM);
    if (!s && a->qk_norm) s = tiny_add_u32(w, n, "attention.key_length", TINY_HEAD_DIM);
    if (!s && a->qk_norm) s = tiny_add_u32(w, n, "attention.value_length", TINY_HEAD_DIM);
    return s;
}

static inline ox_status tiny_add_block(ox_gguf_writer *w, tiny_tensors *t, const tiny_arch *a,
                                       int il)
{
    const int64_t E = TINY_N_EMBD, KV = TINY_N_HEAD_KV * TINY_HEAD_DIM, F = TINY_N_FF;
    const uint32_t F32 = OX_GGML_TYPE_F32;
    char name[64];
    ox_status s = OX_OK;
#define TINY_NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", il, suffix), name)
    if (!s) s = tiny_add_norm(w, t, TINY_NAME("attn_norm.weight"), E);
    if (!s) s = tiny_add_matrix(w, t, F32, TINY_NAME("attn_q.weight"), E, E, TINY_GAIN_QK);
    if (!s) s = tiny_add_matrix(w, t, F32, TINY_NAME("attn_k.weight"), E, KV, TINY_GAIN_QK);
    if (!s) s = tiny_add_matrix(w, t, F32, TINY_NAME("attn_v.weight"), E, KV, TINY_GAIN_V);
    if (!s && a->qkv_bias) {
        s = tiny_add_tensor(w, t, F32, TINY_NAME("attn_q.bias"), E, 1, 0.0f, 0.5f);
        if (!s) s = tiny_add_tensor(w, t, F32, TINY_NAME("attn_k.bias"), KV, 1, 0.0f, 0.5f);
        if (!s) s = tiny_add_tensor(w, t, F32, TINY_NAME("attn_v.bias"), KV, 1, 0.0f, 0.5f);
    }
    if (!s && a->qk_norm) {
        s = tiny_add_norm(w, t, TINY_NAME("attn_q_norm.weight"), TINY_HEAD_DIM);
        if (!s) s = tiny_add_norm(w, t, TINY_NAME("attn_k_norm.weight"), TINY_HEAD_DIM);
    }
    if (!s) s = tiny_add_matrix(w, t, F32, TINY_NAME("attn_output.weight"), E, E, TINY_GAIN_O);
    if (!s) s = tiny_add_norm(w, t, TINY_NAME("ffn_norm.weight"), E);
    if (!s) s = tiny_add_matrix(w, t, F32, TINY_NAME("ffn_gate.weight"), E, F, TINY_GAIN_FFN_IN);
    if (!s) s = tiny_add_matrix(w, t, F32, TINY_NAME("ffn_up.weight"), E, F, TINY_GAIN_FFN_IN);
    if (!s)
        s = tiny_add_matrix(w, t, a->ffn_down_type, TINY_NAME("ffn_down.weight"), F, E,
                            TINY_GAIN_FFN_DOWN);
#undef TINY_NAME
    return s;
}

/* Write the tiny model of architecture `arch` ("llama", "qwen2", "qwen3")
 * to `out_path`, with the tokenizer of the GGUF file `vocab_path` (see
 * tiny_archs for the one each architecture expects). On failure,
 * tiny_model_errmsg(ctx) says why. */
#define TINY_NO_TOKENIZER 1u /* tiny_model_write_ex: leave the tokenizer out */

static inline ox_status tiny_model_write_ex(ox_context *ctx, const char *arch,
                                            const char *vocab_path, const char *out_path,
                                            unsigned flags)
{
    tiny_model_error[0] = '\0';
    const tiny_arch *a = tiny_model_arch(arch);
    if (!a) return tiny_fail(OX_ERR_INVALID, "unknown tiny architecture '%s' (llama, qwen2, qwen3)",
                             arch);
    ox_gguf_writer *w;
    ox_status s = ox_gguf_writer_create(ctx, &w);
    if (s) return s;
    tiny_tensors t = {.seed = a->seed, .count = 0};
    char name[128];
    snprintf(name, sizeof name, "tiny-%s (random weights, OpenXPU tests)", arch);
    s = ox_gguf_writer_add_string(w, "general.architecture", arch, strlen(arch));
    if (!s) s = ox_gguf_writer_add_string(w, "general.name", name, strlen(name));
    if (!s) s = tiny_add_hparams(w, a);
    if (!s && !(flags & TINY_NO_TOKENIZER)) s = tiny_copy_tokenizer(ctx, vocab_path, a->pre, w);

    /* n_vocab from the copied token list. */
    int64_t n_vocab = 0;
    if (!s) {
        ox_gguf *g;
        s = ox_gguf_open(ctx, vocab_path, &g);
        if (!s) {
            int64_t i = ox_gguf_find(g, "tokenizer.ggml.tokens");
            ox_gguf_type elem;
            uint64_t count = 0;
            if (i < 0) s = tiny_fail(OX_ERR_FORMAT, "%s has no tokenizer.ggml.tokens", vocab_path);
            else s = ox_gguf_get_array(g, i, &elem, &count);
            n_vocab = (int64_t)count;
            ox_gguf_close(g);
        }
    }
    if (!s)
        s = tiny_add_tensor(w, &t, OX_GGML_TYPE_F32, "token_embd.weight", TINY_N_EMBD, n_vocab,
                            0.0f, 1.0f);
    for (int il = 0; il < TINY_N_LAYER && !s; il++) s = tiny_add_block(w, &t, a, il);
    if (!s) s = tiny_add_norm(w, &t, "output_norm.weight", TINY_N_EMBD);
    if (!s && a->output)
        s = tiny_add_matrix(w, &t, OX_GGML_TYPE_F32, "output.weight", TINY_N_EMBD, n_vocab,
                            TINY_GAIN_OUTPUT);
    if (!s) s = ox_gguf_writer_write_file(w, out_path);
    ox_gguf_writer_free(w);
    for (int i = 0; i < t.count; i++) free(t.data[i]);
    return s;
}

static inline ox_status tiny_model_write(ox_context *ctx, const char *arch, const char *vocab_path,
                                         const char *out_path)
{
    return tiny_model_write_ex(ctx, arch, vocab_path, out_path, 0);
}

/* The vocabulary file `arch` takes, under OX_TEST_DATA (ctest sets it;
 * else tests/data from the source tree). */
static inline void tiny_vocab_path(const char *arch, char *path, size_t cap)
{
    const char *data = getenv("OX_TEST_DATA");
    snprintf(path, cap, "%s/tokenizer/%s", data ? data : "tests/data", tiny_model_arch(arch)->vocab);
}

#endif /* OX_TESTS_TINY_MODEL_H */
