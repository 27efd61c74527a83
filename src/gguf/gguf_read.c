/* The GGUF reader: map a file, validate every field before anything uses
 * it, and serve metadata and tensors as views into the mapping. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf_internal.h"

/* Smallest encodings, to bound counts by the bytes that remain: a pair is a
 * key (8-byte length + 1 byte), a type and a 1-byte value; a tensor is a
 * name (8 + 1), n_dims, one dimension, a type and an offset. */
#define MIN_KV_BYTES (8u + 1u + 4u + 1u)
#define MIN_TENSOR_BYTES (8u + 1u + 4u + 8u + 4u + 8u)
#define HEADER_BYTES 24u

typedef struct gguf_kv {
    char *key;                  /* NUL-terminated copy */
    size_t key_length;
    uint64_t pos;               /* where the pair starts in the file */
    uint32_t type;
    uint32_t elem_type;         /* arrays */
    const unsigned char *value; /* scalar; string bytes; first array element */
    uint64_t size;              /* string: bytes; array: elements */
    uint64_t *strings;          /* string arrays: file offset of each element */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;                 /* NUL-terminated copy */
    size_t name_length;
    uint64_t pos;               /* where the tensor info starts */
    uint64_t offset_pos;        /* where its offset field is */
    const ox__ggml_type_traits *traits;
    uint32_t n_dims;
    int64_t ne[OX_MAX_DIMS];
    int64_t nelements;
    uint64_t offset;
    uint64_t nbytes;
} gguf_tensor;

struct ox_gguf {
    ox_context *ctx;
    const unsigned char *data;
    size_t size;
    void *map;                  /* NULL for ox_gguf_open_memory */
    char *path;
    struct stat identity;       /* of the mapped file at open: ox_gguf_check_file */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t kv_end;            /* where the metadata ends (the tensor infos start) */
    gguf_kv *kvs;
    int64_t kv_count;
    size_t kv_capacity;
    gguf_tensor *tensors;
    int64_t tensor_count;
    size_t tensor_capacity;
    int64_t *kv_index;          /* open-addressing hash tables of indices, -1 empty */
    size_t kv_index_capacity;
    int64_t *tensor_index;
    size_t tensor_index_capacity;
};

/* ---- type tables -------------------------------------------------------- */

static const ox__ggml_type_traits ggml_types[] = {
#define TRAITS(name, id, text, block, bytes, dtype) {id, text, block, bytes, dtype},
    OX_GGML_TYPE_LIST(TRAITS)
#undef TRAITS
};

const ox__ggml_type_traits *ox__ggml_type_find(uint32_t id)
{
    for (size_t i = 0; i < OX__ARRAY_SIZE(ggml_types); i++)
        if (ggml_types[i].id == id) return &ggml_types[i];
    return NULL;
}

const char *ox_ggml_type_str(uint32_t ggml_type)
{
    const ox__ggml_type_traits *traits = ox__ggml_type_find(ggml_type);
    return traits ? traits->name : "unknown";
}

ox_status ox_ggml_type_from_dtype(ox_dtype dtype, uint32_t *ggml_type)
{
    for (size_t i = 0; i < OX__ARRAY_SIZE(ggml_types); i++)
        if (ggml_types[i].dtype == dtype && dtype != OX_DTYPE_COUNT) {
            if (ggml_type) *ggml_type = ggml_types[i].id;
            return OX_OK;
        }
    return ox__fail(NULL, OX_ERR_INVALID, "ox_ggml_type_from_dtype: unknown dtype %d", (int)dtype);
}

static const struct {
    const char *name;
    size_t bytes;
} gguf_types[] = {
#define GGUF_TYPE(name, id, text, bytes) {text, bytes},
    OX_GGUF_TYPE_LIST(GGUF_TYPE)
#undef GGUF_TYPE
};

const char *ox_gguf_type_str(ox_gguf_type type)
{
    return (unsigned)type < OX__ARRAY_SIZE(gguf_types) ? gguf_types[type].name : "unknown";
}

size_t ox__gguf_type_size(uint32_t type)
{
    return type < OX__ARRAY_SIZE(gguf_types) ? gguf_types[type].bytes : 0;
}

/* ---- messages ------------------------------------------------------------ */

/* `s` (n bytes from the file) quoted for a message: control and non-ASCII
 * bytes escaped, long names cut. Returns buf. */
static const char *printable(const char *s, size_t n, char *buf, size_t cap)
{
    size_t out = 0;
    for (size_t i = 0; i < n && out + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 64) {
            out += (size_t)snprintf(buf + out, cap - out, "...");
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') buf[out++] = (char)c;
        else out += (size_t)snprintf(buf + out, cap - out, "\\x%02x", c);
    }
    buf[out] = '\0';
    return buf;
}

/* Record "gguf: <path>: <message> at byte <pos>". */
static ox_status fail_at(const ox_gguf *g, ox_status status, uint64_t pos, const char *fmt, ...)
    OX__PRINTF(4, 5);
