/* Quantized dtypes (src/ops/quant*.c): bit-exact dequantization of GGUF
 * blocks built by hand here, quantize -> dequantize round trips within each
 * format's error, the CPU matmul with quantized weights against the
 * double-precision reference on the dequantized weights, and the public
 * API's refusals. OX_TEST_VERBOSE=1 prints every measured NMSE. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openxpu/openxpu.h>
#include <openxpu/ops.h>

#include "core/core.h"
#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "ops/cpu_ops.h"
#include "ops/ops_internal.h"
#include "ops/quant.h"
#include "ops/reference.h"
#include "ox_test.h"

static const ox_dtype quant_types[] = {OX_DTYPE_Q4_0, OX_DTYPE_Q4_1, OX_DTYPE_Q5_0,
                                       OX_DTYPE_Q5_1, OX_DTYPE_Q8_0, OX_DTYPE_Q4_K,
                                       OX_DTYPE_Q5_K, OX_DTYPE_Q6_K};
#define QUANT_TYPE_COUNT (sizeof quant_types / sizeof quant_types[0])

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int rand_int(int lo, int hi) /* inclusive */
{
    return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1));
}

/* Standard normal (Box-Muller). */
static float rand_normal(void)
{
    double u1 = ((double)(next_u64() >> 11) + 1) * 0x1p-53, u2 = (double)(next_u64() >> 11) * 0x1p-53;
    return (float)(sqrt(-2 * log(u1)) * cos(2 * 3.14159265358979323846 * u2));
}

static int verbose(void)
{
    return getenv("OX_TEST_VERBOSE") != NULL;
}

static double nmse_f(const float *x, const float *ref, int64_t n)
{
    double err = 0, sum = 0;
    for (int64_t i = 0; i < n; i++) {
        err += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        sum += (double)ref[i] * ref[i];
    }
    return sum > 0 ? err / sum : err;
}

