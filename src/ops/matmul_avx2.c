/* AVX2 + FMA matmul kernels (see matmul.h): a 6 x 16 register-blocked tile
 * (12 accumulators, two B vectors, one broadcast of A at a time), the
 * transposing packer (8 x 8 register transposes), and the matrix-vector dot
 * and axpy loops, which read F32, F16 (F16C) or BF16 weights and convert
 * them in registers. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "ops/avx2_util.h"
#include "ops/matmul.h"

#define MR OX_MM_AVX2_MR
#define NR OX_MM_AVX2_NR

#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* The 6 x 16 tile over a B panel of floats, or of halves (pack_t_h16)
 * converted as loaded (`half`, a constant): the same products, the same
 * order. */
static inline __attribute__((always_inline)) void tile_6x16(int64_t kc, const float *a,
                                                            const void *bv, bool half, float *c,
                                                            int64_t ldc, int accumulate)
{
    const float *bf = bv;
    const uint16_t *bh = bv;
#define DECLARE(i) __m256 c##i##_0 = _mm256_setzero_ps(), c##i##_1 = _mm256_setzero_ps();
    FOR_ROWS(DECLARE)
#undef DECLARE
#define STEP(i)                                                                             \
    {                                                                                       \
        __m256 ai = _mm256_broadcast_ss(a + (i));                                           \
        c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0);                                       \
        c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1);                                       \
    }
#define K_STEP(prefetch)                                                                    \
    {                                                                                       \
        __m256 b0, b1;                                                                      \
        if (half) {                                                                         \
            b0 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)bh));        \
            b1 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(bh + 8)));  \
            if (prefetch) _mm_prefetch((const char *)(bh + 8 * NR), _MM_HINT_T0);           \
            bh += NR;                                                                       \
        } else {                                                                            \
            b0 = _mm256_load_ps(bf);                                                        \
            b1 = _mm256_load_ps(bf + 8);                                                    \
            _mm_prefetch((const char *)(bf + 8 * NR), _MM_HINT_T0);                         \
            bf += NR;                                                                       \
        }                                                                                   \
        FOR_ROWS(STEP)                                                                      \
        a += MR;                                                                            \
    }
    /* two steps a pass: a panel of halves advances one 64-byte line per
     * two steps, so it is prefetched once a pass */
    int64_t k = 0;
    for (; k + 2 <= kc; k += 2) {
        K_STEP(true)
        K_STEP(false)
    }
    if (k < kc) K_STEP(true)
#undef K_STEP
#undef STEP
#define STORE(i)                                                                            \
    {                                                                                       \
        float *row = c + (i) * ldc;                                                         \
        if (accumulate) {                                                                   \
            c##i##_0 = _mm256_add_ps(_mm256_loadu_ps(row), c##i##_0);                       \
            c##i##_1 = _mm256_add_ps(_mm256_loadu_ps(row + 8), c##i##_1);                   \
        }                                                                                   \
        _mm256_storeu_ps(row, c##i##_0);                                                    \
        _mm256_storeu_ps(row + 8, c##i##_1);                                                \
    }
    FOR_ROWS(STORE)
#undef STORE
}

void ox__mm_tile_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                      int accumulate)
{
    tile_6x16(kc, a, b, false, c, ldc, accumulate);
}

/* The tile with B's panel stored as halves (pack_t_h16). */
void ox__mm_tile_h_avx2(int64_t kc, const float *a, const uint16_t *b, float *c, int64_t ldc,
                        int accumulate)
{
    tile_6x16(kc, a, b, true, c, ldc, accumulate);
}

