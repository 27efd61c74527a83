/* Naive double-precision reference operators: the simplest loops that
 * follow the definitions in openxpu/ops.h, used to test the CPU
 * implementations (tests/ops/) and by `ox check` to certify the CPU device.
 * Deliberately slow and obvious; never used to run a model.
 *
 * Tensors are dense row-major double arrays with shape ne[4] (ne[0]
 * innermost); index (i0,i1,i2,i3) is at i0 + ne0*(i1 + ne1*(i2 + ne2*i3)).
 * Integer tensors (ids, positions, argmax) are int32 arrays. */
#ifndef OX_OPS_REFERENCE_H
#define OX_OPS_REFERENCE_H

#include <stdint.h>

#include "openxpu/ops.h"

typedef struct ox_ref_tensor {
    double *data;        /* or NULL for an int tensor */
    int32_t *idata;      /* int tensors */
    int64_t ne[4];
} ox_ref_tensor;

void ox_ref_binary(ox_binary_op op, ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *b);
void ox_ref_scale(ox_ref_tensor *dst, const ox_ref_tensor *a, double scale, double bias);
void ox_ref_clamp(ox_ref_tensor *dst, const ox_ref_tensor *a, double lo, double hi);
void ox_ref_unary(ox_unary_op op, ox_ref_tensor *dst, const ox_ref_tensor *a);
/* The spacing of halves at x (2^-24 below 2^-14), and x rounded to the
 * nearest half (ties to even; infinite from 65520 on). */
double ox_ref_half_step(double x);
double ox_ref_round_half(double x);
void ox_ref_reduce(ox_reduce_op op, ox_ref_tensor *dst, const ox_ref_tensor *a);
void ox_ref_softmax(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *mask, double scale);
void ox_ref_log_softmax(ox_ref_tensor *dst, const ox_ref_tensor *a);
void ox_ref_rms_norm(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *weight, double eps);
void ox_ref_layer_norm(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *weight,
                       const ox_ref_tensor *bias, double eps);
void ox_ref_rope(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *positions,
                 const ox_rope_params *params);
/* a, b are given in their stored layout (flags say how to read them). */
void ox_ref_matmul(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *b, unsigned flags);
void ox_ref_get_rows(ox_ref_tensor *dst, const ox_ref_tensor *table, const ox_ref_tensor *ids);
void ox_ref_concat(ox_ref_tensor *dst, const ox_ref_tensor *a, const ox_ref_tensor *b, int dim);
void ox_ref_attention(ox_ref_tensor *dst, const ox_ref_tensor *q, const ox_ref_tensor *k,
                      const ox_ref_tensor *v, const ox_ref_tensor *mask,
                      const ox_attention_params *params);

/* Normalized mean squared error sum((x-y)^2) / sum(y^2) (y: reference);
 * 0 when both are all zero. Non-finite values where the reference is
 * finite give INFINITY. */
double ox_ref_nmse(const double *x, const double *ref, int64_t n);

#endif /* OX_OPS_REFERENCE_H */
