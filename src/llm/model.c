/* Language models from GGUF files: weights as tensors over the file (wrapped
 * without a copy where the device addresses host memory), sessions with a
 * KV cache, and the forward pass of each architecture written as calls to
 * the op library (openxpu/ops.h).
 *
 * One pre-norm decoder serves every supported architecture; a table says
 * what each one adds (per layer, x the residual stream [n_embd, n_tokens]):
 *   h = rms_norm(x) * attn_norm
 *   q, k, v = h Wq (+ bq), h Wk (+ bk), h Wv (+ bv)     biases: where present
 *   q, k rms-normed per head (gemma3, qwen3); rope on q, k (adjacent pairs
 *   for llama, halves for the others)
 *   o = attention(q, k, v) Wo; rms_norm(o) * post_attention_norm (gemma3)
 *   x += o
 *   h = rms_norm(x) * ffn_norm
 *   f = (act(h Wgate) * (h Wup)) Wdown, act = silu or gelu_tanh_f16 (gemma3: ggml's GELU);
 *   rms_norm(f) * post_ffw_norm (gemma3); x += f
 * and output = rms_norm(x) * output_norm . output (token_embd when tied).
 * Gemma 3 also scales the embeddings by sqrt(n_embd) and puts five
 * sliding-window layers (rope base 10000) before each global one. Every
 * size and constant comes from the file's metadata. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf_internal.h"
#include "openxpu/llm.h"

#define MAX_LAYERS 256
#define MAX_TP 8 /* devices sharing a layer's matrices */
#define MAX_ROPE_BASES 4 /* distinct rope bases across a model's layers */

/* The layer matrices a tensor-parallel model splits by output rows. */
enum { MAT_Q, MAT_K, MAT_V, MAT_O, MAT_GATE, MAT_UP, MAT_DOWN, N_MATS };

/* What an architecture adds to the common decoder. */
typedef struct arch_desc {
    const char *name;
    int rope_mode;      /* OX_ROPE_NORMAL or OX_ROPE_NEOX */
    bool qk_norm;       /* per-head rms_norm of q and k */
    bool post_norms;    /* rms_norm after attention and after the ffn */
    bool embd_scale;    /* embeddings * sqrt(n_embd) */
    bool swa_every6;    /* sliding window on layers il % 6 != 5 */
    ox_unary_op act;    /* of the ffn's gate */
} arch_desc;

static const arch_desc ARCHS[] = {
    {"llama", OX_ROPE_NORMAL, false, false, false, false, OX_UNARY_SILU},
    {"qwen2", OX_ROPE_NEOX, false, false, false, false, OX_UNARY_SILU},
    {"qwen3", OX_ROPE_NEOX, true, false, false, false, OX_UNARY_SILU},
    {"gemma3", OX_ROPE_NEOX, true, true, true, true, OX_UNARY_GELU_TANH_F16},
};
#define SUPPORTED_ARCHS "llama, qwen2, qwen3, gemma3"

typedef struct layer {
    ox_tensor attn_norm, wq, wk, wv, wo, q_norm, k_norm, post_attn_norm;
    ox_tensor bq, bk, bv; /* .buffer NULL where the file has none */
    ox_tensor ffn_norm, w_gate, w_up, w_down, post_ffw_norm;
    bool swa;          /* sliding-window attention */
    float rope_base;
    int rope_table;    /* which of the model's rope bases (its angle table) */
    /* tensor parallel: rows [cut[i], cut[i+1]) of each matrix on device i */
    ox_tensor part[N_MATS][MAX_TP];
    int64_t cut[N_MATS][MAX_TP + 1];
} layer;

struct ox_model {
    ox_context *ctx;
    ox_device *device;
    ox_gguf *gguf;
    ox_buffer *weights;    /* the tensor data on the device: the whole file, or copies */
    ox_model_info info;
    const arch_desc *arch;
    float eps;
    int swa_window;
    int first, last;   /* the layers loaded: [first, last) */
    bool host_embd;    /* embeddings looked up in the mapped file, not copied */
    int rope_dims;     /* rotated dimensions of each head (<= head_dim) */
    float rope_scale;  /* position scale (1 / linear rope scaling factor) */
    /* the layers' distinct rope bases (Gemma 3: local and global): each
     * evaluation's angles are computed once per base on the host */
    float rope_bases[MAX_ROPE_BASES];
    int n_rope_bases;
    ox_tensor tok_embd, output_norm, output;
    layer *layers;
    /* tensor parallel: device 0 is `device`; the others hold row slices */
    int n_tp;
    struct ox_session *batch; /* the scratch and queue of ox_session_eval_batch: no caches */
    ox_device *tp_device[MAX_TP];
    ox_buffer *tp_weights[MAX_TP];
};

/* The device tensors an evaluation works in: allocated for the largest
 * batch so far and kept by the session, each evaluation using views of n
 * tokens (scratch_view). */
typedef struct scratch {
    ox_tensor x, h, q, k, v, att, o, g, u, ids, pos, mask, last, logits;
    ox_tensor rope[MAX_ROPE_BASES]; /* [rope_dims, n]: the angles (ox_rope_table) */
    /* tensor parallel: the main device's staging of the helpers' rows, and
     * each helper's input and output */
    ox_tensor tp_stage, tp_in[MAX_TP], tp_out[MAX_TP];
} scratch;

static void scratch_free(scratch *sc);

struct ox_session {
    ox_model *model;
    ox_queue *queue;
    ox_queue *tp_queue[MAX_TP]; /* [0] unused: the main queue */
    float *tp_host;             /* host staging of one matmul's input or output */
    size_t tp_host_bytes;
    int n_ctx;
    int pos;
    ox_tensor *k_cache, *v_cache; /* per layer: [head_dim, n_ctx, n_head_kv] f32 */
    /* or, with a pool, pages of it: position p is row pages[p / page] * page
     * + p % page of the pool's caches; `table` is pages on the device */
    struct ox_kv_pool *pool;
    int32_t *pages;
    int n_pages, max_pages;
    ox_tensor table;
    bool table_stale;             /* pages changed since table was written */
    scratch sc;                   /* for up to sc_tokens tokens; 0: none yet */
    int sc_tokens;
    int logit_rows;               /* rows of sc.logits (a batch's sessions) */
    unsigned char *host;          /* staging of one evaluation's inputs; each */
    size_t host_bytes;            /* evaluation ends waiting for its queue */
};

/* A KV cache shared by sessions: per layer [head_dim, pages * page,
 * n_head_kv] keys and values, and the free pages as a stack. */
struct ox_kv_pool {
    ox_model *model;
    int page, n_pages;
    ox_dtype dtype;
    ox_tensor *k, *v;        /* per layer */
    pthread_mutex_t lock;    /* guards what follows */
    int32_t *free_pages;     /* a stack of n_free page numbers */
    int n_free;
    int users;               /* sessions holding the pool, + 1 until ox_kv_pool_free */
    bool released;           /* ox_kv_pool_free was called */
};

/* ---- metadata and tensors ---------------------------------------------------- */

static ox_status meta_int(ox_model *m, const char *key, bool required, int64_t fallback,
                          int64_t *value)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->info.arch, key);
    int64_t i = ox_gguf_find(m->gguf, full);
    if (i < 0) {
        if (required)
            return ox__fail(m->ctx, OX_ERR_FORMAT, "ox_model_load: metadata key %s is missing",
                            full);
        *value = fallback;
        return OX_OK;
    }
    return ox_gguf_get_int(m->gguf, i, value);
}

static ox_status meta_float(ox_model *m, const char *key, double fallback, double *value)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->info.arch, key);
    int64_t i = ox_gguf_find(m->gguf, full);
    if (i < 0) {
        *value = fallback;
        return OX_OK;
    }
    return ox_gguf_get_float(m->gguf, i, value);
}

/* The weight `name`, checked to have the given sizes (-1: any), as a tensor
 * whose offset is its data's offset in the file; place_weights gives it a
 * buffer. */
static ox_status weight(ox_model *m, const char *name, int64_t ne0, int64_t ne1, ox_tensor *t)
{
    int64_t i = ox_gguf_find_tensor(m->gguf, name);
    if (i < 0) return ox__fail(m->ctx, OX_ERR_FORMAT, "ox_model_load: tensor %s is missing", name);
    ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
    ox_status s = ox_gguf_tensor_info_get(m->gguf, i, &ti);
    if (s != OX_OK) return s;
    if (ti.dtype == OX_DTYPE_COUNT)
        return ox__fail(m->ctx, OX_ERR_UNSUPPORTED, "ox_model_load: tensor %s has type %s, which "
                        "OpenXPU cannot compute with", name, ti.type_name);
    if ((ne0 >= 0 && ti.ne[0] != ne0) || (ne1 >= 0 && ti.ne[1] != ne1))
        return ox__fail(m->ctx, OX_ERR_FORMAT,
                        "ox_model_load: tensor %s is %lld x %lld, expected %lld x %lld", name,
                        (long long)ti.ne[0], (long long)ti.ne[1], (long long)ne0, (long long)ne1);
    *t = ox_tensor_make(NULL, (size_t)ox_gguf_data_offset(m->gguf) + ti.offset, ti.dtype, ti.ne[0],
                        ti.ne[1], ti.ne[2], ti.ne[3]);
    return OX_OK;
}