static ox_status fail_at(const ox_gguf *g, ox_status status, uint64_t pos, const char *fmt, ...)
{
    char message[OX__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return ox__fail(g->ctx, status, "gguf: %s: %s at byte %llu", g->path, message,
                    (unsigned long long)pos);
}

/* ---- parsing ------------------------------------------------------------- */

typedef struct cursor {
    ox_gguf *g;
    uint64_t pos;
} cursor;

static uint64_t remaining(const cursor *c)
{
    return c->g->size - c->pos;
}

/* Take n bytes, or fail naming `what` (a printf'ed description). */
static ox_status take(cursor *c, uint64_t n, const unsigned char **p, const char *what)
{
    if (n > remaining(c))
        return fail_at(c->g, OX_ERR_FORMAT, c->pos,
                       "truncated file: %s needs %llu bytes, %llu left", what,
                       (unsigned long long)n, (unsigned long long)remaining(c));
    if (p) *p = c->g->data + c->pos;
    c->pos += n;
    return OX_OK;
}

static ox_status read_u32(cursor *c, uint32_t *v, const char *what)
{
    const unsigned char *p = NULL;
    ox_status status = take(c, 4, &p, what);
    if (status == OX_OK) *v = (uint32_t)ox__gguf_load_le(p, 4);
    return status;
}

static ox_status read_u64(cursor *c, uint64_t *v, const char *what)
{
    const unsigned char *p = NULL;
    ox_status status = take(c, 8, &p, what);
    if (status == OX_OK) *v = ox__gguf_load_le(p, 8);
    return status;
}

/* A string: u64 length, then that many bytes. */
static ox_status read_string(cursor *c, const unsigned char **p, uint64_t *length,
                             const char *what)
{
    uint64_t at = c->pos;
    ox_status status = read_u64(c, length, what);
    if (status != OX_OK) return status;
    if (*length > remaining(c))
        return fail_at(c->g, OX_ERR_FORMAT, at, "%s: string length %llu exceeds the %llu bytes left",
                       what, (unsigned long long)*length, (unsigned long long)remaining(c));
    return take(c, *length, p, what);
}

/* A name (key or tensor name): non-empty, no NUL byte, copied with a NUL. */
static ox_status read_name(cursor *c, char **name, size_t *length, const char *what)
{
    const unsigned char *p = NULL;
    uint64_t n, at = c->pos;
    ox_status status = read_string(c, &p, &n, what);
    if (status != OX_OK) return status;
    if (n == 0) return fail_at(c->g, OX_ERR_FORMAT, at, "%s is empty", what);
    char shown[300];
    if (memchr(p, 0, n))
        return fail_at(c->g, OX_ERR_FORMAT, at, "%s '%s' contains a NUL byte", what,
                       printable((const char *)p, n, shown, sizeof shown));
    *name = ox__alloc(c->g->ctx, n + 1);
    if (!*name)
        return fail_at(c->g, OX_ERR_OUT_OF_MEMORY, at, "out of memory for a %llu-byte name",
                       (unsigned long long)n);
    memcpy(*name, p, n);
    (*name)[n] = '\0';
    *length = n;
    return OX_OK;
}

/* Make room for one more element in a growing array (never sized by an
 * untrusted count). */
static ox_status grow(ox_gguf *g, void **array, size_t *capacity, size_t used, size_t elem,
                      uint64_t pos)
{
    if (used < *capacity) return OX_OK;
    size_t capacity2 = *capacity ? 2 * *capacity : 16;
    void *grown = g->ctx->alloc(g->ctx->alloc_user, *array, *capacity * elem, capacity2 * elem);
    if (!grown)
        return fail_at(g, OX_ERR_OUT_OF_MEMORY, pos, "out of memory for %zu entries", capacity2);
    *array = grown;
    *capacity = capacity2;
    return OX_OK;
}

static ox_status check_bools(const ox_gguf *g, const unsigned char *p, uint64_t n,
                             const char *key)
{
    for (uint64_t j = 0; j < n; j++)
        if (p[j] > 1)
            return fail_at(g, OX_ERR_FORMAT, (uint64_t)(p + j - g->data),
                           "key '%s': bool value %u is neither 0 nor 1", key, p[j]);
    return OX_OK;
}

static ox_status read_array(cursor *c, gguf_kv *kv, const char *key)
{
    ox_gguf *g = c->g;
    uint64_t at = c->pos;
    ox_status status = read_u32(c, &kv->elem_type, "array element type");
    if (status != OX_OK) return status;
    if (kv->elem_type == OX_GGUF_ARRAY)
        return fail_at(g, OX_ERR_FORMAT, at, "key '%s': nested arrays are not supported", key);
    if (kv->elem_type >= OX_GGUF_TYPE_COUNT)
        return fail_at(g, OX_ERR_FORMAT, at, "key '%s': unknown array element type %u", key,
                       kv->elem_type);
    at = c->pos;
    status = read_u64(c, &kv->size, "array length");
    if (status != OX_OK) return status;
    kv->value = g->data + c->pos;

    size_t elem = ox__gguf_type_size(kv->elem_type);
    if (elem) {
        if (kv->size > remaining(c) / elem)
            return fail_at(g, OX_ERR_FORMAT, at,
                           "key '%s': array of %llu %s values does not fit in the %llu bytes left",
                           key, (unsigned long long)kv->size, ox_gguf_type_str((ox_gguf_type)kv->elem_type),
                           (unsigned long long)remaining(c));
        c->pos += kv->size * elem;
        return kv->elem_type == OX_GGUF_BOOL ? check_bools(g, kv->value, kv->size, key) : OX_OK;
    }

    /* Strings: each takes at least its 8-byte length. */
    if (kv->size > remaining(c) / 8)
        return fail_at(g, OX_ERR_FORMAT, at,
                       "key '%s': array of %llu strings does not fit in the %llu bytes left",
                       key, (unsigned long long)kv->size, (unsigned long long)remaining(c));
    if (kv->size == 0) return OX_OK;
    kv->strings = ox__alloc(g->ctx, (size_t)kv->size * sizeof *kv->strings);
    if (!kv->strings)
        return fail_at(g, OX_ERR_OUT_OF_MEMORY, at, "key '%s': out of memory for %llu strings",
                       key, (unsigned long long)kv->size);
    for (uint64_t j = 0; j < kv->size; j++) {
        const unsigned char *p = NULL;
        uint64_t n;
        kv->strings[j] = c->pos;
        status = read_string(c, &p, &n, "array string");
        if (status != OX_OK) return status;
    }
    return OX_OK;
}

static ox_status read_kv(cursor *c, int64_t index)
{
    ox_gguf *g = c->g;
    ox_status status = grow(g, (void **)&g->kvs, &g->kv_capacity, (size_t)index, sizeof *g->kvs,
                            c->pos);
    if (status != OX_OK) return status;
    gguf_kv *kv = &g->kvs[index];
    memset(kv, 0, sizeof *kv);
    g->kv_count = index + 1; /* so that close frees what this entry owns */
    kv->pos = c->pos;

    status = read_name(c, &kv->key, &kv->key_length, "key");
    if (status != OX_OK) return status;
    char key[300];
    printable(kv->key, kv->key_length, key, sizeof key);
    uint64_t at = c->pos;
    status = read_u32(c, &kv->type, "value type");
    if (status != OX_OK) return status;
    if (kv->type >= OX_GGUF_TYPE_COUNT)
        return fail_at(g, OX_ERR_FORMAT, at, "key '%s': unknown value type %u", key, kv->type);

    bool is_alignment = strcmp(kv->key, OX__GGUF_ALIGNMENT_KEY) == 0;
    if (is_alignment && kv->type != OX_GGUF_UINT32)
        return fail_at(g, OX_ERR_FORMAT, at, "general.alignment is a %s, not a u32",
                       ox_gguf_type_str((ox_gguf_type)kv->type));
    if (kv->type == OX_GGUF_ARRAY) return read_array(c, kv, key);
    if (kv->type == OX_GGUF_STRING) {
        char what[340];
        snprintf(what, sizeof what, "key '%s': string value", key);
        return read_string(c, &kv->value, &kv->size, what);
    }
    at = c->pos;
    status = take(c, ox__gguf_type_size(kv->type), &kv->value, "value");
    if (status != OX_OK) return status;
    if (kv->type == OX_GGUF_BOOL) return check_bools(g, kv->value, 1, key);
    if (is_alignment) {
        uint32_t alignment = (uint32_t)ox__gguf_load_le(kv->value, 4);
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
            return fail_at(g, OX_ERR_FORMAT, at, "general.alignment %u is not a power of two",
                           alignment);
        g->alignment = alignment;
    }
    return OX_OK;
}

static ox_status read_tensor_info(cursor *c, int64_t index)
{
    ox_gguf *g = c->g;
    ox_status status = grow(g, (void **)&g->tensors, &g->tensor_capacity, (size_t)index,
                            sizeof *g->tensors, c->pos);
    if (status != OX_OK) return status;
    gguf_tensor *t = &g->tensors[index];
    memset(t, 0, sizeof *t);
    g->tensor_count = index + 1;
    t->pos = c->pos;

    status = read_name(c, &t->name, &t->name_length, "tensor name");
    if (status != OX_OK) return status;
    char name[300];
    printable(t->name, t->name_length, name, sizeof name);
    if (t->name_length > OX_GGUF_MAX_TENSOR_NAME)
        return fail_at(g, OX_ERR_FORMAT, t->pos, "tensor name '%.40s...' is %zu bytes; GGUF "
                       "allows at most %d (ggml's GGML_MAX_NAME)", name, t->name_length,
                       OX_GGUF_MAX_TENSOR_NAME);
    uint64_t at = c->pos;
    status = read_u32(c, &t->n_dims, "tensor dimension count");
    if (status != OX_OK) return status;
    if (t->n_dims < 1 || t->n_dims > OX_MAX_DIMS)
        return fail_at(g, OX_ERR_FORMAT, at, "tensor '%s': %u dimensions (1 to %d allowed)", name,
                       t->n_dims, OX_MAX_DIMS);

    uint64_t dims_at = c->pos;
    t->nelements = 1;
    for (int d = 0; d < OX_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t n;
        at = c->pos;
        status = read_u64(c, &n, "tensor dimension");
        if (status != OX_OK) return status;
        if (n == 0 || n > (uint64_t)INT64_MAX)
            return fail_at(g, OX_ERR_FORMAT, at, "tensor '%s': dimension %u is %llu", name, d,
                           (unsigned long long)n);
        if (t->nelements > INT64_MAX / (int64_t)n)
            return fail_at(g, OX_ERR_FORMAT, at,
                           "tensor '%s': the element count overflows at dimension %u (%llu)",
                           name, d, (unsigned long long)n);
        t->ne[d] = (int64_t)n;
        t->nelements *= (int64_t)n;
    }

    uint32_t type;
    at = c->pos;
    status = read_u32(c, &type, "tensor type");
    if (status != OX_OK) return status;
    t->traits = ox__ggml_type_find(type);
    if (!t->traits)
        return fail_at(g, OX_ERR_FORMAT, at, "tensor '%s': unknown tensor type id %u", name, type);
    if (t->ne[0] % t->traits->block != 0)
        return fail_at(g, OX_ERR_FORMAT, dims_at,
                       "tensor '%s': a row of %lld elements is not a multiple of the %s block "
                       "(%lld)",
                       name, (long long)t->ne[0], t->traits->name, (long long)t->traits->block);
    uint64_t row_blocks = (uint64_t)(t->ne[0] / t->traits->block);
    uint64_t rows = (uint64_t)(t->nelements / t->ne[0]);
    if (row_blocks > UINT64_MAX / t->traits->bytes ||
        row_blocks * t->traits->bytes > UINT64_MAX / rows)
        return fail_at(g, OX_ERR_FORMAT, dims_at, "tensor '%s': the data size overflows", name);
    t->nbytes = row_blocks * t->traits->bytes * rows;

    t->offset_pos = c->pos;
    return read_u64(c, &t->offset, "tensor data offset");
}

/* ---- name lookup ------------------------------------------------------------ */

static uint64_t hash_name(const char *name, size_t length)
{
    return ox__hash64(name, length);
}

/* Build an open-addressing table of n names (fetched by name_at); a name
 * seen twice is reported through *duplicate (its index), else -1. */
typedef const char *(*name_fn)(const ox_gguf *g, int64_t i, size_t *length);

static ox_status build_index(ox_gguf *g, int64_t n, name_fn name_at, int64_t **table,
                             size_t *capacity, int64_t *duplicate, int64_t *original)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    *table = ox__alloc(g->ctx, cap * sizeof **table);
    if (!*table) return ox__fail(g->ctx, OX_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory", g->path);
    *capacity = cap;
    for (size_t s = 0; s < cap; s++) (*table)[s] = -1;
    *duplicate = -1;
    for (int64_t i = 0; i < n; i++) {
        size_t length;
        const char *name = name_at(g, i, &length);
        size_t s = (size_t)hash_name(name, length) & (cap - 1);
        while ((*table)[s] >= 0) {
            size_t other_length;
            const char *other = name_at(g, (*table)[s], &other_length);
            if (other_length == length && memcmp(other, name, length) == 0) {
                *duplicate = i;
                *original = (*table)[s];
                return OX_OK;
            }
            s = (s + 1) & (cap - 1);
        }
        (*table)[s] = i;
    }
    return OX_OK;
}

static int64_t lookup(const ox_gguf *g, const int64_t *table, size_t cap, name_fn name_at,
                      const char *name)
{
    if (!table || !name) return -1;
    size_t length = strlen(name);
    size_t s = (size_t)hash_name(name, length) & (cap - 1);
    while (table[s] >= 0) {
        size_t other_length;
        const char *other = name_at(g, table[s], &other_length);
        if (other_length == length && memcmp(other, name, length) == 0) return table[s];
        s = (s + 1) & (cap - 1);
    }
    return -1;
}

static const char *kv_name(const ox_gguf *g, int64_t i, size_t *length)
{
    *length = g->kvs[i].key_length;
    return g->kvs[i].key;
}

static const char *tensor_name(const ox_gguf *g, int64_t i, size_t *length)
{
    *length = g->tensors[i].name_length;
    return g->tensors[i].name;
}

/* ---- whole-file checks --------------------------------------------------- */

typedef struct extent {
    uint64_t offset, nbytes;
    int64_t index;
} extent;

static int compare_extents(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Every tensor's data aligned, inside the file and apart from the others. */
static ox_status check_tensor_data(ox_gguf *g)
{
    char name[300], other[300];
    uint64_t room = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->tensor_count; i++) {
        const gguf_tensor *t = &g->tensors[i];
        printable(t->name, t->name_length, name, sizeof name);
        if (t->offset % g->alignment != 0)
            return fail_at(g, OX_ERR_FORMAT, t->offset_pos,
                           "tensor '%s': data offset %llu is not a multiple of the alignment %u",
                           name, (unsigned long long)t->offset, g->alignment);
        if (g->data_offset > g->size || t->offset > room || t->nbytes > room - t->offset)
            return fail_at(g, OX_ERR_FORMAT, t->offset_pos,
                           "tensor '%s': %llu bytes of data at offset %llu of the data section "
                           "(which starts at byte %llu) run past the end of the file (%zu bytes)",
                           name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                           (unsigned long long)g->data_offset, g->size);
    }
    if (g->tensor_count < 2) return OX_OK;

    size_t n = (size_t)g->tensor_count;
    extent *extents = ox__alloc(g->ctx, n * sizeof *extents);
    if (!extents) return ox__fail(g->ctx, OX_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory", g->path);
    for (size_t i = 0; i < n; i++)
        extents[i] = (extent){g->tensors[i].offset, g->tensors[i].nbytes, (int64_t)i};
    qsort(extents, n, sizeof *extents, compare_extents);
    ox_status status = OX_OK;
    for (size_t i = 1; i < n; i++) {
        const extent *a = &extents[i - 1], *b = &extents[i];
        if (b->offset >= a->offset + a->nbytes) continue;
        const gguf_tensor *ta = &g->tensors[a->index], *tb = &g->tensors[b->index];
        status = fail_at(g, OX_ERR_FORMAT, tb->offset_pos,
                         "tensor '%s': data [%llu, +%llu) overlaps that of tensor '%s' [%llu, +%llu)",
                         printable(tb->name, tb->name_length, name, sizeof name),
                         (unsigned long long)b->offset, (unsigned long long)b->nbytes,
                         printable(ta->name, ta->name_length, other, sizeof other),
                         (unsigned long long)a->offset, (unsigned long long)a->nbytes);
        break;
    }
    ox__free(g->ctx, extents, n * sizeof *extents);
    return status;
}

static ox_status check_magic_and_version(ox_gguf *g)
{
    if (g->size == 0)
        return fail_at(g, OX_ERR_FORMAT, 0, "empty file: expected the GGUF magic");
    if (g->size < 4 || memcmp(g->data, OX__GGUF_MAGIC, 4) != 0) {
        char shown[64];
        printable((const char *)g->data, g->size < 4 ? g->size : 4, shown, sizeof shown);
        return fail_at(g, OX_ERR_FORMAT, 0, "not a GGUF file: magic '%s', expected 'GGUF'", shown);
    }
    if (g->size < HEADER_BYTES)
        return fail_at(g, OX_ERR_FORMAT, g->size,
                       "truncated file: %zu bytes, the GGUF header alone takes %u", g->size,
                       HEADER_BYTES);
    g->version = (uint32_t)ox__gguf_load_le(g->data + 4, 4);
    if (g->version == 2 || g->version == 3) return OX_OK;
    if (g->version == 1)
        return fail_at(g, OX_ERR_FORMAT, 4,
                       "GGUF version 1 is not supported (it has 32-bit counts; convert the file "
                       "to version 3)");
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return fail_at(g, OX_ERR_FORMAT, 4, "big-endian GGUF files are not supported");
    return fail_at(g, OX_ERR_FORMAT, 4, "unknown GGUF version %u (2 and 3 are supported)",
                   g->version);
}

static ox_status parse(ox_gguf *g)
{
    ox_status status = check_magic_and_version(g);
    if (status != OX_OK) return status;
    uint64_t tensor_count = ox__gguf_load_le(g->data + 8, 8);
    uint64_t kv_count = ox__gguf_load_le(g->data + 16, 8);
    uint64_t left = g->size - HEADER_BYTES;
    if (kv_count > left / MIN_KV_BYTES)
        return fail_at(g, OX_ERR_FORMAT, 16,
                       "metadata count %llu is more than the %llu bytes after the header can hold",
                       (unsigned long long)kv_count, (unsigned long long)left);
    if (tensor_count > left / MIN_TENSOR_BYTES)
        return fail_at(g, OX_ERR_FORMAT, 8,
                       "tensor count %llu is more than the %llu bytes after the header can hold",
                       (unsigned long long)tensor_count, (unsigned long long)left);

    cursor c = {g, HEADER_BYTES};
    g->alignment = OX__GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < kv_count; i++)
        if ((status = read_kv(&c, (int64_t)i)) != OX_OK) return status;
    g->kv_end = c.pos;
    if (tensor_count > remaining(&c) / MIN_TENSOR_BYTES)
        return fail_at(g, OX_ERR_FORMAT, 8,
                       "tensor count %llu is more than the %llu bytes after the metadata can hold",
                       (unsigned long long)tensor_count, (unsigned long long)remaining(&c));
    for (uint64_t i = 0; i < tensor_count; i++)
        if ((status = read_tensor_info(&c, (int64_t)i)) != OX_OK) return status;
    /* c.pos <= size, alignment < 2^32: no overflow. */
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;

    int64_t duplicate = -1, original = -1;
    char shown[300];
    status = build_index(g, g->kv_count, kv_name, &g->kv_index, &g->kv_index_capacity,
                         &duplicate, &original);
    if (status != OX_OK) return status;
    if (duplicate >= 0)
        return fail_at(g, OX_ERR_FORMAT, g->kvs[duplicate].pos,
                       "key '%s' appears twice (pairs %lld and %lld)",
                       printable(g->kvs[duplicate].key, g->kvs[duplicate].key_length, shown,
                                 sizeof shown),
                       (long long)original, (long long)duplicate);
    status = build_index(g, g->tensor_count, tensor_name, &g->tensor_index,
                         &g->tensor_index_capacity, &duplicate, &original);
    if (status != OX_OK) return status;
    if (duplicate >= 0)
        return fail_at(g, OX_ERR_FORMAT, g->tensors[duplicate].pos,
                       "tensor name '%s' appears twice (tensors %lld and %lld)",
                       printable(g->tensors[duplicate].name, g->tensors[duplicate].name_length,
                                 shown, sizeof shown),
                       (long long)original, (long long)duplicate);
    return check_tensor_data(g);
}

/* ---- opening and closing ------------------------------------------------- */

static ox_status gguf_new(ox_context *ctx, const char *path, ox_gguf **out)
{
    ox_gguf *g = ox__calloc(ctx, 1, sizeof *g);
    if (!g) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory", path);
    g->ctx = ctx;
    g->path = ox__strdup(ctx, path);
    if (!g->path) {
        ox__free(ctx, g, sizeof *g);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory", path);
    }
    *out = g;
    return OX_OK;
}

static ox_status check_context(ox_context *ctx, const char *func, ox_gguf **out)
{
    ox_status status = ox__handle_check(ctx, OX__HANDLE_CONTEXT, func, "ctx", NULL);
    if (status != OX_OK) return status;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", func);
    *out = NULL;
    return OX_OK;
}

ox_status ox_gguf_open_memory(ox_context *ctx, const void *data, size_t size, ox_gguf **out)
{
    ox_status status = check_context(ctx, "ox_gguf_open_memory", out);
    if (status != OX_OK) return status;
    if (!data && size)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_gguf_open_memory: data is NULL but size is %zu",
                        size);
    ox_gguf *g = NULL;
    if ((status = gguf_new(ctx, "<memory>", &g)) != OX_OK) return status;
    g->data = data;
    g->size = size;
    if ((status = parse(g)) != OX_OK) {
        ox_gguf_close(g);
        return status;
    }
    *out = g;
    return OX_OK;
}

