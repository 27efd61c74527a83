/* x86 dot products of quantized weight rows with 8-bit activation blocks
 * (see quant.h), included by quant_avx2.c (compiled with -mavx2 -mfma
 * -mf16c) and quant_vnni.c (with AVX-512 VL and VNNI too, OX_QUANT_VNNI),
 * each called only when the CPU has what it was compiled for. Each
 * 32-element block is unpacked to 32 bytes of codes and multiplied with the
 * activation's bytes into 8 exact 32-bit sums of 4 products (AVX2:
 * vpmaddubsw, unsigned x signed pairs into 16 bits, then vpmaddwd; VNNI:
 * one vpdpbusd; signed codes go through the sign trick), then scaled in
 * float. No sum saturates (codes are at most 127 in magnitude), so both
 * give the same integers as the scalar kernels, and the same float steps:
 * the VNNI kernels' results are the AVX2 kernels' bits. */
#include <immintrin.h>
#include <string.h>

#include "ops/quant.h"

static inline float half(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 16 bytes of nibbles as 32 codes: low nibbles first, then the high ones. */
static inline __m256i nibbles(const uint8_t *qs)
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(0xF);
    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Byte e is 0x10 where bit e of the little-endian 32 bits at qh is set. */
static inline __m256i fifth_bits(const uint8_t *qh)
{
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                            2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* 8 sums of 4 products each: unsigned codes u, signed activations a. */
static inline __m256i dot_u8(__m256i u, __m256i a)
{
#if OX_QUANT_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1));
#endif
}

/* The same for signed codes w (in [-128, 127]). */
static inline __m256i dot_i8(__m256i w, __m256i a)
{
    return dot_u8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

/* Q6_K's 32 signed codes q (in [-32, 31]) with activations a: 8 sums of 4
 * products, those of elements 0-15 times scale s0, of 16-31 times s1. */
static inline __m256i q6_scaled_dot(__m256i q, __m256i a, int8_t s0, int8_t s1)
{
#if OX_QUANT_VNNI
    __m256i sc = _mm256_inserti128_si256(_mm256_set1_epi32(s0), _mm_set1_epi32(s1), 1);
    return _mm256_mullo_epi32(dot_i8(q, a), sc);
#else
    __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q));
    __m256i sc = _mm256_inserti128_si256(_mm256_set1_epi16(s0), _mm_set1_epi16(s1), 1);
    return _mm256_madd_epi16(pairs, sc);
#endif
}

/* dot_u8 with every sum times the small positive integer sc (a K-type
 * sub-block's 6-bit scale), exact in 32 bits; vpmaddwd applies the scale
 * as it adds the pairs, which beats vpdpbusd and a 32-bit multiply (codes
 * of at most 31: no pair saturates). */
static inline __m256i dot_u8_times(__m256i u, __m256i a, int sc)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16((short)sc));
}

static inline __m256 scaled(__m256i s, float scale, __m256 acc)
{
    return _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(s), acc);
}

/* The 32-element types, one source for the one-, four- and eight-output
 * kernels: block i of weight row w decoded to 32 codes (signed for Q4_0,
 * Q5_0 and Q8_0, unsigned with a min for Q4_1 / Q5_1), then
 * per (weight row, token): the 8 integer sums, scaled into one float
 * accumulator, and for the types with a min, m d_a sum_a into a float sum.
 * Every kernel takes these steps in this order for every pair, so the
 * results do not depend on how many pairs a call computes. */
typedef struct q32_block {
    __m256i q, u; /* codes; u = |q| for the signed types */
    float d, m;   /* scale; min (0 for the signed types) */
} q32_block;

static inline bool q32_signed(ox_dtype type)
{
    return type == OX_DTYPE_Q4_0 || type == OX_DTYPE_Q5_0 || type == OX_DTYPE_Q8_0;
}