static size_t tensor_bytes(const ox_tensor *t)
{
    return ox_dtype_row_size(t->dtype, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

/* Every weight tensor the model uses (NULL-terminated; absent biases have
 * no size). */
static int weight_list(ox_model *m, ox_tensor **list, int cap)
{
    int n = 0;
#define ADD(t) if (n < cap - 1) list[n++] = &(t)
    if (m->first == 0 && !m->host_embd) ADD(m->tok_embd); /* a tied output is m->output */
    if (m->last == m->info.n_layer) {
        ADD(m->output_norm);
        ADD(m->output);
    }
    for (int il = m->first; il < m->last; il++) {
        layer *L = &m->layers[il];
        ox_tensor *all[] = {&L->attn_norm, &L->wq,     &L->wk,     &L->wv,          &L->wo,
                            &L->q_norm,    &L->k_norm, &L->post_attn_norm, &L->bq, &L->bk,
                            &L->bv,        &L->ffn_norm, &L->w_gate, &L->w_up,   &L->w_down,
                            &L->post_ffw_norm};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (all[i]->ne[0] > 0) ADD(*all[i]);
    }
#undef ADD
    list[n] = NULL;
    return n;
}

/* The CPU computes from packed copies of the quantized matrices
 * (ops/pack.c: eight rows interleaved, made once here); the file's pages
 * of each packed matrix are given back as it is copied, so the resident
 * memory stays about one copy of the weights (touched again, a page is
 * read back from the file). Out of memory stops the packing; the rest is
 * used as the file has it. */
static void release_pages(void *gguf, const void *data, size_t bytes)
{
    ox__gguf_release_pages(gguf, data, bytes);
}

/* One matrix; false when memory ran out (the rest then stay as they are). */
static bool pack_matrix(ox_model *m, const unsigned char *base, const ox_tensor *w)
{
    bool packed = false;
    if (ox__matrix_pack(w, release_pages, m->gguf, &packed) != OX_OK) {
        ox__log(m->ctx, OX_LOG_WARN, "ox_model_load: out of memory packing the weights for the "
                "CPU; the rest are used as the file has them");
        return false;
    }
    /* the pieces' own releases stop at whole pages inside each piece: the
     * pages straddling two pieces go now */
    if (packed) ox__gguf_release_pages(m->gguf, base + w->offset, tensor_bytes(w));
    return true;
}

static void pack_matrices(ox_model *m, const unsigned char *base)
{
    for (int il = m->first; il < m->last; il++) {
        const layer *L = &m->layers[il];
        const ox_tensor *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (!pack_matrix(m, base, mats[i])) return;
    }
    if (m->last == m->info.n_layer) pack_matrix(m, base, &m->output);
}

/* Put the weights on the device: the whole file wrapped in place where the
 * device addresses host memory (the CPU: nothing is copied or read), else
 * one buffer holding copies of the tensors this model (or stage) uses. */
static ox_status place_weights(ox_model *m, const ox_model_load_options *o)
{
    size_t file_size;
    const unsigned char *base = ox_gguf_file_data(m->gguf, &file_size);
    enum { MAX_WEIGHTS = 16 * MAX_LAYERS + 8 };
    ox_tensor **list = ox__alloc(m->ctx, MAX_WEIGHTS * sizeof *list);
    size_t *dest = ox__alloc(m->ctx, MAX_WEIGHTS * sizeof *dest);
    ox_status s = list && dest ? OX_OK : ox__fail(m->ctx, OX_ERR_OUT_OF_MEMORY,
                                                  "ox_model_load: out of memory");
    int n = s == OX_OK ? weight_list(m, list, MAX_WEIGHTS) : 0;
    if (s == OX_OK)
        s = ox_buffer_wrap_host(m->device, (void *)(uintptr_t)base, file_size, &m->weights);
    if (s == OX_OK) {
        for (int i = 0; i < n; i++) list[i]->buffer = m->weights; /* offsets are the file's */
        pack_matrices(m, base);
        if (o && o->progress) o->progress(1.0f, o->progress_user);
        goto out;
    }
    if (s != OX_ERR_UNSUPPORTED) goto out;
    /* A device that copies: the embedding table (often the largest tensor)
     * stays in the mapped file and the few rows a batch needs are looked up
     * on the host, as llama.cpp keeps it on the CPU; unless it is also the
     * output projection here. */
    m->host_embd = m->first == 0 &&
                   !(m->last == m->info.n_layer && m->output.offset == m->tok_embd.offset);
    if (m->host_embd) n = weight_list(m, list, MAX_WEIGHTS);
    /* Copies: each distinct tensor once (a tied output shares the
     * embeddings), 256-byte aligned. */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        dest[i] = SIZE_MAX;
        for (int j = 0; j < i; j++)
            if (list[j]->offset == list[i]->offset) dest[i] = dest[j];
        if (dest[i] != SIZE_MAX) continue;
        dest[i] = total;
        total += (tensor_bytes(list[i]) + 255) & ~(size_t)255;
    }
    m->info.loaded_bytes += total;
    if ((s = ox_buffer_alloc(m->device, total ? total : 256, &m->weights)) != OX_OK) goto out;
    size_t done = 0;
    for (int i = 0; i < n && s == OX_OK; i++) {
        bool first_copy = true;
        for (int j = 0; j < i; j++) first_copy &= list[j]->offset != list[i]->offset;
        size_t bytes = tensor_bytes(list[i]), from = list[i]->offset;
        if (first_copy) {
            s = ox_buffer_write(m->weights, dest[i], base + from, bytes);
            done += (bytes + 255) & ~(size_t)255;
            if (s == OX_OK && o && o->progress)
                o->progress(total ? (float)((double)done / (double)total) : 1.0f,
                            o->progress_user);
        }
    }
    for (int i = 0; i < n && s == OX_OK; i++) {
        list[i]->buffer = m->weights;
        list[i]->offset = dest[i];
    }
    if (s == OX_OK && n == 0 && o && o->progress) o->progress(1.0f, o->progress_user);
out:
    ox__free(m->ctx, list, MAX_WEIGHTS * sizeof *list);
    ox__free(m->ctx, dest, MAX_WEIGHTS * sizeof *dest);
    return s;
}

/* A weight the file may lack (biases): left zero (no buffer) when absent. */
static ox_status optional_weight(ox_model *m, const char *name, int64_t ne0, int64_t ne1,
                                 ox_tensor *t)
{
    memset(t, 0, sizeof *t);
    return ox_gguf_find_tensor(m->gguf, name) < 0 ? OX_OK : weight(m, name, ne0, ne1, t);
}

/* A layer's rope: the model's mode, dimensions and scaling, with its base
 * (the angle tables and the op take the same). */
static ox_rope_params rope_params(const ox_model *m, float base)
{
    return (ox_rope_params){.mode = m->arch->rope_mode, .n_dims = m->rope_dims,
                            .freq_base = base, .freq_scale = m->rope_scale};
}

/* Rope settings: rotated dimensions, base, and linear scaling; the kinds
 * of scaling the op library cannot express are refused by name. */
static ox_status load_rope(ox_model *m, double *base)
{
    int64_t v;
    double f;
    ox_status s;
    if ((s = meta_float(m, "rope.freq_base", 10000.0, base))) return s;
    if ((s = meta_int(m, "rope.dimension_count", false, m->info.head_dim, &v))) return s;
    if (v <= 0 || v > m->info.head_dim || v % 2)
        return ox__fail(m->ctx, OX_ERR_FORMAT, "ox_model_load: %s.rope.dimension_count %lld is "
                        "not an even number of at most the head size %d", m->info.arch,
                        (long long)v, m->info.head_dim);
    m->rope_dims = (int)v;
    m->rope_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->info.arch);
    int64_t i = ox_gguf_find(m->gguf, key);
    const char *type = "none";
    size_t len = 4;
    if (i >= 0 && (s = ox_gguf_get_string(m->gguf, i, &type, &len))) return s;
    if ((s = meta_float(m, "rope.scaling.factor", 0.0, &f))) return s;
    if (len == 6 && memcmp(type, "linear", 6) == 0 && f > 0) {
        m->rope_scale = (float)(1.0 / f);
    } else if (!(len == 4 && memcmp(type, "none", 4) == 0) &&
               !(len == 6 && memcmp(type, "linear", 6) == 0)) {
        return ox__fail(m->ctx, OX_ERR_UNSUPPORTED, "ox_model_load: rope scaling '%.*s' is not "
                        "supported (supported: none, linear)", (int)len, type);
    }
    if (ox_gguf_find_tensor(m->gguf, "rope_freqs.weight") >= 0)
        return ox__fail(m->ctx, OX_ERR_UNSUPPORTED, "ox_model_load: per-frequency rope factors "
                        "(rope_freqs.weight, Llama 3.1-style long-context scaling) are not "
                        "supported");
    return OX_OK;
}