ox_status ox_gguf_open(ox_context *ctx, const char *path, ox_gguf **out)
{
    ox_status status = check_context(ctx, "ox_gguf_open", out);
    if (status != OX_OK) return status;
    if (!path) return ox__fail(ctx, OX_ERR_INVALID, "ox_gguf_open: path is NULL");

    ox_gguf *g = NULL;
    if ((status = gguf_new(ctx, path, &g)) != OX_OK) return status;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        status = ox__fail(ctx, OX_ERR_IO, "gguf: %s: cannot open: %s", path, strerror(errno));
        goto err_close;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        status = ox__fail(ctx, OX_ERR_IO, "gguf: %s: cannot stat: %s", path, strerror(errno));
        goto err_close_fd;
    }
    if (S_ISDIR(st.st_mode)) {
        status = ox__fail(ctx, OX_ERR_IO, "gguf: %s: is a directory, not a GGUF file", path);
        goto err_close_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        status = ox__fail(ctx, OX_ERR_IO, "gguf: %s: not a regular file", path);
        goto err_close_fd;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        status = ox__fail(ctx, OX_ERR_IO, "gguf: %s: too large to map (%lld bytes)", path,
                          (long long)st.st_size);
        goto err_close_fd;
    }
    g->size = (size_t)st.st_size;
    g->identity = st;
    if (g->size > 0) {
        void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            status = ox__fail(ctx, OX_ERR_IO, "gguf: %s: cannot map %zu bytes: %s", path, g->size,
                              strerror(errno));
            goto err_close_fd;
        }
        g->map = map;
        g->data = map;
    }
    close(fd);
    if ((status = parse(g)) != OX_OK) goto err_close;
    *out = g;
    return OX_OK;

