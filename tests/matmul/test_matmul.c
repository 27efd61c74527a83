/* The CPU matmul (ox__cpu_matmul, src/ops/matmul.c) against the naive
 * double-precision reference (ox_ref_matmul), by normalized mean squared
 * error: odd shapes, every transpose combination, batches with a repeating,
 * strided views, F16/BF16 operands, the matrix-vector paths, identical bits
 * for 1 and 2 threads, and the SIMD kernels against the portable ones.
 *
 * Inputs are rounded to their dtype first and the reference reads the
 * rounded values, so the only error left is F32 accumulation: NMSE grows
 * about linearly with K, measured at most 5e-16 * K with these inputs
 * (uniform in [-1, 1)); the bound is max(1e-13, 3e-15 * K), which is
 * 1e-13 .. 1.2e-11 here. OX_TEST_VERBOSE=1 prints every NMSE.
 *
 * One rule of the x86 kernels is restated here, not taken from the code: a
 * matrix-vector product with F16 or BF16 weight rows contiguous along K
 * reads its vector as halves of x * 2^e, e = 15 - the binary exponent of
 * the vector's largest |x|, and divides the sums by 2^e (src/ops/matmul.h);
 * the reference then reads the vector so rounded (ox_ref_round_half). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "openxpu/device.h"
#include "ops/cpu_ops.h"
#include "ops/matmul.h"
#include "ops/reference.h"
#include "ox_test.h"

typedef struct mm_case {
    int64_t M, K, N;
    int64_t a2, a3, b2, b3; /* batch dims; 0 means 1 */
    unsigned flags;
    ox_dtype ta, tb;        /* F32 = 0 by default */
    int64_t pad;            /* extra elements after every row of a, b and dst */
    double a_scale;         /* a's elements times this (0 means 1) */
} mm_case;

/* A host tensor in its stored layout, and the same values as doubles. */
typedef struct operand {
    ox_ref_tensor ref;
    char *mem;
    size_t bytes;
    ox__view view;
} operand;

#define SENTINEL_BYTE 0x5a

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* Elements uniform in [-1, 1), rounded to `type`; row padding holds NaN
 * (for inputs) so reading it would show. */
static void operand_make(operand *o, ox_dtype type, const int64_t ne[4], int64_t pad,
                         uint64_t *seed, int fill, double scale)
{
    size_t size = ox_dtype_size(type);
    int64_t n = ne[0] * ne[1] * ne[2] * ne[3];
    memcpy(o->ref.ne, ne, sizeof o->ref.ne);
    o->ref.idata = NULL;
    o->ref.data = calloc((size_t)n, sizeof(double));
    o->view.dtype = type;
    memcpy(o->view.ne, ne, sizeof o->view.ne);
    o->view.nb[0] = (int64_t)size;
    o->view.nb[1] = (ne[0] + pad) * (int64_t)size;
    o->view.nb[2] = o->view.nb[1] * ne[1];
    o->view.nb[3] = o->view.nb[2] * ne[2];
    o->bytes = (size_t)(o->view.nb[3] * ne[3]);
    o->mem = malloc(o->bytes);
    ASSERT(o->ref.data && o->mem);
    memset(o->mem, fill ? 0xff : SENTINEL_BYTE, o->bytes);
    o->view.data = o->mem;
    if (!fill) return;
    for (int64_t i3 = 0; i3 < ne[3]; i3++)
        for (int64_t i2 = 0; i2 < ne[2]; i2++)
            for (int64_t i1 = 0; i1 < ne[1]; i1++)
                for (int64_t i0 = 0; i0 < ne[0]; i0++) {
                    char *p = ox__view_at(&o->view, i0, i1, i2, i3);
                    double v = (double)(next_random(seed) >> 11) / 9007199254740992.0 * 2 - 1;
                    v *= scale;
                    ox__store_f(type, p, (float)v);
                    o->ref.data[i0 + ne[0] * (i1 + ne[1] * (i2 + ne[2] * i3))] =
                        ox__load_f(type, p);
                }
}