static ox_status load_decoder(ox_model *m)
{
    ox_model_info *in = &m->info;
    const arch_desc *ar = m->arch;
    int64_t v;
    double f;
    ox_status s;
#define INT_KEY(key, field)                                               \
    if ((s = meta_int(m, key, true, 0, &v)) != OX_OK) return s;          \
    in->field = (int)v;
    INT_KEY("embedding_length", n_embd)
    INT_KEY("block_count", n_layer)
    INT_KEY("attention.head_count", n_head)
    INT_KEY("feed_forward_length", n_ff)
    INT_KEY("context_length", n_ctx_train)
#undef INT_KEY
    if ((s = meta_int(m, "attention.head_count_kv", false, in->n_head, &v))) return s;
    in->n_head_kv = (int)v;
    if (in->n_head <= 0 || in->n_embd <= 0)
        return ox__fail(m->ctx, OX_ERR_FORMAT, "ox_model_load: %d heads of a %d-wide embedding",
                        in->n_head, in->n_embd);
    if ((s = meta_int(m, "attention.key_length", false, in->n_embd / in->n_head, &v))) return s;
    in->head_dim = (int)v;
    if ((s = meta_int(m, "attention.value_length", false, in->head_dim, &v))) return s;
    if (v != in->head_dim)
        return ox__fail(m->ctx, OX_ERR_UNSUPPORTED, "ox_model_load: value heads of %lld differ "
                        "from key heads of %d", (long long)v, in->head_dim);
    m->swa_window = 0;
    if (ar->swa_every6) {
        if ((s = meta_int(m, "attention.sliding_window", false, 0, &v))) return s;
        m->swa_window = (int)v;
    }
    if ((s = meta_float(m, "attention.layer_norm_rms_epsilon", 1e-6, &f))) return s;
    m->eps = (float)f;
    if (in->n_layer <= 0 || in->n_layer > MAX_LAYERS || in->n_head_kv <= 0 ||
        in->n_head % in->n_head_kv || in->head_dim <= 0 || in->n_ff <= 0 || in->n_ctx_train <= 0)
        return ox__fail(m->ctx, OX_ERR_FORMAT, "ox_model_load: inconsistent hyper-parameters "
                        "(%d layers, %d heads, %d kv heads, head size %d, ffn %d, context %d)",
                        in->n_layer, in->n_head, in->n_head_kv, in->head_dim, in->n_ff,
                        in->n_ctx_train);
    double rope_base;
    if ((s = load_rope(m, &rope_base))) return s;
    if (m->last == 0 && m->first == 0) m->last = in->n_layer;
    if (m->first < 0 || m->first >= m->last || m->last > in->n_layer)
        return ox__fail(m->ctx, OX_ERR_INVALID, "ox_model_load: layers [%d, %d) are not a range "
                        "of the model's %d", m->first, m->last, in->n_layer);
    in->first_layer = m->first;
    in->last_layer = m->last;

    int64_t E = in->n_embd, D = in->head_dim, F = in->n_ff;
    int64_t Q = in->n_head * D, KV = in->n_head_kv * D;
    if ((s = weight(m, "token_embd.weight", E, -1, &m->tok_embd))) return s;
    in->n_vocab = (int)m->tok_embd.ne[1];
    if ((s = weight(m, "output_norm.weight", E, 1, &m->output_norm))) return s;
    m->output = m->tok_embd; /* tied */
    if (ox_gguf_find_tensor(m->gguf, "output.weight") >= 0 &&
        (s = weight(m, "output.weight", E, in->n_vocab, &m->output)))
        return s;
    m->layers = ox__calloc(m->ctx, (size_t)in->n_layer, sizeof *m->layers);
    if (!m->layers) return ox__fail(m->ctx, OX_ERR_OUT_OF_MEMORY, "ox_model_load: out of memory");
    for (int il = m->first; il < m->last; il++) {
        layer *L = &m->layers[il];
        char name[96];
#define W(field, tname, ne0, ne1)                                          \
    snprintf(name, sizeof name, "blk.%d." tname, il);                      \
    if ((s = weight(m, name, ne0, ne1, &L->field)) != OX_OK) return s;
#define OPT(field, tname, ne0)                                             \
    snprintf(name, sizeof name, "blk.%d." tname, il);                      \
    if ((s = optional_weight(m, name, ne0, 1, &L->field)) != OX_OK) return s;
        W(attn_norm, "attn_norm.weight", E, 1)
        W(wq, "attn_q.weight", E, Q)
        W(wk, "attn_k.weight", E, KV)
        W(wv, "attn_v.weight", E, KV)
        W(wo, "attn_output.weight", Q, E)
        OPT(bq, "attn_q.bias", Q)
        OPT(bk, "attn_k.bias", KV)
        OPT(bv, "attn_v.bias", KV)
        if (ar->qk_norm) {
            W(q_norm, "attn_q_norm.weight", D, 1)
            W(k_norm, "attn_k_norm.weight", D, 1)
        }
        if (ar->post_norms) {
            W(post_attn_norm, "post_attention_norm.weight", E, 1)
            W(post_ffw_norm, "post_ffw_norm.weight", E, 1)
        }
        W(ffn_norm, "ffn_norm.weight", E, 1)
        W(w_gate, "ffn_gate.weight", E, F)
        W(w_up, "ffn_up.weight", E, F)
        W(w_down, "ffn_down.weight", F, E)
#undef W
#undef OPT
        /* Gemma 3: five sliding-window layers (rope base 10000), then one
         * global layer, repeating. */
        L->swa = m->swa_window > 0 && il % 6 != 5;
        L->rope_base = L->swa ? 10000.0f : (float)rope_base;
        int t = 0;
        while (t < m->n_rope_bases && m->rope_bases[t] != L->rope_base) t++;
        if (t == m->n_rope_bases) {
            if (t == MAX_ROPE_BASES)
                return ox__fail(m->ctx, OX_ERR_UNSUPPORTED, "ox_model_load: more than %d rope "
                                "bases across the layers", MAX_ROPE_BASES);
            m->rope_bases[m->n_rope_bases++] = L->rope_base;
        }
        L->rope_table = t;
    }
    return OX_OK;
}

/* ---- tensor parallel ------------------------------------------------------------ */

static ox_tensor *matrix(layer *L, int id)
{
    ox_tensor *all[N_MATS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return all[id];
}

/* Cut every layer matrix by rows in proportion to the shares and put the
 * helpers' slices on their devices (mapped where the device maps host
 * memory, else copied: only their rows). Runs before place_weights, while
 * the tensors' offsets are the file's. */
static ox_status split_matrices(ox_model *m, const ox_model_load_options *o)
{
    if (o->tp_count > MAX_TP || !o->tp_devices || !o->tp_shares || o->tp_devices[0] != m->device)
        return ox__fail(m->ctx, OX_ERR_INVALID, "ox_model_load: tensor parallel over %d devices "
                        "(2 to %d) needs tp_devices (the first the model's device) and "
                        "tp_shares", o->tp_count, MAX_TP);
    double total = 0;
    for (int i = 0; i < o->tp_count; i++) {
        if (!(o->tp_shares[i] > 0) || !o->tp_devices[i])
            return ox__fail(m->ctx, OX_ERR_INVALID, "ox_model_load: tensor-parallel device %d "
                            "is NULL or its share is not positive", i);
        total += o->tp_shares[i];
        m->tp_device[i] = o->tp_devices[i];
    }
    m->n_tp = o->tp_count;
    for (int il = m->first; il < m->last; il++) {
        layer *L = &m->layers[il];
        for (int id = 0; id < N_MATS; id++) {
            const ox_tensor *W = matrix(L, id);
            int64_t N = W->ne[1];
            double acc = 0;
            L->cut[id][0] = 0;
            for (int i = 0; i < m->n_tp; i++) {
                acc += o->tp_shares[i];
                L->cut[id][i + 1] = i == m->n_tp - 1 ? N : (int64_t)llround((double)N * acc / total);
                L->part[id][i] = *W;
                L->part[id][i].offset = W->offset + (size_t)L->cut[id][i] * (size_t)W->nb[1];
                L->part[id][i].ne[1] = L->cut[id][i + 1] - L->cut[id][i];
            }
        }
    }
    size_t file_size;
    const unsigned char *base = ox_gguf_file_data(m->gguf, &file_size);
    for (int i = 1; i < m->n_tp; i++) {
        ox_status s = ox_buffer_wrap_host(m->tp_device[i], (void *)(uintptr_t)base, file_size,
                                          &m->tp_weights[i]);
        bool copy = s == OX_ERR_UNSUPPORTED;
        if (s != OX_OK && !copy) return s;
        size_t total_bytes = 0;
        for (int il = m->first; copy && il < m->last; il++)
            for (int id = 0; id < N_MATS; id++)
                total_bytes += (tensor_bytes(&m->layers[il].part[id][i]) + 255) & ~(size_t)255;
        if (copy && (s = ox_buffer_alloc(m->tp_device[i], total_bytes ? total_bytes : 256,
                                         &m->tp_weights[i])) != OX_OK)
            return s;
        size_t at = 0;
        for (int il = m->first; il < m->last; il++)
            for (int id = 0; id < N_MATS; id++) {
                ox_tensor *part = &m->layers[il].part[id][i];
                part->buffer = m->tp_weights[i];
                if (!copy) continue;
                size_t bytes = tensor_bytes(part);
                if (bytes && (s = ox_buffer_write(m->tp_weights[i], at, base + part->offset,
                                                  bytes)) != OX_OK)
                    return s;
                part->offset = at;
                at += (bytes + 255) & ~(size_t)255;
                m->info.loaded_bytes += bytes;
            }
    }
    return OX_OK;
}

/* After place_weights: slice 0 is the first rows of the main device's copy. */
static void main_slices(ox_model *m)
{
    for (int il = m->first; m->n_tp > 1 && il < m->last; il++)
        for (int id = 0; id < N_MATS; id++) {
            layer *L = &m->layers[il];
            int64_t rows = L->part[id][0].ne[1];
            L->part[id][0] = *matrix(L, id);
            L->part[id][0].ne[1] = rows;
        }
}

ox_status ox_model_load(ox_device *device, const char *path, ox_model **out)
{
    return ox_model_load_ex(device, path, NULL, out);
}

ox_status ox_model_load_ex(ox_device *device, const char *path,
                           const ox_model_load_options *options, ox_model **out)
{
    ox_context *ctx = ox_device_context(device);
    if (!ctx) return OX_ERR_INVALID_HANDLE;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "ox_model_load: out is NULL");
    *out = NULL;
    if (options && options->struct_size < sizeof *options)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_model_load_ex: options->struct_size is %zu; set "
                        "it to sizeof(ox_model_load_options)", options->struct_size);
    ox_model *m = ox__calloc(ctx, 1, sizeof *m);
    if (!m) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_model_load: out of memory");
    m->ctx = ctx;
    m->device = device;
    m->info.struct_size = sizeof m->info;
    ox_status s = ox_gguf_open(ctx, path, &m->gguf);
    if (s != OX_OK) goto err_free;
    const char *text;
    size_t len;
    int64_t key = ox_gguf_find(m->gguf, "general.architecture");
    if (key < 0 || ox_gguf_get_string(m->gguf, key, &text, &len) != OX_OK) {
        s = ox__fail(ctx, OX_ERR_FORMAT, "ox_model_load: %s has no general.architecture", path);
        goto err_free;
    }
    snprintf(m->info.arch, sizeof m->info.arch, "%.*s", (int)len, text);
    key = ox_gguf_find(m->gguf, "general.name");
    if (key >= 0 && ox_gguf_get_string(m->gguf, key, &text, &len) == OX_OK)
        snprintf(m->info.name, sizeof m->info.name, "%.*s", (int)len, text);
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(m->info.arch, ARCHS[i].name) == 0) m->arch = &ARCHS[i];
    if (!m->arch) {
        s = ox__fail(ctx, OX_ERR_UNSUPPORTED,
                     "ox_model_load: architecture '%s' of %s is not supported (supported: "
                     SUPPORTED_ARCHS ")", m->info.arch, path);
        goto err_free;
    }
    if (options) {
        m->first = options->first_layer;
        m->last = options->last_layer;
    }
    if ((s = load_decoder(m)) != OX_OK) goto err_free;
    if (options && options->tp_count > 1 && (s = split_matrices(m, options)) != OX_OK) goto err_free;
    if ((s = place_weights(m, options)) != OX_OK) goto err_free;
    main_slices(m);
    for (int64_t i = 0; i < ox_gguf_tensor_count(m->gguf); i++) {
        ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
        if (ox_gguf_tensor_info_get(m->gguf, i, &ti) == OX_OK) m->info.weight_bytes += ti.nbytes;
    }
    *out = m;
    return OX_OK;
err_free:
    ox_model_free(m);
    return s;
}

