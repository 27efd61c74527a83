/* Rotary position embedding on the CPU. a: [head_dim, n_heads, n_tokens,
 * batch], positions: I32 with n_tokens elements (any shape). Tasks take
 * whole tokens, so the cosines and sines of a token are computed once (in
 * double: angles reach thousands of radians) and used for all its heads.
 * Pairs are handled in chunks of PAIRS so any head size works with fixed
 * stack buffers. */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "ops/cpu_tile.h"

#define PAIRS (OX__TILE / 2)

typedef struct rope_job {
    const ox__view *dst, *a, *positions;
    const ox_rope_params *params;
    int64_t tokens; /* ne[2] * ne[3] */
    size_t n_tasks;
} rope_job;

/* Angles of pairs [p0, p0 + n) at position pos. */
static void angles(const ox_rope_params *p, int32_t pos, int64_t p0, int64_t n, float *cos_t,
                   float *sin_t)
{
    for (int64_t i = 0; i < n; i++) {
        double exponent = -2.0 * (double)(p0 + i) / (double)p->n_dims;
        double theta = (double)pos * (double)p->freq_scale * pow((double)p->freq_base, exponent);
        cos_t[i] = (float)cos(theta);
        sin_t[i] = (float)sin(theta);
    }
}

ox_status ox_rope_table(const ox_rope_params *params, const int32_t *positions, int64_t n,
                        float *table)
{
    if (!params || params->n_dims <= 0 || params->n_dims % 2 || n < 0 || (n > 0 && !positions) ||
        (n > 0 && !table) || !(params->freq_base > 0.0f) || !(params->freq_scale > 0.0f))
        return ox__fail(NULL, OX_ERR_INVALID, "ox_rope_table: params missing or invalid (n_dims "
                        "even and positive, freq_base and freq_scale positive), n < 0, or "
                        "positions or table NULL");
    int64_t half = params->n_dims / 2;
    for (int64_t t = 0; t < n; t++)
        angles(params, positions[t], 0, half, table + t * params->n_dims,
               table + t * params->n_dims + half);
    return OX_OK;
}

/* The cosines and sines of pairs [p0, p0 + n) of token t: from the angle
 * table when `positions` is one (F32), else computed. */
static void token_angles(const ox__view *positions, const ox_rope_params *p, int64_t t, int32_t pos,
                         int64_t p0, int64_t n, float *cos_t, float *sin_t)
{
    if (positions->dtype != OX_DTYPE_F32) {
        angles(p, pos, p0, n, cos_t, sin_t);
        return;
    }
    const float *row = (const float *)(const void *)((const char *)positions->data +
                                                     t * positions->nb[1]);
    memcpy(cos_t, row + p0, (size_t)n * sizeof *cos_t);
    memcpy(sin_t, row + p->n_dims / 2 + p0, (size_t)n * sizeof *sin_t);
}

