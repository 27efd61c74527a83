/* The CPU implementations of the operators: native C, vectorized, spread
 * over the CPU backend's thread pool. They are the reference every device is
 * checked against, and are themselves tested against naive double-precision
 * loops (src/ops/reference.c) in tests/ops/.
 *
 * Every function receives host views whose shapes, dtypes and bounds were
 * already checked by the op layer (src/ops/ops.c), so they do no argument
 * checking of their own: they return OX_OK, or an error only for data-
 * dependent failures (an id out of range in get_rows). */
#ifndef OX_OPS_CPU_OPS_H
#define OX_OPS_CPU_OPS_H

#include "core/threadpool.h"
#include "openxpu/ops.h"

/* A tensor as the CPU sees it: a host pointer to element [0,0,0,0]. */
typedef struct ox__view {
    char *data;
    ox_dtype dtype;
    int64_t ne[OX_MAX_DIMS];
    int64_t nb[OX_MAX_DIMS]; /* bytes */
    /* A quantized matrix's rows also in the packed layout (ops/quant.h,
     * ox__qpack_rows: its first ne[1] / 8 * 8 rows), or NULL. */
    const void *packed;
} ox__view;

/* What a CPU op may use: the thread pool and the CPU's feature bits
 * (OX_FEATURE_BIT(...)), for choosing SIMD code at run time. */
typedef struct ox__cpu_exec {
    ox__pool *pool;
    uint64_t features;
} ox__cpu_exec;

/* Element i (0 <= i < 4 dims) addressing: data + i0*nb0 + i1*nb1 + ... */
static inline char *ox__view_at(const ox__view *v, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    return v->data + i0 * v->nb[0] + i1 * v->nb[1] + i2 * v->nb[2] + i3 * v->nb[3];
}

/* Load/store one element of a float dtype (F32, F16, BF16) as float. */
float ox__load_f(ox_dtype dtype, const void *p);
void ox__store_f(ox_dtype dtype, void *p, float v);

/* Row conversions, vectorized where the CPU allows (F16C, AVX-512 BF16). */
void ox__row_to_f32(ox_dtype dtype, const void *src, float *dst, int64_t n);
void ox__row_from_f32(ox_dtype dtype, const float *src, void *dst, int64_t n);

/* elementwise.c */
ox_status ox__cpu_binary(const ox__cpu_exec *x, ox_binary_op op, const ox__view *dst,
                         const ox__view *a, const ox__view *b);
ox_status ox__cpu_scale(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a, float scale,
                        float bias);
ox_status ox__cpu_clamp(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a, float lo,
                        float hi);
/* dst = act(gate) * up in one pass (dst may be gate): for F32 the bits of
 * ox__cpu_unary then an OX_BINARY_MUL; other types round once, not twice */
ox_status ox__cpu_glu(const ox__cpu_exec *x, ox_unary_op act, const ox__view *dst,
                      const ox__view *gate, const ox__view *up);
ox_status ox__cpu_unary(const ox__cpu_exec *x, ox_unary_op op, const ox__view *dst,
                        const ox__view *a);

/* reduce.c: reductions, softmax, log-softmax, norms */
ox_status ox__cpu_reduce(const ox__cpu_exec *x, ox_reduce_op op, const ox__view *dst,
                         const ox__view *a);
ox_status ox__cpu_softmax(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                          const ox__view *mask /* NULL */, float scale);
ox_status ox__cpu_log_softmax(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a);
ox_status ox__cpu_rms_norm(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                           const ox__view *weight /* NULL */, float eps);
ox_status ox__cpu_layer_norm(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                             const ox__view *weight /* NULL */, const ox__view *bias /* NULL */,
                             float eps);

/* rope.c */
/* dst = rope(rms_norm(a) * weight) (weight NULL: rope(a)), row by row, in
 * float: the same values as ox__cpu_rms_norm then ox__cpu_rope; dst may be
 * F16 or BF16 (rounded once). Rows of at most OX__TILE. */
ox_status ox__cpu_rope_norm(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                            const ox__view *weight, float eps, const ox__view *positions,
                            const ox_rope_params *params);
/* ox_add_rms_norm on contiguous F32 rows: x += norm(delta) * dw (or delta),
 * out = norm(x) * w, with the sums and formulas of ox__cpu_rms_norm and
 * the CPU's add. */
ox_status ox__cpu_add_rms_norm(const ox__cpu_exec *x, const ox__view *xs, const ox__view *delta,
                               const ox__view *delta_weight, const ox__view *out,
                               const ox__view *weight, float eps);
/* sum((x - shift)^2) of a tile, in double, as the CPU's norms sum it. */
double ox__sum_sq_tile(const float *x, double shift, int64_t n);
ox_status ox__cpu_rope(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                       const ox__view *positions, const ox_rope_params *params);

/* matmul.c (+ matmul_avx2.c, matmul_avx512.c kernels chosen at run time) */
/* Reproducible mode's quantized product (quant_repro.c): the bits of
 * kernels/quant.oxc qmatvec with one lane a row, from the activations it
 * reads (xq, xd, xs as quantize_act writes them, qb 32 or 256): dst[m d_sm
 * + n] for n < N, m < M, w N rows of w_rb bytes. */
