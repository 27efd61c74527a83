/* ox_gguf_quantize: a GGUF model into another GGUF with its weights in a
 * chosen type or mixture, as llama.cpp's llama-quantize makes it (without
 * an importance matrix):
 *
 * - which tensors: 2-d or larger tensors whose name ends in "weight",
 *   except norms, MoE routers, position / token-type embeddings and a few
 *   small ones (llama.cpp's list); the others are copied unchanged;
 * - which type: the preset's base type; the output projection (and the
 *   token embeddings when the output is tied to them) in Q6_K, or Q8_0 when
 *   its rows do not split into 256; for the _M mixtures attn_v and ffn_down
 *   in Q6_K on "more bits" layers (the first and last eighth, and every
 *   third between), for Q4_K (= Q4_K_S) attn_v of the first four layers
 *   and ffn_down of the first eighth in Q5_K; rows that do not split into
 *   the type's blocks fall back (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
 *   then F16);
 * - the bytes: ox_row_from_f32, ggml's reference quantizers byte for byte
 *   (src/ops/quantize.c).
 *
 * It streams: tensor by tensor through the writer's fill callback, rows
 * split over threads, the input's pages given back after each tensor, so
 * memory stays near one output tensor. It writes a temporary file beside
 * OUT and renames it over OUT only when everything succeeded. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf_internal.h"

typedef struct preset {
    const char *name;
    uint32_t file_type; /* llama_ftype, for general.file_type */
    uint32_t base;      /* ggml type */
    char mix;           /* 0, 'S' (Q4_K_S rules) or 'M' (the _M mixtures) */
} preset;

static const preset presets[] = {
    {"f16", 1, OX_GGML_TYPE_F16, 0},      {"bf16", 32, OX_GGML_TYPE_BF16, 0},
    {"q8_0", 7, OX_GGML_TYPE_Q8_0, 0},    {"q4_0", 2, OX_GGML_TYPE_Q4_0, 0},
    {"q4_1", 3, OX_GGML_TYPE_Q4_1, 0},    {"q5_0", 8, OX_GGML_TYPE_Q5_0, 0},
    {"q5_1", 9, OX_GGML_TYPE_Q5_1, 0},    {"q4_k", 14, OX_GGML_TYPE_Q4_K, 'S'},
    {"q4_k_s", 14, OX_GGML_TYPE_Q4_K, 'S'}, {"q4_k_m", 15, OX_GGML_TYPE_Q4_K, 'M'},
    {"q5_k", 16, OX_GGML_TYPE_Q5_K, 0},   {"q5_k_s", 16, OX_GGML_TYPE_Q5_K, 0},
    {"q5_k_m", 17, OX_GGML_TYPE_Q5_K, 'M'}, {"q6_k", 18, OX_GGML_TYPE_Q6_K, 0},
};
#define PRESET_COUNT (sizeof presets / sizeof presets[0])

const char *ox_quantize_type_name(int i)
{
    return i >= 0 && (size_t)i < PRESET_COUNT ? presets[i].name : NULL;
}

typedef enum category { OTHER, TOKEN_EMBD, OUTPUT, ATTN_V, FFN_DOWN } category;

/* One tensor of the input and what becomes of it. */
typedef struct plan {
    struct job *job;
    int64_t index;
    ox_gguf_tensor_info info;
    category cat;
    int layer;        /* blk.N., or -1 */
    bool quantize;    /* converted (else copied) */
    uint32_t to_type; /* ggml type written */
    size_t out_bytes;
} plan;

typedef struct job {
    ox_context *ctx;
    const ox_gguf *in;
    plan *plans;
    int64_t count;
    int threads;
    const ox_quantize_options *options;
    uint64_t done_bytes, total_bytes;
    /* the tensor being converted, shared by the worker threads */
    const plan *cur;
    unsigned char *out;
    size_t in_row, out_row;
    int64_t rows;
    atomic_llong next_row;
    pthread_mutex_t lock;
    atomic_int failed;
    ox_status status; /* the first failure */
    char message[512];
} job;

