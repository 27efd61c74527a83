/* The body of reproducible mode's quantized product (quant_repro.c), built
 * twice: in quant_repro.c with portable code and in quant_repro_avx2.c with
 * AVX2 integer sums and F16C conversions. Both files are built with
 * -ffp-contract=off, so the float expressions are evaluated as written, one
 * rounding each: the portable kernel's bits (kernels/quant.oxc qmatvec,
 * kernels/common.h q_unit_factors). Before including it define REPRO_TASK
 * (the task's name), REPRO_HALF(h) (an IEEE half's bits to float, exact)
 * and either REPRO_SUMS(q, x, units, s0, s1) (the units' exact integer
 * sums of their two halves, from raw values decoded here into q) or
 * REPRO_SUMS_FROM_ROW(type, row, u0, units, bytes, per_block, x, s0, s1)
 * (the same, decoding the row's units itself). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "openxpu/tensor.h"

#define R_ROWS 8    /* weight rows a task decodes at once */
#define R_UNITS 64  /* units a chunk (2048 weights of a row) */
#define R_MTILE 32  /* activation rows a pass over a chunk */

#ifndef OX_REPRO_JOB
#define OX_REPRO_JOB
typedef struct ox__repro_job {
    ox_dtype type;
    const uint8_t *w;
    size_t w_rb;
    const int8_t *xq;
    const float *xd;
    const int32_t *xs;
    float *dst;
    int64_t d_sm, N, K, M;
    int qb;
} ox__repro_job;
#endif

static inline float half_at(const uint8_t *p)
{
    return REPRO_HALF((uint16_t)(p[0] | (p[1] << 8)));
}

/* Bytes and units (of 32 weights) of one block. */
static inline void block_shape(ox_dtype t, int *bytes, int *units)
{
    *units = 1;
    switch (t) {
    case OX_DTYPE_Q4_0: *bytes = 18; break;
    case OX_DTYPE_Q4_1: *bytes = 20; break;
    case OX_DTYPE_Q5_0: *bytes = 22; break;
    case OX_DTYPE_Q5_1: *bytes = 24; break;
    case OX_DTYPE_Q8_0: *bytes = 34; break;
    case OX_DTYPE_Q4_K: *bytes = 144, *units = 8; break;
    case OX_DTYPE_Q5_K: *bytes = 176, *units = 8; break;
    default: *bytes = 210, *units = 8; break; /* Q6_K */
    }
}

/* Unit `sub` of block b: its 32 raw values (q_raw_lo / q_raw_hi) and its
 * factors (q_unit_factors), in the kernel's expressions. */
static inline __attribute__((always_inline)) void unit_decode(ox_dtype t, const uint8_t *restrict b, int sub, int8_t *restrict q,
                        float f[4])
{
    (void)q;
    switch (t) {
    case OX_DTYPE_Q4_0:
    case OX_DTYPE_Q4_1: {
#ifndef REPRO_SUMS_FROM_ROW
        const uint8_t *qs = b + (t == OX_DTYPE_Q4_0 ? 2 : 4);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(qs[j] & 0xF);
            q[j + 16] = (int8_t)(qs[j] >> 4);
        }
#endif
        float d = half_at(b);
        f[0] = f[2] = d;
        f[1] = f[3] = t == OX_DTYPE_Q4_0 ? -8.0f * d : half_at(b + 2);
        return;
    }
    case OX_DTYPE_Q5_0:
    case OX_DTYPE_Q5_1: {
        int one = t == OX_DTYPE_Q5_1;
#ifndef REPRO_SUMS_FROM_ROW
        const uint8_t *hp = b + (one ? 4 : 2), *qs = b + (one ? 8 : 6);
        uint32_t h = (uint32_t)hp[0] | (uint32_t)hp[1] << 8 | (uint32_t)hp[2] << 16 |
                     (uint32_t)hp[3] << 24;
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((qs[j] & 0xF) | (((h >> j) & 1u) << 4));
            q[j + 16] = (int8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1u) << 4));
        }
#endif
        float d = half_at(b);
        f[0] = f[2] = d;
        f[1] = f[3] = one ? half_at(b + 2) : -16.0f * d;
        return;
    }
    case OX_DTYPE_Q8_0:
#ifndef REPRO_SUMS_FROM_ROW
        memcpy(q, b + 2, 32);
