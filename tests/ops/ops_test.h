/* Helpers for the operator tests: host tensors (contiguous or strided views
 * of malloc'd memory) with fixed-seed random contents, their exact double
 * copies for the reference ops, NMSE checks with a bound per dtype, and a
 * two-thread pool. Memory allocated here lives until the test process
 * exits: every block stays reachable from `arena`, so leak checkers stay
 * quiet, and each case runs in its own process anyway. */
#ifndef OX_TESTS_OPS_TEST_H
#define OX_TESTS_OPS_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_features.h"
#include "ops/cpu_ops.h"
#include "ops/reference.h"
#include "ox_test.h"

/* NMSE bounds against the double reference, which is fed the inputs after
 * rounding to the dtype, so only the op's own float arithmetic and the
 * final rounding of dst count:
 * - F32: float arithmetic with double sums gives relative errors of a few
 *   1e-7 at most, an NMSE near 1e-13; 1e-10 leaves room for libm's ulps.
 * - F16: one rounding of the output, unit roundoff u = 2^-11, gives an
 *   NMSE of at most u^2 = 2.4e-7 for normal numbers; but results under
 *   2^-14 are subnormal with a fixed spacing of 2^-24, and a softmax over
 *   100000 entries is made of such (NMSE about 1e-6 from that alone), so
 *   the bound is 1e-5.
 * - BF16: one rounding with u = 2^-8: at most 1.5e-5 (no subnormal
 *   trouble, it has F32's exponent range); bound 1e-4. */
static inline double tt_tol(ox_dtype dtype)
{
    return dtype == OX_DTYPE_F16 ? 1e-5 : dtype == OX_DTYPE_BF16 ? 1e-4 : 1e-10;
}

static const ox_dtype tt_float_types[3] = {OX_DTYPE_F32, OX_DTYPE_F16, OX_DTYPE_BF16};

/* ---- memory and randomness --------------------------------------------------- */

static void *arena[4096];
static int arena_used;

static inline void *tt_alloc(size_t size)
{
    void *p = calloc(1, size ? size : 1);
    ASSERT(p != NULL && arena_used < (int)(sizeof arena / sizeof arena[0]));
    arena[arena_used++] = p;
    return p;
}

static uint64_t tt_rng_state = 0x9E3779B97F4A7C15ull;

static inline void tt_seed(uint64_t seed)
{
    tt_rng_state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
}

static inline uint64_t tt_next(void)
{
    uint64_t x = tt_rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tt_rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi). */
static inline double tt_uniform(double lo, double hi)
{
    return lo + (hi - lo) * (double)(tt_next() >> 11) * 0x1p-53;
}

/* ---- tensors --------------------------------------------------------------------- */

enum {
    TT_CONTIGUOUS,
    TT_TRANSPOSED, /* memory holds dims 0 and 1 swapped: nb[0] is a whole column */
    TT_PADDED      /* every other element, padded rows and planes */
};

typedef struct test_tensor {
    ox__view v;
    size_t bytes;
} test_tensor;

static inline int64_t tt_count(const int64_t ne[4])
{
    return ne[0] * ne[1] * ne[2] * ne[3];
}

/* A tensor of shape ne in the given layout; memory is filled with 0x5a. */
static inline test_tensor tt_new(ox_dtype dtype, const int64_t ne[4], int layout)
{
    test_tensor t = {.v = {.dtype = dtype}};
    int64_t es = (int64_t)ox_dtype_size(dtype);
    memcpy(t.v.ne, ne, sizeof t.v.ne);
    if (layout == TT_TRANSPOSED) {
        t.v.nb[1] = es;
        t.v.nb[0] = es * ne[1];
        t.v.nb[2] = es * ne[0] * ne[1];
    } else if (layout == TT_PADDED) {
        t.v.nb[0] = 2 * es;
        t.v.nb[1] = t.v.nb[0] * ne[0] + 3 * es;
        t.v.nb[2] = t.v.nb[1] * ne[1] + es;
    } else {
        t.v.nb[0] = es;
        t.v.nb[1] = es * ne[0];
        t.v.nb[2] = t.v.nb[1] * ne[1];
    }
    t.v.nb[3] = t.v.nb[2] * ne[2];
    t.bytes = (size_t)(t.v.nb[3] * ne[3] + 4 * es);
    t.v.data = tt_alloc(t.bytes);
    memset(t.v.data, 0x5a, t.bytes);
    return t;
}