static bool has(const char *s, const char *part)
{
    return strstr(s, part) != NULL;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* llama.cpp's tensor_allows_quantization, for the names our models use. */
static bool allows_quantization(const ox_gguf_tensor_info *t)
{
    const char *n = t->name;
    if (t->n_dims < 2 || !ends_with(n, "weight")) return false;
    static const char *const never[] = {
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "attn_rel_b.weight", "time_mix_",
        ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger",
    };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (has(n, never[i])) return false;
    return strcmp(n, "position_embd.weight") != 0 && strcmp(n, "token_types.weight") != 0;
}

static category categorize(const char *n)
{
    if (strcmp(n, "output.weight") == 0) return OUTPUT;
    if (strcmp(n, "token_embd.weight") == 0 || strcmp(n, "per_layer_token_embd.weight") == 0)
        return TOKEN_EMBD;
    if (has(n, "attn_qkv.weight") || has(n, "attn_kv_b.weight") || has(n, "attn_v.weight"))
        return ATTN_V;
    if (has(n, "ffn_down")) return FFN_DOWN;
    return OTHER;
}

static int64_t block_of(uint32_t type)
{
    const ox__ggml_type_traits *t = ox__ggml_type_find(type);
    return t ? t->block : 1;
}

static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The type tensor p gets under preset `pr`. i_v, n_v: its rank among the
 * attn_v-like tensors (layer order) and their count; n_layer: blocks. */
static uint32_t choose_type(const preset *pr, const plan *p, bool tied, int i_v, int n_v,
                            int n_layer)
{
    uint32_t type = pr->base;
    int64_t ncols = p->info.ne[0];
    if (pr->base == OX_GGML_TYPE_F16 || pr->base == OX_GGML_TYPE_BF16) return type;
    if (p->cat == OUTPUT || (tied && p->cat == TOKEN_EMBD)) {
        if (ncols % block_of(type) != 0) type = OX_GGML_TYPE_Q8_0;
        else if (type != OX_GGML_TYPE_Q8_0) type = OX_GGML_TYPE_Q6_K;
    } else if (p->cat == ATTN_V) {
        if (pr->mix == 'M' && use_more_bits(i_v, n_v)) type = OX_GGML_TYPE_Q6_K;
        else if (pr->mix == 'S' && i_v < 4) type = OX_GGML_TYPE_Q5_K;
    } else if (p->cat == FFN_DOWN && p->layer >= 0) {
        if (pr->mix == 'M' && use_more_bits(p->layer, n_layer)) type = OX_GGML_TYPE_Q6_K;
        else if (pr->mix == 'S' && p->layer < n_layer / 8) type = OX_GGML_TYPE_Q5_K;
    }
    if (ncols % block_of(type) != 0) {
        type = type == OX_GGML_TYPE_Q4_K   ? OX_GGML_TYPE_Q5_0
               : type == OX_GGML_TYPE_Q5_K ? OX_GGML_TYPE_Q5_1
               : type == OX_GGML_TYPE_Q6_K ? OX_GGML_TYPE_Q8_0
                                           : OX_GGML_TYPE_F16;
        if (ncols % block_of(type) != 0) type = OX_GGML_TYPE_F16;
    }
    return type;
}

/* ---- converting one tensor ------------------------------------------------------------- */

static void fail_once(job *j, ox_status status, const char *fmt, ...) OX__PRINTF(3, 4);
static void fail_once(job *j, ox_status status, const char *fmt, ...)
{
    pthread_mutex_lock(&j->lock);
    if (j->status == OX_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->message, sizeof j->message, fmt, ap);
        va_end(ap);
        j->status = status;
        atomic_store(&j->failed, 1);
    }
    pthread_mutex_unlock(&j->lock);
}

#define ROW_CHUNK 8

