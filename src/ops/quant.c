/* Quantized rows (see quant.h for the GGUF block layouts): scalar
 * dequantization, quantization, the public ox_row_to_f32 / ox_row_from_f32,
 * the 8-bit activation blocks of the quantized matmul and its scalar dot
 * products, the reference for the SIMD ones in quant_avx2.c.
 *
 * Quantization picks each block's scale from its range (absmax for the
 * symmetric formats, min and max for those with a min) and then, for the K
 * types, searches the neighbouring 6-bit (Q4_K, Q5_K) or 8-bit (Q6_K)
 * sub-block scales for the one with the least squared error. It is not
 * ggml's iterative quantizer, but every block it writes is valid and reads
 * back within the format's rounding error. */
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

static void store_qh(uint8_t qh[4], uint32_t bits)
{
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(bits >> (8 * i));
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

/* ---- quantization -------------------------------------------------------------------- */

/* round(v) clamped to [lo, hi]; NaN gives lo. */
static int quant_clamp(float v, int lo, int hi)
{
    if (!(v >= (float)lo)) return lo;
    if (v > (float)hi) return hi;
    return (int)lrintf(v);
}

/* The element of x[0..n) with the largest magnitude, with its sign. */
static float signed_absmax(const float *x, int n)
{
    float best = 0, mag = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > mag) {
            mag = fabsf(x[i]);
            best = x[i];
        }
    return best;
}

static void min_max(const float *x, int n, float *lo, float *hi)
{
    *lo = *hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

/* 1 / d, or 0 for a zero (or non-finite) scale. */
static float inverse(float d)
{
    return d != 0 && isfinite(d) ? 1.0f / d : 0.0f;
}

/* Symmetric 32-element blocks: codes q in [-range, range - 1] with the
 * largest-magnitude element at -range, so the full code range is used. */
static void quantize_symmetric(const float *x, int range, uint16_t *dh, int q[OX_QK])
{
    float d = signed_absmax(x, OX_QK) / (float)-range;
    *dh = ox_f32_to_f16(d);
    float id = inverse(half(*dh));
    for (int j = 0; j < OX_QK; j++) q[j] = quant_clamp(x[j] * id, -range, range - 1) + range;
}

/* 32-element blocks with a min: x ~ q d + m, q in [0, top]. */
static void quantize_affine(const float *x, int top, uint16_t *dh, uint16_t *mh, int q[OX_QK])
{
    float lo, hi;
    min_max(x, OX_QK, &lo, &hi);
    *dh = ox_f32_to_f16((hi - lo) / (float)top);
    *mh = ox_f32_to_f16(lo);
    float id = inverse(half(*dh)), m = half(*mh);
    for (int j = 0; j < OX_QK; j++) q[j] = quant_clamp((x[j] - m) * id, 0, top);
}

static void pack_nibbles(const int q[OX_QK], uint8_t qs[16])
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
}

static uint32_t fifth_bits(const int q[OX_QK])
{
    uint32_t bits = 0;
    for (int j = 0; j < OX_QK; j++) bits |= (uint32_t)((q[j] >> 4) & 1) << j;
    return bits;
}

/* Squared error of a K-type sub-block of 32 quantized with step ds and
 * offset dm (x ~ ds q - dm, q in [0, top]); the codes go to q. */
static float k_sub_error(const float *x, int top, float ds, float dm, int q[32])
{
    float id = inverse(ds), err = 0;
    for (int l = 0; l < 32; l++) {
        q[l] = quant_clamp((x[l] + dm) * id, 0, top);
        float e = ds * (float)q[l] - dm - x[l];
        err += e * e;
    }
    return err;
}

/* Q4_K (top 15, qh NULL) and Q5_K (top 31) super-blocks. */
static void quantize_k(const float *x, int top, uint16_t *dh, uint16_t *dminh, uint8_t scales[12],
                       uint8_t *qs, uint8_t *qh)
{
    float step[8], offset[8], max_step = 0, max_offset = 0;
    for (int s = 0; s < 8; s++) {
        float lo, hi;
        min_max(x + 32 * s, 32, &lo, &hi);
        if (lo > 0) lo = 0; /* the min is subtracted: it must be <= 0 */
        step[s] = (hi - lo) / (float)top;
        offset[s] = -lo;
        if (step[s] > max_step) max_step = step[s];
        if (offset[s] > max_offset) max_offset = offset[s];
    }
    *dh = ox_f32_to_f16(max_step / 63);
    *dminh = ox_f32_to_f16(max_offset / 63);
    float d = half(*dh), dmin = half(*dminh);
    int sc[8], mn[8], q[32], best_q[32];
    memset(scales, 0, 12);
    memset(qs, 0, OX_QK_K / 2);
    if (qh) memset(qh, 0, OX_QK_K / 8);
    for (int s = 0; s < 8; s++) {
        /* the rounded 6-bit scale and min, and their neighbours */
        int sc0 = quant_clamp(step[s] * inverse(d), 0, 63);
        int m0 = quant_clamp(offset[s] * inverse(dmin), 0, 63);
        float best = INFINITY;
        sc[s] = sc0;
        mn[s] = m0;
        for (int a = sc0 - 1; a <= sc0 + 1; a++)
            for (int b = m0 - 1; b <= m0 + 1; b++) {
                if (a < 0 || a > 63 || b < 0 || b > 63) continue;
                float err = k_sub_error(x + 32 * s, top, d * (float)a, dmin * (float)b, q);
                if (err < best) {
                    best = err;
                    sc[s] = a;
                    mn[s] = b;
                    memcpy(best_q, q, sizeof q);
                }
            }
        int g = s / 2, shift = 4 * (s % 2);
        for (int l = 0; l < 32; l++) {
            qs[32 * g + l] |= (uint8_t)((best_q[l] & 0xF) << shift);
            if (qh) qh[l] |= (uint8_t)(((best_q[l] >> 4) & 1) << s);
        }
    }
    for (int s = 0; s < 4; s++) {
        scales[s] = (uint8_t)(sc[s] | (sc[s + 4] >> 4) << 6);
        scales[s + 4] = (uint8_t)(mn[s] | (mn[s + 4] >> 4) << 6);
        scales[s + 8] = (uint8_t)((sc[s + 4] & 0xF) | (mn[s + 4] & 0xF) << 4);
    }
}