void ox_model_free(ox_model *m)
{
    if (!m) return;
    ox_context *ctx = m->ctx;
    ox_session_free(m->batch);
    ox__free(ctx, m->layers, sizeof *m->layers * (size_t)(m->info.n_layer > 0 ? m->info.n_layer : 0));
    ox_buffer_free(m->weights);
    for (int i = 1; i < MAX_TP; i++)
        if (m->tp_weights[i]) ox_buffer_free(m->tp_weights[i]);
    ox_gguf_close(m->gguf);
    ox__free(ctx, m, sizeof *m);
}

ox_status ox_model_get_info(const ox_model *m, ox_model_info *info)
{
    if (!m || !info || info->struct_size < sizeof *info)
        return ox__fail(m ? m->ctx : NULL, OX_ERR_INVALID,
                        "ox_model_get_info: model or info is NULL, or info->struct_size is wrong");
    *info = m->info;
    return OX_OK;
}

const ox_gguf *ox_model_gguf(const ox_model *m)
{
    return m ? m->gguf : NULL;
}

/* Add the bytes and elements of tensor i of the file (none when i < 0). */
static void count_tensor(const ox_gguf *g, int64_t i, uint64_t *bytes, uint64_t *params)
{
    ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
    if (i < 0 || ox_gguf_tensor_info_get(g, i, &ti) != OX_OK) return;
    *bytes += ti.nbytes;
    *params += (uint64_t)ti.nelements;
}

ox_status ox_model_get_cost(const ox_model *m, ox_model_cost *cost)
{
    if (!m || !cost || cost->struct_size < sizeof *cost)
        return ox__fail(m ? m->ctx : NULL, OX_ERR_INVALID,
                        "ox_model_get_cost: model or cost is NULL, or cost->struct_size is %zu "
                        "(sizeof(ox_model_cost) is %zu)", cost ? cost->struct_size : 0,
                        sizeof *cost);
    ox_model_cost c = {.struct_size = cost->struct_size};
    for (int64_t i = 0; i < ox_gguf_tensor_count(m->gguf); i++) {
        ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
        if (ox_gguf_tensor_info_get(m->gguf, i, &ti) == OX_OK && strncmp(ti.name, "blk.", 4) == 0) {
            c.layer_weight_bytes += ti.nbytes;
            c.layer_weight_params += (uint64_t)ti.nelements;
        }
    }
    int64_t output = ox_gguf_find_tensor(m->gguf, "output.weight");
    if (output < 0) output = ox_gguf_find_tensor(m->gguf, "token_embd.weight"); /* tied */
    count_tensor(m->gguf, output, &c.output_weight_bytes, &c.output_weight_params);
    count_tensor(m->gguf, ox_gguf_find_tensor(m->gguf, "output_norm.weight"),
                 &c.output_weight_bytes, &c.output_weight_params);
    const ox_model_info *in = &m->info;
    /* the cache holds K and V of head_dim per KV head and layer */
    c.kv_elements_per_token = 2 * (uint64_t)in->n_layer * (uint64_t)in->n_head_kv *
                              (uint64_t)in->head_dim;
    c.attention_flop_per_key = 2.0 * (2.0 * in->head_dim) * in->n_head * in->n_layer;
    *cost = c;
    return OX_OK;
}

/* ---- sessions ---------------------------------------------------------------- */

ox_status ox_session_create(ox_model *m, int n_ctx, ox_session **out)
{
    ox_session_options o = {.struct_size = sizeof o, .n_ctx = n_ctx};
    return ox_session_create_ex(m, &o, out);
}

/* ---- the KV pool ------------------------------------------------------------------ */

/* Per-layer K and V tensors: their buffers, then the two arrays. */
static void kv_layers_free(ox_context *ctx, ox_tensor *k, ox_tensor *v, int L)
{
    for (int il = 0; il < L; il++) {
        if (k && k[il].buffer) ox_buffer_free(k[il].buffer);
        if (v && v[il].buffer) ox_buffer_free(v[il].buffer);
    }
    ox__free(ctx, k, sizeof *k * (size_t)L);
    ox__free(ctx, v, sizeof *v * (size_t)L);
}

static void pool_release(ox_kv_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    bool last = --pool->users == 0;
    pthread_mutex_unlock(&pool->lock);
    if (!last) return;
    ox_context *ctx = pool->model->ctx;
    kv_layers_free(ctx, pool->k, pool->v, pool->model->info.n_layer);
    ox__free(ctx, pool->free_pages, sizeof *pool->free_pages * (size_t)pool->n_pages);
    pthread_mutex_destroy(&pool->lock);
    ox__free(ctx, pool, sizeof *pool);
}

ox_status ox_kv_pool_create(ox_model *m, const ox_kv_pool_options *options, ox_kv_pool **out)
{
    if (!m || !options || !out)
        return ox__fail(m ? m->ctx : NULL, OX_ERR_INVALID,
                        "ox_kv_pool_create: model, options or out is NULL");
    *out = NULL;
    ox_context *ctx = m->ctx;
    if (options->struct_size < sizeof *options)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_kv_pool_create: options->struct_size is %zu; "
                        "set it to sizeof(ox_kv_pool_options)", options->struct_size);
    int page = options->page_size ? options->page_size : 64;
    if (page < 1 || page > 4096 || (page & (page - 1)))
        return ox__fail(ctx, OX_ERR_INVALID, "ox_kv_pool_create: page_size %d is not a power of "
                        "two from 1 to 4096", options->page_size);
    if (options->n_tokens <= 0 || options->n_tokens > (1 << 30) - page)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_kv_pool_create: n_tokens %d is not in "
                        "[1, 2^30 - page_size]", options->n_tokens);
    if (m->first != 0 || m->last != m->info.n_layer)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED, "ox_kv_pool_create: pools serve whole models "
                        "(this one holds layers [%d, %d) of %d)", m->first, m->last,
                        m->info.n_layer);
    ox_kv_pool *pool = ox__calloc(ctx, 1, sizeof *pool);
    if (!pool) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_kv_pool_create: out of memory");
    int L = m->info.n_layer;
    pool->model = m;
    pool->page = page;
    pool->n_pages = (options->n_tokens + page - 1) / page;
    pool->dtype = options->kv_f32 ? OX_DTYPE_F32 : OX_DTYPE_F16;
    pool->users = 1;
    pthread_mutex_init(&pool->lock, NULL);
    pool->k = ox__calloc(ctx, (size_t)L, sizeof *pool->k);
    pool->v = ox__calloc(ctx, (size_t)L, sizeof *pool->v);
    pool->free_pages = ox__calloc(ctx, (size_t)pool->n_pages, sizeof *pool->free_pages);
    ox_status s = pool->k && pool->v && pool->free_pages
                      ? OX_OK
                      : ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_kv_pool_create: out of memory");
    int64_t rows = (int64_t)pool->n_pages * page;
    /* zeroed now, so that the pool's memory is taken at creation (RSS
     * then flat however its pages are used) and no row holds garbage */
    const uint8_t zero = 0;
    for (int il = 0; s == OX_OK && il < L; il++) {
        s = ox_tensor_alloc(m->device, pool->dtype, m->info.head_dim, rows, m->info.n_head_kv, 1,
                            &pool->k[il]);
        if (s == OX_OK)
            s = ox_tensor_alloc(m->device, pool->dtype, m->info.head_dim, rows,
                                m->info.n_head_kv, 1, &pool->v[il]);
        for (int kv = 0; s == OX_OK && kv < 2; kv++) {
            ox_buffer *b = (kv ? pool->v : pool->k)[il].buffer;
            size_t bytes = 0;
            s = ox_buffer_size(b, &bytes);
            if (s == OX_OK) s = ox_buffer_fill(b, 0, bytes, &zero, 1);
        }
    }
    if (s != OX_OK) {
        pool_release(pool);
        return s;
    }
    /* the stack pops page 0 first */
    for (int i = 0; i < pool->n_pages; i++) pool->free_pages[i] = pool->n_pages - 1 - i;
    pool->n_free = pool->n_pages;
    *out = pool;
    return OX_OK;
}

void ox_kv_pool_free(ox_kv_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    bool twice = pool->released;
    pool->released = true;
    pthread_mutex_unlock(&pool->lock);
    if (twice) { /* its sessions still hold it: the second call must not free it under them */
        ox__log(pool->model->ctx, OX_LOG_WARN, "ox_kv_pool_free: the pool was freed already");
        return;
    }
    pool_release(pool);
}

ox_status ox_kv_pool_get_stats(const ox_kv_pool *pool, ox_kv_pool_stats *stats)
{
    if (!pool || !stats || stats->struct_size < sizeof *stats)
        return ox__fail(pool ? pool->model->ctx : NULL, OX_ERR_INVALID,
                        "ox_kv_pool_get_stats: pool or stats is NULL, or stats->struct_size is "
                        "too small");
    ox_kv_pool *p = (ox_kv_pool *)pool;
    pthread_mutex_lock(&p->lock);
    *stats = (ox_kv_pool_stats){.struct_size = sizeof *stats, .page_size = p->page,
                                .pages = p->n_pages, .free_pages = p->n_free,
                                .sessions = p->users - (p->released ? 0 : 1)};
    pthread_mutex_unlock(&p->lock);
    return OX_OK;
}

int ox_session_pages_needed(const ox_session *se, int n)
{
    if (!se || !se->pool || n <= 0) return 0;
    int page = se->pool->page, want = (int)(((int64_t)se->pos + n + page - 1) / page);
    return want > se->n_pages ? want - se->n_pages : 0;
}

/* Give back the session's pages past those that hold `tokens` positions. */
static void pages_trim(ox_session *se, int tokens)
{
    if (!se->pool) return;
    ox_kv_pool *pool = se->pool;
    int keep = (tokens + pool->page - 1) / pool->page;
    if (keep >= se->n_pages) return;
    pthread_mutex_lock(&pool->lock);
    while (se->n_pages > keep) pool->free_pages[pool->n_free++] = se->pages[--se->n_pages];
    pthread_mutex_unlock(&pool->lock);
}

/* A session of n_ctx tokens; with_caches false: no KV cache (the model's
 * batch session, which only lends its scratch and queue). */
