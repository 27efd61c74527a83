/* make_model: write a GGUF language model of random weights, so that
 * benchmarks (ox bench-model, ox run, llama-bench) have a model of a
 * realistic size and layout on machines that cannot download one.
 *
 *   make_model [--preset NAME] [--arch llama|qwen2] [--layers L] [--embd E]
 *              [--ffn F] [--heads H] [--kv-heads K] [--vocab V] [--ctx N]
 *              [--type T] [--seed S] [--vocab-file FILE] [--threads N] OUT.gguf
 *
 * The file is what llama.cpp's converter and quantizer would write for such
 * a model: its tensor names (token_embd, blk.N.attn_q/k/v/output,
 * ffn_gate/up/down, attn_norm, ffn_norm, output_norm, output), shapes and
 * metadata keys (general.architecture, ARCH.block_count, ...,
 * general.file_type, tokenizer.ggml.*). Every matrix is stored as --type
 * (norms and biases in F32); k-quants on rows that are not a multiple of
 * 256 fall back as llama.cpp's quantizer does (q4_k to q5_0, q5_k to q5_1,
 * q6_k to q8_0). llama: own output matrix, rope base 1e4; qwen2: biases on
 * q, k and v, output tied to token_embd, rope base 1e6.
 *
 * Weights: uniform with a standard deviation of 1/sqrt(fan_in) (fan_in =
 * the row length), norms uniform in 1 ± 0.1, biases in ± 0.1, from
 * splitmix64 seeded by the tensor's name and --seed: the same file for the
 * same arguments whatever --threads. The tokenizer is copied from a real
 * vocabulary (tests/data/tokenizer: llama-spm's 32000 SentencePiece tokens
 * for llama, gpt-2's 50257 BPE tokens with the qwen2 pre-tokenizer for
 * qwen2) and padded up to V with "[PADn]" tokens of type unused, as
 * llama.cpp's converter pads Qwen's.
 *
 * Tensors are produced while the file is written
 * (ox_gguf_writer_add_tensor_fill), rows quantized on --threads threads:
 * memory holds the largest tensor, not the model.
 *
 * Exit status: 0 written, 1 failed (the message says why), 2 bad arguments. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "openxpu/openxpu.h"

#ifndef OX_TOKENIZER_DATA
#define OX_TOKENIZER_DATA "tests/data/tokenizer"
#endif

#define MAX_LAYERS 256 /* ox_model_load's limit */
#define MAX_THREADS 256

/* ---- what to write --------------------------------------------------------------- */

typedef struct model_spec {
    const char *name; /* the preset's, or "custom" */
    const char *arch; /* "llama" or "qwen2" */
    long layers, embd, ffn, heads, kv_heads, vocab, ctx;
    ox_dtype type; /* of the matrices */
    uint64_t seed;
    const char *vocab_file;
    long threads;
} model_spec;

typedef struct preset {
    const char *name, *arch;
    long layers, embd, ffn, heads, kv_heads, vocab;
    const char *like; /* the model it is shaped like */
} preset;

static const preset presets[] = {
    {"llama-110m", "llama", 12, 768, 2048, 12, 12, 32000, "llama2.c's stories110M"},
    {"llama-852m", "llama", 16, 2048, 5632, 32, 8, 32000, "TinyLlama 1.1B's width, 16 layers"},
    {"llama-3b", "llama", 26, 3072, 8192, 24, 8, 32000, "Llama 3.2 3B's width, 26 layers"},
    {"qwen-like", "qwen2", 24, 896, 4864, 14, 2, 151936, "Qwen2.5 0.5B"},
};
#define PRESET_COUNT (sizeof presets / sizeof presets[0])

/* The vocabulary file each architecture takes by default, and its
 * tokenizer.ggml.pre (NULL: the file's own). */
static const char *default_vocab(const char *arch, const char **pre)
{
    *pre = strcmp(arch, "qwen2") == 0 ? "qwen2" : NULL;
    return strcmp(arch, "qwen2") == 0 ? "ggml-vocab-gpt-2.gguf" : "ggml-vocab-llama-spm.gguf";
}

/* llama.cpp's general.file_type (enum llama_ftype) for models whose
 * matrices are all `type`. */