static void operand_free(operand *o)
{
    free(o->ref.data);
    free(o->mem);
}

/* dst as a dense float array; checks that its row padding is untouched. */
static float *dst_dense(const operand *d)
{
    const int64_t *ne = d->view.ne;
    int64_t n = ne[0] * ne[1] * ne[2] * ne[3];
    float *out = malloc((size_t)n * sizeof(float));
    ASSERT(out);
    int64_t row_bytes = ne[0] * (int64_t)sizeof(float);
    for (int64_t r = 0; r < ne[1] * ne[2] * ne[3]; r++) {
        const char *row = d->mem + r * d->view.nb[1];
        memcpy(out + r * ne[0], row, (size_t)row_bytes);
        for (int64_t j = row_bytes; j < d->view.nb[1]; j++)
            ASSERT_MSG((unsigned char)row[j] == SENTINEL_BYTE, "row %lld padding written",
                       (long long)r);
    }
    return out;
}

static uint64_t detected_features(void)
{
    return ox__cpu_detect()->features;
}

/* Whether the kernels `features` choose read this case's vector as halves
 * (the rule above): M == 1 takes b as the weights, else N == 1 takes a. */
static int uses_halves(const mm_case *c, uint64_t features)
{
    if (strcmp(ox__cpu_matmul_kernels(features), "generic") == 0) return 0;
    ox_dtype w;
    int contiguous;
    if (c->M == 1) {
        w = c->tb;
        contiguous = (c->flags & OX_MATMUL_TRANS_B) || c->N + c->pad == 1;
    } else if (c->N == 1) {
        w = c->ta;
        contiguous = !(c->flags & OX_MATMUL_TRANS_A) || c->M + c->pad == 1;
    } else {
        return 0;
    }
    return contiguous && (w == OX_DTYPE_F16 || w == OX_DTYPE_BF16);
}

/* The vector operand's reference values (K per batch) as halves of
 * x * 2^e, divided by 2^e again. */
static void round_vector(operand *x)
{
    int64_t K = x->ref.ne[0] * x->ref.ne[1];
    for (int64_t v = 0; v < x->ref.ne[2] * x->ref.ne[3]; v++) {
        double *d = x->ref.data + v * K, max = 0;
        for (int64_t k = 0; k < K; k++) max = fmax(max, fabs(d[k]));
        if (max == 0) continue;
        int e;
        frexp(max, &e);
        for (int64_t k = 0; k < K; k++) d[k] = ldexp(ox_ref_round_half(ldexp(d[k], 15 - e)), e - 15);
    }
}

static double tolerance(int64_t K)
{
    double t = 3e-15 * (double)K;
    return t < 1e-13 ? 1e-13 : t;
}

/* Run one case on `threads` threads with the kernels `features` allow;
 * check it against the reference (when `check`) and return dst (dense,
 * caller frees). */