static inline __attribute__((always_inline)) q32_block q32_decode(ox_dtype type, const void *w, int64_t i)
{
    q32_block k = {.m = 0};
    if (type == OX_DTYPE_Q4_0) {
        const ox__block_q4_0 *b = (const ox__block_q4_0 *)w + i;
        k.q = _mm256_sub_epi8(nibbles(b->qs), _mm256_set1_epi8(8));
        k.d = half(b->d);
    } else if (type == OX_DTYPE_Q5_0) {
        const ox__block_q5_0 *b = (const ox__block_q5_0 *)w + i;
        k.q = _mm256_sub_epi8(_mm256_or_si256(nibbles(b->qs), fifth_bits(b->qh)),
                              _mm256_set1_epi8(16));
        k.d = half(b->d);
    } else if (type == OX_DTYPE_Q8_0) {
        const ox__block_q8_0 *b = (const ox__block_q8_0 *)w + i;
        k.q = load32(b->qs);
        k.d = half(b->d);
    } else if (type == OX_DTYPE_Q4_1) {
        const ox__block_q4_1 *b = (const ox__block_q4_1 *)w + i;
        k.q = nibbles(b->qs);
        k.d = half(b->d);
        k.m = half(b->m);
    } else {
        const ox__block_q5_1 *b = (const ox__block_q5_1 *)w + i;
        k.q = _mm256_or_si256(nibbles(b->qs), fifth_bits(b->qh));
        k.d = half(b->d);
        k.m = half(b->m);
    }
    k.u = q32_signed(type) ? _mm256_sign_epi8(k.q, k.q) : k.q;
    return k;
}

static inline __attribute__((always_inline)) void q32_step(ox_dtype type, const q32_block *k, const ox__block_q8a *a,
                            __m256 *acc, float *mins)
{
    __m256i av = load32(a->qs);
    bool sign = q32_signed(type);
    *acc = scaled(dot_u8(k->u, sign ? _mm256_sign_epi8(av, k->q) : av), k->d * a->d, *acc);
    if (!sign) *mins += k->m * a->d * (float)a->sum;
}

/* W weight rows (w, w + wstride bytes) by R tokens (a + r * stride):
 * out[R * j + r]. W and R are constants where it is inlined. */
static inline __attribute__((always_inline)) void q32_tile(ox_dtype type, int W, int R, int64_t n, const void *w, size_t wstride,
                            const ox__block_q8a *a, int64_t stride, float *out)
{
    /* even and odd blocks in two accumulators: two FMA chains, so that one
     * row alone is not bound by the FMA's latency */
    __m256 acc[2][8];
    float mins[8];
    for (int j = 0; j < W * R; j++) {
        acc[0][j] = acc[1][j] = _mm256_setzero_ps();
        mins[j] = 0;
    }
    int64_t blocks = n / OX_QK;
    for (int64_t i = 0; i < blocks; i += 2)
        for (int c = 0; c < 2 && i + c < blocks; c++) { /* constant c: registers */
            q32_block k[2];
            for (int j = 0; j < W; j++)
                k[j] = q32_decode(type, (const char *)w + j * wstride, i + c);
            for (int r = 0; r < R; r++)
                for (int j = 0; j < W; j++)
                    q32_step(type, &k[j], a + r * stride + i + c, &acc[c][R * j + r],
                             &mins[R * j + r]);
        }
    for (int j = 0; j < W * R; j++) out[j] = hsum(_mm256_add_ps(acc[0][j], acc[1][j])) + mins[j];
}


/* Q4_K / Q5_K (five: with the fifth bits), W weight rows by R tokens as
 * q32_tile lays them out. The activations of a super-block share one
 * scale (Q8_K), so its 8 sub-blocks' scaled sums add up in 32-bit integers
 * (at most 8 x 63 x 4 x 31 x 127 a lane) and meet the float scales once,
 * as llama.cpp's kernels do; the mins' terms likewise. */