static uint32_t file_type(ox_dtype type)
{
    switch (type) {
    case OX_DTYPE_F32: return 0;
    case OX_DTYPE_F16: return 1;
    case OX_DTYPE_Q4_0: return 2;
    case OX_DTYPE_Q4_1: return 3;
    case OX_DTYPE_Q8_0: return 7;
    case OX_DTYPE_Q5_0: return 8;
    case OX_DTYPE_Q5_1: return 9;
    case OX_DTYPE_Q4_K: return 14; /* Q4_K_S */
    case OX_DTYPE_Q5_K: return 16; /* Q5_K_S */
    case OX_DTYPE_Q6_K: return 18;
    case OX_DTYPE_BF16: return 32;
    default: return 0;
    }
}

/* The type a matrix with rows of n elements gets: `type`, or for a
 * k-quant whose 256-element block does not divide n, llama.cpp's
 * quantizer's fallback. */
static ox_dtype row_type(ox_dtype type, long n)
{
    if (n % ox_dtype_block(type) == 0) return type;
    switch (type) {
    case OX_DTYPE_Q4_K: return OX_DTYPE_Q5_0;
    case OX_DTYPE_Q5_K: return OX_DTYPE_Q5_1;
    case OX_DTYPE_Q6_K: return OX_DTYPE_Q8_0;
    default: return type;
    }
}

/* ---- errors ------------------------------------------------------------------------ */

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "usage: make_model [--preset NAME] [--arch llama|qwen2] [--layers L] [--embd E]\n"
            "                  [--ffn F] [--heads H] [--kv-heads K] [--vocab V] [--ctx N]\n"
            "                  [--type T] [--seed S] [--vocab-file FILE] [--threads N] OUT.gguf\n"
            "Write a GGUF model of random weights (llama.cpp's names and metadata, a real\n"
            "tokenizer) for benchmarks. Options after --preset change the preset.\n"
            "  --type       f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k\n"
            "               (default f16): every matrix; norms and biases are f32\n"
            "  --kv-heads   default: --heads;  --vocab: default the vocabulary file's size,\n"
            "               larger values are padded with [PADn] tokens\n"
            "  --ctx        context_length written (default 4096);  --seed (default 1)\n"
            "  --vocab-file a GGUF file whose tokenizer.* keys are copied (default\n"
            "               " OX_TOKENIZER_DATA "/ggml-vocab-llama-spm.gguf for llama,\n"
            "               ggml-vocab-gpt-2.gguf with the qwen2 pre-tokenizer for qwen2)\n"
            "  --threads    threads that quantize (default: the online CPUs)\n"
            "presets:\n");
    for (size_t i = 0; i < PRESET_COUNT; i++) {
        const preset *p = &presets[i];
        fprintf(out, "  %-11s %s, %ld layers x %ld, FFN %ld, %ld/%ld heads, vocab %ld (%s)\n",
                p->name, p->arch, p->layers, p->embd, p->ffn, p->heads, p->kv_heads, p->vocab,
                p->like);
    }
}

/* A bad argument: the message, a pointer to --help, exit status 2. */
__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("make_model: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (make_model --help for the options)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* The message of a failed step (the tool's own, or the library's). */
static char failure[1024];

__attribute__((format(printf, 2, 3)))
static ox_status fail(ox_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure, sizeof failure, fmt, ap);
    va_end(ap);
    return status;
}

/* ---- arguments -------------------------------------------------------------------- */

static int parse_long(const char *option, const char *text, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < lo || v > hi)
        return usage_error("%s: '%s' is not a whole number from %ld to %ld", option, text, lo, hi);
    *out = v;
    return 0;
}

static int apply_preset(model_spec *s, const char *name)
{
    for (size_t i = 0; i < PRESET_COUNT; i++) {
        const preset *p = &presets[i];
        if (strcmp(p->name, name) != 0) continue;
        s->name = p->name;
        s->arch = p->arch;
        s->layers = p->layers;
        s->embd = p->embd;
        s->ffn = p->ffn;
        s->heads = p->heads;
        s->kv_heads = p->kv_heads;
        s->vocab = p->vocab;
        return 0;
    }
    char list[256] = "";
    for (size_t i = 0; i < PRESET_COUNT; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 presets[i].name);
    return usage_error("--preset: unknown preset '%s' (%s)", name, list);
}

