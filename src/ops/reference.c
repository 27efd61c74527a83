/* Naive double-precision reference operators (reference.h): the plainest
 * loops that follow the definitions in openxpu/ops.h, written apart from
 * the CPU operators so that a shared mistake is unlikely. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "ops/reference.h"

static int64_t count(const ox_ref_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Offset of (i0, i1, i2, i3) in t, each index taken modulo t's size, so a
 * smaller tensor repeats over a larger one. */
static int64_t at(const ox_ref_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    const int64_t *ne = t->ne;
    return i0 % ne[0] + ne[0] * (i1 % ne[1] + ne[1] * (i2 % ne[2] + ne[2] * (i3 % ne[3])));
}

/* Split a flat row-major offset of t into its four indices. */
static void unflatten(const ox_ref_tensor *t, int64_t flat, int64_t i[4])
{
    for (int d = 0; d < 4; d++) {
        i[d] = flat % t->ne[d];
        flat /= t->ne[d];
    }
}

void ox_ref_binary(ox_binary_op op, ox_ref_tensor *dst, const ox_ref_tensor *a,
                   const ox_ref_tensor *b)
{
    for (int64_t e = 0; e < count(dst); e++) {
        int64_t i[4];
        unflatten(dst, e, i);
        double x = a->data[e], y = b->data[at(b, i[0], i[1], i[2], i[3])];
        switch (op) {
        case OX_BINARY_ADD: dst->data[e] = x + y; break;
        case OX_BINARY_SUB: dst->data[e] = x - y; break;
        case OX_BINARY_MUL: dst->data[e] = x * y; break;
        case OX_BINARY_DIV: dst->data[e] = x / y; break;
        }
    }
}

void ox_ref_scale(ox_ref_tensor *dst, const ox_ref_tensor *a, double scale, double bias)
{
    for (int64_t e = 0; e < count(dst); e++) dst->data[e] = a->data[e] * scale + bias;
}

void ox_ref_clamp(ox_ref_tensor *dst, const ox_ref_tensor *a, double lo, double hi)
{
    for (int64_t e = 0; e < count(dst); e++) {
        double x = a->data[e];
        dst->data[e] = x < lo ? lo : x > hi ? hi : x;
    }
}

double ox_ref_half_step(double x)
{
    int e;
    frexp(x, &e); /* |x| in [2^(e-1), 2^e) */
    return ldexp(1.0, (e - 1 < -14 ? -14 : e - 1) - 10);
}

double ox_ref_round_half(double x)
{
    if (x != x || x == 0 || fabs(x) >= 65520.0) return fabs(x) >= 65520.0 ? copysign(INFINITY, x) : x;
    double step = ox_ref_half_step(x);
    return nearbyint(x / step) * step;
}

static double unary(ox_unary_op op, double x)
{
    switch (op) {
    case OX_UNARY_NEG: return -x;
    case OX_UNARY_ABS: return fabs(x);
    case OX_UNARY_EXP: return exp(x);
    case OX_UNARY_LOG: return log(x);
    case OX_UNARY_SQRT: return sqrt(x);
    case OX_UNARY_RSQRT: return 1.0 / sqrt(x);
    case OX_UNARY_TANH: return tanh(x);
    case OX_UNARY_RELU: return x > 0 ? x : 0;
    case OX_UNARY_GELU: return x / 2 * (1 + erf(x / sqrt(2.0)));
    case OX_UNARY_GELU_TANH:
        return x / 2 * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    case OX_UNARY_SILU: return x / (1 + exp(-x));
    case OX_UNARY_SIGMOID: return 1 / (1 + exp(-x));
    case OX_UNARY_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
    case OX_UNARY_GELU_TANH_F16:
        if (x <= -10) return 0;
        if (x >= 10) return x;
        x = ox_ref_round_half(x);
        return ox_ref_round_half(x / 2 * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x))));
    default: return NAN;
    }
}

void ox_ref_unary(ox_unary_op op, ox_ref_tensor *dst, const ox_ref_tensor *a)
{
    for (int64_t e = 0; e < count(dst); e++) dst->data[e] = unary(op, a->data[e]);
}

/* ---- rows ----------------------------------------------------------------------- */

