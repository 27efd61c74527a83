/* Quantized weights: the GGUF (ggml) block formats, bit-exact, and the
 * integer dot products the CPU matmul uses with them.
 *
 * Layouts (little-endian; "f16" is an IEEE half; element e of a block):
 *   Q4_0  {f16 d; u8 qs[16]}                x = (q - 8) d
 *   Q4_1  {f16 d, m; u8 qs[16]}             x = q d + m
 *   Q5_0  {f16 d; u8 qh[4]; u8 qs[16]}      x = (q - 16) d
 *   Q5_1  {f16 d, m; u8 qh[4]; u8 qs[16]}   x = q d + m
 *   Q8_0  {f16 d; i8 qs[32]}                x = q d
 *     32-element blocks: element e < 16 is the low nibble of qs[e], e >= 16
 *     the high nibble of qs[e - 16]; Q5's fifth bit is bit e of qh (read as
 *     one little-endian u32).
 *   Q4_K  {f16 d, dmin; u8 scales[12]; u8 qs[128]}       x = d sc_s q - dmin m_s
 *   Q5_K  {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
 *     256 elements in 8 sub-blocks s = e / 32, each with a 6-bit scale sc_s
 *     and min m_s packed in `scales` (s < 4: low 6 bits of scales[s] and
 *     scales[s + 4]; s >= 4: the nibbles of scales[s + 4], with the top two
 *     bits in bits 6-7 of scales[s - 4] and scales[s]). Element
 *     e = 64 g + 32 h + l has q in the low (h = 0) or high (h = 1) nibble of
 *     qs[32 g + l]; Q5_K adds 16 when bit 2 g + h of qh[l] is set.
 *   Q6_K  {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}  x = d sc_(e/16) (q - 32)
 *     e = 128 p + 32 t + l: low 4 bits from ql[64 p + 32 (t & 1) + l] (low
 *     nibble for t < 2, high for t >= 2), top 2 bits from bits 2t..2t+1 of
 *     qh[32 p + l].
 * Dequantization evaluates the formulas in float in this order (d sc first
 * in the K types), as ggml's reference code does. */
#ifndef OX_OPS_QUANT_H
#define OX_OPS_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/cpu_ops.h"

#define OX_QK 32   /* elements per block of the 32-element types */
#define OX_QK_K 256 /* elements per K-type super-block */

typedef struct ox__block_q4_0 {
    uint16_t d;
    uint8_t qs[OX_QK / 2];
} ox__block_q4_0;

typedef struct ox__block_q4_1 {
    uint16_t d, m;
    uint8_t qs[OX_QK / 2];
} ox__block_q4_1;

typedef struct ox__block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[OX_QK / 2];
} ox__block_q5_0;

typedef struct ox__block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[OX_QK / 2];
} ox__block_q5_1;

typedef struct ox__block_q8_0 {
    uint16_t d;
    int8_t qs[OX_QK];
} ox__block_q8_0;

typedef struct ox__block_q4_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[OX_QK_K / 2];
} ox__block_q4_k;

typedef struct ox__block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[OX_QK_K / 8];
    uint8_t qs[OX_QK_K / 2];
} ox__block_q5_k;

typedef struct ox__block_q6_k {
    uint8_t ql[OX_QK_K / 2];
    uint8_t qh[OX_QK_K / 4];
    int8_t scales[OX_QK_K / 16];
    uint16_t d;
} ox__block_q6_k;

