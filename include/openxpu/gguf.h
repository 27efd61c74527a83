/* OpenXPU GGUF files: a validating reader and a writer.
 *
 * GGUF (versions 2 and 3, little-endian) holds a model's metadata as typed
 * key/value pairs and its weights as named tensors:
 *
 *     "GGUF"  u32 version  u64 tensor_count  u64 kv_count
 *     kv_count x  (string key, u32 value type, value)
 *     tensor_count x  (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 *                      u64 offset from the data section)
 *     padding to general.alignment (default 32), then the tensor data
 *
 * ox_gguf_open maps the file read-only and checks everything before it
 * returns: counts, string and array lengths against the bytes left, value
 * and tensor types, shapes (with overflow checks), alignment, and that every
 * tensor's data lies inside the file without overlapping another. A file
 * that fails gets OX_ERR_FORMAT and a message naming the problem and its
 * byte offset ("gguf: m.gguf: tensor 'x': offset 96 is not a multiple of the
 * alignment 32 at byte 210"); no allocation is ever sized by a count the
 * file's bytes cannot back. Metadata strings and tensor data are then
 * zero-copy views into the mapping.
 *
 * Multi-byte values in the mapping are little-endian and may be unaligned:
 * read them with memcpy (the getters below do). Big-endian files are refused. */
#ifndef OPENXPU_GGUF_H
#define OPENXPU_GGUF_H

#include <stdbool.h>

#include "openxpu/context.h"
#include "openxpu/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Metadata value types: X(NAME, id, "name", bytes; 0 for variable size). */
#define OX_GGUF_TYPE_LIST(X)                                                  \
    X(UINT8, 0, "u8", 1)                                                      \
    X(INT8, 1, "i8", 1)                                                       \
    X(UINT16, 2, "u16", 2)                                                    \
    X(INT16, 3, "i16", 2)                                                     \
    X(UINT32, 4, "u32", 4)                                                    \
    X(INT32, 5, "i32", 4)                                                     \
    X(FLOAT32, 6, "f32", 4)                                                   \
    X(BOOL, 7, "bool", 1)                                                     \
    X(STRING, 8, "string", 0)                                                 \
    X(ARRAY, 9, "array", 0)                                                   \
    X(UINT64, 10, "u64", 8)                                                   \
    X(INT64, 11, "i64", 8)                                                    \
    X(FLOAT64, 12, "f64", 8)

typedef enum ox_gguf_type {
#define OX__GGUF_TYPE_ENUM(name, id, text, bytes) OX_GGUF_##name = id,
    OX_GGUF_TYPE_LIST(OX__GGUF_TYPE_ENUM)
#undef OX__GGUF_TYPE_ENUM
    OX_GGUF_TYPE_COUNT
} ox_gguf_type;

/* "u32", "string", ...; "unknown" for other values. Static string. */
OX_API const char *ox_gguf_type_str(ox_gguf_type type);

/* Tensor types, as ggml numbers them (ggml.h, enum ggml_type; ids 4, 5,
 * 31-33 and 36-38 were removed there and are unknown here):
 * X(NAME, id, "name", elements per block, bytes per block, ox_dtype or
 * OX_DTYPE_COUNT when OpenXPU cannot compute with the type). */
