/* NEON dot products of quantized weight rows with 8-bit activation blocks
 * (see quant.h), for AArch64, where Advanced SIMD is baseline. Each block
 * of 32 is unpacked to two 16-byte vectors of signed codes and multiplied
 * with the activation's bytes into 4 exact 32-bit sums: by SDOT (vdotq_s32)
 * in the "dotprod" kernels, else by vmull_s8 + vpadalq_s16, then scaled in
 * float. The file is compiled with +dotprod; the dotprod kernels are handed
 * out only when the CPU has it (OX_FEATURE_ARM_DOTPROD, from HWCAP), and the
 * plain ones contain no SDOT (every kernel takes `sdot` as a constant). The
 * integer sums equal the scalar kernels'; only the order of the float
 * additions differs. */
#include <arm_neon.h>
#include <stdbool.h>
#include <string.h>

#include "ops/quant.h"

/* quant_matmul.c calls this (declared there too, as quant.h is x86-only). */

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE float half(uint16_t h)
{
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* acc + the sums of 4 products of each 4 bytes; |w a| <= 128 * 127, so two
 * products fit 16 bits. */
static ALWAYS_INLINE int32x4_t dot16(int32x4_t acc, int8x16_t w, int8x16_t a, bool sdot)
{
    if (sdot) return vdotq_s32(acc, w, a);
    int16x8_t p = vmull_s8(vget_low_s8(w), vget_low_s8(a));
    p = vmlal_high_s8(p, w, a);
    return vpadalq_s16(acc, p);
}

/* 32 codes (w0 elements 0-15, w1 16-31) against one activation block. */
static ALWAYS_INLINE int32x4_t dot32(int8x16_t w0, int8x16_t w1, const ox__block_q8a *a, bool sdot)
{
    int32x4_t s = dot16(vdupq_n_s32(0), w0, vld1q_s8(a->qs), sdot);
    return dot16(s, w1, vld1q_s8(a->qs + 16), sdot);
}

static ALWAYS_INLINE float32x4_t scaled(int32x4_t s, float scale, float32x4_t acc)
{
    return vfmaq_n_f32(acc, vcvtq_f32_s32(s), scale);
}

/* 16 bytes of nibbles: *lo the low nibbles (elements 0-15), *hi the high. */
static ALWAYS_INLINE void nibbles(const uint8_t *qs, uint8x16_t *lo, uint8x16_t *hi)
{
    uint8x16_t v = vld1q_u8(qs);
    *lo = vandq_u8(v, vdupq_n_u8(0xF));
    *hi = vshrq_n_u8(v, 4);
}

/* Byte e of *lo (e < 16) and *hi (e >= 16) is 0x10 where bit e of the
 * little-endian 32 bits at qh is set. */
static ALWAYS_INLINE void fifth_bits(const uint8_t *qh, uint8x16_t *lo, uint8x16_t *hi)
{
    static const uint8_t spread_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t spread_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(bits)), b = vld1q_u8(bit);
    uint8x16_t ten = vdupq_n_u8(0x10);
    *lo = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(spread_lo)), b), ten);
    *hi = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(spread_hi)), b), ten);
}

static ALWAYS_INLINE int8x16_t signed_codes(uint8x16_t u, uint8_t offset)
{
    return vreinterpretq_s8_u8(vsubq_u8(u, vdupq_n_u8(offset)));
}

static ALWAYS_INLINE float q4_0(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q4_0 *b = w;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    uint8x16_t lo, hi;
    int64_t blocks = n / OX_QK, i = 0;
    for (; i + 2 <= blocks; i += 2, b += 2, a += 2) { /* two chains hide the FMA latency */
        nibbles(b[0].qs, &lo, &hi);
        int32x4_t s0 = dot32(signed_codes(lo, 8), signed_codes(hi, 8), &a[0], sdot);
        nibbles(b[1].qs, &lo, &hi);
        int32x4_t s1 = dot32(signed_codes(lo, 8), signed_codes(hi, 8), &a[1], sdot);
        acc0 = scaled(s0, half(b[0].d) * a[0].d, acc0);
        acc1 = scaled(s1, half(b[1].d) * a[1].d, acc1);
    }
    if (i < blocks) {
        nibbles(b->qs, &lo, &hi);
        acc0 = scaled(dot32(signed_codes(lo, 8), signed_codes(hi, 8), a, sdot), half(b->d) * a->d,
                      acc0);
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

static ALWAYS_INLINE float q4_1(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q4_1 *b = w;
    float32x4_t acc = vdupq_n_f32(0);
    float mins = 0;
    uint8x16_t lo, hi;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        nibbles(b->qs, &lo, &hi);
        int32x4_t s = dot32(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), a, sdot);
        acc = scaled(s, half(b->d) * a->d, acc);
        mins += half(b->m) * a->d * (float)a->sum;
    }
    return vaddvq_f32(acc) + mins;
}

