/* OpenXPU tensors: typed, strided views of buffer memory.
 *
 * An ox_tensor is a plain descriptor, not an owner: it names a buffer, a byte
 * offset into it, an element type, up to four dimensions and their strides.
 * Dimension 0 is the innermost (the length of a row); unused dimensions have
 * size 1. Strides are in bytes, so transposes and permutations are views:
 *
 *     a 3x5 row-major float matrix:   ne = {5, 3, 1, 1}, nb = {4, 20, 60, 60}
 *     its transpose (a view):         ne = {3, 5, 1, 1}, nb = {20, 4, 60, 60}
 *
 * The tensor does not keep its buffer alive; the caller does. */
#ifndef OPENXPU_TENSOR_H
#define OPENXPU_TENSOR_H

#include <stdbool.h>

#include "openxpu/buffer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OX_MAX_DIMS 4

/* Element types. X(NAME, value, "name", size in bytes) */
#define OX_DTYPE_LIST(X)                                                     \
    X(F32, 0, "f32", 4)                                                      \
    X(F16, 1, "f16", 2)                                                      \
    X(BF16, 2, "bf16", 2)                                                    \
    X(I32, 3, "i32", 4)

typedef enum ox_dtype {
#define OX__DTYPE_ENUM(name, value, text, size) OX_DTYPE_##name = value,
    OX_DTYPE_LIST(OX__DTYPE_ENUM)
#undef OX__DTYPE_ENUM
    OX_DTYPE_COUNT
} ox_dtype;

/* "f32", "f16", ...; "unknown" for other values. Static string. */
OX_API const char *ox_dtype_str(ox_dtype dtype);

/* Bytes per element; 0 for an unknown type. */
OX_API size_t ox_dtype_size(ox_dtype dtype);

/* The dtype named `name` ("f16"), case-insensitive. OX_ERR_NOT_FOUND if none. */
OX_API ox_status ox_dtype_from_str(const char *name, ox_dtype *dtype);

typedef struct ox_tensor {
    ox_buffer *buffer;
    size_t offset;              /* bytes from the start of the buffer */
    ox_dtype dtype;
    int64_t ne[OX_MAX_DIMS];    /* elements along each dimension, ne[0] innermost */
    int64_t nb[OX_MAX_DIMS];    /* stride of each dimension, in bytes */
} ox_tensor;

/* A contiguous row-major tensor of ne0 x ne1 x ne2 x ne3 elements at
 * `offset` bytes into `buffer` (pass 1 for unused dimensions). Does not
 * check anything: ops check their tensors when they are run. */
OX_API ox_tensor ox_tensor_make(ox_buffer *buffer, size_t offset, ox_dtype dtype, int64_t ne0,
                                int64_t ne1, int64_t ne2, int64_t ne3);

/* Number of elements (product of ne). */
OX_API int64_t ox_tensor_nelements(const ox_tensor *t);

/* True if the elements are densely packed in row-major order. */
OX_API bool ox_tensor_is_contiguous(const ox_tensor *t);

/* A view with dimensions reordered: dimension i of the result is dimension
 * axes[i] of t. axes must be a permutation of 0..3. */
OX_API ox_tensor ox_tensor_permute(const ox_tensor *t, const int axes[OX_MAX_DIMS]);

/* A view with dimensions 0 and 1 swapped. */
OX_API ox_tensor ox_tensor_transpose(const ox_tensor *t);

/* Check that `t` describes memory inside its buffer (every element of every
 * dimension, with overflow checks), with a known dtype and positive sizes.
 * On failure the message names `what`, the shape and the buffer size. */
OX_API ox_status ox_tensor_check(const ox_tensor *t, const char *what);

/* Allocate a contiguous tensor's buffer on `device`. The caller owns
 * t->buffer: free it with ox_buffer_free. */
OX_API ox_status ox_tensor_alloc(ox_device *device, ox_dtype dtype, int64_t ne0, int64_t ne1,
                                 int64_t ne2, int64_t ne3, ox_tensor *t);

/* Blocking copies between a tensor and a host array of its dtype, in
 * row-major order of ne (strided tensors are gathered/scattered).
 * `size` is the host array's size in bytes and must equal
 * nelements * dtype size. */
OX_API ox_status ox_tensor_write(const ox_tensor *t, const void *src, size_t size);
OX_API ox_status ox_tensor_read(const ox_tensor *t, void *dst, size_t size);

/* Conversions between float and the 16-bit types (round to nearest even). */
OX_API uint16_t ox_f32_to_f16(float f);
OX_API float ox_f16_to_f32(uint16_t h);
OX_API uint16_t ox_f32_to_bf16(float f);
OX_API float ox_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_TENSOR_H */