/* Rotate pairs [p0, p0 + n) of row (i1, i2, i3). */
static void rotate(const rope_job *j, const int64_t idx[3], int64_t p0, int64_t n,
                   const float *c, const float *s)
{
    float x_buf[OX__TILE], y_buf[OX__TILE], dx_buf[OX__TILE], dy_buf[OX__TILE];
    const ox__view *a = j->a, *dst = j->dst;
    const char *a_row = ox__view_at(a, 0, idx[0], idx[1], idx[2]);
    char *d_row = ox__view_at(dst, 0, idx[0], idx[1], idx[2]);
    if (j->params->mode == OX_ROPE_NORMAL) { /* pairs (x[2i], x[2i + 1]) */
        const float *x = ox__tile_in(a, a_row + 2 * p0 * a->nb[0], 2 * n, x_buf);
        char *dp = d_row + 2 * p0 * dst->nb[0];
        float *d = ox__tile_out(dst, dp, dx_buf);
        for (int64_t i = 0; i < n; i++) {
            float x0 = x[2 * i], x1 = x[2 * i + 1];
            d[2 * i] = x0 * c[i] - x1 * s[i];
            d[2 * i + 1] = x0 * s[i] + x1 * c[i];
        }
        ox__tile_done(dst, dp, d, 2 * n);
        return;
    }
    int64_t half = j->params->n_dims / 2; /* NEOX: pairs (x[i], x[i + half]) */
    const float *x = ox__tile_in(a, a_row + p0 * a->nb[0], n, x_buf);
    const float *y = ox__tile_in(a, a_row + (half + p0) * a->nb[0], n, y_buf);
    char *dxp = d_row + p0 * dst->nb[0], *dyp = d_row + (half + p0) * dst->nb[0];
    float *dx = ox__tile_out(dst, dxp, dx_buf), *dy = ox__tile_out(dst, dyp, dy_buf);
    for (int64_t i = 0; i < n; i++) {
        float x0 = x[i], x1 = y[i];
        dx[i] = x0 * c[i] - x1 * s[i];
        dy[i] = x0 * s[i] + x1 * c[i];
    }
    ox__tile_done(dst, dxp, dx, n);
    ox__tile_done(dst, dyp, dy, n);
}

/* Copy dimensions [n_dims, ne[0]) of row idx unchanged. */
static void pass_through(const rope_job *j, const int64_t idx[3])
{
    float buf[OX__TILE], out_buf[OX__TILE];
    const ox__view *a = j->a, *dst = j->dst;
    const char *a_row = ox__view_at(a, 0, idx[0], idx[1], idx[2]);
    char *d_row = ox__view_at(dst, 0, idx[0], idx[1], idx[2]);
    if (a_row == d_row && a->nb[0] == dst->nb[0]) return; /* in place */
    for (int64_t t = j->params->n_dims; t < a->ne[0]; t += OX__TILE) {
        int64_t m = ox__min64(a->ne[0] - t, OX__TILE);
        const float *x = ox__tile_in(a, a_row + t * a->nb[0], m, buf);
        char *dp = d_row + t * dst->nb[0];
        float *d = ox__tile_out(dst, dp, out_buf);
        memcpy(d, x, (size_t)m * sizeof *d);
        ox__tile_done(dst, dp, d, m);
    }
}

/* Position t of the positions tensor, counting in row-major order (0 for
 * an angle table, which has no positions). */
static int32_t position(const ox__view *p, int64_t t)
{
    int32_t pos;
    if (p->dtype == OX_DTYPE_F32) return 0;
    const char *at = p->data;
    for (int d = 0; d < OX_MAX_DIMS; d++) {
        at += t % p->ne[d] * p->nb[d];
        t /= p->ne[d];
    }
    memcpy(&pos, at, sizeof pos);
    return pos;
}

static void rope_token(const rope_job *j, int64_t i2, int64_t i3)
{
    float cos_t[PAIRS], sin_t[PAIRS];
    int32_t pos = position(j->positions, i2);
    int64_t half = j->params->n_dims / 2;
    for (int64_t p0 = 0; p0 < half; p0 += PAIRS) {
        int64_t n = ox__min64(half - p0, PAIRS);
        token_angles(j->positions, j->params, i2, pos, p0, n, cos_t, sin_t);
        for (int64_t i1 = 0; i1 < j->a->ne[1]; i1++) {
            int64_t idx[3] = {i1, i2, i3};
            rotate(j, idx, p0, n, cos_t, sin_t);
        }
    }
    if (j->params->n_dims < j->a->ne[0])
        for (int64_t i1 = 0; i1 < j->a->ne[1]; i1++) {
            int64_t idx[3] = {i1, i2, i3};
            pass_through(j, idx);
        }
}

static void rope_task(void *arg, size_t task, int thread)
{
    const rope_job *j = arg;
    int64_t begin, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, j->tokens, &begin, &end);
    for (int64_t t = begin; t < end; t++) rope_token(j, t % j->a->ne[2], t / j->a->ne[2]);
}

