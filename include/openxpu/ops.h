/* OpenXPU operators.
 *
 * Every operator is enqueued on a queue and runs on the queue's device; all
 * its tensors must live on that device. On the CPU the work is done when the
 * call returns; on other devices wait with ox_queue_finish or an event.
 * Arguments are checked before anything runs: a shape, dtype or bounds
 * mismatch returns OX_ERR_INVALID / OX_ERR_OUT_OF_RANGE with a message naming
 * the op and the shapes, and nothing is written.
 *
 * Conventions:
 * - Shapes are ne[4], ne[0] innermost (see tensor.h); "row" means ne[0].
 * - Floating-point tensors are F32, F16 or BF16; arithmetic is done in F32.
 * - dst may alias an input only when it is the very same view (in place).
 * - "b repeats over a": each b->ne[i] must divide a->ne[i]; element i of a
 *   meets element i % b->ne of b (so a bias row, a per-channel scale and
 *   numpy-style broadcasting of size-1 dimensions all work).
 * - Strided (non-contiguous) inputs are accepted everywhere unless said. */
#ifndef OPENXPU_OPS_H
#define OPENXPU_OPS_H

#include "openxpu/queue.h"
#include "openxpu/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise ---------------------------------------------------------- */

typedef enum ox_binary_op {
    OX_BINARY_ADD,
    OX_BINARY_SUB,
    OX_BINARY_MUL,
    OX_BINARY_DIV
} ox_binary_op;

/* dst = a (op) b, with b repeating over a. dst has a's shape; dst, a and b
 * have the same dtype. */
OX_API ox_status ox_binary(ox_queue *q, ox_binary_op op, const ox_tensor *dst, const ox_tensor *a,
                           const ox_tensor *b);
OX_API ox_status ox_add(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b);
OX_API ox_status ox_sub(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b);
OX_API ox_status ox_mul(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b);
OX_API ox_status ox_div(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b);

/* dst = a * scale + bias (same shape and dtype). */
OX_API ox_status ox_scale(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, float scale,
                          float bias);

/* dst = min(max(a, lo), hi); lo <= hi. */
OX_API ox_status ox_clamp(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, float lo, float hi);

#define OX_UNARY_LIST(X)                                                     \
    X(NEG, "neg")                                                            \
    X(ABS, "abs")                                                            \
    X(EXP, "exp")                                                            \
    X(LOG, "log")                                                            \
    X(SQRT, "sqrt")                                                          \
    X(RSQRT, "rsqrt")                                                        \
    X(TANH, "tanh")                                                          \
    X(RELU, "relu")                                                          \
    X(GELU, "gelu")           /* x/2 (1 + erf(x/sqrt 2)) */                 \
    X(GELU_TANH, "gelu_tanh") /* x/2 (1 + tanh(sqrt(2/pi)(x + 0.044715x^3))) */ \
    X(SILU, "silu")                                                          \
    X(SIGMOID, "sigmoid")                                                    \
    X(SOFTPLUS, "softplus")                                                  \
    X(GELU_TANH_F16, "gelu_tanh_f16") /* gelu_tanh on halves, see below */

/* gelu_tanh_f16 is the GELU that ggml's CPU backend (llama.cpp) computes,
 * by a table of halves: 0 for x <= -10, x for x >= 10, otherwise x rounded
 * to half precision, gelu_tanh of that in single precision
 * (x/2 (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2)))), rounded to half again.
 * Models converted for llama.cpp (Gemma) are run with it so that their
 * greedy text follows the peer's; a relative rounding of up to 2^-11. */
typedef enum ox_unary_op {
#define OX__UNARY_ENUM(name, text) OX_UNARY_##name,
    OX_UNARY_LIST(OX__UNARY_ENUM)
#undef OX__UNARY_ENUM
    OX_UNARY_COUNT
} ox_unary_op;

/* "gelu", ...; NULL for an unknown op. Static string. */
OX_API const char *ox_unary_str(ox_unary_op op);

/* dst = f(a), same shape and dtype. */
OX_API ox_status ox_unary(ox_queue *q, ox_unary_op op, const ox_tensor *dst, const ox_tensor *a);

/* A gated unit: dst = act(gate) * up elementwise (GEGLU, SwiGLU), one
 * launch on devices; the values of ox_unary then ox_mul. All of one dtype
 * and shape; dst may be gate, not up. */
OX_API ox_status ox_glu(ox_queue *q, ox_unary_op act, const ox_tensor *dst, const ox_tensor *gate,
                        const ox_tensor *up);

/* ---- reductions along rows -------------------------------------------------- */

typedef enum ox_reduce_op {
    OX_REDUCE_SUM,
    OX_REDUCE_MEAN,
    OX_REDUCE_MAX,
    OX_REDUCE_ARGMAX /* index of the first maximum; dst is I32 */
} ox_reduce_op;

/* Reduce each row of a: dst has a's shape with ne[0] = 1. dst has a's dtype,
 * except for ARGMAX (I32). */