void ox_ref_reduce(ox_reduce_op op, ox_ref_tensor *dst, const ox_ref_tensor *a)
{
    int64_t n = a->ne[0];
    for (int64_t r = 0; r < count(a) / n; r++) {
        const double *x = a->data + r * n;
        double sum = 0, max = x[0];
        int32_t arg = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += x[i];
            if (x[i] > max) {
                max = x[i];
                arg = (int32_t)i;
            }
        }
        if (op == OX_REDUCE_ARGMAX) dst->idata[r] = arg;
        else dst->data[r] = op == OX_REDUCE_SUM ? sum : op == OX_REDUCE_MEAN ? sum / n : max;
    }
}

void ox_ref_softmax(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *mask,
                    double scale)
{
    int64_t n = a->ne[0];
    for (int64_t r = 0; r < count(a) / n; r++) {
        int64_t i[4];
        unflatten(a, r * n, i);
        double *y = dst->data + r * n, max = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) {
            y[k] = a->data[r * n + k] * scale;
            if (mask) y[k] += mask->data[at(mask, k, i[1], i[2], i[3])];
            if (y[k] > max) max = y[k];
        }
        for (int64_t k = 0; k < n; k++) {
            y[k] = max == -INFINITY ? 0 : exp(y[k] - max);
            sum += y[k];
        }
        for (int64_t k = 0; k < n; k++) y[k] = sum > 0 ? y[k] / sum : 0;
    }
}

void ox_ref_log_softmax(ox_ref_tensor *dst, const ox_ref_tensor *a)
{
    int64_t n = a->ne[0];
    for (int64_t r = 0; r < count(a) / n; r++) {
        const double *x = a->data + r * n;
        double max = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) max = x[k] > max ? x[k] : max;
        for (int64_t k = 0; k < n; k++) sum += exp(x[k] - max);
        for (int64_t k = 0; k < n; k++) dst->data[r * n + k] = x[k] - max - log(sum);
    }
}

void ox_ref_rms_norm(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *weight,
                     double eps)
{
    int64_t n = a->ne[0];
    for (int64_t r = 0; r < count(a) / n; r++) {
        int64_t i[4];
        unflatten(a, r * n, i);
        double sum_sq = 0;
        for (int64_t k = 0; k < n; k++) sum_sq += a->data[r * n + k] * a->data[r * n + k];
        double inv = 1 / sqrt(sum_sq / n + eps);
        for (int64_t k = 0; k < n; k++) {
            double w = weight ? weight->data[at(weight, k, i[1], i[2], i[3])] : 1;
            dst->data[r * n + k] = a->data[r * n + k] * inv * w;
        }
    }
}

void ox_ref_layer_norm(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *weight,
                       const ox_ref_tensor *bias, double eps)
{
    int64_t n = a->ne[0];
    for (int64_t r = 0; r < count(a) / n; r++) {
        int64_t i[4];
        unflatten(a, r * n, i);
        const double *x = a->data + r * n;
        double mean = 0, var = 0;
        for (int64_t k = 0; k < n; k++) mean += x[k] / n;
        for (int64_t k = 0; k < n; k++) var += (x[k] - mean) * (x[k] - mean) / n;
        for (int64_t k = 0; k < n; k++) {
            double w = weight ? weight->data[at(weight, k, i[1], i[2], i[3])] : 1;
            double b = bias ? bias->data[at(bias, k, i[1], i[2], i[3])] : 0;
            dst->data[r * n + k] = (x[k] - mean) / sqrt(var + eps) * w + b;
        }
    }
}

void ox_ref_rope(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *positions,
                 const ox_rope_params *params)
{
    int64_t n = a->ne[0], n_dims = params->n_dims, half = n_dims / 2;
    for (int64_t r = 0; r < count(a) / n; r++) {
        int64_t i[4];
        unflatten(a, r * n, i);
        const double *x = a->data + r * n;
        double *y = dst->data + r * n;
        for (int64_t k = n_dims; k < n; k++) y[k] = x[k];
        for (int64_t p = 0; p < half; p++) {
            double theta = positions->idata[i[2]] * (double)params->freq_scale *
                           pow(params->freq_base, -2.0 * p / n_dims);
            int64_t k0 = params->mode == OX_ROPE_NEOX ? p : 2 * p;
            int64_t k1 = params->mode == OX_ROPE_NEOX ? p + half : 2 * p + 1;
            y[k0] = x[k0] * cos(theta) - x[k1] * sin(theta);
            y[k1] = x[k0] * sin(theta) + x[k1] * cos(theta);
        }
    }
}

