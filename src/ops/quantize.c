/* Quantization of float rows into the GGUF block formats, with the
 * arithmetic of ggml's reference quantizers (ggml-quants.c, the
 * quantize_row_*_ref functions llama.cpp's llama-quantize runs when no
 * importance matrix is given): the same formulas evaluated in the same
 * order in single precision, so a row gives the same bytes as llama.cpp's
 * files. tests/data/quant holds blocks recorded from ggml and
 * tests/ops/test_quantize compares every byte.
 *
 * What that takes, besides the formulas: this file is compiled with
 * -ffp-contract=off (no fused multiply-add where ggml has none: its base
 * library is built without -march flags), round-half-to-even through the
 * 1.5 * 2^23 trick (nearest_int) where ggml uses it, truncating
 * conversions where ggml casts, roundf where it calls roundf.
 *
 * The search per format:
 * - Q4_0, Q5_0: d = (element of largest magnitude) / -8 or -16;
 *   Q8_0: d = max|x| / 127; Q4_1, Q5_1: d = (max - min) / 15 or 31, m = min;
 * - Q4_K, Q5_K: per sub-block of 32, scale and min fitted by weighted
 *   least squares over 21 / 16 trial grids (weights sqrt(mean x^2) + |x|),
 *   then the scales and mins quantized to 6 bits against the largest;
 * - Q6_K: per sub-block of 16, the best of 19 trial scales by the
 *   x^2-weighted fit, the scales quantized to 8 bits against the largest.
 *
 * Non-finite inputs: ggml's result is undefined behaviour there (float to
 * integer conversions out of range); here every conversion is clamped, so
 * such a block is written without a crash, and finite inputs are
 * unaffected. ox quantize refuses non-finite weights before this. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/quant.h"

#define GROUP_MAX_EPS 1e-15f

/* Round to the nearest integer, ties to even (x + 1.5 * 2^23), for |v| up
 * to 2^22 - 1; beyond that (and NaN) clamped first. */