/* The shape checks ox_model_load and the block formats make. */
static int check_spec(const model_spec *s, const char *out)
{
    if (!out) return usage_error("which file? (make_model ... OUT.gguf)");
    if (!s->layers || !s->embd || !s->ffn || !s->heads)
        return usage_error("the model's shape is missing: give --preset NAME, or --layers, "
                           "--embd, --ffn and --heads%s%s%s%s",
                           s->layers ? "" : " (no --layers)", s->embd ? "" : " (no --embd)",
                           s->ffn ? "" : " (no --ffn)", s->heads ? "" : " (no --heads)");
    if (s->embd % s->heads)
        return usage_error("--embd %ld is not a multiple of --heads %ld", s->embd, s->heads);
    if ((s->embd / s->heads) % 2)
        return usage_error("the head size --embd / --heads = %ld is odd: rope rotates pairs",
                           s->embd / s->heads);
    if (s->heads % s->kv_heads)
        return usage_error("--heads %ld is not a multiple of --kv-heads %ld", s->heads,
                           s->kv_heads);
    const long rows[] = {s->embd, s->ffn};
    const char *names[] = {"--embd", "--ffn"};
    for (int i = 0; i < 2; i++) {
        ox_dtype t = row_type(s->type, rows[i]);
        if (rows[i] % ox_dtype_block(t))
            return usage_error("%s %ld is not a multiple of %lld, the block of %s", names[i],
                               rows[i], (long long)ox_dtype_block(t), ox_dtype_str(t));
    }
    return 0;
}

/* Fill *s from argv; 0, or the exit status (usage errors: 2; --help: 0 after
 * printing it, as -1). */
static int parse_args(int argc, char **argv, model_spec *s, const char **out)
{
    *s = (model_spec){.name = "custom", .arch = "llama", .type = OX_DTYPE_F16, .ctx = 4096,
                      .seed = 1, .kv_heads = 0, .vocab = 0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : cpus;
    *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (*out) return usage_error("one output file only ('%s', then '%s')", *out, a);
            *out = a;
            continue;
        }
        const char *value = strchr(a, '=');
        char option[32];
        size_t len = value ? (size_t)(value - a) : strlen(a);
        snprintf(option, sizeof option, "%.*s", (int)len, a);
        if (value) {
            value++;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return usage_error("%s needs a value", option);
        }
        int rc = 0;
        if (strcmp(option, "--preset") == 0) {
            rc = apply_preset(s, value);
        } else if (strcmp(option, "--arch") == 0) {
            if (strcmp(value, "llama") && strcmp(value, "qwen2"))
                return usage_error("--arch: '%s' is not llama or qwen2", value);
            s->arch = strcmp(value, "llama") == 0 ? "llama" : "qwen2";
        } else if (strcmp(option, "--layers") == 0) {
            rc = parse_long(option, value, 1, MAX_LAYERS, &s->layers);
        } else if (strcmp(option, "--embd") == 0) {
            rc = parse_long(option, value, 2, 1L << 20, &s->embd);
        } else if (strcmp(option, "--ffn") == 0) {
            rc = parse_long(option, value, 1, 1L << 22, &s->ffn);
        } else if (strcmp(option, "--heads") == 0) {
            rc = parse_long(option, value, 1, 4096, &s->heads);
        } else if (strcmp(option, "--kv-heads") == 0) {
            rc = parse_long(option, value, 1, 4096, &s->kv_heads);
        } else if (strcmp(option, "--vocab") == 0) {
            rc = parse_long(option, value, 1, 1L << 24, &s->vocab);
        } else if (strcmp(option, "--ctx") == 0) {
            rc = parse_long(option, value, 1, 1L << 24, &s->ctx);
        } else if (strcmp(option, "--threads") == 0) {
            rc = parse_long(option, value, 1, MAX_THREADS, &s->threads);
        } else if (strcmp(option, "--seed") == 0) {
            char *end;
            s->seed = strtoull(value, &end, 10);
            if (!*value || *end || *value == '-')
                return usage_error("--seed: '%s' is not a whole number >= 0", value);
        } else if (strcmp(option, "--vocab-file") == 0) {
            s->vocab_file = value;
        } else if (strcmp(option, "--type") == 0) {
            ox_dtype t;
            if (ox_dtype_from_str(value, &t) != OX_OK || t == OX_DTYPE_I32)
                return usage_error("--type: '%s' is not one of f32, f16, bf16, q4_0, q4_1, q5_0, "
                                   "q5_1, q8_0, q4_k, q5_k, q6_k", value);
            s->type = t;
        } else {
            return usage_error("unknown option %s", option);
        }
        if (rc) return rc;
    }
    if (!s->kv_heads) s->kv_heads = s->heads;
    return check_spec(s, *out);
}

