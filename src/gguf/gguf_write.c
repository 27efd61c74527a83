/* The GGUF writer: collect metadata and tensors, then lay them out as a
 * version 2 or 3 file in memory or on disk; tensor data is borrowed, or
 * produced by a callback as the file is written. Used by tests, the fuzz
 * corpus generator and tools (bench/make_model.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf_internal.h"

/* A growing byte string in the context's memory. */
typedef struct bytes {
    unsigned char *data;
    size_t size, capacity;
} bytes;

typedef struct writer_kv {
    char *key;
    bytes encoded; /* the whole pair as the file holds it */
} writer_kv;

typedef struct writer_tensor {
    char *name;
    uint32_t ggml_type;
    uint32_t n_dims;
    int64_t ne[OX_MAX_DIMS];
    const void *data; /* borrowed; NULL when fill produces it */
    size_t nbytes;
    ox_gguf_tensor_fill fill; /* NULL when data is given */
    void *fill_user;
} writer_tensor;

struct ox_gguf_writer {
    ox_context *ctx;
    uint32_t version;
    uint32_t alignment;
    writer_kv *kvs;
    size_t kv_count, kv_capacity;
    writer_tensor *tensors;
    size_t tensor_count, tensor_capacity;
};

static ox_status bytes_append(ox_context *ctx, bytes *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->size)
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_gguf_writer: value too large");
    if (b->size + n > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 64;
        while (capacity < b->size + n) capacity = capacity > SIZE_MAX / 2 ? b->size + n : 2 * capacity;
        void *grown = ctx->alloc(ctx->alloc_user, b->data, b->capacity, capacity);
        if (!grown)
            return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_gguf_writer: out of memory for %zu bytes",
                            capacity);
        b->data = grown;
        b->capacity = capacity;
    }
    if (n) memcpy(b->data + b->size, p, n);
    b->size += n;
    return OX_OK;
}

static ox_status bytes_append_le(ox_context *ctx, bytes *b, uint64_t v, size_t size)
{
    unsigned char buf[8];
    ox__gguf_store_le(buf, v, size);
    return bytes_append(ctx, b, buf, size);
}

static ox_status bytes_append_string(ox_context *ctx, bytes *b, const char *s, size_t n)
{
    ox_status status = bytes_append_le(ctx, b, n, 8);
    return status == OX_OK ? bytes_append(ctx, b, s, n) : status;
}

static void bytes_free(ox_context *ctx, bytes *b)
{
    if (b->data) ox__free(ctx, b->data, b->capacity);
    *b = (bytes){0};
}

/* Make room for one more entry of `elem` bytes. */
static ox_status grow(ox_context *ctx, void **array, size_t *capacity, size_t used, size_t elem)
{
    if (used < *capacity) return OX_OK;
    size_t capacity2 = *capacity ? 2 * *capacity : 16;
    void *grown = ctx->alloc(ctx->alloc_user, *array, *capacity * elem, capacity2 * elem);
    if (!grown) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_gguf_writer: out of memory");
    *array = grown;
    *capacity = capacity2;
    return OX_OK;
}

ox_status ox_gguf_writer_create(ox_context *ctx, ox_gguf_writer **out)
{
    ox_status status = ox__handle_check(ctx, OX__HANDLE_CONTEXT, "ox_gguf_writer_create", "ctx",
                                        NULL);
    if (status != OX_OK) return status;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "ox_gguf_writer_create: out is NULL");
    *out = ox__calloc(ctx, 1, sizeof **out);
    if (!*out) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_gguf_writer_create: out of memory");
    (*out)->ctx = ctx;
    (*out)->version = 3;
    (*out)->alignment = OX__GGUF_DEFAULT_ALIGNMENT;
    return OX_OK;
}

void ox_gguf_writer_free(ox_gguf_writer *w)
{
    if (!w) return;
    ox_context *ctx = w->ctx;
    for (size_t i = 0; i < w->kv_count; i++) {
        ox__free(ctx, w->kvs[i].key, strlen(w->kvs[i].key) + 1);
        bytes_free(ctx, &w->kvs[i].encoded);
    }
    for (size_t i = 0; i < w->tensor_count; i++)
        ox__free(ctx, w->tensors[i].name, strlen(w->tensors[i].name) + 1);
    if (w->kvs) ox__free(ctx, w->kvs, w->kv_capacity * sizeof *w->kvs);
    if (w->tensors) ox__free(ctx, w->tensors, w->tensor_capacity * sizeof *w->tensors);
    ox__free(ctx, w, sizeof *w);
}

