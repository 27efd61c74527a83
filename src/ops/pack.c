/* Packed copies of constant quantized matrices, for the CPU's x86 tile
 * kernels (ops/quant.h, ox__qpack_rows): a model's weights are packed
 * once at load, so that every product loads each block of eight rows as
 * the kernels use it instead of gathering it from eight rows. Decoding
 * on one core then spends about half the instructions a block (Q4_0 at
 * 1 thread: 520 -> 340 us for a 4096^2 matrix, bench_quant --packed).
 *
 * A copy belongs to the memory it was made from (ox__memory.derived), is
 * freed with it, and is no longer used once the memory is written through
 * the API (ox__memory.writes). The caller of ox__matrix_pack promises
 * that nothing else writes the matrix (a model's weights: the mapped
 * file). One lock guards every table: packing happens at load, lookups
 * take it for a binary search per product. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backends/cpu/cpu_backend.h"
#include "ops/ops_internal.h"
#include "ops/quant.h"

#define PACK_ALIGN ((size_t)2 << 20) /* so that transparent huge pages can back it */
#define PACK_GROUPS_PER_TASK 64

typedef struct pack_entry {
    size_t offset;     /* the matrix's first byte in the memory */
    ox_dtype dtype;
    int64_t n, rows;   /* row length; rows packed (a multiple of 8) */
    size_t row_bytes;  /* the source's row stride */
    unsigned writes;   /* the memory's write count when packed */
    void *data;
} pack_entry;

typedef struct pack_table {
    pack_entry *e;     /* sorted by offset */
    int count, cap;
} pack_table;

static pthread_mutex_t pack_lock = PTHREAD_MUTEX_INITIALIZER;

static void table_free(void *p)
{
    pack_table *t = p;
    for (int i = 0; i < t->count; i++) free(t->e[i].data);
    free(t->e);
    free(t);
}