err_close_fd:
    close(fd);
err_close:
    ox_gguf_close(g);
    return status;
}

ox_status ox_gguf_check_file(const ox_gguf *g)
{
    if (!g) return ox__fail(NULL, OX_ERR_INVALID, "ox_gguf_check_file: gguf is NULL");
    if (!g->map) return OX_OK; /* ox_gguf_open_memory: no file */
    struct stat now;
    const struct stat *was = &g->identity;
    if (stat(g->path, &now) != 0)
        return ox__fail(g->ctx, OX_ERR_IO, "the model file %s changed while in use: it is gone (%s)",
                        g->path, strerror(errno));
    if (now.st_dev != was->st_dev || now.st_ino != was->st_ino)
        return OX_OK; /* replaced by another file (a rename): the mapping keeps the old one */
    if (now.st_size != was->st_size || now.st_mtim.tv_sec != was->st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != was->st_mtim.tv_nsec)
        return ox__fail(g->ctx, OX_ERR_IO, "the model file %s changed while in use (%s): its "
                        "weights can no longer be trusted; replace model files by renaming a new "
                        "file over the old one", g->path,
                        now.st_size != was->st_size ? "its size changed" : "it was rewritten");
    return OX_OK;
}

void ox_gguf_close(ox_gguf *g)
{
    if (!g) return;
    ox_context *ctx = g->ctx;
    for (int64_t i = 0; i < g->kv_count; i++) {
        gguf_kv *kv = &g->kvs[i];
        if (kv->key) ox__free(ctx, kv->key, kv->key_length + 1);
        if (kv->strings) ox__free(ctx, kv->strings, (size_t)kv->size * sizeof *kv->strings);
    }
    for (int64_t i = 0; i < g->tensor_count; i++)
        if (g->tensors[i].name) ox__free(ctx, g->tensors[i].name, g->tensors[i].name_length + 1);
    if (g->kvs) ox__free(ctx, g->kvs, g->kv_capacity * sizeof *g->kvs);
    if (g->tensors) ox__free(ctx, g->tensors, g->tensor_capacity * sizeof *g->tensors);
    if (g->kv_index) ox__free(ctx, g->kv_index, g->kv_index_capacity * sizeof *g->kv_index);
    if (g->tensor_index)
        ox__free(ctx, g->tensor_index, g->tensor_index_capacity * sizeof *g->tensor_index);
    if (g->map) munmap(g->map, g->size);
    ox__free(ctx, g->path, strlen(g->path) + 1);
    ox__free(ctx, g, sizeof *g);
}