static inline __attribute__((always_inline)) void k_tile(bool five, int W, int R, int64_t n,
                                                           const void *w, size_t wstride,
                                                           const ox__block_q8a *a, int64_t stride,
                                                           float *out)
{
    const size_t block_bytes = five ? sizeof(ox__block_q5_k) : sizeof(ox__block_q4_k);
    const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    __m256 acc[8];
    float mins[8];
    for (int j = 0; j < W * R; j++) {
        acc[j] = _mm256_setzero_ps();
        mins[j] = 0;
    }
    for (int64_t i = 0; i < n / OX_QK_K; i++) {
        const uint8_t *scales[2], *qs[2];
        __m256i high[2], sum[8];
        float d[2], dmin[2];
        int32_t block_mins[8];
        for (int k = 0; k < W; k++) {
            const unsigned char *blk = (const unsigned char *)w + k * wstride + (size_t)i * block_bytes;
            const ox__block_q4_k *b4 = (const ox__block_q4_k *)blk;
            const ox__block_q5_k *b5 = (const ox__block_q5_k *)blk;
            scales[k] = five ? b5->scales : b4->scales;
            qs[k] = five ? b5->qs : b4->qs;
            high[k] = five ? load32(b5->qh) : _mm256_setzero_si256();
            d[k] = half(five ? b5->d : b4->d);
            dmin[k] = half(five ? b5->dmin : b4->dmin);
        }
        for (int j = 0; j < W * R; j++) {
            sum[j] = _mm256_setzero_si256();
            block_mins[j] = 0;
        }
        for (int sb = 0; sb < 8; sb++) {
            __m256i q[2];
            int sc[2], m[2];
            for (int k = 0; k < W; k++) {
                ox__k_scale_min(scales[k], sb, &sc[k], &m[k]);
                q[k] = load32(qs[k] + 32 * (sb / 2));
                q[k] = _mm256_and_si256(sb % 2 ? _mm256_srli_epi16(q[k], 4) : q[k], m4);
                if (five) {
                    __m256i h = _mm256_srl_epi16(high[k], _mm_cvtsi32_si128(sb));
                    q[k] = _mm256_or_si256(q[k], _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
                }
            }
            for (int r = 0; r < R; r++) {
                const ox__block_q8a *ar = a + r * stride + i * 8 + sb;
                __m256i av = load32(ar->qs);
                for (int k = 0; k < W; k++) {
                    block_mins[R * k + r] += m[k] * ar->sum;
                    sum[R * k + r] = _mm256_add_epi32(sum[R * k + r], dot_u8_times(q[k], av, sc[k]));
                }
            }
        }
        for (int k = 0; k < W; k++)
            for (int r = 0; r < R; r++) {
                const ox__block_q8a *ar = a + r * stride + i * 8;
                acc[R * k + r] = scaled(sum[R * k + r], d[k] * ar->d, acc[R * k + r]);
                mins[R * k + r] += dmin[k] * ar->d * (float)block_mins[R * k + r];
            }
    }
    for (int j = 0; j < W * R; j++) out[j] = hsum(acc[j]) - mins[j];
}

/* Q6_K's codes of sub-block s (32 values in [-32, 31]). */
static inline __m256i q6_codes(const ox__block_q6_k *b, int s)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
    int p = s / 4, t = s % 4;
    __m256i lo = load32(b->ql + 64 * p + 32 * (t & 1));
    lo = _mm256_and_si256(t < 2 ? lo : _mm256_srli_epi16(lo, 4), m4);
    __m256i hi = _mm256_srl_epi16(load32(b->qh + 32 * p), _mm_cvtsi32_si128(2 * t));
    hi = _mm256_slli_epi16(_mm256_and_si256(hi, m2), 4);
    return _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32));
}

/* Q6_K, W weight rows by R tokens: as the K types above, a super-block's
 * 16 scaled sums add up in 32-bit integers (at most 8 x 4 x 32 x 127 x 128
 * a lane); elements 0-15 of sub-block s have scale 2s, 16-31 scale 2s + 1. */
static inline __attribute__((always_inline)) void q6_tile(int W, int R, int64_t n, const void *w,
                                                            size_t wstride, const ox__block_q8a *a,
                                                            int64_t stride, float *out)
{
    const ox__block_q6_k *b[2] = {w, (const ox__block_q6_k *)((const char *)w + wstride)};
    __m256 acc[8];
    for (int j = 0; j < W * R; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / OX_QK_K; i++) {
        __m256i sum[8];
        for (int j = 0; j < W * R; j++) sum[j] = _mm256_setzero_si256();
        for (int sb = 0; sb < 8; sb++) {
            __m256i q[2];
            for (int k = 0; k < W; k++) q[k] = q6_codes(&b[k][i], sb);
            for (int r = 0; r < R; r++) {
                __m256i av = load32(a[r * stride + i * 8 + sb].qs);
                for (int k = 0; k < W; k++)
                    sum[R * k + r] = _mm256_add_epi32(
                        sum[R * k + r], q6_scaled_dot(q[k], av, b[k][i].scales[2 * sb],
                                                      b[k][i].scales[2 * sb + 1]));
            }
        }
        for (int k = 0; k < W; k++) {
            float d = half(b[k][i].d);
            for (int r = 0; r < R; r++)
                acc[R * k + r] = scaled(sum[R * k + r], d * a[r * stride + i * 8].d, acc[R * k + r]);
        }
    }
    for (int j = 0; j < W * R; j++) out[j] = hsum(acc[j]);
}

