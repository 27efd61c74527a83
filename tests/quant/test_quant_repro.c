/* Reproducible mode's native quantized product (src/ops/quant_repro.c):
 * for every weight type, its portable C and its AVX2 code give the bits of
 * a plain loop written here from the block layouts (ops/quant.h) and the
 * portable kernel's expression (kernels/quant.oxc qmatvec with one lane a
 * row): per output, per unit of 32 weights in order,
 *   acc += dx * (s * (float)(S0 + S1) + sx * (SX0 + SX1))   (Q6_K: the halves
 *   acc += dx * (s * S0 + sx * SX0 + s1 * S1 + sx1 * SX1))   apart).
 * Shapes cross the code's chunks (64 units) and tiles (8 rows, 32
 * activation rows). This file is built with -ffp-contract=off. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openxpu/openxpu.h>

#include "core/core.h"
#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "ops/cpu_ops.h"
#include "ox_test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int block_bytes(ox_dtype t)
{
    switch (t) {
    case OX_DTYPE_Q4_0: return 18;
    case OX_DTYPE_Q4_1: return 20;
    case OX_DTYPE_Q5_0: return 22;
    case OX_DTYPE_Q5_1: return 24;
    case OX_DTYPE_Q8_0: return 34;
    case OX_DTYPE_Q4_K: return 144;
    case OX_DTYPE_Q5_K: return 176;
    default: return 210;
    }
}

static int block_len(ox_dtype t)
{
    return t == OX_DTYPE_Q4_K || t == OX_DTYPE_Q5_K || t == OX_DTYPE_Q6_K ? 256 : 32;
}

static float half(const uint8_t *p)
{
    return ox_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* A finite half of either sign, 2^-11 .. 2^-1. */
static void put_half(uint8_t *p)
{
    uint16_t h = (uint16_t)(0x1000 + next() % 0x2800) | (uint16_t)((next() & 1) << 15);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* Element e of a block: its code as the unit's dot product takes it (0..63,
 * Q8_0 signed), from the layouts of ops/quant.h. */
static int code(ox_dtype t, const uint8_t *b, int e)
{
    switch (t) {
    case OX_DTYPE_Q4_0:
    case OX_DTYPE_Q4_1: {
        const uint8_t *qs = b + (t == OX_DTYPE_Q4_0 ? 2 : 4);
        return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
    }
    case OX_DTYPE_Q5_0:
    case OX_DTYPE_Q5_1: {
        const uint8_t *qh = b + (t == OX_DTYPE_Q5_0 ? 2 : 4), *qs = qh + 4;
        int low = e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
        return low | ((qh[e / 8] >> (e % 8)) & 1) << 4;
    }
    case OX_DTYPE_Q8_0: return (int8_t)b[2 + e];
    case OX_DTYPE_Q4_K:
    case OX_DTYPE_Q5_K: {
        int g = e / 64, h = (e / 32) % 2, l = e % 32;
        const uint8_t *qs = b + (t == OX_DTYPE_Q4_K ? 16 : 48);
        int q = (qs[32 * g + l] >> (4 * h)) & 15;
        if (t == OX_DTYPE_Q5_K) q |= ((b[16 + l] >> (2 * g + h)) & 1) << 4;
        return q;
    }
    default: { /* Q6_K: e = 128 p + 32 t + l */
        int p = e / 128, tt = (e / 32) % 4, l = e % 32;
        int low = (b[64 * p + 32 * (tt & 1) + l] >> (tt < 2 ? 0 : 4)) & 15;
        return low | ((b[128 + 32 * p + l] >> (2 * tt)) & 3) << 4;
    }
    }
}