/* ---- (1) hand-built blocks --------------------------------------------------------
 * Each test picks codes, scales and mins at random, packs them into the
 * bytes following the published layout (written out here independently of
 * src/ops/quant.c), and compares the library's dequantization with the
 * format's formula, evaluated in float in ggml's order, exactly. */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void set_bit(uint8_t *bytes, int bit, int value)
{
    if (value) bytes[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static void expect_exact(ox_dtype dtype, const uint8_t *block, const float *want, int n)
{
    float got[256];
    ASSERT_EQ(ox_row_to_f32(dtype, block, got, n), OX_OK);
    for (int e = 0; e < n; e++)
        ASSERT_MSG(memcmp(&got[e], &want[e], sizeof(float)) == 0, "%s element %d: %.9g, want %.9g",
                   ox_dtype_str(dtype), e, got[e], want[e]);
}

/* Q4_0, Q4_1, Q5_0, Q5_1: {d, [m], [qh u32], qs[16]}; element e < 16 in
 * the low nibble of qs[e], e >= 16 in the high nibble of qs[e - 16]; bit 4
 * of element e is bit e of qh. */
static void check_32_block(ox_dtype dtype, int bits, int has_min)
{
    for (int rep = 0; rep < 20; rep++) {
        uint8_t block[24] = {0};
        int q[32], off = 0;
        uint16_t dh = (uint16_t)rand_int(0x1000, 0x3bff) | (rep % 2 ? 0x8000 : 0), mh = 0;
        put_u16(block, dh);
        off = 2;
        if (has_min) {
            mh = (uint16_t)rand_int(0x1000, 0x3bff) | (rep % 3 ? 0x8000 : 0);
            put_u16(block + 2, mh);
            off = 4;
        }
        uint8_t *qh = block + off, *qs = block + off + (bits == 5 ? 4 : 0);
        for (int e = 0; e < 32; e++) {
            q[e] = rand_int(0, (1 << bits) - 1);
            qs[e % 16] |= (uint8_t)((q[e] & 0xF) << (e < 16 ? 0 : 4));
            if (bits == 5) set_bit(qh, e, q[e] >> 4);
        }
        float d = ox_f16_to_f32(dh), m = ox_f16_to_f32(mh), want[32];
        for (int e = 0; e < 32; e++)
            want[e] = has_min ? (float)q[e] * d + m : (float)(q[e] - (1 << (bits - 1))) * d;
        expect_exact(dtype, block, want, 32);
    }
}

OX_TEST(exact_q4_0_q4_1_q5_0_q5_1)
{
    check_32_block(OX_DTYPE_Q4_0, 4, 0);
    check_32_block(OX_DTYPE_Q4_1, 4, 1);
    check_32_block(OX_DTYPE_Q5_0, 5, 0);
    check_32_block(OX_DTYPE_Q5_1, 5, 1);
}

OX_TEST(exact_q8_0)
{
    for (int rep = 0; rep < 20; rep++) {
        uint8_t block[34];
        uint16_t dh = (uint16_t)rand_int(0x0400, 0x3bff);
        put_u16(block, dh);
        float want[32];
        for (int e = 0; e < 32; e++) {
            int8_t v = (int8_t)rand_int(-128, 127);
            memcpy(&block[2 + e], &v, 1);
            want[e] = (float)v * ox_f16_to_f32(dh);
        }
        expect_exact(OX_DTYPE_Q8_0, block, want, 32);
    }
}

/* Q4_K / Q5_K: {d, dmin, scales[12], [qh[32]], qs[128]}. The 6-bit scale
 * and min of sub-block s: s < 4 in the low 6 bits of scales[s] and
 * scales[4 + s]; s >= 4 in the low / high nibble of scales[8 + s - 4] with
 * the top 2 bits in bits 6-7 of scales[s - 4] / scales[s]. Element
 * 64 g + 32 h + l: nibble h of qs[32 g + l]; bit 4 is bit 2 g + h of qh[l].
 * Value: (d * sc) * q - (dmin * m). */
static void check_k_block(ox_dtype dtype, int bits)
{
    for (int rep = 0; rep < 20; rep++) {
        uint8_t block[176] = {0};
        int sc[8], mn[8], q[256];
        uint16_t dh = (uint16_t)rand_int(0x0400, 0x2fff), dminh = (uint16_t)rand_int(0x0400, 0x2fff);
        put_u16(block, dh);
        put_u16(block + 2, dminh);
        uint8_t *scales = block + 4, *qh = block + 16, *qs = block + (bits == 5 ? 48 : 16);
        for (int s = 0; s < 8; s++) {
            sc[s] = rand_int(0, 63);
            mn[s] = rand_int(0, 63);
            if (s < 4) {
                scales[s] |= (uint8_t)sc[s];
                scales[4 + s] |= (uint8_t)mn[s];
            } else {
                scales[8 + s - 4] = (uint8_t)((sc[s] & 0xF) | (mn[s] & 0xF) << 4);
                scales[s - 4] |= (uint8_t)((sc[s] >> 4) << 6);
                scales[s] |= (uint8_t)((mn[s] >> 4) << 6);
            }
        }
        for (int e = 0; e < 256; e++) {
            int g = e / 64, h = e % 64 / 32, l = e % 32;
            q[e] = rand_int(0, (1 << bits) - 1);
            qs[32 * g + l] |= (uint8_t)((q[e] & 0xF) << (4 * h));
            if (bits == 5) set_bit(&qh[l], 2 * g + h, q[e] >> 4);
        }
        float want[256], d = ox_f16_to_f32(dh), dmin = ox_f16_to_f32(dminh);
        for (int e = 0; e < 256; e++) {
            float ds = d * (float)sc[e / 32], dm = dmin * (float)mn[e / 32];
            want[e] = ds * (float)q[e] - dm;
        }
        expect_exact(dtype, block, want, 256);
    }
}

OX_TEST(exact_q4_k_q5_k)
{
    check_k_block(OX_DTYPE_Q4_K, 4);
    check_k_block(OX_DTYPE_Q5_K, 5);
}

/* Q6_K: {ql[128], qh[64], i8 scales[16], d}. Element 128 p + 32 t + l: low
 * 4 bits in ql[64 p + 32 (t % 2) + l] (low nibble for t < 2, high for
 * t >= 2), top 2 bits in bits 2t, 2t+1 of qh[32 p + l]; scale e / 16.
 * Value: (d * sc) * (q - 32). */
OX_TEST(exact_q6_k)
{
    for (int rep = 0; rep < 20; rep++) {
        uint8_t block[210] = {0};
        int q[256], sc[16];
        uint8_t *ql = block, *qh = block + 128, *scales = block + 192;
        uint16_t dh = (uint16_t)rand_int(0x0400, 0x2fff) | (rep % 2 ? 0x8000 : 0);
        put_u16(block + 208, dh);
        for (int s = 0; s < 16; s++) {
            int8_t v = (int8_t)rand_int(-128, 127);
            sc[s] = v;
            memcpy(&scales[s], &v, 1);
        }
        for (int e = 0; e < 256; e++) {
            int p = e / 128, t = e % 128 / 32, l = e % 32;
            q[e] = rand_int(0, 63);
            ql[64 * p + 32 * (t % 2) + l] |= (uint8_t)((q[e] & 0xF) << (t < 2 ? 0 : 4));
            qh[32 * p + l] |= (uint8_t)((q[e] >> 4) << (2 * t));
        }
        float want[256], d = ox_f16_to_f32(dh);
        for (int e = 0; e < 256; e++) want[e] = d * (float)sc[e / 16] * (float)(q[e] - 32);
        expect_exact(OX_DTYPE_Q6_K, block, want, 256);
    }
}

/* ---- (2) round trips -----------------------------------------------------------------
 * Standard normal data. A uniform quantizer with step s errs by s^2 / 12 on
 * average; with the step set by the block's extremes (max |x| of 32
 * normals is about 2.1, a range about 4.1; 16 normals: 1.8), plus the
 * rounding of the scales to f16 / 6 / 8 bits:
 *   type  step           predicted  measured  bound
 *   Q8_0  2.1/127        2.3e-5     2.9e-5    1e-4
 *   Q4_0  2.1/8          5.7e-3     7.4e-3    1e-2  (7 steps above zero, 8 below)
 *   Q4_1  4.1/15         6.2e-3     6.1e-3    1e-2
 *   Q4_K  as Q4_1, 6-bit sub-block scales, searched  5.2e-3  8e-3
 *   Q5_0  2.1/16         1.4e-3     1.9e-3    3e-3
 *   Q5_1  4.1/31         1.5e-3     1.4e-3    3e-3
 *   Q5_K  as Q5_1                   1.2e-3    3e-3
 *   Q6_K  1.8/32         2.6e-4     3.2e-4    5e-4  (16-element sub-blocks)
 * The data are fixed (seeded), so the margins only cover compilers. */
static double round_trip_bound(ox_dtype t)
{
    switch (t) {
    case OX_DTYPE_Q8_0: return 1e-4;
    case OX_DTYPE_Q4_0:
    case OX_DTYPE_Q4_1: return 1e-2;
    case OX_DTYPE_Q4_K: return 8e-3;
    case OX_DTYPE_Q6_K: return 5e-4;
    default: return 3e-3;
    }
}

OX_TEST(round_trips)
{
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint8_t *q = malloc(N * 2);
    ASSERT(x && y && q);
    for (int i = 0; i < N; i++) x[i] = rand_normal();
    for (int i = 0; i < 256; i++) x[i] = 0; /* an all-zero block of every size */
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        ox_dtype dt = quant_types[t];
        ASSERT_EQ(ox_row_from_f32(dt, x, q, N), OX_OK);
        ASSERT_EQ(ox_row_to_f32(dt, q, y, N), OX_OK);
        for (int i = 0; i < 256; i++) ASSERT_MSG(y[i] == 0, "%s: zero block gives %g", ox_dtype_str(dt), y[i]);
        double e = nmse_f(y, x, N);
        if (verbose()) printf("  %s round trip nmse %.3g (bound %.3g)\n", ox_dtype_str(dt), e, round_trip_bound(dt));
        ASSERT_MSG(e <= round_trip_bound(dt), "%s: nmse %.3g > %.3g", ox_dtype_str(dt), e,
                   round_trip_bound(dt));
    }
    /* scaled data (tiny and large magnitudes) keeps its relative error */
    for (int i = 0; i < N; i++) x[i] *= (i / 256) % 2 ? 1e-3f : 300.0f;
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        ox_dtype dt = quant_types[t];
        ASSERT_EQ(ox_row_from_f32(dt, x, q, N), OX_OK);
        ASSERT_EQ(ox_row_to_f32(dt, q, y, N), OX_OK);
        double e = nmse_f(y, x, N);
        ASSERT_MSG(e <= round_trip_bound(dt), "%s scaled: nmse %.3g", ox_dtype_str(dt), e);
    }
    free(x);
    free(y);
    free(q);
}