static void *convert_rows(void *arg)
{
    job *j = arg;
    const plan *p = j->cur;
    int64_t ncols = p->info.ne[0];
    ox_dtype to = ox__ggml_type_find(p->to_type)->dtype;
    float *row = malloc((size_t)ncols * sizeof *row);
    if (!row) {
        fail_once(j, OX_ERR_OUT_OF_MEMORY, "tensor '%s': out of memory for a row",
                  p->info.name);
        return NULL;
    }
    const unsigned char *src = p->info.data;
    for (;;) {
        int64_t r0 = atomic_fetch_add(&j->next_row, ROW_CHUNK);
        if (r0 >= j->rows || atomic_load(&j->failed)) break;
        int64_t r1 = r0 + ROW_CHUNK < j->rows ? r0 + ROW_CHUNK : j->rows;
        for (int64_t r = r0; r < r1; r++) {
            const void *in = src + (size_t)r * j->in_row;
            if (p->info.dtype == OX_DTYPE_F32) memcpy(row, in, (size_t)ncols * sizeof *row);
            else if (ox_row_to_f32(p->info.dtype, in, row, ncols) != OX_OK) {
                fail_once(j, OX_ERR_INTERNAL, "tensor '%s': cannot read row %lld as floats",
                          p->info.name, (long long)r);
                goto out;
            }
            for (int64_t c = 0; c < ncols; c++)
                if (!isfinite(row[c])) {
                    fail_once(j, OX_ERR_FORMAT,
                              "tensor '%s': value %g at row %lld, column %lld: weights must be "
                              "finite to be quantized",
                              p->info.name, (double)row[c], (long long)r, (long long)c);
                    goto out;
                }
            if (ox_row_from_f32(to, row, j->out + (size_t)r * j->out_row, ncols) != OX_OK) {
                fail_once(j, OX_ERR_INTERNAL, "tensor '%s': cannot write row %lld as %s",
                          p->info.name, (long long)r, ox_ggml_type_str(p->to_type));
                goto out;
            }
        }
    }
out:
    free(row);
    return NULL;
}

static void report(job *j, const plan *p)
{
    j->done_bytes += p->info.nbytes;
    if (!j->options || !j->options->progress) return;
    ox_quantize_tensor t = {.struct_size = sizeof t,
                            .index = p->index,
                            .count = j->count,
                            .name = p->info.name,
                            .from_type = p->info.ggml_type,
                            .to_type = p->to_type,
                            .n_dims = p->info.n_dims,
                            .bytes_in = p->info.nbytes,
                            .bytes_out = p->out_bytes,
                            .done_bytes = j->done_bytes,
                            .total_bytes = j->total_bytes};
    memcpy(t.ne, p->info.ne, sizeof t.ne);
    j->options->progress(j->options->user, &t);
}

static ox_status fill_tensor(void *user, const char *name, void *buffer, size_t nbytes)
{
    plan *p = user;
    job *j = p->job;
    (void)name;
    if (!p->quantize) {
        memcpy(buffer, p->info.data, nbytes);
    } else {
        j->cur = p;
        j->out = buffer;
        j->rows = p->info.nelements / p->info.ne[0];
        j->in_row = p->info.nbytes / (size_t)j->rows;
        j->out_row = nbytes / (size_t)j->rows;
        atomic_store(&j->next_row, 0);
        atomic_store(&j->failed, 0);
        int extra = j->threads - 1;
        if (extra > j->rows / ROW_CHUNK) extra = (int)(j->rows / ROW_CHUNK);
        pthread_t tid[256];
        int started = 0;
        for (; started < extra && started < 256; started++)
            if (pthread_create(&tid[started], NULL, convert_rows, j) != 0) break;
        convert_rows(j);
        for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
        if (j->status != OX_OK) return ox__fail(j->ctx, j->status, "%s", j->message);
    }
    /* the input's pages are read once: give them back, so that a large
     * model does not stay resident */
    ox__gguf_release_pages(j->in, p->info.data, p->info.nbytes);
    report(j, p);
    return OX_OK;
}

/* ---- the file -------------------------------------------------------------------------- */

static int default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static const preset *find_preset(const char *type)
{
    for (size_t i = 0; type && i < PRESET_COUNT; i++)
        if (strcasecmp(type, presets[i].name) == 0) return &presets[i];
    return NULL;
}

/* Copy the metadata, with general.file_type and general.quantization_version
 * set (in place when present) and the split keys dropped. */
static ox_status copy_metadata(ox_gguf_writer *w, const ox_gguf *in, uint32_t file_type)
{
    static const uint32_t quantization_version = 2;
    bool ft = false, qv = false;
    ox_status s = OX_OK;
    for (int64_t i = 0; i < ox_gguf_kv_count(in) && s == OX_OK; i++) {
        const char *key = ox_gguf_kv_key(in, i);
        if (strncmp(key, "split.", 6) == 0) continue;
        if (strcmp(key, "general.file_type") == 0) {
            s = ox_gguf_writer_add_scalar(w, key, OX_GGUF_UINT32, &file_type);
            ft = true;
        } else if (strcmp(key, "general.quantization_version") == 0) {
            s = ox_gguf_writer_add_scalar(w, key, OX_GGUF_UINT32, &quantization_version);
            qv = true;
        } else {
            s = ox_gguf_writer_copy_kv(w, in, i);
        }
    }
    if (s == OX_OK && !qv)
        s = ox_gguf_writer_add_scalar(w, "general.quantization_version", OX_GGUF_UINT32,
                                      &quantization_version);
    if (s == OX_OK && !ft) s = ox_gguf_writer_add_scalar(w, "general.file_type", OX_GGUF_UINT32, &file_type);
    return s;
}

