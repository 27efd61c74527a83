/* Data movement on the CPU: get_rows, copy (with dtype conversion, so also
 * contiguous / transpose / permute of strided views, and dequantization of
 * quantized rows) and concat. Each op
 * walks dst in row-major order, piece of row by piece of row, and copies
 * from where that piece comes from: bytes when the dtypes match (exact,
 * NaN payloads and I32 included), through F32 tiles when they differ. */
#include <string.h>

#include "ops/cpu_tile.h"
#include "ops/quant.h"

#define BLOCK 64 /* side of the squares of a transposing copy */

typedef enum move_kind { MOVE_COPY, MOVE_GET_ROWS, MOVE_CONCAT } move_kind;

typedef struct move_job {
    move_kind kind;
    const ox__view *dst;
    const ox__view *src;  /* copy: src; get_rows: table; concat: a */
    const ox__view *b;    /* concat */
    const ox__view *ids;  /* get_rows */
    int dim;              /* concat */
    int64_t total;        /* elements of dst */
    size_t n_tasks;
} move_job;

/* Copy n elements from sp (of src) to dp (of dst). */
static void copy_run(const ox__view *dst, char *dp, const ox__view *src, const char *sp, int64_t n)
{
    size_t size = ox_dtype_size(src->dtype);
    int64_t ds = dst->nb[0], ss = src->nb[0];
    if (dst->dtype == src->dtype) {
        if (ds == (int64_t)size && ss == (int64_t)size) memmove(dp, sp, (size_t)n * size);
        else if (size == 2)
            for (int64_t i = 0; i < n; i++) memcpy(dp + i * ds, sp + i * ss, 2);
        else
            for (int64_t i = 0; i < n; i++) memcpy(dp + i * ds, sp + i * ss, 4);
        return;
    }
    float buf[OX__TILE], out_buf[OX__TILE];
    for (int64_t t = 0; t < n; t += OX__TILE) {
        int64_t m = ox__min64(n - t, OX__TILE);
        const float *x = ox__tile_in(src, sp + t * ss, m, buf);
        float *d = ox__tile_out(dst, dp + t * ds, out_buf);
        memcpy(d, x, (size_t)m * sizeof *d);
        ox__tile_done(dst, dp + t * ds, d, m);
    }
}

static int32_t id_at(const ox__view *ids, const int64_t idx[3])
{
    int32_t id;
    memcpy(&id, ox__view_at(ids, idx[0], idx[1], idx[2], 0), sizeof id);
    return id;
}

/* dst elements [i0, i0 + n) of row idx, from wherever they come from. */
static void move_segment(const void *arg, int64_t i0, int64_t n, const int64_t idx[3])
{
    const move_job *j = arg;
    const ox__view *src = j->src;
    char *dp = ox__view_at(j->dst, i0, idx[0], idx[1], idx[2]);
    int64_t at[4] = {i0, idx[0], idx[1], idx[2]};
    if (j->kind == MOVE_GET_ROWS) {
        at[1] = id_at(j->ids, idx);
        at[2] %= src->ne[2];
        at[3] %= src->ne[3];
    } else if (j->kind == MOVE_CONCAT && j->dim == 0 && i0 < src->ne[0] && i0 + n > src->ne[0]) {
        int64_t m = src->ne[0] - i0; /* the piece straddles a and b: split it */
        copy_run(j->dst, dp, src, ox__view_at(src, i0, at[1], at[2], at[3]), m);
        copy_run(j->dst, dp + m * j->dst->nb[0], j->b, ox__view_at(j->b, 0, at[1], at[2], at[3]),
                 n - m);
        return;
    } else if (j->kind == MOVE_CONCAT && at[j->dim] >= src->ne[j->dim]) {
        at[j->dim] -= src->ne[j->dim];
        src = j->b;
    }
    copy_run(j->dst, dp, src, ox__view_at(src, at[0], at[1], at[2], at[3]), n);
}

static void move_task(void *arg, size_t task, int thread)
{
    const move_job *j = arg;
    int64_t start, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, j->total, &start, &end);
    ox__for_segments(j->dst->ne, start, end, move_segment, j);
}

/* A copy from a source that runs along dimension 1 rather than 0 (a
 * transposed view) goes through dst in BLOCK x BLOCK squares, so that each
 * source cache line serves BLOCK rows before it is evicted. */
static void transpose_task(void *arg, size_t task, int thread)
{
    const move_job *j = arg;
    const int64_t *ne = j->dst->ne, row_blocks = (ne[1] + BLOCK - 1) / BLOCK;
    int64_t begin, end;
    (void)thread;
    ox__task_range(task, j->n_tasks, row_blocks * ne[2] * ne[3], &begin, &end);
    for (int64_t u = begin; u < end; u++) {
        int64_t r0 = u % row_blocks * BLOCK, i2 = u / row_blocks % ne[2];
        int64_t i3 = u / row_blocks / ne[2];
        int64_t r1 = ox__min64(r0 + BLOCK, ne[1]);
        for (int64_t c0 = 0; c0 < ne[0]; c0 += BLOCK)
            for (int64_t i1 = r0; i1 < r1; i1++)
                copy_run(j->dst, ox__view_at(j->dst, c0, i1, i2, i3), j->src,
                         ox__view_at(j->src, c0, i1, i2, i3), ox__min64(BLOCK, ne[0] - c0));
    }
}