OX_TEST(row_api_refusals)
{
    float f[64] = {0};
    uint8_t b[256] = {0};
    ASSERT_EQ(ox_row_to_f32(OX_DTYPE_Q4_0, b, f, 48), OX_ERR_INVALID);  /* partial block */
    ASSERT_EQ(ox_row_from_f32(OX_DTYPE_Q6_K, f, b, 64), OX_ERR_INVALID); /* partial block */
    ASSERT_EQ(ox_row_to_f32(OX_DTYPE_I32, b, f, 4), OX_ERR_INVALID);
    ASSERT_EQ(ox_row_to_f32((ox_dtype)99, b, f, 4), OX_ERR_INVALID);
    ASSERT_EQ(ox_row_to_f32(OX_DTYPE_Q8_0, NULL, f, 32), OX_ERR_INVALID);
    ASSERT_EQ(ox_row_from_f32(OX_DTYPE_F16, f, b, 7), OX_OK);
    ASSERT_EQ(ox_row_to_f32(OX_DTYPE_F16, b, f, 7), OX_OK);
}

/* ---- (3) the quantized matmul ----------------------------------------------------------
 * Against the reference product with the dequantized weights, only the
 * activations' 8-bit rounding counts: per element an error of step^2 / 12
 * with step = max |a| / 127 over 32 normals, an NMSE about 2.5e-5 on dst
 * on average (measured 1.6e-5 .. 4.8e-5 over the larger cases). A case
 * with few outputs is a small sample of that (7 outputs measured up to
 * 1.8e-4), so the bound is 5e-4: an error in a block's scale, offset or
 * bit order gives 1e-2 or more. */
#define MATMUL_BOUND 5e-4

typedef struct qcase {
    ox_dtype type;
    int64_t M, K, N, B2; /* b batches; a has one that repeats */
    unsigned flags;      /* TRANS_B always; TRANS_A optional */
} qcase;

typedef struct qresult {
    float *out;      /* dst, M x N x B2 */
    double nmse;     /* against the reference */
} qresult;

/* run_qcase gives the kernels b's rows packed too (ops/pack.c), where the
 * kernels take them and b is one matrix */
static int pack_b;

static qresult run_qcase(const qcase *c, int threads, uint64_t features)
{
    int64_t M = c->M, K = c->K, N = c->N, B2 = c->B2 ? c->B2 : 1;
    int ta = (c->flags & OX_MATMUL_TRANS_A) != 0;
    size_t row_bytes = ox_dtype_row_size(c->type, K);
    uint64_t saved = rng;
    rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(M * 131 + K * 7 + N + (int64_t)c->type * 1000003);
    float *a = malloc((size_t)(M * K) * sizeof *a), *wrow = malloc((size_t)K * sizeof *wrow);
    char *b = malloc(row_bytes * (size_t)(N * B2));
    float *d = malloc((size_t)(M * N * B2) * sizeof *d);
    ox_ref_tensor ra = {.data = malloc((size_t)(M * K) * sizeof(double)),
                        .ne = {ta ? M : K, ta ? K : M, 1, 1}};
    ox_ref_tensor rb = {.data = malloc((size_t)(K * N * B2) * sizeof(double)), .ne = {K, N, B2, 1}};
    ox_ref_tensor rd = {.data = malloc((size_t)(M * N * B2) * sizeof(double)), .ne = {N, M, B2, 1}};
    ASSERT(a && wrow && b && d && ra.data && rb.data && rd.data);
    for (int64_t i = 0; i < M * K; i++) {
        a[i] = rand_normal();
        ra.data[i] = a[i];
    }
    for (int64_t r = 0; r < N * B2; r++) {
        for (int64_t k = 0; k < K; k++) wrow[k] = rand_normal();
        ASSERT_EQ(ox_row_from_f32(c->type, wrow, b + (size_t)r * row_bytes, K), OX_OK);
        ASSERT_EQ(ox_row_to_f32(c->type, b + (size_t)r * row_bytes, wrow, K), OX_OK);
        for (int64_t k = 0; k < K; k++) rb.data[r * K + k] = wrow[k];
    }
    ox__view va = {.data = (char *)a, .dtype = OX_DTYPE_F32, .ne = {ra.ne[0], ra.ne[1], 1, 1}};
    va.nb[0] = 4;
    va.nb[1] = 4 * ra.ne[0];
    va.nb[2] = va.nb[3] = va.nb[1] * ra.ne[1];
    ox__view vb = {.data = b, .dtype = c->type, .ne = {K, N, B2, 1}};
    vb.nb[0] = (int64_t)ox_dtype_size(c->type);
    vb.nb[1] = (int64_t)row_bytes;
    vb.nb[2] = vb.nb[3] = vb.nb[1] * N;
    vb.nb[3] *= B2;
    ox__view vd = {.data = (char *)d, .dtype = OX_DTYPE_F32, .ne = {N, M, B2, 1}};
    vd.nb[0] = 4;
    vd.nb[1] = 4 * N;
    vd.nb[2] = vd.nb[1] * M;
    vd.nb[3] = vd.nb[2] * B2;

    char *pk = NULL;
    if (pack_b && B2 == 1 && N >= 8 && ox__cpu_quant_packed(c->type, features)) {
        ASSERT((pk = malloc(row_bytes * (size_t)N)));
        ox__qpack_rows(c->type, b, row_bytes, N / 8 * 8, K, pk);
        vb.packed = pk;
    }
    ox__pool *pool = NULL;
    ASSERT_EQ(ox__pool_create(threads, &pool), OX_OK);
    ox__cpu_exec x = {.pool = pool, .features = features};
    ASSERT_EQ(ox__cpu_matmul(&x, &vd, &va, &vb, c->flags | OX_MATMUL_TRANS_B), OX_OK);
    ox__pool_free(pool);
    free(pk);

    ox_ref_matmul(&rd, &ra, &rb, c->flags | OX_MATMUL_TRANS_B);
    double *got = malloc((size_t)(M * N * B2) * sizeof *got);
    ASSERT(got);
    for (int64_t i = 0; i < M * N * B2; i++) got[i] = d[i];
    qresult res = {.out = d, .nmse = ox_ref_nmse(got, rd.data, M * N * B2)};
    if (verbose())
        printf("  %s M %lld K %lld N %lld B2 %lld flags %u threads %d features %#llx: nmse %.3g\n",
               ox_dtype_str(c->type), (long long)M, (long long)K, (long long)N, (long long)B2,
               c->flags, threads, (unsigned long long)features, res.nmse);
    free(got);
    free(a);
    free(wrow);
    free(b);
    free(ra.data);
    free(rb.data);
    free(rd.data);
    rng = saved;
    return res;
}

