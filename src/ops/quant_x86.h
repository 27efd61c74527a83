/* x86 tile kernels of the quantized matmul: eight weight rows by up to
 * eight 8-bit activation rows (see quant.h), included by quant_avx2.c
 * (compiled with -mavx2 -mfma -mf16c) and quant_vnni.c (with AVX-512 VL and
 * VNNI too, OX_QUANT_VNNI), each called only when the CPU has what it was
 * compiled for. The integer sums are exact (vpdpbusd, or vpmaddubsw then
 * vpmaddwd where no pair can saturate) and the float steps the same in
 * both, so the VNNI kernels' results are the AVX2 kernels' bits. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "ops/quant.h"

/* s + the 8 sums of 4 products each: unsigned codes u, signed activations
 * a (without VNNI no 16-bit pair may saturate: u at most 127, or 255 with
 * |a| small enough; the callers' codes are at most 63, Q8_0's 255 only
 * with VNNI). */
static inline __m256i dot_u8_acc(__m256i s, __m256i u, __m256i a)
{
#if OX_QUANT_VNNI
    return _mm256_dpbusd_epi32(s, u, a);
#else
    return _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)));
#endif
}

static inline __m256i dot_u8(__m256i u, __m256i a)
{
    return dot_u8_acc(_mm256_setzero_si256(), u, a);
}

/* The same for signed codes w (in [-128, 127]). */
static inline __m256i dot_i8(__m256i w, __m256i a)
{
    return dot_u8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

/* The 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) run as tiles of
 * eight weight rows by up to eight tokens, with the weight rows in the
 * vector lanes: block i of the eight rows is decoded and transposed into
 * eight vectors, c[g] holding elements 4g..4g+3 of each row as unsigned
 * bytes, so that one vpdpbusd with the token's activation bytes 4g..4g+3
 * broadcast adds four products to each row's sum. A token's block then costs eight integer
 * instructions and one scaling for eight rows, where a row-at-a-time
 * kernel pays a horizontal sum and a scaling per row; the decoding is
 * shared by the tile's tokens. This is the layout llama.cpp repacks its
 * weights into at load time, built here in registers from the file's
 * layout, so the weights need no second copy.
 *
 * The signed types are stored as unsigned codes q + off (Q4_0 8, Q5_0 16,
 * Q8_0 128) and the offset comes back as -off sum(a) in the integer sum.
 * Per row and token the float steps are, block after block,
 * acc = fma(float(sum), d_w d_a, acc), and for the types with a min
 * accm = fma(m_w, d_a float(sum(a)), accm); the result is acc + accm. A
 * row's result so does not depend on the tile it was computed in. */
#if OX_QUANT_VNNI
#define QT_STEP 8 /* tokens a pass: the 32 AVX-512 registers hold eight accumulators */
#else
#define QT_STEP 4
#endif

/* Eight rows read at once are eight short streams (a row is a few KB),
 * too short for the hardware's prefetchers to learn: so while a tile works
 * on bytes [at, at + bytes) of its rows (row_bytes long), it fetches
 * QT_AHEAD bytes further, and near a row's end the start of the same row
 * of the next tile (w + 8 wstride on; past the matrix's end a prefetch is
 * a no-op). */
#define QT_AHEAD 512
static inline void qt_prefetch(const unsigned char *const row[8], size_t wstride, size_t at,
                               size_t bytes, size_t row_bytes)
{
    size_t to = at + QT_AHEAD;
    for (int j = 0; j < 8; j++)
        for (size_t b = 0; b < bytes; b += 64)
            _mm_prefetch((const char *)row[j] + (to + b < row_bytes ? to + b : 8 * wstride + to + b - row_bytes),
                         _MM_HINT_T0);
}

/* A packed group's block i (8 rows x bytes, contiguous) is one stream
 * read in order, too busy a loop for the core to keep enough loads in
 * flight on its own: fetch the same span QT_PACKED_AHEAD bytes further.
 * bench_quant --packed, 2048 x 5632 and 5632 x 2048, Zen 3, alternated
 * with none / 4096 / 8192 (two rounds each, % of the same run's read
 * bandwidth): 1 thread Q6_K 67-77% -> 78-96%, Q4_0 80-91% -> 97-102%,
 * Q8_0 89-106% -> 92-99%; 2 threads Q4_0 79-83% -> 89-106%, Q8_0 86-92%
 * -> 97-107%, Q6_K 68-85% -> 69-88%. 4096 and 8192 were as good for some
 * types and worse for others. */
#define QT_PACKED_AHEAD 2048
static inline __attribute__((always_inline)) void qt_prefetch_packed(const unsigned char *pk, size_t bytes)
{
    for (size_t b = 0; b < 8 * bytes; b += 64)
        _mm_prefetch((const char *)pk + QT_PACKED_AHEAD + b, _MM_HINT_T0);
}

/* The sum in a register here: an empty asm the compiler cannot see
 * through, so that it adds each unrolled step as it comes instead of
 * keeping all their products alive until the end (GCC otherwise sank
 * Q6_K's 16 products a super-block past the loop and spilled them). */
static inline __attribute__((always_inline)) void qt_keep(__m256i *v)
{
    __asm__("" : "+x"(*v));
}

typedef struct qt_block {
    __m256i c[8]; /* codes, lane j = row j; for Q8_0 without VNNI the signed codes */
    __m256 d, m;  /* rows' scales and mins */
} qt_block;

static inline int qt_offset(ox_dtype type)
{
    return type == OX_DTYPE_Q4_0 ? 8 : type == OX_DTYPE_Q5_0 ? 16 : type == OX_DTYPE_Q8_0 ? 128 : 0;
}

/* A block's bytes (a super-block's for the K types), a constant where inlined. */
static inline size_t qt_block_bytes(ox_dtype type)
{
    switch (type) {
    case OX_DTYPE_Q4_0: return sizeof(ox__block_q4_0);
    case OX_DTYPE_Q4_1: return sizeof(ox__block_q4_1);
    case OX_DTYPE_Q5_0: return sizeof(ox__block_q5_0);
    case OX_DTYPE_Q5_1: return sizeof(ox__block_q5_1);
    case OX_DTYPE_Q4_K: return sizeof(ox__block_q4_k);
    case OX_DTYPE_Q5_K: return sizeof(ox__block_q5_k);
    case OX_DTYPE_Q6_K: return sizeof(ox__block_q6_k);
    default: return sizeof(ox__block_q8_0);
    }
}

/* 16 bytes at p[j] + off for the eight rows j, as four vectors: v[g]
 * holds bytes 4g..4g+3 of row j in lane j. */
static inline void qt_transpose16(const unsigned char *const p[8], size_t off, __m256i v[4])
{
    __m256i y[4];
    for (int k = 0; k < 4; k++)
        y[k] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p[k] + off))),
            _mm_loadu_si128((const __m128i *)(p[k + 4] + off)), 1);
    __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    /* lanes are now rows 0-3 | 4-7: unpack gives [r0 r1 r2 r3 | r4 r5 r6 r7] */
    v[0] = _mm256_unpacklo_epi64(t0, t2);
    v[1] = _mm256_unpackhi_epi64(t0, t2);
    v[2] = _mm256_unpacklo_epi64(t1, t3);
    v[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* The lanes' 32-bit little-endian words at p[j] + off. */
static inline __m256i qt_words(const unsigned char *const p[8], size_t off)
{
    int32_t x[8];
    for (int j = 0; j < 8; j++) memcpy(&x[j], p[j] + off, sizeof x[j]);
    return _mm256_setr_epi32(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]);
}

