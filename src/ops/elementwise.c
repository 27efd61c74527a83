/* Elementwise operators on the CPU: binary ops with b repeating over a,
 * scale, clamp and the unary functions. Work is split into ranges of dst's
 * elements in row-major order; each range is done in tiles of OX__TILE floats,
 * read in place for contiguous F32 and converted otherwise (cpu_tile.h). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "ops/cpu_tile.h"

/* ---- kernels on tiles -------------------------------------------------------- */

static void binary_tile(ox_binary_op op, float *d, const float *x, const float *y, int64_t n)
{
    switch (op) {
    case OX_BINARY_ADD: for (int64_t i = 0; i < n; i++) d[i] = x[i] + y[i]; break;
    case OX_BINARY_SUB: for (int64_t i = 0; i < n; i++) d[i] = x[i] - y[i]; break;
    case OX_BINARY_MUL: for (int64_t i = 0; i < n; i++) d[i] = x[i] * y[i]; break;
    case OX_BINARY_DIV: for (int64_t i = 0; i < n; i++) d[i] = x[i] / y[i]; break;
    }
}

static float softplus(float x)
{
    return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
}

/* gelu_tanh_f16 (openxpu/ops.h): ggml's table, made the way ggml makes it
 * (single precision, libm's tanhf, each result rounded to half), indexed by
 * the bits of x rounded to half. 128 KiB, built once on first use. */
static uint16_t gelu_f16_table[65536];
static pthread_once_t gelu_f16_once = PTHREAD_ONCE_INIT;

static void gelu_f16_build(void)
{
    for (uint32_t i = 0; i < 65536; i++) {
        float x = ox_f16_to_f32((uint16_t)i);
        float y = 0.5f * x * (1.0f + tanhf(0.79788456080286535588f * x * (1.0f + 0.044715f * x * x)));
        gelu_f16_table[i] = ox_f32_to_f16(y);
    }
}

/* d may be x. The rounding of x to half and of the table's halves back to
 * float go through the row converters (F16C where the CPU has it). */
static void gelu_tanh_f16_tile(float *d, const float *x, int64_t n)
{
    uint16_t h[OX__TILE];
    float y[OX__TILE];
    pthread_once(&gelu_f16_once, gelu_f16_build);
    ox__row_from_f32(OX_DTYPE_F16, x, h, n);
    for (int64_t i = 0; i < n; i++) h[i] = gelu_f16_table[h[i]];
    ox__row_to_f32(OX_DTYPE_F16, h, y, n);
    for (int64_t i = 0; i < n; i++) d[i] = x[i] <= -10.0f ? 0.0f : x[i] >= 10.0f ? x[i] : y[i];
}

/* exp, silu, sigmoid and gelu_tanh use ox__exp_f32, so their loops
 * vectorize; gelu_tanh as x sigmoid(2u), equal to x/2 (1 + tanh u). */