/* ---- weights ----------------------------------------------------------------------- */

typedef enum tensor_kind { KIND_MATRIX, KIND_NORM, KIND_BIAS } tensor_kind;

/* One tensor: what its fill produces. ne = {ne0, ne1}: ne1 rows of ne0. */
typedef struct tensor_spec {
    char name[48];
    tensor_kind kind;
    ox_dtype type;
    int64_t ne0, ne1;
    uint64_t stream; /* splitmix64 state before value 0 */
    long threads;
} tensor_spec;

static uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ull

/* FNV-1a of the name, mixed with the seed: one stream per tensor. */
static uint64_t tensor_stream(const char *name, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return splitmix64_mix(h ^ splitmix64_mix(seed * GOLDEN));
}

/* n values offset + scale * x, x uniform in [-1, 1), values first .. first
 * + n - 1 of the tensor's stream (splitmix64 jumps: value i depends on i
 * alone, so rows can be made in any order). */
static void uniform(float *dst, int64_t n, uint64_t stream, uint64_t first, float offset,
                    float scale)
{
    uint64_t state = stream + first * GOLDEN;
    for (int64_t i = 0; i < n; i++) {
        state += GOLDEN;
        float x = (float)(uint32_t)(splitmix64_mix(state) >> 40) * (1.0f / 8388608.0f) - 1.0f;
        dst[i] = offset + scale * x;
    }
}

/* Rows [row0, row1) of tensor t into dst (t's storage form); `scratch`
 * holds ne0 floats. Runs on worker threads: the caller reports failures. */
static ox_status make_rows(const tensor_spec *t, int64_t row0, int64_t row1, float *scratch,
                           unsigned char *dst)
{
    float offset = 0.0f, scale;
    if (t->kind == KIND_NORM) {
        offset = 1.0f;
        scale = 0.1f;
    } else if (t->kind == KIND_BIAS) {
        scale = 0.1f;
    } else { /* uniform in ±a has std a / sqrt(3): a = sqrt(3 / fan_in) gives 1 / sqrt(fan_in) */
        scale = sqrtf(3.0f / (float)t->ne0);
    }
    size_t row_bytes = ox_dtype_row_size(t->type, t->ne0);
    for (int64_t r = row0; r < row1; r++) {
        float *values = t->type == OX_DTYPE_F32 ? (float *)(dst + (size_t)r * row_bytes) : scratch;
        uniform(values, t->ne0, t->stream, (uint64_t)r * (uint64_t)t->ne0, offset, scale);
        if (t->type == OX_DTYPE_F32) continue;
        ox_status s = ox_row_from_f32(t->type, values, dst + (size_t)r * row_bytes, t->ne0);
        if (s != OX_OK) return s;
    }
    return OX_OK;
}

typedef struct row_job {
    const tensor_spec *tensor;
    int64_t row0, row1;
    unsigned char *dst;
    bool threaded; /* runs on its own thread */
    pthread_t thread;
    ox_status status;
} row_job;

static void *row_worker(void *arg)
{
    row_job *job = arg;
    float *scratch = malloc((size_t)job->tensor->ne0 * sizeof *scratch);
    job->status = scratch ? make_rows(job->tensor, job->row0, job->row1, scratch, job->dst)
                          : OX_ERR_OUT_OF_MEMORY;
    free(scratch);
    return NULL;
}

/* ox_gguf_tensor_fill: every row of the tensor, split over the threads
 * (the share of a thread that cannot be started runs on this one). */
static ox_status fill_tensor(void *user, const char *name, void *buffer, size_t nbytes)
{
    const tensor_spec *t = user;
    (void)nbytes;
    long threads = t->threads;
    if (threads > t->ne1) threads = (long)t->ne1;
    if ((double)t->ne0 * (double)t->ne1 < 65536.0) threads = 1; /* not worth a thread */
    row_job jobs[MAX_THREADS];
    for (long i = 0; i < threads; i++) {
        jobs[i] = (row_job){.tensor = t, .row0 = t->ne1 * i / threads,
                            .row1 = t->ne1 * (i + 1) / threads, .dst = buffer};
        jobs[i].threaded = i > 0 && pthread_create(&jobs[i].thread, NULL, row_worker,
                                                   &jobs[i]) == 0;
    }
    ox_status status = OX_OK;
    for (long i = 0; i < threads; i++) {
        if (jobs[i].threaded) pthread_join(jobs[i].thread, NULL);
        else row_worker(&jobs[i]);
        if (status == OX_OK) status = jobs[i].status;
    }
    if (status != OX_OK)
        return fail(status, "%s: its rows could not be made as %s (%s)", name,
                    ox_dtype_str(t->type), ox_status_str(status));
    return OX_OK;
}