#endif
        f[0] = f[2] = half_at(b);
        f[1] = f[3] = 0.0f;
        return;
    case OX_DTYPE_Q4_K:
    case OX_DTYPE_Q5_K: {
#ifndef REPRO_SUMS_FROM_ROW
        int five = t == OX_DTYPE_Q5_K;
        const uint8_t *qs = b + (five ? 48 : 16) + 32 * (sub / 2);
        int shift = 4 * (sub & 1);
        for (int j = 0; j < 32; j++) q[j] = (int8_t)((qs[j] >> shift) & 0xF);
        if (five)
            for (int j = 0; j < 32; j++) q[j] = (int8_t)(q[j] | (((b[16 + j] >> sub) & 1) << 4));
#endif
        const uint8_t *s = b + 4;
        float sc, mn;
        if (sub < 4) {
            sc = (float)(s[sub] & 63);
            mn = (float)(s[sub + 4] & 63);
        } else {
            sc = (float)((s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4));
            mn = (float)((s[sub + 4] >> 4) | ((s[sub] >> 6) << 4));
        }
        f[0] = f[2] = half_at(b) * sc;
        f[1] = f[3] = -half_at(b + 2) * mn;
        return;
    }
    default: { /* Q6_K */
        int half_ = sub / 4, quarter = sub % 4;
#ifndef REPRO_SUMS_FROM_ROW
        const uint8_t *ql = b + 64 * half_ + 32 * (quarter & 1), *qh = b + 128 + 32 * half_;
        int lo_shift = 4 * (quarter >> 1), hi_shift = 2 * quarter;
        for (int j = 0; j < 32; j++)
            q[j] = (int8_t)(((ql[j] >> lo_shift) & 0xF) | (((qh[j] >> hi_shift) & 3) << 4));
#endif
        float d = half_at(b + 208);
        float sc0 = (float)(int8_t)b[192 + 8 * half_ + 2 * quarter];
        float sc1 = (float)(int8_t)b[192 + 8 * half_ + 2 * quarter + 1];
        f[0] = d * sc0;
        f[1] = -32.0f * d * sc0;
        f[2] = d * sc1;
        f[3] = -32.0f * d * sc1;
        return;
    }
    }
}

/* The rows of one task, units decoded type by type (the switch outside
 * the loops) */
static inline __attribute__((always_inline)) void decode_units(ox_dtype type, const uint8_t *row,
                                                              int64_t u0, int nu, int bytes,
                                                              int per_block, int8_t *q,
                                                              float (*f)[R_UNITS])
{
    /* per_block is 1 or 8: shifts, not divisions */
    const int shift = per_block == 8 ? 3 : 0;
    /* the weights stream from memory: ask for them 1 KiB ahead */
#define DECODE_AS(t)                                                                        \
    for (int u = 0; u < nu; u++) {                                                          \
        const uint8_t *b_ = row + ((u0 + u) >> shift) * bytes;                              \
        __builtin_prefetch(b_ + 1024);                                                      \
        float f_[4];                                                                        \
        unit_decode(t, b_, (int)((u0 + u) & (per_block - 1)), q + 32 * u, f_);              \
        f[0][u] = f_[0], f[1][u] = f_[1], f[2][u] = f_[2], f[3][u] = f_[3];                 \
    }                                                                                       \
    return
    switch (type) {
    case OX_DTYPE_Q4_0: DECODE_AS(OX_DTYPE_Q4_0);
    case OX_DTYPE_Q4_1: DECODE_AS(OX_DTYPE_Q4_1);
    case OX_DTYPE_Q5_0: DECODE_AS(OX_DTYPE_Q5_0);
    case OX_DTYPE_Q5_1: DECODE_AS(OX_DTYPE_Q5_1);
    case OX_DTYPE_Q8_0: DECODE_AS(OX_DTYPE_Q8_0);
    case OX_DTYPE_Q4_K: DECODE_AS(OX_DTYPE_Q4_K);
    case OX_DTYPE_Q5_K: DECODE_AS(OX_DTYPE_Q5_K);
    default: DECODE_AS(OX_DTYPE_Q6_K);
    }
#undef DECODE_AS
}

/* Add units [u0, u0 + nu) of one output to *acc: each unit's term
 * (elementwise: the compiler may vectorise it, the same bits), then the
 * terms in order. base: the activation row's element u0 * 32. */