uint32_t ox_gguf_version(const ox_gguf *g)
{
    return g ? g->version : 0;
}

const void *ox_gguf_file_data(const ox_gguf *g, size_t *size)
{
    if (size) *size = g ? g->size : 0;
    return g ? g->data : NULL;
}

uint32_t ox_gguf_alignment(const ox_gguf *g)
{
    return g ? g->alignment : 0;
}

uint64_t ox_gguf_data_offset(const ox_gguf *g)
{
    return g ? g->data_offset : 0;
}

/* ---- metadata ---------------------------------------------------------------- */

int64_t ox_gguf_kv_count(const ox_gguf *g)
{
    return g ? g->kv_count : 0;
}

int64_t ox_gguf_find(const ox_gguf *g, const char *key)
{
    return g ? lookup(g, g->kv_index, g->kv_index_capacity, kv_name, key) : -1;
}

const char *ox_gguf_kv_key(const ox_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->kv_count ? g->kvs[i].key : NULL;
}

ox_gguf_type ox_gguf_kv_type(const ox_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->kv_count ? (ox_gguf_type)g->kvs[i].type : OX_GGUF_TYPE_COUNT;
}

/* Pair i, or a failure naming func. */
static ox_status get_kv(const ox_gguf *g, int64_t i, const char *func, const void *out,
                        const gguf_kv **kv)
{
    if (!g) return ox__fail(NULL, OX_ERR_INVALID, "%s: gguf is NULL", func);
    if (!out) return ox__fail(g->ctx, OX_ERR_INVALID, "%s: output pointer is NULL", func);
    if (i < 0 || i >= g->kv_count)
        return ox__fail(g->ctx, OX_ERR_INVALID, "%s: pair %lld out of range (%lld pairs in %s)",
                        func, (long long)i, (long long)g->kv_count, g->path);
    *kv = &g->kvs[i];
    return OX_OK;
}

