/* F16 <-> F32 row conversion with the F16C instructions (8 at a time), for
 * ox__row_to_f32 / ox__row_from_f32 in convert.c, which calls these only when
 * the CPU has F16C. Rounding is to nearest even, as in the scalar code. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "ops/cpu_ops.h"
#include "openxpu/ops.h"

void ox__row_f16_to_f32_f16c(const uint16_t *src, float *dst, int64_t n);
void ox__row_f32_to_f16_f16c(const float *src, uint16_t *dst, int64_t n);

void ox__row_f16_to_f32_f16c(const uint16_t *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    if (i < n) {
        uint16_t tail_in[8] = {0};
        float tail_out[8];
        memcpy(tail_in, src + i, (size_t)(n - i) * sizeof *src);
        _mm256_storeu_ps(tail_out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tail_in)));
        memcpy(dst + i, tail_out, (size_t)(n - i) * sizeof *dst);
    }
}

void ox__row_f32_to_f16_f16c(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    if (i < n) {
        float tail_in[8] = {0};
        uint16_t tail_out[8];
        memcpy(tail_in, src + i, (size_t)(n - i) * sizeof *src);
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(tail_in), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)tail_out, h);
        memcpy(dst + i, tail_out, (size_t)(n - i) * sizeof *dst);
    }
}

/* d = expr(x, y) over the n halves: eight at a time, each converted to
 * float, the op in float, rounded back to nearest even; the last n % 8
 * through zero-padded buffers. */
#define F16_ROUND(v) _mm256_cvtps_ph((v), _MM_FROUND_TO_NEAREST_INT)
#define F16_LOAD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define BINARY_F16_LOOP(expr)                                               \
    do {                                                                    \
        int64_t i = 0;                                                      \
        for (; i + 8 <= n; i += 8) {                                        \
            __m256 x = F16_LOAD(a + i), y = F16_LOAD(b + i);                \
            _mm_storeu_si128((__m128i *)(d + i), F16_ROUND(expr));          \
        }                                                                   \
        if (i < n) {                                                        \
            uint16_t ta[8] = {0}, tb[8] = {0}, td[8];                       \
            memcpy(ta, a + i, (size_t)(n - i) * sizeof *a);                 \
            memcpy(tb, b + i, (size_t)(n - i) * sizeof *b);                 \
            __m256 x = F16_LOAD(ta), y = F16_LOAD(tb);                      \
            _mm_storeu_si128((__m128i *)td, F16_ROUND(expr));               \
            memcpy(d + i, td, (size_t)(n - i) * sizeof *d);                 \
        }                                                                   \
    } while (0)

void ox__binary_f16_avx2(int op, uint16_t *d, const uint16_t *a, const uint16_t *b, int64_t n)
{
    switch ((ox_binary_op)op) {
    case OX_BINARY_ADD: BINARY_F16_LOOP(_mm256_add_ps(x, y)); break;
    case OX_BINARY_SUB: BINARY_F16_LOOP(_mm256_sub_ps(x, y)); break;
    case OX_BINARY_MUL: BINARY_F16_LOOP(_mm256_mul_ps(x, y)); break;
    case OX_BINARY_DIV: BINARY_F16_LOOP(_mm256_div_ps(x, y)); break;
    }
}