ox_status ox_gguf_writer_set_version(ox_gguf_writer *w, uint32_t version)
{
    if (!w) return ox__fail(NULL, OX_ERR_INVALID, "ox_gguf_writer_set_version: writer is NULL");
    if (version != 2 && version != 3)
        return ox__fail(w->ctx, OX_ERR_INVALID,
                        "ox_gguf_writer_set_version: version %u (2 or 3 allowed)", version);
    w->version = version;
    return OX_OK;
}

/* A new pair's slot with its key: the key checked (not empty, not added
 * before), nothing encoded yet. end_kv keeps or drops it. */
static ox_status new_kv(ox_gguf_writer *w, const char *key, const char *func, writer_kv **out)
{
    if (!w) return ox__fail(NULL, OX_ERR_INVALID, "%s: writer is NULL", func);
    if (!key || !key[0]) return ox__fail(w->ctx, OX_ERR_INVALID, "%s: key is NULL or empty", func);
    for (size_t i = 0; i < w->kv_count; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return ox__fail(w->ctx, OX_ERR_INVALID, "%s: key '%s' was already added", func, key);
    ox_status status = grow(w->ctx, (void **)&w->kvs, &w->kv_capacity, w->kv_count, sizeof *w->kvs);
    if (status != OX_OK) return status;
    writer_kv *kv = &w->kvs[w->kv_count];
    *kv = (writer_kv){0};
    kv->key = ox__strdup(w->ctx, key);
    if (!kv->key) return ox__fail(w->ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of memory", func);
    *out = kv;
    return OX_OK;
}

/* Keep the pair begun by new_kv or begin_kv, or drop it after a failure. */
static ox_status end_kv(ox_gguf_writer *w, writer_kv *kv, ox_status status)
{
    if (status == OX_OK) {
        w->kv_count++;
    } else {
        bytes_free(w->ctx, &kv->encoded);
        ox__free(w->ctx, kv->key, strlen(kv->key) + 1);
    }
    return status;
}

/* Start a pair: check the key, then encode it and the value type. */
static ox_status begin_kv(ox_gguf_writer *w, const char *key, uint32_t type, const char *func,
                          writer_kv **out)
{
    writer_kv *kv;
    ox_status status = new_kv(w, key, func, &kv);
    if (status != OX_OK) return status;
    status = bytes_append_string(w->ctx, &kv->encoded, key, strlen(key));
    if (status == OX_OK) status = bytes_append_le(w->ctx, &kv->encoded, type, 4);
    if (status != OX_OK) return end_kv(w, kv, status);
    *out = kv;
    return OX_OK;
}

static bool is_fixed(ox_gguf_type type)
{
    return (unsigned)type < OX_GGUF_TYPE_COUNT && ox__gguf_type_size(type) != 0;
}

/* Append `count` host values of a fixed-size type, little-endian. */
static ox_status append_values(ox_context *ctx, bytes *b, ox_gguf_type type, const void *values,
                               uint64_t count)
{
    size_t size = ox__gguf_type_size(type);
    const unsigned char *p = values;
    for (uint64_t j = 0; j < count; j++) {
        uint64_t v = 0;
        if (type == OX_GGUF_BOOL) {
            bool flag;
            memcpy(&flag, p + j * sizeof(bool), sizeof(bool));
            v = flag ? 1 : 0;
        } else if (size == 1) {
            v = p[j];
        } else if (size == 2) {
            uint16_t x;
            memcpy(&x, p + j * 2, 2);
            v = x;
        } else if (size == 4) {
            uint32_t x;
            memcpy(&x, p + j * 4, 4);
            v = x;
        } else {
            memcpy(&v, p + j * 8, 8);
        }
        ox_status status = bytes_append_le(ctx, b, v, size);
        if (status != OX_OK) return status;
    }
    return OX_OK;
}

/* general.alignment must be a power of two; false after saying so. */
static bool alignment_ok(ox_gguf_writer *w, uint32_t alignment, const char *func)
{
    if (alignment != 0 && (alignment & (alignment - 1)) == 0) return true;
    ox__fail(w->ctx, OX_ERR_INVALID, "%s: general.alignment %u is not a power of two", func,
             alignment);
    return false;
}

ox_status ox_gguf_writer_add_scalar(ox_gguf_writer *w, const char *key, ox_gguf_type type,
                                    const void *value)
{
    static const char func[] = "ox_gguf_writer_add_scalar";
    if (w && !is_fixed(type))
        return ox__fail(w->ctx, OX_ERR_INVALID, "%s: key '%s': type %s is not a scalar type",
                        func, key ? key : "(null)", ox_gguf_type_str(type));
    if (w && !value) return ox__fail(w->ctx, OX_ERR_INVALID, "%s: value is NULL", func);
    uint32_t alignment = 0;
    if (w && key && strcmp(key, OX__GGUF_ALIGNMENT_KEY) == 0) {
        if (type != OX_GGUF_UINT32)
            return ox__fail(w->ctx, OX_ERR_INVALID, "%s: general.alignment must be a u32", func);
        memcpy(&alignment, value, 4);
        if (!alignment_ok(w, alignment, func)) return OX_ERR_INVALID;
    }
    writer_kv *kv;
    ox_status status = begin_kv(w, key, type, func, &kv);
    if (status != OX_OK) return status;
    status = end_kv(w, kv, append_values(w->ctx, &kv->encoded, type, value, 1));
    if (status == OX_OK && alignment) w->alignment = alignment;
    return status;
}

ox_status ox_gguf_writer_add_string(ox_gguf_writer *w, const char *key, const char *data,
                                    size_t size)
{
    static const char func[] = "ox_gguf_writer_add_string";
    if (w && !data && size) return ox__fail(w->ctx, OX_ERR_INVALID, "%s: data is NULL", func);
    writer_kv *kv;
    ox_status status = begin_kv(w, key, OX_GGUF_STRING, func, &kv);
    if (status != OX_OK) return status;
    return end_kv(w, kv, bytes_append_string(w->ctx, &kv->encoded, data, size));
}

ox_status ox_gguf_writer_add_array(ox_gguf_writer *w, const char *key, ox_gguf_type elem_type,
                                   const void *data, uint64_t count)
{
    static const char func[] = "ox_gguf_writer_add_array";
    if (w && !is_fixed(elem_type))
        return ox__fail(w->ctx, OX_ERR_INVALID,
                        "%s: key '%s': element type %s is not a scalar type (use "
                        "ox_gguf_writer_add_string_array for strings)",
                        func, key ? key : "(null)", ox_gguf_type_str(elem_type));
    if (w && !data && count) return ox__fail(w->ctx, OX_ERR_INVALID, "%s: data is NULL", func);
    if (w && key && strcmp(key, OX__GGUF_ALIGNMENT_KEY) == 0)
        return ox__fail(w->ctx, OX_ERR_INVALID, "%s: general.alignment must be a u32", func);
    writer_kv *kv;
    ox_status status = begin_kv(w, key, OX_GGUF_ARRAY, func, &kv);
    if (status != OX_OK) return status;
    status = bytes_append_le(w->ctx, &kv->encoded, elem_type, 4);
    if (status == OX_OK) status = bytes_append_le(w->ctx, &kv->encoded, count, 8);
    if (status == OX_OK) status = append_values(w->ctx, &kv->encoded, elem_type, data, count);
    return end_kv(w, kv, status);
}

ox_status ox_gguf_writer_add_string_array(ox_gguf_writer *w, const char *key,
                                          const char *const *strings, uint64_t count)
{
    static const char func[] = "ox_gguf_writer_add_string_array";
    if (w && !strings && count) return ox__fail(w->ctx, OX_ERR_INVALID, "%s: strings is NULL", func);
    if (w && key && strcmp(key, OX__GGUF_ALIGNMENT_KEY) == 0)
        return ox__fail(w->ctx, OX_ERR_INVALID, "%s: general.alignment must be a u32", func);
    for (uint64_t j = 0; w && j < count; j++)
        if (!strings[j])
            return ox__fail(w->ctx, OX_ERR_INVALID, "%s: string %llu is NULL", func,
                            (unsigned long long)j);
    writer_kv *kv;
    ox_status status = begin_kv(w, key, OX_GGUF_ARRAY, func, &kv);
    if (status != OX_OK) return status;
    status = bytes_append_le(w->ctx, &kv->encoded, OX_GGUF_STRING, 4);
    if (status == OX_OK) status = bytes_append_le(w->ctx, &kv->encoded, count, 8);
    for (uint64_t j = 0; status == OX_OK && j < count; j++)
        status = bytes_append_string(w->ctx, &kv->encoded, strings[j], strlen(strings[j]));
    return end_kv(w, kv, status);
}

ox_status ox_gguf_writer_copy_kv(ox_gguf_writer *w, const ox_gguf *src, int64_t i)
{
    static const char func[] = "ox_gguf_writer_copy_kv";
    if (!w) return ox__fail(NULL, OX_ERR_INVALID, "%s: writer is NULL", func);
    const unsigned char *raw;
    size_t size;
    const char *key = ox_gguf_kv_key(src, i);
    if (!key || ox__gguf_kv_raw(src, i, &raw, &size) != OX_OK)
        return ox__fail(w->ctx, OX_ERR_INVALID, "%s: no metadata pair %lld in the source", func,
                        (long long)i);
    uint32_t alignment = 0;
    if (strcmp(key, OX__GGUF_ALIGNMENT_KEY) == 0 &&
        (ox_gguf_get_u32(src, i, &alignment) != OX_OK || !alignment_ok(w, alignment, func)))
        return OX_ERR_INVALID;
    writer_kv *kv;
    ox_status status = new_kv(w, key, func, &kv);
    if (status != OX_OK) return status;
    status = end_kv(w, kv, bytes_append(w->ctx, &kv->encoded, raw, size));
    if (status == OX_OK && alignment) w->alignment = alignment;
    return status;
}

/* Check a tensor's description and append it; `source` holds its data or fill. */
static ox_status add_tensor(ox_gguf_writer *w, const char *func, const char *name,
                            uint32_t ggml_type, uint32_t n_dims, const int64_t *ne,
                            const writer_tensor *source)
{
    if (!w) return ox__fail(NULL, OX_ERR_INVALID, "%s: writer is NULL", func);
    size_t nbytes = source->nbytes;
    ox_context *ctx = w->ctx;
    if (!name || !name[0]) return ox__fail(ctx, OX_ERR_INVALID, "%s: name is NULL or empty", func);
    if (strlen(name) > OX_GGUF_MAX_TENSOR_NAME)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: tensor name '%.40s...' is %zu bytes; GGUF allows "
                        "at most %d", func, name, strlen(name), OX_GGUF_MAX_TENSOR_NAME);
    const ox__ggml_type_traits *traits = ox__ggml_type_find(ggml_type);
    if (!traits)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: tensor '%s': unknown ggml type %u", func, name,
                        ggml_type);
    if (n_dims < 1 || n_dims > OX_MAX_DIMS || !ne)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: tensor '%s': %u dimensions (1 to %d allowed)",
                        func, name, n_dims, OX_MAX_DIMS);
    if (!source->data && !source->fill && nbytes)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: data is NULL", func);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || elements > (uint64_t)INT64_MAX / (uint64_t)ne[d])
            return ox__fail(ctx, OX_ERR_INVALID, "%s: tensor '%s': bad size %lld of dimension %u",
                            func, name, (long long)ne[d], d);
        elements *= (uint64_t)ne[d];
    }
    if (ne[0] % traits->block != 0)
        return ox__fail(ctx, OX_ERR_INVALID,
                        "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block (%lld)",
                        func, name, (long long)ne[0], traits->name, (long long)traits->block);
    /* elements / block * bytes, checked */
    uint64_t blocks = elements / (uint64_t)traits->block;
    if (blocks > SIZE_MAX / traits->bytes || blocks * traits->bytes != nbytes)
        return ox__fail(ctx, OX_ERR_INVALID,
                        "%s: tensor '%s': %zu bytes of data, the shape needs %llu x %zu", func,
                        name, nbytes, (unsigned long long)blocks, traits->bytes);
    for (size_t i = 0; i < w->tensor_count; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return ox__fail(ctx, OX_ERR_INVALID, "%s: tensor '%s' was already added", func, name);
    ox_status status = grow(ctx, (void **)&w->tensors, &w->tensor_capacity, w->tensor_count,
                            sizeof *w->tensors);
    if (status != OX_OK) return status;
    writer_tensor *t = &w->tensors[w->tensor_count];
    *t = *source;
    t->ggml_type = ggml_type;
    t->n_dims = n_dims;
    for (int d = 0; d < OX_MAX_DIMS; d++) t->ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
    t->name = ox__strdup(ctx, name);
    if (!t->name) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of memory", func);
    w->tensor_count++;
    return OX_OK;
}