/* A quantized source (get_rows table or copy src) is dequantized by whole
 * rows, which hold whole blocks: task = a range of dst rows. */
static void dequantize_task(void *arg, size_t task, int thread)
{
    const move_job *j = arg;
    const ox__view *dst = j->dst, *src = j->src;
    const int64_t *ne = dst->ne, block = ox_dtype_block(src->dtype);
    int64_t begin, end, block_bytes = (int64_t)ox_dtype_size(src->dtype);
    float buf[OX__TILE];
    unsigned char raw[OX__TILE / 32 * 34]; /* the most bytes a tile of blocks takes (Q8_0) */
    (void)thread;
    ox__task_range(task, j->n_tasks, ne[1] * ne[2] * ne[3], &begin, &end);
    for (int64_t r = begin; r < end; r++) {
        int64_t idx[3] = {r % ne[1], r / ne[1] % ne[2], r / ne[1] / ne[2]};
        int64_t at[3] = {idx[0], idx[1], idx[2]};
        if (j->kind == MOVE_GET_ROWS) {
            at[0] = id_at(j->ids, idx);
            at[1] %= src->ne[2];
            at[2] %= src->ne[3];
        }
        const char *sp = ox__view_at(src, 0, at[0], at[1], at[2]);
        char *dp = ox__view_at(dst, 0, idx[0], idx[1], idx[2]);
        /* a packed matrix's row is read from the packed copy: the file's
         * pages of a packed matrix were given back (ops/pack.c) */
        bool packed = src->packed && at[1] == 0 && at[2] == 0 && at[0] < src->ne[1] / 8 * 8;
        for (int64_t t = 0; t < ne[0]; t += OX__TILE) { /* OX__TILE holds whole blocks */
            int64_t m = ox__min64(ne[0] - t, OX__TILE);
            float *d = ox__tile_out(dst, dp + t * dst->nb[0], buf);
            if (packed) {
                ox__qunpack_blocks(src->dtype, src->packed, src->ne[1] / 8, src->ne[0], at[0],
                                   t / block, m / block, raw);
                (void)ox_row_to_f32(src->dtype, raw, d, m);
            } else {
                (void)ox_row_to_f32(src->dtype, sp + t / block * block_bytes, d, m);
            }
            ox__tile_done(dst, dp + t * dst->nb[0], d, m);
        }
    }
}

static ox_status dequantize_run(const ox__cpu_exec *x, move_job *j)
{
    const int64_t *ne = j->dst->ne;
    int64_t rows = ne[1] * ne[2] * ne[3];
    j->n_tasks = ox__task_count(x, rows * ne[0], rows);
    if (rows > 0) ox__cpu_run(x, j->n_tasks, dequantize_task, j);
    return OX_OK;
}

static ox_status move_run(const ox__cpu_exec *x, move_job *j)
{
    const int64_t *ne = j->dst->ne;
    j->total = ne[0] * ne[1] * ne[2] * ne[3];
    j->n_tasks = ox__task_count(x, j->total, j->total);
    if (j->total > 0) ox__cpu_run(x, j->n_tasks, move_task, j);
    return OX_OK;
}

ox_status ox__cpu_get_rows(const ox__cpu_exec *x, const ox__view *dst, const ox__view *table,
                           const ox__view *ids)
{
    /* Every id is checked before anything is written. */
    for (int64_t i2 = 0; i2 < ids->ne[2]; i2++)
        for (int64_t i1 = 0; i1 < ids->ne[1]; i1++)
            for (int64_t i0 = 0; i0 < ids->ne[0]; i0++) {
                int64_t idx[3] = {i0, i1, i2};
                int32_t id = id_at(ids, idx);
                if (id < 0 || id >= table->ne[1]) return OX_ERR_OUT_OF_RANGE;
            }
    move_job j = {.kind = MOVE_GET_ROWS, .dst = dst, .src = table, .ids = ids};
    if (ox_dtype_is_quantized(table->dtype)) return dequantize_run(x, &j);
    return move_run(x, &j);
}

ox_status ox__cpu_copy(const ox__cpu_exec *x, const ox__view *dst, const ox__view *src)
{
    move_job j = {.kind = MOVE_COPY, .dst = dst, .src = src};
    if (ox_dtype_is_quantized(src->dtype)) return dequantize_run(x, &j);
    const int64_t *ne = dst->ne;
    int64_t nb0 = src->nb[0] < 0 ? -src->nb[0] : src->nb[0];
    int64_t nb1 = src->nb[1] < 0 ? -src->nb[1] : src->nb[1];
    if (ne[0] < BLOCK || ne[1] < BLOCK || nb0 <= nb1) return move_run(x, &j);
    int64_t blocks = (ne[1] + BLOCK - 1) / BLOCK * ne[2] * ne[3];
    j.total = ne[0] * ne[1] * ne[2] * ne[3];
    j.n_tasks = ox__task_count(x, j.total, blocks);
    ox__cpu_run(x, j.n_tasks, transpose_task, &j);
    return OX_OK;
}

ox_status ox__cpu_concat(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                         const ox__view *b, int dim)
{
    move_job j = {.kind = MOVE_CONCAT, .dst = dst, .src = a, .b = b, .dim = dim};
    return move_run(x, &j);
}