static inline __attribute__((always_inline)) void add_terms(const ox__repro_job *j, bool q6,
                                                           int64_t base, int nu,
                                                           const float (*f)[R_UNITS],
                                                           const int32_t *s0,
                                                           const int32_t *s1, float *acc)
{
    const int qb_shift = j->qb == 256 ? 8 : 5; /* 32 or 256 */
    const int32_t *xs = j->xs + (base >> 4);
    float term[R_UNITS];
    int done = 0;
#ifdef REPRO_TERMS
    done = REPRO_TERMS(q6, j->xd + (base >> qb_shift), qb_shift, xs, nu, f, s0, s1, term);
#endif
    if (done == nu) {
    } else if (q6) {
        for (int u = done; u < nu; u++) {
            float dx = j->xd[(base + 32 * u) >> qb_shift];
            term[u] = dx * (f[0][u] * (float)s0[u] + f[1][u] * (float)xs[2 * u] +
                            f[2][u] * (float)s1[u] + f[3][u] * (float)xs[2 * u + 1]);
        }
    } else {
        for (int u = done; u < nu; u++) {
            float dx = j->xd[(base + 32 * u) >> qb_shift];
            term[u] = dx * (f[0][u] * (float)(s0[u] + s1[u]) +
                            f[1][u] * ((float)xs[2 * u] + (float)xs[2 * u + 1]));
        }
    }
    float a = *acc;
    for (int u = 0; u < nu; u++) a += term[u];
    *acc = a;
}

void REPRO_TASK(void *arg, size_t task, int thread)
{
    (void)thread;
    const ox__repro_job *j = arg;
    int bytes, per_block;
    block_shape(j->type, &bytes, &per_block);
    const bool q6 = j->type == OX_DTYPE_Q6_K;
    const int64_t n0 = (int64_t)task * R_ROWS, units = j->K / 32;
    const int rows = (int)(j->N - n0 < R_ROWS ? j->N - n0 : R_ROWS);
    int8_t q[R_ROWS][R_UNITS * 32];
    float f[R_ROWS][4][R_UNITS]; /* s, sx, s1, sx1 of each unit */
    int32_t s0[4][R_UNITS], s1[4][R_UNITS];
    float acc[R_ROWS][R_MTILE];

    for (int64_t m0 = 0; m0 < j->M; m0 += R_MTILE) {
        int mt = (int)(j->M - m0 < R_MTILE ? j->M - m0 : R_MTILE);
        memset(acc, 0, sizeof acc);
        for (int64_t u0 = 0; u0 < units; u0 += R_UNITS) {
            int nu = (int)(units - u0 < R_UNITS ? units - u0 : R_UNITS);
            for (int r = 0; r < rows; r++) {
                const uint8_t *row = j->w + (size_t)(n0 + r) * j->w_rb;
                decode_units(j->type, row, u0, nu, bytes, per_block, q[r], f[r]);
            }
            for (int r = 0; r < rows; r++) {
                const uint8_t *row = j->w + (size_t)(n0 + r) * j->w_rb;
                (void)row;
                for (int m = 0; m < mt;) {
                    const int64_t base = (m0 + m) * j->K + u0 * 32;
                    int g = 1; /* activation rows whose sums are taken together */
#ifdef REPRO_SUMS4_FROM_ROW
                    if (m + 4 <= mt) {
                        g = 4;
                        REPRO_SUMS4_FROM_ROW(j->type, row, u0, nu, bytes, per_block,
                                             j->xq + base, j->K, s0, s1);
                    } else
#endif
                    {
#ifdef REPRO_SUMS_FROM_ROW
                        REPRO_SUMS_FROM_ROW(j->type, row, u0, nu, bytes, per_block, j->xq + base,
                                            s0[0], s1[0]);
#else
                        REPRO_SUMS(q[r], j->xq + base, nu, s0[0], s1[0]);
#endif
                    }
                    for (int i = 0; i < g; i++)
                        add_terms(j, q6, base + (int64_t)i * j->K, nu,
                                  (const float (*)[R_UNITS])f[r], s0[i], s1[i], &acc[r][m + i]);
                    m += g;
                }
            }
        }
        for (int m = 0; m < mt; m++)
            for (int r = 0; r < rows; r++) j->dst[(m0 + m) * j->d_sm + n0 + r] = acc[r][m];
    }
}