/* The index of the first entry at or after offset. */
static int table_find(const pack_table *t, size_t offset)
{
    int lo = 0, hi = t->count;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (t->e[mid].offset < offset) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static const pack_entry *table_match(const ox__memory *m, size_t offset, const ox_tensor *w)
{
    const pack_table *t = m->derived;
    if (!t) return NULL;
    int i = table_find(t, offset);
    if (i == t->count) return NULL;
    const pack_entry *e = &t->e[i];
    if (e->offset != offset || e->dtype != w->dtype || e->n != w->ne[0] ||
        e->row_bytes != (size_t)w->nb[1] || e->writes != atomic_load(&m->writes))
        return NULL;
    return e;
}

typedef struct pack_job {
    ox_dtype dtype;
    const unsigned char *src;
    unsigned char *dst;
    size_t row_bytes;
    int64_t n, groups;
    void (*release)(void *user, const void *data, size_t bytes);
    void *user;
} pack_job;

static void pack_task(void *arg, size_t task, int thread)
{
    const pack_job *j = arg;
    (void)thread;
    int64_t g0 = (int64_t)task * PACK_GROUPS_PER_TASK;
    int64_t g1 = g0 + PACK_GROUPS_PER_TASK < j->groups ? g0 + PACK_GROUPS_PER_TASK : j->groups;
    const unsigned char *src = j->src + (size_t)(8 * g0) * j->row_bytes;
    ox__qpack_groups(j->dtype, j->src, j->row_bytes, j->groups, j->n, g0, g1, j->dst);
    if (j->release) j->release(j->user, src, (size_t)(8 * (g1 - g0)) * j->row_bytes);
}

/* Whether the CPU's kernels have a packed form for this matrix. */
static bool packable(const ox_tensor *w, uint64_t features)
{
    if (!ox_dtype_is_quantized(w->dtype) || ox__qpack_layout_of(w->dtype).halves == 0) return false;
    if (w->ne[1] < 8 || w->ne[2] != 1 || w->ne[3] != 1) return false;
    if (w->nb[0] != (int64_t)ox_dtype_size(w->dtype) ||
        w->nb[1] != (int64_t)ox_dtype_row_size(w->dtype, w->ne[0]))
        return false; /* rows of whole blocks, one after another */
    return ox__cpu_quant_packed(w->dtype, features);
}

ox_status ox__matrix_pack(const ox_tensor *w, void (*release)(void *user, const void *data, size_t bytes),
                          void *user, bool *packed)
{
    *packed = false;
    ox_device *dev = w->buffer->memory->device;
    /* reproducible mode runs the portable kernels, which read the file's layout */
    if (dev->backend->iface != ox__cpu_backend() || w->buffer->ctx->reproducible ||
        !packable(w, dev->info.features))
        return OX_OK;
    ox__memory *m = w->buffer->memory;
    size_t offset = w->buffer->offset + w->offset;
    int64_t rows = w->ne[1] / 8 * 8;
    size_t packed_row = ox_dtype_row_size(w->dtype, w->ne[0]), bytes = packed_row * (size_t)rows;
    pthread_mutex_lock(&pack_lock);
    bool done = table_match(m, offset, w) != NULL;
    pthread_mutex_unlock(&pack_lock);
    if (done) {
        *packed = true;
        return OX_OK;
    }
    void *data = NULL;
    if (posix_memalign(&data, PACK_ALIGN, bytes) != 0) return OX_ERR_OUT_OF_MEMORY;
#ifdef MADV_HUGEPAGE
    madvise(data, bytes - bytes % PACK_ALIGN, MADV_HUGEPAGE);
#endif
    unsigned writes = atomic_load(&m->writes);
    pack_job job = {.dtype = w->dtype,
                    .src = ox__cpu_buffer_data(m->impl) + offset,
                    .dst = data,
                    .row_bytes = (size_t)w->nb[1],
                    .n = w->ne[0],
                    .groups = rows / 8,
                    .release = release,
                    .user = user};
    size_t tasks = (size_t)((job.groups + PACK_GROUPS_PER_TASK - 1) / PACK_GROUPS_PER_TASK);
    ox__pool *pool = ox__cpu_device_pool(dev->impl);
    if (pool) ox__pool_run(pool, tasks, pack_task, &job);
    else
        for (size_t t = 0; t < tasks; t++) pack_task(&job, t, 0);

    ox_status s = OX_OK;
    pthread_mutex_lock(&pack_lock);
    pack_table *t = m->derived;
    if (!t && (t = calloc(1, sizeof *t))) {
        m->derived = t;
        m->derived_free = table_free;
    }
    if (t && t->count == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        pack_entry *e = realloc(t->e, (size_t)cap * sizeof *e);
        if (e) {
            t->e = e;
            t->cap = cap;
        }
    }
    if (!t || t->count == t->cap) {
        s = OX_ERR_OUT_OF_MEMORY;
    } else {
        int i = table_find(t, offset);
        if (i < t->count && t->e[i].offset == offset) { /* stale (written since): replace */
            free(t->e[i].data);
        } else {
            memmove(&t->e[i + 1], &t->e[i], (size_t)(t->count - i) * sizeof *t->e);
            t->count++;
        }
        t->e[i] = (pack_entry){.offset = offset, .dtype = w->dtype, .n = w->ne[0], .rows = rows,
                               .row_bytes = (size_t)w->nb[1], .writes = writes, .data = data};
        data = NULL;
        *packed = true;
    }
    pthread_mutex_unlock(&pack_lock);
    free(data);
    return s;
}

const void *ox__matrix_packed(const ox_tensor *w)
{
    if (!ox_dtype_is_quantized(w->dtype)) return NULL;
    ox__memory *m = w->buffer->memory;
    pthread_mutex_lock(&pack_lock);
    const pack_entry *e = table_match(m, w->buffer->offset + w->offset, w);
    const void *data = e && e->rows >= w->ne[1] / 8 * 8 ? e->data : NULL;
    pthread_mutex_unlock(&pack_lock);
    return data;
}

ox_status ox_tensor_prepare_weights(const ox_tensor *w, bool *prepared)
{
    if (prepared) *prepared = false;
    ox_status s = ox_tensor_check(w, "ox_tensor_prepare_weights: w");
    if (s != OX_OK) return s;
    bool made = false;
    s = ox__matrix_pack(w, NULL, NULL, &made);
    if (s == OX_ERR_OUT_OF_MEMORY)
        return ox__fail(w->buffer->ctx, s, "ox_tensor_prepare_weights: no memory for a copy of "
                        "the %s matrix (%lld x %lld); it is used as it is",
                        ox_dtype_str(w->dtype), (long long)w->ne[0], (long long)w->ne[1]);
    if (prepared) *prepared = made;
    return s;
}