bool ox__cpu_qmatvec_repro_supported(ox_dtype type);
void ox__cpu_qmatvec_repro(const ox__cpu_exec *x, ox_dtype type, const void *w, size_t w_rb,
                           const int8_t *xq, const float *xd, const int32_t *xs, float *dst,
                           int64_t d_sm, int64_t N, int64_t K, int64_t M, int qb);

ox_status ox__cpu_matmul(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                         const ox__view *b, unsigned flags);

/* movement.c: get_rows, copy/cast, concat */
ox_status ox__cpu_get_rows(const ox__cpu_exec *x, const ox__view *dst, const ox__view *table,
                           const ox__view *ids);
ox_status ox__cpu_copy(const ox__cpu_exec *x, const ox__view *dst, const ox__view *src);
ox_status ox__cpu_concat(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                         const ox__view *b, int dim);

/* attention.c */
/* A paged cache's table (ox_attention_paged): logical key j is row
 * table[j >> shift] << shift | (j & mask), the page clamped into [0, n_pages). */
typedef struct ox__att_pages {
    const int32_t *table;
    int64_t shift, n_pages;
} ox__att_pages;
ox_status ox__cpu_attention(const ox__cpu_exec *x, const ox__view *dst, const ox__view *q,
                            const ox__view *k, const ox__view *v, const ox__view *mask /* NULL */,
                            const ox_attention_params *params, const ox__att_pages *pages /* NULL */);
/* attention_avx2.c (x86, AVX2 + FMA): its inner loops, chosen by attention.c */
/* k[j], v[j]: F32 rows, or for the _f16 forms F16 rows (a KV cache's) */
void ox__att_scores8_avx2(const float *q, const void *const k[8], int64_t d, float out[8]);
void ox__att_scores8_f16_avx2(const float *q, const void *const k[8], int64_t d, float out[8]);
/* acc += p[j] v[j] for j < nk in order, keys of zero weight skipped */
void ox__att_pv_avx2(float *acc, const float *p, const void *const v[], int64_t nk, int64_t n);
void ox__att_pv_f16_avx2(float *acc, const float *p, const void *const v[], int64_t nk, int64_t n);
/* s[j] = exp(s[j] - max) for j < n, with ox__exp_f32's bits, and their sum */
double ox__att_exp_avx2(float *s, int64_t n, float max);
/* d[i] = (g[i] / (1 + exp(-g[i]))) * u[i] for i < n, SiLU's and then the
 * product's roundings as the scalar loops make them (d may be g) */
void ox__silu_mul_avx2(float *d, const float *g, const float *u, int64_t n);
/* Prompt blocks (several query rows a unit), register-tiled as a matrix
 * product: keys [0, nk) (nk <= OX_ATT_KEYS; rows F32, or F16 when half)
 * transposed into kt[i * OX_ATT_KEYS + t] as F32, key columns from nk up to
 * a multiple of 16 zero; s[e * ls + t] = sum over i < d in order of q[e][i]
 * kt[i][t] for entries e < ne and keys t < nk rounded up to 16 (or only up
 * to the keys any entry of its group of 4 sees: seen[e], the keys of the
 * block before its causal limit); value rows as F32 (zeros for a NULL row:
 * a key no entry weighs); and acc[e * la + c] += sum over keys j < nk in
 * order of p[e * lp + j] v[j * lv + c], c < n (keys past every seen[e] of
 * the group skipped: their weights are 0). */
#define OX_ATT_KEYS 64
void ox__att_kt_avx2(const void *const k[], int64_t nk, int64_t d, int half, float *kt);
void ox__att_scores_kt_avx2(const float *const q[], int64_t ne, const int64_t *seen,
                            const float *kt, int64_t d, int64_t nk, float *s, int64_t ls);
void ox__att_rows_avx2(const void *const rows[], int64_t nk, int64_t n, int half, float *dst,
                       int64_t ld);
void ox__att_pv_rows_avx2(float *acc, int64_t la, const float *p, int64_t lp, int64_t ne,
                          const int64_t *seen, const float *v, int64_t lv, int64_t nk, int64_t n);
/* d[i] = a[i] op b[i] for n halves (an ox_binary_op), eight at a time with
 * F16C: each converted to float, the op in float, rounded to nearest even,
 * the bits of the tile-by-tile path (convert_avx2.c; AVX2 and F16C only) */
void ox__binary_f16_avx2(int op, uint16_t *d, const uint16_t *a, const uint16_t *b, int64_t n);

/* At least `floats` 64-byte aligned floats for the calling thread, or
 * NULL; give them back with ox__scratch_release. The thread keeps them for
 * its next call (freed when it exits) up to 64 MiB; larger ones, or one
 * asked for while the thread's are in use, are allocated for the call. */
float *ox__scratch_acquire(size_t floats);
void ox__scratch_release(float *p);

#endif /* OX_OPS_CPU_OPS_H */
