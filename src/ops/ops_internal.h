/* Internal contract of the op layer: the checked state of one op call and
 * the device (portable kernel) implementations in device_ops.c. */
#ifndef OX_OPS_OPS_INTERNAL_H
#define OX_OPS_OPS_INTERNAL_H

#include "core/core.h"
#include "core/program.h"
#include "ops/cpu_ops.h"

/* One op call, after its queue was checked. */
typedef struct ox__op {
    const char *name;     /* "ox_add", for messages */
    ox_context *ctx;
    ox_queue *queue;
    ox_device *device;
    bool cpu;             /* the built-in CPU backend: native code */
    ox__cpu_exec exec;    /* when cpu */
} ox__op;

/* The packed rows of matrix w (ops/pack.c) where ox__matrix_pack made
 * them and the memory was not written since, else NULL. */
const void *ox__matrix_packed(const ox_tensor *w);

/* "f32[5,3,1,1]" into buf. */
const char *ox__shape_str(const ox_tensor *t, char *buf, size_t cap);
/* Dtype, buffer handle, positive sizes, element-aligned strides and bounds. */
ox_status ox__tensor_check(ox_context *ctx, const char *op, const char *what, const ox_tensor *t);

/* Portable-kernel implementations, one per op, for devices that are not the
 * CPU. Arguments are checked. */
ox_status ox__dev_binary(const ox__op *op, ox_binary_op kind, const ox_tensor *dst,
                         const ox_tensor *a, const ox_tensor *b);
ox_status ox__dev_scale(const ox__op *op, const ox_tensor *dst, const ox_tensor *a, float scale,
                        float bias);
ox_status ox__dev_clamp(const ox__op *op, const ox_tensor *dst, const ox_tensor *a, float lo,
                        float hi);
ox_status ox__dev_unary(const ox__op *op, ox_unary_op kind, const ox_tensor *dst,
                        const ox_tensor *a);
ox_status ox__dev_reduce(const ox__op *op, ox_reduce_op kind, const ox_tensor *dst,
                         const ox_tensor *a);
ox_status ox__dev_softmax(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                          const ox_tensor *mask, float scale, bool log_softmax);
ox_status ox__dev_norm(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                       const ox_tensor *weight, const ox_tensor *bias, float eps, bool rms);
ox_status ox__dev_rope(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                       const ox_tensor *positions, const ox_rope_params *params);
ox_status ox__dev_glu(const ox__op *op, ox_unary_op act, const ox_tensor *dst,
                      const ox_tensor *gate, const ox_tensor *up);
ox_status ox__dev_add_rms_norm(const ox__op *op, const ox_tensor *x, const ox_tensor *delta,
                               const ox_tensor *delta_weight, const ox_tensor *out,
                               const ox_tensor *weight, float eps);
ox_status ox__dev_rope_qk(const ox__op *op, const ox_tensor *q_dst, const ox_tensor *q,
                          const ox_tensor *q_weight, const ox_tensor *k_dst, const ox_tensor *k,
                          const ox_tensor *k_weight, const ox_tensor *positions,
                          const ox_rope_params *params, float eps);
ox_status ox__dev_matmul_many(const ox__op *op, int n, const ox_tensor *dst, const ox_tensor *a,
                              const ox_tensor *b, unsigned flags);
ox_status ox__dev_matmul(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                         const ox_tensor *b, unsigned flags);
ox_status ox__dev_get_rows(const ox__op *op, const ox_tensor *dst, const ox_tensor *table,
                           const ox_tensor *ids);
ox_status ox__dev_copy(const ox__op *op, const ox_tensor *dst, const ox_tensor *src);
/* A paged KV cache (ox_attention_paged): logical key j is pool row
 * table[j >> shift] * page + (j & (page - 1)), page numbers clamped into
 * [0, n_pages). */
typedef struct ox__dev_pages {
    const ox_tensor *table;
    int64_t page, shift, n_pages;
} ox__dev_pages;
ox_status ox__dev_attention(const ox__op *op, const ox_tensor *dst, const ox_tensor *q,
                            const ox_tensor *k, const ox_tensor *v, const ox_tensor *mask,
                            const ox_attention_params *params, const ox__dev_pages *pages);

#endif /* OX_OPS_OPS_INTERNAL_H */