/* The lanes' halves at p[j] + off, as floats. */
static inline __m256 qt_halves(const unsigned char *const p[8], size_t off)
{
    uint16_t x[8];
    for (int j = 0; j < 8; j++) memcpy(&x[j], p[j] + off, sizeof x[j]);
    return _mm256_cvtph_ps(_mm_setr_epi16((short)x[0], (short)x[1], (short)x[2], (short)x[3],
                                          (short)x[4], (short)x[5], (short)x[6], (short)x[7]));
}

/* Where a tile reads block i of its eight rows: the rows as the file lays
 * them out (p[j]: row j's block) or packed (pk: the group's block, in
 * ox__qpack_rows' layout). `packed` is a constant where the kernels are
 * inlined, so each form compiles to its own loads. */
typedef struct qt_at {
    bool packed;
    const unsigned char *p[8];
    const unsigned char *pk;
} qt_at;

/* A tile's weights: eight rows (row[j], wstride bytes apart but for the
 * repeated last one of a partial tile) or one packed group. */
typedef struct qt_src {
    bool packed;
    const unsigned char *row[8];
    size_t wstride;
    const unsigned char *group;
} qt_src;

static inline __attribute__((always_inline)) qt_at qt_block_at(const qt_src *w, size_t bytes,
                                                               int64_t i)
{
    qt_at b = {.packed = w->packed};
    if (w->packed) b.pk = w->group + (size_t)i * 8 * bytes;
    else
        for (int j = 0; j < 8; j++) b.p[j] = w->row[j] + (size_t)i * bytes;
    return b;
}

/* The packed bytes of the block's word at byte `off` (for the eight rows) */
static inline __attribute__((always_inline)) size_t qp_word(ox_dtype type, size_t off)
{
    const ox__qpack_layout L = ox__qpack_layout_of(type);
    return 16 * (size_t)L.halves + 32 * (size_t)ox__qpack_slot(type, (int)(off - (size_t)L.w0) / 4);
}

/* the 32-bit words at byte off of the eight rows' blocks, lane j = row j */
static inline __attribute__((always_inline)) __m256i at_words(ox_dtype type, const qt_at *b, size_t off)
{
    if (b->packed) return _mm256_loadu_si256((const __m256i *)(b->pk + qp_word(type, off)));
    return qt_words(b->p, off);
}

/* the half at byte off of the eight rows' blocks, as floats */
static inline __attribute__((always_inline)) __m256 at_halves(ox_dtype type, const qt_at *b, size_t off)
{
    if (b->packed) {
        const ox__qpack_layout L = ox__qpack_layout_of(type);
        int h = L.halves > 1 && (int)off == L.half_at[1];
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b->pk + 16 * h)));
    }
    return qt_halves(b->p, off);
}

/* qt_transpose16 of the eight rows' blocks at byte off */
static inline __attribute__((always_inline)) void at_transpose16(ox_dtype type, const qt_at *b,
                                                                 size_t off, __m256i v[4])
{
    if (b->packed) {
        for (int g = 0; g < 4; g++) v[g] = at_words(type, b, off + 4 * (size_t)g);
        return;
    }
    qt_transpose16(b->p, off, v);
}

/* 0x10 in byte b of each lane where bit 4g + b of the lane's word qh is set. */
static inline __m256i qt_fifth(__m256i qh, int g)
{
    const int k = g / 2; /* the byte that holds bits 4g..4g+3 */
    const __m256i spread = _mm256_setr_epi8(
        k, k, k, k, 4 + k, 4 + k, 4 + k, 4 + k, 8 + k, 8 + k, 8 + k, 8 + k, 12 + k, 12 + k, 12 + k,
        12 + k, k, k, k, k, 4 + k, 4 + k, 4 + k, 4 + k, 8 + k, 8 + k, 8 + k, 8 + k, 12 + k, 12 + k,
        12 + k, 12 + k);
    const __m256i bit = _mm256_set1_epi32(g % 2 ? (int)0x80402010 : 0x08040201);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(qh, spread), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

static inline __attribute__((always_inline)) qt_block qt_decode(ox_dtype type, const qt_at *p)
{
    qt_block k;
    bool has_min = type == OX_DTYPE_Q4_1 || type == OX_DTYPE_Q5_1;
    bool five = type == OX_DTYPE_Q5_0 || type == OX_DTYPE_Q5_1;
    k.d = at_halves(type, p, 0);
    k.m = has_min ? at_halves(type, p, 2) : _mm256_setzero_ps();
    if (type == OX_DTYPE_Q8_0) {
        at_transpose16(type, p, offsetof(ox__block_q8_0, qs), k.c);
        at_transpose16(type, p, offsetof(ox__block_q8_0, qs) + 16, k.c + 4);
#if OX_QUANT_VNNI
        for (int g = 0; g < 8; g++) k.c[g] = _mm256_xor_si256(k.c[g], _mm256_set1_epi8((char)0x80));
#endif
        return k;
    }
    size_t qs = has_min ? 4 : 2, qh = qs;
    if (five) qs += 4;
    __m256i v[4], m4 = _mm256_set1_epi8(0xF);
    at_transpose16(type, p, qs, v);
    for (int g = 0; g < 4; g++) {
        k.c[g] = _mm256_and_si256(v[g], m4);
        k.c[4 + g] = _mm256_and_si256(_mm256_srli_epi16(v[g], 4), m4);
    }
    if (five) {
        __m256i h = at_words(type, p, qh);
        for (int g = 0; g < 8; g++) k.c[g] = _mm256_or_si256(k.c[g], qt_fifth(h, g));
    }
    return k;
}

static inline __m256i qt_bcast(const int8_t *p)
{
    int32_t x;
    memcpy(&x, p, sizeof x);
    return _mm256_set1_epi32(x);
}

/* The sums of 4 products, codes c[g] by a's bytes 4g..4g+3, for g in
 * [g0, g1), added to s; with VNNI one vpdpbusd a group. Without, vpmaddubsw
 * then vpmaddwd by mul: 16-bit factors, 1 or a scale in both halves of a
 * lane (no pair saturates: codes are at most 63). */
static inline __m256i kt_dot(const __m256i *c, const int8_t *a, int g0, int g1, __m256i s,
                             __m256i mul)
{
    /* two chains, even and odd groups: half the latency of one */
    __m256i t = _mm256_setzero_si256();
    for (int g = g0; g < g1; g++) {
        __m256i av = qt_bcast(a + 4 * g), *x = (g - g0) % 2 ? &t : &s;
#if OX_QUANT_VNNI
        (void)mul;
        *x = _mm256_dpbusd_epi32(*x, c[g], av);
#else
        *x = _mm256_add_epi32(*x, _mm256_madd_epi16(_mm256_maddubs_epi16(c[g], av), mul));
#endif
    }
    return _mm256_add_epi32(s, t);
}

/* One token's block a against the decoded block k of the eight rows. */
static inline __attribute__((always_inline)) void qt_token(ox_dtype type, const qt_block *k,
                                                           const ox__block_q8a *a, __m256 *acc,
                                                           __m256 *accm)
{
    int off = qt_offset(type);
    __m256i s = _mm256_set1_epi32(-off * a->sum);
    if (!OX_QUANT_VNNI && type == OX_DTYPE_Q8_0) {
        /* codes 0..255 would saturate vpmaddubsw's pairs: the sign trick */
        s = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            __m256i av = qt_bcast(a->qs + 4 * g);
            s = _mm256_add_epi32(s, dot_i8(k->c[g], av));
        }
    } else {
        s = kt_dot(k->c, a->qs, 0, 8, s, _mm256_set1_epi16(1));
    }
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(k->d, _mm256_set1_ps(a->d)), *acc);
    if (type == OX_DTYPE_Q4_1 || type == OX_DTYPE_Q5_1)
        *accm = _mm256_fmadd_ps(k->m, _mm256_set1_ps(a->d * (float)a->sum), *accm);
}