/* ---- the file ---------------------------------------------------------------------- */

typedef struct model_file {
    ox_context *ctx;
    ox_gguf_writer *w;
    const model_spec *spec;
    tensor_spec *tensors;
    int count, capacity;
    uint64_t params;
    ox_dtype fallback; /* the type some k-quant matrices fell back to, else OX_DTYPE_COUNT */
} model_file;

static ox_status add_tensor(model_file *f, const char *name, tensor_kind kind, int64_t ne0,
                            int64_t ne1)
{
    if (f->count == f->capacity) return fail(OX_ERR_INTERNAL, "%s: too many tensors", name);
    tensor_spec *t = &f->tensors[f->count++];
    *t = (tensor_spec){.kind = kind, .type = OX_DTYPE_F32, .ne0 = ne0, .ne1 = ne1,
                       .stream = tensor_stream(name, f->spec->seed),
                       .threads = f->spec->threads};
    snprintf(t->name, sizeof t->name, "%s", name);
    if (kind == KIND_MATRIX) {
        t->type = row_type(f->spec->type, (long)ne0);
        if (t->type != f->spec->type) f->fallback = t->type;
    }
    uint32_t ggml_type;
    ox_status s = ox_ggml_type_from_dtype(t->type, &ggml_type);
    int64_t ne[2] = {ne0, ne1};
    size_t nbytes = ox_dtype_row_size(t->type, ne0) * (size_t)ne1;
    if (s == OX_OK)
        s = ox_gguf_writer_add_tensor_fill(f->w, t->name, ggml_type, ne1 > 1 ? 2 : 1, ne, nbytes,
                                           fill_tensor, t);
    f->params += (uint64_t)(ne0 * ne1);
    return s;
}

static ox_status add_u32(model_file *f, const char *key, uint32_t value)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", f->spec->arch, key);
    return ox_gguf_writer_add_scalar(f->w, full, OX_GGUF_UINT32, &value);
}

static ox_status add_f32(model_file *f, const char *key, float value)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", f->spec->arch, key);
    return ox_gguf_writer_add_scalar(f->w, full, OX_GGUF_FLOAT32, &value);
}

/* general.* and ARCH.* as llama.cpp writes them. */
static ox_status add_metadata(model_file *f)
{
    const model_spec *m = f->spec;
    bool qwen = strcmp(m->arch, "qwen2") == 0;
    char name[160];
    snprintf(name, sizeof name, "%s %s (random weights, make_model seed %llu)", m->name,
             ox_dtype_str(m->type), (unsigned long long)m->seed);
    uint32_t ftype = file_type(m->type), quant_version = 2;
    ox_status s = ox_gguf_writer_add_string(f->w, "general.architecture", m->arch,
                                            strlen(m->arch));
    if (!s) s = ox_gguf_writer_add_string(f->w, "general.name", name, strlen(name));
    if (!s) s = ox_gguf_writer_add_scalar(f->w, "general.file_type", OX_GGUF_UINT32, &ftype);
    if (!s && ox_dtype_is_quantized(m->type))
        s = ox_gguf_writer_add_scalar(f->w, "general.quantization_version", OX_GGUF_UINT32,
                                      &quant_version);
    if (!s) s = add_u32(f, "block_count", (uint32_t)m->layers);
    if (!s) s = add_u32(f, "context_length", (uint32_t)m->ctx);
    if (!s) s = add_u32(f, "embedding_length", (uint32_t)m->embd);
    if (!s) s = add_u32(f, "feed_forward_length", (uint32_t)m->ffn);
    if (!s) s = add_u32(f, "attention.head_count", (uint32_t)m->heads);
    if (!s) s = add_u32(f, "attention.head_count_kv", (uint32_t)m->kv_heads);
    if (!s) s = add_f32(f, "rope.freq_base", qwen ? 1000000.0f : 10000.0f);
    if (!s) s = add_f32(f, "attention.layer_norm_rms_epsilon", qwen ? 1e-6f : 1e-5f);
    if (!s && !qwen) s = add_u32(f, "rope.dimension_count", (uint32_t)(m->embd / m->heads));
    if (!s && !qwen) s = add_u32(f, "vocab_size", (uint32_t)m->vocab);
    return s;
}