static float *run_case(const mm_case *c, int threads, uint64_t features, int check)
{
    int64_t a2 = c->a2 ? c->a2 : 1, a3 = c->a3 ? c->a3 : 1;
    int64_t b2 = c->b2 ? c->b2 : 1, b3 = c->b3 ? c->b3 : 1;
    int ta = (c->flags & OX_MATMUL_TRANS_A) != 0, tb = (c->flags & OX_MATMUL_TRANS_B) != 0;
    int64_t ne_a[4] = {ta ? c->M : c->K, ta ? c->K : c->M, a2, a3};
    int64_t ne_b[4] = {tb ? c->K : c->N, tb ? c->N : c->K, b2, b3};
    int64_t ne_d[4] = {c->N, c->M, b2, b3};
    uint64_t seed = 0x9e3779b97f4a7c15u ^ (uint64_t)(c->M * 1000003 + c->K * 1009 + c->N);
    operand a, b, d;
    operand_make(&a, c->ta, ne_a, c->pad, &seed, 1, c->a_scale ? c->a_scale : 1);
    operand_make(&b, c->tb, ne_b, c->pad, &seed, 1, 1);
    operand_make(&d, OX_DTYPE_F32, ne_d, c->pad, &seed, 0, 1);

    ox__pool *pool = NULL;
    ASSERT_EQ(ox__pool_create(threads, &pool), OX_OK);
    ox__cpu_exec x = {.pool = pool, .features = features};
    ASSERT_EQ(ox__cpu_matmul(&x, &d.view, &a.view, &b.view, c->flags), OX_OK);
    ox__pool_free(pool);

    float *out = dst_dense(&d);
    if (!check) goto done;
    int64_t n = ne_d[0] * ne_d[1] * ne_d[2] * ne_d[3];
    double *got = malloc((size_t)n * sizeof(double));
    ASSERT(got);
    for (int64_t i = 0; i < n; i++) got[i] = out[i];
    if (uses_halves(c, features)) round_vector(c->M == 1 ? &a : &b);
    ox_ref_matmul(&d.ref, &a.ref, &b.ref, c->flags);
    double nmse = ox_ref_nmse(got, d.ref.data, n);
    if (getenv("OX_TEST_VERBOSE"))
        printf("  %lldx%lldx%lld flags %u %s.%s threads %d features %#llx: nmse %.3g (bound "
               "%.3g)\n",
               (long long)c->M, (long long)c->K, (long long)c->N, c->flags, ox_dtype_str(c->ta),
               ox_dtype_str(c->tb), threads, (unsigned long long)features, nmse, tolerance(c->K));
    ASSERT_MSG(nmse <= tolerance(c->K),
               "%lldx%lldx%lld flags %u %s.%s threads %d features %#llx: nmse %.3g > %.3g",
               (long long)c->M, (long long)c->K, (long long)c->N, c->flags, ox_dtype_str(c->ta),
               ox_dtype_str(c->tb), threads, (unsigned long long)features, nmse, tolerance(c->K));
    free(got);
done:
    operand_free(&a);
    operand_free(&b);
    operand_free(&d);
    return out;
}

static void check_case(const mm_case *c, int threads)
{
    free(run_case(c, threads, detected_features(), 1));
}

/* The case with each kernel set the CPU can run: the best, AVX2, portable. */
static void check_case_kernels(const mm_case *c, int threads)
{
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    uint64_t best = detected_features();
    free(run_case(c, threads, best, 1));
    if ((best & avx2) == avx2 && (best & ~avx2) != 0) free(run_case(c, threads, best & avx2, 1));
    if (best != 0) free(run_case(c, threads, 0, 1));
}

/* The case with every combination of transposes. */
static void check_all_flags(mm_case c, int threads)
{
    for (unsigned flags = 0; flags < 4; flags++) {
        c.flags = flags;
        check_case(&c, threads);
    }
}

static void check_all_flags_kernels(mm_case c, int threads)
{
    for (unsigned flags = 0; flags < 4; flags++) {
        c.flags = flags;
        check_case_kernels(&c, threads);
    }
}

static int64_t case_elements(const mm_case *c)
{
    return c->N * c->M * (c->b2 ? c->b2 : 1) * (c->b3 ? c->b3 : 1);
}

/* ---- cases ------------------------------------------------------------------ */

OX_TEST(tiny_1x1x1)
{
    check_all_flags((mm_case){.M = 1, .K = 1, .N = 1}, 1);
    check_all_flags((mm_case){.M = 2, .K = 1, .N = 3}, 2);
}

/* 1 x K x N: the decode case, dot products (TRANS_B) or row sums. */
OX_TEST(vector_times_matrix)
{
    check_all_flags((mm_case){.M = 1, .K = 300, .N = 77}, 2);
    check_all_flags((mm_case){.M = 1, .K = 4096, .N = 515}, 2);
    check_all_flags((mm_case){.M = 1, .K = 37, .N = 5000}, 2);
}

OX_TEST(matrix_times_vector)
{
    check_all_flags((mm_case){.M = 300, .K = 129, .N = 1}, 2);
    check_all_flags((mm_case){.M = 4099, .K = 65, .N = 1}, 2);
}

