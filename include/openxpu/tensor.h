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

/* Element types: X(NAME, value, "name", bytes per block, elements per block).
 * Plain types have blocks of one element. Quantized types are the GGUF
 * (ggml) block formats, bit-exact: a row of ne[0] elements holds
 * ne[0] / block elements blocks, so ne[0] must be a multiple of the block. */
#define OX_DTYPE_LIST(X)                                                     \
    X(F32, 0, "f32", 4, 1)                                                   \
    X(F16, 1, "f16", 2, 1)                                                   \
    X(BF16, 2, "bf16", 2, 1)                                                 \
    X(I32, 3, "i32", 4, 1)                                                   \
    X(Q4_0, 4, "q4_0", 18, 32)                                               \
    X(Q4_1, 5, "q4_1", 20, 32)                                               \
    X(Q5_0, 6, "q5_0", 22, 32)                                               \
    X(Q5_1, 7, "q5_1", 24, 32)                                               \
    X(Q8_0, 8, "q8_0", 34, 32)                                               \
    X(Q4_K, 9, "q4_k", 144, 256)                                             \
    X(Q5_K, 10, "q5_k", 176, 256)                                            \
    X(Q6_K, 11, "q6_k", 210, 256)

typedef enum ox_dtype {
#define OX__DTYPE_ENUM(name, value, text, bytes, block) OX_DTYPE_##name = value,
    OX_DTYPE_LIST(OX__DTYPE_ENUM)
#undef OX__DTYPE_ENUM
    OX_DTYPE_COUNT
} ox_dtype;

/* "f32", "f16", ...; "unknown" for other values. Static string. */
OX_API const char *ox_dtype_str(ox_dtype dtype);

/* Bytes per block (per element for plain types); 0 for an unknown type. */
OX_API size_t ox_dtype_size(ox_dtype dtype);

/* Elements per block: 1 for plain types, 32 or 256 for quantized ones; 0
 * for an unknown type. */
OX_API int64_t ox_dtype_block(ox_dtype dtype);

/* True for the quantized block types (Q4_0 ... Q6_K). */
OX_API bool ox_dtype_is_quantized(ox_dtype dtype);

/* Bytes of a row of n elements (n a multiple of the block); 0 if n is not. */
OX_API size_t ox_dtype_row_size(ox_dtype dtype, int64_t n);

/* The dtype named `name` ("f16"), case-insensitive. OX_ERR_NOT_FOUND if none. */
OX_API ox_status ox_dtype_from_str(const char *name, ox_dtype *dtype);

typedef struct ox_tensor {
    ox_buffer *buffer;
    size_t offset;              /* bytes from the start of the buffer */
    ox_dtype dtype;
    int64_t ne[OX_MAX_DIMS];    /* elements along each dimension, ne[0] innermost */
    int64_t nb[OX_MAX_DIMS];    /* stride of each dimension, in bytes; for
                                   quantized types nb[0] is the block size */
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

/* A promise about weights: the matrix w (rows along dimension 1) is read,
 * not written, until the next ox_tensor_write or buffer transfer into its
 * memory. Where w's device multiplies faster from a copy in another layout
 * (the CPU's x86 kernels: quantized rows interleaved eight at a time), the
 * copy is made now, once, and ox_matmul, ox_matmul_many and ox_get_rows
 * read it, with the same results as from w; a write through those calls
 * retires it. Writing w any other way (as an op's output, from a user
 * kernel) breaks the promise: later products may read the old values.
 * *prepared (may be NULL) says whether a copy was made; any other tensor is
 * left as it is, with OX_OK. OX_ERR_INVALID for a bad tensor,
 * OX_ERR_OUT_OF_MEMORY when the copy does not fit (w stays usable as it
 * is). Language models call it for their quantized matrices. */
OX_API ox_status ox_tensor_prepare_weights(const ox_tensor *w, bool *prepared);

/* Convert a row of n elements (n a multiple of the dtype's block) between
 * its storage form and float: F32, F16, BF16 (round to nearest even) and
 * every quantized type (dequantization is bit-exact with the GGUF formats;
 * quantization picks block scales by a simple search and stays within the
 * error each format allows). OX_ERR_INVALID for I32, unknown dtypes or a
 * partial block. */
OX_API ox_status ox_row_to_f32(ox_dtype dtype, const void *src, float *dst, int64_t n);
OX_API ox_status ox_row_from_f32(ox_dtype dtype, const float *src, void *dst, int64_t n);

/* Conversions between float and the 16-bit types (round to nearest even). */
OX_API uint16_t ox_f32_to_f16(float f);
OX_API float ox_f16_to_f32(uint16_t h);
OX_API uint16_t ox_f32_to_bf16(float f);
OX_API float ox_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_TENSOR_H */