ox_status ox__cpu_rope(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                       const ox__view *positions, const ox_rope_params *params)
{
    rope_job j = {.dst = dst, .a = a, .positions = positions, .params = params};
    j.tokens = a->ne[2] * a->ne[3];
    j.n_tasks = ox__task_count(x, j.tokens * a->ne[0] * a->ne[1], j.tokens);
    if (j.tokens > 0) ox__cpu_run(x, j.n_tasks, rope_task, &j);
    return OX_OK;
}

/* ---- rope of normalised rows (ox_rope_qk) ------------------------------------------ */

typedef struct rope_norm_job {
    const ox__view *dst, *a, *weight, *positions;
    const ox_rope_params *params;
    float eps;
    int64_t tokens;
    size_t n_tasks;
} rope_norm_job;

/* Row idx: x * inv * w (as ox__cpu_rms_norm computes it), then rotated (as
 * rotate and pass_through do), stored once in dst's type. */
static void rope_norm_row(const rope_norm_job *j, const int64_t idx[3], const float *c,
                          const float *s)
{
    float x_buf[OX__TILE], w_buf[OX__TILE], out_buf[OX__TILE], xn[OX__TILE];
    const ox__view *a = j->a, *dst = j->dst;
    const int64_t n = a->ne[0], half = j->params->n_dims / 2;
    const float *x = ox__tile_in(a, ox__view_at(a, 0, idx[0], idx[1], idx[2]), n, x_buf);
    if (j->weight) {
        float inv = (float)(1.0 / sqrt(ox__sum_sq_tile(x, 0.0, n) / (double)n + (double)j->eps));
        const float *w = ox__tile_in(j->weight, j->weight->data, n, w_buf);
        for (int64_t i = 0; i < n; i++) {
            xn[i] = x[i] * inv;
            xn[i] *= w[i];
        }
    } else {
        memcpy(xn, x, (size_t)n * sizeof *xn);
    }
    char *dp = ox__view_at(dst, 0, idx[0], idx[1], idx[2]);
    float *d = ox__tile_out(dst, dp, out_buf);
    for (int64_t i = 0; i < half; i++) {
        int64_t i0 = j->params->mode == OX_ROPE_NORMAL ? 2 * i : i;
        int64_t i1 = j->params->mode == OX_ROPE_NORMAL ? 2 * i + 1 : i + half;
        float x0 = xn[i0], x1 = xn[i1];
        d[i0] = x0 * c[i] - x1 * s[i];
        d[i1] = x0 * s[i] + x1 * c[i];
    }
    for (int64_t i = j->params->n_dims; i < n; i++) d[i] = xn[i];
    ox__tile_done(dst, dp, d, n);
}

static void rope_norm_task(void *arg, size_t task, int thread)
{
    const rope_norm_job *j = arg;
    float cos_t[PAIRS], sin_t[PAIRS];
    int64_t begin, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, j->tokens, &begin, &end);
    for (int64_t t = begin; t < end; t++) {
        int64_t i2 = t % j->a->ne[2], i3 = t / j->a->ne[2];
        token_angles(j->positions, j->params, i2, position(j->positions, i2), 0,
                     j->params->n_dims / 2, cos_t, sin_t);
        for (int64_t i1 = 0; i1 < j->a->ne[1]; i1++) {
            int64_t idx[3] = {i1, i2, i3};
            rope_norm_row(j, idx, cos_t, sin_t);
        }
    }
}

ox_status ox__cpu_rope_norm(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                            const ox__view *weight, float eps, const ox__view *positions,
                            const ox_rope_params *params)
{
    rope_norm_job j = {.dst = dst, .a = a, .weight = weight, .positions = positions,
                       .params = params, .eps = eps};
    j.tokens = a->ne[2] * a->ne[3];
    j.n_tasks = ox__task_count(x, j.tokens * a->ne[0] * a->ne[1], j.tokens);
    if (j.tokens > 0) ox__cpu_run(x, j.n_tasks, rope_norm_task, &j);
    return OX_OK;
}