static void quantize_q6_k(const float *x, ox__block_q6_k *b)
{
    float step[16], max_step = 0;
    for (int s = 0; s < 16; s++) {
        step[s] = signed_absmax(x + 16 * s, 16) / -32.0f;
        if (fabsf(step[s]) > fabsf(max_step)) max_step = step[s];
    }
    b->d = ox_f32_to_f16(max_step / -128.0f);
    float d = half(b->d);
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int s = 0; s < 16; s++) {
        int sc0 = quant_clamp(step[s] * inverse(d), -128, 127), q[16], best_q[16] = {0};
        float best = INFINITY;
        b->scales[s] = (int8_t)sc0;
        for (int a = sc0 - 1; a <= sc0 + 1; a++) {
            if (a < -128 || a > 127) continue;
            float ds = d * (float)a, id = inverse(ds), err = 0;
            for (int l = 0; l < 16; l++) {
                q[l] = quant_clamp(x[16 * s + l] * id, -32, 31);
                float e = ds * (float)q[l] - x[16 * s + l];
                err += e * e;
            }
            if (err < best) {
                best = err;
                b->scales[s] = (int8_t)a;
                memcpy(best_q, q, sizeof q);
            }
        }
        for (int l = 0; l < 16; l++) {
            int e = 16 * s + l, p = e / 128, t = e % 128 / 32, i = e % 32, code = best_q[l] + 32;
            b->ql[64 * p + 32 * (t & 1) + i] |= (uint8_t)((code & 0xF) << (t < 2 ? 0 : 4));
            b->qh[32 * p + i] |= (uint8_t)((code >> 4) << (2 * t));
        }
    }
}

void ox__quantize_row(ox_dtype dtype, const float *x, void *dst, int64_t n)
{
    int64_t blocks = n / ox_dtype_block(dtype);
    int q[OX_QK];
    for (int64_t i = 0; i < blocks; i++) {
        switch (dtype) {
        case OX_DTYPE_Q4_0: {
            ox__block_q4_0 *b = (ox__block_q4_0 *)dst + i;
            quantize_symmetric(x + i * OX_QK, 8, &b->d, q);
            pack_nibbles(q, b->qs);
            break;
        }
        case OX_DTYPE_Q4_1: {
            ox__block_q4_1 *b = (ox__block_q4_1 *)dst + i;
            quantize_affine(x + i * OX_QK, 15, &b->d, &b->m, q);
            pack_nibbles(q, b->qs);
            break;
        }
        case OX_DTYPE_Q5_0: {
            ox__block_q5_0 *b = (ox__block_q5_0 *)dst + i;
            quantize_symmetric(x + i * OX_QK, 16, &b->d, q);
            pack_nibbles(q, b->qs);
            store_qh(b->qh, fifth_bits(q));
            break;
        }
        case OX_DTYPE_Q5_1: {
            ox__block_q5_1 *b = (ox__block_q5_1 *)dst + i;
            quantize_affine(x + i * OX_QK, 31, &b->d, &b->m, q);
            pack_nibbles(q, b->qs);
            store_qh(b->qh, fifth_bits(q));
            break;
        }
        case OX_DTYPE_Q8_0: {
            ox__block_q8_0 *b = (ox__block_q8_0 *)dst + i;
            const float *xb = x + i * OX_QK;
            float amax = fabsf(signed_absmax(xb, OX_QK));
            b->d = ox_f32_to_f16(amax / 127);
            float id = inverse(half(b->d));
            for (int j = 0; j < OX_QK; j++) b->qs[j] = (int8_t)quant_clamp(xb[j] * id, -127, 127);
            break;
        }
        case OX_DTYPE_Q4_K: {
            ox__block_q4_k *b = (ox__block_q4_k *)dst + i;
            quantize_k(x + i * OX_QK_K, 15, &b->d, &b->dmin, b->scales, b->qs, NULL);
            break;
        }
        case OX_DTYPE_Q5_K: {
            ox__block_q5_k *b = (ox__block_q5_k *)dst + i;
            quantize_k(x + i * OX_QK_K, 31, &b->d, &b->dmin, b->scales, b->qs, b->qh);
            break;
        }
        case OX_DTYPE_Q6_K: quantize_q6_k(x + i * OX_QK_K, (ox__block_q6_k *)dst + i); break;
        default: return;
        }
    }
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
    int32_t sum = 0;
    for (int j = 0; j < OX_QK; j++) sum += b->qs[j];
    b->sum = sum;
}

void ox__quantize_q8a(const float *src, ox__block_q8a *dst, int64_t n, ox_dtype weights)
{
    if (ox__q8a_is_k(weights)) {
        /* Q8_K: one scale per 256, iscale = -127 / (signed max), q <= 127. */
        for (int64_t i = 0; i < n / OX_QK_K; i++, src += OX_QK_K, dst += OX_QK_K / OX_QK) {
            float max = signed_absmax(src, OX_QK_K);
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
        float amax = fabsf(signed_absmax(src, OX_QK));
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