static void check_qcase(const qcase *c)
{
    uint64_t best = ox__cpu_detect()->features;
    qresult one = run_qcase(c, 1, best), two = run_qcase(c, 2, best);
    size_t bytes = (size_t)(c->M * c->N * (c->B2 ? c->B2 : 1)) * sizeof(float);
    ASSERT_MSG(one.nmse <= MATMUL_BOUND, "%s M %lld K %lld N %lld: nmse %.3g > %.3g",
               ox_dtype_str(c->type), (long long)c->M, (long long)c->K, (long long)c->N, one.nmse,
               MATMUL_BOUND);
    ASSERT_MSG(memcmp(one.out, two.out, bytes) == 0, "%s M %lld K %lld N %lld: 1 and 2 threads differ",
               ox_dtype_str(c->type), (long long)c->M, (long long)c->K, (long long)c->N);
    /* a CPU with AVX-512 VNNI runs those kernels: the AVX2 ones, which the
     * rest still run, must give the same bits */
    uint64_t vnni = OX_FEATURE_BIT(OX_FEATURE_AVX512VNNI);
    if (best & vnni) {
        qresult avx2 = run_qcase(c, 2, best & ~vnni);
        ASSERT_STR_EQ(ox__cpu_quant_kernels(best), "avx512vnni");
        ASSERT_STR_EQ(ox__cpu_quant_kernels(best & ~vnni), "avx2");
        ASSERT_MSG(memcmp(one.out, avx2.out, bytes) == 0, "%s M %lld K %lld N %lld: avx512vnni "
                   "and avx2 kernels differ", ox_dtype_str(c->type), (long long)c->M,
                   (long long)c->K, (long long)c->N);
        free(avx2.out);
    } else {
        static int said;
        if (!said++) printf("  this CPU has no AVX-512 VNNI: its kernels not run here\n");
    }
    /* packed rows: the same kernels' operations in the same order, so the
     * same bits, with each x86 kernel set */
    if (ox__cpu_quant_packed(c->type, best)) {
        pack_b = 1;
        qresult p1 = run_qcase(c, 1, best), p2 = run_qcase(c, 2, best & ~vnni);
        pack_b = 0;
        ASSERT_MSG(memcmp(one.out, p1.out, bytes) == 0 && memcmp(one.out, p2.out, bytes) == 0,
                   "%s M %lld K %lld N %lld: packed rows give other results", ox_dtype_str(c->type),
                   (long long)c->M, (long long)c->K, (long long)c->N);
        free(p1.out);
        free(p2.out);
    } else {
        static int said;
        if (!said++) printf("  no packed-row kernels on this CPU (x86 AVX2 only): not run here\n");
    }
    /* the scalar kernels: the same integer sums, float sums in another
     * order, so equal to float rounding (NMSE far below 1e-10) */
    qresult scalar = run_qcase(c, 2, 0);
    int64_t n = c->M * c->N * (c->B2 ? c->B2 : 1);
    double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    ASSERT(x && y);
    for (int64_t i = 0; i < n; i++) {
        x[i] = scalar.out[i];
        y[i] = one.out[i];
    }
    double e = ox_ref_nmse(x, y, n);
    ASSERT_MSG(e <= 1e-10, "%s: scalar and %s kernels differ, nmse %.3g", ox_dtype_str(c->type),
               ox__cpu_quant_kernels(best), e);
    free(x);
    free(y);
    free(one.out);
    free(two.out);
    free(scalar.out);
}