static void unary_tile(ox_unary_op op, float *d, const float *x, int64_t n)
{
    const float sqrt_half = 0.70710678118654752f, sqrt_2_over_pi = 0.79788456080286536f;
    switch (op) {
    case OX_UNARY_NEG: for (int64_t i = 0; i < n; i++) d[i] = -x[i]; break;
    case OX_UNARY_ABS: for (int64_t i = 0; i < n; i++) d[i] = fabsf(x[i]); break;
    case OX_UNARY_EXP: for (int64_t i = 0; i < n; i++) d[i] = ox__exp_f32(x[i]); break;
    case OX_UNARY_LOG: for (int64_t i = 0; i < n; i++) d[i] = logf(x[i]); break;
    case OX_UNARY_SQRT: for (int64_t i = 0; i < n; i++) d[i] = sqrtf(x[i]); break;
    case OX_UNARY_RSQRT: for (int64_t i = 0; i < n; i++) d[i] = 1.0f / sqrtf(x[i]); break;
    case OX_UNARY_TANH: for (int64_t i = 0; i < n; i++) d[i] = tanhf(x[i]); break;
    case OX_UNARY_RELU: for (int64_t i = 0; i < n; i++) d[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case OX_UNARY_GELU:
        for (int64_t i = 0; i < n; i++) d[i] = 0.5f * x[i] * (1.0f + erff(x[i] * sqrt_half));
        break;
    case OX_UNARY_GELU_TANH:
        for (int64_t i = 0; i < n; i++) {
            float u = sqrt_2_over_pi * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
            d[i] = x[i] / (1.0f + ox__exp_f32(-2.0f * u));
        }
        break;
    case OX_UNARY_SILU:
        for (int64_t i = 0; i < n; i++) d[i] = x[i] / (1.0f + ox__exp_f32(-x[i]));
        break;
    case OX_UNARY_SIGMOID:
        for (int64_t i = 0; i < n; i++) d[i] = 1.0f / (1.0f + ox__exp_f32(-x[i]));
        break;
    case OX_UNARY_SOFTPLUS: for (int64_t i = 0; i < n; i++) d[i] = softplus(x[i]); break;
    case OX_UNARY_GELU_TANH_F16: gelu_tanh_f16_tile(d, x, n); break;
    default: for (int64_t i = 0; i < n; i++) d[i] = NAN; break; /* rejected by the op layer */
    }
}

/* ---- jobs ------------------------------------------------------------------------ */

typedef enum ew_kind { EW_BINARY, EW_SCALE, EW_CLAMP, EW_UNARY, EW_GLU } ew_kind;

typedef struct ew_job {
    ew_kind kind;
    int op;                 /* ox_binary_op or ox_unary_op */
    const ox__view *dst, *a, *b;
    float p0, p1;           /* scale and bias, or lo and hi */
    bool f16_rows;          /* binary op on contiguous F16 rows: ox__binary_f16_avx2 */
    bool silu_rows;         /* SiLU gate on contiguous F32 rows: ox__silu_mul_avx2 */
    int64_t total;          /* elements of dst */
    size_t n_tasks;
} ew_job;

/* b's row met by a's row (i1, i2, i3): b repeats over a. */
static const char *row_of_b(const ox__view *b, const int64_t idx[3])
{
    return ox__view_at(b, 0, idx[0] % b->ne[1], idx[1] % b->ne[2], idx[2] % b->ne[3]);
}

/* The n elements of b met by elements [i0, i0 + n) of a's row (i1, i2, i3). */
static const float *b_tile(const ox__view *b, int64_t i0, int64_t n, const int64_t idx[3],
                           float *buf)
{
    const char *row = row_of_b(b, idx);
    if (b->ne[0] == 1) {
        float v = ox__load_f(b->dtype, row);
        for (int64_t i = 0; i < n; i++) buf[i] = v;
        return buf;
    }
    int64_t k = i0 % b->ne[0];
    if (k + n <= b->ne[0]) return ox__tile_in(b, row + k * b->nb[0], n, buf);
    for (int64_t done = 0; done < n; k = 0) { /* b's row repeats within the tile */
        int64_t m = ox__min64(b->ne[0] - k, n - done);
        const float *src = ox__tile_in(b, row + k * b->nb[0], m, buf + done);
        if (src != buf + done)
            for (int64_t i = 0; i < m; i++) buf[done + i] = src[i];
        done += m;
    }
    return buf;
}

/* Elements [i0, i0 + n) of row idx = (i1, i2, i3). */
static void ew_segment(const void *arg, int64_t i0, int64_t n, const int64_t idx[3])
{
    const ew_job *j = arg;
    float a_buf[OX__TILE], b_buf[OX__TILE], d_buf[OX__TILE];
    const char *a_row = ox__view_at(j->a, 0, idx[0], idx[1], idx[2]);
    char *d_row = ox__view_at(j->dst, 0, idx[0], idx[1], idx[2]);
#if defined(__x86_64__) || defined(_M_X64)
    if (j->f16_rows) {
        const char *b_row = row_of_b(j->b, idx);
        ox__binary_f16_avx2(j->op, (uint16_t *)(void *)d_row + i0,
                            (const uint16_t *)(const void *)a_row + i0,
                            (const uint16_t *)(const void *)b_row + i0, n);
        return;
    }
    if (j->silu_rows) {
        const char *b_row = row_of_b(j->b, idx);
        ox__silu_mul_avx2((float *)(void *)d_row + i0, (const float *)(const void *)a_row + i0,
                          (const float *)(const void *)b_row + i0, n);
        return;
    }
#endif
    for (int64_t t = i0; t < i0 + n; t += OX__TILE) {
        int64_t m = ox__min64(i0 + n - t, OX__TILE);
        const float *x = ox__tile_in(j->a, a_row + t * j->a->nb[0], m, a_buf);
        char *dp = d_row + t * j->dst->nb[0];
        float *d = ox__tile_out(j->dst, dp, d_buf);
        switch (j->kind) {
        case EW_BINARY:
            binary_tile((ox_binary_op)j->op, d, x, b_tile(j->b, t, m, idx, b_buf), m);
            break;
        case EW_SCALE:
            for (int64_t i = 0; i < m; i++) d[i] = x[i] * j->p0 + j->p1;
            break;
        case EW_CLAMP:
            for (int64_t i = 0; i < m; i++) {
                float v = x[i] < j->p0 ? j->p0 : x[i];
                d[i] = v > j->p1 ? j->p1 : v;
            }
            break;
        case EW_UNARY: unary_tile((ox_unary_op)j->op, d, x, m); break;
        case EW_GLU: /* b is up, the same shape as a (the gate) */
            unary_tile((ox_unary_op)j->op, d, x, m);
            binary_tile(OX_BINARY_MUL, d, d, b_tile(j->b, t, m, idx, b_buf), m);
            break;
        }
        ox__tile_done(j->dst, dp, d, m);
    }
}

static void ew_task(void *arg, size_t task, int thread)
{
    const ew_job *j = arg;
    int64_t start, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, j->total, &start, &end);
    ox__for_segments(j->dst->ne, start, end, ew_segment, j);
}