#define OX_GGML_TYPE_LIST(X)                                                  \
    X(F32, 0, "f32", 1, 4, OX_DTYPE_F32)                                      \
    X(F16, 1, "f16", 1, 2, OX_DTYPE_F16)                                      \
    X(Q4_0, 2, "q4_0", 32, 18, OX_DTYPE_Q4_0)                                 \
    X(Q4_1, 3, "q4_1", 32, 20, OX_DTYPE_Q4_1)                                 \
    X(Q5_0, 6, "q5_0", 32, 22, OX_DTYPE_Q5_0)                                 \
    X(Q5_1, 7, "q5_1", 32, 24, OX_DTYPE_Q5_1)                                 \
    X(Q8_0, 8, "q8_0", 32, 34, OX_DTYPE_Q8_0)                                 \
    X(Q8_1, 9, "q8_1", 32, 36, OX_DTYPE_COUNT)                                \
    X(Q2_K, 10, "q2_k", 256, 84, OX_DTYPE_COUNT)                              \
    X(Q3_K, 11, "q3_k", 256, 110, OX_DTYPE_COUNT)                             \
    X(Q4_K, 12, "q4_k", 256, 144, OX_DTYPE_Q4_K)                              \
    X(Q5_K, 13, "q5_k", 256, 176, OX_DTYPE_Q5_K)                              \
    X(Q6_K, 14, "q6_k", 256, 210, OX_DTYPE_Q6_K)                              \
    X(Q8_K, 15, "q8_k", 256, 292, OX_DTYPE_COUNT)                             \
    X(IQ2_XXS, 16, "iq2_xxs", 256, 66, OX_DTYPE_COUNT)                        \
    X(IQ2_XS, 17, "iq2_xs", 256, 74, OX_DTYPE_COUNT)                          \
    X(IQ3_XXS, 18, "iq3_xxs", 256, 98, OX_DTYPE_COUNT)                        \
    X(IQ1_S, 19, "iq1_s", 256, 50, OX_DTYPE_COUNT)                            \
    X(IQ4_NL, 20, "iq4_nl", 32, 18, OX_DTYPE_COUNT)                           \
    X(IQ3_S, 21, "iq3_s", 256, 110, OX_DTYPE_COUNT)                           \
    X(IQ2_S, 22, "iq2_s", 256, 82, OX_DTYPE_COUNT)                            \
    X(IQ4_XS, 23, "iq4_xs", 256, 136, OX_DTYPE_COUNT)                         \
    X(I8, 24, "i8", 1, 1, OX_DTYPE_COUNT)                                     \
    X(I16, 25, "i16", 1, 2, OX_DTYPE_COUNT)                                   \
    X(I32, 26, "i32", 1, 4, OX_DTYPE_I32)                                     \
    X(I64, 27, "i64", 1, 8, OX_DTYPE_COUNT)                                   \
    X(F64, 28, "f64", 1, 8, OX_DTYPE_COUNT)                                   \
    X(IQ1_M, 29, "iq1_m", 256, 56, OX_DTYPE_COUNT)                            \
    X(BF16, 30, "bf16", 1, 2, OX_DTYPE_BF16)                                  \
    X(TQ1_0, 34, "tq1_0", 256, 54, OX_DTYPE_COUNT)                            \
    X(TQ2_0, 35, "tq2_0", 256, 66, OX_DTYPE_COUNT)                            \
    X(MXFP4, 39, "mxfp4", 32, 17, OX_DTYPE_COUNT)

typedef enum ox_ggml_type {
#define OX__GGML_TYPE_ENUM(name, id, text, block, bytes, dtype) OX_GGML_TYPE_##name = id,
    OX_GGML_TYPE_LIST(OX__GGML_TYPE_ENUM)
#undef OX__GGML_TYPE_ENUM
} ox_ggml_type;

/* "q4_k", ...; "unknown" for ids not in the list. Static string. */
OX_API const char *ox_ggml_type_str(uint32_t ggml_type);

/* The ggml type that stores `dtype`. OX_ERR_INVALID for an unknown dtype. */
OX_API ox_status ox_ggml_type_from_dtype(ox_dtype dtype, uint32_t *ggml_type);

/* ---- reading ------------------------------------------------------------- */

/* The longest tensor name GGUF allows, in bytes: ggml's GGML_MAX_NAME (64)
 * less its NUL. The reader refuses longer names, as ggml's does; the writer
 * does not write them. */
#define OX_GGUF_MAX_TENSOR_NAME 63

typedef struct ox_gguf ox_gguf;

