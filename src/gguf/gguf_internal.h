/* Definitions shared by the GGUF reader and writer: the format's constants,
 * the table of ggml tensor types and little-endian helpers. */
#ifndef OX_GGUF_INTERNAL_H
#define OX_GGUF_INTERNAL_H

#include <string.h>

#include "openxpu/gguf.h"

#define OX__GGUF_MAGIC "GGUF"
#define OX__GGUF_DEFAULT_ALIGNMENT 32u
#define OX__GGUF_ALIGNMENT_KEY "general.alignment"

/* One row of OX_GGML_TYPE_LIST. */
typedef struct ox__ggml_type_traits {
    uint32_t id;
    const char *name;
    int64_t block;   /* elements per block */
    size_t bytes;    /* bytes per block */
    ox_dtype dtype;  /* OX_DTYPE_COUNT: none */
} ox__ggml_type_traits;

/* The traits of ggml type `id`, or NULL for an unknown id. */
const ox__ggml_type_traits *ox__ggml_type_find(uint32_t id);

/* The context a reader was opened in (for its messages). */
ox_context *ox__gguf_context(const ox_gguf *gguf);

/* Give back the resident pages of [data, data + bytes) of a file the
 * reader mapped (read again from the file if touched later, a page at a
 * time); nothing for one opened from memory. */
void ox__gguf_release_pages(const ox_gguf *gguf, const void *data, size_t bytes);

/* Bytes of one value of a fixed-size metadata type; 0 for STRING, ARRAY and
 * unknown types. */
size_t ox__gguf_type_size(uint32_t type);

static inline uint64_t ox__gguf_load_le(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static inline void ox__gguf_store_le(void *p, uint64_t v, size_t bytes)
{
    unsigned char *b = p;
    for (size_t i = 0; i < bytes; i++) b[i] = (unsigned char)(v >> (8 * i));
}

/* The bytes of metadata pair i as the file holds them (key, type, value),
 * for copying it unchanged; OX_ERR_INVALID for an index out of range. */
ox_status ox__gguf_kv_raw(const ox_gguf *gguf, int64_t i, const unsigned char **data,
                          size_t *size);

#endif /* OX_GGUF_INTERNAL_H */