static ox_status session_new(ox_model *m, int n_ctx, ox_dtype kv, bool with_caches,
                             ox_kv_pool *pool, ox_session **out)
{
    ox_context *ctx = m->ctx;
    ox_session *se = ox__calloc(ctx, 1, sizeof *se);
    int L = m->info.n_layer;
    if (!se) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_session_create: out of memory");
    se->model = m;
    se->n_ctx = n_ctx;
    se->k_cache = ox__calloc(ctx, (size_t)L, sizeof *se->k_cache);
    se->v_cache = ox__calloc(ctx, (size_t)L, sizeof *se->v_cache);
    ox_status s = se->k_cache && se->v_cache ? ox_queue_create(m->device, &se->queue)
                                             : ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 1; s == OX_OK && i < m->n_tp; i++) s = ox_queue_create(m->tp_device[i], &se->tp_queue[i]);
    if (pool && s == OX_OK) { /* pages instead of caches of its own */
        pthread_mutex_lock(&pool->lock);
        pool->users++;
        pthread_mutex_unlock(&pool->lock);
        se->pool = pool;
        se->max_pages = (n_ctx + pool->page - 1) / pool->page;
        se->pages = ox__calloc(ctx, (size_t)se->max_pages, sizeof *se->pages);
        s = se->pages ? ox_tensor_alloc(m->device, OX_DTYPE_I32, se->max_pages, 1, 1, 1, &se->table)
                      : ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_session_create: out of memory");
        with_caches = false;
    }
    for (int il = m->first; with_caches && s == OX_OK && il < m->last; il++) {
        s = ox_tensor_alloc(m->device, kv, m->info.head_dim, n_ctx, m->info.n_head_kv, 1,
                            &se->k_cache[il]);
        if (s == OX_OK)
            s = ox_tensor_alloc(m->device, kv, m->info.head_dim, n_ctx,
                                m->info.n_head_kv, 1, &se->v_cache[il]);
    }
    if (s != OX_OK) {
        ox_session_free(se);
        return s;
    }
    *out = se;
    return OX_OK;
}

ox_status ox_session_create_ex(ox_model *m, const ox_session_options *options, ox_session **out)
{
    if (!m || !out) return ox__fail(NULL, OX_ERR_INVALID, "ox_session_create: model or out is NULL");
    *out = NULL;
    ox_context *ctx = m->ctx;
    /* the first form had no pool */
    const size_t first_size = offsetof(ox_session_options, pool);
    if (options && options->struct_size < first_size)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_session_create_ex: options->struct_size is %zu; "
                        "set it to sizeof(ox_session_options)", options->struct_size);
    ox_kv_pool *pool = options && options->struct_size >= sizeof *options ? options->pool : NULL;
    int n_ctx = options ? options->n_ctx : 0;
    ox_dtype kv = options && options->kv_f32 ? OX_DTYPE_F32 : OX_DTYPE_F16;
    int limit = m->info.n_ctx_train;
    if (pool) {
        if (pool->model != m)
            return ox__fail(ctx, OX_ERR_INVALID, "ox_session_create: the pool belongs to another "
                            "model");
        int64_t positions = (int64_t)pool->n_pages * pool->page;
        if (positions < limit) limit = (int)positions;
        kv = pool->dtype;
    }
    if (n_ctx <= 0) n_ctx = pool ? limit : limit < 4096 ? limit : 4096;
    if (n_ctx > limit)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_session_create: n_ctx %d exceeds the %s %d",
                        n_ctx, pool && limit < m->info.n_ctx_train ? "pool's positions"
                                                                  : "model's context length",
                        limit);
    return session_new(m, n_ctx, kv, true, pool, out);
}

void ox_session_free(ox_session *se)
{
    if (!se) return;
    ox_context *ctx = se->model->ctx;
    kv_layers_free(ctx, se->k_cache, se->v_cache, se->model->info.n_layer);
    ox_queue_free(se->queue); /* waits for its work first */
    if (se->pool) {
        if (se->pages) pages_trim(se, 0);
        ox__free(ctx, se->pages, sizeof *se->pages * (size_t)se->max_pages);
        if (se->table.buffer) ox_buffer_free(se->table.buffer);
        pool_release(se->pool);
    }
    for (int i = 1; i < MAX_TP; i++) ox_queue_free(se->tp_queue[i]);
    scratch_free(&se->sc);
    ox__free(ctx, se->host, se->host_bytes);
    free(se->tp_host);
    ox__free(ctx, se, sizeof *se);
}

int ox_session_position(const ox_session *se)
{
    return se ? se->pos : 0;
}

int ox_session_capacity(const ox_session *se)
{
    return se ? se->n_ctx : 0;
}

ox_status ox_session_rewind(ox_session *se, int position)
{
    if (!se) return ox__fail(NULL, OX_ERR_INVALID, "ox_session_rewind: session is NULL");
    if (position < 0 || position > se->pos)
        return ox__fail(se->model->ctx, OX_ERR_OUT_OF_RANGE,
                        "ox_session_rewind: position %d is outside 0..%d", position, se->pos);
    se->pos = position;
    pages_trim(se, position);
    return OX_OK;
}

/* ---- the forward pass ------------------------------------------------------------ */

static void scratch_free(scratch *sc)
{
    ox_tensor *all[] = {&sc->x, &sc->h, &sc->q, &sc->k, &sc->v, &sc->att, &sc->o,
                        &sc->g, &sc->u, &sc->ids, &sc->pos, &sc->mask, &sc->logits, &sc->tp_stage};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->buffer) ox_buffer_free(all[i]->buffer);
    for (int i = 0; i < MAX_ROPE_BASES; i++)
        if (sc->rope[i].buffer) ox_buffer_free(sc->rope[i].buffer);
    for (int i = 1; i < MAX_TP; i++) {
        if (sc->tp_in[i].buffer) ox_buffer_free(sc->tp_in[i].buffer);
        if (sc->tp_out[i].buffer) ox_buffer_free(sc->tp_out[i].buffer);
    }
}

/* Scratch for at least n tokens: kept from an earlier evaluation when it is
 * large enough, else allocated anew (the mask for n rows of the whole
 * context). */
static ox_status scratch_reserve(ox_session *se, int n)
{
    if (n <= se->sc_tokens) return OX_OK;
    const ox_model_info *in = &se->model->info;
    ox_model *m = se->model;
    ox_device *d = m->device;
    int64_t E = in->n_embd, D = in->head_dim, H = in->n_head, Hkv = in->n_head_kv;
    int n_kv = se->n_ctx;
    scratch *sc = &se->sc;
    ox_status s = ox_queue_finish(se->queue); /* nothing may still use the old one */
    if (s != OX_OK) return s;
    scratch_free(sc);
    se->sc_tokens = 0;
    memset(sc, 0, sizeof *sc);
    if ((s = ox_tensor_alloc(d, OX_DTYPE_F32, E, n, 1, 1, &sc->x)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, E, n, 1, 1, &sc->h)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, H * D, n, 1, 1, &sc->q)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, Hkv * D, n, 1, 1, &sc->k)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, Hkv * D, n, 1, 1, &sc->v)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, H * D, n, 1, 1, &sc->att)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, E, n, 1, 1, &sc->o)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, in->n_ff, n, 1, 1, &sc->g)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, in->n_ff, n, 1, 1, &sc->u)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_I32, n, 1, 1, 1, &sc->ids)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_I32, n, 1, 1, 1, &sc->pos)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, n_kv, n, 1, 1, &sc->mask)) ||
        (s = ox_tensor_alloc(d, OX_DTYPE_F32, in->n_vocab, 1, 1, 1, &sc->logits)))
        goto fail;
    for (int i = 0; i < m->n_rope_bases; i++)
        if ((s = ox_tensor_alloc(d, OX_DTYPE_F32, m->rope_dims, n, 1, 1, &sc->rope[i]))) goto fail;
    if (m->n_tp > 1) {
        /* the widest input and output of any layer matrix */
        int64_t wide = E > H * D ? E : H * D;
        if (in->n_ff > wide) wide = in->n_ff;
        if ((s = ox_tensor_alloc(d, OX_DTYPE_F32, wide, n, 1, 1, &sc->tp_stage))) goto fail;
        for (int i = 1; i < m->n_tp; i++)
            if ((s = ox_tensor_alloc(m->tp_device[i], OX_DTYPE_F32, wide, n, 1, 1, &sc->tp_in[i])) ||
                (s = ox_tensor_alloc(m->tp_device[i], OX_DTYPE_F32, wide, n, 1, 1, &sc->tp_out[i])))
                goto fail;
    }
    se->sc_tokens = n;
    se->logit_rows = 1;
    return OX_OK;
fail:
    scratch_free(sc);
    memset(sc, 0, sizeof *sc);
    return s;
}

/* One session's tokens in an evaluation: rows [start, start + n) of the
 * scratch. A session's own evaluation is one segment; a batch
 * (ox_session_eval_batch) has one per session. */
typedef struct segment {
    ox_session *se;
    int start, n;
} segment;

/* Pages for the segments' new tokens, all or none: an evaluation that
 * finds too few fails before it starts, with every session as it was.
 * Then each session's page table, where it changed, written to the device
 * (the queues are idle between evaluations). */
static ox_status pages_take(const segment *sg, int n_seg)
{
    ox_status s = OX_OK;
    int got = 0;
    for (; got < n_seg && s == OX_OK; got++) {
        ox_session *se = sg[got].se;
        int need = ox_session_pages_needed(se, sg[got].n);
        if (need == 0) continue;
        ox_kv_pool *pool = se->pool;
        pthread_mutex_lock(&pool->lock);
        int free_pages = pool->n_free;
        /* the evaluation checked pos + n <= n_ctx, so the table has room */
        bool room = se->n_pages + need <= se->max_pages;
        if (need <= free_pages && room) {
            for (int i = 0; i < need; i++) se->pages[se->n_pages++] = pool->free_pages[--pool->n_free];
            se->table_stale = true;
        }
        pthread_mutex_unlock(&pool->lock);
        if (!room)
            s = ox__fail(se->model->ctx, OX_ERR_INTERNAL, "ox_session_eval: %d pages at position "
                         "%d exceed the session's page table of %d", se->n_pages + need, se->pos,
                         se->max_pages);
        else if (need > free_pages)
            s = ox__fail(se->model->ctx, OX_ERR_OUT_OF_MEMORY,
                         "ox_session_eval: the KV pool is full: %d more tokens at position %d "
                         "need %d pages of %d positions; %d are free", sg[got].n, se->pos, need,
                         pool->page, free_pages);
    }
    if (s != OX_OK) { /* give back what this call took */
        for (int i = 0; i < got; i++) pages_trim(sg[i].se, sg[i].se->pos);
        return s;
    }
    for (int i = 0; i < n_seg; i++) {
        ox_session *se = sg[i].se;
        if (!se->pool || !se->table_stale) continue;
        ox_tensor used = se->table;
        used.ne[0] = se->n_pages;
        if ((s = ox_tensor_write(&used, se->pages, (size_t)se->n_pages * sizeof *se->pages))) {
            for (int k = 0; k < n_seg; k++) pages_trim(sg[k].se, sg[k].se->pos);
            return s;
        }
        se->table_stale = false;
    }
    return OX_OK;
}