/* The eight rows of w by R tokens a + r stride: out[OX_QTILE_ROWS r + j].
 * R is a constant where it is inlined. Packed rows are one stream, which
 * the hardware prefetches by itself; they come a chunk at a time, the
 * accumulators carried in cacc[8 r + j] and caccm (ox__qtile_packed_fn),
 * and out is not written. */
static inline __attribute__((always_inline)) void qt_tile(ox_dtype type, int R, int64_t n,
                                                          const qt_src *w, const ox__block_q8a *a,
                                                          int64_t stride, float *out, float *cacc,
                                                          float *caccm)
{
    __m256 acc[QT_STEP], accm[QT_STEP];
    for (int r = 0; r < R; r++) {
        acc[r] = w->packed ? _mm256_loadu_ps(cacc + 8 * r) : _mm256_setzero_ps();
        accm[r] = w->packed ? _mm256_loadu_ps(caccm + 8 * r) : _mm256_setzero_ps();
    }
    const size_t bytes = qt_block_bytes(type);
    for (int64_t i = 0; i < n / OX_QK; i++) {
        if (!w->packed) qt_prefetch(w->row, w->wstride, (size_t)i * bytes, bytes, (size_t)n / OX_QK * bytes);
        qt_at b = qt_block_at(w, bytes, i);
        if (w->packed) qt_prefetch_packed(b.pk, bytes);
        qt_block k = qt_decode(type, &b);
        for (int r = 0; r < R; r++) qt_token(type, &k, a + r * stride + i, &acc[r], &accm[r]);
    }
    for (int r = 0; r < R; r++) {
        if (w->packed) {
            _mm256_storeu_ps(cacc + 8 * r, acc[r]);
            _mm256_storeu_ps(caccm + 8 * r, accm[r]);
        } else {
            _mm256_storeu_ps(out + OX_QTILE_ROWS * r, _mm256_add_ps(acc[r], accm[r]));
        }
    }
}


/* The K types in the same tiles: a super-block of 256 is 8 sub-blocks of
 * 32, each decoded for the eight rows into eight code vectors as above.
 * Q4_K / Q5_K: a token's sub-block sums (vpdpbusd) times the rows' 6-bit
 * sub-block scales add up in 32-bit integers over the super-block (at most
 * 8 x 63 x 32 x 31 x 127 a lane), the mins' terms sum_s m_s sum(a_s)
 * likewise (vpmaddwd of 16-bit pairs), and they meet the float scales
 * once a super-block: acc = fma(float(isum), d_w d_a, acc), then
 * acc = fnma(float(imin), dmin_w d_a, acc). Q6_K: codes + 32 as unsigned
 * bytes, each 16-element half's sum starting at -32 sum(a_half) and times
 * its signed 8-bit scale, then acc = fma(float(isum), d_w d_a, acc). */

/* Bit s of each byte of v moved to bit 4 (the other bits anywhere). */
static inline __attribute__((always_inline)) __m256i kt_to_bit4(__m256i v, int s)
{
    return s < 4 ? _mm256_slli_epi16(v, 4 - s) : s > 4 ? _mm256_srli_epi16(v, s - 4) : v;
}

/* Q6_K's codes + 32 of one group of four values: lo / hi the transposed ql
 * and qh bytes, k the nibble (0 low, 1 high), tt the sub-block's position
 * in its half (its high bits are bits 2 tt and 2 tt + 1 of qh, shifted
 * straight to bits 4 and 5: 16-bit shifts, what crosses from the
 * neighbouring byte falls outside the mask). */
static inline __attribute__((always_inline)) __m256i kt_q6_code(__m256i lo, __m256i hi, int k, int tt)
{
    __m256i l = _mm256_and_si256(k ? _mm256_srli_epi16(lo, 4) : lo, _mm256_set1_epi8(0xF));
    __m256i u = tt == 3 ? _mm256_srli_epi16(hi, 2) : tt == 2 ? hi : _mm256_slli_epi16(hi, 4 - 2 * tt);
    return _mm256_or_si256(l, _mm256_and_si256(u, _mm256_set1_epi8(0x30)));
}

/* The sub-blocks sb[0], sb[1] of super-block i of the eight rows, two
 * that share their bytes (Q4_K / Q5_K: 2q, 2q + 1, the low and high
 * nibbles of one 32-byte chunk; Q6_K: t and t + 2 of half h, q = 2h + t,
 * the nibbles of one ql chunk, with the same qh), transposed once for both:
 * c[k][g] = elements 4g..4g+3 of sub-block sb[k] of each row, unsigned
 * (Q6_K: + 32). */
static inline __attribute__((always_inline)) void kt_codes(ox_dtype type, const qt_at *p, int q,
                                                           int sb[2], __m256i c[2][8])
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    if (type == OX_DTYPE_Q6_K) {
        int h = q / 2, t = q % 2;
        sb[0] = 4 * h + t;
        sb[1] = 4 * h + t + 2;
        size_t ql = offsetof(ox__block_q6_k, ql) + 64 * h + 32 * t;
        size_t qh = offsetof(ox__block_q6_k, qh) + 32 * h;
        __m256i lo[8], hi[8];
        at_transpose16(type, p, ql, lo);
        at_transpose16(type, p, ql + 16, lo + 4);
        at_transpose16(type, p, qh, hi);
        at_transpose16(type, p, qh + 16, hi + 4);
        for (int k = 0; k < 2; k++)
            for (int g = 0; g < 8; g++) c[k][g] = kt_q6_code(lo[g], hi[g], k, t + 2 * k);
        return;
    }
    bool five = type == OX_DTYPE_Q5_K;
    sb[0] = 2 * q;
    sb[1] = 2 * q + 1;
    size_t qs = (five ? offsetof(ox__block_q5_k, qs) : offsetof(ox__block_q4_k, qs)) + 32 * q;
    /* Q5_K: bit 4 of element l of sub-block s is bit s of qh[l], shifted
     * straight there (16-bit shifts: what crosses from the neighbouring
     * byte misses bit 4). Four code vectors at a time, so that few
     * registers are live. */
    const __m256i m10 = _mm256_set1_epi8(0x10);
    for (int half = 0; half < 2; half++) {
        __m256i v[4], h[4];
        at_transpose16(type, p, qs + 16 * (size_t)half, v);
        if (five) at_transpose16(type, p, offsetof(ox__block_q5_k, qh) + 16 * (size_t)half, h);
        for (int g = 0; g < 4; g++) {
            __m256i lo = _mm256_and_si256(v[g], m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v[g], 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_and_si256(kt_to_bit4(h[g], sb[0]), m10));
                hi = _mm256_or_si256(hi, _mm256_and_si256(kt_to_bit4(h[g], sb[1]), m10));
            }
            c[0][4 * half + g] = lo;
            c[1][4 * half + g] = hi;
        }
    }
}

