/* Row operators on the CPU: reductions (sum, mean, max, argmax), softmax,
 * log-softmax, RMS norm and layer norm. Rows are split over tasks; a row is
 * read in tiles (cpu_tile.h), once when it fits in one tile and once per
 * pass otherwise, so any row length works without heap memory. Sums are
 * accumulated in double, in 8 independent lanes that the compiler
 * vectorizes. */
#include <math.h>
#include <string.h>

#include "ops/cpu_tile.h"

#define LANES 8

/* ---- tile kernels ---------------------------------------------------------------- */

static double sum_tile(const float *x, int64_t n)
{
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += (double)x[i + k];
    for (; i < n; i++) acc[0] += (double)x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* sum((x - shift)^2) */
double ox__sum_sq_tile(const float *x, double shift, int64_t n)
{
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) {
            double d = (double)x[i + k] - shift;
            acc[k] += d * d;
        }
    for (; i < n; i++) acc[0] += ((double)x[i] - shift) * ((double)x[i] - shift);
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static float max_tile(const float *x, int64_t n)
{
    float acc[LANES];
    int64_t i = 0;
    for (int k = 0; k < LANES; k++) acc[k] = -INFINITY;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
    for (; i < n; i++) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
    for (int k = 1; k < LANES; k++) acc[0] = acc[k] > acc[0] ? acc[k] : acc[0];
    return acc[0];
}

/* e[i] = exp(x[i] - max) (e may be x); returns the sum of e. With AVX2
 * (`wide`), eight lanes at a time with ox__exp_f32's bits (attention's
 * kernel): the scalar exponential was most of a softmax's time, 2.7 GB/s
 * at 4096 x 4096; the sum is then added in another order. */
static double exp_tile(bool wide, const float *x, float max, float *e, int64_t n)
{
#if defined(__x86_64__) || defined(_M_X64)
    if (wide) {
        if (e != x) memcpy(e, x, (size_t)n * sizeof(float));
        return ox__att_exp_avx2(e, n, max);
    }
#else
    (void)wide;
#endif
    for (int64_t i = 0; i < n; i++) e[i] = ox__exp_f32(x[i] - max);
    return sum_tile(e, n);
}

/* ---- jobs -------------------------------------------------------------------------- */

typedef enum row_kind {
    ROW_REDUCE,
    ROW_SOFTMAX,
    ROW_LOG_SOFTMAX,
    ROW_RMS_NORM,
    ROW_LAYER_NORM
} row_kind;

typedef struct row_job {
    row_kind kind;
    ox_reduce_op op;
    const ox__view *dst, *a;
    const ox__view *aux;  /* softmax mask, or norm weight; may be NULL */
    const ox__view *bias; /* layer norm bias; may be NULL */
    float scale, eps;
    bool wide_exp; /* exp_tile's AVX2 path */
    int64_t rows;
    size_t n_tasks;
} row_job;

/* Row `idx` = (i1, i2, i3) of v, with v repeating over a (i % v->ne). */
static const char *row_of(const ox__view *v, const int64_t idx[3])
{
    return ox__view_at(v, 0, idx[0] % v->ne[1], idx[1] % v->ne[2], idx[2] % v->ne[3]);
}

static void reduce_row(const row_job *j, const int64_t idx[3])
{
    float buf[OX__TILE];
    const char *a_row = row_of(j->a, idx);
    int64_t n = j->a->ne[0], arg = 0;
    double sum = 0.0;
    float max = -INFINITY;
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        const float *x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, buf);
        if (j->op == OX_REDUCE_SUM || j->op == OX_REDUCE_MEAN) {
            sum += sum_tile(x, m);
        } else if (j->op == OX_REDUCE_MAX) {
            float tm = max_tile(x, m);
            max = tm > max ? tm : max;
        } else {
            float tm = max_tile(x, m);
            for (int64_t i = 0; tm > max && i < m; i++)
                if (x[i] == tm) {
                    max = tm;
                    arg = t + i;
                }
        }
    }
    char *d = ox__view_at(j->dst, 0, idx[0], idx[1], idx[2]);
    if (j->op == OX_REDUCE_ARGMAX) {
        int32_t v = (int32_t)arg;
        memcpy(d, &v, sizeof v);
    } else {
        if (j->op == OX_REDUCE_MEAN) sum /= (double)n;
        ox__store_f(j->dst->dtype, d, j->op == OX_REDUCE_MAX ? max : (float)sum);
    }
}