/* Logits for `rows` sessions at once. */
static ox_status logits_reserve(ox_session *se, int rows)
{
    if (rows <= se->logit_rows) return OX_OK;
    ox_status s = ox_queue_finish(se->queue);
    if (s != OX_OK) return s;
    ox_buffer_free(se->sc.logits.buffer);
    memset(&se->sc.logits, 0, sizeof se->sc.logits);
    se->logit_rows = 0;
    s = ox_tensor_alloc(se->model->device, OX_DTYPE_F32, se->model->info.n_vocab, rows, 1, 1,
                        &se->sc.logits);
    if (s == OX_OK) se->logit_rows = rows;
    return s;
}

/* Rows [start, start + n) of a [ne0, tokens] scratch tensor. */
static ox_tensor rows_of(const ox_tensor *t, int start, int n)
{
    ox_tensor v = *t;
    v.offset += (size_t)start * (size_t)t->nb[1];
    v.ne[1] = n;
    v.nb[2] = v.nb[3] = v.nb[1] * n;
    return v;
}

/* A contiguous [ne0, ne1] view at the start of a scratch tensor. */
static ox_tensor view2(const ox_tensor *t, int64_t ne0, int64_t ne1)
{
    return ox_tensor_make(t->buffer, t->offset, t->dtype, ne0, ne1, 1, 1);
}

/* The session's scratch as tensors of n tokens (n <= sc_tokens); the mask
 * [n_kv, n] for keys up to position n_kv. */
static scratch scratch_view(const ox_session *se, int n, int n_kv)
{
    scratch v = se->sc;
    ox_tensor *rows[] = {&v.x, &v.h, &v.q, &v.k, &v.v, &v.att, &v.o, &v.g, &v.u};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        rows[i]->ne[1] = n;
        rows[i]->nb[2] = rows[i]->nb[3] = rows[i]->nb[1] * n;
    }
    v.ids.ne[0] = n;
    v.pos.ne[0] = n;
    for (int i = 0; i < se->model->n_rope_bases; i++)
        v.rope[i] = view2(&se->sc.rope[i], se->model->rope_dims, n);
    v.mask = ox_tensor_make(se->sc.mask.buffer, se->sc.mask.offset, OX_DTYPE_F32, n_kv, n, 1, 1);
    return v;
}

/* dst = in . W^T for layer matrix `id`; with tensor parallelism, each
 * device computes its rows of dst from the same input (copied to the
 * helpers through host memory), and the main device gathers them. */
static ox_status mm(ox_session *se, scratch *sc, layer *L, int id, const ox_tensor *dst,
                    const ox_tensor *in)
{
    ox_model *m = se->model;
    ox_queue *q = se->queue;
    if (m->n_tp <= 1) return ox_matmul(q, dst, in, matrix(L, id), OX_MATMUL_TRANS_B);
    int64_t K = in->ne[0], n = in->ne[1], N = dst->ne[0];
    size_t in_bytes = (size_t)(K * n) * sizeof(float), out_bytes = (size_t)(N * n) * sizeof(float);
    size_t need = in_bytes > out_bytes ? in_bytes : out_bytes;
    if (need > se->tp_host_bytes) {
        free(se->tp_host);
        se->tp_host = malloc(need);
        se->tp_host_bytes = se->tp_host ? need : 0;
        if (!se->tp_host)
            return ox__fail(m->ctx, OX_ERR_OUT_OF_MEMORY, "ox_session_eval: out of memory");
    }
    ox_status s;
    if ((s = ox_queue_finish(q)) || (s = ox_tensor_read(in, se->tp_host, in_bytes))) return s;
    for (int i = 1; i < m->n_tp; i++) {
        int64_t rows = L->cut[id][i + 1] - L->cut[id][i];
        if (rows == 0) continue;
        ox_tensor tin = view2(&sc->tp_in[i], K, n), tout = view2(&sc->tp_out[i], rows, n);
        if ((s = ox_tensor_write(&tin, se->tp_host, in_bytes)) ||
            (s = ox_matmul(se->tp_queue[i], &tout, &tin, &L->part[id][i], OX_MATMUL_TRANS_B)))
            return s;
    }
    /* the main device's rows straight into dst's first columns */
    int64_t rows0 = L->cut[id][1];
    if (rows0 > 0) {
        ox_tensor stage = view2(&sc->tp_stage, rows0, n), part = *dst;
        part.ne[0] = rows0;
        if ((s = ox_matmul(q, &stage, in, &L->part[id][0], OX_MATMUL_TRANS_B)) ||
            (s = ox_copy(q, &part, &stage)))
            return s;
    }
    for (int i = 1; i < m->n_tp; i++) {
        int64_t rows = L->cut[id][i + 1] - L->cut[id][i];
        if (rows == 0) continue;
        size_t bytes = (size_t)(rows * n) * sizeof(float);
        ox_tensor tout = view2(&sc->tp_out[i], rows, n), part = *dst;
        ox_tensor stage = view2(&sc->tp_stage, rows, n);
        stage.offset += (size_t)(L->cut[id][i] * n) * sizeof(float);
        part.offset += (size_t)L->cut[id][i] * sizeof(float);
        part.ne[0] = rows;
        if ((s = ox_queue_finish(se->tp_queue[i])) || (s = ox_tensor_read(&tout, se->tp_host, bytes)) ||
            (s = ox_tensor_write(&stage, se->tp_host, bytes)) || (s = ox_copy(q, &part, &stage)))
            return s;
    }
    return OX_OK;
}

/* dst[i] = in . W_i^T for the layer matrices ids[i], sharing the rounding
 * of in where the device can (ox_matmul_many); with tensor parallelism, one
 * after another through mm. */
static ox_status mm_many(ox_session *se, scratch *sc, layer *L, int n, const int *ids,
                         const ox_tensor *const *dsts, const ox_tensor *in)
{
    ox_status s = OX_OK;
    if (se->model->n_tp > 1) {
        for (int i = 0; i < n && s == OX_OK; i++) s = mm(se, sc, L, ids[i], dsts[i], in);
        return s;
    }
    ox_tensor d[4], w[4];
    for (int i = 0; i < n; i++) {
        d[i] = *dsts[i];
        w[i] = *matrix(L, ids[i]);
    }
    return ox_matmul_many(se->queue, n, d, in, w, OX_MATMUL_TRANS_B);
}

/* A [rows of D] x n_heads x n_tokens view of a [n_heads * D, n_tokens] tensor. */
static ox_tensor heads(const ox_tensor *t, int64_t D)
{
    ox_tensor v = *t;
    int64_t H = t->ne[0] / D, n = t->ne[1];
    v.ne[0] = D;
    v.ne[1] = H;
    v.ne[2] = n;
    v.ne[3] = 1;
    v.nb[1] = D * 4;
    v.nb[2] = t->nb[1];
    v.nb[3] = t->nb[1] * n;
    return v;
}

/* The same, with tokens in dimension 1 and heads in 2, as attention wants. */
static ox_tensor tokens_by_head(const ox_tensor *t, int64_t D)
{
    static const int axes[4] = {0, 2, 1, 3};
    ox_tensor hv = heads(t, D);
    return ox_tensor_permute(&hv, axes);
}

/* The attention of one segment: its keys and values into its session's
 * cache, its queries against that cache. mask_at: the segment's block of
 * the mask scratch (floats), where a layer masks. */
static ox_status attention_segment(ox_session *se, layer *L, scratch *sc, const segment *g,
                                   size_t mask_at)
{
    ox_model *m = se->model;
    const ox_model_info *in = &m->info;
    ox_queue *q = se->queue;
    int64_t D = in->head_dim;
    ox_session *owner = g->se;
    int n = g->n, n_kv = owner->pos + n;
    ox_status s;
    ox_tensor qr = rows_of(&sc->q, g->start, n), kr = rows_of(&sc->k, g->start, n);
    ox_tensor vr = rows_of(&sc->v, g->start, n), ar = rows_of(&sc->att, g->start, n);
    ox_tensor rope_rows = rows_of(&sc->rope[L->rope_table], g->start, n);
    ox_rope_params rope = rope_params(m, L->rope_base);
    /* The new keys and values go to the caches: [D, rows, Hkv] viewed as
     * [D, Hkv, run] from the row of the run's first position, a run being
     * all n (a cache of the session's own) or the part in one page (a
     * pool's). The keys are normalised (where the architecture has q/k
     * norms) and rotated straight into theirs, with the queries, in one op. */
    int il = (int)(L - m->layers);
    ox_kv_pool *pool = owner->pool;
    ox_tensor kc = pool ? pool->k[il] : owner->k_cache[il];
    ox_tensor vc = pool ? pool->v[il] : owner->v_cache[il];
    bool norms = m->arch->qk_norm;
    for (int done = 0, run; done < n; done += run) {
        int p = owner->pos + done;
        int64_t row = p;
        run = n - done;
        if (pool) {
            row = (int64_t)owner->pages[p / pool->page] * pool->page + p % pool->page;
            if (run > pool->page - p % pool->page) run = pool->page - p % pool->page;
        }
        ox_tensor kdst = kc, vdst = vc;
        for (int c = 0; c < 2; c++) {
            ox_tensor *dst = c ? &vdst : &kdst;
            const ox_tensor *cache = c ? &vc : &kc;
            dst->offset = cache->offset + (size_t)row * (size_t)cache->nb[1];
            dst->ne[1] = in->n_head_kv;
            dst->nb[1] = cache->nb[2];
            dst->ne[2] = run;
            dst->nb[2] = cache->nb[1];
        }
        ox_tensor qp = rows_of(&qr, done, run), kp = rows_of(&kr, done, run);
        ox_tensor vp = rows_of(&vr, done, run), rp = rows_of(&rope_rows, done, run);
        ox_tensor qph = heads(&qp, D), kph = heads(&kp, D), vph = heads(&vp, D);
        if ((s = ox_rope_qk(q, &qph, &qph, norms ? &L->q_norm : NULL, &kdst, &kph,
                            norms ? &L->k_norm : NULL, &rp, &rope, m->eps)) ||
            (s = ox_copy(q, &vdst, &vph)))
            return s;
    }
    ox_tensor qt = tokens_by_head(&qr, D), at = tokens_by_head(&ar, D);
    ox_attention_params ap = {.scale = 1.0f / sqrtf((float)D), .causal = 1};
    ox_tensor mview = ox_tensor_make(sc->mask.buffer, sc->mask.offset + mask_at * sizeof(float),
                                     OX_DTYPE_F32, n_kv, n, 1, 1);
    const ox_tensor *mask = L->swa && n_kv > m->swa_window ? &mview : NULL;
    if (pool)
        return ox_attention_paged(q, &at, &qt, &kc, &vc, &owner->table, pool->page, n_kv, mask,
                                  &ap);
    kc.ne[1] = n_kv;
    vc.ne[1] = n_kv;
    return ox_attention(q, &at, &qt, &kc, &vc, mask, &ap);
}