/* Map the file at `path` read-only and validate it (see above). On success
 * *out owns the mapping: close it with ox_gguf_close, which invalidates
 * every pointer obtained from it. Errors: OX_ERR_IO (cannot open or map, a
 * directory, not a regular file), OX_ERR_FORMAT (malformed, with the byte
 * offset), OX_ERR_OUT_OF_MEMORY. On failure *out is NULL. The file must not
 * be truncated while it is open (the mapping would fault). */
OX_API ox_status ox_gguf_open(ox_context *ctx, const char *path, ox_gguf **out);

/* The same for `size` bytes at `data`, which are borrowed: they must stay
 * valid and unchanged until ox_gguf_close. Messages name "<memory>". */
OX_API ox_status ox_gguf_open_memory(ox_context *ctx, const void *data, size_t size,
                                     ox_gguf **out);

/* Unmap and free. Accepts NULL. */
OX_API void ox_gguf_close(ox_gguf *gguf);

/* Whether the file an ox_gguf_open mapped is still as it was: the same
 * size and modification time for the same device and inode. A file
 * rewritten or truncated in place is OX_ERR_IO naming it (its mapped pages
 * may now hold other bytes, or fault); one replaced by a rename is fine
 * (the mapping keeps the old file). A stat call: cheap enough to make
 * before every step of a long run. OX_OK for ox_gguf_open_memory. */
OX_API ox_status ox_gguf_check_file(const ox_gguf *gguf);

/* Format version: 2 or 3. */
OX_API uint32_t ox_gguf_version(const ox_gguf *gguf);

/* The whole file (borrowed until ox_gguf_close) and its size in bytes. */
OX_API const void *ox_gguf_file_data(const ox_gguf *gguf, size_t *size);

/* Alignment of tensor data (general.alignment, default 32), and the byte
 * offset of the data section in the file. */
OX_API uint32_t ox_gguf_alignment(const ox_gguf *gguf);
OX_API uint64_t ox_gguf_data_offset(const ox_gguf *gguf);

/* ---- metadata ---------------------------------------------------------------
 * Pairs are numbered 0 .. ox_gguf_kv_count() - 1 in file order. A getter
 * called on a pair of another type, or with an index out of range, returns
 * OX_ERR_INVALID with a message naming the key and both types. */

OX_API int64_t ox_gguf_kv_count(const ox_gguf *gguf);

/* The index of `key`, or -1 if there is none. Keys are unique. */
OX_API int64_t ox_gguf_find(const ox_gguf *gguf, const char *key);

/* The key of pair i, NUL-terminated (keys holding a NUL byte are refused
 * at open); borrowed until ox_gguf_close. NULL if i is out of range. */
OX_API const char *ox_gguf_kv_key(const ox_gguf *gguf, int64_t i);

/* The value type of pair i; OX_GGUF_TYPE_COUNT if i is out of range. */
OX_API ox_gguf_type ox_gguf_kv_type(const ox_gguf *gguf, int64_t i);

/* Exactly typed scalars. */
OX_API ox_status ox_gguf_get_u32(const ox_gguf *gguf, int64_t i, uint32_t *value);
OX_API ox_status ox_gguf_get_i32(const ox_gguf *gguf, int64_t i, int32_t *value);
OX_API ox_status ox_gguf_get_u64(const ox_gguf *gguf, int64_t i, uint64_t *value);
OX_API ox_status ox_gguf_get_i64(const ox_gguf *gguf, int64_t i, int64_t *value);
OX_API ox_status ox_gguf_get_f32(const ox_gguf *gguf, int64_t i, float *value);
OX_API ox_status ox_gguf_get_f64(const ox_gguf *gguf, int64_t i, double *value);
OX_API ox_status ox_gguf_get_bool(const ox_gguf *gguf, int64_t i, bool *value);

/* Any integer type (u8 ... i64), widened; a u64 above INT64_MAX gives
 * OX_ERR_OUT_OF_RANGE. Writers disagree on the widths of counts such as
 * context_length, so readers of such keys should use this. */