/* ---- matrices and movement ----------------------------------------------------------- */

void ox_ref_matmul(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *b,
                   unsigned flags)
{
    int64_t n_cols = dst->ne[0], m_rows = dst->ne[1];
    int64_t k_len = (flags & OX_MATMUL_TRANS_A) ? a->ne[1] : a->ne[0];
    for (int64_t i3 = 0; i3 < dst->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < dst->ne[2]; i2++)
            for (int64_t m = 0; m < m_rows; m++)
                for (int64_t n = 0; n < n_cols; n++) {
                    double sum = 0;
                    for (int64_t k = 0; k < k_len; k++) {
                        double x = (flags & OX_MATMUL_TRANS_A) ? a->data[at(a, m, k, i2, i3)]
                                                               : a->data[at(a, k, m, i2, i3)];
                        double y = (flags & OX_MATMUL_TRANS_B) ? b->data[at(b, k, n, i2, i3)]
                                                               : b->data[at(b, n, k, i2, i3)];
                        sum += x * y;
                    }
                    dst->data[at(dst, n, m, i2, i3)] = sum;
                }
}

void ox_ref_get_rows(ox_ref_tensor *dst, const ox_ref_tensor *table, const ox_ref_tensor *ids)
{
    for (int64_t e = 0; e < count(dst); e++) {
        int64_t i[4];
        unflatten(dst, e, i);
        int32_t id = ids->idata[at(ids, i[1], i[2], i[3], 0)];
        dst->data[e] = table->data[at(table, i[0], id, i[2], i[3])];
    }
}

void ox_ref_concat(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *b, int dim)
{
    for (int64_t e = 0; e < count(dst); e++) {
        int64_t i[4];
        unflatten(dst, e, i);
        if (i[dim] < a->ne[dim]) {
            dst->data[e] = a->data[at(a, i[0], i[1], i[2], i[3])];
        } else {
            i[dim] -= a->ne[dim];
            dst->data[e] = b->data[at(b, i[0], i[1], i[2], i[3])];
        }
    }
}

void ox_ref_attention(ox_ref_tensor *dst, const ox_ref_tensor *q, const ox_ref_tensor *k,
                      const ox_ref_tensor *v, const ox_ref_tensor *mask,
                      const ox_attention_params *params)
{
    int64_t d = q->ne[0], n_q = q->ne[1], heads = q->ne[2], n_kv = k->ne[1], dv = v->ne[0];
    int64_t group = heads / k->ne[2];
    double *w = malloc((size_t)n_kv * sizeof *w); /* scores, then softmax weights */
    if (!w) return;
    for (int64_t b = 0; b < q->ne[3]; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < n_q; i++) {
                double max = -INFINITY, sum = 0;
                for (int64_t j = 0; j < n_kv; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < d; c++)
                        s += q->data[at(q, c, i, h, b)] * k->data[at(k, c, j, h / group, b)];
                    w[j] = s * params->scale + (mask ? mask->data[at(mask, j, i, 0, 0)] : 0);
                    if (params->causal && j > n_kv - n_q + i) w[j] = -INFINITY;
                    if (w[j] > max) max = w[j];
                }
                for (int64_t j = 0; j < n_kv; j++) {
                    w[j] = max == -INFINITY ? 0 : exp(w[j] - max);
                    sum += w[j];
                }
                for (int64_t c = 0; c < dv; c++) {
                    double out = 0;
                    for (int64_t j = 0; j < n_kv; j++)
                        out += w[j] * v->data[at(v, c, j, h / group, b)];
                    dst->data[at(dst, c, i, h, b)] = sum > 0 ? out / sum : 0;
                }
            }
    free(w);
}

double ox_ref_nmse(const double *x, const double *ref, int64_t n)
{
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(ref[i])) {
            if (x[i] == ref[i] || (isnan(x[i]) && isnan(ref[i]))) continue;
            return INFINITY;
        }
        if (!isfinite(x[i])) return INFINITY;
        err += (x[i] - ref[i]) * (x[i] - ref[i]);
        norm += ref[i] * ref[i];
    }
    if (err == 0) return 0;
    return norm > 0 ? err / norm : INFINITY;
}