static ALWAYS_INLINE float q5_0(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q5_0 *b = w;
    float32x4_t acc = vdupq_n_f32(0);
    uint8x16_t lo, hi, lo5, hi5;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        nibbles(b->qs, &lo, &hi);
        fifth_bits(b->qh, &lo5, &hi5);
        int8x16_t w0 = signed_codes(vorrq_u8(lo, lo5), 16), w1 = signed_codes(vorrq_u8(hi, hi5), 16);
        acc = scaled(dot32(w0, w1, a, sdot), half(b->d) * a->d, acc);
    }
    return vaddvq_f32(acc);
}

static ALWAYS_INLINE float q5_1(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q5_1 *b = w;
    float32x4_t acc = vdupq_n_f32(0);
    float mins = 0;
    uint8x16_t lo, hi, lo5, hi5;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        nibbles(b->qs, &lo, &hi);
        fifth_bits(b->qh, &lo5, &hi5);
        int8x16_t w0 = vreinterpretq_s8_u8(vorrq_u8(lo, lo5));
        int8x16_t w1 = vreinterpretq_s8_u8(vorrq_u8(hi, hi5));
        acc = scaled(dot32(w0, w1, a, sdot), half(b->d) * a->d, acc);
        mins += half(b->m) * a->d * (float)a->sum;
    }
    return vaddvq_f32(acc) + mins;
}

static ALWAYS_INLINE float q8_0(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q8_0 *b = w;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    int64_t blocks = n / OX_QK, i = 0;
    for (; i + 2 <= blocks; i += 2, b += 2, a += 2) {
        int32x4_t s0 = dot32(vld1q_s8(b[0].qs), vld1q_s8(b[0].qs + 16), &a[0], sdot);
        int32x4_t s1 = dot32(vld1q_s8(b[1].qs), vld1q_s8(b[1].qs + 16), &a[1], sdot);
        acc0 = scaled(s0, half(b[0].d) * a[0].d, acc0);
        acc1 = scaled(s1, half(b[1].d) * a[1].d, acc1);
    }
    if (i < blocks)
        acc0 = scaled(dot32(vld1q_s8(b->qs), vld1q_s8(b->qs + 16), a, sdot), half(b->d) * a->d,
                      acc0);
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

/* Q4_K / Q5_K super-blocks (qh NULL for Q4_K); returns the sum of the
 * mins' terms, adding the rest to *acc. */
static ALWAYS_INLINE float k_block(uint16_t dh, uint16_t dminh, const uint8_t *scales,
                                   const uint8_t *qs, const uint8_t *qh, const ox__block_q8a *a,
                                   float32x4_t *acc, bool sdot)
{
    const uint8x16_t m4 = vdupq_n_u8(0xF), ten = vdupq_n_u8(0x10);
    float d = half(dh), mins = 0;
    uint8x16_t high0 = vdupq_n_u8(0), high1 = vdupq_n_u8(0);
    if (qh) {
        high0 = vld1q_u8(qh);
        high1 = vld1q_u8(qh + 16);
    }
    for (int s = 0; s < 8; s++) {
        int sc, m;
        ox__k_scale_min(scales, s, &sc, &m);
        mins += (float)m * a[s].d * (float)a[s].sum;
        uint8x16_t q0 = vld1q_u8(qs + 32 * (s / 2)), q1 = vld1q_u8(qs + 32 * (s / 2) + 16);
        if (s % 2) {
            q0 = vshrq_n_u8(q0, 4);
            q1 = vshrq_n_u8(q1, 4);
        } else {
            q0 = vandq_u8(q0, m4);
            q1 = vandq_u8(q1, m4);
        }
        if (qh) {
            uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << s));
            q0 = vorrq_u8(q0, vandq_u8(vtstq_u8(high0, bit), ten));
            q1 = vorrq_u8(q1, vandq_u8(vtstq_u8(high1, bit), ten));
        }
        int32x4_t sum = dot32(vreinterpretq_s8_u8(q0), vreinterpretq_s8_u8(q1), &a[s], sdot);
        *acc = scaled(sum, d * (float)sc * a[s].d, *acc);
    }
    return half(dminh) * mins;
}