/* Every tensor's plan: category, layer, whether and into what it converts. */
static ox_status make_plans(job *j, const preset *pr)
{
    ox_context *ctx = j->ctx;
    const ox_gguf *in = j->in;
    bool tied = ox_gguf_find_tensor(in, "output.weight") < 0;
    int n_v = 0, max_layer = -1;
    for (int64_t i = 0; i < j->count; i++) {
        plan *p = &j->plans[i];
        p->job = j;
        p->index = i;
        p->info.struct_size = sizeof p->info;
        ox_status s = ox_gguf_tensor_info_get(in, i, &p->info);
        if (s != OX_OK) return s;
        p->cat = categorize(p->info.name);
        p->layer = -1;
        if (sscanf(p->info.name, "blk.%d.", &p->layer) != 1 || p->layer < 0) p->layer = -1;
        if (p->layer > max_layer) max_layer = p->layer;
        n_v += p->cat == ATTN_V;
    }
    int64_t n_layer = -1;
    const char *arch = NULL;
    size_t arch_len = 0;
    int64_t k = ox_gguf_find(in, "general.architecture");
    if (k >= 0 && ox_gguf_get_string(in, k, &arch, &arch_len) == OX_OK && arch_len < 64) {
        char key[96];
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch_len, arch);
        int64_t kb = ox_gguf_find(in, key);
        if (kb >= 0 && ox_gguf_get_int(in, kb, &n_layer) != OX_OK) n_layer = -1;
    }
    if (n_layer <= max_layer) n_layer = max_layer + 1;
    for (int64_t i = 0; i < j->count; i++) {
        plan *p = &j->plans[i];
        p->to_type = p->info.ggml_type;
        p->out_bytes = p->info.nbytes;
        j->total_bytes += p->info.nbytes;
        if (!allows_quantization(&p->info)) continue;
        int i_v = 0; /* rank among the attn_v-like tensors, by layer then name */
        for (int64_t m = 0; p->cat == ATTN_V && m < j->count; m++) {
            const plan *q = &j->plans[m];
            i_v += q->cat == ATTN_V &&
                   (q->layer < p->layer ||
                    (q->layer == p->layer && strcmp(q->info.name, p->info.name) < 0));
        }
        uint32_t to = choose_type(pr, p, tied, i_v, n_v, (int)n_layer);
        if (to == p->info.ggml_type) continue; /* already so: copied */
        if (p->info.dtype == OX_DTYPE_COUNT)
            return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                            "ox_gguf_quantize: tensor '%s' is %s, which cannot be read as floats "
                            "to convert it to %s",
                            p->info.name, p->info.type_name, ox_ggml_type_str(to));
        const ox__ggml_type_traits *t = ox__ggml_type_find(to);
        p->quantize = true;
        p->to_type = to;
        p->out_bytes = (size_t)(p->info.nelements / t->block) * t->bytes;
    }
    return OX_OK;
}

/* A new empty file beside `out`, created exclusively: its name into tmp. */
static ox_status make_temp(ox_context *ctx, const char *out, char *tmp, size_t cap)
{
    static atomic_uint serial;
    for (int attempt = 0; attempt < 100; attempt++) {
        int n = snprintf(tmp, cap, "%s.ox-tmp-%ld-%u", out, (long)getpid(),
                         atomic_fetch_add(&serial, 1));
        if (n < 0 || (size_t)n >= cap)
            return ox__fail(ctx, OX_ERR_INVALID, "ox_gguf_quantize: output path too long");
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            close(fd);
            return OX_OK;
        }
        if (errno != EEXIST)
            return ox__fail(ctx, OX_ERR_IO, "ox_gguf_quantize: cannot write %s: %s (creating %s)",
                            out, strerror(errno), tmp);
    }
    return ox__fail(ctx, OX_ERR_IO, "ox_gguf_quantize: cannot create a temporary file beside %s",
                    out);
}

