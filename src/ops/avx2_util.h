/* Small AVX2 helpers shared by the *_avx2.c files (matmul_avx2.c,
 * attention_avx2.c). Include only from files compiled with -mavx2, whose
 * functions run only where the CPU has AVX2. */
#ifndef OX_OPS_AVX2_UTIL_H
#define OX_OPS_AVX2_UTIL_H

#include <immintrin.h>

/* Transpose the 8 x 8 block held in r[0..7]: r[i] becomes column i. */
static inline __attribute__((always_inline)) void ox__transpose8_avx2(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

#endif
