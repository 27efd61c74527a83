/* AVX2 + FMA inner loops of the CPU attention (attention.c chooses them
 * when the CPU has both): eight keys' scores at a time, each a dot product
 * over eight lanes reduced together, and the weighted sum of value rows. */
#include <immintrin.h>
#include <stdint.h>

#include "ops/cpu_ops.h"

void ox__att_scores8_avx2(const float *q, const float *const k[8], int64_t d, float out[8])
{
    __m256 s[8];
    for (int j = 0; j < 8; j++) s[j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        for (int j = 0; j < 8; j++) s[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[j] + i), s[j]);
    }
    /* lane j = the sum of s[j]'s lanes */
    __m256 h01 = _mm256_hadd_ps(s[0], s[1]), h23 = _mm256_hadd_ps(s[2], s[3]);
    __m256 h45 = _mm256_hadd_ps(s[4], s[5]), h67 = _mm256_hadd_ps(s[6], s[7]);
    __m256 q0 = _mm256_hadd_ps(h01, h23), q1 = _mm256_hadd_ps(h45, h67);
    __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
    _mm256_storeu_ps(out, sum);
    for (; i < d; i++)
        for (int j = 0; j < 8; j++) out[j] += q[i] * k[j][i];
}

void ox__att_axpy_avx2(float *acc, float p, const float *v, int64_t n)
{
    __m256 pv = _mm256_set1_ps(p);
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + c), _mm256_loadu_ps(acc + c)));
    for (; c < n; c++) acc[c] += p * v[c];
}
