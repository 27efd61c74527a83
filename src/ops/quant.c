/* Quantized rows (see quant.h for the GGUF block layouts): scalar
 * dequantization, the public ox_row_to_f32 / ox_row_from_f32, the 8-bit
 * activation blocks of the quantized matmul and its scalar dot products,
 * the reference for the SIMD ones in quant_avx2.c. Quantization (ggml's
 * reference quantizers, byte for byte) is in quantize.c. */
#include <math.h>
#include <string.h>

#include "ops/quant.h"

static float half(uint16_t h)
{
    return ox_f16_to_f32(h);
}

/* The fifth bits of a Q5_0 / Q5_1 block, bit e for element e. */
static uint32_t load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

/* ---- dequantization ---------------------------------------------------------------- */

static void dequantize_q4_0(const ox__block_q4_0 *b, float *y, int64_t blocks)
{
    for (int64_t i = 0; i < blocks; i++, b++, y += OX_QK) {
        float d = half(b->d);
        for (int j = 0; j < OX_QK / 2; j++) {
            y[j] = (float)((b->qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequantize_q4_1(const ox__block_q4_1 *b, float *y, int64_t blocks)
{
    for (int64_t i = 0; i < blocks; i++, b++, y += OX_QK) {
        float d = half(b->d), m = half(b->m);
        for (int j = 0; j < OX_QK / 2; j++) {
            y[j] = (float)(b->qs[j] & 0xF) * d + m;
            y[j + 16] = (float)(b->qs[j] >> 4) * d + m;
        }
    }
}

static void dequantize_q5_0(const ox__block_q5_0 *b, float *y, int64_t blocks)
{
    for (int64_t i = 0; i < blocks; i++, b++, y += OX_QK) {
        float d = half(b->d);
        uint32_t qh = load_qh(b->qh);
        for (int j = 0; j < OX_QK / 2; j++) {
            int lo = (b->qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

static void dequantize_q5_1(const ox__block_q5_1 *b, float *y, int64_t blocks)
{
    for (int64_t i = 0; i < blocks; i++, b++, y += OX_QK) {
        float d = half(b->d), m = half(b->m);
        uint32_t qh = load_qh(b->qh);
        for (int j = 0; j < OX_QK / 2; j++) {
            int lo = (b->qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

static void dequantize_q8_0(const ox__block_q8_0 *b, float *y, int64_t blocks)
{
    for (int64_t i = 0; i < blocks; i++, b++, y += OX_QK) {
        float d = half(b->d);
        for (int j = 0; j < OX_QK; j++) y[j] = (float)b->qs[j] * d;
    }
}

/* Q4_K and Q5_K: qh is NULL for Q4_K. */
static void dequantize_k(uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qs,
                         const uint8_t *qh, float *y)
{
    float d = half(dh), dmin = half(dminh);
    for (int s = 0; s < 8; s++, y += 32) {
        int sc, m, g = s / 2, shift = 4 * (s % 2);
        ox__k_scale_min(scales, s, &sc, &m);
        float ds = d * (float)sc, dm = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = (qs[32 * g + l] >> shift) & 0xF;
            if (qh) q |= ((qh[l] >> s) & 1) << 4;
            y[l] = ds * (float)q - dm;
        }
    }
}

/* Element e = 32 s + l of a Q6_K block, as the unsigned 6-bit code. */
static int q6_code(const ox__block_q6_k *b, int s, int l)
{
    int p = s / 4, t = s % 4;
    int low = b->ql[64 * p + 32 * (t & 1) + l];
    low = t < 2 ? low & 0xF : low >> 4;
    return low | ((b->qh[32 * p + l] >> (2 * t)) & 3) << 4;
}

static void dequantize_q6_k(const ox__block_q6_k *b, float *y, int64_t blocks)
{
    for (int64_t i = 0; i < blocks; i++, b++) {
        float d = half(b->d);
        for (int e = 0; e < OX_QK_K; e++, y++)
            *y = d * (float)b->scales[e / 16] * (float)(q6_code(b, e / 32, e % 32) - 32);
    }
}

void ox__dequantize_row(ox_dtype dtype, const void *src, float *dst, int64_t n)
{
    int64_t blocks = n / ox_dtype_block(dtype);
    switch (dtype) {
    case OX_DTYPE_Q4_0: dequantize_q4_0(src, dst, blocks); break;
    case OX_DTYPE_Q4_1: dequantize_q4_1(src, dst, blocks); break;
    case OX_DTYPE_Q5_0: dequantize_q5_0(src, dst, blocks); break;
    case OX_DTYPE_Q5_1: dequantize_q5_1(src, dst, blocks); break;
    case OX_DTYPE_Q8_0: dequantize_q8_0(src, dst, blocks); break;
    case OX_DTYPE_Q4_K:
        for (const ox__block_q4_k *b = src; blocks-- > 0; b++, dst += OX_QK_K)
            dequantize_k(b->d, b->dmin, b->scales, b->qs, NULL, dst);
        break;
    case OX_DTYPE_Q5_K:
        for (const ox__block_q5_k *b = src; blocks-- > 0; b++, dst += OX_QK_K)
            dequantize_k(b->d, b->dmin, b->scales, b->qs, b->qh, dst);
        break;
    case OX_DTYPE_Q6_K: dequantize_q6_k(src, dst, blocks); break;
    default: break;
    }
}

/* ---- activations' helpers ------------------------------------------------------------ */

void ox__qpack_groups(ox_dtype dtype, const void *src, size_t row_bytes, int64_t groups, int64_t n,
                      int64_t g0, int64_t g1, void *dst)
{
    const ox__qpack_layout L = ox__qpack_layout_of(dtype);
    const size_t bytes = ox_dtype_size(dtype);
    const int64_t blocks = n / ox_dtype_block(dtype);
    for (int64_t g = g0; g < g1; g++)
        for (int64_t i = 0; i < blocks; i++) {
            unsigned char *out = (unsigned char *)dst + ox__qpack_at(dtype, n, groups, g, i);
            const unsigned char *blk[8];
            for (int j = 0; j < 8; j++)
                blk[j] = (const unsigned char *)src + (size_t)(8 * g + j) * row_bytes + (size_t)i * bytes;
            for (int h = 0; h < L.halves; h++, out += 16)
                for (int j = 0; j < 8; j++) memcpy(out + 2 * j, blk[j] + L.half_at[h], 2);
            for (int w = 0; w < L.words; w++)
                for (int j = 0; j < 8; j++)
                    memcpy(out + 32 * ox__qpack_slot(dtype, w) + 4 * j, blk[j] + L.w0 + 4 * w, 4);
        }
}

void ox__qpack_rows(ox_dtype dtype, const void *src, size_t row_bytes, int64_t rows, int64_t n,
                    void *dst)
{
    ox__qpack_groups(dtype, src, row_bytes, rows / 8, n, 0, rows / 8, dst);
}

void ox__qunpack_blocks(ox_dtype dtype, const void *packed, int64_t groups, int64_t n, int64_t r,
                        int64_t b0, int64_t count, void *dst)
{
    const ox__qpack_layout L = ox__qpack_layout_of(dtype);
    const size_t bytes = ox_dtype_size(dtype);
    const int lane = (int)(r % 8);
    unsigned char *out = dst;
    for (int64_t i = b0; i < b0 + count; i++, out += bytes) {
        const unsigned char *blk = (const unsigned char *)packed + ox__qpack_at(dtype, n, groups, r / 8, i);
        for (int h = 0; h < L.halves; h++) memcpy(out + L.half_at[h], blk + 16 * h + 2 * lane, 2);
        blk += 16 * L.halves;
        for (int w = 0; w < L.words; w++)
            memcpy(out + L.w0 + 4 * w, blk + 32 * ox__qpack_slot(dtype, w) + 4 * lane, 4);
    }
}

float ox__signed_absmax(const float *x, int n)
{
    float best = 0, mag = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > mag) {
            mag = fabsf(x[i]);
            best = x[i];
        }
    return best;
}

/* ---- public rows ------------------------------------------------------------------------ */

static bool row_ok(ox_dtype dtype, const void *src, const void *dst, int64_t n)
{
    int64_t block = ox_dtype_block(dtype);
    return src && dst && block > 0 && dtype != OX_DTYPE_I32 && n >= 0 && n % block == 0;
}

ox_status ox_row_to_f32(ox_dtype dtype, const void *src, float *dst, int64_t n)
{
    if (!row_ok(dtype, src, dst, n)) return OX_ERR_INVALID;
    if (ox_dtype_is_quantized(dtype)) ox__dequantize_row(dtype, src, dst, n);
    else ox__row_to_f32(dtype, src, dst, n);
    return OX_OK;
}

ox_status ox_row_from_f32(ox_dtype dtype, const float *src, void *dst, int64_t n)
{
    if (!row_ok(dtype, src, dst, n)) return OX_ERR_INVALID;
    if (ox_dtype_is_quantized(dtype)) ox__quantize_row(dtype, src, dst, n);
    else ox__row_from_f32(dtype, src, dst, n);
    return OX_OK;
}

/* ---- activations and scalar dot products ---------------------------------------------------- */

/* ggml's rounding: float to nearest int, ties to even (the magic-number
 * trick of its nearest_int, for |v| < 2^22). */
static int nearest_even(float v)
{
    return (int)lrintf(v);
}

static void q8a_sums(ox__block_q8a *b)
{
    int sum = 0;
    for (int j = 0; j < OX_QK; j++) {
        sum += b->qs[j];
        if (j == OX_QK / 2 - 1) b->sum_lo = (int16_t)sum;
    }
    b->sum = (int16_t)sum;
}

void ox__quantize_q8a(const float *src, ox__block_q8a *dst, int64_t n, ox_dtype weights)
{
    if (ox__q8a_is_k(weights)) {
        /* Q8_K: one scale per 256, iscale = -127 / (signed max), q <= 127. */
        for (int64_t i = 0; i < n / OX_QK_K; i++, src += OX_QK_K, dst += OX_QK_K / OX_QK) {
            float max = ox__signed_absmax(src, OX_QK_K);
            float iscale = max != 0 ? -127.0f / max : 0.0f, d = max != 0 ? 1 / iscale : 0.0f;
            for (int b = 0; b < OX_QK_K / OX_QK; b++) {
                for (int j = 0; j < OX_QK; j++) {
                    int v = nearest_even(iscale * src[b * OX_QK + j]);
                    dst[b].qs[j] = (int8_t)(v < 127 ? v : 127);
                }
                dst[b].d = d;
                q8a_sums(&dst[b]);
            }
        }
        return;
    }
    /* Q8_0: d = max |x| / 127 kept as a half, q = round(x * 127 / max |x|). */
    for (int64_t i = 0; i < n / OX_QK; i++, src += OX_QK, dst++) {
        float amax = fabsf(ox__signed_absmax(src, OX_QK));
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < OX_QK; j++) dst->qs[j] = (int8_t)nearest_even(src[j] * id);
        dst->d = half(ox_f32_to_f16(amax / 127));
        q8a_sums(dst);
    }
}

static float dot_q4_0(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q4_0 *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++)
            s += ((b->qs[j] & 0xF) - 8) * a->qs[j] + ((b->qs[j] >> 4) - 8) * a->qs[j + 16];
        sum += half(b->d) * a->d * (float)s;
    }
    return sum;
}

static float dot_q4_1(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q4_1 *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++) s += (b->qs[j] & 0xF) * a->qs[j] + (b->qs[j] >> 4) * a->qs[j + 16];
        sum += half(b->d) * a->d * (float)s + half(b->m) * a->d * (float)a->sum;
    }
    return sum;
}

static float dot_q5_0(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q5_0 *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        uint32_t qh = load_qh(b->qh);
        int32_t s = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (b->qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += (lo - 16) * a->qs[j] + (hi - 16) * a->qs[j + 16];
        }
        sum += half(b->d) * a->d * (float)s;
    }
    return sum;
}

static float dot_q5_1(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q5_1 *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        uint32_t qh = load_qh(b->qh);
        int32_t s = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (b->qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            s += lo * a->qs[j] + hi * a->qs[j + 16];
        }
        sum += half(b->d) * a->d * (float)s + half(b->m) * a->d * (float)a->sum;
    }
    return sum;
}

static float dot_q8_0(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q8_0 *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK; i++, b++, a++) {
        int32_t s = 0;
        for (int j = 0; j < OX_QK; j++) s += b->qs[j] * a->qs[j];
        sum += half(b->d) * a->d * (float)s;
    }
    return sum;
}

/* One Q4_K / Q5_K super-block (qh NULL for Q4_K) against 8 activation blocks. */
static float dot_k_block(uint16_t dh, uint16_t dminh, const uint8_t *scales, const uint8_t *qs,
                         const uint8_t *qh, const ox__block_q8a *a)
{
    float d = half(dh), dmin = half(dminh), sum = 0;
    for (int s = 0; s < 8; s++, a++) {
        int sc, m, g = s / 2, shift = 4 * (s % 2);
        int32_t isum = 0;
        ox__k_scale_min(scales, s, &sc, &m);
        for (int l = 0; l < 32; l++) {
            int q = (qs[32 * g + l] >> shift) & 0xF;
            if (qh) q |= ((qh[l] >> s) & 1) << 4;
            isum += q * a->qs[l];
        }
        sum += a->d * (d * (float)(sc * isum) - dmin * (float)(m * a->sum));
    }
    return sum;
}

static float dot_q4_k(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q4_k *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK_K; i++, b++, a += 8)
        sum += dot_k_block(b->d, b->dmin, b->scales, b->qs, NULL, a);
    return sum;
}

static float dot_q5_k(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q5_k *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK_K; i++, b++, a += 8)
        sum += dot_k_block(b->d, b->dmin, b->scales, b->qs, b->qh, a);
    return sum;
}

static float dot_q6_k(int64_t n, const void *w, const ox__block_q8a *a)
{
    const ox__block_q6_k *b = w;
    float sum = 0;
    for (int64_t i = 0; i < n / OX_QK_K; i++, b++) {
        float d = half(b->d);
        for (int s = 0; s < 8; s++, a++) {
            int32_t lo = 0, hi = 0;
            for (int l = 0; l < 16; l++) {
                lo += (q6_code(b, s, l) - 32) * a->qs[l];
                hi += (q6_code(b, s, l + 16) - 32) * a->qs[l + 16];
            }
            sum += d * a->d * (float)(b->scales[2 * s] * lo + b->scales[2 * s + 1] * hi);
        }
    }
    return sum;
}

ox__qdot_fn ox__qdot_scalar(ox_dtype dtype)
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