static ox_status attention_block(ox_session *se, layer *L, scratch *sc, const segment *sg,
                                 int n_seg)
{
    ox_model *m = se->model;
    ox_queue *q = se->queue;
    ox_status s;
    static const int qkv[3] = {MAT_Q, MAT_K, MAT_V};
    const ox_tensor *qkv_out[3] = {&sc->q, &sc->k, &sc->v};
    if ((s = mm_many(se, sc, L, 3, qkv, qkv_out, &sc->h))) return s;
    if ((L->bq.buffer && (s = ox_add(q, &sc->q, &sc->q, &L->bq))) ||
        (L->bk.buffer && (s = ox_add(q, &sc->k, &sc->k, &L->bk))) ||
        (L->bv.buffer && (s = ox_add(q, &sc->v, &sc->v, &L->bv))))
        return s;
    size_t mask_at = 0; /* the segments' masks lie one after another */
    for (int i = 0; i < n_seg; i++) {
        if ((s = attention_segment(se, L, sc, &sg[i], mask_at))) return s;
        mask_at += (size_t)(sg[i].se->pos + sg[i].n) * (size_t)sg[i].n;
    }
    if ((s = mm(se, sc, L, MAT_O, &sc->o, &sc->att))) return s;
    /* x += (post-norm of) o; h = the FFN's input, normalised: one op */
    return ox_add_rms_norm(q, &sc->x, &sc->o, m->arch->post_norms ? &L->post_attn_norm : NULL,
                           &sc->h, &L->ffn_norm, m->eps);
}

/* The FFN on h; then x += (post-norm of) its output and, when next_norm is
 * given (the next layer's input norm, or the output norm), h = the norm of
 * the new x. */
static ox_status ffn_block(ox_session *se, layer *L, scratch *sc, const ox_tensor *next_norm)
{
    static const int gate_up[2] = {MAT_GATE, MAT_UP};
    const ox_tensor *gate_up_out[2] = {&sc->g, &sc->u};
    ox_model *m = se->model;
    ox_queue *q = se->queue;
    ox_status s;
    const ox_tensor *post = m->arch->post_norms ? &L->post_ffw_norm : NULL;
    if ((s = mm_many(se, sc, L, 2, gate_up, gate_up_out, &sc->h)) ||
        (s = ox_glu(q, m->arch->act, &sc->g, &sc->g, &sc->u)) ||
        (s = mm(se, sc, L, MAT_DOWN, &sc->o, &sc->g)))
        return s;
    if (next_norm) return ox_add_rms_norm(q, &sc->x, &sc->o, post, &sc->h, next_norm, m->eps);
    if (post && (s = ox_rms_norm(q, &sc->o, &sc->o, post, m->eps))) return s;
    return ox_add(q, &sc->x, &sc->x, &sc->o);
}

/* Host staging of at least `bytes` for one evaluation's inputs. */
static ox_status host_reserve(ox_session *se, size_t bytes)
{
    if (bytes <= se->host_bytes) return OX_OK;
    ox_context *ctx = se->model->ctx;
    ox__free(ctx, se->host, se->host_bytes);
    se->host_bytes = 0;
    se->host = ox__alloc(ctx, bytes);
    if (!se->host) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_session_eval: out of memory");
    se->host_bytes = bytes;
    return OX_OK;
}

/* Whether a layer of the model masks keys (the sliding window) when the
 * context holds n_kv keys. */
static bool needs_mask(const ox_model *m, int n_kv)
{
    if (m->swa_window <= 0 || n_kv <= m->swa_window) return false;
    for (int il = m->first; il < m->last; il++)
        if (m->layers[il].swa) return true;
    return false;
}

/* Enqueue the inputs on the session's queue, without waiting: token ids (if
 * any), positions (each segment's from its session's), the sliding-window
 * masks when a layer needs them (-inf where a query is window or more
 * positions past a key; one block per segment, one after another), and the
 * hidden states or the embeddings taken on the host. The staging stays
 * untouched until the evaluation waits for its queue. */
static ox_status upload_inputs(ox_session *se, const segment *sg, int n_seg,
                               const int32_t *tokens, const float *hidden_in, int n,
                               const scratch *sc)
{
    ox_model *m = se->model;
    ox_queue *q = se->queue;
    int window = m->swa_window;
    bool mask = false, host_x = hidden_in || (tokens && m->host_embd);
    size_t mask_count = 0;
    for (int i = 0; i < n_seg; i++) {
        int n_kv = sg[i].se->pos + sg[i].n;
        mask = mask || needs_mask(m, n_kv);
        mask_count += (size_t)n_kv * (size_t)sg[i].n;
    }
    size_t ids_bytes = (size_t)n * sizeof(int32_t), pos_bytes = ids_bytes;
    size_t mask_bytes = mask ? mask_count * sizeof(float) : 0;
    size_t x_bytes = host_x ? (size_t)n * (size_t)m->info.n_embd * sizeof(float) : 0;
    size_t rope_bytes = (size_t)m->n_rope_bases * (size_t)n * (size_t)m->rope_dims * sizeof(float);
    ox_status s = host_reserve(se, ids_bytes + pos_bytes + mask_bytes + x_bytes + rope_bytes);
    if (s != OX_OK) return s;
    int32_t *pos = (int32_t *)se->host, *ids = pos + n;
    float *maskv = (float *)(ids + n), *x = maskv + (mask ? mask_count : 0);
    float *angles = x + (host_x ? (size_t)n * (size_t)m->info.n_embd : 0);
    float *mrow = maskv;
    for (int g = 0; g < n_seg; g++) {
        int n_kv = sg[g].se->pos + sg[g].n;
        for (int i = sg[g].start; i < sg[g].start + sg[g].n; i++) {
            pos[i] = sg[g].se->pos + (i - sg[g].start);
            for (int j = 0; mask && j < n_kv; j++) mrow[j] = pos[i] - j >= window ? -INFINITY : 0.0f;
            if (mask) mrow += n_kv;
        }
    }
    if ((s = ox_queue_write(q, sc->pos.buffer, sc->pos.offset, pos, pos_bytes, NULL))) return s;
    /* every layer of a base rotates by the same angles: computed here once
     * (in double, as the CPU's rope does), not in each layer */
    for (int i = 0; i < m->n_rope_bases; i++) {
        ox_rope_params p = rope_params(m, m->rope_bases[i]);
        float *t = angles + (size_t)i * (size_t)n * (size_t)m->rope_dims;
        if ((s = ox_rope_table(&p, pos, n, t)) ||
            (s = ox_queue_write(q, sc->rope[i].buffer, sc->rope[i].offset, t,
                                (size_t)n * (size_t)m->rope_dims * sizeof(float), NULL)))
            return s;
    }
    if (tokens && !m->host_embd) {
        memcpy(ids, tokens, ids_bytes);
        if ((s = ox_queue_write(q, sc->ids.buffer, sc->ids.offset, ids, ids_bytes, NULL))) return s;
    }
    if (mask && (s = ox_queue_write(q, sc->mask.buffer, sc->mask.offset, maskv, mask_bytes, NULL)))
        return s;
    if (!host_x) return OX_OK;
    if (hidden_in) {
        memcpy(x, hidden_in, x_bytes);
    } else { /* the embeddings of the tokens, from the mapped file */
        size_t file_size, row = ox_dtype_row_size(m->tok_embd.dtype, m->tok_embd.ne[0]);
        const unsigned char *base = ox_gguf_file_data(m->gguf, &file_size);
        for (int i = 0; i < n && s == OX_OK; i++)
            s = ox_row_to_f32(m->tok_embd.dtype, base + m->tok_embd.offset + (size_t)tokens[i] * row,
                              x + (size_t)i * (size_t)m->info.n_embd, m->info.n_embd);
        if (s != OX_OK) return s;
    }
    return ox_queue_write(q, sc->x.buffer, sc->x.offset, x, x_bytes, NULL);
}

ox_status ox_session_eval(ox_session *se, const int32_t *tokens, int n, float *logits)
{
    if (se && (se->model->first != 0 || se->model->last != se->model->info.n_layer))
        return ox__fail(se->model->ctx, OX_ERR_MISUSE, "ox_session_eval: the model holds layers "
                        "[%d, %d) only; use ox_session_eval_range", se->model->first,
                        se->model->last);
    return ox_session_eval_range(se, tokens, NULL, n, NULL, logits);
}

/* A debugging aid for comparing layers with another implementation (for
 * instance llama.cpp's llama-eval-callback, whose l_out-N are these):
 * with OX_DUMP_HIDDEN=FILE each evaluation appends, after the embedding
 * (layer -1), after every layer's attention (1000 + layer) and after the
 * layer (layer), the residual stream: int32 layer,
 * int32 position of the first token, int32 tokens, int32 width, then
 * tokens x width floats. Costs a wait a layer; off (one getenv) otherwise. */
