/* AVX2 + FMA inner loops of the CPU attention (attention.c chooses them
 * when the CPU has both, and F16C): eight keys' scores at a time, each a
 * dot product over eight lanes reduced together, the softmax's
 * exponentials eight at a time, and the weighted sum of value rows; keys
 * and values as F32 rows, or read straight from an F16 cache (converted in
 * registers, exactly: the same results as converting first). */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

#include "ops/avx2_util.h"
#include "ops/cpu_tile.h"

/* Eight floats of a row, F32 or F16 (converted exactly), and one. */
static inline __m256 load8(const void *row, int64_t i, bool half)
{
    return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)))
                : _mm256_loadu_ps((const float *)row + i);
}

static inline float load1(const void *row, int64_t i, bool half)
{
    return half ? _cvtsh_ss(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

static inline __attribute__((always_inline)) void scores8(const float *q, const void *const k[8],
                                                          int64_t d, float out[8], bool half)
{
    __m256 s[8];
    for (int j = 0; j < 8; j++) s[j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        for (int j = 0; j < 8; j++) s[j] = _mm256_fmadd_ps(qv, load8(k[j], i, half), s[j]);
    }
    /* lane j = the sum of s[j]'s lanes */
    __m256 h01 = _mm256_hadd_ps(s[0], s[1]), h23 = _mm256_hadd_ps(s[2], s[3]);
    __m256 h45 = _mm256_hadd_ps(s[4], s[5]), h67 = _mm256_hadd_ps(s[6], s[7]);
    __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
    __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
    _mm256_storeu_ps(out, sum);
    for (; i < d; i++)
        for (int j = 0; j < 8; j++) out[j] += q[i] * load1(k[j], i, half);
}

void ox__att_scores8_avx2(const float *q, const void *const k[8], int64_t d, float out[8])
{
    scores8(q, k, d, out, false);
}

void ox__att_scores8_f16_avx2(const float *q, const void *const k[8], int64_t d, float out[8])
{
    scores8(q, k, d, out, true);
}

/* 64 columns at a time in eight registers over all the block's keys (acc
 * read and written once a block, not once a key), then 8, then one; each
 * element the same fused steps in key order as one key at a time. */
static inline __attribute__((always_inline)) void pv(float *acc, const float *p,
                                                     const void *const v[], int64_t nk, int64_t n,
                                                     bool half)
{
    int64_t c = 0;
    for (; c + 64 <= n; c += 64) {
        __m256 a[8];
        for (int r = 0; r < 8; r++) a[r] = _mm256_loadu_ps(acc + c + 8 * r);
        for (int64_t j = 0; j < nk; j++) {
            if (p[j] == 0.0f) continue;
            __m256 pb = _mm256_set1_ps(p[j]);
            for (int r = 0; r < 8; r++)
                a[r] = _mm256_fmadd_ps(pb, load8(v[j], c + 8 * r, half), a[r]);
        }
        for (int r = 0; r < 8; r++) _mm256_storeu_ps(acc + c + 8 * r, a[r]);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 a = _mm256_loadu_ps(acc + c);
        for (int64_t j = 0; j < nk; j++)
            if (p[j] != 0.0f) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load8(v[j], c, half), a);
        _mm256_storeu_ps(acc + c, a);
    }
    for (; c < n; c++)
        for (int64_t j = 0; j < nk; j++)
            if (p[j] != 0.0f) acc[c] += p[j] * load1(v[j], c, half);
}

void ox__att_pv_avx2(float *acc, const float *p, const void *const v[], int64_t nk, int64_t n)
{
    pv(acc, p, v, nk, n, false);
}

void ox__att_pv_f16_avx2(float *acc, const float *p, const void *const v[], int64_t nk, int64_t n)
{
    pv(acc, p, v, nk, n, true);
}

/* ox__exp_f32 (cpu_tile.h) on eight lanes, operation for operation (no
 * fused multiply-adds: this file is built with contraction off), so each
 * lane has the scalar function's bits. */
static inline __attribute__((always_inline)) __m256 exp8(__m256 x)
{
    const __m256i u = _mm256_castps_si256(x);
    const __m256i sign = _mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u));
    const __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    /* the cut-off: 89, or 150 for negative x */
    const __m256i neg = _mm256_srai_epi32(u, 31);
    const __m256i limit = _mm256_blendv_epi8(_mm256_set1_epi32(0x42b20000),
                                             _mm256_set1_epi32(0x43160000), neg);
    const __m256i inf = _mm256_set1_epi32(0x7f800000);
    const __m256i clamp = _mm256_andnot_si256(_mm256_cmpgt_epi32(mag, inf), /* NaN stays */
                                              _mm256_cmpgt_epi32(mag, limit));
    const __m256i m = _mm256_or_si256(_mm256_blendv_epi8(mag, limit, clamp), sign);
    const __m256 xc = _mm256_castsi256_ps(m);
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    __m256 t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), shift);
    __m256 fn = _mm256_sub_ps(t, shift);
    __m256i n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4b400000));
    __m256i n1 = _mm256_srai_epi32(_mm256_add_epi32(n, _mm256_srli_epi32(n, 31)), 1); /* n / 2 */
    __m256i n2 = _mm256_sub_epi32(n, n1);
    __m256 r = _mm256_add_ps(_mm256_sub_ps(xc, _mm256_mul_ps(fn, _mm256_set1_ps(0.693359375f))),
                             _mm256_mul_ps(fn, _mm256_set1_ps(2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

double ox__att_exp_avx2(float *s, int64_t n, float max)
{
    const __m256 m = _mm256_set1_ps(max);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
        _mm256_storeu_ps(s + j, e);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(lo, hi));
    double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; j < n; j++) {
        s[j] = ox__exp_f32(s[j] - max);
        sum += s[j];
    }
    return sum;
}

/* The exponential's other user: the FFN's gate, SiLU(g) * u in one pass
 * (elementwise.c's ox__cpu_glu), each lane the scalar loops' bits. */
void ox__silu_mul_avx2(float *d, const float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_xor_ps(x, sign))));
        _mm256_storeu_ps(d + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        float s = g[i] / (1.0f + ox__exp_f32(-g[i]));
        d[i] = s * u[i];
    }
}