/* Byte k of each lane of v as a 32-bit lane (the scale of a sub-block). */
static inline __m256i kt_byte(__m256i v, int k)
{
    return _mm256_and_si256(_mm256_srli_epi32(v, 8 * k), _mm256_set1_epi32(0xFF));
}

/* Q6_K's signed scale of 16-element half 2 sb + part as 32-bit lanes (sc:
 * kt_scales' four words, bytes 4q..4q+3 in word q). */
static inline __m256i kt_q6_scale(const __m256i sc[4], int sb, int part)
{
    __m256i s = kt_byte(sc[sb / 2], 2 * (sb % 2) + part);
    return _mm256_srai_epi32(_mm256_slli_epi32(s, 24), 24);
}

/* The eight rows' scales of a super-block from their scale bytes as
 * 32-bit words, lane j = row j (w[q]: bytes 4q..4q+3 of the scales):
 * Q4_K / Q5_K 6-bit, byte k of sc[h] / mn[h] that of sub-block 4h + k
 * (llama.cpp's unpacking of the 12 bytes, lane-wise); Q6_K the 16 signed
 * bytes as four words in sc. */
static inline __attribute__((always_inline)) void kt_scales(ox_dtype type, const __m256i w[4],
                                                            __m256i sc[4], __m256i mn[2])
{
    mn[0] = mn[1] = _mm256_setzero_si256();
    if (type == OX_DTYPE_Q6_K) {
        for (int q = 0; q < 4; q++) sc[q] = w[q];
        return;
    }
    const __m256i s0 = w[0], s1 = w[1], s2 = w[2];
    const __m256i m6 = _mm256_set1_epi8(0x3F), m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
    sc[0] = _mm256_and_si256(s0, m6);
    mn[0] = _mm256_and_si256(s1, m6);
    sc[1] = _mm256_or_si256(_mm256_and_si256(s2, m4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(s0, 6), m2), 4));
    mn[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(s2, 4), m4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(s1, 6), m2), 4));
}

/* The scale words of kt_scales read from the rows' blocks p[j]. */
static inline __attribute__((always_inline)) void kt_scale_words(ox_dtype type, const qt_at *p,
                                                                 __m256i w[4])
{
    size_t at = type == OX_DTYPE_Q6_K ? offsetof(ox__block_q6_k, scales)
                                      : offsetof(ox__block_q4_k, scales); /* the same in Q5_K */
    for (int q = 0; q < (type == OX_DTYPE_Q6_K ? 4 : 3); q++) w[q] = at_words(type, p, at + 4 * q);
}

/* A super-block's float steps for R tokens (a + r stride its first
 * activation block), from the rows' exact integer sums isum[r] and their
 * steps d (and dmin, Q4_K / Q5_K), lane j = row j. */
static inline __attribute__((always_inline)) void kt_finish(ox_dtype type, int R, __m256 d, __m256 dmin,
                                                            const ox__block_q8a *a, int64_t stride,
                                                            const __m256i mn[2],
                                                            const __m256i isum[], __m256 acc[])
{
    if (type == OX_DTYPE_Q6_K) {
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]),
                                     _mm256_mul_ps(d, _mm256_set1_ps(a[r * stride].d)), acc[r]);
        return;
    }
    /* mins: 16-bit pairs (m_k, m_k+2) of sub-blocks 4h + k, by the pairs of sums */
    const __m256i lo = _mm256_set1_epi32(0x00FF00FF);
    __m256i mp[4] = {_mm256_and_si256(mn[0], lo), _mm256_and_si256(_mm256_srli_epi32(mn[0], 8), lo),
                     _mm256_and_si256(mn[1], lo), _mm256_and_si256(_mm256_srli_epi32(mn[1], 8), lo)};
    for (int r = 0; r < R; r++) {
        const ox__block_q8a *ar = a + r * stride;
        __m256i imin = _mm256_setzero_si256();
        for (int q = 0; q < 4; q++) {
            int s = 4 * (q / 2) + q % 2; /* sub-blocks s and s + 2 */
            uint32_t pair = (uint16_t)ar[s].sum | (uint32_t)(uint16_t)ar[s + 2].sum << 16;
            imin = _mm256_add_epi32(imin, _mm256_madd_epi16(mp[q], _mm256_set1_epi32((int)pair)));
        }
        __m256 da = _mm256_set1_ps(ar->d);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_mul_ps(d, da), acc[r]);
        acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(dmin, da), acc[r]);
    }
}

/* Q6_K's integer sums of one super-block for R tokens (a: their first
 * activation block, stride apart) into isum, for AVX2's 16 registers:
 * kt_codes decodes two sub-blocks' 16 code vectors at once (spilled here,
 * 236 stack references in the one-token kernel), so this decodes a
 * quarter at a time, elements 16 part .. 16 part + 15 of sub-blocks t and
 * t + 2 of half h (one load of ql and qh for both), and adds that
 * 16-element half's sum times its scale at once. The sums are exact, so
 * the order does not change a bit. */
static inline __attribute__((always_inline)) void kt_q6_quarters(const qt_at *p, const __m256i sc[4],
                                                                 const ox__block_q8a *a, int64_t stride,
                                                                 int R, __m256i isum[])
{
    const ox_dtype type = OX_DTYPE_Q6_K;
    const __m256i one = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        const int h = q / 2, t = q % 2;
        const int sb[2] = {4 * h + t, 4 * h + t + 2};
#pragma GCC unroll 2
        for (int part = 0; part < 2; part++) {
            __m256i lo[4], hi[4];
            at_transpose16(type, p, offsetof(ox__block_q6_k, ql) + 64 * (size_t)h + 32 * (size_t)t + 16 * (size_t)part, lo);
            at_transpose16(type, p, offsetof(ox__block_q6_k, qh) + 32 * (size_t)h + 16 * (size_t)part, hi);
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                __m256i c[4];
                for (int g = 0; g < 4; g++) c[g] = kt_q6_code(lo[g], hi[g], k, t + 2 * k);
                __m256i scale = kt_q6_scale(sc, sb[k], part);
                for (int r = 0; r < R; r++) {
                    const ox__block_q8a *ar = a + r * stride + sb[k];
                    int sum = part ? ar->sum - ar->sum_lo : ar->sum_lo;
                    __m256i hs = kt_dot(c, ar->qs + 16 * part, 0, 4, _mm256_set1_epi32(-32 * sum), one);
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_mullo_epi32(hs, scale));
                    qt_keep(&isum[r]);
                }
            }
        }
    }
}