static ox_status type_mismatch(const ox_gguf *g, const gguf_kv *kv, const char *func,
                               const char *wanted)
{
    char key[300];
    const char *type = ox_gguf_type_str((ox_gguf_type)kv->type);
    char array_type[64];
    if (kv->type == OX_GGUF_ARRAY) {
        snprintf(array_type, sizeof array_type, "array of %s",
                 ox_gguf_type_str((ox_gguf_type)kv->elem_type));
        type = array_type;
    }
    return ox__fail(g->ctx, OX_ERR_INVALID, "%s: key '%s' of %s is a %s, not a %s", func,
                    printable(kv->key, kv->key_length, key, sizeof key), g->path, type, wanted);
}

/* A fixed-size scalar of exactly `type`, copied into value. */
static ox_status get_exact(const ox_gguf *g, int64_t i, ox_gguf_type type, void *value,
                           size_t size, const char *func)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, func, value, &kv);
    if (status != OX_OK) return status;
    if (kv->type != (uint32_t)type) return type_mismatch(g, kv, func, ox_gguf_type_str(type));
    uint64_t bits = ox__gguf_load_le(kv->value, size);
    if (size == 4) {
        uint32_t v = (uint32_t)bits;
        memcpy(value, &v, 4);
    } else {
        memcpy(value, &bits, 8);
    }
    return OX_OK;
}

ox_status ox_gguf_get_u32(const ox_gguf *g, int64_t i, uint32_t *value)
{
    return get_exact(g, i, OX_GGUF_UINT32, value, 4, "ox_gguf_get_u32");
}

ox_status ox_gguf_get_i32(const ox_gguf *g, int64_t i, int32_t *value)
{
    return get_exact(g, i, OX_GGUF_INT32, value, 4, "ox_gguf_get_i32");
}