OX_TEST(odd_sizes)
{
    check_all_flags((mm_case){.M = 37, .K = 53, .N = 29}, 1);
    check_all_flags((mm_case){.M = 65, .K = 129, .N = 33}, 1);
    check_all_flags((mm_case){.M = 65, .K = 129, .N = 33}, 2);
}

/* One past the micro-tiles (AVX-512 14 x 32, AVX2 6 x 16, portable 4 x 16),
 * the K slices (1024, 512, 256), the A blocks (224, 72, 64 rows), and two B
 * blocks (K x N above 2M floats), with every kernel set the CPU has. */
OX_TEST(block_edges)
{
    check_all_flags_kernels((mm_case){.M = 15, .K = 1025, .N = 33}, 2);
    check_all_flags_kernels((mm_case){.M = 7, .K = 513, .N = 17}, 2);
    check_all_flags_kernels((mm_case){.M = 5, .K = 257, .N = 17}, 1);
    check_all_flags_kernels((mm_case){.M = 225, .K = 300, .N = 97}, 2);
    check_all_flags_kernels((mm_case){.M = 73, .K = 100, .N = 250}, 2);
    check_case_kernels(&(mm_case){.M = 33, .K = 2100, .N = 1000}, 2);
    check_case_kernels(&(mm_case){.M = 33, .K = 2100, .N = 1000, .flags = OX_MATMUL_TRANS_B}, 1);
}

OX_TEST(crosses_blocks_300x700x513)
{
    check_all_flags((mm_case){.M = 300, .K = 700, .N = 513}, 2);
}

/* a's batch dimensions repeat over b's: A2 = 1 over B2 = 3, A3 = 2 over B3 = 4. */
OX_TEST(batched_repeat)
{
    mm_case c = {.M = 19, .K = 45, .N = 23, .a2 = 1, .a3 = 2, .b2 = 3, .b3 = 4};
    check_all_flags(c, 1);
    check_all_flags(c, 2);
    c.M = 1; /* batched matrix-vector */
    check_all_flags(c, 2);
    c.M = 19;
    c.N = 1;
    check_all_flags(c, 2);
    check_case(&(mm_case){.M = 130, .K = 200, .N = 150, .a2 = 1, .a3 = 2, .b2 = 3, .b3 = 2}, 2);
}

/* Sub-matrix views: every row of a, b and dst is followed by padding (NaN in
 * the inputs, a sentinel in dst that must survive). */
OX_TEST(strided_views)
{
    check_all_flags((mm_case){.M = 37, .K = 53, .N = 29, .pad = 5}, 2);
    check_all_flags((mm_case){.M = 300, .K = 400, .N = 200, .pad = 3}, 2);
    check_all_flags((mm_case){.M = 1, .K = 200, .N = 300, .pad = 7}, 2);
    check_all_flags((mm_case){.M = 200, .K = 100, .N = 1, .pad = 1}, 2);
    check_all_flags((mm_case){.M = 9, .K = 10, .N = 11, .a2 = 1, .a3 = 2, .b2 = 3, .b3 = 4,
                               .pad = 2},
                    2);
}

/* Strides that are neither rows nor elements: dst written through a
 * transposed view. */