OX_API ox_status ox_reduce(ox_queue *q, ox_reduce_op op, const ox_tensor *dst, const ox_tensor *a);

/* dst = softmax(a * scale + mask) along rows. mask may be NULL; otherwise
 * F32 or F16 with mask->ne[0] == a->ne[0], repeating over a in the other
 * dimensions (-INFINITY entries mask out). A row whose every entry is masked
 * gives zeros. dst and a have the same shape and dtype. */
OX_API ox_status ox_softmax(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                            const ox_tensor *mask, float scale);

/* dst = log(softmax(a)) along rows, computed stably. */
OX_API ox_status ox_log_softmax(ox_queue *q, const ox_tensor *dst, const ox_tensor *a);

/* ---- norms ---------------------------------------------------------------------- */

/* dst = a / sqrt(mean(a^2) + eps) * weight, along rows. weight may be NULL;
 * otherwise a row (ne[0] elements) repeating over a. */
OX_API ox_status ox_rms_norm(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                             const ox_tensor *weight, float eps);

/* dst = (a - mean) / sqrt(var + eps) * weight + bias, along rows. weight and
 * bias may be NULL. */
OX_API ox_status ox_layer_norm(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                               const ox_tensor *weight, const ox_tensor *bias, float eps);

/* ---- rotary position embedding ---------------------------------------------- */

typedef enum ox_rope_mode {
    OX_ROPE_NORMAL = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): Llama GGUF layout */
    OX_ROPE_NEOX = 1    /* rotate halves (x[i], x[i + n_dims/2]): GPT-NeoX, Qwen, Gemma */
} ox_rope_mode;

typedef struct ox_rope_params {
    ox_rope_mode mode;
    int n_dims;        /* rotated dimensions (even, <= ne[0]); the rest pass through */
    float freq_base;   /* theta base, 10000 for most models */
    float freq_scale;  /* position scale (linear RoPE scaling), 1 for none */
} ox_rope_params;

/* a: [head_dim, n_heads, n_tokens, batch]; positions: I32 [n_tokens].
 * Token t of every head is rotated by angle pos[t] * freq_scale *
 * freq_base^(-2i/n_dims) for pair i. dst has a's shape and dtype.
 * positions may instead be the tokens' angles as ox_rope_table computes
 * them: F32 [n_dims, n_tokens], contiguous. A model whose layers share
 * parameters computes that table once a forward pass instead of once a
 * layer, and every device then rotates by the same angles, rounded once. */
OX_API ox_status ox_rope(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                         const ox_tensor *positions, const ox_rope_params *params);

/* The angles of n positions on the host: row t of table (n_dims floats)
 * holds cos of pair i's angle at pos[t] in column i and its sin in column
 * n_dims / 2 + i, each computed in double precision and rounded once, as
 * the CPU computes them for I32 positions. */
OX_API ox_status ox_rope_table(const ox_rope_params *params, const int32_t *positions, int64_t n,
                               float *table);

/* A decoder's residual step in one call (one launch on devices):
 *   x = x + (delta_weight ? rms_norm(delta) * delta_weight : delta)
 *   out = rms_norm(x) * weight
 * the norm of the residual branch (Gemma's post-norms) optional, the input
 * of the next block normalised from the updated x. x, delta, out: F32 of
 * one shape, contiguous; delta_weight, weight: F32 rows of ne[0], weight
 * required. out must not be x or delta. On the CPU the results are those
 * of ox_rms_norm, ox_add and ox_rms_norm in turn. */
OX_API ox_status ox_add_rms_norm(ox_queue *q, const ox_tensor *x, const ox_tensor *delta,
                                 const ox_tensor *delta_weight, const ox_tensor *out,
                                 const ox_tensor *weight, float eps);

/* The rotary embedding of a decoder layer's queries and keys in one call
 * (one launch on devices), each head first RMS-normalised and multiplied
 * by its weight when one is given (Qwen 3's and Gemma 3's q/k norms):
 *   q_dst = rope(rms_norm(q) * q_weight), k_dst = rope(rms_norm(k) * k_weight)
 * q, k: F32 [head_dim, n_heads, n_tokens, batch], each with its own number
 * of heads, head_dim at most 1024; q_dst, k_dst: the same shapes, F32, F16
 * or BF16, any strides (k_dst may be a view of an F16 KV cache: the keys
 * are written there directly); q_weight, k_weight: F32 [head_dim] or NULL
 * (no norm). k, k_dst and k_weight may all be NULL: queries only. A
 * destination may be its source (in place). On the CPU the results are
 * those of ox_rms_norm, then ox_rope, then ox_copy. */
OX_API ox_status ox_rope_qk(ox_queue *queue, const ox_tensor *q_dst, const ox_tensor *q,
                            const ox_tensor *q_weight, const ox_tensor *k_dst, const ox_tensor *k,
                            const ox_tensor *k_weight, const ox_tensor *positions,
                            const ox_rope_params *params, float eps);
/* (positions: I32 or the angle table, as for ox_rope.) */

/* ---- matrix multiplication ---------------------------------------------------- */