OX_API ox_status ox_gguf_get_int(const ox_gguf *gguf, int64_t i, int64_t *value);
/* f32 or f64, widened. */
OX_API ox_status ox_gguf_get_float(const ox_gguf *gguf, int64_t i, double *value);

/* A string value: *data points into the mapping (borrowed until
 * ox_gguf_close) and is NOT NUL-terminated; *size is its length in bytes.
 * The bytes are as the file holds them (UTF-8 by the spec, unchecked). */
OX_API ox_status ox_gguf_get_string(const ox_gguf *gguf, int64_t i, const char **data,
                                    size_t *size);

/* An array: its element type (never OX_GGUF_ARRAY: nested arrays are
 * refused at open) and element count. */
OX_API ox_status ox_gguf_get_array(const ox_gguf *gguf, int64_t i, ox_gguf_type *elem_type,
                                   uint64_t *count);

/* The elements of a numeric or bool array, packed little-endian in the
 * mapping (borrowed until ox_gguf_close; possibly unaligned: copy them out
 * with memcpy). OX_ERR_INVALID for a string array. */
OX_API ox_status ox_gguf_get_array_data(const ox_gguf *gguf, int64_t i, const void **data);

/* Element j of an array of integers (widened as ox_gguf_get_int), floats
 * (as ox_gguf_get_float) or strings (as ox_gguf_get_string). */
OX_API ox_status ox_gguf_get_array_int(const ox_gguf *gguf, int64_t i, uint64_t j,
                                       int64_t *value);
OX_API ox_status ox_gguf_get_array_float(const ox_gguf *gguf, int64_t i, uint64_t j,
                                         double *value);
OX_API ox_status ox_gguf_get_array_string(const ox_gguf *gguf, int64_t i, uint64_t j,
                                          const char **data, size_t *size);

/* ---- tensors ----------------------------------------------------------------- */

/* What the file says about one tensor. Set struct_size to
 * sizeof(ox_gguf_tensor_info) before the call; fields are only appended. */
typedef struct ox_gguf_tensor_info {
    size_t struct_size;
    const char *name;      /* NUL-terminated; borrowed until ox_gguf_close */
    uint32_t ggml_type;    /* OX_GGML_TYPE_*: always a known id */
    const char *type_name; /* "q4_k": static */
    ox_dtype dtype;        /* OX_DTYPE_COUNT when OpenXPU has no such dtype */
    uint32_t n_dims;       /* 1 to 4 */
    int64_t ne[OX_MAX_DIMS]; /* ne[0] innermost; 1 beyond n_dims */
    int64_t nelements;     /* product of ne */
    uint64_t offset;       /* of the data, from the start of the data section */
    uint64_t file_offset;  /* of the data, from the start of the file */
    size_t nbytes;         /* size of the data */
    const void *data;      /* into the mapping; borrowed until ox_gguf_close */
} ox_gguf_tensor_info;

OX_API int64_t ox_gguf_tensor_count(const ox_gguf *gguf);

/* The index of tensor `name`, or -1 if there is none. Names are unique. */
OX_API int64_t ox_gguf_find_tensor(const ox_gguf *gguf, const char *name);

/* Describe tensor i. OX_ERR_INVALID if i is out of range or struct_size is
 * too small. */
OX_API ox_status ox_gguf_tensor_info_get(const ox_gguf *gguf, int64_t i,
                                         ox_gguf_tensor_info *info);

/* Tensor i's data as an OpenXPU dtype: a zero-copy view into the mapping
 * (borrowed until ox_gguf_close), contiguous rows of ne[0] elements.
 * OX_ERR_UNSUPPORTED for a type OpenXPU cannot compute with ("tensor 'x':
 * unsupported tensor type q2_k"); any output pointer may be NULL. */
OX_API ox_status ox_gguf_tensor_data(const ox_gguf *gguf, int64_t i, ox_dtype *dtype,
                                     const void **data, size_t *nbytes);

