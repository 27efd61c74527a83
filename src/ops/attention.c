/* Fused attention on the CPU: dst = softmax(q kᵀ * scale + mask) v per query
 * row, head and batch, with grouped-query heads and an optional causal
 * limit. A unit of work is up to HEAD_BLOCK query heads that share a kv
 * head, for as many query rows as make ENTRIES (row, head) entries with
 * them (a prompt's rows; one row when
 * decoding), so each key and value row is read and converted once for all
 * of them. Keys come in blocks of KEY_BLOCK with an online (running max)
 * softmax, so no n_kv-sized scratch is needed; a value width over ATT_TILE
 * is done in column chunks, each recomputing the scores. A prompt's units
 * (TILED_ENTRIES entries or more) take register tiles where the CPU has
 * them: a block's keys are converted and transposed once and its values
 * converted once, then the scores and the weighted sums are small matrix
 * products over all the unit's entries (attention_avx2.c); decoding reads
 * the rows as stored, entry by entry. Each (row, head) takes the same steps
 * whatever the block it is in, given the path: keys past its causal limit
 * score -inf, which adds exact zeros, so a row's result depends on the
 * shape (which path its unit takes), never on the rows beside it or on
 * the threads. */
#include <math.h>
#include <stdbool.h>

#include "ops/cpu_tile.h"

#define KEY_BLOCK 64
#define HEAD_BLOCK 4
#define ENTRIES 32 /* (row, head) entries a unit: 8 rows of 4 heads, 32 rows of 1 */
#define ATT_TILE 256 /* query and value columns a pass */
#define LANES 8
#define KEY_GROUP 8 /* keys scored together (their rows converted together) */

/* The inner loops: scores of KEY_GROUP keys against one query row, a
 * block's exponentials (s = exp(s - max), returning their sum), and acc +=
 * p[j] v[j] over a block's keys in order, skipping zero weights (masked
 * keys, whose values may be anything). AVX2 + FMA (attention_avx2.c) where
 * the CPU has both. */
typedef void (*att_scores_fn)(const float *q, const void *const k[KEY_GROUP], int64_t d,
                              float out[KEY_GROUP]);
typedef void (*att_pv_fn)(float *acc, const float *p, const void *const v[], int64_t nk, int64_t n);
typedef struct att_kernels {
    att_scores_fn scores8, scores8_f16; /* rows as F32; straight from F16 rows (or NULL) */
    double (*exp_sum)(float *s, int64_t n, float max);
    att_pv_fn pv, pv_f16;
    /* prompt blocks as register tiles (cpu_ops.h), or NULL */
    void (*kt)(const void *const k[], int64_t nk, int64_t d, int half, float *kt);
    void (*scores_kt)(const float *const q[], int64_t ne, const int64_t *seen, const float *kt,
                      int64_t d, int64_t nk, float *s, int64_t ls);
    void (*rows)(const void *const rows[], int64_t nk, int64_t n, int half, float *dst, int64_t ld);
    void (*pv_rows)(float *acc, int64_t la, const float *p, int64_t lp, int64_t ne,
                    const int64_t *seen, const float *v, int64_t lv, int64_t nk, int64_t n);
} att_kernels;

/* Units with at least this many entries (query rows x heads: a prompt's)
 * take the register tiles when the kernels have them: a block's keys and
 * values are converted once into F32 buffers and every entry reads them
 * there. Fewer (decoding) read the rows as stored, entry by entry. */
#define TILED_ENTRIES 8

typedef struct att_job {
    const att_kernels *kern;
    /* the rows handed to the kernels: F32 (converted into the state's
     * buffers where stored otherwise), or F16 as stored */
    att_scores_fn scores8;
    att_pv_fn pv;
    bool k_f16, v_f16;
    bool tiled; /* the kernels have the tiles, and K and V rows are F32 or F16, unit-stride */
    const ox__view *dst, *q, *k, *v, *mask;
    const ox_attention_params *params;
    const ox__att_pages *pages; /* a paged cache's table, or NULL */
    int64_t head_blocks; /* per kv head: ceil(group / HEAD_BLOCK) */
    int64_t row_block;   /* query rows a unit: ENTRIES / heads a unit */
    int64_t row_blocks;  /* ceil(n_q / row_block) */
    int64_t units;       /* row_blocks * H_kv * head_blocks * B */
    size_t n_tasks;
    struct att_state *states; /* one per pool thread (~210 KiB each: not on their stacks) */
} att_job;