OX_TEST(transposed_dst)
{
    mm_case c = {.M = 40, .K = 50, .N = 60};
    int64_t ne_a[4] = {c.K, c.M, 1, 1}, ne_b[4] = {c.N, c.K, 1, 1}, ne_t[4] = {c.M, c.N, 1, 1};
    uint64_t seed = 7;
    operand a, b, t;
    operand_make(&a, OX_DTYPE_F32, ne_a, 0, &seed, 1, 1);
    operand_make(&b, OX_DTYPE_F32, ne_b, 0, &seed, 1, 1);
    operand_make(&t, OX_DTYPE_F32, ne_t, 0, &seed, 0, 1);
    ox__view d = t.view; /* dst {N, M} over storage {M, N} */
    d.ne[0] = c.N;
    d.ne[1] = c.M;
    d.nb[0] = t.view.nb[1];
    d.nb[1] = t.view.nb[0];
    ox__pool *pool = NULL;
    ASSERT_EQ(ox__pool_create(2, &pool), OX_OK);
    ox__cpu_exec x = {.pool = pool, .features = detected_features()};
    ASSERT_EQ(ox__cpu_matmul(&x, &d, &a.view, &b.view, 0), OX_OK);
    ox__pool_free(pool);
    ox_ref_tensor ref = {.data = calloc((size_t)(c.M * c.N), sizeof(double)),
                         .ne = {c.N, c.M, 1, 1}};
    ASSERT(ref.data);
    ox_ref_matmul(&ref, &a.ref, &b.ref, 0);
    double *got = malloc((size_t)(c.M * c.N) * sizeof(double));
    ASSERT(got);
    for (int64_t m = 0; m < c.M; m++)
        for (int64_t n = 0; n < c.N; n++) got[m * c.N + n] = ((float *)t.mem)[n * c.M + m];
    double nmse = ox_ref_nmse(got, ref.data, c.M * c.N);
    ASSERT_MSG(nmse <= tolerance(c.K), "nmse %.3g", nmse);
    free(got);
    free(ref.data);
    operand_free(&a);
    operand_free(&b);
    operand_free(&t);
}

OX_TEST(half_precision_inputs)
{
    const ox_dtype types[3] = {OX_DTYPE_F32, OX_DTYPE_F16, OX_DTYPE_BF16};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            if (i == 0 && j == 0) continue;
            check_all_flags((mm_case){.M = 65, .K = 129, .N = 33, .ta = types[i], .tb = types[j]},
                            2);
            check_all_flags((mm_case){.M = 1, .K = 129, .N = 70, .ta = types[i], .tb = types[j]},
                            2);
            check_all_flags((mm_case){.M = 70, .K = 129, .N = 1, .ta = types[i], .tb = types[j]},
                            2);
        }
    }
    /* the LLM shapes: F16 / BF16 weights, F32 activations, big enough to thread */
    check_case(&(mm_case){.M = 100, .K = 700, .N = 300, .flags = OX_MATMUL_TRANS_B,
                          .tb = OX_DTYPE_F16},
               2);
    check_case(&(mm_case){.M = 100, .K = 700, .N = 300, .tb = OX_DTYPE_BF16, .pad = 3}, 2);
    check_case(&(mm_case){.M = 1, .K = 1000, .N = 999, .flags = OX_MATMUL_TRANS_B,
                          .tb = OX_DTYPE_F16, .pad = 4},
               2);
}

/* The vector's scale 2^e follows its range: vectors of huge and of tiny
 * elements (e far below 0, and up to 86) read as halves without overflow or
 * underflow, within the bound; an infinity keeps the whole product in F32
 * (its scale would turn a large finite element into a second infinity), so
 * each output is the infinity times its weight's sign, not a NaN. */