OX_TEST(matmul_matches_dequantized)
{
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        ox_dtype dt = quant_types[t];
        check_qcase(&(qcase){.type = dt, .M = 1, .K = 256, .N = 7});
        check_qcase(&(qcase){.type = dt, .M = 1, .K = 4096, .N = 129});
        check_qcase(&(qcase){.type = dt, .M = 3, .K = 1024, .N = 65});
        check_qcase(&(qcase){.type = dt, .M = 5, .K = 512, .N = 33, .flags = OX_MATMUL_TRANS_A});
        check_qcase(&(qcase){.type = dt, .M = 2, .K = 768, .N = 17, .B2 = 3});
    }
    /* the 32-element types with K of one block */
    check_qcase(&(qcase){.type = OX_DTYPE_Q4_0, .M = 4, .K = 32, .N = 5});
    check_qcase(&(qcase){.type = OX_DTYPE_Q4_1, .M = 1, .K = 32, .N = 9});
    check_qcase(&(qcase){.type = OX_DTYPE_Q8_0, .M = 2, .K = 32, .N = 3});
    check_qcase(&(qcase){.type = OX_DTYPE_Q8_0, .M = 1, .K = 96, .N = 3});
    /* prompts: more tokens than a tile (8) and passes of four (AVX2) */
    check_qcase(&(qcase){.type = OX_DTYPE_Q4_0, .M = 19, .K = 512, .N = 21});
    /* rows in whole packed groups, and a partial last group */
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        check_qcase(&(qcase){.type = quant_types[t], .M = 1, .K = 512, .N = 32});
        check_qcase(&(qcase){.type = quant_types[t], .M = 2, .K = 256, .N = 27});
        check_qcase(&(qcase){.type = quant_types[t], .M = 11, .K = 256, .N = 16});
    }
    check_qcase(&(qcase){.type = OX_DTYPE_Q5_0, .M = 8, .K = 256, .N = 16});
    check_qcase(&(qcase){.type = OX_DTYPE_Q4_K, .M = 13, .K = 512, .N = 9});
    check_qcase(&(qcase){.type = OX_DTYPE_Q6_K, .M = 22, .K = 256, .N = 11});
    /* packed rows of several chunks (ox__qpack_chunk: rows this long are
     * cut) and a partial last one, over more groups than a panel: the
     * accumulators carried from chunk to chunk give the one-pass bits */
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        ox_dtype dt = quant_types[t];
        int64_t m = dt == OX_DTYPE_Q4_1 || dt == OX_DTYPE_Q6_K ? 9 : 1; /* passes of 8 (4) and 1 */
        check_qcase(&(qcase){.type = dt, .M = m, .K = 6400, .N = 72});
    }
    check_qcase(&(qcase){.type = OX_DTYPE_Q4_0, .M = 9, .K = 6400, .N = 1100}); /* a task's panels */
    check_qcase(&(qcase){.type = OX_DTYPE_Q4_1, .M = 1, .K = 5472, .N = 300});
    check_qcase(&(qcase){.type = OX_DTYPE_Q8_0, .M = 2, .K = 3104, .N = 64});
}

/* The vectorised activation quantizer gives the scalar one's bytes: the
 * matmul's results depend on them, and the scalar one follows ggml's. */
OX_TEST(activation_quantizer_matches_scalar)
{
#ifdef OX_QUANT_HAVE_X86
    if (!(ox__cpu_detect()->features & OX_FEATURE_BIT(OX_FEATURE_AVX2))) {
        printf("  this CPU has no AVX2: the vectorised activation quantizer not run here\n");
        return;
    }
    enum { K = 1024 };
    static float x[K];
    static ox__block_q8a want[K / OX_QK], got[K / OX_QK];
    const ox_dtype weights[] = {OX_DTYPE_Q4_0, OX_DTYPE_Q4_K};
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < K; i++) x[i] = (float)rand_normal() * (trial % 3 == 0 ? 1e-3f : 3.0f);
        if (trial % 4 == 1) /* ties of magnitude: the first one's sign decides (Q8_K) */
            for (int i = 0; i < K; i += 37) x[i] = (i / 37) % 2 ? 9.5f : -9.5f;
        if (trial % 5 == 2) memset(x + 256, 0, 256 * sizeof x[0]); /* a zero super-block */
        if (trial % 7 == 3) x[300] = NAN, x[700] = INFINITY;   /* the scalar path's blocks */
        for (size_t w = 0; w < sizeof weights / sizeof weights[0]; w++) {
            ox__quantize_q8a(x, want, K, weights[w]);
            ox__quantize_q8a_avx2(x, got, K, weights[w]);
            for (int b = 0; b < K / OX_QK; b++)
                ASSERT_MSG(memcmp(&want[b], &got[b], sizeof want[b]) == 0,
                           "trial %d, %s activations, block %d: vectorised bytes differ",
                           trial, ox_dtype_str(weights[w]), b);
        }
    }
#else
    printf("  not an x86 build: the vectorised activation quantizer not built\n");
#endif
}

/* dst = a (M x K) . b (N rows of K, quantized)^T with the given kernels. */
static void raw_matmul(ox_dtype type, const float *a, int64_t M, int64_t K, const void *b,
                       int64_t N, float *dst, uint64_t features)
{
    ox__view va = {.data = (char *)a, .dtype = OX_DTYPE_F32, .ne = {K, M, 1, 1},
                   .nb = {4, 4 * K, 4 * K * M, 4 * K * M}};
    int64_t rb = (int64_t)ox_dtype_row_size(type, K);
    ox__view vb = {.data = (char *)b, .dtype = type, .ne = {K, N, 1, 1},
                   .nb = {(int64_t)ox_dtype_size(type), rb, rb * N, rb * N}};
    ox__view vd = {.data = (char *)dst, .dtype = OX_DTYPE_F32, .ne = {N, M, 1, 1},
                   .nb = {4, 4 * N, 4 * N * M, 4 * N * M}};
    ox__cpu_exec x = {.pool = NULL, .features = features};
    ASSERT_EQ(ox__cpu_matmul(&x, &vd, &va, &vb, OX_MATMUL_TRANS_B), OX_OK);
}

/* A product's element does not depend on the batch it is computed in: the
 * SIMD kernels work on tiles of weight rows by tokens, and a prompt's
 * logits must be those of its tokens one by one (as decoding gives them). */
