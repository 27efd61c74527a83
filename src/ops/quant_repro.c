/* Reproducible mode's quantized product on the CPU, in native code that
 * keeps the portable kernel's order exactly (kernels/quant.oxc qmatvec with
 * one lane a row, kernels/common.h q_unit_factors): for each output, the
 * units of 32 weights in order, each adding
 *   dx * (s * (float)(S0 + S1) + sx * (SX0 + SX1))                 (Q6_K:
 *   dx * (s * (float)S0 + sx * SX0 + s1 * (float)S1 + sx1 * SX1))
 * to one float sum, S0 and S1 the exact integer dot products of the unit's
 * two halves with the int8 activations, SX0 and SX1 the activations' sums.
 * Integer sums are exact in any order, so they are taken with SIMD where
 * the CPU has it (quant_repro_avx2.c); the float expressions are evaluated
 * as written (quant_repro_body.h). The activations come rounded already
 * (quantize_act: xq, xd, xs). */
#include "core/core.h"
#include "core/threadpool.h"
#include "ops/cpu_ops.h"

static void unit_sums_c(const int8_t *q, const int8_t *x, int64_t units, int32_t *s0,
                        int32_t *s1)
{
    for (int64_t u = 0; u < units; u++) {
        int32_t a = 0, b = 0;
        for (int j = 0; j < 16; j++) a += (int32_t)q[32 * u + j] * x[32 * u + j];
        for (int j = 16; j < 32; j++) b += (int32_t)q[32 * u + j] * x[32 * u + j];
        s0[u] = a;
        s1[u] = b;
    }
}

void ox__repro_task_c(void *arg, size_t task, int thread);
#define REPRO_TASK ox__repro_task_c
#define REPRO_HALF(h) ox_f16_to_f32(h)
#define REPRO_SUMS(q, x, units, s0, s1) unit_sums_c(q, x, units, s0, s1)
#include "ops/quant_repro_body.h"

void ox__repro_task_avx2(void *arg, size_t task, int thread);

bool ox__cpu_qmatvec_repro_supported(ox_dtype type)
{
    return type == OX_DTYPE_Q4_0 || type == OX_DTYPE_Q4_1 || type == OX_DTYPE_Q5_0 ||
           type == OX_DTYPE_Q5_1 || type == OX_DTYPE_Q8_0 || type == OX_DTYPE_Q4_K ||
           type == OX_DTYPE_Q5_K || type == OX_DTYPE_Q6_K;
}

void ox__cpu_qmatvec_repro(const ox__cpu_exec *x, ox_dtype type, const void *w, size_t w_rb,
                           const int8_t *xq, const float *xd, const int32_t *xs, float *dst,
                           int64_t d_sm, int64_t N, int64_t K, int64_t M, int qb)
{
    ox__repro_job job = {type, w, w_rb, xq, xd, xs, dst, d_sm, N, K, M, qb};
    ox__pool_fn task = ox__repro_task_c;
#if defined(__x86_64__) || defined(_M_X64)
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_F16C);
    if ((x->features & avx2) == avx2) task = ox__repro_task_avx2;
#endif
    ox__pool_run(x->pool, (size_t)((N + R_ROWS - 1) / R_ROWS), task, &job);
}