static ox_status ew_run(const ox__cpu_exec *x, ew_job *j)
{
    const int64_t *ne = j->dst->ne;
    j->total = ne[0] * ne[1] * ne[2] * ne[3];
    j->n_tasks = ox__task_count(x, j->total, j->total);
    if (j->total > 0) ox__cpu_run(x, j->n_tasks, ew_task, j);
    return OX_OK;
}

/* ---- entry points --------------------------------------------------------------- */

ox_status ox__cpu_binary(const ox__cpu_exec *x, ox_binary_op op, const ox__view *dst,
                         const ox__view *a, const ox__view *b)
{
    ew_job j = {.kind = EW_BINARY, .op = (int)op, .dst = dst, .a = a, .b = b};
    /* halves in, halves out, rows contiguous and b's as long as a's: the
     * conversions fused with the op (the tile path converts whole tiles to
     * floats and back around the op: 57% of the bandwidth for an F16 add) */
    const uint64_t f16c = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_F16C);
    j.f16_rows = (x->features & f16c) == f16c && dst->dtype == OX_DTYPE_F16 &&
                 a->dtype == OX_DTYPE_F16 && b->dtype == OX_DTYPE_F16 && dst->nb[0] == 2 &&
                 a->nb[0] == 2 && b->nb[0] == 2 && b->ne[0] == a->ne[0];
    return ew_run(x, &j);
}

ox_status ox__cpu_scale(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a, float scale,
                        float bias)
{
    ew_job j = {.kind = EW_SCALE, .dst = dst, .a = a, .p0 = scale, .p1 = bias};
    return ew_run(x, &j);
}

ox_status ox__cpu_clamp(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a, float lo,
                        float hi)
{
    ew_job j = {.kind = EW_CLAMP, .dst = dst, .a = a, .p0 = lo, .p1 = hi};
    return ew_run(x, &j);
}

ox_status ox__cpu_glu(const ox__cpu_exec *x, ox_unary_op act, const ox__view *dst,
                      const ox__view *gate, const ox__view *up)
{
    ew_job j = {.kind = EW_GLU, .op = (int)act, .dst = dst, .a = gate, .b = up};
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    j.silu_rows = act == OX_UNARY_SILU && (x->features & avx2) == avx2 &&
                  dst->dtype == OX_DTYPE_F32 && gate->dtype == OX_DTYPE_F32 &&
                  up->dtype == OX_DTYPE_F32 && dst->nb[0] == 4 && gate->nb[0] == 4 &&
                  up->nb[0] == 4 && up->ne[0] == gate->ne[0];
    return ew_run(x, &j);
}

ox_status ox__cpu_unary(const ox__cpu_exec *x, ox_unary_op op, const ox__view *dst,
                        const ox__view *a)
{
    ew_job j = {.kind = EW_UNARY, .op = (int)op, .dst = dst, .a = a};
    return ew_run(x, &j);
}