ox_status ox_gguf_writer_add_tensor(ox_gguf_writer *w, const char *name, uint32_t ggml_type,
                                    uint32_t n_dims, const int64_t *ne, const void *data,
                                    size_t nbytes)
{
    writer_tensor source = {.data = data, .nbytes = nbytes};
    return add_tensor(w, "ox_gguf_writer_add_tensor", name, ggml_type, n_dims, ne, &source);
}

ox_status ox_gguf_writer_add_tensor_fill(ox_gguf_writer *w, const char *name, uint32_t ggml_type,
                                         uint32_t n_dims, const int64_t *ne, size_t nbytes,
                                         ox_gguf_tensor_fill fill, void *user)
{
    static const char func[] = "ox_gguf_writer_add_tensor_fill";
    if (w && !fill) return ox__fail(w->ctx, OX_ERR_INVALID, "%s: fill is NULL", func);
    writer_tensor source = {.nbytes = nbytes, .fill = fill, .fill_user = user};
    return add_tensor(w, func, name, ggml_type, n_dims, ne, &source);
}

/* ---- layout and output --------------------------------------------------- */

static size_t align_up(size_t n, size_t alignment)
{
    return (n + alignment - 1) / alignment * alignment;
}

static size_t tensor_info_size(const writer_tensor *t)
{
    return 8 + strlen(t->name) + 4 + 8 * (size_t)t->n_dims + 4 + 8;
}