/* As qt_tile; the K types have no min term to carry (caccm stays 0). */
static inline __attribute__((always_inline)) void kt_tile(ox_dtype type, int R, int64_t n,
                                                          const qt_src *w, const ox__block_q8a *a,
                                                          int64_t stride, float *out, float *cacc)
{
    const bool six = type == OX_DTYPE_Q6_K;
    /* AVX2's 16 registers: Q6_K a quarter super-block at a time */
    const bool quarters = six && !OX_QUANT_VNNI;
    const size_t bytes = qt_block_bytes(type);
    __m256 acc[QT_STEP];
    for (int r = 0; r < R; r++) acc[r] = w->packed ? _mm256_loadu_ps(cacc + 8 * r) : _mm256_setzero_ps();
    for (int64_t i = 0; i < n / OX_QK_K; i++) {
        qt_at b = qt_block_at(w, bytes, i), *p = &b;
        if (!w->packed) qt_prefetch(w->row, w->wstride, (size_t)i * bytes, bytes, (size_t)n / OX_QK_K * bytes);
        else qt_prefetch_packed(b.pk, bytes);
        __m256i isum[QT_STEP];
        for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
        __m256i sc[4], mn[2], cc[2][8];
        int sbs[2];
        __m256i words[4];
        kt_scale_words(type, p, words);
        kt_scales(type, words, sc, mn);
        if (quarters) kt_q6_quarters(p, sc, a + i * 8, stride, R, isum);
        /* unrolled: every index below a constant, the codes in registers */
#pragma GCC unroll 8
        for (int pair = 0; pair < 8 && !quarters; pair++) {
            if (pair % 2 == 0) kt_codes(type, p, pair / 2, sbs, cc);
            const int sb = sbs[pair % 2];
            const __m256i *c = cc[pair % 2];
            if (six) {
                /* halves 2 sb and 2 sb + 1: signed scales, the +32 offset in the start */
                __m256i s0 = kt_q6_scale(sc, sb, 0), s1 = kt_q6_scale(sc, sb, 1);
                const __m256i one = _mm256_set1_epi16(1);
                for (int r = 0; r < R; r++) {
                    const ox__block_q8a *ar = a + r * stride + i * 8 + sb;
                    __m256i h0 = kt_dot(c, ar->qs, 0, 4, _mm256_set1_epi32(-32 * ar->sum_lo), one);
                    __m256i h1 = kt_dot(c, ar->qs, 4, 8, _mm256_set1_epi32(-32 * (ar->sum - ar->sum_lo)), one);
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(_mm256_mullo_epi32(h0, s0),
                                                                         _mm256_mullo_epi32(h1, s1)));
                    qt_keep(&isum[r]);
                }
            } else {
                __m256i scale = kt_byte(sc[sb / 4], sb % 4);
                for (int r = 0; r < R; r++) {
                    const ox__block_q8a *ar = a + r * stride + i * 8 + sb;
#if OX_QUANT_VNNI
                    __m256i s = kt_dot(c, ar->qs, 0, 8, _mm256_setzero_si256(), scale);
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_mullo_epi32(s, scale));
#else
                    __m256i sc16 = _mm256_or_si256(scale, _mm256_slli_epi32(scale, 16));
                    isum[r] = kt_dot(c, ar->qs, 0, 8, isum[r], sc16);
#endif
                    qt_keep(&isum[r]);
                }
            }
        }
        __m256 d = at_halves(type, p, six ? offsetof(ox__block_q6_k, d) : 0);
        __m256 dmin = six ? _mm256_setzero_ps() : at_halves(type, p, 2);
        kt_finish(type, R, d, dmin, a + i * 8, stride, mn, isum, acc);
    }
    for (int r = 0; r < R; r++) _mm256_storeu_ps((w->packed ? cacc + 8 * r : out + OX_QTILE_ROWS * r), acc[r]);
}

/* Decoding (one or two tokens) reads each weight byte for one token only,
 * so the transposition above is not paid back there: these kernels take
 * the rows one by one as the vector's 32 bytes, the products of a row in
 * eight lanes, and reduce the eight rows' vectors into the tile's layout
 * (lane j = row j) once a block (a super-block for the K types). The
 * integer sums are exact either way and the float steps are the tile
 * kernels', so a row's result has the same bits from both. */

/* lane j = the sum of p[j]'s eight lanes */
static inline __m256i rt_reduce(const __m256i p[8])
{
    __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i q0 = _mm256_hadd_epi32(h01, h23), q1 = _mm256_hadd_epi32(h45, h67);
    /* q0 = [row 0-3, elements 0-3 | rows 0-3, elements 4-7], q1 rows 4-7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20),
                            _mm256_permute2x128_si256(q0, q1, 0x31));
}

/* 16 bytes of nibbles as 32 codes: low nibbles first, then the high ones
 * (the bytes in both halves, the upper half shifted by 4). */
static inline __m256i rt_nibbles(const unsigned char *qs)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    v = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(0xF));
}

/* Byte e is 0x10 where bit e of the little-endian 32 bits at qh is set. */
static inline __m256i rt_fifth(const unsigned char *qh)
{
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
#if OX_QUANT_VNNI /* AVX512BW: the bits as a byte mask */
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10));
#else
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
                                            2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
#endif
}

/* Q6_K's codes of sub-block s + 32 (32 values in [0, 63]). */
static inline __m256i rt_q6_codes(const ox__block_q6_k *b, int s)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
    int h = s / 4, t = s % 4;
    __m256i lo = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (t & 1)));
    lo = _mm256_and_si256(t < 2 ? lo : _mm256_srli_epi16(lo, 4), m4);
    __m256i hi = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)), 2 * t);
    return _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hi, m2), 4));
}

/* Pass one: the rows one after another, a single stream through memory as
 * the rows lie (eight rows read side by side are eight short streams that
 * the hardware's prefetchers do not learn). For the 32-element types a
 * row's products with token r for eight blocks reduce to one vector (lane
 * b = block i0 + b) at prod[(i0 / 8 * R + r) * 8 + j]; for the K
 * types one vector of eight lanes a super-block, the sub-blocks' sums
 * times their scales, at prod[(i * R + r) * 8 + j]. Pass two: block
 * by block the eight rows' sums in the tile's layout (lane j = row j), by
 * an 8 x 8 transposition or a reduction, and the float steps. */

/* Pass two reads no weights, and the memory would idle through it: its
 * step k fetches lines RT_LINES k .. RT_LINES (k + 1) - 1 of the next tile
 * (the rows after these eight), the start of pass one's next stream. */
#define RT_LINES 16
static inline void rt_prefetch_next(const unsigned char *const row[8], size_t wstride, int64_t k)
{
    const char *next = (const char *)row[0] + 8 * wstride + 64 * RT_LINES * k;
    for (int l = 0; l < RT_LINES; l++) _mm_prefetch(next + 64 * l, _MM_HINT_T0);
}