OX_TEST(matmul_element_independent_of_batch)
{
    const int64_t M = 19, K = 512, N = 21;
    uint64_t best = ox__cpu_detect()->features;
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        ox_dtype dt = quant_types[t];
        size_t rb = ox_dtype_row_size(dt, K);
        float *a = malloc((size_t)(M * K) * sizeof *a), *w = malloc((size_t)K * sizeof *w);
        float *full = malloc((size_t)(M * N) * sizeof *full), *part = malloc((size_t)(M * N) * sizeof *part);
        char *b = malloc(rb * (size_t)N);
        ASSERT(a && w && full && part && b);
        for (int64_t i = 0; i < M * K; i++) a[i] = rand_normal();
        for (int64_t r = 0; r < N; r++) {
            for (int64_t k = 0; k < K; k++) w[k] = rand_normal();
            ASSERT_EQ(ox_row_from_f32(dt, w, b + (size_t)r * rb, K), OX_OK);
        }
        /* the best kernels, and AVX2's where the best are AVX-512 VNNI */
        uint64_t sets[2] = {best, best & ~OX_FEATURE_BIT(OX_FEATURE_AVX512VNNI)};
        for (int k = 0; k < (sets[1] != best ? 2 : 1); k++) {
            raw_matmul(dt, a, M, K, b, N, full, sets[k]);
            for (int64_t m = 0; m < M; m++) { /* one token against all rows */
                raw_matmul(dt, a + m * K, 1, K, b, N, part, sets[k]);
                ASSERT_MSG(memcmp(part, full + m * N, (size_t)N * sizeof *part) == 0,
                           "%s %s: token %lld alone differs from its batch", ox_dtype_str(dt),
                           ox__cpu_quant_kernels(sets[k]), (long long)m);
            }
            for (int64_t j = 0; j < N; j++) { /* all tokens against one row */
                raw_matmul(dt, a, M, K, b + (size_t)j * rb, 1, part, sets[k]);
                for (int64_t m = 0; m < M; m++)
                    ASSERT_MSG(memcmp(&part[m], &full[m * N + j], sizeof *part) == 0,
                               "%s %s: weight row %lld alone differs (token %lld)",
                               ox_dtype_str(dt), ox__cpu_quant_kernels(sets[k]), (long long)j,
                               (long long)m);
            }
        }
        free(a);
        free(w);
        free(full);
        free(part);
        free(b);
    }
}

/* ---- (4) the public API ------------------------------------------------------------------ */

typedef struct fixture {
    ox_context *ctx;
    ox_device *cpu;
    ox_queue *q;
} fixture;

static fixture setup(void)
{
    fixture f;
    int n;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS,
                            .log_level = OX_LOG_OFF};
    ASSERT_OK(NULL, ox_context_create(&o, &f.ctx));
    ASSERT_OK(f.ctx, ox_device_select(f.ctx, "cpu", &f.cpu, 1, &n));
    ASSERT_OK(f.ctx, ox_queue_create(f.cpu, &f.q));
    return f;
}

/* A quantized K x N weight from normal data; its dequantized values in deq. */
static ox_tensor quant_weight(fixture *f, ox_dtype dt, int64_t K, int64_t N, float *deq)
{
    ox_tensor w;
    size_t bytes = ox_dtype_row_size(dt, K) * (size_t)N;
    float *rows = malloc((size_t)(K * N) * sizeof *rows);
    uint8_t *q = malloc(bytes);
    ASSERT(rows && q);
    for (int64_t i = 0; i < K * N; i++) rows[i] = rand_normal();
    ASSERT_EQ(ox_row_from_f32(dt, rows, q, K * N), OX_OK);
    ASSERT_EQ(ox_row_to_f32(dt, q, deq, K * N), OX_OK);
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->cpu, dt, K, N, 1, 1, &w));
    ASSERT_OK(f->ctx, ox_tensor_write(&w, q, bytes));
    free(rows);
    free(q);
    return w;
}

/* NMSE of out (M x N) against a (M x K) times the dequantized weight deq
 * (N rows of K)ᵀ in double precision. */
static double product_nmse(const float *out, const float *a, const float *deq, int M, int N, int K)
{
    double *got = malloc((size_t)(M * N) * sizeof *got), *want = malloc((size_t)(M * N) * sizeof *want);
    ASSERT(got && want);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)a[m * K + k] * deq[n * K + k];
            want[m * N + n] = s;
            got[m * N + n] = out[m * N + n];
        }
    double e = ox_ref_nmse(got, want, M * N);
    free(got);
    free(want);
    return e;
}

/* get_rows of w (rows of K) for the n ids: each row must be the
 * dequantized row deq[id], bit for bit. */
static void check_get_rows(fixture *f, const ox_tensor *w, const float *deq, int K,
                           const int32_t *ids_host, int n)
{
    float *rows = malloc((size_t)(n * K) * sizeof *rows);
    ox_tensor ids, got_rows;
    ASSERT(rows);
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->cpu, OX_DTYPE_I32, n, 1, 1, 1, &ids));
    ASSERT_OK(f->ctx, ox_tensor_write(&ids, ids_host, (size_t)n * sizeof *ids_host));
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->cpu, OX_DTYPE_F32, K, n, 1, 1, &got_rows));
    ASSERT_OK(f->ctx, ox_get_rows(f->q, &got_rows, w, &ids));
    ASSERT_OK(f->ctx, ox_tensor_read(&got_rows, rows, (size_t)(n * K) * sizeof *rows));
    for (int r = 0; r < n; r++)
        ASSERT_MSG(memcmp(rows + r * K, deq + ids_host[r] * K, (size_t)K * sizeof(float)) == 0,
                   "get_rows: row %d (id %d) differs", r, ids_host[r]);
    free(rows);
}

/* out (M x N) = a_host (M x K) . wᵀ through the public API on the CPU. */
static void api_product(fixture *f, const ox_tensor *w, const float *a_host, int M, int K, int N,
                        float *out)
{
    ox_tensor a, dst;
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->cpu, OX_DTYPE_F32, K, M, 1, 1, &a));
    ASSERT_OK(f->ctx, ox_tensor_write(&a, a_host, (size_t)(M * K) * sizeof *a_host));
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->cpu, OX_DTYPE_F32, N, M, 1, 1, &dst));
    ASSERT_OK(f->ctx, ox_matmul(f->q, &dst, &a, w, OX_MATMUL_TRANS_B));
    ASSERT_OK(f->ctx, ox_tensor_read(&dst, out, (size_t)(M * N) * sizeof *out));
}