/* The writer's message names the temporary file it wrote; the user knows
 * OUT: say that instead (nothing of the temporary file stays). */
static void name_out_not_temp(ox_context *ctx, ox_status status, const char *tmp, const char *out)
{
    const char *said = ox_errmsg(ctx), *at;
    if (!said || !(at = strstr(said, tmp))) return;
    char message[1024];
    snprintf(message, sizeof message, "%.*s%s%s", (int)(at - said), said, out, at + strlen(tmp));
    ox__fail(ctx, status, "%s", message);
}

ox_status ox_gguf_quantize(ox_context *ctx, const char *in_path, const char *out_path,
                           const char *type, const ox_quantize_options *options,
                           ox_quantize_stats *stats)
{
    static const char func[] = "ox_gguf_quantize";
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, func, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!in_path || !out_path || !type)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: in, out and type are required", func);
    if (options && options->struct_size < sizeof *options)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: options->struct_size %zu is too small", func,
                        options->struct_size);
    if (stats && stats->struct_size < sizeof *stats)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: stats->struct_size %zu is too small", func,
                        stats->struct_size);
    const preset *pr = find_preset(type);
    if (!pr) {
        char list[256] = "";
        for (size_t i = 0; i < PRESET_COUNT; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     presets[i].name);
        return ox__fail(ctx, OX_ERR_INVALID, "%s: unknown type '%s' (one of %s)", func, type, list);
    }
    int threads = options && options->threads > 0 ? options->threads : default_threads();
    if (threads > 256) threads = 256;

    ox_gguf *in = NULL;
    if ((s = ox_gguf_open(ctx, in_path, &in)) != OX_OK) return s;
    job j = {.ctx = ctx, .in = in, .count = ox_gguf_tensor_count(in), .threads = threads,
             .options = options, .status = OX_OK};
    pthread_mutex_init(&j.lock, NULL);
    ox_gguf_writer *w = NULL;
    char tmp[4096] = "";
    j.plans = ox__calloc(ctx, (size_t)(j.count ? j.count : 1), sizeof *j.plans);
    if (!j.plans) {
        s = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of memory", func);
        goto out;
    }
    if ((s = make_plans(&j, pr)) != OX_OK || (s = ox_gguf_writer_create(ctx, &w)) != OX_OK ||
        (s = copy_metadata(w, in, pr->file_type)) != OX_OK)
        goto out;
    for (int64_t i = 0; i < j.count && s == OX_OK; i++) {
        plan *p = &j.plans[i];
        s = ox_gguf_writer_add_tensor_fill(w, p->info.name, p->to_type, p->info.n_dims,
                                           p->info.ne, p->out_bytes, fill_tensor, p);
    }
    if (s != OX_OK) goto out;
    if (options && (options->flags & OX_QUANTIZE_DRY_RUN)) {
        for (int64_t i = 0; i < j.count; i++) report(&j, &j.plans[i]);
    } else {
        if ((s = make_temp(ctx, out_path, tmp, sizeof tmp)) != OX_OK) {
            tmp[0] = '\0';
            goto out;
        }
        if ((s = ox_gguf_writer_write_file(w, tmp)) != OX_OK) {
            name_out_not_temp(ctx, s, tmp, out_path);
            goto out;
        }
        if (rename(tmp, out_path) != 0) {
            s = ox__fail(ctx, OX_ERR_IO, "%s: cannot rename %s to %s: %s", func, tmp, out_path,
                         strerror(errno));
            goto out;
        }
        tmp[0] = '\0';
    }
    if (stats) {
        size_t size = stats->struct_size;
        memset(stats, 0, size);
        stats->struct_size = size;
        stats->tensors = j.count;
        stats->file_type = pr->file_type;
        stats->bytes_in = j.total_bytes;
        for (int64_t i = 0; i < j.count; i++) {
            stats->quantized += j.plans[i].quantize;
            stats->bytes_out += j.plans[i].out_bytes;
            stats->elements += (uint64_t)j.plans[i].info.nelements;
        }
    }
out:
    if (tmp[0]) unlink(tmp); /* nothing half-written stays, OUT is untouched */
    ox_gguf_writer_free(w);
    if (j.plans) ox__free(ctx, j.plans, (size_t)(j.count ? j.count : 1) * sizeof *j.plans);
    pthread_mutex_destroy(&j.lock);
    ox_gguf_close(in);
    return s;
}