ox_status ox_gguf_writer_size(const ox_gguf_writer *w, size_t *size)
{
    if (!w) return ox__fail(NULL, OX_ERR_INVALID, "ox_gguf_writer_size: writer is NULL");
    if (!size) return ox__fail(w->ctx, OX_ERR_INVALID, "ox_gguf_writer_size: size is NULL");
    size_t n = 24;
    for (size_t i = 0; i < w->kv_count; i++) n += w->kvs[i].encoded.size;
    for (size_t i = 0; i < w->tensor_count; i++) n += tensor_info_size(&w->tensors[i]);
    if (w->tensor_count) n = align_up(n, w->alignment);
    for (size_t i = 0; i < w->tensor_count; i++) n += align_up(w->tensors[i].nbytes, w->alignment);
    *size = n;
    return OX_OK;
}

/* Where the bytes go: a memory buffer or a stdio stream (then `scratch`
 * holds the tensor a fill produces). */
typedef struct sink {
    unsigned char *buffer;
    size_t at;
    FILE *file;
    unsigned char *scratch;
    bool failed;
} sink;

static void put(sink *s, const void *p, size_t n)
{
    if (s->failed || n == 0) return;
    if (s->file) {
        s->failed = fwrite(p, 1, n, s->file) != n;
    } else {
        memcpy(s->buffer + s->at, p, n);
    }
    s->at += n;
}