ox_status ox_gguf_get_u64(const ox_gguf *g, int64_t i, uint64_t *value)
{
    return get_exact(g, i, OX_GGUF_UINT64, value, 8, "ox_gguf_get_u64");
}

ox_status ox_gguf_get_i64(const ox_gguf *g, int64_t i, int64_t *value)
{
    return get_exact(g, i, OX_GGUF_INT64, value, 8, "ox_gguf_get_i64");
}

ox_status ox_gguf_get_f32(const ox_gguf *g, int64_t i, float *value)
{
    return get_exact(g, i, OX_GGUF_FLOAT32, value, 4, "ox_gguf_get_f32");
}

ox_status ox_gguf_get_f64(const ox_gguf *g, int64_t i, double *value)
{
    return get_exact(g, i, OX_GGUF_FLOAT64, value, 8, "ox_gguf_get_f64");
}

ox_status ox_gguf_get_bool(const ox_gguf *g, int64_t i, bool *value)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, "ox_gguf_get_bool", value, &kv);
    if (status != OX_OK) return status;
    if (kv->type != OX_GGUF_BOOL) return type_mismatch(g, kv, "ox_gguf_get_bool", "bool");
    *value = kv->value[0] != 0;
    return OX_OK;
}

static bool is_integer(uint32_t type)
{
    return type <= OX_GGUF_INT32 || type == OX_GGUF_UINT64 || type == OX_GGUF_INT64;
}

/* An integer of `type` at p, widened; OX_ERR_OUT_OF_RANGE above INT64_MAX. */
static ox_status load_int(uint32_t type, const unsigned char *p, int64_t *value)
{
    size_t size = ox__gguf_type_size(type);
    uint64_t bits = ox__gguf_load_le(p, size);
    bool is_signed = type == OX_GGUF_INT8 || type == OX_GGUF_INT16 || type == OX_GGUF_INT32 ||
                     type == OX_GGUF_INT64;
    if (is_signed && size < 8 && (bits >> (8 * size - 1)) & 1)
        bits |= ~UINT64_C(0) << (8 * size); /* sign-extend */
    if (!is_signed && bits > (uint64_t)INT64_MAX) return OX_ERR_OUT_OF_RANGE;
    memcpy(value, &bits, sizeof bits);
    return OX_OK;
}

static double load_float(uint32_t type, const unsigned char *p)
{
    if (type == OX_GGUF_FLOAT32) {
        uint32_t bits = (uint32_t)ox__gguf_load_le(p, 4);
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    uint64_t bits = ox__gguf_load_le(p, 8);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

ox_status ox_gguf_get_int(const ox_gguf *g, int64_t i, int64_t *value)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, "ox_gguf_get_int", value, &kv);
    if (status != OX_OK) return status;
    if (!is_integer(kv->type)) return type_mismatch(g, kv, "ox_gguf_get_int", "integer");
    if (load_int(kv->type, kv->value, value) != OX_OK)
        return ox__fail(g->ctx, OX_ERR_OUT_OF_RANGE, "ox_gguf_get_int: key '%s' of %s: %llu "
                        "exceeds INT64_MAX", kv->key, g->path,
                        (unsigned long long)ox__gguf_load_le(kv->value, 8));
    return OX_OK;
}

ox_status ox_gguf_get_float(const ox_gguf *g, int64_t i, double *value)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, "ox_gguf_get_float", value, &kv);
    if (status != OX_OK) return status;
    if (kv->type != OX_GGUF_FLOAT32 && kv->type != OX_GGUF_FLOAT64)
        return type_mismatch(g, kv, "ox_gguf_get_float", "f32 or f64");
    *value = load_float(kv->type, kv->value);
    return OX_OK;
}

ox_status ox_gguf_get_string(const ox_gguf *g, int64_t i, const char **data, size_t *size)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, "ox_gguf_get_string", data, &kv);
    if (status != OX_OK) return status;
    if (kv->type != OX_GGUF_STRING) return type_mismatch(g, kv, "ox_gguf_get_string", "string");
    *data = (const char *)kv->value;
    if (size) *size = (size_t)kv->size;
    return OX_OK;
}

ox_status ox_gguf_get_array(const ox_gguf *g, int64_t i, ox_gguf_type *elem_type,
                            uint64_t *count)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, "ox_gguf_get_array", count, &kv);
    if (status != OX_OK) return status;
    if (kv->type != OX_GGUF_ARRAY) return type_mismatch(g, kv, "ox_gguf_get_array", "array");
    if (elem_type) *elem_type = (ox_gguf_type)kv->elem_type;
    *count = kv->size;
    return OX_OK;
}

ox_status ox_gguf_get_array_data(const ox_gguf *g, int64_t i, const void **data)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_kv(g, i, "ox_gguf_get_array_data", data, &kv);
    if (status != OX_OK) return status;
    if (kv->type != OX_GGUF_ARRAY || kv->elem_type == OX_GGUF_STRING)
        return type_mismatch(g, kv, "ox_gguf_get_array_data", "numeric array");
    *data = kv->value;
    return OX_OK;
}

/* Element j of array pair i, whose element type `accept` approves. */
static ox_status get_element(const ox_gguf *g, int64_t i, uint64_t j, const void *out,
                             bool (*accept)(uint32_t), const char *wanted, const char *func,
                             const gguf_kv **kv)
{
    ox_status status = get_kv(g, i, func, out, kv);
    if (status != OX_OK) return status;
    if ((*kv)->type != OX_GGUF_ARRAY || !accept((*kv)->elem_type))
        return type_mismatch(g, *kv, func, wanted);
    if (j >= (*kv)->size)
        return ox__fail(g->ctx, OX_ERR_INVALID, "%s: element %llu of key '%s' out of range "
                        "(%llu elements)", func, (unsigned long long)j, (*kv)->key,
                        (unsigned long long)(*kv)->size);
    return OX_OK;
}