OX_TEST(half_vector_range)
{
    const double scales[] = {1e30, 1e-20, 65504.0 * 4, 1.0 / 65536};
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++)
        check_case_kernels(&(mm_case){.M = 1, .K = 700, .N = 50, .flags = OX_MATMUL_TRANS_B,
                                      .tb = OX_DTYPE_F16, .a_scale = scales[i]},
                           1);
    enum { K = 300, N = 20 };
    float x[K];
    uint16_t w[N * K];
    uint64_t seed = 7;
    for (int k = 0; k < K; k++) x[k] = (float)(next_random(&seed) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < N * K; i++)
        w[i] = ox_f32_to_f16((float)(next_random(&seed) % 1000) / 500.0f - 0.999f);
    x[123] = -__builtin_inff();
    x[200] = 40000.0f;
    float y[N];
    ox__view vx = {.data = (char *)x, .dtype = OX_DTYPE_F32, .ne = {K, 1, 1, 1},
                   .nb = {4, 4 * K, 4 * K, 4 * K}};
    ox__view vw = {.data = (char *)w, .dtype = OX_DTYPE_F16, .ne = {K, N, 1, 1},
                   .nb = {2, 2 * K, 2 * K * N, 2 * K * N}};
    ox__view vy = {.data = (char *)y, .dtype = OX_DTYPE_F32, .ne = {N, 1, 1, 1},
                   .nb = {4, 4 * N, 4 * N, 4 * N}};
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    const uint64_t options[2] = {detected_features(), detected_features() & avx2};
    for (int o = 0; o < 2; o++) {
        ox__cpu_exec ex = {.pool = NULL, .features = options[o]};
        ASSERT_EQ(ox__cpu_matmul(&ex, &vy, &vx, &vw, OX_MATMUL_TRANS_B), OX_OK);
        for (int n = 0; n < N; n++) {
            float wk = ox_f16_to_f32(w[n * K + 123]);
            ASSERT_MSG(isinf(y[n]) && (y[n] < 0) == (wk > 0), "%s kernels, row %d: %g for weight %g",
                       ox__cpu_matmul_kernels(options[o]), n, y[n], wk);
        }
    }
    /* the choice is per vector: in a batch of two, the finite vector's
     * products have the bits it has alone */
    float x2[2 * K], y2[2 * N], alone[N];
    memcpy(x2, x, sizeof x);
    for (int k = 0; k < K; k++) x2[K + k] = k == 122 ? 0.5f : x[(k + 1) % K]; /* no inf */
    ox__view vx2 = {.data = (char *)x2, .dtype = OX_DTYPE_F32, .ne = {K, 1, 2, 1},
                    .nb = {4, 4 * K, 4 * K, 8 * K}};
    ox__view vy2 = {.data = (char *)y2, .dtype = OX_DTYPE_F32, .ne = {N, 1, 2, 1},
                    .nb = {4, 4 * N, 4 * N, 8 * N}};
    ox__view vx1 = vx2, vy1 = vy;
    vx1.data = (char *)(x2 + K);
    vx1.ne[2] = 1;
    vy1.data = (char *)alone;
    ox__cpu_exec ex = {.pool = NULL, .features = detected_features()};
    ASSERT_EQ(ox__cpu_matmul(&ex, &vy2, &vx2, &vw, OX_MATMUL_TRANS_B), OX_OK);
    ASSERT_EQ(ox__cpu_matmul(&ex, &vy1, &vx1, &vw, OX_MATMUL_TRANS_B), OX_OK);
    ASSERT(isinf(y2[0]));
    for (int n = 0; n < N; n++) ASSERT(isfinite(alone[n]));
    ASSERT(memcmp(y2 + N, alone, sizeof alone) == 0);
}

/* Same inputs and the same thread count give the same bits; here 1 and 2
 * threads do too, as the summation order does not depend on threads. */