/* 8 elements of w (dtype `type`) from index i, as floats. */
static inline __attribute__((always_inline)) __m256 load8(ox_dtype type, const void *w, int64_t i)
{
    if (type == OX_DTYPE_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (type == OX_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The first n (< 8) elements of w from index i, the rest zero (F32 or F16). */
static inline __attribute__((always_inline)) __m256 load8_part(ox_dtype type, const void *w,
                                                               int64_t i, int64_t n)
{
    _Alignas(32) float t[8] = {0};
    if (type == OX_DTYPE_F32) {
        memcpy(t, (const float *)w + i, (size_t)n * sizeof(float));
        return _mm256_load_ps(t);
    }
    uint16_t h[8] = {0};
    memcpy(h, (const uint16_t *)w + i, (size_t)n * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* Lanes [0, n) of v to p, 0 < n <= 8: plain stores (AMD's Zen cores run
 * vmaskmovps stores as microcode, a dozen times slower: it was 12% of an
 * F16 prompt's time when every panel row was stored masked). */
static inline __attribute__((always_inline)) void store_first(float *p, __m256 v, int64_t n)
{
    if (n == 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m128 q = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(p, q);
        q = _mm256_extractf128_ps(v, 1);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)(void *)p, q);
        q = _mm_movehl_ps(q, q);
        p += 2;
        n -= 2;
    }
    if (n == 1) _mm_store_ss(p, q);
}

/* w (8, or MR for rows of A) whole rows of dtype `type`, w x 8 blocks of
 * them transposed into panel columns [0, w) for k < kc8 (a multiple of 8):
 * the common cases with no tests for short rows or blocks, called with a
 * constant w, the row addresses kept in registers (the general loop below
 * packed 1.3-1.7x slower, 5-7% of an F16 prompt's time). */
static inline __attribute__((always_inline)) void pack_t_rows(ox_dtype type, const char *src,
                                                              int64_t ld, int64_t kc8, int w,
                                                              int64_t R, float *panel)
{
    const int64_t s = ld * (type == OX_DTYPE_F32 ? 4 : 2);
    for (int64_t k = 0; k < kc8; k += 8) {
        __m256 v[8];
        for (int i = 0; i < 8; i++) v[i] = i < w ? load8(type, src + i * s, k) : _mm256_setzero_ps();
        ox__transpose8_avx2(v);
        for (int j = 0; j < 8; j++) store_first(panel + (k + j) * R, v[j], w);
    }
}

/* pack_t (matmul.h) of rows of dtype `type` (F32, or F16 converted as it
 * is loaded; ld in elements): 8 x 8 blocks transposed in registers. */
static inline __attribute__((always_inline)) void pack_t_typed(ox_dtype type, const void *src,
                                                               int64_t ld, int64_t kc, int64_t r,
                                                               int64_t R, float *panel)
{
    const size_t size = type == OX_DTYPE_F32 ? 4 : 2;
    for (int64_t g = 0; g < R; g += 8) {
        int64_t rows = r - g < 0 ? 0 : (r - g < 8 ? r - g : 8);
        int64_t width = R - g < 8 ? R - g : 8, k0 = 0;
        const char *first = (const char *)src + (size_t)(g * ld) * size;
        if (rows == 8 && width == 8) {
            k0 = kc / 8 * 8;
            pack_t_rows(type, first, ld, k0, 8, R, panel + g);
        } else if (rows == MR && width == MR) {
            k0 = kc / 8 * 8;
            pack_t_rows(type, first, ld, k0, MR, R, panel + g);
        }
        for (int64_t k = k0; k < kc; k += 8) {
            int64_t n = kc - k < 8 ? kc - k : 8;
            __m256 v[8];
            for (int64_t i = 0; i < 8; i++) {
                const char *row = (const char *)src + (size_t)((g + i) * ld) * size;
                v[i] = i >= rows ? _mm256_setzero_ps()
                       : n == 8  ? load8(type, row, k)
                                 : load8_part(type, row, k, n);
            }
            ox__transpose8_avx2(v);
            for (int64_t j = 0; j < n; j++) store_first(panel + (k + j) * R + g, v[j], width);
        }
    }
}

/* pack_t of F16 rows into a panel of halves for ox__mm_tile_h_avx2, as
 * stored (no conversion: half the bytes written, and a 16-bit transpose):
 * 8 x 8 blocks of halves transposed in registers; rows past r and k past
 * kc are zeros. */
void ox__mm_pack_t_h16_avx2(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                            uint16_t *panel)
{
    for (int64_t g = 0; g < R; g += 8) {
        int64_t rows = r - g < 0 ? 0 : (r - g < 8 ? r - g : 8);
        int64_t width = R - g < 8 ? R - g : 8;
        const uint16_t *first = src + g * ld;
        for (int64_t k = 0; k < kc; k += 8) {
            int64_t n = kc - k < 8 ? kc - k : 8;
            __m128i v[8];
            for (int64_t i = 0; i < 8; i++) {
                if (i >= rows) {
                    v[i] = _mm_setzero_si128();
                } else if (n == 8) {
                    v[i] = _mm_loadu_si128((const __m128i *)(const void *)(first + i * ld + k));
                } else {
                    uint16_t t[8] = {0};
                    memcpy(t, first + i * ld + k, (size_t)n * sizeof(uint16_t));
                    v[i] = _mm_loadu_si128((const __m128i *)(const void *)t);
                }
            }
            __m128i t0 = _mm_unpacklo_epi16(v[0], v[1]), t1 = _mm_unpackhi_epi16(v[0], v[1]);
            __m128i t2 = _mm_unpacklo_epi16(v[2], v[3]), t3 = _mm_unpackhi_epi16(v[2], v[3]);
            __m128i t4 = _mm_unpacklo_epi16(v[4], v[5]), t5 = _mm_unpackhi_epi16(v[4], v[5]);
            __m128i t6 = _mm_unpacklo_epi16(v[6], v[7]), t7 = _mm_unpackhi_epi16(v[6], v[7]);
            __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
            __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
            __m128i u4 = _mm_unpacklo_epi32(t4, t6), u5 = _mm_unpackhi_epi32(t4, t6);
            __m128i u6 = _mm_unpacklo_epi32(t5, t7), u7 = _mm_unpackhi_epi32(t5, t7);
            __m128i out[8] = {_mm_unpacklo_epi64(u0, u4), _mm_unpackhi_epi64(u0, u4),
                              _mm_unpacklo_epi64(u1, u5), _mm_unpackhi_epi64(u1, u5),
                              _mm_unpacklo_epi64(u2, u6), _mm_unpackhi_epi64(u2, u6),
                              _mm_unpacklo_epi64(u3, u7), _mm_unpackhi_epi64(u3, u7)};
            for (int64_t j = 0; j < n; j++) {
                uint16_t *d = panel + (k + j) * R + g;
                if (width == 8) {
                    _mm_storeu_si128((__m128i *)(void *)d, out[j]);
                } else {
                    uint16_t t[8];
                    _mm_storeu_si128((__m128i *)(void *)t, out[j]);
                    memcpy(d, t, (size_t)width * sizeof(uint16_t));
                }
            }
        }
    }
}

void ox__mm_pack_t_avx2(const float *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                        float *panel)
{
    pack_t_typed(OX_DTYPE_F32, src, ld, kc, r, R, panel);
}

void ox__mm_pack_t_f16_avx2(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                            float *panel)
{
    pack_t_typed(OX_DTYPE_F16, src, ld, kc, r, R, panel);
}

/* `rows` rows of dtype `type` at once (called with one: a matrix-vector
 * product reads its rows one after another, a single memory stream the
 * hardware prefetchers follow; four rows side by side, four short streams,
 * ran at 40% of the bandwidth instead of 95%). One row is summed in four
 * 8-lane chains over 32-element steps (two chains left one core's F16
 * decode waiting on the fused multiply-add's latency, not on memory),
 * folded into two; then, as for several rows, two chains over 16-element
 * steps, the tail zero-padded into one more step, and a fixed-order
 * reduction: every row of a call sums in the same order in any task. The
 * vector x is F32 or F16 (`xtype`). */
static inline __attribute__((always_inline)) void dot_rows(const void *x, ox_dtype xtype,
                                                           const char *w, int64_t row_stride,
                                                           ox_dtype type, int64_t k, int rows,
                                                           float *y)
{
    size_t size = type == OX_DTYPE_F32 ? 4 : 2, xsize = xtype == OX_DTYPE_F32 ? 4 : 2;
    __m256 acc0[4], acc1[4];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int64_t i = 0;
    if (rows == 1) { /* four chains over 32-element steps, folded into two */
        __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
        for (; i + 32 <= k; i += 32) {
            acc0[0] = _mm256_fmadd_ps(load8(xtype, x, i), load8(type, w, i), acc0[0]);
            acc1[0] = _mm256_fmadd_ps(load8(xtype, x, i + 8), load8(type, w, i + 8), acc1[0]);
            acc2 = _mm256_fmadd_ps(load8(xtype, x, i + 16), load8(type, w, i + 16), acc2);
            acc3 = _mm256_fmadd_ps(load8(xtype, x, i + 24), load8(type, w, i + 24), acc3);
        }
        acc0[0] = _mm256_add_ps(acc0[0], acc2);
        acc1[0] = _mm256_add_ps(acc1[0], acc3);
    }
    for (; i + 16 <= k; i += 16) {
        __m256 x0 = load8(xtype, x, i), x1 = load8(xtype, x, i + 8);
        for (int r = 0; r < rows; r++) {
            const void *wr = w + r * row_stride;
            acc0[r] = _mm256_fmadd_ps(x0, load8(type, wr, i), acc0[r]);
            acc1[r] = _mm256_fmadd_ps(x1, load8(type, wr, i + 8), acc1[r]);
        }
    }
    int64_t left = k - i;
    if (left > 0) {
        _Alignas(32) char xt[16 * 4] = {0}, wt[16 * 4] = {0};
        memcpy(xt, (const char *)x + i * (int64_t)xsize, (size_t)left * xsize);
        __m256 x0 = load8(xtype, xt, 0), x1 = load8(xtype, xt, 8);
        for (int r = 0; r < rows; r++) {
            memcpy(wt, w + r * row_stride + i * (int64_t)size, (size_t)left * size);
            acc0[r] = _mm256_fmadd_ps(x0, load8(type, wt, 0), acc0[r]);
            acc1[r] = _mm256_fmadd_ps(x1, load8(type, wt, 8), acc1[r]);
        }
    }
    for (int r = 0; r < rows; r++) {
        __m256 s = _mm256_add_ps(acc0[r], acc1[r]);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        y[r] = _mm_cvtss_f32(h);
    }
}

void ox__mm_dot_avx2(const void *x, ox_dtype xtype, const void *w, int64_t row_stride,
                     ox_dtype wtype, int64_t k, int64_t rows, float *y)
{
    OX_MM_DOT_ROWS(dot_rows);
}

float ox__mm_halves_avx2(const float *x, int64_t n, uint16_t *out)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(__builtin_inff());
    __m256 max = _mm256_setzero_ps();
    int bad = 0; /* a NaN or an infinity seen */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(v, inf, _CMP_NLT_UQ));
        max = _mm256_max_ps(max, v);
    }
    _Alignas(32) float lanes[8];
    _mm256_store_ps(lanes, max);
    float m = 0.0f;
    for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    for (int64_t j = i; j < n; j++) {
        float v = x[j] < 0 ? -x[j] : x[j];
        bad |= !(v <= 3.4e38f);
        m = v > m ? v : m;
    }
    float scale = bad ? 0.0f : ox__mm_half_scale(m);
    if (scale == 0.0f) return 0.0f;
    const __m256 s = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), s),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) {
        float xt[8] = {0};
        uint16_t ht[8];
        memcpy(xt, x + i, (size_t)(n - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)ht, _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(xt), s),
                                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        memcpy(out + i, ht, (size_t)(n - i) * sizeof(uint16_t));
    }
    return scale;
}