/* Write `value` to a whole row of dst. */
static void fill_row(const ox__view *dst, char *d_row, float value)
{
    float buf[OX__TILE];
    for (int64_t t = 0; t < dst->ne[0]; t += OX__TILE) {
        int64_t m = ox__min64(dst->ne[0] - t, OX__TILE);
        char *dp = d_row + t * dst->nb[0];
        float *d = ox__tile_out(dst, dp, buf);
        for (int64_t i = 0; i < m; i++) d[i] = value;
        ox__tile_done(dst, dp, d, m);
    }
}

/* v = a * scale + mask for elements [t, t + m) of row idx. */
static void logits(const row_job *j, const int64_t idx[3], int64_t t, int64_t m, float *v,
                   float *mask_buf)
{
    const float *x = ox__tile_in(j->a, row_of(j->a, idx) + t * j->a->nb[0], m, v);
    for (int64_t i = 0; i < m; i++) v[i] = x[i] * j->scale;
    if (!j->aux) return;
    const float *mk = ox__tile_in(j->aux, row_of(j->aux, idx) + t * j->aux->nb[0], m, mask_buf);
    for (int64_t i = 0; i < m; i++) v[i] += mk[i];
}

/* Passes: max, sum of exp, write. A row that fits one tile stays in v; a
 * longer one keeps its exponentials in dst when dst's rows are contiguous
 * floats (each tile of a is read before its own part of dst is written, so
 * dst may be a), and the last pass scales them there, instead of computing
 * every exponential twice. */
static void softmax_row(const row_job *j, const int64_t idx[3])
{
    float v[OX__TILE], mask_buf[OX__TILE], out_buf[OX__TILE];
    const int64_t n = j->a->ne[0];
    const int whole = n <= OX__TILE;
    char *d_row = ox__view_at(j->dst, 0, idx[0], idx[1], idx[2]);
    const bool in_dst = !whole && j->dst->dtype == OX_DTYPE_F32 &&
                        j->dst->nb[0] == (int64_t)sizeof(float);
    float max = -INFINITY;
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        logits(j, idx, t, m, v, mask_buf);
        float tm = max_tile(v, m);
        max = tm > max ? tm : max;
    }
    if (max == -INFINITY) { /* every entry masked */
        fill_row(j->dst, d_row, 0.0f);
        return;
    }
    double sum = 0.0;
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        if (!whole) logits(j, idx, t, m, v, mask_buf);
        float *e = in_dst ? (float *)(void *)(d_row + t * (int64_t)sizeof(float)) : v;
        sum += exp_tile(j->wide_exp, v, max, e, m);
    }
    float inv = (float)(1.0 / sum);
    if (in_dst) {
        float *d = (float *)(void *)d_row;
        for (int64_t i = 0; i < n; i++) d[i] *= inv;
        return;
    }
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        if (!whole) {
            logits(j, idx, t, m, v, mask_buf);
            exp_tile(j->wide_exp, v, max, v, m);
        }
        char *dp = d_row + t * j->dst->nb[0];
        float *d = ox__tile_out(j->dst, dp, out_buf);
        for (int64_t i = 0; i < m; i++) d[i] = v[i] * inv;
        ox__tile_done(j->dst, dp, d, m);
    }
}