OX_TEST(api_matmul_get_rows_copy)
{
    fixture f = setup();
    enum { K = 512, N = 9, M = 2 };
    float deq[K * N], a_host[M * K], out[M * N];
    ox_tensor w = quant_weight(&f, OX_DTYPE_Q4_K, K, N, deq);
    for (int i = 0; i < M * K; i++) a_host[i] = rand_normal();
    api_product(&f, &w, a_host, M, K, N, out);
    ASSERT(product_nmse(out, a_host, deq, M, N, K) <= MATMUL_BOUND);

    /* get_rows: rows 8, 0, 3 dequantized, bit-exact */
    check_get_rows(&f, &w, deq, K, (const int32_t[]){8, 0, 3}, 3);

    /* copy: the whole weight into f16, and a transposed f32 view */
    ox_tensor h, t;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F16, K, N, 1, 1, &h));
    ASSERT_OK(f.ctx, ox_copy(f.q, &h, &w));
    uint16_t hv[K * N];
    ASSERT_OK(f.ctx, ox_tensor_read(&h, hv, sizeof hv));
    for (int i = 0; i < K * N; i++) ASSERT(hv[i] == ox_f32_to_f16(deq[i]));
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, N, K, 1, 1, &t));
    ox_tensor tv = ox_tensor_transpose(&t); /* ne {K, N} over {N, K} storage */
    ASSERT_OK(f.ctx, ox_copy(f.q, &tv, &w));
    static float tf[K * N];
    ASSERT_OK(f.ctx, ox_tensor_read(&t, tf, sizeof tf));
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) ASSERT(tf[k * N + n] == deq[n * K + k]);
    ox_context_free(f.ctx);
}

/* A batch of rows gives each row the bits it gets alone (through the
 * public API; matmul_element_independent_of_batch checks more shapes and
 * both x86 kernel sets), so a prompt evaluated at once and token by token
 * agree exactly, for every weight type. */
OX_TEST(batch_rows_equal_single_rows)
{
    fixture f = setup();
    enum { K = 512, N = 5, M = 7 };
    static const ox_dtype types[] = {OX_DTYPE_Q4_0, OX_DTYPE_Q4_1, OX_DTYPE_Q5_0, OX_DTYPE_Q5_1,
                                     OX_DTYPE_Q8_0, OX_DTYPE_Q4_K, OX_DTYPE_Q5_K, OX_DTYPE_Q6_K};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        float deq[K * N], a_host[M * K], batch[M * N], one[N];
        ox_tensor w = quant_weight(&f, types[t], K, N, deq), a, dst, a1, d1;
        for (int i = 0; i < M * K; i++) a_host[i] = rand_normal();
        ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, K, M, 1, 1, &a));
        ASSERT_OK(f.ctx, ox_tensor_write(&a, a_host, sizeof a_host));
        ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, N, M, 1, 1, &dst));
        ASSERT_OK(f.ctx, ox_matmul(f.q, &dst, &a, &w, OX_MATMUL_TRANS_B));
        ASSERT_OK(f.ctx, ox_tensor_read(&dst, batch, sizeof batch));
        ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, K, 1, 1, 1, &a1));
        ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, N, 1, 1, 1, &d1));
        for (int m = 0; m < M; m++) {
            ASSERT_OK(f.ctx, ox_tensor_write(&a1, a_host + m * K, K * sizeof(float)));
            ASSERT_OK(f.ctx, ox_matmul(f.q, &d1, &a1, &w, OX_MATMUL_TRANS_B));
            ASSERT_OK(f.ctx, ox_tensor_read(&d1, one, sizeof one));
            ASSERT_MSG(memcmp(one, batch + m * N, sizeof one) == 0,
                       "%s: row %d of a batch of %d differs from the row alone",
                       ox_dtype_str(types[t]), m, M);
        }
    }
    ox_context_free(f.ctx);
}

/* ox__qpack_rows moves every byte of eight rows somewhere, and
 * ox__qunpack_blocks brings each back: packing loses nothing, for every
 * packable type (a layout that dropped or doubled a word fails here). */
OX_TEST(packed_layout_round_trip)
{
    enum { ROWS = 24, K = 6400 }; /* three groups of whole chunks and a partial one */
    for (size_t t = 0; t < QUANT_TYPE_COUNT; t++) {
        ox_dtype dt = quant_types[t];
        ox__qpack_layout L = ox__qpack_layout_of(dt);
        ASSERT_MSG(L.halves > 0, "%s has no packed layout", ox_dtype_str(dt));
        size_t bytes = ox_dtype_size(dt), row = ox_dtype_row_size(dt, K);
        ASSERT_EQ(16 * (size_t)L.halves + 32 * (size_t)L.words, 8 * bytes);
        uint8_t *src = malloc(row * ROWS), *pk = malloc(row * ROWS), *back = malloc(row);
        ASSERT(src && pk && back);
        for (size_t i = 0; i < row * ROWS; i++) src[i] = (uint8_t)next_u64();
        memset(pk, 0xAB, row * ROWS);
        ox__qpack_rows(dt, src, row, ROWS, K, pk);
        /* chunk by chunk: the second chunk of group 0 after the first of all three */
        int64_t chunk = ox__qpack_chunk(dt, K);
        ASSERT(chunk < K / ox_dtype_block(dt) && (K / ox_dtype_block(dt)) % chunk != 0);
        ASSERT_EQ(ox__qpack_at(dt, K, ROWS / 8, 0, chunk), (size_t)(ROWS / 8 * chunk) * 8 * bytes);
        ASSERT_EQ(ox__qpack_at(dt, K, ROWS / 8, 1, 0), (size_t)chunk * 8 * bytes);
        for (int r = 0; r < ROWS; r++) {
            int64_t blocks = K / ox_dtype_block(dt);
            ox__qunpack_blocks(dt, pk, ROWS / 8, K, r, 0, blocks, back);
            ASSERT_MSG(memcmp(back, src + (size_t)r * row, row) == 0, "%s row %d",
                       ox_dtype_str(dt), r);
            /* a later block alone */
            ox__qunpack_blocks(dt, pk, ROWS / 8, K, r, blocks - 1, 1, back);
            ASSERT(memcmp(back, src + (size_t)r * row + (blocks - 1) * bytes, bytes) == 0);
        }
        free(src);
        free(pk);
        free(back);
    }
}

