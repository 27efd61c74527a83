/* The CPU's F32 FMA peak with AVX-512 (roofline_cpu.c): 12 independent
 * chains of 16 floats, x = x * m + q, enough to cover the FMA latency of
 * two 512-bit (or double-pumped 256-bit) units. */
#include <immintrin.h>

#include "ops/roofline.h"

#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

float ox__roofline_fma_avx512(int64_t rounds)
{
    const __m512 m = _mm512_set1_ps(0.999f), q = _mm512_set1_ps(0.001f);
#define DECLARE(i) __m512 x##i = _mm512_set1_ps(0.0625f * (i));
    CHAINS(DECLARE)
#undef DECLARE
    for (int64_t r = 0; r < rounds; r++) {
#define STEP(i) x##i = _mm512_fmadd_ps(x##i, m, q);
        CHAINS(STEP)
#undef STEP
    }
    __m512 sum = _mm512_setzero_ps();
#define ADD(i) sum = _mm512_add_ps(sum, x##i);
    CHAINS(ADD)
#undef ADD
    return _mm512_reduce_add_ps(sum);
}