/* Address of element number `flat` (row-major order of the shape). */
static inline char *tt_at(const test_tensor *t, int64_t flat)
{
    int64_t i[4];
    for (int d = 0; d < 4; d++) {
        i[d] = flat % t->v.ne[d];
        flat /= t->v.ne[d];
    }
    return ox__view_at(&t->v, i[0], i[1], i[2], i[3]);
}

static inline double tt_get(const test_tensor *t, int64_t flat)
{
    if (t->v.dtype == OX_DTYPE_I32) {
        int32_t x;
        memcpy(&x, tt_at(t, flat), sizeof x);
        return x;
    }
    return ox__load_f(t->v.dtype, tt_at(t, flat));
}

static inline void tt_set(const test_tensor *t, int64_t flat, double value)
{
    if (t->v.dtype == OX_DTYPE_I32) {
        int32_t x = (int32_t)value;
        memcpy(tt_at(t, flat), &x, sizeof x);
    } else {
        ox__store_f(t->v.dtype, tt_at(t, flat), (float)value);
    }
}

/* A tensor with uniform values in [lo, hi) (integers for I32). */
static inline test_tensor tt_random(ox_dtype dtype, const int64_t ne[4], int layout, double lo,
                                    double hi)
{
    test_tensor t = tt_new(dtype, ne, layout);
    for (int64_t e = 0; e < tt_count(ne); e++) {
        double x = tt_uniform(lo, hi);
        tt_set(&t, e, dtype == OX_DTYPE_I32 ? floor(x) : x);
    }
    return t;
}

/* The dense double (or int) copy the reference ops take. */
static inline ox_ref_tensor tt_ref(const test_tensor *t)
{
    ox_ref_tensor r = {0};
    int64_t n = tt_count(t->v.ne);
    memcpy(r.ne, t->v.ne, sizeof r.ne);
    if (t->v.dtype == OX_DTYPE_I32) r.idata = tt_alloc((size_t)n * sizeof *r.idata);
    else r.data = tt_alloc((size_t)n * sizeof *r.data);
    for (int64_t e = 0; e < n; e++) {
        if (r.idata) r.idata[e] = (int32_t)tt_get(t, e);
        else r.data[e] = tt_get(t, e);
    }
    return r;
}

/* A zeroed reference tensor of shape ne (int when `integer`). */
static inline ox_ref_tensor tt_ref_new(const int64_t ne[4], int integer)
{
    ox_ref_tensor r = {0};
    memcpy(r.ne, ne, sizeof r.ne);
    if (integer) r.idata = tt_alloc((size_t)tt_count(ne) * sizeof *r.idata);
    else r.data = tt_alloc((size_t)tt_count(ne) * sizeof *r.data);
    return r;
}

static inline double tt_nmse(const test_tensor *t, const ox_ref_tensor *ref)
{
    int64_t n = tt_count(t->v.ne);
    double *x = tt_alloc((size_t)n * sizeof *x);
    for (int64_t e = 0; e < n; e++) x[e] = tt_get(t, e);
    return ox_ref_nmse(x, ref->data, n);
}

/* dst (an op's result) matches the reference within `tol`; the message
 * names the case. With OX_TEST_VERBOSE set, every NMSE is printed. */
#define ASSERT_NMSE(dst, ref, tol, ...)                                                   \
    do {                                                                                  \
        double nmse_ = tt_nmse((dst), (ref));                                             \
        if (getenv("OX_TEST_VERBOSE")) {                                                  \
            printf("  nmse %-9.3g %-4s ", nmse_, ox_dtype_str((dst)->v.dtype));           \
            printf(__VA_ARGS__);                                                          \
        }                                                                                 \
        if (!(nmse_ <= (tol))) {                                                          \
            fprintf(stderr, "  case: ");                                                  \
            fprintf(stderr, __VA_ARGS__);                                                 \
            OX_TEST_FAIL_AT("nmse %.3g > %.3g (%s)", nmse_, (double)(tol),               \
                            ox_dtype_str((dst)->v.dtype));                                \
        }                                                                                 \
    } while (0)

/* The CPU operators' execution state: a pool of two threads, made once. */
static inline const ox__cpu_exec *tt_exec(void)
{
    static ox__cpu_exec exec;
    if (!exec.pool) {
        ASSERT_EQ(ox__pool_create(2, &exec.pool), OX_OK);
        exec.features = ox__cpu_detect()->features;
    }
    return &exec;
}

#endif /* OX_TESTS_OPS_TEST_H */
