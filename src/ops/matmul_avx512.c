/* AVX-512 matmul kernels (see matmul.h): a 14 x 32 register-blocked tile
 * (28 accumulators, two B vectors, one broadcast of A at a time), the
 * transposing packer (16 x 16 register transposes), and the matrix-vector
 * dot and axpy loops, which read F32, F16 or BF16 weights and convert them
 * in registers. */
#include <immintrin.h>

#include "ops/matmul.h"

#define MR OX_MM_AVX512_MR
#define NR OX_MM_AVX512_NR

#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

void ox__mm_tile_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                        int accumulate)
{
#define DECLARE(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
    FOR_ROWS(DECLARE)
#undef DECLARE
#define PREFETCH_C(i) _mm_prefetch((const char *)(c + (i) * ldc), _MM_HINT_T0);             \
    _mm_prefetch((const char *)(c + (i) * ldc + 16), _MM_HINT_T0);
    FOR_ROWS(PREFETCH_C)
#undef PREFETCH_C
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
#define STEP(i)                                                                             \
    {                                                                                       \
        __m512 ai = _mm512_set1_ps(a[i]);                                                   \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);                                       \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);                                       \
    }
        FOR_ROWS(STEP)
#undef STEP
        a += MR;
        b += NR;
    }
#define STORE(i)                                                                            \
    {                                                                                       \
        float *row = c + (i) * ldc;                                                         \
        if (accumulate) {                                                                   \
            c##i##_0 = _mm512_add_ps(_mm512_loadu_ps(row), c##i##_0);                       \
            c##i##_1 = _mm512_add_ps(_mm512_loadu_ps(row + 16), c##i##_1);                  \
        }                                                                                   \
        _mm512_storeu_ps(row, c##i##_0);                                                    \
        _mm512_storeu_ps(row + 16, c##i##_1);                                               \
    }
    FOR_ROWS(STORE)
#undef STORE
}

/* Transpose the 16 x 16 block held in r[0..15]. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        for (int j = 0; j < 2; j++) {
            __m512d a = _mm512_castps_pd(t[i + j]), b = _mm512_castps_pd(t[i + j + 2]);
            r[i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    }
    for (int i = 0; i < 16; i += 8) {
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
        }
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

/* 16 elements of w (dtype `type`) from index i, as floats. */
static inline __attribute__((always_inline)) __m512 load16(ox_dtype type, const void *w, int64_t i)
{
    if (type == OX_DTYPE_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (type == OX_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The same for the elements selected by `mask`; the others are zero. */
static inline __attribute__((always_inline)) __m512 load16_masked(ox_dtype type, const void *w,
                                                                  int64_t i, __mmask16 mask)
{
    if (type == OX_DTYPE_F32) return _mm512_maskz_loadu_ps(mask, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i);
    if (type == OX_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* pack_t (matmul.h) of rows of dtype `type` (F32, or F16 converted as it
 * is loaded; ld in elements): 16 x 16 blocks transposed in registers. */
static inline __attribute__((always_inline)) void pack_t_typed(ox_dtype type, const void *src,
                                                               int64_t ld, int64_t kc, int64_t r,
                                                               int64_t R, float *panel)
{
    const size_t size = type == OX_DTYPE_F32 ? 4 : 2;
    for (int64_t g = 0; g < R; g += 16) {
        int64_t rows = r - g < 0 ? 0 : (r - g < 16 ? r - g : 16);
        int64_t width = R - g < 16 ? R - g : 16;
        __mmask16 store = (__mmask16)(width == 16 ? 0xffff : (1u << width) - 1);
        for (int64_t k = 0; k < kc; k += 16) {
            int64_t n = kc - k < 16 ? kc - k : 16;
            __mmask16 load = (__mmask16)(n == 16 ? 0xffff : (1u << n) - 1);
            __m512 v[16];
            for (int64_t i = 0; i < 16; i++)
                v[i] = i < rows ? load16_masked(type, (const char *)src + (size_t)((g + i) * ld) * size, k, load)
                                : _mm512_setzero_ps();
            transpose16(v);
            for (int64_t j = 0; j < n; j++)
                _mm512_mask_storeu_ps(panel + (k + j) * R + g, store, v[j]);
        }
    }
}

void ox__mm_pack_t_avx512(const float *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                          float *panel)
{
    pack_t_typed(OX_DTYPE_F32, src, ld, kc, r, R, panel);
}

void ox__mm_pack_t_f16_avx512(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                              float *panel)
{
    pack_t_typed(OX_DTYPE_F16, src, ld, kc, r, R, panel);
}

/* `rows` rows of dtype `type` at once (called with one: a matrix-vector
 * product reads its rows one after another, a single memory stream the
 * hardware prefetchers follow; four rows side by side, four short streams,
 * ran at 40% of the bandwidth instead of 95%); every row is summed in the
 * same order either way: two 16-lane accumulators over 32-element steps, the
 * tail masked into the same accumulators, then a fixed-order reduction. The
 * vector x is F32 or F16 (`xtype`). (Four accumulators over 64-element
 * steps streamed 10% slower here: the FMAs' latency is not the limit.) */
static inline __attribute__((always_inline)) void dot_rows(const void *x, ox_dtype xtype,
                                                           const char *w, int64_t row_stride,
                                                           ox_dtype type, int64_t k, int rows,
                                                           float *y)
{
    __m512 acc0[4], acc1[4];
    for (int r = 0; r < rows; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        __m512 x0 = load16(xtype, x, i), x1 = load16(xtype, x, i + 16);
        for (int r = 0; r < rows; r++) {
            const void *wr = w + r * row_stride;
            acc0[r] = _mm512_fmadd_ps(x0, load16(type, wr, i), acc0[r]);
            acc1[r] = _mm512_fmadd_ps(x1, load16(type, wr, i + 16), acc1[r]);
        }
    }
    int64_t left = k - i;
    if (left > 0) {
        __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1);
        __mmask16 m1 = (__mmask16)(left <= 16 ? 0 : (1u << (left - 16)) - 1);
        __m512 x0 = load16_masked(xtype, x, i, m0), x1 = load16_masked(xtype, x, i + 16, m1);
        for (int r = 0; r < rows; r++) {
            const void *wr = w + r * row_stride;
            acc0[r] = _mm512_fmadd_ps(x0, load16_masked(type, wr, i, m0), acc0[r]);
            acc1[r] = _mm512_fmadd_ps(x1, load16_masked(type, wr, i + 16, m1), acc1[r]);
        }
    }
    for (int r = 0; r < rows; r++) y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
}

void ox__mm_dot_avx512(const void *x, ox_dtype xtype, const void *w, int64_t row_stride,
                       ox_dtype wtype, int64_t k, int64_t rows, float *y)
{
    OX_MM_DOT_ROWS(dot_rows);
}

float ox__mm_halves_avx512(const float *x, int64_t n, uint16_t *out)
{
    const __m512 inf = _mm512_set1_ps(__builtin_inff());
    __m512 max = _mm512_setzero_ps();
    __mmask16 bad = 0; /* lanes that saw a NaN or an infinity */
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
        __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + i));
        bad |= _mm512_cmp_ps_mask(v, inf, _CMP_NLT_UQ);
        max = _mm512_max_ps(max, v);
    }
    float scale = bad ? 0.0f : ox__mm_half_scale(_mm512_reduce_max_ps(max));
    if (scale == 0.0f) return 0.0f;
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = (__mmask16)(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
        __m256i h = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(out + i, m, h);
    }
    return scale;
}

static inline __attribute__((always_inline)) void axpy_typed(float alpha, const void *w,
                                                             ox_dtype type, int64_t n, float *y)
{
    __m512 va = _mm512_set1_ps(alpha);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(y + j, _mm512_fmadd_ps(va, load16(type, w, j),
                                                _mm512_loadu_ps(y + j)));
    if (j < n) {
        __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(y + j, m, _mm512_fmadd_ps(va, load16_masked(type, w, j, m),
                                                        _mm512_maskz_loadu_ps(m, y + j)));
    }
}

void ox__mm_axpy_avx512(float alpha, const void *w, ox_dtype wtype, int64_t n, float *y)
{
    switch (wtype) {
    case OX_DTYPE_F32: axpy_typed(alpha, w, OX_DTYPE_F32, n, y); break;
    case OX_DTYPE_F16: axpy_typed(alpha, w, OX_DTYPE_F16, n, y); break;
    default: axpy_typed(alpha, w, OX_DTYPE_BF16, n, y); break;
    }
}