/* ---- writing ---------------------------------------------------------------
 * Build a file in memory, then write it out. Keys, values and names are
 * copied when added; tensor data is borrowed until the writer is freed, or
 * produced while the file is written (ox_gguf_writer_add_tensor_fill).
 * Each call checks its arguments (unique non-empty keys and names, known
 * types, ne[0] a multiple of the block, nbytes matching the shape). */

typedef struct ox_gguf_writer ox_gguf_writer;

/* A writer for version 3 with alignment 32. The caller owns *out: free it
 * with ox_gguf_writer_free. */
OX_API ox_status ox_gguf_writer_create(ox_context *ctx, ox_gguf_writer **out);

/* Accepts NULL. */
OX_API void ox_gguf_writer_free(ox_gguf_writer *writer);

/* Write version 2 or 3 (they differ only for big-endian files). */
OX_API ox_status ox_gguf_writer_set_version(ox_gguf_writer *writer, uint32_t version);

/* A scalar of `type` (not STRING or ARRAY) read from `value`, which points
 * to a host value of that type (bool for BOOL). Adding the key
 * "general.alignment" (u32, a power of two) also sets the alignment used
 * for the tensor data. */
OX_API ox_status ox_gguf_writer_add_scalar(ox_gguf_writer *writer, const char *key,
                                           ox_gguf_type type, const void *value);

/* A string of `size` bytes (any bytes). */
OX_API ox_status ox_gguf_writer_add_string(ox_gguf_writer *writer, const char *key,
                                           const char *data, size_t size);

/* An array of `count` scalars of `elem_type` (not STRING or ARRAY) from a
 * host array of that type (bool for BOOL). */
OX_API ox_status ox_gguf_writer_add_array(ox_gguf_writer *writer, const char *key,
                                          ox_gguf_type elem_type, const void *data,
                                          uint64_t count);

/* An array of `count` NUL-terminated strings. */
OX_API ox_status ox_gguf_writer_add_string_array(ox_gguf_writer *writer, const char *key,
                                                 const char *const *strings, uint64_t count);

/* Metadata pair i of an open file, copied as the file holds it (key, type
 * and value byte for byte, whatever the type: strings with NUL bytes, string
 * arrays). Copying "general.alignment" also sets the alignment. */
OX_API ox_status ox_gguf_writer_copy_kv(ox_gguf_writer *writer, const ox_gguf *src, int64_t i);

/* A tensor of ggml type `ggml_type` (any known id, OX_GGML_TYPE_*), n_dims
 * (1 to 4) sizes in ne, and `nbytes` bytes of data at `data` (borrowed
 * until the writer is freed). */
OX_API ox_status ox_gguf_writer_add_tensor(ox_gguf_writer *writer, const char *name,
                                           uint32_t ggml_type, uint32_t n_dims,
                                           const int64_t *ne, const void *data, size_t nbytes);

/* Writes the `nbytes` bytes of tensor `name` (as ox_gguf_writer_add_tensor
 * would take them) into `buffer` when the file is written. Returns OX_OK,
 * or an error that stops the write. */
typedef ox_status (*ox_gguf_tensor_fill)(void *user, const char *name, void *buffer,
                                         size_t nbytes);

/* A tensor as ox_gguf_writer_add_tensor, whose data `fill` writes when the
 * file is written, in the order the tensors were added: its bytes need not
 * exist before. ox_gguf_writer_write_file holds one such tensor at a time,
 * in one buffer of the largest one's size from the context's allocator, so
 * a file larger than memory can be written; ox_gguf_writer_write_memory
 * lets `fill` write straight into the output. `user` is passed to `fill`
 * and borrowed until the writer is freed. A failed `fill` fails the write
 * with its status, and a message naming the tensor. */
OX_API ox_status ox_gguf_writer_add_tensor_fill(ox_gguf_writer *writer, const char *name,
                                                uint32_t ggml_type, uint32_t n_dims,
                                                const int64_t *ne, size_t nbytes,
                                                ox_gguf_tensor_fill fill, void *user);