/* Query rows [i0, i0 + nr) of heads [h0, h0 + nh), columns [c0, c0 + nc)
 * of dst: entry g is row i0 + g / nh, head h0 + g % nh. */
typedef struct att_state {
    int64_t i0, nr, b, kv_head, h0, nh, c0, nc;
    int64_t i[ENTRIES], n_seen[ENTRIES]; /* the entry's row, its keys */
    int64_t lim[ENTRIES]; /* the current key block's keys before the entry's limit */
    const float *q[ENTRIES]; /* whole query rows, or NULL when D > ATT_TILE */
    float max[ENTRIES];
    double sum[ENTRIES];
    float s[ENTRIES][KEY_BLOCK]; /* scores, then weights */
    float acc[ENTRIES][ATT_TILE];
    float q_buf[ENTRIES][ATT_TILE], k_buf[ATT_TILE], v_buf[ATT_TILE];
    float k_rows[KEY_GROUP][ATT_TILE]; /* a group of keys as F32 */
    float v_rows[KEY_BLOCK][ATT_TILE]; /* a block's values as F32 */
    float kt[ATT_TILE * KEY_BLOCK];    /* a block's keys transposed (tiled units) */
    bool tiled;                        /* this unit takes the tiles */
} att_state;

static float dot(const float *a, const float *b, int64_t n)
{
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    for (; i < n; i++) acc[0] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static void scores8_generic(const float *q, const void *const k[KEY_GROUP], int64_t d,
                            float out[KEY_GROUP])
{
    for (int j = 0; j < KEY_GROUP; j++) out[j] = dot(q, k[j], d);
}

static double exp_sum_generic(float *s, int64_t n, float max)
{
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        s[j] = ox__exp_f32(s[j] - max);
        sum += s[j];
    }
    return sum;
}

static void pv_generic(float *acc, const float *p, const void *const v[], int64_t nk, int64_t n)
{
    for (int64_t j = 0; j < nk; j++)
        if (p[j] != 0.0f)
            for (int64_t c = 0; c < n; c++) acc[c] += p[j] * ((const float *)v[j])[c];
}

static const att_kernels generic_kernels = {scores8_generic, NULL, exp_sum_generic, pv_generic,
                                            NULL, NULL, NULL, NULL, NULL};
#if defined(__x86_64__) || defined(_M_X64)
_Static_assert(OX_ATT_KEYS == KEY_BLOCK, "the tiles' key blocks are attention.c's");
static const att_kernels avx2_kernels = {ox__att_scores8_avx2, ox__att_scores8_f16_avx2,
                                         ox__att_exp_avx2,     ox__att_pv_avx2,
                                         ox__att_pv_f16_avx2,  ox__att_kt_avx2,
                                         ox__att_scores_kt_avx2, ox__att_rows_avx2,
                                         ox__att_pv_rows_avx2};
#endif

/* Element c of the key or value row of logical key `key` (t: j->k or j->v)
 * in the entry block's kv head: through the page table when paged. */
static const char *kv_row(const att_job *j, const att_state *st, const ox__view *t, int64_t c,
                          int64_t key)
{
    const ox__att_pages *pg = j->pages;
    if (pg) {
        int64_t p = pg->table[key >> pg->shift];
        p = p < 0 ? 0 : p >= pg->n_pages ? pg->n_pages - 1 : p; /* never out of the pool */
        key = p << pg->shift | (key & (((int64_t)1 << pg->shift) - 1));
    }
    return ox__view_at(t, c, key, st->kv_head, st->b);
}

