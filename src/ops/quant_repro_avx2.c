/* Reproducible mode's quantized product (quant_repro.c) with AVX2 integer
 * sums and F16C conversions: per unit of 32 raw weights q (0..63, or Q8_0's
 * signed bytes) and 32 int8 activations x, S0 = the sum of the first 16
 * products and S1 of the second 16, exact as any other order. Built with
 * -ffp-contract=off (src/CMakeLists.txt), as quant_repro.c. */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "openxpu/tensor.h"

#include "core/threadpool.h"

void ox__repro_task_avx2(void *arg, size_t task, int thread);

/* Eight 32-bit partial sums of one unit: |q| x sign(x, q) byte pairs (at
 * most 128 x 127 x 2, no saturation), then pairs of those. */
static inline __m256i unit_parts_v(__m256i vq, const int8_t *x)
{
    __m256i vx = _mm256_loadu_si256((const __m256i *)(const void *)x);
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(vq), _mm256_sign_epi8(vx, vq));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Unit `sub` of block b as its 32 raw values (kernels/common.h q_raw_lo
 * and q_raw_hi): bytes 0-15 the first half, 16-31 the second. */
static inline __attribute__((always_inline)) __m256i unit_raw(ox_dtype t, const uint8_t *b,
                                                             int sub)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    switch (t) {
    case OX_DTYPE_Q4_0:
    case OX_DTYPE_Q4_1:
    case OX_DTYPE_Q5_0:
    case OX_DTYPE_Q5_1: {
        int at = t == OX_DTYPE_Q4_0 ? 2 : t == OX_DTYPE_Q4_1 ? 4 : t == OX_DTYPE_Q5_0 ? 6 : 8;
        __m128i qs = _mm_loadu_si128((const __m128i *)(const void *)(b + at));
        __m256i v = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), low4);
        if (t == OX_DTYPE_Q5_0 || t == OX_DTYPE_Q5_1) {
            uint32_t h;
            memcpy(&h, b + (t == OX_DTYPE_Q5_0 ? 2 : 4), 4);
            /* byte p gets bit p of h, as 16 */
            __m256i hb = _mm256_shuffle_epi8(
                _mm256_set1_epi32((int)h),
                _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101,
                                  0x0000000000000000));
            __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
            __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit);
            v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
        }
        return v;
    }
    case OX_DTYPE_Q8_0:
        return _mm256_loadu_si256((const __m256i *)(const void *)(b + 2));
    case OX_DTYPE_Q4_K:
    case OX_DTYPE_Q5_K: {
        const uint8_t *qs = b + (t == OX_DTYPE_Q5_K ? 48 : 16) + 32 * (sub / 2);
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)qs);
        v = _mm256_and_si256(_mm256_srli_epi16(v, 4 * (sub & 1)), low4);
        if (t == OX_DTYPE_Q5_K) {
            __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
            __m256i one = _mm256_and_si256(_mm256_srli_epi16(qh, sub), _mm256_set1_epi8(1));
            v = _mm256_or_si256(v, _mm256_slli_epi16(one, 4));
        }
        return v;
    }
    default: { /* Q6_K */
        int half_ = sub / 4, quarter = sub % 4;
        __m256i ql = _mm256_loadu_si256(
            (const __m256i *)(const void *)(b + 64 * half_ + 32 * (quarter & 1)));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 128 + 32 * half_));
        __m256i lo = _mm256_and_si256(_mm256_srli_epi16(ql, 4 * (quarter >> 1)), low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * quarter), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    }
}