static size_t scalar_size(ox_gguf_type type)
{
    switch (type) {
    case OX_GGUF_UINT8: case OX_GGUF_INT8: case OX_GGUF_BOOL: return 1;
    case OX_GGUF_UINT16: case OX_GGUF_INT16: return 2;
    case OX_GGUF_UINT32: case OX_GGUF_INT32: case OX_GGUF_FLOAT32: return 4;
    default: return 8;
    }
}

#define TOKEN_TYPE_UNUSED 5 /* llama.cpp's LLAMA_TOKEN_TYPE_UNUSED */

/* An array of `count` entries; per-token arrays (tokens, scores,
 * token_type) padded to n entries: "[PADi]", score 0, type unused. */
static ox_status copy_array(model_file *f, const ox_gguf *g, int64_t i, const char *key,
                            uint64_t count, uint64_t n)
{
    ox_gguf_type elem;
    uint64_t have;
    ox_status s = ox_gguf_get_array(g, i, &elem, &have);
    if (s) return s;
    if (elem == OX_GGUF_STRING) {
        const char **strings = calloc((size_t)n, sizeof *strings);
        char *pads = malloc((size_t)(n - count) * 24 + 1), *p = pads;
        char **copies = calloc((size_t)count, sizeof *copies);
        if (!strings || !pads || !copies) s = fail(OX_ERR_OUT_OF_MEMORY, "%s: out of memory", key);
        for (uint64_t j = 0; s == OX_OK && j < count; j++) {
            const char *text;
            size_t len;
            s = ox_gguf_get_array_string(g, i, j, &text, &len);
            if (s == OX_OK && !(copies[j] = malloc(len + 1)))
                s = fail(OX_ERR_OUT_OF_MEMORY, "%s: out of memory", key);
            if (s == OX_OK) {
                memcpy(copies[j], text, len);
                copies[j][len] = '\0';
                strings[j] = copies[j];
            }
        }
        for (uint64_t j = count; s == OX_OK && j < n; j++) {
            strings[j] = p;
            p += snprintf(p, 24, "[PAD%llu]", (unsigned long long)j) + 1;
        }
        if (s == OX_OK) s = ox_gguf_writer_add_string_array(f->w, key, strings, n);
        for (uint64_t j = 0; copies && j < count; j++) free(copies[j]);
        free(copies);
        free(pads);
        free(strings);
        return s;
    }
    size_t size = scalar_size(elem);
    const void *data;
    unsigned char *values = calloc((size_t)n, size);
    if (!values) return fail(OX_ERR_OUT_OF_MEMORY, "%s: out of memory", key);
    s = ox_gguf_get_array_data(g, i, &data);
    if (s == OX_OK) {
        memcpy(values, data, (size_t)count * size);
        if (strcmp(key, "tokenizer.ggml.token_type") == 0)
            for (uint64_t j = count; j < n; j++) {
                int64_t unused = TOKEN_TYPE_UNUSED;
                memcpy(values + j * size, &unused, size); /* little-endian: the low bytes */
            }
        s = ox_gguf_writer_add_array(f->w, key, elem, values, n);
    }
    free(values);
    return s;
}

static ox_status copy_scalar(model_file *f, const ox_gguf *g, int64_t i, const char *key,
                             ox_gguf_type type)
{
    unsigned char value[8] = {0};
    ox_status s = OX_OK;
    if (type == OX_GGUF_BOOL) {
        bool b;
        s = ox_gguf_get_bool(g, i, &b);
        memcpy(value, &b, sizeof b);
    } else if (type == OX_GGUF_FLOAT32) {
        float x;
        s = ox_gguf_get_f32(g, i, &x);
        memcpy(value, &x, sizeof x);
    } else if (type == OX_GGUF_FLOAT64) {
        double x;
        s = ox_gguf_get_f64(g, i, &x);
        memcpy(value, &x, sizeof x);
    } else if (type == OX_GGUF_UINT64) {
        uint64_t x;
        s = ox_gguf_get_u64(g, i, &x);
        memcpy(value, &x, sizeof x);
    } else {
        int64_t x;
        s = ox_gguf_get_int(g, i, &x);
        memcpy(value, &x, scalar_size(type)); /* little-endian: the low bytes */
    }
    return s ? s : ox_gguf_writer_add_scalar(f->w, key, type, value);
}