static ox_status dump_hidden(ox_session *se, const scratch *sc, int il, int n)
{
    const char *path = getenv("OX_DUMP_HIDDEN");
    if (!path || !*path) return OX_OK;
    ox_model *m = se->model;
    int32_t head[4] = {il, se->pos, n, (int32_t)m->info.n_embd};
    size_t count = (size_t)n * (size_t)m->info.n_embd;
    float *x = malloc(count * sizeof *x);
    if (!x) return ox__fail(m->ctx, OX_ERR_OUT_OF_MEMORY, "OX_DUMP_HIDDEN: out of memory");
    ox_status s = ox_queue_read(se->queue, sc->x.buffer, sc->x.offset, x, count * sizeof *x, NULL);
    if (s == OX_OK) s = ox_queue_finish(se->queue);
    FILE *f = s == OX_OK ? fopen(path, "ab") : NULL;
    if (s == OX_OK && (!f || fwrite(head, sizeof head, 1, f) != 1 || fwrite(x, sizeof *x, count, f) != count))
        s = ox__fail(m->ctx, OX_ERR_IO, "OX_DUMP_HIDDEN: cannot write %s", path);
    if (f) fclose(f);
    free(x);
    return s;
}

/* One forward pass over the segments' n tokens on se's queue and scratch
 * (se is the first segment's session); the checks are the callers'.
 * logits: each segment's last token's, one row of n_vocab per segment. */
static ox_status eval_segments(ox_session *se, const segment *sg, int n_seg,
                               const int32_t *tokens, const float *hidden_in, int n,
                               float *hidden_out, float *logits)
{
    ox_model *m = se->model;
    const ox_model_info *in = &m->info;
    bool embeds = m->first == 0, outputs = m->last == in->n_layer;
    ox_status s = scratch_reserve(se, n);
    if (s == OX_OK && logits) s = logits_reserve(se, n_seg);
    if (s == OX_OK) s = pages_take(sg, n_seg);
    if (s != OX_OK) return s;
    scratch sc = scratch_view(se, n, se->pos + n);
    ox_queue *q = se->queue;
    size_t hidden_bytes = (size_t)n * (size_t)in->n_embd * sizeof(float);
    if ((s = upload_inputs(se, sg, n_seg, embeds ? tokens : NULL, embeds ? NULL : hidden_in, n,
                           &sc)))
        goto out;
    if (embeds && !m->host_embd && (s = ox_get_rows(q, &sc.x, &m->tok_embd, &sc.ids))) goto out;
    if (embeds && m->arch->embd_scale &&
        (s = ox_scale(q, &sc.x, &sc.x, sqrtf((float)in->n_embd), 0.0f)))
        goto out;
    /* h holds the normalised input of the next block: each block's
     * residual add normalises for the next one (the output norm after the
     * last layer, when logits are wanted) */
    bool normed_out = false;
    if (m->first < m->last &&
        (s = ox_rms_norm(q, &sc.h, &sc.x, &m->layers[m->first].attn_norm, m->eps)))
        goto out;
    if (embeds && (s = dump_hidden(se, &sc, -1, n))) goto out;
    for (int il = m->first; il < m->last; il++) {
        layer *L = &m->layers[il];
        const ox_tensor *next = il + 1 < m->last ? &m->layers[il + 1].attn_norm
                                : outputs && logits ? &m->output_norm : NULL;
        if ((s = attention_block(se, L, &sc, sg, n_seg)) ||
            (s = dump_hidden(se, &sc, 1000 + il, n)) || (s = ffn_block(se, L, &sc, next)) ||
            (s = dump_hidden(se, &sc, il, n)))
            goto out;
        normed_out = il + 1 == m->last && next != NULL;
    }
    /* the one wait of an evaluation: its outputs read back on the same queue */
    if (!outputs) {
        if ((s = ox_queue_read(q, sc.x.buffer, sc.x.offset, hidden_out, hidden_bytes, NULL)))
            goto out;
    } else if (logits) {
        /* each segment's last token, normalised, as rows of `last`: views
         * when they are already consecutive (one segment, or one token
         * each), else copies into o, free by now */
        const ox_tensor *from = normed_out ? &sc.h : &sc.x;
        bool consecutive = true;
        for (int i = 0; i < n_seg; i++) consecutive = consecutive && (n_seg == 1 || sg[i].n == 1);
        ox_tensor last = consecutive ? rows_of(from, n_seg == 1 ? n - 1 : 0, n_seg)
                                     : rows_of(&sc.o, 0, n_seg);
        for (int i = 0; !consecutive && i < n_seg; i++) {
            ox_tensor src = rows_of(from, sg[i].start + sg[i].n - 1, 1), dst = rows_of(&sc.o, i, 1);
            if ((s = ox_copy(q, &dst, &src))) goto out;
        }
        ox_tensor hl = last;
        if (!normed_out) { /* the output norm, into h's first rows */
            hl = rows_of(&sc.h, 0, n_seg);
            if ((s = ox_rms_norm(q, &hl, &last, &m->output_norm, m->eps))) goto out;
        }
        ox_tensor lg = rows_of(&sc.logits, 0, n_seg);
        if ((s = ox_matmul(q, &lg, &hl, &m->output, OX_MATMUL_TRANS_B)) ||
            (s = ox_queue_read(q, lg.buffer, lg.offset, logits,
                               (size_t)n_seg * (size_t)in->n_vocab * sizeof *logits, NULL)))
            goto out;
    }
    s = ox_queue_finish(q);
    if (s != OX_OK) goto out;
    for (int i = 0; i < n_seg; i++) sg[i].se->pos += sg[i].n;
    return OX_OK;
out:
    /* nothing may still read the staging or write the caller's memory */
    ox_queue_finish(q);
    for (int i = 0; i < n_seg; i++) pages_trim(sg[i].se, sg[i].se->pos);
    return s;
}

ox_status ox_session_eval_range(ox_session *se, const int32_t *tokens, const float *hidden_in,
                                int n, float *hidden_out, float *logits)
{
    if (!se || n <= 0)
        return ox__fail(se ? se->model->ctx : NULL, OX_ERR_INVALID,
                        "ox_session_eval: session is NULL, or n <= 0");
    ox_model *m = se->model;
    const ox_model_info *in = &m->info;
    bool embeds = m->first == 0, outputs = m->last == in->n_layer;
    if (embeds ? !tokens : !hidden_in)
        return ox__fail(m->ctx, OX_ERR_INVALID, "ox_session_eval: layers [%d, %d) take %s, which "
                        "is NULL", m->first, m->last, embeds ? "tokens" : "hidden_in");
    if (!outputs && !hidden_out)
        return ox__fail(m->ctx, OX_ERR_INVALID, "ox_session_eval: layers [%d, %d) give "
                        "hidden_out, which is NULL", m->first, m->last);
    if (n > se->n_ctx - se->pos)
        return ox__fail(m->ctx, OX_ERR_OUT_OF_RANGE,
                        "ox_session_eval: %d tokens at position %d pass the context of %d by %d",
                        n, se->pos, se->n_ctx, se->pos + n - se->n_ctx);
    for (int i = 0; embeds && i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= in->n_vocab)
            return ox__fail(m->ctx, OX_ERR_OUT_OF_RANGE,
                            "ox_session_eval: token %d (#%d) is outside the vocabulary of %d",
                            tokens[i], i, in->n_vocab);
    segment one = {se, 0, n};
    return eval_segments(se, &one, 1, tokens, hidden_in, n, hidden_out, logits);
}

ox_status ox_session_eval_batch(ox_session *const *sessions, const int *counts, int n_seq,
                                const int32_t *tokens, float *logits)
{
    if (!sessions || !counts || !tokens || n_seq <= 0 || !sessions[0])
        return ox__fail(sessions && n_seq > 0 && sessions[0] ? sessions[0]->model->ctx : NULL,
                        OX_ERR_INVALID, "ox_session_eval_batch: sessions, counts or tokens is "
                        "NULL, or n_seq <= 0");
    ox_model *m = sessions[0]->model;
    if (m->first != 0 || m->last != m->info.n_layer)
        return ox__fail(m->ctx, OX_ERR_MISUSE, "ox_session_eval_batch: the model holds layers "
                        "[%d, %d) only; batches need the whole model", m->first, m->last);
    segment *sg = malloc((size_t)n_seq * sizeof *sg);
    if (!sg) return ox__fail(m->ctx, OX_ERR_OUT_OF_MEMORY, "ox_session_eval_batch: out of memory");
    int n = 0;
    ox_status s = OX_OK;
    for (int i = 0; i < n_seq && s == OX_OK; i++) {
        ox_session *x = sessions[i];
        if (!x || x->model != m)
            s = ox__fail(m->ctx, OX_ERR_INVALID, "ox_session_eval_batch: session %d is NULL or "
                         "of another model", i);
        else if (counts[i] <= 0 || counts[i] > x->n_ctx - x->pos)
            s = ox__fail(m->ctx, OX_ERR_OUT_OF_RANGE, "ox_session_eval_batch: session %d takes "
                         "%d tokens at position %d of a context of %d", i, counts[i], x->pos,
                         x->n_ctx);
        for (int k = 0; k < i && s == OX_OK; k++)
            if (sessions[k] == x)
                s = ox__fail(m->ctx, OX_ERR_INVALID, "ox_session_eval_batch: sessions %d and %d "
                             "are the same", k, i);
        if (s == OX_OK) {
            sg[i] = (segment){x, n, counts[i]};
            n += counts[i];
        }
    }
    for (int i = 0; s == OX_OK && i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->info.n_vocab)
            s = ox__fail(m->ctx, OX_ERR_OUT_OF_RANGE, "ox_session_eval_batch: token %d (#%d) is "
                         "outside the vocabulary of %d", tokens[i], i, m->info.n_vocab);
    /* The model's batch session lends its scratch (sized for the largest
     * batch and context so far) and its queue, so that one scratch serves
     * every batch whichever sessions take part. */
    int n_ctx = 0;
    for (int i = 0; s == OX_OK && i < n_seq; i++)
        if (sessions[i]->n_ctx > n_ctx) n_ctx = sessions[i]->n_ctx;
    if (s == OX_OK && m->batch && m->batch->n_ctx < n_ctx) {
        ox_session_free(m->batch);
        m->batch = NULL;
    }
    if (s == OX_OK && !m->batch) s = session_new(m, n_ctx, OX_DTYPE_F32, false, NULL, &m->batch);
    if (s == OX_OK) s = eval_segments(m->batch, sg, n_seq, tokens, NULL, n, NULL, logits);
    free(sg);
    return s;
}