/* ---- prompt blocks: register tiles over a block's keys ---------------------- */

void ox__att_kt_avx2(const void *const k[], int64_t nk, int64_t d, int half, float *kt)
{
    const int64_t L = OX_ATT_KEYS, padded = (nk + 15) / 16 * 16;
    for (int64_t t0 = 0; t0 < padded; t0 += 8) {
        int64_t i = 0;
        for (; i + 8 <= d; i += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++)
                r[t] = t0 + t < nk ? load8(k[t0 + t], i, half) : _mm256_setzero_ps();
            ox__transpose8_avx2(r);
            for (int c = 0; c < 8; c++) _mm256_storeu_ps(kt + (i + c) * L + t0, r[c]);
        }
        for (; i < d; i++)
            for (int64_t t = t0; t < t0 + 8; t++)
                kt[i * L + t] = t < nk ? load1(k[t], i, half) : 0.0f;
    }
}

/* A dot product is summed in runs of SCORE_RUN elements, each a chain of
 * fused multiply-adds from zero, the runs' sums added in order: a chain
 * over all of a wide head (Gemma's 256) rounds enough to change a greedy
 * token that llama.cpp and the eight-lane form agree on. */
#define SCORE_RUN 16

/* Keys [0, n) that at least one of entries [e0, e0 + m) sees, n <= nk. */
static int64_t keys_seen(const int64_t *seen, int64_t e0, int64_t m, int64_t nk)
{
    int64_t n = 0;
    for (int64_t e = e0; e < e0 + m; e++) n = seen[e] > n ? seen[e] : n;
    return n < nk ? n : nk;
}