/* Every tokenizer.* pair of the vocabulary file, the token arrays padded
 * to the model's vocabulary, tokenizer.ggml.pre set to `pre` if not NULL. */
static ox_status copy_tokenizer(model_file *f, const char *path, const char *pre)
{
    ox_gguf *g;
    ox_status s = ox_gguf_open(f->ctx, path, &g);
    if (s) return fail(s, "the vocabulary: %s", ox_errmsg(f->ctx));
    int64_t tokens = ox_gguf_find(g, "tokenizer.ggml.tokens");
    ox_gguf_type elem = OX_GGUF_TYPE_COUNT;
    uint64_t count = 0;
    if (tokens < 0 || ox_gguf_get_array(g, tokens, &elem, &count) != OX_OK ||
        elem != OX_GGUF_STRING || count == 0) {
        s = fail(OX_ERR_INVALID, "the vocabulary %s has no tokenizer.ggml.tokens list", path);
        goto out;
    }
    uint64_t n = (uint64_t)f->spec->vocab;
    if (n < count) {
        s = fail(OX_ERR_INVALID, "--vocab %llu is smaller than the %llu tokens of %s: give "
                 "--vocab %llu or more (tokens beyond the file's are padding), or another "
                 "--vocab-file", (unsigned long long)n, (unsigned long long)count, path,
                 (unsigned long long)count);
        goto out;
    }
    bool wrote_pre = false;
    for (int64_t i = 0; i < ox_gguf_kv_count(g) && s == OX_OK; i++) {
        const char *key = ox_gguf_kv_key(g, i);
        ox_gguf_type type = ox_gguf_kv_type(g, i);
        if (strncmp(key, "tokenizer.", 10) != 0) continue;
        if (pre && strcmp(key, "tokenizer.ggml.pre") == 0) {
            s = ox_gguf_writer_add_string(f->w, key, pre, strlen(pre));
            wrote_pre = true;
        } else if (type == OX_GGUF_STRING) {
            const char *data;
            size_t size;
            s = ox_gguf_get_string(g, i, &data, &size);
            if (s == OX_OK) s = ox_gguf_writer_add_string(f->w, key, data, size);
        } else if (type == OX_GGUF_ARRAY) {
            uint64_t have;
            s = ox_gguf_get_array(g, i, &elem, &have);
            bool per_token = have == count && strcmp(key, "tokenizer.ggml.merges") != 0;
            if (s == OX_OK) s = copy_array(f, g, i, key, have, per_token ? n : have);
        } else {
            s = copy_scalar(f, g, i, key, type);
        }
    }
    if (s == OX_OK && pre && !wrote_pre)
        s = ox_gguf_writer_add_string(f->w, "tokenizer.ggml.pre", pre, strlen(pre));
out:
    ox_gguf_close(g);
    return s;
}

static ox_status add_tensors(model_file *f)
{
    const model_spec *m = f->spec;
    const int64_t E = m->embd, D = m->embd / m->heads, Q = m->heads * D, KV = m->kv_heads * D;
    const int64_t F = m->ffn, V = m->vocab;
    bool qwen = strcmp(m->arch, "qwen2") == 0;
    char name[48];
    ox_status s = add_tensor(f, "token_embd.weight", KIND_MATRIX, E, V);
    for (long il = 0; il < m->layers && s == OX_OK; il++) {
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%ld.%s", il, suffix), name)
        if (!s) s = add_tensor(f, BLK("attn_norm.weight"), KIND_NORM, E, 1);
        if (!s) s = add_tensor(f, BLK("attn_q.weight"), KIND_MATRIX, E, Q);
        if (!s) s = add_tensor(f, BLK("attn_k.weight"), KIND_MATRIX, E, KV);
        if (!s) s = add_tensor(f, BLK("attn_v.weight"), KIND_MATRIX, E, KV);
        if (!s && qwen) s = add_tensor(f, BLK("attn_q.bias"), KIND_BIAS, Q, 1);
        if (!s && qwen) s = add_tensor(f, BLK("attn_k.bias"), KIND_BIAS, KV, 1);
        if (!s && qwen) s = add_tensor(f, BLK("attn_v.bias"), KIND_BIAS, KV, 1);
        if (!s) s = add_tensor(f, BLK("attn_output.weight"), KIND_MATRIX, Q, E);
        if (!s) s = add_tensor(f, BLK("ffn_norm.weight"), KIND_NORM, E, 1);
        if (!s) s = add_tensor(f, BLK("ffn_gate.weight"), KIND_MATRIX, E, F);
        if (!s) s = add_tensor(f, BLK("ffn_up.weight"), KIND_MATRIX, E, F);
        if (!s) s = add_tensor(f, BLK("ffn_down.weight"), KIND_MATRIX, F, E);
#undef BLK
    }
    if (!s) s = add_tensor(f, "output_norm.weight", KIND_NORM, E, 1);
    if (!s && !qwen) s = add_tensor(f, "output.weight", KIND_MATRIX, E, V); /* qwen2: tied */
    return s;
}