static void put_le(sink *s, uint64_t v, size_t size)
{
    unsigned char buf[8];
    ox__gguf_store_le(buf, v, size);
    put(s, buf, size);
}

static void put_padding(sink *s, size_t alignment)
{
    static const unsigned char zeros[256];
    size_t pad = align_up(s->at, alignment) - s->at;
    while (pad) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        put(s, zeros, n);
        pad -= n;
    }
}

/* Tensor t's data: borrowed, or produced by its fill into the output
 * buffer or the scratch. */
static ox_status put_tensor(const ox_gguf_writer *w, const writer_tensor *t, sink *s,
                            const char *where)
{
    if (!t->fill) {
        put(s, t->data, t->nbytes);
        return OX_OK;
    }
    unsigned char *target = s->file ? s->scratch : s->buffer + s->at;
    ox__error_forget(w->ctx); /* what the fill function says, if it says anything */
    ox_status status = t->nbytes ? t->fill(t->fill_user, t->name, target, t->nbytes) : OX_OK;
    if (status != OX_OK) {
        /* keep what the fill function said, which names the problem */
        const char *said = ox_errmsg(w->ctx);
        char reason[512];
        snprintf(reason, sizeof reason, "%s", said && *said ? said : ox_status_str(status));
        return ox__fail(w->ctx, status, "gguf: %s: tensor '%s': its fill function failed: %s",
                        where, t->name, reason);
    }
    if (s->file) {
        put(s, target, t->nbytes);
    } else {
        s->at += t->nbytes;
    }
    return OX_OK;
}