/* q . k for head g when the rows are wider than a tile: chunk by chunk. */
static float wide_dot(const att_job *j, att_state *st, int64_t g, const char *k_row)
{
    const int64_t d = j->q->ne[0];
    const char *q_row = ox__view_at(j->q, 0, st->i[g], st->h0 + g % st->nh, st->b);
    float s = 0.0f;
    for (int64_t t = 0; t < d; t += ATT_TILE) {
        int64_t m = ox__min64(d - t, ATT_TILE);
        s += dot(ox__tile_in(j->q, q_row + t * j->q->nb[0], m, st->q_buf[0]),
                 ox__tile_in(j->k, k_row + t * j->k->nb[0], m, st->k_buf), m);
    }
    return s;
}

/* Scores of keys [j0, j0 + nk) for every head of the block: KEY_GROUP
 * keys at a time, converted once for every entry that sees one of them
 * (rows wider than a tile: key by key, chunk by chunk). */
static void scores(const att_job *j, att_state *st, int64_t j0, int64_t nk)
{
    const int64_t d = j->q->ne[0], entries = st->nh * st->nr;
    if (st->tiled) { /* every entry's dot products, then the limits, scale and mask */
        const void *k[KEY_BLOCK];
        for (int64_t t = 0; t < nk; t++) k[t] = kv_row(j, st, j->k, 0, j0 + t);
        j->kern->kt(k, nk, d, j->k->dtype == OX_DTYPE_F16, st->kt);
        j->kern->scores_kt(st->q, entries, st->lim, st->kt, d, nk, st->s[0], KEY_BLOCK);
        const float scale = j->params->scale;
        for (int64_t g = 0; g < entries; g++) {
            float *s = st->s[g];
            int64_t seen = st->lim[g], t = 0;
            if (j->mask)
                for (; t < seen; t++)
                    s[t] = s[t] * scale +
                           ox__load_f(j->mask->dtype, ox__view_at(j->mask, j0 + t, st->i[g], 0, 0));
            else
                for (; t < seen; t++) s[t] = s[t] * scale + 0.0f;
            for (; t < nk; t++) s[t] = -INFINITY;
        }
        return;
    }
    for (int64_t jg = 0; jg < nk; jg += KEY_GROUP) {
        const int64_t ng = ox__min64(nk - jg, KEY_GROUP);
        const void *k[KEY_GROUP];
        bool converted = false; /* the group's keys, on first use */
        for (int64_t g = 0; g < entries; g++) {
            float s[KEY_GROUP];
            if (j0 + jg >= st->n_seen[g]) { /* the whole group past the row's causal limit */
                for (int64_t t = 0; t < ng; t++) st->s[g][jg + t] = -INFINITY;
                continue;
            }
            if (st->q[0]) {
                if (!converted) {
                    for (int64_t t = 0; t < ng; t++) {
                        const char *row = kv_row(j, st, j->k, 0, j0 + jg + t);
                        k[t] = j->k_f16 ? (const void *)row
                                        : ox__tile_in(j->k, row, d, st->k_rows[t]);
                    }
                    for (int64_t t = ng; t < KEY_GROUP; t++) k[t] = k[ng - 1];
                    converted = true;
                }
                j->scores8(st->q[g], k, d, s);
            } else {
                for (int64_t t = 0; t < ng; t++)
                    s[t] = wide_dot(j, st, g, kv_row(j, st, j->k, 0, j0 + jg + t));
            }
            for (int64_t t = 0; t < ng; t++) {
                int64_t key = j0 + jg + t;
                if (key >= st->n_seen[g]) { /* past the row's causal limit */
                    st->s[g][jg + t] = -INFINITY;
                    continue;
                }
                float bias = 0.0f;
                if (j->mask) bias = ox__load_f(j->mask->dtype, ox__view_at(j->mask, key, st->i[g], 0, 0));
                st->s[g][jg + t] = s[t] * j->params->scale + bias;
            }
        }
    }
}

/* Online softmax over one block of keys: rescale what was accumulated to
 * the new running max, turn scores into weights, add weighted values. */