/* dst = a - (max + log(sum(exp(a - max)))) */
static void log_softmax_row(const row_job *j, const int64_t idx[3])
{
    float buf[OX__TILE], e[OX__TILE], out_buf[OX__TILE];
    const int64_t n = j->a->ne[0];
    const char *a_row = row_of(j->a, idx);
    char *d_row = ox__view_at(j->dst, 0, idx[0], idx[1], idx[2]);
    const float *x = NULL;
    float max = -INFINITY;
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, buf);
        float tm = max_tile(x, m);
        max = tm > max ? tm : max;
    }
    double sum = 0.0;
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        if (n > OX__TILE) x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, buf);
        sum += exp_tile(j->wide_exp, x, max, e, m);
    }
    float shift = (float)((double)max + log(sum));
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        if (n > OX__TILE) x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, buf);
        char *dp = d_row + t * j->dst->nb[0];
        float *d = ox__tile_out(j->dst, dp, out_buf);
        for (int64_t i = 0; i < m; i++) d[i] = x[i] - shift;
        ox__tile_done(j->dst, dp, d, m);
    }
}

/* RMS norm (mean 0 and no bias) or layer norm: mean, variance, write. */
static void norm_row(const row_job *j, const int64_t idx[3])
{
    float buf[OX__TILE], w_buf[OX__TILE], b_buf[OX__TILE], out_buf[OX__TILE];
    const int64_t n = j->a->ne[0];
    const char *a_row = row_of(j->a, idx);
    char *d_row = ox__view_at(j->dst, 0, idx[0], idx[1], idx[2]);
    const int layer = j->kind == ROW_LAYER_NORM;
    const float *x = NULL;
    double mean = 0.0, sum_sq = 0.0;
    for (int pass = layer ? 0 : 1; pass < 2; pass++)
        for (int64_t t = 0; t < n; t += OX__TILE) {
            int64_t m = ox__min64(n - t, OX__TILE);
            if (!x || n > OX__TILE) x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, buf);
            if (pass == 0) mean += sum_tile(x, m) / (double)n;
            else sum_sq += ox__sum_sq_tile(x, mean, m);
        }
    float inv = (float)(1.0 / sqrt(sum_sq / (double)n + (double)j->eps)), fmean = (float)mean;
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        if (n > OX__TILE) x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, buf);
        char *dp = d_row + t * j->dst->nb[0];
        float *d = ox__tile_out(j->dst, dp, out_buf);
        for (int64_t i = 0; i < m; i++) d[i] = (x[i] - fmean) * inv;
        if (j->aux) {
            const char *w_row = row_of(j->aux, idx) + t * j->aux->nb[0];
            const float *w = ox__tile_in(j->aux, w_row, m, w_buf);
            for (int64_t i = 0; i < m; i++) d[i] *= w[i];
        }
        if (j->bias) {
            const char *b_row = row_of(j->bias, idx) + t * j->bias->nb[0];
            const float *b = ox__tile_in(j->bias, b_row, m, b_buf);
            for (int64_t i = 0; i < m; i++) d[i] += b[i];
        }
        ox__tile_done(j->dst, dp, d, m);
    }
}

static void row_task(void *arg, size_t task, int thread)
{
    const row_job *j = arg;
    const int64_t *ne = j->a->ne;
    int64_t begin, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, j->rows, &begin, &end);
    for (int64_t r = begin; r < end; r++) {
        int64_t idx[3] = {r % ne[1], r / ne[1] % ne[2], r / ne[1] / ne[2]};
        switch (j->kind) {
        case ROW_REDUCE: reduce_row(j, idx); break;
        case ROW_SOFTMAX: softmax_row(j, idx); break;
        case ROW_LOG_SOFTMAX: log_softmax_row(j, idx); break;
        case ROW_RMS_NORM:
        case ROW_LAYER_NORM: norm_row(j, idx); break;
        }
    }
}

static ox_status row_run(const ox__cpu_exec *x, row_job *j)
{
    const int64_t *ne = j->a->ne;
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA);
    j->wide_exp = (x->features & avx2) == avx2;
    j->rows = ne[1] * ne[2] * ne[3];
    j->n_tasks = ox__task_count(x, j->rows * ne[0], j->rows);
    if (j->rows > 0 && ne[0] > 0) ox__cpu_run(x, j->n_tasks, row_task, j);
    return OX_OK;
}