/* the 8 x 8 transposition of 32-bit lanes: v[b] lane j = in v[j] lane b */
static inline void rt_transpose(__m256i v[8])
{
    __m256i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(v[2 * k], v[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(v[2 * k], v[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) {
        u[4 * k] = _mm256_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm256_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm256_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm256_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    /* u[c] (c < 4): rows 0-3 of columns c | c + 4; u[4 + c]: rows 4-7 */
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
        v[4 + c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
    }
}

/* The low (or high) halves of w's eight 32-bit lanes, as floats. */
static inline __m256 rt_halves(__m256i w, bool high)
{
    __m256i v = high ? _mm256_srli_epi32(w, 16) : _mm256_and_si256(w, _mm256_set1_epi32(0xFFFF));
    v = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08); /* lanes 0-3, 4-7 */
    return _mm256_cvtph_ps(_mm256_castsi256_si128(v));
}

/* Pass one of one block b of a row: its scale (and min) recorded, the
 * products with the R tokens' block (a, then a + stride) as 8 lanes in
 * v[r][c]. */
static inline __attribute__((always_inline)) void rt_q32_block(ox_dtype type, int R,
                                                               const unsigned char *b,
                                                               const ox__block_q8a *a, int64_t stride,
                                                               uint16_t *scale, uint16_t *min,
                                                               __m256i v[2][8], int c)
{
    const bool has_min = type == OX_DTYPE_Q4_1 || type == OX_DTYPE_Q5_1;
    const bool five = type == OX_DTYPE_Q5_0 || type == OX_DTYPE_Q5_1;
    const bool sign_trick = !OX_QUANT_VNNI && type == OX_DTYPE_Q8_0;
    const size_t qh = has_min ? 4 : 2, qs = qh + (five ? 4 : 0);
    memcpy(scale, b, 2);
    if (has_min) memcpy(min, b + 2, 2);
    __m256i u;
    if (type == OX_DTYPE_Q8_0) {
        u = _mm256_loadu_si256((const __m256i *)(b + offsetof(ox__block_q8_0, qs)));
        if (!sign_trick) u = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
    } else {
        u = rt_nibbles(b + qs);
        if (five) u = _mm256_or_si256(u, rt_fifth(b + qh));
    }
    for (int r = 0; r < R; r++) {
        __m256i av = _mm256_loadu_si256((const __m256i *)a[r * stride].qs);
        v[r][c] = sign_trick ? dot_i8(u, av) : dot_u8(u, av);
    }
}

static inline __attribute__((always_inline)) void rt_q32(ox_dtype type, int R, int64_t n,
                                                         const unsigned char *const row[8],
                                                         size_t wstride, const ox__block_q8a *a,
                                                         int64_t stride,
                                                         __m256i *prod, __m256 acc[], __m256 accm[])
{
    const size_t bytes = qt_block_bytes(type);
    const int64_t blocks = n / OX_QK, groups = (blocks + 7) / 8;
    const bool has_min = type == OX_DTYPE_Q4_1 || type == OX_DTYPE_Q5_1;
    const bool sign_trick = !OX_QUANT_VNNI && type == OX_DTYPE_Q8_0;
    /* the rows' scales (and mins) as pass one meets them, block-major: pass
     * two reads one vector a block instead of eight far-apart lines again */
    uint16_t *scales = (uint16_t *)(prod + 2 * 8 * groups), *mins = scales + 8 * blocks;
    for (int j = 0; j < 8; j++)
        for (int64_t i0 = 0; i0 < blocks; i0 += 8) {
            __m256i v[2][8];
            /* whole groups of eight blocks (all but a short last one) without
             * a test per block */
            if (i0 + 8 <= blocks) {
                for (int c = 0; c < 8; c++)
                    rt_q32_block(type, R, row[j] + (size_t)(i0 + c) * bytes, a + i0 + c, stride,
                                 &scales[(i0 + c) * 8 + j], &mins[(i0 + c) * 8 + j], v, c);
            } else {
                for (int c = 0; c < 8; c++) {
                    for (int r = 0; r < R; r++) v[r][c] = _mm256_setzero_si256();
                    if (i0 + c < blocks)
                        rt_q32_block(type, R, row[j] + (size_t)(i0 + c) * bytes, a + i0 + c, stride,
                                     &scales[(i0 + c) * 8 + j], &mins[(i0 + c) * 8 + j], v, c);
                }
            }
            for (int r = 0; r < R; r++)
                _mm256_storeu_si256(&prod[(i0 / 8 * R + r) * 8 + j], rt_reduce(v[r]));
        }
    for (int64_t i0 = 0; i0 < blocks; i0 += 8) {
        rt_prefetch_next(row, wstride, i0 / 8);
        __m256i t[2][8];
        for (int r = 0; r < R; r++) {
            for (int j = 0; j < 8; j++) t[r][j] = _mm256_loadu_si256(&prod[(i0 / 8 * R + r) * 8 + j]);
            rt_transpose(t[r]);
        }
        for (int c = 0; c < 8 && i0 + c < blocks; c++) {
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)&scales[(i0 + c) * 8]));
            __m256 m = has_min ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)&mins[(i0 + c) * 8]))
                               : _mm256_setzero_ps();
            for (int r = 0; r < R; r++) {
                const ox__block_q8a *ar = a + r * stride + i0 + c;
                int off = sign_trick ? 0 : qt_offset(type);
                __m256i sum = _mm256_add_epi32(t[r][c], _mm256_set1_epi32(-off * ar->sum));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(ar->d)), acc[r]);
                if (has_min) accm[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(ar->d * (float)ar->sum), accm[r]);
            }
        }
    }
}