/* The sums of units [u0, u0 + units) of a row, decoded in registers. */
static inline __attribute__((always_inline)) void sums_as(ox_dtype t, const uint8_t *row,
                                                         int64_t u0, int units, int bytes,
                                                         int per_block, const int8_t *x,
                                                         int32_t *s0, int32_t *s1)
{
    const int shift = per_block == 8 ? 3 : 0;
#define RAW(u) \
    unit_raw(t, row + ((u0 + (u)) >> shift) * bytes, (int)((u0 + (u)) & (per_block - 1)))
    int u = 0;
    for (; u + 4 <= units; u += 4) {
        __m256i a = unit_parts_v(RAW(u), x + 32 * u);
        __m256i b = unit_parts_v(RAW(u + 1), x + 32 * u + 32);
        __m256i c = unit_parts_v(RAW(u + 2), x + 32 * u + 64);
        __m256i d = unit_parts_v(RAW(u + 3), x + 32 * u + 96);
        __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
        _mm_storeu_si128((__m128i *)(void *)(s0 + u), _mm256_castsi256_si128(s));
        _mm_storeu_si128((__m128i *)(void *)(s1 + u), _mm256_extracti128_si256(s, 1));
    }
    for (; u < units; u++) {
        __m256i a = unit_parts_v(RAW(u), x + 32 * u);
        __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, a), a);
        s0[u] = _mm_cvtsi128_si32(_mm256_castsi256_si128(s));
        s1[u] = _mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1));
    }
#undef RAW
}

#define RAW4(u) \
    unit_raw(t, row + ((u0 + (u)) >> shift) * bytes, (int)((u0 + (u)) & (per_block - 1)))
/* The same for four activation rows (x, x + ldx, ...) at once: each unit
 * decoded once. */
static inline __attribute__((always_inline)) void sums4_as(ox_dtype t, const uint8_t *row,
                                                          int64_t u0, int units, int bytes,
                                                          int per_block, const int8_t *x,
                                                          int64_t ldx, int32_t (*s0)[64],
                                                          int32_t (*s1)[64])
{
    const int shift = per_block == 8 ? 3 : 0;
    int u = 0;
    for (; u + 4 <= units; u += 4) {
        __m256i w0 = RAW4(u), w1 = RAW4(u + 1), w2 = RAW4(u + 2), w3 = RAW4(u + 3);
        for (int i = 0; i < 4; i++) {
            const int8_t *xi = x + i * ldx + 32 * u;
            __m256i a = unit_parts_v(w0, xi), b = unit_parts_v(w1, xi + 32);
            __m256i c = unit_parts_v(w2, xi + 64), d = unit_parts_v(w3, xi + 96);
            __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
            _mm_storeu_si128((__m128i *)(void *)(s0[i] + u), _mm256_castsi256_si128(s));
            _mm_storeu_si128((__m128i *)(void *)(s1[i] + u), _mm256_extracti128_si256(s, 1));
        }
    }
    for (; u < units; u++) {
        __m256i w = RAW4(u);
        for (int i = 0; i < 4; i++) {
            __m256i a = unit_parts_v(w, x + i * ldx + 32 * u);
            __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, a), a);
            s0[i][u] = _mm_cvtsi128_si32(_mm256_castsi256_si128(s));
            s1[i][u] = _mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1));
        }
    }
}

static void sums4_from_row(ox_dtype t, const uint8_t *row, int64_t u0, int units, int bytes,
                           int per_block, const int8_t *x, int64_t ldx, int32_t (*s0)[64],
                           int32_t (*s1)[64])
{
#define SUMS4_AS(tt) sums4_as(tt, row, u0, units, bytes, per_block, x, ldx, s0, s1)
    switch (t) { /* one loop per type, the decode inlined */
    case OX_DTYPE_Q4_0: SUMS4_AS(OX_DTYPE_Q4_0); break;
    case OX_DTYPE_Q4_1: SUMS4_AS(OX_DTYPE_Q4_1); break;
    case OX_DTYPE_Q5_0: SUMS4_AS(OX_DTYPE_Q5_0); break;
    case OX_DTYPE_Q5_1: SUMS4_AS(OX_DTYPE_Q5_1); break;
    case OX_DTYPE_Q8_0: SUMS4_AS(OX_DTYPE_Q8_0); break;
    case OX_DTYPE_Q4_K: SUMS4_AS(OX_DTYPE_Q4_K); break;
    case OX_DTYPE_Q5_K: SUMS4_AS(OX_DTYPE_Q5_K); break;
    default: SUMS4_AS(OX_DTYPE_Q6_K); break;
    }
#undef SUMS4_AS
}