static ALWAYS_INLINE float q4_k(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q4_k *b = w;
    float32x4_t acc = vdupq_n_f32(0);
    float mins = 0;
    for (int64_t i = 0; i < n / OX_QK_K; i++, b++, a += 8)
        mins += k_block(b->d, b->dmin, b->scales, b->qs, NULL, a, &acc, sdot);
    return vaddvq_f32(acc) - mins;
}

static ALWAYS_INLINE float q5_k(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q5_k *b = w;
    float32x4_t acc = vdupq_n_f32(0);
    float mins = 0;
    for (int64_t i = 0; i < n / OX_QK_K; i++, b++, a += 8)
        mins += k_block(b->d, b->dmin, b->scales, b->qs, b->qh, a, &acc, sdot);
    return vaddvq_f32(acc) - mins;
}

static ALWAYS_INLINE float q6_k(int64_t n, const void *w, const ox__block_q8a *a, bool sdot)
{
    const ox__block_q6_k *b = w;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m2 = vdupq_n_u8(3);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / OX_QK_K; i++, b++) {
        float d = half(b->d);
        for (int s = 0; s < 8; s++, a++) {
            int p = s / 4, t = s % 4;
            const uint8_t *ql = b->ql + 64 * p + 32 * (t & 1), *qh = b->qh + 32 * p;
            uint8x16_t lo0 = vld1q_u8(ql), lo1 = vld1q_u8(ql + 16);
            if (t < 2) {
                lo0 = vandq_u8(lo0, m4);
                lo1 = vandq_u8(lo1, m4);
            } else {
                lo0 = vshrq_n_u8(lo0, 4);
                lo1 = vshrq_n_u8(lo1, 4);
            }
            int8x16_t shift = vdupq_n_s8((int8_t)(-2 * t));
            uint8x16_t hi0 = vandq_u8(vshlq_u8(vld1q_u8(qh), shift), m2);
            uint8x16_t hi1 = vandq_u8(vshlq_u8(vld1q_u8(qh + 16), shift), m2);
            int8x16_t w0 = signed_codes(vorrq_u8(lo0, vshlq_n_u8(hi0, 4)), 32);
            int8x16_t w1 = signed_codes(vorrq_u8(lo1, vshlq_n_u8(hi1, 4)), 32);
            /* elements 0-15 have scale 2s, 16-31 scale 2s + 1 */
            int32x4_t s0 = dot16(vdupq_n_s32(0), w0, vld1q_s8(a->qs), sdot);
            int32x4_t s1 = dot16(vdupq_n_s32(0), w1, vld1q_s8(a->qs + 16), sdot);
            int32x4_t sum = vmlaq_n_s32(vmulq_n_s32(s0, b->scales[2 * s]), s1, b->scales[2 * s + 1]);
            acc = scaled(sum, d * a->d, acc);
        }
    }
    return vaddvq_f32(acc);
}

/* Each type's two kernels: plain NEON and SDOT. */
#define KERNELS(type)                                                                   \
    static float dot_##type##_neon(int64_t n, const void *w, const ox__block_q8a *a)    \
    {                                                                                   \
        return type(n, w, a, false);                                                    \
    }                                                                                   \
    static float dot_##type##_dotprod(int64_t n, const void *w, const ox__block_q8a *a) \
    {                                                                                   \
        return type(n, w, a, true);                                                     \
    }
KERNELS(q4_0)
KERNELS(q4_1)
KERNELS(q5_0)
KERNELS(q5_1)
KERNELS(q8_0)
KERNELS(q4_k)
KERNELS(q5_k)
KERNELS(q6_k)
#undef KERNELS

/* The kernels for dtype (NULL for a dtype this file lacks); dotprod only
 * where the CPU has OX_FEATURE_ARM_DOTPROD. */
ox__qdot_fn ox__qdot_neon(ox_dtype dtype, bool dotprod)
{
#define PICK(type) return dotprod ? dot_##type##_dotprod : dot_##type##_neon
    switch (dtype) {
    case OX_DTYPE_Q4_0: PICK(q4_0);
    case OX_DTYPE_Q4_1: PICK(q4_1);
    case OX_DTYPE_Q5_0: PICK(q5_0);
    case OX_DTYPE_Q5_1: PICK(q5_1);
    case OX_DTYPE_Q8_0: PICK(q8_0);
    case OX_DTYPE_Q4_K: PICK(q4_k);
    case OX_DTYPE_Q5_K: PICK(q5_k);
    case OX_DTYPE_Q6_K: PICK(q6_k);
    default: return NULL;
    }
#undef PICK
}