static void accumulate(const att_job *j, att_state *st, int64_t j0, int64_t nk)
{
    int64_t seen_any = 0; /* keys [0, seen_any) are before some entry's causal limit */
    for (int64_t g = 0; g < st->nh * st->nr; g++) {
        const int64_t n = st->lim[g]; /* keys past it scored -inf: their weights are 0 */
        float *s = st->s[g], block_max = -INFINITY;
        seen_any = n > seen_any ? n : seen_any;
        for (int64_t jj = 0; jj < n; jj++) block_max = s[jj] > block_max ? s[jj] : block_max;
        float new_max = block_max > st->max[g] ? block_max : st->max[g];
        if (new_max == -INFINITY) { /* nothing seen yet: all masked */
            for (int64_t jj = 0; jj < nk; jj++) s[jj] = 0.0f;
            continue;
        }
        float correction = ox__exp_f32(st->max[g] - new_max); /* 0 while max is -inf */
        for (int64_t c = 0; c < st->nc; c++) st->acc[g][c] *= correction;
        double sum = j->kern->exp_sum(s, n, new_max);
        for (int64_t jj = n; jj < nk; jj++) s[jj] = 0.0f;
        st->sum[g] = st->sum[g] * correction + sum;
        st->max[g] = new_max;
    }
    /* the block's value rows as F32, each once for every entry (rows no
     * entry weighs are not read: a masked key's values may be anything) */
    const void *v[KEY_BLOCK];
    for (int64_t jj = 0; jj < nk; jj++) {
        bool used = false;
        if (jj >= seen_any) { /* past every entry's limit */
            v[jj] = NULL;
            continue;
        }
        for (int64_t g = 0; g < st->nh * st->nr && !used; g++) used = st->s[g][jj] != 0.0f;
        const char *row = used ? kv_row(j, st, j->v, st->c0, j0 + jj) : NULL;
        /* as stored (the tiles convert the block below), else F32 rows */
        v[jj] = used && !st->tiled && !j->v_f16 ? ox__tile_in(j->v, row, st->nc, st->v_rows[jj])
                                                : (const void *)row;
    }
    if (st->tiled) { /* the rows as F32 once, then every entry's sums over them */
        j->kern->rows(v, nk, st->nc, j->v->dtype == OX_DTYPE_F16, st->v_rows[0], ATT_TILE);
        j->kern->pv_rows(st->acc[0], ATT_TILE, st->s[0], KEY_BLOCK, st->nh * st->nr, st->lim,
                         st->v_rows[0], ATT_TILE, nk, st->nc);
        return;
    }
    for (int64_t g = 0; g < st->nh * st->nr; g++) j->pv(st->acc[g], st->s[g], v, nk, st->nc);
}

static void attend(const att_job *j, att_state *st)
{
    const int64_t d = j->q->ne[0], n_q = j->q->ne[1], n_kv = j->k->ne[1];
    int64_t n_seen = 0;
    st->tiled = j->tiled && d <= ATT_TILE && st->nh * st->nr >= TILED_ENTRIES;
    for (int64_t g = 0; g < st->nh * st->nr; g++) {
        st->i[g] = st->i0 + g / st->nh;
        st->n_seen[g] = j->params->causal ? ox__min64(n_kv, n_kv - n_q + st->i[g] + 1) : n_kv;
        n_seen = st->n_seen[g] > n_seen ? st->n_seen[g] : n_seen;
        const char *q_row = ox__view_at(j->q, 0, st->i[g], st->h0 + g % st->nh, st->b);
        st->q[g] = d <= ATT_TILE ? ox__tile_in(j->q, q_row, d, st->q_buf[g]) : NULL;
        st->max[g] = -INFINITY;
        st->sum[g] = 0.0;
        for (int64_t c = 0; c < st->nc; c++) st->acc[g][c] = 0.0f;
    }
    for (int64_t j0 = 0; j0 < n_seen; j0 += KEY_BLOCK) {
        int64_t nk = ox__min64(n_seen - j0, KEY_BLOCK);
        for (int64_t g = 0; g < st->nh * st->nr; g++)
            st->lim[g] = ox__min64(nk, st->n_seen[g] > j0 ? st->n_seen[g] - j0 : 0);
        scores(j, st, j0, nk);
        accumulate(j, st, j0, nk);
    }
    for (int64_t g = 0; g < st->nh * st->nr; g++) {
        float inv = st->sum[g] > 0.0 ? (float)(1.0 / st->sum[g]) : 0.0f; /* no key: zeros */
        char *dp = ox__view_at(j->dst, st->c0, st->i[g], st->h0 + g % st->nh, st->b);
        float *out = ox__tile_out(j->dst, dp, st->v_buf);
        for (int64_t c = 0; c < st->nc; c++) out[c] = st->acc[g][c] * inv;
        ox__tile_done(j->dst, dp, out, st->nc);
    }
}