/* Size in bytes of the file as it stands. */
OX_API ox_status ox_gguf_writer_size(const ox_gguf_writer *writer, size_t *size);

/* Write the file into `buffer` of `capacity` bytes (at least
 * ox_gguf_writer_size; OX_ERR_OUT_OF_RANGE otherwise). */
OX_API ox_status ox_gguf_writer_write_memory(const ox_gguf_writer *writer, void *buffer,
                                             size_t capacity);

/* Write the file to `path` (replaced if it exists). OX_ERR_IO names the
 * path and the reason. */
OX_API ox_status ox_gguf_writer_write_file(const ox_gguf_writer *writer, const char *path);

/* ---- quantizing --------------------------------------------------------------
 * A model into another GGUF file with its weights in one type or mixture,
 * as llama.cpp's llama-quantize makes it without an importance matrix: the
 * same tensors converted, the same type for each, the same bytes for each
 * block (ggml's reference quantizers). */

/* One tensor as it was written (or, with OX_QUANTIZE_DRY_RUN, would be). */
typedef struct ox_quantize_tensor {
    size_t struct_size;
    int64_t index, count;         /* this tensor of count, in file order */
    const char *name;             /* borrowed for the call */
    uint32_t from_type, to_type;  /* ggml types; equal when copied unchanged */
    uint32_t n_dims;
    int64_t ne[OX_MAX_DIMS];
    uint64_t bytes_in, bytes_out; /* its data */
    uint64_t done_bytes;          /* input bytes of this tensor and those before it */
    uint64_t total_bytes;         /* input bytes of all tensors */
} ox_quantize_tensor;

typedef void (*ox_quantize_progress)(void *user, const ox_quantize_tensor *tensor);

#define OX_QUANTIZE_DRY_RUN 1u /* choose the types and report them; write nothing */

typedef struct ox_quantize_options {
    size_t struct_size;            /* sizeof(ox_quantize_options) */
    int threads;                   /* rows converted in parallel; 0: the CPUs allowed */
    unsigned flags;                /* OX_QUANTIZE_* */
    ox_quantize_progress progress; /* after each tensor; may be NULL */
    void *user;
} ox_quantize_options;

typedef struct ox_quantize_stats {
    size_t struct_size;           /* sizeof(ox_quantize_stats) */
    int64_t tensors, quantized;   /* in the file; converted */
    uint64_t elements;            /* of all tensors */
    uint64_t bytes_in, bytes_out; /* tensor data */
    uint32_t file_type;           /* general.file_type written (llama.cpp's llama_ftype) */
} ox_quantize_stats;

/* The types ox_gguf_quantize takes, i = 0, 1, ...: "f16", "bf16", "q8_0",
 * "q4_0", "q4_1", "q5_0", "q5_1", "q4_k" (= "q4_k_s"), "q4_k_m", "q5_k"
 * (= "q5_k_s"), "q5_k_m", "q6_k"; NULL past the last. */
OX_API const char *ox_quantize_type_name(int i);

/* Write `out_path` from `in_path` with its weights as `type` (one of
 * ox_quantize_type_name, any case). Streams tensor by tensor: memory stays
 * near the largest output tensor. Metadata is copied, general.file_type
 * and general.quantization_version (2) set. The file is written under a
 * temporary name beside out_path and renamed over it at the end: on any
 * failure out_path is untouched and nothing is left behind. Errors name
 * what is wrong: OX_ERR_INVALID (unknown type), OX_ERR_IO / OX_ERR_FORMAT
 * (unreadable or malformed input, a non-finite weight, unwritable output),
 * OX_ERR_UNSUPPORTED (a weight in a type that cannot be read as floats).
 * options and stats may be NULL. */
OX_API ox_status ox_gguf_quantize(ox_context *ctx, const char *in_path, const char *out_path,
                                  const char *type, const ox_quantize_options *options,
                                  ox_quantize_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_GGUF_H */
