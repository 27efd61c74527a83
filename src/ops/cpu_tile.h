/* Helpers shared by the CPU operator files (elementwise.c, reduce.c, rope.c,
 * movement.c, attention.c): a row is processed in tiles of at most OX__TILE
 * floats, read in place for aligned contiguous F32 and converted through a
 * stack buffer otherwise; work is split into tasks for the thread pool only
 * when it is large enough to pay for the threads; and an exp that loops
 * vectorize. */
#ifndef OX_OPS_CPU_TILE_H
#define OX_OPS_CPU_TILE_H

#include <stdint.h>
#include <string.h>

#include "ops/cpu_ops.h"

#define OX__TILE 1024          /* floats per tile (4 KiB on the stack) */
#define OX__PARALLEL_MIN 32768 /* less work than this (~elements): one task */
#define OX__TASK_MIN 16384     /* work per task at least */

static inline int64_t ox__min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* True if the floats at p can be used in place: F32, unit stride, aligned. */
static inline int ox__tile_direct(const ox__view *v, const char *p)
{
    return v->dtype == OX_DTYPE_F32 && v->nb[0] == (int64_t)sizeof(float) &&
           ((uintptr_t)p % sizeof(float)) == 0;
}

/* n elements of v from p on (stride nb[0]) as floats: p itself or buf. */
static inline const float *ox__tile_in(const ox__view *v, const char *p, int64_t n, float *buf)
{
    if (ox__tile_direct(v, p)) return (const float *)p;
    if (v->nb[0] == (int64_t)ox_dtype_size(v->dtype)) ox__row_to_f32(v->dtype, p, buf, n);
    else
        for (int64_t i = 0; i < n; i++) buf[i] = ox__load_f(v->dtype, p + i * v->nb[0]);
    return buf;
}

/* Where to compute n results bound for p (p itself or buf); then call
 * ox__tile_done to store them. */
static inline float *ox__tile_out(const ox__view *v, char *p, float *buf)
{
    return ox__tile_direct(v, p) ? (float *)p : buf;
}

static inline void ox__tile_done(const ox__view *v, char *p, const float *t, int64_t n)
{
    if ((const char *)t == p) return;
    if (v->nb[0] == (int64_t)ox_dtype_size(v->dtype)) ox__row_from_f32(v->dtype, t, p, n);
    else
        for (int64_t i = 0; i < n; i++) ox__store_f(v->dtype, p + i * v->nb[0], t[i]);
}

/* Tasks for `work` (about elements touched) spread over `items`
 * independent pieces: 1 when small, else up to 4 per thread. */
static inline size_t ox__task_count(const ox__cpu_exec *x, int64_t work, int64_t items)
{
    if (!x->pool || work < OX__PARALLEL_MIN || items < 2) return 1;
    int64_t n = ox__min64(items, 4 * (int64_t)ox__pool_size(x->pool));
    n = ox__min64(n, work / OX__TASK_MIN);
    return n > 1 ? (size_t)n : 1;
}

/* Run fn for tasks [0, n_tasks): on the pool, or on this thread when there
 * is one task or no pool. */
static inline void ox__cpu_run(const ox__cpu_exec *x, size_t n_tasks, ox__pool_fn fn, void *arg)
{
    if (n_tasks > 1 && x->pool) {
        ox__pool_run(x->pool, n_tasks, fn, arg);
        return;
    }
    for (size_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
}

/* Item range [begin, end) of task `task` among n_tasks over `items`. */
static inline void ox__task_range(size_t task, size_t n_tasks, int64_t items, int64_t *begin,
                                  int64_t *end)
{
    *begin = (int64_t)task * items / (int64_t)n_tasks;
    *end = ((int64_t)task + 1) * items / (int64_t)n_tasks;
}

/* Visit elements [start, end) of a tensor of shape ne in row-major order as
 * pieces of rows: fn(arg, i0, n, idx) covers elements [i0, i0 + n) of row
 * idx = (i1, i2, i3). */
typedef void (*ox__segment_fn)(const void *arg, int64_t i0, int64_t n, const int64_t idx[3]);

static inline void ox__for_segments(const int64_t ne[OX_MAX_DIMS], int64_t start, int64_t end,
                                    ox__segment_fn fn, const void *arg)
{
    int64_t row = start / ne[0], i0 = start % ne[0];
    while (start < end) {
        int64_t idx[3] = {row % ne[1], row / ne[1] % ne[2], row / ne[1] / ne[2]};
        int64_t n = ox__min64(ne[0] - i0, end - start);
        fn(arg, i0, n, idx);
        start += n;
        row++;
        i0 = 0;
    }
}

/* exp(x) within 2 ulp (1.4 measured), subnormal results, infinities and
 * NaN included. libm's expf is a call the compiler cannot vectorize; this
 * is branch-free, so loops over it are (no float compare-and-select, which
 * gcc will not if-convert under -ftrapping-math, and no float-to-int
 * conversion: n is read from the bits of a rounded sum). Cephes' range
 * reduction and polynomial. */
static inline float ox__exp_f32(float x)
{
    uint32_t u, m, bits1, bits2, tb;
    memcpy(&u, &x, sizeof u);
    uint32_t mag = u & 0x7fffffffu, limit = (u >> 31) ? 0x43160000u : 0x42b20000u; /* 150, 89 */
    m = (((mag > limit) & (mag <= 0x7f800000u)) ? limit : mag) | (u & 0x80000000u); /* NaN stays */
    float xc, fn, t, r, p, s1, s2;
    memcpy(&xc, &m, sizeof xc);
    t = xc * 1.44269504088896341f + 0x1.8p23f; /* n = round(x / ln 2) in t's low bits */
    fn = t - 0x1.8p23f;
    memcpy(&tb, &t, sizeof tb);
    int32_t n = (int32_t)(tb - 0x4b400000u), n1 = n / 2, n2 = n - n1;
    r = xc - fn * 0.693359375f + fn * 2.12194440e-4f; /* x - n ln 2, ln 2 in two parts */
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    bits1 = ((uint32_t)n1 + 127u) << 23; /* 2^n as 2^n1 2^n2, both normal: exp(-150) is 0 */
    bits2 = ((uint32_t)n2 + 127u) << 23;
    memcpy(&s1, &bits1, sizeof s1);
    memcpy(&s2, &bits2, sizeof s2);
    return p * s1 * s2;
}

#endif /* OX_OPS_CPU_TILE_H */