/* The one-, four- and eight-output kernels of a type from its tile
 * function TILE(W, R, n, w, wstride, a, stride, out). */
#define TILE_KERNELS(name, TILE)                                                               \
    static float dot_##name(int64_t n, const void *w, const ox__block_q8a *a)                 \
    {                                                                                          \
        float out;                                                                             \
        TILE(1, 1, n, w, 0, a, 0, &out);                                                       \
        return out;                                                                            \
    }                                                                                          \
    static void dot4_##name(int64_t n, const void *w, const ox__block_q8a *a, int64_t stride, \
                            float out[4])                                                      \
    {                                                                                          \
        TILE(1, 4, n, w, 0, a, stride, out);                                                   \
    }                                                                                          \
    static void dot8_##name(int64_t n, const void *w, size_t wstride, const ox__block_q8a *a, \
                            int64_t stride, float out[8])                                      \
    {                                                                                          \
        TILE(2, 4, n, w, wstride, a, stride, out);                                             \
    }

#define Q4_K_TILE(...) k_tile(false, __VA_ARGS__)
#define Q5_K_TILE(...) k_tile(true, __VA_ARGS__)
TILE_KERNELS(q4_k, Q4_K_TILE)
TILE_KERNELS(q5_k, Q5_K_TILE)
TILE_KERNELS(q6_k, q6_tile)
#define Q4_0_TILE(...) q32_tile(OX_DTYPE_Q4_0, __VA_ARGS__)
#define Q4_1_TILE(...) q32_tile(OX_DTYPE_Q4_1, __VA_ARGS__)
#define Q5_0_TILE(...) q32_tile(OX_DTYPE_Q5_0, __VA_ARGS__)
#define Q5_1_TILE(...) q32_tile(OX_DTYPE_Q5_1, __VA_ARGS__)
#define Q8_0_TILE(...) q32_tile(OX_DTYPE_Q8_0, __VA_ARGS__)
TILE_KERNELS(q4_0, Q4_0_TILE)
TILE_KERNELS(q4_1, Q4_1_TILE)
TILE_KERNELS(q5_0, Q5_0_TILE)
TILE_KERNELS(q5_1, Q5_1_TILE)
TILE_KERNELS(q8_0, Q8_0_TILE)

ox__qdot8_fn OX_QUANT_X86(qdot8)(ox_dtype dtype)
{
    switch (dtype) {
    case OX_DTYPE_Q4_0: return dot8_q4_0;
    case OX_DTYPE_Q4_1: return dot8_q4_1;
    case OX_DTYPE_Q5_0: return dot8_q5_0;
    case OX_DTYPE_Q5_1: return dot8_q5_1;
    case OX_DTYPE_Q8_0: return dot8_q8_0;
    case OX_DTYPE_Q4_K: return dot8_q4_k;
    case OX_DTYPE_Q5_K: return dot8_q5_k;
    case OX_DTYPE_Q6_K: return dot8_q6_k;
    default: return NULL;
    }
}

ox__qdot4_fn OX_QUANT_X86(qdot4)(ox_dtype dtype)
{
    switch (dtype) {
    case OX_DTYPE_Q4_0: return dot4_q4_0;
    case OX_DTYPE_Q4_1: return dot4_q4_1;
    case OX_DTYPE_Q5_0: return dot4_q5_0;
    case OX_DTYPE_Q5_1: return dot4_q5_1;
    case OX_DTYPE_Q8_0: return dot4_q8_0;
    case OX_DTYPE_Q4_K: return dot4_q4_k;
    case OX_DTYPE_Q5_K: return dot4_q5_k;
    case OX_DTYPE_Q6_K: return dot4_q6_k;
    default: return NULL;
    }
}

ox__qdot_fn OX_QUANT_X86(qdot)(ox_dtype dtype)
{
    switch (dtype) {
    case OX_DTYPE_Q4_0: return dot_q4_0;
    case OX_DTYPE_Q4_1: return dot_q4_1;
    case OX_DTYPE_Q5_0: return dot_q5_0;
    case OX_DTYPE_Q5_1: return dot_q5_1;
    case OX_DTYPE_Q8_0: return dot_q8_0;
    case OX_DTYPE_Q4_K: return dot_q4_k;
    case OX_DTYPE_Q5_K: return dot_q5_k;
    case OX_DTYPE_Q6_K: return dot_q6_k;
    default: return NULL;
    }
}