static int nearest_int(float v)
{
    if (!(fabsf(v) <= 4194303.0f)) v = v > 0 ? 4194303.0f : v < 0 ? -4194303.0f : 0.0f;
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* (int)v, truncated toward zero as a C cast does, into [lo, hi]; NaN -> 0. */
static int trunc_to(float v, int lo, int hi)
{
    if (v != v) return 0;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

static void store_qh(uint8_t qh[4], uint32_t bits)
{
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(bits >> (8 * i));
}

/* ---- the 32-element formats ---------------------------------------------------------- */

/* Q4_0 (nmax 8, top 15) and Q5_0 (16, 31): codes trunc(x / d + nmax + 0.5). */
static void quantize_symmetric(const float *x, int nmax, int top, uint16_t *dh, int q[OX_QK])
{
    const float d = ox__signed_absmax(x, OX_QK) / (float)-nmax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *dh = ox_f32_to_f16(d);
    const float bias = (float)nmax + 0.5f;
    for (int j = 0; j < OX_QK; j++) {
        int v = trunc_to(x[j] * id + bias, -128, 127);
        q[j] = v < top ? v : top;
    }
}

/* Q4_1 (top 15) and Q5_1 (top 31): x ~ d q + m with m the minimum. */
static void quantize_affine(const float *x, int top, uint16_t *dh, uint16_t *mh, int q[OX_QK])
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < OX_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / (float)top;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *dh = ox_f32_to_f16(d);
    *mh = ox_f32_to_f16(min);
    for (int j = 0; j < OX_QK; j++) {
        /* Q4_1 casts to int8 and caps at 15; Q5_1 casts to uint8 */
        int v = top == 15 ? trunc_to((x[j] - min) * id + 0.5f, -128, 127)
                          : trunc_to((x[j] - min) * id + 0.5f, 0, 255);
        q[j] = v < top ? v : top;
    }
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

static void quantize_q8_0(const float *x, ox__block_q8_0 *b)
{
    float amax = 0.0f;
    for (int j = 0; j < OX_QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = ox_f32_to_f16(d);
    for (int j = 0; j < OX_QK; j++) b->qs[j] = (int8_t)trunc_to(roundf(x[j] * id), -128, 127);
}

/* ---- Q4_K, Q5_K ------------------------------------------------------------------------ */

/* Fit x[0..n) ~ scale L + min (min <= 0, L in [0, nmax]) minimising the
 * weighted squared error: the codes of the plain range first, then nstep + 1
 * trial grids (nmax + rmin + rdelta is levels over the range), each refitted
 * by least squares. Returns the scale; -min into *the_min; codes into L. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *the_min, float rmin, float rdelta, int nstep)
{
    uint8_t trial[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * (float)L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            trial[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)trial[i] + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, trial, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Q4_K (nmax 15: 21 trial grids from -1) and Q5_K (31: 16 from -0.5). */
static void quantize_k(const float *x, int nmax, uint16_t *dh, uint16_t *dminh, uint8_t scales[12],
                       uint8_t L[OX_QK_K])
{
    float sc[8], mn[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        sc[j] = nmax == 15 ? fit_scale_min(32, 15, xs, w, L + 32 * j, &mn[j], -1.0f, 0.1f, 20)
                           : fit_scale_min(32, 31, xs, w, L + 32 * j, &mn[j], -0.5f, 0.1f, 15);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mn[j] > max_min) max_min = mn[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * sc[j]), lm = (uint8_t)nearest_int(inv_min * mn[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            scales[j] = ls;
            scales[j + 4] = lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *dh = ox_f32_to_f16(max_scale / 63.0f);
    *dminh = ox_f32_to_f16(max_min / 63.0f);
    for (int j = 0; j < 8; j++) {
        int s, m;
        ox__k_scale_min(scales, j, &s, &m);
        const float d = ox_f16_to_f32(*dh) * (float)s;
        if (d == 0.0f) continue; /* the fit's codes stay */
        const float dm = ox_f16_to_f32(*dminh) * (float)m;
        for (int i = 0; i < 32; i++) {
            int l = nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

static void quantize_q4_k(const float *x, ox__block_q4_k *b)
{
    uint8_t L[OX_QK_K];
    quantize_k(x, 15, &b->d, &b->dmin, b->scales, L);
    for (int j = 0; j < OX_QK_K; j += 64)
        for (int l = 0; l < 32; l++) b->qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
}

static void quantize_q5_k(const float *x, ox__block_q5_k *b)
{
    uint8_t L[OX_QK_K];
    quantize_k(x, 31, &b->d, &b->dmin, b->scales, L);
    memset(b->qh, 0, sizeof b->qh);
    for (int n = 0, bit = 0; n < OX_QK_K; n += 64, bit += 2)
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                b->qh[j] |= (uint8_t)(1u << bit);
            }
            if (l2 > 15) {
                l2 -= 16;
                b->qh[j] |= (uint8_t)(2u << bit);
            }
            b->qs[n / 2 + j] = (uint8_t)(l1 | l2 << 4);
        }
}

/* ---- Q6_K -------------------------------------------------------------------------------- */

/* Codes L (offset by nmax, in [0, 2 nmax)) and a scale for 16 values:
 * x ~ scale (L - nmax), the best x^2-weighted fit over 19 trial scales. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
    float max = ox__signed_absmax(x, n), amax = fabsf(max);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quantize_q6_k(const float *x, ox__block_q6_k *b)
{
    int8_t L[OX_QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = fit_scale_sym(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(b, 0, sizeof *b);
        b->d = ox_f32_to_f16(0.0f);
        return;
    }
    float iscale = -128.0f / max_scale;
    b->d = ox_f32_to_f16(1 / iscale);
    for (int ib = 0; ib < 16; ib++) {
        int s = nearest_int(iscale * scales[ib]);
        b->scales[ib] = (int8_t)(s < 127 ? s : 127);
    }
    for (int j = 0; j < 16; j++) {
        const float d = ox_f16_to_f32(b->d) * (float)b->scales[j];
        if (d == 0.0f) continue;
        for (int i = 0; i < 16; i++) {
            int l = nearest_int(x[16 * j + i] / d);
            L[16 * j + i] = (int8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
        }
    }
    for (int j = 0; j < OX_QK_K; j += 128) {
        uint8_t *ql = b->ql + j / 2, *qh = b->qh + j / 4;
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = (uint8_t)L[j + l], q2 = (uint8_t)L[j + l + 32],
                          q3 = (uint8_t)L[j + l + 64], q4 = (uint8_t)L[j + l + 96];
            ql[l] = (uint8_t)((q1 & 0xF) | (q3 & 0xF) << 4);
            ql[l + 32] = (uint8_t)((q2 & 0xF) | (q4 & 0xF) << 4);
            qh[l] = (uint8_t)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}

/* ---- rows ------------------------------------------------------------------------------ */

void ox__quantize_row(ox_dtype dtype, const float *x, void *dst, int64_t n)
{
    int64_t blocks = n / ox_dtype_block(dtype);
    int q[OX_QK];
    for (int64_t i = 0; i < blocks; i++) {
        switch (dtype) {
        case OX_DTYPE_Q4_0: {
            ox__block_q4_0 *b = (ox__block_q4_0 *)dst + i;
            quantize_symmetric(x + i * OX_QK, 8, 15, &b->d, q);
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
            quantize_symmetric(x + i * OX_QK, 16, 31, &b->d, q);
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
        case OX_DTYPE_Q8_0: quantize_q8_0(x + i * OX_QK, (ox__block_q8_0 *)dst + i); break;
        case OX_DTYPE_Q4_K: quantize_q4_k(x + i * OX_QK_K, (ox__block_q4_k *)dst + i); break;
        case OX_DTYPE_Q5_K: quantize_q5_k(x + i * OX_QK_K, (ox__block_q5_k *)dst + i); break;
        case OX_DTYPE_Q6_K: quantize_q6_k(x + i * OX_QK_K, (ox__block_q6_k *)dst + i); break;
        default: return;
        }
    }
}