enum {
    OX_MATMUL_TRANS_A = 1u << 0, /* a is stored as [M rows of K]ᵀ, i.e. ne = {M, K} */
    OX_MATMUL_TRANS_B = 1u << 1  /* b is stored as ne = {K, N} (N rows of K) */
};

/* dst[M x N] = op(a)[M x K] . op(b)[K x N] for every batch, row-major:
 *   dst: ne = {N, M, B2, B3}, F32
 *   a:   ne = {K, M, A2, A3} (or {M, K, ...} with TRANS_A), F32, F16 or BF16
 *   b:   ne = {N, K, B2, B3} (or {K, N, ...} with TRANS_B), F32, F16 or BF16
 * a's batch dimensions repeat over b's (A2 divides B2, A3 divides B3), so
 * one weight matrix multiplies a batch. Accumulation is in F32. */
OX_API ox_status ox_matmul(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                           const ox_tensor *b, unsigned flags);

/* dst[i] = op(a) . op(b[i]) for each i < n (dst and b: arrays of n), as n
 * calls of ox_matmul with the same a and flags, sharing the work on a: for
 * quantized weights its 8-bit rounding is done once for every product that
 * needs the same rounding (on devices, one launch instead of n), as a
 * decoder layer's q, k, v or gate and up projections want. No dst may be
 * another's; n is 1 to OX_MATMUL_MANY_MAX. */
#define OX_MATMUL_MANY_MAX 8
OX_API ox_status ox_matmul_many(ox_queue *q, int n, const ox_tensor *dst, const ox_tensor *a,
                                const ox_tensor *b, unsigned flags);

/* ---- data movement -------------------------------------------------------------- */

/* dst[:, i, ...] = table[:, ids[i], ...]: table ne = {D, rows, T2, T3},
 * ids I32 ne = {n, I2, I3, 1}, dst ne = {D, n, I2, I3}. dst is F32 or the
 * table's dtype. An id outside [0, rows) is an error reported by the op on
 * the CPU; on other devices the row is filled with zeros. */
OX_API ox_status ox_get_rows(ox_queue *q, const ox_tensor *dst, const ox_tensor *table,
                             const ox_tensor *ids);

/* dst = src element by element in row-major order of their shapes, which
 * must be equal; converts between dtypes. With strided views this is also
 * "contiguous", transpose and permute. */
OX_API ox_status ox_copy(ox_queue *q, const ox_tensor *dst, const ox_tensor *src);

/* dst = a and b joined along dimension `dim`; the other dimensions must
 * match; all three share a dtype. */
OX_API ox_status ox_concat(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                           const ox_tensor *b, int dim);

/* ---- attention --------------------------------------------------------------- */

typedef struct ox_attention_params {
    float scale;  /* usually 1/sqrt(head_dim) */
    int causal;   /* nonzero: query i sees keys j <= n_kv - n_q + i */
} ox_attention_params;

/* dst = softmax(q kᵀ * scale + mask) v, per head and batch, fused:
 *   q:    ne = {D, n_q, H, B}            F32
 *   k:    ne = {D, n_kv, H_kv, B}        F32, F16 or BF16
 *   v:    ne = {Dv, n_kv, H_kv, B}       F32, F16 or BF16
 *   mask: ne = {n_kv, n_q, 1, 1} or NULL F32, additive
 *   dst:  ne = {Dv, n_q, H, B}           F32
 * Grouped-query heads: H_kv divides H; query head h uses kv head
 * h / (H / H_kv). n_q may differ from n_kv (prefill, decode). */
OX_API ox_status ox_attention(ox_queue *q, const ox_tensor *dst, const ox_tensor *query,
                              const ox_tensor *key, const ox_tensor *value, const ox_tensor *mask,
                              const ox_attention_params *params);

/* The same over a paged KV cache: the keys and values of many sequences
 * share pools of fixed-size pages, and a sequence's logical key j lives in
 * pool row pages[j / page_size] * page_size + j % page_size (the same row
 * in every kv head). n_kv logical keys are read:
 *   k_pool: ne = {D, n_pages * page_size, H_kv, 1}   F32, F16 or BF16
 *   v_pool: ne = {Dv, n_pages * page_size, H_kv, 1}  its dtype likewise
 *   pages:  ne = {>= ceil(n_kv / page_size), 1, 1, 1} I32, contiguous
 *   q {D, n_q, H, 1}, mask {n_kv, n_q, 1, 1} or NULL, dst {Dv, n_q, H, 1}
 * page_size is a power of two. A page number outside [0, n_pages) is
 * clamped into it (never read out of bounds), so a wrong table gives wrong
 * numbers, not a fault. Results are ox_attention's on the gathered rows. */
OX_API ox_status ox_attention_paged(ox_queue *q, const ox_tensor *dst, const ox_tensor *query,
                                    const ox_tensor *k_pool, const ox_tensor *v_pool,
                                    const ox_tensor *pages, int page_size, int64_t n_kv,
                                    const ox_tensor *mask, const ox_attention_params *params);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_OPS_H */