_Static_assert(sizeof(ox__block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(ox__block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(ox__block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(ox__block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(ox__block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(ox__block_q4_k) == 144, "q4_k block");
_Static_assert(sizeof(ox__block_q5_k) == 176, "q5_k block");
_Static_assert(sizeof(ox__block_q6_k) == 210, "q6_k block");

/* Sub-block s (0..7) scale and min of a Q4_K / Q5_K block's packed scales. */
static inline void ox__k_scale_min(const uint8_t scales[12], int s, int *sc, int *m)
{
    if (s < 4) {
        *sc = scales[s] & 63;
        *m = scales[s + 4] & 63;
    } else {
        *sc = (scales[s + 4] & 0xF) | ((scales[s - 4] >> 6) << 4);
        *m = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
    }
}

/* Rows of n elements (n a multiple of the block) of a quantized dtype,
 * scalar code; dtype and n were checked by the caller. */
void ox__dequantize_row(ox_dtype dtype, const void *src, float *dst, int64_t n);
void ox__quantize_row(ox_dtype dtype, const float *src, void *dst, int64_t n);

/* The element of x[0..n) with the largest magnitude, with its sign; the
 * first of equals, 0 when all are zero, NaNs passed over. */
float ox__signed_absmax(const float *x, int n);

/* ---- the matmul's integer dot products ------------------------------------------ */

/* An activation (a row of the F32 operand) quantized to 8 bits per block
 * of 32: x ~ d qs, with sum = sum of qs (for the formats with a min and
 * the offsets of the tile kernels) and sum_lo that of qs[0..16) (Q6_K's
 * scales are per 16). |qs| <= 127, so both fit 16 bits. */
typedef struct ox__block_q8a {
    float d;
    int16_t sum, sum_lo;
    int8_t qs[OX_QK];
} ox__block_q8a;

/* The activations' rounding depends on the weights' type, as in ggml (so
 * that results track llama.cpp's): for the K types (Q8_K) one scale per
 * 256, d = -max/127 for the element of largest magnitude max, q = nearest
 * (x / d) capped at 127; for the others (Q8_0) one scale per 32,
 * d = half(max|x| / 127), q = nearest(x * 127 / max|x|). Ties round to even.
 * n is a multiple of the weights' block. */
static inline bool ox__q8a_is_k(ox_dtype weights)
{
    return weights == OX_DTYPE_Q4_K || weights == OX_DTYPE_Q5_K || weights == OX_DTYPE_Q6_K;
}
void ox__quantize_q8a(const float *src, ox__block_q8a *dst, int64_t n, ox_dtype weights);

/* dot(weight row w of n elements of the kernel's dtype, activation a). */
typedef float (*ox__qdot_fn)(int64_t n, const void *w, const ox__block_q8a *a);

/* Up to eight weight rows (w + j wstride, j < rows) by up to eight
 * activation rows (a + r stride, r < tokens): out[8 r + j] = row j . a_r.
 * A row's result is the same bits in whatever tile it is computed.
 * scratch: OX_QTILE_SCRATCH(n) bytes the kernel may use. */
typedef void (*ox__qtile_fn)(int64_t n, const void *w, size_t wstride, int rows,
                             const ox__block_q8a *a, int64_t stride, int tokens, float out[64],
                             void *scratch);
#define OX_QTILE_SCRATCH(n) ((size_t)(n) * 16 + 1024)
#define OX_QTILE_ROWS 8
#define OX_QTILE_TOKENS 8

/* Packed weights: the layout the x86 tile kernels build in registers,
 * made once (ox__qpack_rows) so that a tile loads it instead of
 * transposing eight rows block by block. Rows go in groups of eight; block
 * i of a group is 8 x the block's bytes: first
 * each half-precision field of the block (scale, then min) as eight
 * halves, row j at j, then the block's other bytes [w0, w0 + 4 words) as
 * 32-bit words, word w of the eight rows as eight words (row j at j), in
 * the order ox__qpack_slot gives.
 *
 * The groups' blocks are laid out chunk by chunk (ox__qpack_at): the
 * blocks of chunk c (elements [c C, (c + 1) C) of the rows, C =
 * OX_QPACK_CHUNK) of every group lie together, group after group, and
 * chunk c + 1 after them. A product walks the chunks in order and each
 * chunk over its groups, so that the chunk's activations stay in the
 * first-level cache while the weights stream past them: a group of eight
 * rows of 8192 elements (53 KB in Q6_K) would push a whole row's
 * activations out of a 32 KiB cache before the next group came back to
 * them. Rows whose group fits OX_QPACK_WHOLE bytes are one chunk (group
 * after group): cutting them costs calls and gains nothing. The same
 * bytes as the rows, in another order: same size, same results. */
#define OX_QPACK_CHUNK 2048  /* elements: a multiple of every block size */
#define OX_QPACK_WHOLE 24576 /* bytes: eight rows this short stay whole */

typedef struct ox__qpack_layout {
    int halves;     /* 0: the type has no packed form */
    int half_at[2]; /* the half fields' byte offsets in a block */
    int w0, words;  /* the rest: bytes [w0, w0 + 4 words) */
} ox__qpack_layout;

static inline __attribute__((always_inline)) ox__qpack_layout ox__qpack_layout_of(ox_dtype dtype)
{
    switch (dtype) {
    case OX_DTYPE_Q4_0: return (ox__qpack_layout){1, {0, 0}, 2, 4};
    case OX_DTYPE_Q4_1: return (ox__qpack_layout){2, {0, 2}, 4, 4};
    case OX_DTYPE_Q5_0: return (ox__qpack_layout){1, {0, 0}, 2, 5};
    case OX_DTYPE_Q5_1: return (ox__qpack_layout){2, {0, 2}, 4, 5};
    case OX_DTYPE_Q8_0: return (ox__qpack_layout){1, {0, 0}, 2, 8};
    case OX_DTYPE_Q4_K: return (ox__qpack_layout){2, {0, 2}, 4, 35};
    case OX_DTYPE_Q5_K: return (ox__qpack_layout){2, {0, 2}, 4, 43};
    case OX_DTYPE_Q6_K: return (ox__qpack_layout){1, {208, 0}, 0, 52};
    default: return (ox__qpack_layout){0, {0, 0}, 0, 0};
    }
}

/* Where word w (of the layout's words) of a block goes among the packed
 * words: in order, but for Q6_K, whose words are put in the order the
 * tile kernel reads them (scales, then each sub-block pair's ql and qh
 * chunks), so that a group's blocks stream through memory forwards. */
static inline __attribute__((always_inline)) int ox__qpack_slot(ox_dtype dtype, int w)
{
    if (dtype != OX_DTYPE_Q6_K) return w;
    if (w >= 48) return w - 48;     /* scales */
    if (w < 8) return 4 + w;        /* ql, half 0, chunk 0 */
    if (w < 16) return 20 + w - 8;  /* ql, half 0, chunk 1 */
    if (w < 24) return 28 + w - 16; /* ql, half 1, chunk 0 */
    if (w < 32) return 44 + w - 24; /* ql, half 1, chunk 1 */
    if (w < 40) return 12 + w - 32; /* qh, half 0 */
    return 36 + w - 40;             /* qh, half 1 */
}

/* Blocks a chunk of a packed matrix's rows of n elements (the whole
 * row where eight rows fit OX_QPACK_WHOLE bytes). */
static inline int64_t ox__qpack_chunk(ox_dtype dtype, int64_t n)
{
    const int64_t block = ox_dtype_block(dtype);
    if (8 * (int64_t)ox_dtype_row_size(dtype, n) <= OX_QPACK_WHOLE) return n / block;
    return OX_QPACK_CHUNK / block;
}

/* Byte offset of block i of group g in a packed matrix of `groups`
 * groups of rows of n elements. */
static inline size_t ox__qpack_at(ox_dtype dtype, int64_t n, int64_t groups, int64_t g, int64_t i)
{
    const int64_t blocks = n / ox_dtype_block(dtype), chunk = ox__qpack_chunk(dtype, n);
    const int64_t c0 = i / chunk * chunk, len = blocks - c0 < chunk ? blocks - c0 : chunk;
    return (size_t)(c0 * groups + g * len + i - c0) * 8 * ox_dtype_size(dtype);
}

/* Groups [g0, g1) of a matrix of `groups` groups of eight rows of n
 * elements of dtype (row r at src + r row_bytes) into their places in
 * dst, the packed matrix. Tasks may pack disjoint group ranges at once. */
void ox__qpack_groups(ox_dtype dtype, const void *src, size_t row_bytes, int64_t groups, int64_t n,
                      int64_t g0, int64_t g1, void *dst);

/* All of it: rows (a multiple of 8) rows into dst. */
void ox__qpack_rows(ox_dtype dtype, const void *src, size_t row_bytes, int64_t rows, int64_t n,
                    void *dst);

/* The file's bytes of blocks b0 .. b0 + count - 1 of row r of a packed
 * matrix of `groups` groups (rows of n elements) into dst: ox__qpack_rows
 * undone. */
void ox__qunpack_blocks(ox_dtype dtype, const void *packed, int64_t groups, int64_t n, int64_t r,
                        int64_t b0, int64_t count, void *dst);

/* A tile kernel on packed weights: one chunk (n elements) of `groups`
 * groups, their blocks one after another from `blocks`, by up to eight
 * tokens. The float accumulators carry from chunk to chunk in acc: group
 * g, row j and token r's at acc[16 tokens g + 8 r + j] and its min term's
 * 8 tokens further, zero before the first chunk; after the last, the
 * result is their sum, the bits ox__qtile_fn gives. */
typedef void (*ox__qtile_packed_fn)(int64_t n, const void *blocks, int64_t groups,
                                    const ox__block_q8a *a, int64_t stride, int tokens, float *acc);

/* Scalar kernels (quant.c), the reference for the SIMD ones. */
ox__qdot_fn ox__qdot_scalar(ox_dtype dtype);

#if defined(__x86_64__) || defined(_M_X64)
#define OX_QUANT_HAVE_X86 1
/* quant_avx2.c: needs AVX2, FMA and F16C. NULL for a dtype it lacks. */
ox__qtile_fn ox__qtile_avx2(ox_dtype dtype);
ox__qtile_packed_fn ox__qtile_packed_avx2(ox_dtype dtype);
/* ox__quantize_q8a's bytes, vectorised (blocks with a NaN or an infinity
 * take the scalar path). */
void ox__quantize_q8a_avx2(const float *src, ox__block_q8a *dst, int64_t n, ox_dtype weights);
/* quant_vnni.c: the same kernels with vpdpbusd, the same results; needs
 * AVX512F, AVX512BW, AVX512VL and AVX512VNNI besides what AVX2 needs. */
ox__qtile_fn ox__qtile_vnni(ox_dtype dtype);
ox__qtile_packed_fn ox__qtile_packed_vnni(ox_dtype dtype);
#endif

#if defined(__aarch64__)
/* NEON kernels (quant_neon.c); dotprod: use vdotq_s32 (ARMv8.2 dotprod). */
ox__qdot_fn ox__qdot_neon(ox_dtype dtype, bool dotprod);
#endif

/* quant_matmul.c: dst = a . bᵀ with b quantized ({K, N} rows, TRANS_B), a
 * F32 (TRANS_A allowed), as checked by ox_matmul. */
ox_status ox__cpu_matmul_quant(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                               const ox__view *b, unsigned flags);

/* Whether the kernels chosen for dtype with these feature bits take
 * packed rows (ox__qpack_rows). */
bool ox__cpu_quant_packed(ox_dtype dtype, uint64_t features);

/* Name of the dot kernels used with these feature bits: "avx2" or "scalar". */
const char *ox__cpu_quant_kernels(uint64_t features);

#endif /* OX_OPS_QUANT_H */