/* ---- entry points -------------------------------------------------------------------- */

ox_status ox__cpu_reduce(const ox__cpu_exec *x, ox_reduce_op op, const ox__view *dst,
                         const ox__view *a)
{
    row_job j = {.kind = ROW_REDUCE, .op = op, .dst = dst, .a = a};
    return row_run(x, &j);
}

ox_status ox__cpu_softmax(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                          const ox__view *mask, float scale)
{
    row_job j = {.kind = ROW_SOFTMAX, .dst = dst, .a = a, .aux = mask, .scale = scale};
    return row_run(x, &j);
}

ox_status ox__cpu_log_softmax(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a)
{
    row_job j = {.kind = ROW_LOG_SOFTMAX, .dst = dst, .a = a};
    return row_run(x, &j);
}

ox_status ox__cpu_rms_norm(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                           const ox__view *weight, float eps)
{
    row_job j = {.kind = ROW_RMS_NORM, .dst = dst, .a = a, .aux = weight, .eps = eps};
    return row_run(x, &j);
}

ox_status ox__cpu_layer_norm(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                             const ox__view *weight, const ox__view *bias, float eps)
{
    row_job j = {.kind = ROW_LAYER_NORM, .dst = dst, .a = a, .aux = weight, .bias = bias,
                 .eps = eps};
    return row_run(x, &j);
}

/* ---- residual add and norm (ox_add_rms_norm) ----------------------------------------- */

typedef struct add_norm_job {
    const ox__view *x, *delta, *dw, *out, *w;
    float eps;
    int64_t rows;
    size_t n_tasks;
} add_norm_job;

/* 1 / sqrt(mean(x^2) + eps) of a contiguous row, tile by tile as
 * norm_row sums it. */
static float rms_inv(const float *x, int64_t n, float eps)
{
    double sum_sq = 0.0;
    for (int64_t t = 0; t < n; t += OX__TILE) sum_sq += ox__sum_sq_tile(x + t, 0.0, ox__min64(n - t, OX__TILE));
    return (float)(1.0 / sqrt(sum_sq / (double)n + (double)eps));
}

static void add_norm_task(void *arg, size_t task, int thread)
{
    const add_norm_job *j = arg;
    const int64_t n = j->x->ne[0];
    const float *w = (const float *)j->w->data, *dw = j->dw ? (const float *)j->dw->data : NULL;
    int64_t begin, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, j->rows, &begin, &end);
    for (int64_t r = begin; r < end; r++) {
        float *x = (float *)j->x->data + r * n, *out = (float *)j->out->data + r * n;
        const float *d = (const float *)j->delta->data + r * n;
        float inv_d = dw ? rms_inv(d, n, j->eps) : 1.0f;
        for (int64_t i = 0; i < n; i++) {
            float t = d[i];
            if (dw) {
                t = d[i] * inv_d; /* ox_rms_norm's (d - 0) * inv, then * w */
                t *= dw[i];
            }
            x[i] = x[i] + t;
        }
        float inv = rms_inv(x, n, j->eps);
        for (int64_t i = 0; i < n; i++) {
            out[i] = x[i] * inv;
            out[i] *= w[i];
        }
    }
}

ox_status ox__cpu_add_rms_norm(const ox__cpu_exec *x, const ox__view *xs, const ox__view *delta,
                               const ox__view *delta_weight, const ox__view *out,
                               const ox__view *weight, float eps)
{
    add_norm_job j = {.x = xs, .delta = delta, .dw = delta_weight, .out = out, .w = weight,
                      .eps = eps};
    j.rows = xs->ne[1] * xs->ne[2] * xs->ne[3];
    j.n_tasks = ox__task_count(x, j.rows * xs->ne[0], j.rows);
    if (j.rows > 0) ox__cpu_run(x, j.n_tasks, add_norm_task, &j);
    return OX_OK;
}
