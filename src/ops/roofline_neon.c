/* The CPU's F32 FMA peak with NEON (roofline_cpu.c): 16 independent chains
 * of 4 floats, x = x * m + q, enough to cover the FMA latency of up to four
 * 128-bit units. */
#include <arm_neon.h>

#include "ops/roofline.h"

#define CHAINS(X) \
    X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

float ox__roofline_fma_neon(int64_t rounds)
{
    const float32x4_t m = vdupq_n_f32(0.999f), q = vdupq_n_f32(0.001f);
#define DECLARE(i) float32x4_t x##i = vdupq_n_f32(0.0625f * (i));
    CHAINS(DECLARE)
#undef DECLARE
    for (int64_t r = 0; r < rounds; r++) {
#define STEP(i) x##i = vfmaq_f32(q, x##i, m);
        CHAINS(STEP)
#undef STEP
    }
    float32x4_t sum = vdupq_n_f32(0.0f);
#define ADD(i) sum = vaddq_f32(sum, x##i);
    CHAINS(ADD)
#undef ADD
    return vaddvq_f32(sum);
}