static void sums_from_row(ox_dtype t, const uint8_t *row, int64_t u0, int units, int bytes,
                          int per_block, const int8_t *x, int32_t *s0, int32_t *s1)
{
    switch (t) { /* one loop per type, the decode inlined */
    case OX_DTYPE_Q4_0: sums_as(OX_DTYPE_Q4_0, row, u0, units, bytes, per_block, x, s0, s1); break;
    case OX_DTYPE_Q4_1: sums_as(OX_DTYPE_Q4_1, row, u0, units, bytes, per_block, x, s0, s1); break;
    case OX_DTYPE_Q5_0: sums_as(OX_DTYPE_Q5_0, row, u0, units, bytes, per_block, x, s0, s1); break;
    case OX_DTYPE_Q5_1: sums_as(OX_DTYPE_Q5_1, row, u0, units, bytes, per_block, x, s0, s1); break;
    case OX_DTYPE_Q8_0: sums_as(OX_DTYPE_Q8_0, row, u0, units, bytes, per_block, x, s0, s1); break;
    case OX_DTYPE_Q4_K: sums_as(OX_DTYPE_Q4_K, row, u0, units, bytes, per_block, x, s0, s1); break;
    case OX_DTYPE_Q5_K: sums_as(OX_DTYPE_Q5_K, row, u0, units, bytes, per_block, x, s0, s1); break;
    default: sums_as(OX_DTYPE_Q6_K, row, u0, units, bytes, per_block, x, s0, s1); break;
    }
}

/* The terms of units [0, nu) eight at a time, the scalar expressions'
 * operations lane by lane (the same bits): xd the activation row's scales
 * from the first unit's, xs its sums of 16. Returns how many were done (a
 * multiple of 8; the caller does the rest). With 256-value scales
 * (qb_shift 8) a chunk starts at a multiple of 8 units, so 8 units share
 * one scale. */
static int terms8(bool q6, const float *xd, int qb_shift, const int32_t *xs, int nu,
                  const float (*f)[64], const int32_t *s0, const int32_t *s1, float *term)
{
    int u = 0;
    for (; u + 8 <= nu; u += 8) {
        __m256 dx = qb_shift == 8 ? _mm256_set1_ps(xd[u >> 3]) : _mm256_loadu_ps(xd + u);
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 2 * u));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 2 * u + 8));
        /* even and odd sums of the 8 units, in unit order */
        const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        __m256i pa = _mm256_permutevar8x32_epi32(a, even), pb = _mm256_permutevar8x32_epi32(b, even);
        __m256i x0 = _mm256_permute2x128_si256(pa, pb, 0x20), x1 = _mm256_permute2x128_si256(pa, pb, 0x31);
        __m256 sx0 = _mm256_cvtepi32_ps(x0), sx1 = _mm256_cvtepi32_ps(x1);
        __m256i i0 = _mm256_loadu_si256((const __m256i *)(const void *)(s0 + u));
        __m256i i1 = _mm256_loadu_si256((const __m256i *)(const void *)(s1 + u));
        __m256 t;
        if (q6) {
            t = _mm256_mul_ps(_mm256_loadu_ps(f[0] + u), _mm256_cvtepi32_ps(i0));
            t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_loadu_ps(f[1] + u), sx0));
            t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_loadu_ps(f[2] + u), _mm256_cvtepi32_ps(i1)));
            t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_loadu_ps(f[3] + u), sx1));
        } else {
            t = _mm256_mul_ps(_mm256_loadu_ps(f[0] + u), _mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1)));
            t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_loadu_ps(f[1] + u), _mm256_add_ps(sx0, sx1)));
        }
        _mm256_storeu_ps(term + u, _mm256_mul_ps(dx, t));
    }
    return u;
}

#define REPRO_TERMS(q6, xd, qb_shift, xs, nu, f, s0, s1, term) \
    terms8(q6, xd, qb_shift, xs, nu, f, s0, s1, term)
#define REPRO_TASK ox__repro_task_avx2
#define REPRO_HALF(h) _cvtsh_ss(h)
#define REPRO_SUMS_FROM_ROW(t, row, u0, units, bytes, per_block, x, s0, s1) \
    sums_from_row(t, row, u0, units, bytes, per_block, x, s0, s1)
#define REPRO_SUMS4_FROM_ROW(t, row, u0, units, bytes, per_block, x, ldx, s0, s1) \
    sums4_from_row(t, row, u0, units, bytes, per_block, x, ldx, s0, s1)
#include "ops/quant_repro_body.h"