OX_TEST(threads_same_bits)
{
    const mm_case cases[] = {
        {.M = 300, .K = 700, .N = 513},
        {.M = 300, .K = 700, .N = 513, .flags = OX_MATMUL_TRANS_B, .tb = OX_DTYPE_F16},
        {.M = 33, .K = 2100, .N = 1000, .flags = OX_MATMUL_TRANS_A},
        {.M = 19, .K = 45, .N = 23, .a2 = 1, .a3 = 2, .b2 = 3, .b3 = 4},
        {.M = 1, .K = 4096, .N = 515, .flags = OX_MATMUL_TRANS_B},
        {.M = 1, .K = 300, .N = 1000},
        {.M = 4099, .K = 65, .N = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *one = run_case(&cases[i], 1, detected_features(), 1);
        float *two = run_case(&cases[i], 2, detected_features(), 0);
        float *again = run_case(&cases[i], 2, detected_features(), 0);
        size_t bytes = (size_t)case_elements(&cases[i]) * sizeof(float);
        ASSERT_MSG(memcmp(one, two, bytes) == 0, "case %zu: 1 and 2 threads differ", i);
        ASSERT_MSG(memcmp(two, again, bytes) == 0, "case %zu: two runs differ", i);
        free(one);
        free(two);
        free(again);
    }
}

/* A block's rows are cut into tasks that shrink towards the end (guided):
 * with 3 and with 64 threads (more tasks than the cut allows at its
 * smallest) every row is still computed once, checked against the
 * reference, with the bits of one thread. */
OX_TEST(row_tasks_cover_every_row)
{
    const mm_case cases[] = {
        {.M = 6 * 4 * 3, .K = 600, .N = 200, .flags = OX_MATMUL_TRANS_B},
        {.M = 6 * 4 * 3 + 5, .K = 600, .N = 200, .flags = OX_MATMUL_TRANS_B, .tb = OX_DTYPE_F16},
        {.M = 2003, .K = 64, .N = 300},
    };
    const int threads[] = {3, 64};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *one = run_case(&cases[i], 1, detected_features(), 0);
        size_t bytes = (size_t)case_elements(&cases[i]) * sizeof(float);
        for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
            float *many = run_case(&cases[i], threads[t], detected_features(), 1);
            ASSERT_MSG(memcmp(one, many, bytes) == 0, "case %zu: 1 and %d threads differ", i,
                       threads[t]);
            free(many);
        }
        free(one);
    }
}

/* The portable kernels (features = 0) and, where the CPU has it, the AVX2
 * ones, each against the reference and against the best kernels. */
OX_TEST(kernels_agree)
{
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    uint64_t best = detected_features();
    uint64_t options[2] = {0, best & avx2};
    const mm_case cases[] = {
        {.M = 65, .K = 129, .N = 33},
        {.M = 150, .K = 1100, .N = 260, .flags = OX_MATMUL_TRANS_A | OX_MATMUL_TRANS_B},
        {.M = 100, .K = 300, .N = 200, .flags = OX_MATMUL_TRANS_B, .tb = OX_DTYPE_BF16},
        {.M = 1, .K = 1000, .N = 300, .flags = OX_MATMUL_TRANS_B, .tb = OX_DTYPE_F16},
        {.M = 1, .K = 1000, .N = 300, .tb = OX_DTYPE_BF16},
        {.M = 300, .K = 33, .N = 1, .flags = OX_MATMUL_TRANS_A, .ta = OX_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *ref = run_case(&cases[i], 2, best, 1);
        int64_t n = case_elements(&cases[i]);
        double *want = malloc((size_t)n * sizeof(double));
        double *got = malloc((size_t)n * sizeof(double));
        ASSERT(want && got);
        for (int64_t e = 0; e < n; e++) want[e] = ref[e];
        for (int o = 0; o < 2; o++) {
            if (o == 1 && (best & avx2) != avx2) {
                printf("  no AVX2 here: portable kernels only\n");
                continue;
            }
            float *out = run_case(&cases[i], 2, options[o], 1);
            for (int64_t e = 0; e < n; e++) got[e] = out[e];
            /* one side read the vector as halves, the other in F32: apart
             * by the halves' rounding (NMSE ~4e-8), ox check's bound */
            double bound = uses_halves(&cases[i], options[o]) != uses_halves(&cases[i], best)
                               ? 1e-6
                               : tolerance(cases[i].K);
            double nmse = ox_ref_nmse(got, want, n);
            ASSERT_MSG(nmse <= bound, "case %zu features %#llx: nmse %.3g > %.3g", i,
                       (unsigned long long)options[o], nmse, bound);
            free(out);
        }
        free(want);
        free(got);
        free(ref);
    }
}

OX_TEST_MAIN(tiny_1x1x1, vector_times_matrix, matrix_times_vector, odd_sizes, block_edges,
             crosses_blocks_300x700x513, batched_repeat, strided_views, transposed_dst,
             half_precision_inputs, half_vector_range, threads_same_bits, row_tasks_cover_every_row,
             kernels_agree)