void ox__att_scores_kt_avx2(const float *const q[], int64_t ne, const int64_t *seen,
                            const float *kt, int64_t d, int64_t nk, float *s, int64_t ls)
{
    const int64_t L = OX_ATT_KEYS;
    for (int64_t e0 = 0; e0 < ne; e0 += 4) {
        const int64_t m = ne - e0 < 4 ? ne - e0 : 4, n = keys_seen(seen, e0, m, nk);
        const float *qe[4];
        for (int e = 0; e < 4; e++) qe[e] = q[e0 + (e < m ? e : m - 1)]; /* spare lanes repeat */
        for (int64_t t = 0; t < n; t += 16)
            for (int64_t i0 = 0; i0 < d; i0 += SCORE_RUN) {
                const int64_t i1 = d - i0 < SCORE_RUN ? d : i0 + SCORE_RUN;
                __m256 a[4][2];
                for (int e = 0; e < 4; e++) a[e][0] = a[e][1] = _mm256_setzero_ps();
                for (int64_t i = i0; i < i1; i++) {
                    __m256 k0 = _mm256_loadu_ps(kt + i * L + t);
                    __m256 k1 = _mm256_loadu_ps(kt + i * L + t + 8);
                    for (int e = 0; e < 4; e++) {
                        __m256 qb = _mm256_broadcast_ss(qe[e] + i);
                        a[e][0] = _mm256_fmadd_ps(qb, k0, a[e][0]);
                        a[e][1] = _mm256_fmadd_ps(qb, k1, a[e][1]);
                    }
                }
                for (int e = 0; e < 4; e++) { /* constant indices: the tile stays in registers */
                    if (e >= m) break;
                    float *out = s + (e0 + e) * ls + t;
                    if (i0 > 0) {
                        a[e][0] = _mm256_add_ps(_mm256_loadu_ps(out), a[e][0]);
                        a[e][1] = _mm256_add_ps(_mm256_loadu_ps(out + 8), a[e][1]);
                    }
                    _mm256_storeu_ps(out, a[e][0]);
                    _mm256_storeu_ps(out + 8, a[e][1]);
                }
            }
    }
}

void ox__att_rows_avx2(const void *const rows[], int64_t nk, int64_t n, int half, float *dst,
                       int64_t ld)
{
    for (int64_t j = 0; j < nk; j++) {
        float *out = dst + j * ld;
        int64_t c = 0;
        if (!rows[j]) {
            for (; c + 8 <= n; c += 8) _mm256_storeu_ps(out + c, _mm256_setzero_ps());
            for (; c < n; c++) out[c] = 0.0f;
            continue;
        }
        for (; c + 8 <= n; c += 8) _mm256_storeu_ps(out + c, load8(rows[j], c, half));
        for (; c < n; c++) out[c] = load1(rows[j], c, half);
    }
}

/* Columns [c, c + 8 * W) of m entries (up to 4) over the block's keys. */
static inline __attribute__((always_inline)) void pv_tile(float *acc, int64_t la, const float *p,
                                                          int64_t lp, int64_t m, const float *v,
                                                          int64_t lv, int64_t nk, int64_t c, int W)
{
    __m256 a[4][2];
    /* spare lanes repeat entry 0 */
    const int64_t e_of[4] = {0, m > 1 ? 1 : 0, m > 2 ? 2 : 0, m > 3 ? 3 : 0};
    for (int e = 0; e < 4; e++)
        for (int w = 0; w < W; w++) a[e][w] = _mm256_loadu_ps(acc + e_of[e] * la + c + 8 * w);
    for (int64_t j = 0; j < nk; j++) {
        __m256 vv[2];
        for (int w = 0; w < W; w++) vv[w] = _mm256_loadu_ps(v + j * lv + c + 8 * w);
        for (int e = 0; e < 4; e++) {
            __m256 pb = _mm256_broadcast_ss(p + e_of[e] * lp + j);
            for (int w = 0; w < W; w++) a[e][w] = _mm256_fmadd_ps(pb, vv[w], a[e][w]);
        }
    }
    for (int e = 0; e < 4; e++) { /* constant indices: the tile stays in registers */
        if (e >= m) break;
        for (int w = 0; w < W; w++) _mm256_storeu_ps(acc + e * la + c + 8 * w, a[e][w]);
    }
}

void ox__att_pv_rows_avx2(float *acc, int64_t la, const float *p, int64_t lp, int64_t ne,
                          const int64_t *seen, const float *v, int64_t lv, int64_t nk_all, int64_t n)
{
    for (int64_t e0 = 0; e0 < ne; e0 += 4) {
        const int64_t m = ne - e0 < 4 ? ne - e0 : 4, nk = keys_seen(seen, e0, m, nk_all);
        float *ae = acc + e0 * la;
        const float *pe = p + e0 * lp;
        int64_t c = 0;
        for (; c + 16 <= n; c += 16) pv_tile(ae, la, pe, lp, m, v, lv, nk, c, 2);
        for (; c + 8 <= n; c += 8) pv_tile(ae, la, pe, lp, m, v, lv, nk, c, 1);
        for (; c < n; c++)
            for (int64_t e = 0; e < m; e++)
                for (int64_t j = 0; j < nk; j++) ae[e * la + c] += pe[e * lp + j] * v[j * lv + c];
    }
}