/* The factors of the unit at element e (s, sx; s1, sx1 for its second 16). */
static void factors(ox_dtype t, const uint8_t *b, int e, float f[4])
{
    int s = e / 32;
    switch (t) {
    case OX_DTYPE_Q4_0: f[0] = f[2] = half(b), f[1] = f[3] = -8.0f * half(b); return;
    case OX_DTYPE_Q5_0: f[0] = f[2] = half(b), f[1] = f[3] = -16.0f * half(b); return;
    case OX_DTYPE_Q4_1:
    case OX_DTYPE_Q5_1: f[0] = f[2] = half(b), f[1] = f[3] = half(b + 2); return;
    case OX_DTYPE_Q8_0: f[0] = f[2] = half(b), f[1] = f[3] = 0.0f; return;
    case OX_DTYPE_Q4_K:
    case OX_DTYPE_Q5_K: {
        const uint8_t *sc = b + 4;
        int scale = s < 4 ? sc[s] & 63 : (sc[s + 4] & 15) | (sc[s - 4] >> 6) << 4;
        int min = s < 4 ? sc[s + 4] & 63 : (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
        f[0] = f[2] = half(b) * (float)scale;
        f[1] = f[3] = -half(b + 2) * (float)min;
        return;
    }
    default: {
        float d = half(b + 208);
        float a = (float)(int8_t)b[192 + e / 16], c = (float)(int8_t)b[192 + e / 16 + 1];
        f[0] = d * a, f[1] = -32.0f * d * a, f[2] = d * c, f[3] = -32.0f * d * c;
        return;
    }
    }
}

static void check_type(ox_dtype t, int64_t N, int64_t K, int64_t M, ox__pool *pool)
{
    int bb = block_bytes(t), bl = block_len(t), qb = bl == 256 ? 256 : 32;
    size_t rb = (size_t)(K / bl * bb);
    uint8_t *w = malloc(rb * (size_t)N);
    int8_t *xq = malloc((size_t)(M * K));
    float *xd = malloc(sizeof(float) * (size_t)(M * K / qb)), *want = malloc(sizeof(float) * (size_t)(M * N));
    int32_t *xs = malloc(sizeof(int32_t) * (size_t)(M * K / 16));
    float *got = malloc(sizeof(float) * (size_t)(M * N));
    ASSERT(w && xq && xd && xs && want && got);
    for (size_t i = 0; i < rb * (size_t)N; i++) w[i] = (uint8_t)next();
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k += bl) {
            uint8_t *b = w + (size_t)n * rb + (size_t)(k / bl * bb);
            put_half(t == OX_DTYPE_Q6_K ? b + 208 : b);
            if (t == OX_DTYPE_Q4_1 || t == OX_DTYPE_Q5_1 || t == OX_DTYPE_Q4_K || t == OX_DTYPE_Q5_K)
                put_half(b + 2);
        }
    for (int64_t i = 0; i < M * K; i++) xq[i] = (int8_t)((int)(next() % 255) - 127);
    for (int64_t i = 0; i < M * K / qb; i++) xd[i] = 1e-3f + (float)(next() % 1000) * 1e-4f;
    for (int64_t i = 0; i < M * K / 16; i++) {
        int32_t sum = 0;
        for (int j = 0; j < 16; j++) sum += xq[16 * i + j];
        xs[i] = sum;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int64_t u = 0; u < K / 32; u++) {
                const uint8_t *b = w + (size_t)n * rb + (size_t)(u * 32 / bl * bb);
                int e0 = (int)(u * 32 % bl);
                int32_t s0 = 0, s1 = 0;
                for (int j = 0; j < 16; j++) s0 += code(t, b, e0 + j) * xq[m * K + u * 32 + j];
                for (int j = 16; j < 32; j++) s1 += code(t, b, e0 + j) * xq[m * K + u * 32 + j];
                float f[4];
                factors(t, b, e0, f);
                int64_t at = m * K + u * 32;
                float sx0 = (float)xs[at / 16], sx1 = (float)xs[at / 16 + 1], dx = xd[at / qb];
                if (t == OX_DTYPE_Q6_K)
                    acc += dx * (f[0] * (float)s0 + f[1] * sx0 + f[2] * (float)s1 + f[3] * sx1);
                else
                    acc += dx * (f[0] * (float)(s0 + s1) + f[1] * (sx0 + sx1));
            }
            want[m * N + n] = acc;
        }
    const uint64_t simd[] = {0, OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_F16C)};
    for (int v = 0; v < 2; v++) {
        if (v == 1 && (ox__cpu_detect()->features & simd[1]) != simd[1]) {
            printf("  %s: this CPU has no AVX2 and F16C; their code was not run\n",
                   ox_dtype_str(t));
            continue;
        }
        ox__cpu_exec x = {.pool = pool, .features = simd[v]};
        memset(got, 0xff, sizeof(float) * (size_t)(M * N));
        ox__cpu_qmatvec_repro(&x, t, w, rb, xq, xd, xs, got, N, N, K, M, qb);
        for (int64_t i = 0; i < M * N; i++)
            ASSERT_MSG(memcmp(&got[i], &want[i], sizeof(float)) == 0,
                       "%s %s N %lld K %lld M %lld: output %lld is %.9g, the loop's %.9g",
                       ox_dtype_str(t), v ? "avx2" : "portable", (long long)N, (long long)K,
                       (long long)M, (long long)i, got[i], want[i]);
    }
    free(w);
    free(xq);
    free(xd);
    free(xs);
    free(want);
    free(got);
}

OX_TEST(every_type_gives_the_kernels_bits)
{
    static const ox_dtype types[] = {OX_DTYPE_Q4_0, OX_DTYPE_Q4_1, OX_DTYPE_Q5_0, OX_DTYPE_Q5_1,
                                     OX_DTYPE_Q8_0, OX_DTYPE_Q4_K, OX_DTYPE_Q5_K, OX_DTYPE_Q6_K};
    ox__pool *pool = NULL;
    ASSERT_EQ(ox__pool_create(2, &pool), OX_OK);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        ASSERT(ox__cpu_qmatvec_repro_supported(types[i]));
        check_type(types[i], 19, 512, 1, pool);    /* a decode step, a partial row tile */
        check_type(types[i], 9, 2304, 37, pool);   /* two chunks, two activation tiles */
    }
    ox__pool_free(pool);
}

/* Types without a native product (reproducible mode then runs the kernel). */
OX_TEST(other_types_are_not_claimed)
{
    ASSERT(!ox__cpu_qmatvec_repro_supported(OX_DTYPE_F32));
    ASSERT(!ox__cpu_qmatvec_repro_supported(OX_DTYPE_F16));
    ASSERT(!ox__cpu_qmatvec_repro_supported(OX_DTYPE_I32));
}

OX_TEST_MAIN(every_type_gives_the_kernels_bits, other_types_are_not_claimed)