static void attention_task(void *arg, size_t task, int thread)
{
    const att_job *j = arg;
    const int64_t n_q = j->q->ne[1], kv_heads = j->k->ne[2], dv = j->v->ne[0];
    const int64_t group = j->q->ne[2] / kv_heads;
    int64_t begin, end;
    att_state *st = &j->states[thread];
    ox__task_range(task, j->n_tasks, j->units, &begin, &end);
    for (int64_t u = begin; u < end; u++) {
        int64_t rows = u % j->row_blocks, block = u / j->row_blocks % j->head_blocks;
        int64_t rest = u / j->row_blocks / j->head_blocks;
        st->i0 = rows * j->row_block;
        st->nr = ox__min64(j->row_block, n_q - st->i0);
        st->kv_head = rest % kv_heads;
        st->b = rest / kv_heads;
        st->h0 = st->kv_head * group + block * HEAD_BLOCK;
        st->nh = ox__min64(HEAD_BLOCK, group - block * HEAD_BLOCK);
        for (st->c0 = 0; st->c0 < dv; st->c0 += ATT_TILE) {
            st->nc = ox__min64(dv - st->c0, ATT_TILE);
            attend(j, st);
        }
    }
}

ox_status ox__cpu_attention(const ox__cpu_exec *x, const ox__view *dst, const ox__view *q,
                            const ox__view *k, const ox__view *v, const ox__view *mask,
                            const ox_attention_params *params, const ox__att_pages *pages)
{
    att_job j = {.kern = &generic_kernels, .dst = dst, .q = q, .k = k, .v = v, .mask = mask,
                 .params = params, .pages = pages};
#if defined(__x86_64__) || defined(_M_X64)
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    if ((x->features & avx2) == avx2) j.kern = &avx2_kernels;
#endif
    /* F16 rows (a KV cache) read as stored where the kernels can */
    j.k_f16 = j.kern->scores8_f16 && k->dtype == OX_DTYPE_F16 && k->nb[0] == 2;
    j.v_f16 = j.kern->pv_f16 && v->dtype == OX_DTYPE_F16 && v->nb[0] == 2;
    j.scores8 = j.k_f16 ? j.kern->scores8_f16 : j.kern->scores8;
    j.pv = j.v_f16 ? j.kern->pv_f16 : j.kern->pv;
    j.tiled = j.kern->kt && (k->dtype == OX_DTYPE_F16 || k->dtype == OX_DTYPE_F32) &&
              (v->dtype == OX_DTYPE_F16 || v->dtype == OX_DTYPE_F32) &&
              k->nb[0] == (int64_t)ox_dtype_size(k->dtype) &&
              v->nb[0] == (int64_t)ox_dtype_size(v->dtype);
    const int64_t group = q->ne[2] / k->ne[2];
    j.head_blocks = (group + HEAD_BLOCK - 1) / HEAD_BLOCK;
    j.row_block = ENTRIES / ox__min64(group, HEAD_BLOCK);
    j.row_blocks = (q->ne[1] + j.row_block - 1) / j.row_block;
    j.units = j.row_blocks * k->ne[2] * j.head_blocks * q->ne[3];
    int64_t work = q->ne[1] * q->ne[2] * q->ne[3] * k->ne[1] * (q->ne[0] + v->ne[0]);
    j.n_tasks = ox__task_count(x, work, j.units);
    if (j.units == 0 || v->ne[0] == 0) return OX_OK;
    size_t threads = x->pool ? (size_t)ox__pool_size(x->pool) : 1;
    float *states = ox__scratch_acquire(threads * ((sizeof(att_state) + 3) / 4));
    if (!states) return OX_ERR_OUT_OF_MEMORY;
    j.states = (att_state *)(void *)states;
    ox__cpu_run(x, j.n_tasks, attention_task, &j);
    ox__scratch_release(states);
    return OX_OK;
}