static inline __attribute__((always_inline)) void rt_k(ox_dtype type, int R, int64_t n,
                                                       const unsigned char *const row[8],
                                                       size_t wstride, const ox__block_q8a *a,
                                                       int64_t stride,
                                                       __m256i *prod, __m256 acc[])
{
    const bool six = type == OX_DTYPE_Q6_K, five = type == OX_DTYPE_Q5_K;
    const size_t bytes = qt_block_bytes(type);
    const int64_t blocks = n / OX_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    /* each row's super-block header (Q4_K / Q5_K: d, dmin, scales; Q6_K:
     * scales, d) as pass one meets it, 32 bytes a row, block-major: pass two
     * reads these instead of eight far-apart lines again */
    unsigned char *hdr = (unsigned char *)(prod + 2 * 8 * blocks);
    /* Q6_K: the activations' half-block sums, 16 a super-block as int16
     * pairs (lane sb: sum_lo, sum - sum_lo of block sb) in the scales'
     * order, for the codes' offset of 32 below; once for the tile's rows */
    __m256i *half_sums = (__m256i *)(hdr + 8 * 32 * blocks);
    if (six)
        for (int r = 0; r < R; r++)
            for (int64_t i = 0; i < blocks; i++) {
                /* the 32-bit words (sum | sum_lo << 16) of the 8 blocks, 40 bytes apart */
                const int *w = (const int *)((const char *)&a[r * stride + i * 8] + offsetof(ox__block_q8a, sum));
                __m256i v = _mm256_i32gather_epi32(w, _mm256_setr_epi32(0, 10, 20, 30, 40, 50, 60, 70), 4);
                __m256i lo = _mm256_srai_epi32(v, 16), all = _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16);
                _mm256_storeu_si256(&half_sums[r * blocks + i],
                                    _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xFFFF)),
                                                    _mm256_slli_epi32(_mm256_sub_epi32(all, lo), 16)));
            }
    for (int j = 0; j < 8; j++)
        for (int64_t i = 0; i < blocks; i++) {
            const unsigned char *blk = row[j] + (size_t)i * bytes;
            unsigned char *rec = hdr + (i * 8 + j) * 32;
            if (six) {
                memcpy(rec, blk + offsetof(ox__block_q6_k, scales), 16);
                memcpy(rec + 16, blk + offsetof(ox__block_q6_k, d), 2);
            } else {
                memcpy(rec, blk, 16);
            }
            /* sub-block sb's sums as 8 lanes each, reduced to lane sb, times
             * the row's scales (lane sb); Q6_K: 16-bit pair sums of codes
             * times activations, times the scale of their half (16 values)
             * in 32-bit lanes (lanes 0-3 the first half, 4-7 the second),
             * and the codes' offset of 32 once a super-block: minus 32 times
             * the sum over halves of scale x the activations' half sum */
            __m256i sum[2];
            if (six) {
                const ox__block_q6_k *b = (const ox__block_q6_k *)blk;
                __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
                /* scales 0-7 (sub-blocks 0-3) and 8-15 (4-7) in both 128-bit halves */
                __m256i sc_lo = _mm256_permute2x128_si256(sc16, sc16, 0x00);
                __m256i sc_hi = _mm256_permute2x128_si256(sc16, sc16, 0x11);
                for (int r = 0; r < R; r++)
                    sum[r] = _mm256_mullo_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256(&half_sums[r * blocks + i])),
                                                _mm256_set1_epi32(-32));
                for (int sb = 0; sb < 8; sb++) {
                    __m256i u = rt_q6_codes(b, sb);
                    /* 16-bit lanes 0-7: scale 2 sb, 8-15: scale 2 sb + 1 */
                    const int w0 = 2 * (2 * sb % 8), w1 = w0 + 2;
                    const __m256i pick = _mm256_setr_epi8(w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1,
                                                          w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1,
                                                          w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1,
                                                          w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1);
                    __m256i sc = _mm256_shuffle_epi8(sb < 4 ? sc_lo : sc_hi, pick);
                    for (int r = 0; r < R; r++) {
                        const ox__block_q8a *ar = &a[r * stride + i * 8 + sb];
                        __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)ar->qs));
                        sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(p, sc));
                    }
                }
            } else {
                const ox__block_q4_k *b4 = (const ox__block_q4_k *)blk;
                const ox__block_q5_k *b5 = (const ox__block_q5_k *)blk;
                const uint8_t *qs = five ? b5->qs : b4->qs, *scales = five ? b5->scales : b4->scales;
                __m256i high = five ? _mm256_loadu_si256((const __m256i *)b5->qh) : _mm256_setzero_si256();
                __m256i v[2][8];
                for (int sb = 0; sb < 8; sb++) {
                    __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (sb / 2)));
                    q = _mm256_and_si256(sb % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
                    if (five) {
                        __m256i h = _mm256_srli_epi16(high, sb);
                        q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
                    }
                    for (int r = 0; r < R; r++)
                        v[r][sb] = dot_u8(q, _mm256_loadu_si256((const __m256i *)a[r * stride + i * 8 + sb].qs));
                }
                /* the 8 six-bit scales (llama.cpp's unpacking) as 8 lanes */
                uint32_t w0, w2;
                memcpy(&w0, scales, 4);
                memcpy(&w2, scales + 8, 4);
                uint64_t sc8 = (uint64_t)(w0 & 0x3F3F3F3Fu) |
                               (uint64_t)((w2 & 0x0F0F0F0Fu) | ((w0 >> 2) & 0x30303030u)) << 32;
                __m256i sc = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc8));
                for (int r = 0; r < R; r++) sum[r] = _mm256_mullo_epi32(rt_reduce(v[r]), sc);
            }
            for (int r = 0; r < R; r++) _mm256_storeu_si256(&prod[(i * R + r) * 8 + j], sum[r]);
        }
    for (int64_t i = 0; i < blocks; i++) {
        rt_prefetch_next(row, wstride, i);
        /* the eight rows' 32-byte records, contiguous: transposed, word w
         * of every row in hw[w] (lane j = row j) */
        __m256i hw[8];
        for (int j = 0; j < 8; j++) hw[j] = _mm256_loadu_si256((const __m256i *)(hdr + (i * 8 + j) * 32));
        rt_transpose(hw);
        __m256i isum[2], sc[4], mn[2];
        for (int r = 0; r < R; r++) {
            __m256i v[8];
            for (int j = 0; j < 8; j++) v[j] = _mm256_loadu_si256(&prod[(i * R + r) * 8 + j]);
            isum[r] = rt_reduce(v);
        }
        kt_scales(type, six ? hw : hw + 1, sc, mn); /* Q6_K's scales were applied in pass one */
        kt_finish(type, R, rt_halves(hw[six ? 4 : 0], false),
                  six ? _mm256_setzero_ps() : rt_halves(hw[0], true), a + i * 8, stride, mn, isum, acc);
    }
}

#define QT_ROWWISE 2 /* at most this many tokens: the row-wise kernels */

static inline __attribute__((always_inline)) void any_tile(ox_dtype type, int R, int64_t n,
                                                           const void *w, size_t wstride, int rows,
                                                           const ox__block_q8a *a, int64_t stride,
                                                           float *out, void *scratch)
{
    bool k = type == OX_DTYPE_Q4_K || type == OX_DTYPE_Q5_K || type == OX_DTYPE_Q6_K;
    /* a partial tile repeats its last row in the missing lanes */
    qt_src src = {.packed = false, .wstride = wstride};
    for (int j = 0; j < 8; j++)
        src.row[j] = (const unsigned char *)w + (size_t)(j < rows ? j : rows - 1) * wstride;
    const unsigned char *const *row = src.row;
    if (R > QT_ROWWISE) {
        /* (the carried accumulators are packed rows' only: out stands in) */
        if (k) kt_tile(type, R, n, &src, a, stride, out, out);
        else qt_tile(type, R, n, &src, a, stride, out, out, out);
        return;
    }
    __m256 acc[QT_ROWWISE], accm[QT_ROWWISE];
    for (int r = 0; r < R; r++) acc[r] = accm[r] = _mm256_setzero_ps();
    if (k) rt_k(type, R, n, row, wstride, a, stride, scratch, acc);
    else rt_q32(type, R, n, row, wstride, a, stride, scratch, acc, accm);
    for (int r = 0; r < R; r++)
        _mm256_storeu_ps(out + OX_QTILE_ROWS * r, k ? acc[r] : _mm256_add_ps(acc[r], accm[r]));
}

/* The tile kernel of a type: tokens (1..OX_QTILE_TOKENS) in passes of at most QT_STEP. */
#define QT_CASE(R)                                                                             \
    case R: any_tile(TYPE, R, n, w, wstride, rows, a + r0 * stride, stride, out + OX_QTILE_ROWS * r0, \
                     scratch);                                                                 \
        break;
#define QT_KERNEL(name, T)                                                                     \
    static void tile_##name(int64_t n, const void *w, size_t wstride, int rows,                \
                            const ox__block_q8a *a, int64_t stride, int tokens, float *out,    \
                            void *scratch)                                                     \
    {                                                                                          \
        const ox_dtype TYPE = T;                                                               \
        for (int r0 = 0; r0 < tokens; r0 += QT_STEP) {                                         \
            switch (tokens - r0 < QT_STEP ? tokens - r0 : QT_STEP) {                           \
                QT_CASE(1) QT_CASE(2) QT_CASE(3) QT_CASE(4) QT_STEP_CASES                      \
            }                                                                                  \
        }                                                                                      \
    }
#if QT_STEP == 8
#define QT_STEP_CASES QT_CASE(5) QT_CASE(6) QT_CASE(7) QT_CASE(8)
#define QP_STEP_CASES QP_CASE(5) QP_CASE(6) QP_CASE(7) QP_CASE(8)
#else
#define QT_STEP_CASES
#define QP_STEP_CASES
#endif

/* On packed weights the tile kernels serve every token count: a packed
 * group is one stream, so decoding needs no row-wise pass. */
static inline __attribute__((always_inline)) void packed_tile(ox_dtype type, int R, int64_t n,
                                                              const void *group,
                                                              const ox__block_q8a *a,
                                                              int64_t stride, float *cacc,
                                                              float *caccm)
{
    qt_src src = {.packed = true, .group = group};
    if (type == OX_DTYPE_Q4_K || type == OX_DTYPE_Q5_K || type == OX_DTYPE_Q6_K)
        kt_tile(type, R, n, &src, a, stride, cacc, cacc); /* out unused */
    else
        qt_tile(type, R, n, &src, a, stride, cacc, cacc, caccm);
}
#define QP_CASE(R)                                                                             \
    case R:                                                                                    \
        for (int64_t g = 0; g < groups; g++)                                                   \
            packed_tile(TYPE, R, n, (const unsigned char *)blocks + (size_t)g * group_bytes,   \
                        a + r0 * stride, stride, acc + 16 * tokens * g + 8 * r0,               \
                        acc + 16 * tokens * g + 8 * tokens + 8 * r0);                          \
        break;