static bool is_float(uint32_t type)
{
    return type == OX_GGUF_FLOAT32 || type == OX_GGUF_FLOAT64;
}

static bool is_string(uint32_t type)
{
    return type == OX_GGUF_STRING;
}

ox_status ox_gguf_get_array_int(const ox_gguf *g, int64_t i, uint64_t j, int64_t *value)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_element(g, i, j, value, is_integer, "array of integers",
                                   "ox_gguf_get_array_int", &kv);
    if (status != OX_OK) return status;
    const unsigned char *p = kv->value + j * ox__gguf_type_size(kv->elem_type);
    if (load_int(kv->elem_type, p, value) != OX_OK)
        return ox__fail(g->ctx, OX_ERR_OUT_OF_RANGE, "ox_gguf_get_array_int: element %llu of "
                        "key '%s' exceeds INT64_MAX", (unsigned long long)j, kv->key);
    return OX_OK;
}

ox_status ox_gguf_get_array_float(const ox_gguf *g, int64_t i, uint64_t j, double *value)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_element(g, i, j, value, is_float, "array of floats",
                                   "ox_gguf_get_array_float", &kv);
    if (status != OX_OK) return status;
    *value = load_float(kv->elem_type, kv->value + j * ox__gguf_type_size(kv->elem_type));
    return OX_OK;
}

ox_status ox_gguf_get_array_string(const ox_gguf *g, int64_t i, uint64_t j, const char **data,
                                   size_t *size)
{
    const gguf_kv *kv = NULL;
    ox_status status = get_element(g, i, j, data, is_string, "array of strings",
                                   "ox_gguf_get_array_string", &kv);
    if (status != OX_OK) return status;
    const unsigned char *p = g->data + kv->strings[j];
    *data = (const char *)(p + 8);
    if (size) *size = (size_t)ox__gguf_load_le(p, 8);
    return OX_OK;
}

/* ---- tensors ------------------------------------------------------------------- */

int64_t ox_gguf_tensor_count(const ox_gguf *g)
{
    return g ? g->tensor_count : 0;
}

int64_t ox_gguf_find_tensor(const ox_gguf *g, const char *name)
{
    return g ? lookup(g, g->tensor_index, g->tensor_index_capacity, tensor_name, name) : -1;
}

static ox_status get_tensor(const ox_gguf *g, int64_t i, const char *func, const gguf_tensor **t)
{
    if (!g) return ox__fail(NULL, OX_ERR_INVALID, "%s: gguf is NULL", func);
    if (i < 0 || i >= g->tensor_count)
        return ox__fail(g->ctx, OX_ERR_INVALID, "%s: tensor %lld out of range (%lld tensors in %s)",
                        func, (long long)i, (long long)g->tensor_count, g->path);
    *t = &g->tensors[i];
    return OX_OK;
}

ox_context *ox__gguf_context(const ox_gguf *gguf)
{
    return gguf->ctx;
}

void ox__gguf_release_pages(const ox_gguf *g, const void *data, size_t bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    if (!g->map || page <= 0 || !data) return;
    uintptr_t start = ((uintptr_t)data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t end = ((uintptr_t)data + bytes) & ~((uintptr_t)page - 1);
    if (end <= start) return;
#ifdef MADV_NOHUGEPAGE
    /* a page touched later (a small tensor beside these bytes) comes back
     * alone, not as the 2 MiB huge page around it */
    madvise((void *)start, end - start, MADV_NOHUGEPAGE);
#endif
    madvise((void *)start, end - start, MADV_DONTNEED);
}

ox_status ox_gguf_tensor_info_get(const ox_gguf *g, int64_t i, ox_gguf_tensor_info *info)
{
    const gguf_tensor *t = NULL;
    ox_status status = get_tensor(g, i, "ox_gguf_tensor_info_get", &t);
    if (status != OX_OK) return status;
    if (!info || info->struct_size < sizeof *info)
        return ox__fail(g->ctx, OX_ERR_INVALID,
                        "ox_gguf_tensor_info_get: info is NULL or its struct_size is too small "
                        "(set it to sizeof(ox_gguf_tensor_info) = %zu)", sizeof *info);
    info->name = t->name;
    info->ggml_type = t->traits->id;
    info->type_name = t->traits->name;
    info->dtype = t->traits->dtype;
    info->n_dims = t->n_dims;
    memcpy(info->ne, t->ne, sizeof info->ne);
    info->nelements = t->nelements;
    info->offset = t->offset;
    info->file_offset = g->data_offset + t->offset;
    info->nbytes = (size_t)t->nbytes;
    info->data = g->data + g->data_offset + t->offset;
    return OX_OK;
}

ox_status ox_gguf_tensor_data(const ox_gguf *g, int64_t i, ox_dtype *dtype, const void **data,
                              size_t *nbytes)
{
    const gguf_tensor *t = NULL;
    ox_status status = get_tensor(g, i, "ox_gguf_tensor_data", &t);
    if (status != OX_OK) return status;
    if (t->traits->dtype == OX_DTYPE_COUNT)
        return ox__fail(g->ctx, OX_ERR_UNSUPPORTED,
                        "gguf: %s: tensor '%s': unsupported tensor type %s", g->path, t->name,
                        t->traits->name);
    if (dtype) *dtype = t->traits->dtype;
    if (data) *data = g->data + g->data_offset + t->offset;
    if (nbytes) *nbytes = (size_t)t->nbytes;
    return OX_OK;
}

ox_status ox__gguf_kv_raw(const ox_gguf *g, int64_t i, const unsigned char **data, size_t *size)
{
    if (!g || i < 0 || i >= g->kv_count) return OX_ERR_INVALID;
    uint64_t end = i + 1 < g->kv_count ? g->kvs[i + 1].pos : g->kv_end;
    *data = g->data + g->kvs[i].pos;
    *size = (size_t)(end - g->kvs[i].pos);
    return OX_OK;
}