static inline __attribute__((always_inline)) void axpy_typed(float alpha, const void *w,
                                                             ox_dtype type, int64_t n, float *y)
{
    size_t size = type == OX_DTYPE_F32 ? 4 : 2;
    __m256 va = _mm256_set1_ps(alpha);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(y + j, _mm256_fmadd_ps(va, load8(type, w, j), _mm256_loadu_ps(y + j)));
    if (j < n) {
        float yt[8] = {0};
        _Alignas(32) char wt[8 * 4] = {0};
        size_t left = (size_t)(n - j);
        memcpy(yt, y + j, left * sizeof(float));
        memcpy(wt, (const char *)w + j * (int64_t)size, left * size);
        _mm256_storeu_ps(yt, _mm256_fmadd_ps(va, load8(type, wt, 0), _mm256_loadu_ps(yt)));
        memcpy(y + j, yt, left * sizeof(float));
    }
}

void ox__mm_axpy_avx2(float alpha, const void *w, ox_dtype wtype, int64_t n, float *y)
{
    switch (wtype) {
    case OX_DTYPE_F32: axpy_typed(alpha, w, OX_DTYPE_F32, n, y); break;
    case OX_DTYPE_F16: axpy_typed(alpha, w, OX_DTYPE_F16, n, y); break;
    default: axpy_typed(alpha, w, OX_DTYPE_BF16, n, y); break;
    }
}