#define QP_KERNEL(name, T)                                                                     \
    static void ptile_##name(int64_t n, const void *blocks, int64_t groups,                   \
                             const ox__block_q8a *a, int64_t stride, int tokens, float *acc)   \
    {                                                                                          \
        const ox_dtype TYPE = T;                                                               \
        const bool kq = TYPE == OX_DTYPE_Q4_K || TYPE == OX_DTYPE_Q5_K || TYPE == OX_DTYPE_Q6_K; \
        const size_t group_bytes = (size_t)(n / (kq ? OX_QK_K : OX_QK)) * 8 * qt_block_bytes(TYPE); \
        for (int r0 = 0; r0 < tokens; r0 += QT_STEP) {                                         \
            switch (tokens - r0 < QT_STEP ? tokens - r0 : QT_STEP) {                           \
                QP_CASE(1) QP_CASE(2) QP_CASE(3) QP_CASE(4) QP_STEP_CASES                      \
            }                                                                                  \
        }                                                                                      \
    }
QT_KERNEL(q4_0, OX_DTYPE_Q4_0)
QT_KERNEL(q4_1, OX_DTYPE_Q4_1)
QT_KERNEL(q5_0, OX_DTYPE_Q5_0)
QT_KERNEL(q5_1, OX_DTYPE_Q5_1)
QT_KERNEL(q8_0, OX_DTYPE_Q8_0)
QT_KERNEL(q4_k, OX_DTYPE_Q4_K)
QT_KERNEL(q5_k, OX_DTYPE_Q5_K)
QT_KERNEL(q6_k, OX_DTYPE_Q6_K)
QP_KERNEL(q4_0, OX_DTYPE_Q4_0)
QP_KERNEL(q4_1, OX_DTYPE_Q4_1)
QP_KERNEL(q5_0, OX_DTYPE_Q5_0)
QP_KERNEL(q5_1, OX_DTYPE_Q5_1)
QP_KERNEL(q8_0, OX_DTYPE_Q8_0)
QP_KERNEL(q4_k, OX_DTYPE_Q4_K)
QP_KERNEL(q5_k, OX_DTYPE_Q5_K)
QP_KERNEL(q6_k, OX_DTYPE_Q6_K)

ox__qtile_fn OX_QUANT_X86(qtile)(ox_dtype dtype)
{
    switch (dtype) {
    case OX_DTYPE_Q4_0: return tile_q4_0;
    case OX_DTYPE_Q4_1: return tile_q4_1;
    case OX_DTYPE_Q5_0: return tile_q5_0;
    case OX_DTYPE_Q5_1: return tile_q5_1;
    case OX_DTYPE_Q8_0: return tile_q8_0;
    case OX_DTYPE_Q4_K: return tile_q4_k;
    case OX_DTYPE_Q5_K: return tile_q5_k;
    case OX_DTYPE_Q6_K: return tile_q6_k;
    default: return NULL;
    }
}

ox__qtile_packed_fn OX_QUANT_X86(qtile_packed)(ox_dtype dtype)
{
    switch (dtype) {
    case OX_DTYPE_Q4_0: return ptile_q4_0;
    case OX_DTYPE_Q4_1: return ptile_q4_1;
    case OX_DTYPE_Q5_0: return ptile_q5_0;
    case OX_DTYPE_Q5_1: return ptile_q5_1;
    case OX_DTYPE_Q8_0: return ptile_q8_0;
    case OX_DTYPE_Q4_K: return ptile_q4_k;
    case OX_DTYPE_Q5_K: return ptile_q5_k;
    case OX_DTYPE_Q6_K: return ptile_q6_k;
    default: return NULL;
    }
}

/* ---- activations: ox__quantize_q8a's bytes, eight floats at a time ------------ */

#if !OX_QUANT_VNNI /* AVX2 is all it needs: built once, in quant_avx2.c */

/* 32 floats of one block: 0 if any is not finite (the caller then takes
 * the scalar path, whose NaN handling these need not copy), else 1. */
static inline int q8a_finite(const float *x)
{
    const __m256 exp = _mm256_castsi256_ps(_mm256_set1_epi32(0x7F800000));
    __m256 bad = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++)
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + 8 * k), exp), exp, _CMP_EQ_OQ));
    return _mm256_movemask_ps(bad) == 0;
}

static inline float q8a_hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int q8a_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* x[0..32) times scale, rounded to nearest even (the default rounding of
 * vcvtps2dq, as lrintf), capped to [-128, 127] (scalar: v < 127 ? v : 127,
 * and |v| <= 127 otherwise), into b->qs and its sums. */
static inline void q8a_block(const float *x, float scale, ox__block_q8a *b)
{
    __m256 s = _mm256_set1_ps(scale);
    __m256i v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), s));
    for (int k = 0; k < 4; k++) v[k] = _mm256_min_epi32(v[k], _mm256_set1_epi32(127));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)b->qs, p);
    int lo = q8a_hsum(_mm256_add_epi32(v[0], v[1]));
    b->sum_lo = (int16_t)lo;
    b->sum = (int16_t)(lo + q8a_hsum(_mm256_add_epi32(v[2], v[3])));
}

void OX_QUANT_X86(quantize_q8a)(const float *src, ox__block_q8a *dst, int64_t n, ox_dtype weights)
{
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    if (ox__q8a_is_k(weights)) {
        for (int64_t i = 0; i < n / OX_QK_K; i++, src += OX_QK_K, dst += OX_QK_K / OX_QK) {
            bool finite = true;
            __m256 m = _mm256_setzero_ps();
            for (int b = 0; b < OX_QK_K / OX_QK; b++) finite = finite && q8a_finite(src + OX_QK * b);
            if (!finite) {
                ox__quantize_q8a(src, dst, OX_QK_K, weights);
                continue;
            }
            for (int k = 0; k < OX_QK_K / 8; k++) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(src + 8 * k), abs));
            float mag = q8a_hmax(m), max = 0;
            /* the first element of that magnitude, with its sign */
            for (int k = 0; mag != 0 && k < OX_QK_K / 8; k++) {
                __m256 x = _mm256_loadu_ps(src + 8 * k);
                int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(x, abs), _mm256_set1_ps(mag), _CMP_EQ_OQ));
                if (hit) {
                    max = src[8 * k + __builtin_ctz((unsigned)hit)];
                    break;
                }
            }
            float iscale = max != 0 ? -127.0f / max : 0.0f, d = max != 0 ? 1 / iscale : 0.0f;
            for (int b = 0; b < OX_QK_K / OX_QK; b++) {
                q8a_block(src + OX_QK * b, iscale, &dst[b]);
                dst[b].d = d;
            }
        }
        return;
    }
    for (int64_t i = 0; i < n / OX_QK; i++, src += OX_QK, dst++) {
        if (!q8a_finite(src)) {
            ox__quantize_q8a(src, dst, OX_QK, weights);
            continue;
        }
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(src + 8 * k), abs));
        float amax = q8a_hmax(m);
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        q8a_block(src, id, dst);
        dst->d = ox_f16_to_f32(ox_f32_to_f16(amax / 127));
    }
}
#endif