/* The whole file into s; fails only when a fill does (a failed stdio write
 * is left in s->failed). */
static ox_status emit(const ox_gguf_writer *w, sink *s, const char *where)
{
    put(s, OX__GGUF_MAGIC, 4);
    put_le(s, w->version, 4);
    put_le(s, w->tensor_count, 8);
    put_le(s, w->kv_count, 8);
    for (size_t i = 0; i < w->kv_count; i++) put(s, w->kvs[i].encoded.data, w->kvs[i].encoded.size);
    uint64_t offset = 0;
    for (size_t i = 0; i < w->tensor_count; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_le(s, strlen(t->name), 8);
        put(s, t->name, strlen(t->name));
        put_le(s, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) put_le(s, (uint64_t)t->ne[d], 8);
        put_le(s, t->ggml_type, 4);
        put_le(s, offset, 8);
        offset += align_up(t->nbytes, w->alignment);
    }
    if (w->tensor_count == 0) return OX_OK;
    put_padding(s, w->alignment);
    for (size_t i = 0; i < w->tensor_count && !s->failed; i++) {
        ox_status status = put_tensor(w, &w->tensors[i], s, where);
        if (status != OX_OK) return status;
        put_padding(s, w->alignment);
    }
    return OX_OK;
}

ox_status ox_gguf_writer_write_memory(const ox_gguf_writer *w, void *buffer, size_t capacity)
{
    size_t size;
    ox_status status = ox_gguf_writer_size(w, &size);
    if (status != OX_OK) return status;
    if (!buffer || capacity < size)
        return ox__fail(w->ctx, OX_ERR_OUT_OF_RANGE,
                        "ox_gguf_writer_write_memory: the file takes %zu bytes, the buffer has %zu",
                        size, buffer ? capacity : 0);
    sink s = {.buffer = buffer};
    return emit(w, &s, "<memory>");
}

ox_status ox_gguf_writer_write_file(const ox_gguf_writer *w, const char *path)
{
    if (!w) return ox__fail(NULL, OX_ERR_INVALID, "ox_gguf_writer_write_file: writer is NULL");
    if (!path) return ox__fail(w->ctx, OX_ERR_INVALID, "ox_gguf_writer_write_file: path is NULL");
    size_t scratch_size = 0;
    for (size_t i = 0; i < w->tensor_count; i++)
        if (w->tensors[i].fill && w->tensors[i].nbytes > scratch_size)
            scratch_size = w->tensors[i].nbytes;
    sink s = {.scratch = scratch_size ? ox__alloc(w->ctx, scratch_size) : NULL};
    if (scratch_size && !s.scratch)
        return ox__fail(w->ctx, OX_ERR_OUT_OF_MEMORY,
                        "gguf: %s: out of memory for a tensor of %zu bytes", path, scratch_size);
    ox_status status = OX_OK;
    s.file = fopen(path, "wb");
    if (!s.file) {
        status = ox__fail(w->ctx, OX_ERR_IO, "gguf: %s: cannot create: %s", path, strerror(errno));
        goto out_free_scratch;
    }
    status = emit(w, &s, path);
    int saved = errno;
    if (fclose(s.file) != 0 && !s.failed) {
        s.failed = true;
        saved = errno;
    }
    if (status == OX_OK && s.failed)
        status = ox__fail(w->ctx, OX_ERR_IO, "gguf: %s: write failed: %s", path, strerror(saved));
out_free_scratch:
    if (s.scratch) ox__free(w->ctx, s.scratch, scratch_size);
    return status;
}