int main(int argc, char **argv)
{
    model_spec spec;
    const char *out;
    int rc = parse_args(argc, argv, &spec, &out);
    if (rc) return rc < 0 ? 0 : rc;

    const char *pre, *vocab_name = default_vocab(spec.arch, &pre);
    char vocab_path[4096];
    if (spec.vocab_file) {
        snprintf(vocab_path, sizeof vocab_path, "%s", spec.vocab_file);
        pre = NULL; /* the file's own */
    } else {
        snprintf(vocab_path, sizeof vocab_path, "%s/%s", OX_TOKENIZER_DATA, vocab_name);
    }
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS};
    model_file f = {.spec = &spec, .fallback = OX_DTYPE_COUNT};
    if (ox_context_create(&o, &f.ctx) != OX_OK) {
        fprintf(stderr, "make_model: %s\n", ox_errmsg(NULL));
        return 1;
    }
    double t0 = bench_seconds();
    f.capacity = 3 + 12 * (int)spec.layers;
    f.tensors = calloc((size_t)f.capacity, sizeof *f.tensors);
    ox_status s = f.tensors ? ox_gguf_writer_create(f.ctx, &f.w)
                            : fail(OX_ERR_OUT_OF_MEMORY, "out of memory");
    if (!s && !spec.vocab) { /* the vocabulary file's size */
        ox_gguf *g;
        s = ox_gguf_open(f.ctx, vocab_path, &g);
        int64_t i = s ? -1 : ox_gguf_find(g, "tokenizer.ggml.tokens");
        ox_gguf_type elem;
        uint64_t count = 0;
        if (i >= 0 && ox_gguf_get_array(g, i, &elem, &count) == OX_OK) spec.vocab = (long)count;
        ox_gguf_close(g);
        if (s) s = fail(s, "the vocabulary: %s", ox_errmsg(f.ctx));
    }
    if (!s) s = add_metadata(&f);
    if (!s) s = copy_tokenizer(&f, vocab_path, pre);
    if (s == OX_ERR_INVALID || s == OX_ERR_IO || s == OX_ERR_FORMAT) {
        /* the vocabulary named or implied by the arguments */
        rc = usage_error("%s", failure[0] ? failure : ox_errmsg(f.ctx));
        goto out;
    }
    if (!s) s = add_tensors(&f);
    if (!s && f.fallback != OX_DTYPE_COUNT)
        fprintf(stderr, "make_model: rows that are not a multiple of 256 cannot be %s: those "
                "matrices are %s, as llama.cpp's quantizer makes them\n", ox_dtype_str(spec.type),
                ox_dtype_str(f.fallback));
    if (!s) {
        s = ox_gguf_writer_write_file(f.w, out);
        if (s) remove(out); /* not a model: a fill or a write failed part way */
    }
    if (s) {
        fprintf(stderr, "make_model: %s: %s\n", out, failure[0] ? failure : ox_errmsg(f.ctx));
        rc = 1;
        goto out;
    }
    size_t bytes = 0;
    ox_gguf_writer_size(f.w, &bytes);
    printf("make_model: wrote %s: %s, %s, %ld layers x %ld, FFN %ld, %ld/%ld heads, vocab %ld, "
           "%s: %.1fM parameters, %.1f MiB in %.1f s\n", out, spec.name, spec.arch, spec.layers,
           spec.embd, spec.ffn, spec.heads, spec.kv_heads, spec.vocab, ox_dtype_str(spec.type),
           (double)f.params / 1e6, (double)bytes / 1048576.0, bench_seconds() - t0);
out:
    ox_gguf_writer_free(f.w);
    free(f.tensors);
    ox_context_free(f.ctx);
    return rc;
}
