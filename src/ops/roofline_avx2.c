/* The CPU's F32 FMA peak with AVX2 + FMA (roofline_cpu.c): 12 independent
 * chains of 8 floats, x = x * m + q, enough to cover the FMA latency of two
 * 256-bit units; 14 of the 16 registers. */
#include <immintrin.h>

#include "ops/roofline.h"

#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

float ox__roofline_fma_avx2(int64_t rounds)
{
    const __m256 m = _mm256_set1_ps(0.999f), q = _mm256_set1_ps(0.001f);
#define DECLARE(i) __m256 x##i = _mm256_set1_ps(0.0625f * (i));
    CHAINS(DECLARE)
#undef DECLARE
    for (int64_t r = 0; r < rounds; r++) {
#define STEP(i) x##i = _mm256_fmadd_ps(x##i, m, q);
        CHAINS(STEP)
#undef STEP
    }
    __m256 sum = _mm256_setzero_ps();
#define ADD(i) sum = _mm256_add_ps(sum, x##i);
    CHAINS(ADD)
#undef ADD
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}