/* Through the API: a CPU matrix prepared as a model prepares its weights
 * (ox_tensor_prepare_weights: packed) gives the unpacked product's bits and
 * get_rows' rows; a write through the API retires the packed copy, and the
 * product follows the new data. Tensors it does not pack are left alone;
 * a bad one is refused. */
OX_TEST(api_packed_matrix)
{
    fixture f = setup();
    enum { K = 256, N = 20, M = 3 };
    uint64_t features = ox__cpu_detect()->features;
    float deq[K * N], a_host[M * K], plain[M * N], out[M * N];
    ox_tensor w = quant_weight(&f, OX_DTYPE_Q4_K, K, N, deq);
    for (int i = 0; i < M * K; i++) a_host[i] = rand_normal();
    api_product(&f, &w, a_host, M, K, N, plain);
    bool packed = true;
    ASSERT_EQ(ox_tensor_prepare_weights(NULL, &packed), OX_ERR_INVALID);
    ASSERT(!packed);
    ox_tensor a_f32;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, K, N, 1, 1, &a_f32));
    packed = true;
    ASSERT_OK(f.ctx, ox_tensor_prepare_weights(&a_f32, &packed));
    ASSERT(!packed && !ox__matrix_packed(&a_f32));
    ox_buffer_free(a_f32.buffer);
    ASSERT_OK(f.ctx, ox_tensor_prepare_weights(&w, &packed));
    ASSERT_OK(f.ctx, ox_tensor_prepare_weights(&w, NULL)); /* again: found, not remade */
    if (!ox__cpu_quant_packed(OX_DTYPE_Q4_K, features)) {
        ASSERT(!packed && !ox__matrix_packed(&w));
        printf("  no packed-row kernels on this CPU: the matrix is used as it is\n");
        ox_context_free(f.ctx);
        return;
    }
    ASSERT(packed && ox__matrix_packed(&w));
    api_product(&f, &w, a_host, M, K, N, out);
    ASSERT(memcmp(out, plain, sizeof out) == 0);
    /* rows from the packed copy (18 is in the unpacked partial group) */
    check_get_rows(&f, &w, deq, K, (const int32_t[]){5, 0, 15, 18}, 4);
    /* new weights through the API: the copy is retired, the product is the new one */
    float deq2[K * N];
    ox_tensor w2 = quant_weight(&f, OX_DTYPE_Q4_K, K, N, deq2);
    uint8_t *raw = malloc(ox_dtype_row_size(OX_DTYPE_Q4_K, K) * N);
    ASSERT(raw);
    ASSERT_OK(f.ctx, ox_tensor_read(&w2, raw, ox_dtype_row_size(OX_DTYPE_Q4_K, K) * N));
    ASSERT_OK(f.ctx, ox_tensor_write(&w, raw, ox_dtype_row_size(OX_DTYPE_Q4_K, K) * N));
    ASSERT(ox__matrix_packed(&w) == NULL);
    api_product(&f, &w, a_host, M, K, N, out);
    ASSERT(product_nmse(out, a_host, deq2, M, N, K) <= MATMUL_BOUND);
    free(raw);
    ox_context_free(f.ctx);
}

OX_TEST(api_refusals)
{
    fixture f = setup();
    static float deq[256 * 4];
    ox_tensor w = quant_weight(&f, OX_DTYPE_Q4_0, 256, 4, deq), a, a16, dst, dst_t;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, 256, 1, 1, 1, &a));
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F16, 256, 1, 1, 1, &a16));
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, 4, 1, 1, 1, &dst));
    /* without TRANS_B the weight would be K = 4 rows of N = 256 */
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, 256, 4, 1, 1, &dst_t));
    ASSERT_EQ(ox_matmul(f.q, &dst_t, &a, &w, 0), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "q4_0");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "OX_MATMUL_TRANS_B");
    ASSERT_EQ(ox_matmul(f.q, &dst, &a16, &w, OX_MATMUL_TRANS_B), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "a must be f32");
    /* a view of 48 elements a row: not whole blocks of 32 */
    ox_tensor part = w;
    part.ne[0] = 48;
    ASSERT_EQ(ox_matmul(f.q, &dst, &a, &part, OX_MATMUL_TRANS_B), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "whole blocks");
    /* K of a does not match */
    ox_tensor a_short;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, 224, 1, 1, 1, &a_short));
    ASSERT_EQ(ox_matmul(f.q, &dst, &a_short, &w, OX_MATMUL_TRANS_B), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "shapes do not fit");
    /* copy into a quantized tensor, and get_rows into one, are refused */
    ox_tensor wf, ids;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F32, 256, 4, 1, 1, &wf));
    ASSERT_EQ(ox_copy(f.q, &w, &wf), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "ox_row_from_f32");
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_I32, 1, 1, 1, 1, &ids));
    ox_tensor one_row = w;
    one_row.ne[1] = 1;
    ASSERT_EQ(ox_get_rows(f.q, &one_row, &w, &ids), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "f32");
    ox_context_free(f.ctx);
}

OX_TEST_MAIN(exact_q4_0_q4_1_q5_0_q5_1, exact_q8_0, exact_q4_k_q5_k, exact_q6_k, round_trips,
             row_api_refusals, matmul_matches_dequantized, activation_quantizer_matches_scalar,
             matmul_element_independent_of_batch,
             api_matmul_get_rows_copy,
             batch_rows_equal_single_rows, packed_layout_round_trip, api_packed_matrix,
             api_refusals)
