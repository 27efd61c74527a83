/* The op cases of 'ox check' and 'ox bench': one constructor per operator,
 * the conformance grid (every op x dtype x a grid of shapes), and the runner
 * that uploads fixed-seed inputs, runs a case on a device, times it and
 * compares the result with a reference by normalized mean squared error.
 * The tolerances are documented in docs/CHECK.md. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli.h"
#include "ops/reference.h"

/* ---- tolerances -------------------------------------------------------------
 *
 * The largest NMSE that passes, by kind of op and output dtype. Inputs are
 * rounded to their dtype before any implementation sees them and the
 * reference is rounded to the output dtype, so only the op's own arithmetic
 * counts. A correct op differs from the ideal result by a few roundings; a
 * wrong one (a missed element, a bad index, a wrong formula) by an NMSE of
 * 1e-5 (one term of 16384 lost) to 1. F16 and BF16 bounds let every element
 * be off by about one ulp; F32 bounds leave room for F32 sums in any order
 * (rows of 16384, dot products of 4096) and F32 angles. The reasoning and
 * the worst NMSE measured on the CPU and PoCL are in docs/CHECK.md. */
typedef enum tolerance_kind {
    TOL_EXACT, /* data movement, neg, abs, relu, clamp, max, argmax: bit for bit */
    TOL_ARITH, /* + - * /, scale: one or two roundings per element */
    TOL_MATH,  /* libm functions, sum, mean, softmax, norms, rope, attention */
    TOL_MATMUL, /* dot products of length K, accumulated in F32 */
    TOL_HALF_VECTOR, /* matrix-vector with 16-bit weights: the CPU rounds the vector to halves */
    TOL_QUANT  /* quantized weights: the CPU rounds activations to 8 bits */
} tolerance_kind;

static double tolerance(tolerance_kind kind, ox_dtype out, int64_t K)
{
    if (kind == TOL_EXACT) return 0.0;
    if (out == OX_DTYPE_F16) return 1e-6;  /* one ulp is 2^-11..2^-10 relative */
    if (out == OX_DTYPE_BF16) return 1e-4; /* one ulp is 2^-8..2^-7 relative */
    switch (kind) {
    case TOL_ARITH: return 1e-12;
    case TOL_MATH: return 1e-9;
    case TOL_MATMUL: return K < 100 ? 1e-11 : 1e-13 * (double)K;
    /* The CPU reads the vector of a product with F16 or BF16 weights as
     * halves (scaled by a power of two, src/ops/matmul.h): each element off
     * by up to half an ulp of a half, NMSE 3.6e-8 measured; the f16 bound. */
    case TOL_HALF_VECTOR: return 1e-6;
    /* The CPU multiplies quantized weights by activations rounded to 8-bit
     * blocks (NMSE 2e-5..2e-4 measured, tests/quant): 1e-3 passes that and
     * still fails a wrong block layout (NMSE ~1). */
    case TOL_QUANT: return 1e-3;
    default: return 0.0;
    }
}

/* ---- small helpers ------------------------------------------------------------ */

static int64_t count(const int64_t ne[4])
{
    return ne[0] * ne[1] * ne[2] * ne[3];
}

/* "65x33x3": the sizes without trailing 1s. */
static const char *shape_text(const int64_t ne[4], char *buffer, size_t size)
{
    int dims = 4;
    while (dims > 1 && ne[dims - 1] == 1) dims--;
    size_t used = 0;
    buffer[0] = '\0';
    for (int d = 0; d < dims && used < size; d++) {
        int n = snprintf(buffer + used, size - used, "%s%lld", d ? "x" : "", (long long)ne[d]);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buffer;
}

static void append(char *buffer, size_t size, const char *format, ...) CLI_PRINTF(3, 4);

static void append(char *buffer, size_t size, const char *format, ...)
{
    size_t used = strlen(buffer);
    if (used + 1 >= size) return;
    va_list args;
    va_start(args, format);
    vsnprintf(buffer + used, size - used, format, args);
    va_end(args);
}

static op_input input(ox_dtype dtype, const int64_t ne[4], op_fill fill, double lo, double hi)
{
    op_input in = {.dtype = dtype, .fill = fill, .lo = lo, .hi = hi};
    memcpy(in.ne, ne, sizeof in.ne);
    return in;
}

/* A case with its first input a transposed view (for the strided grid). */
static op_case strided(op_case c)
{
    c.in[0].transposed = 1;
    append(c.shape, sizeof c.shape, " (strided)");
    return c;
}

/* ---- run and reference, per op ------------------------------------------------ */

static const ox_tensor *optional(const ox_tensor *in, int present, int index)
{
    return present ? &in[index] : NULL;
}

static const ox_ref_tensor *optional_ref(const ox_ref_tensor *in, int present, int index)
{
    return present ? &in[index] : NULL;
}

static ox_status run_binary(ox_queue *q, const op_case *c, const ox_tensor *dst,
                            const ox_tensor *in)
{
    return ox_binary(q, (ox_binary_op)c->kind, dst, &in[0], &in[1]);
}

static void ref_binary(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_binary((ox_binary_op)c->kind, dst, &in[0], &in[1]);
}

static ox_status run_scale(ox_queue *q, const op_case *c, const ox_tensor *dst,
                           const ox_tensor *in)
{
    return ox_scale(q, dst, &in[0], c->param[0], c->param[1]);
}

static void ref_scale(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_scale(dst, &in[0], c->param[0], c->param[1]);
}

static ox_status run_clamp(ox_queue *q, const op_case *c, const ox_tensor *dst,
                           const ox_tensor *in)
{
    return ox_clamp(q, dst, &in[0], c->param[0], c->param[1]);
}

static void ref_clamp(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_clamp(dst, &in[0], c->param[0], c->param[1]);
}

static ox_status run_unary(ox_queue *q, const op_case *c, const ox_tensor *dst,
                           const ox_tensor *in)
{
    return ox_unary(q, (ox_unary_op)c->kind, dst, &in[0]);
}

static void ref_unary(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_unary((ox_unary_op)c->kind, dst, &in[0]);
}

static ox_status run_reduce(ox_queue *q, const op_case *c, const ox_tensor *dst,
                            const ox_tensor *in)
{
    return ox_reduce(q, (ox_reduce_op)c->kind, dst, &in[0]);
}

static void ref_reduce(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_reduce((ox_reduce_op)c->kind, dst, &in[0]);
}

static ox_status run_softmax(ox_queue *q, const op_case *c, const ox_tensor *dst,
                             const ox_tensor *in)
{
    return ox_softmax(q, dst, &in[0], optional(in, c->has_mask, 1), c->param[0]);
}

static void ref_softmax(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_softmax(dst, &in[0], optional_ref(in, c->has_mask, 1), c->param[0]);
}

static ox_status run_log_softmax(ox_queue *q, const op_case *c, const ox_tensor *dst,
                                 const ox_tensor *in)
{
    (void)c;
    return ox_log_softmax(q, dst, &in[0]);
}

static void ref_log_softmax(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    (void)c;
    ox_ref_log_softmax(dst, &in[0]);
}

/* Norm inputs: a, then weight and bias when present. */
static ox_status run_norm(ox_queue *q, const op_case *c, const ox_tensor *dst,
                          const ox_tensor *in)
{
    const ox_tensor *weight = optional(in, c->has_weight, 1);
    if (c->kind) return ox_rms_norm(q, dst, &in[0], weight, c->param[0]);
    return ox_layer_norm(q, dst, &in[0], weight, optional(in, c->has_bias, 1 + c->has_weight),
                         c->param[0]);
}

static void ref_norm(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    const ox_ref_tensor *weight = optional_ref(in, c->has_weight, 1);
    if (c->kind) {
        ox_ref_rms_norm(dst, &in[0], weight, c->param[0]);
        return;
    }
    ox_ref_layer_norm(dst, &in[0], weight, optional_ref(in, c->has_bias, 1 + c->has_weight),
                      c->param[0]);
}

/* The rope cases with c->table take the angles of their positions, as a
 * model's forward pass does: the table made on the host (ox_rope_table)
 * on the positions' device; freed once the queue has run the op. */
static ox_status angle_table(const op_case *c, const ox_tensor *positions, ox_tensor *table,
                             float **host)
{
    int64_t n = ox_tensor_nelements(positions);
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    *host = malloc((size_t)(n * c->rope.n_dims) * sizeof **host);
    ox_device *device;
    ox_status s = OX_ERR_OUT_OF_MEMORY;
    if (pos && *host) s = ox_buffer_device(positions->buffer, &device);
    if (s == OX_OK) s = ox_tensor_read(positions, pos, (size_t)n * sizeof *pos);
    if (s == OX_OK) s = ox_rope_table(&c->rope, pos, n, *host);
    if (s == OX_OK) s = ox_tensor_alloc(device, OX_DTYPE_F32, c->rope.n_dims, n, 1, 1, table);
    if (s == OX_OK) s = ox_tensor_write(table, *host, (size_t)(n * c->rope.n_dims) * sizeof **host);
    free(pos);
    return s;
}

/* The positions a rope case passes: its I32 input, or the angle table made
 * from it (c->table). */
static ox_status rope_positions(const op_case *c, const ox_tensor *positions, ox_tensor *table,
                                float **host, const ox_tensor **pos)
{
    *pos = positions;
    if (!c->table) return OX_OK;
    *pos = table;
    return angle_table(c, positions, table, host);
}

static ox_status table_done(ox_queue *q, ox_tensor *table, float *host, ox_status s)
{
    if (table->buffer) {
        ox_status f = ox_queue_finish(q);
        if (s == OX_OK) s = f;
        ox_buffer_free(table->buffer);
    }
    free(host);
    return s;
}

static ox_status run_rope(ox_queue *q, const op_case *c, const ox_tensor *dst,
                          const ox_tensor *in)
{
    ox_tensor table = {0};
    float *host = NULL;
    const ox_tensor *pos;
    ox_status s = rope_positions(c, &in[1], &table, &host, &pos);
    if (s == OX_OK && !c->kind) s = ox_rope(q, dst, &in[0], pos, &c->rope);
    /* in place, as models call it: dst is both the input and the output */
    if (s == OX_OK && c->kind && (s = ox_copy(q, dst, &in[0])) == OX_OK)
        s = ox_rope(q, dst, dst, pos, &c->rope);
    return table_done(q, &table, host, s);
}

static void ref_rope(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_rope(dst, &in[0], &in[1], &c->rope);
}

/* Inputs: x, delta, weight, delta_weight, and a tensor of x's shape used
 * as the working x (checking out) or as the place of out (checking x), so
 * that the inputs stay as they were and a second run gives the same bits. */
static ox_status run_add_rms_norm(ox_queue *q, const op_case *c, const ox_tensor *dst,
                                  const ox_tensor *in)
{
    const ox_tensor *dw = c->has_weight ? &in[3] : NULL;
    const ox_tensor *x = c->kind ? dst : &in[4], *out = c->kind ? &in[4] : dst;
    ox_status s = ox_copy(q, x, &in[0]);
    return s != OX_OK ? s : ox_add_rms_norm(q, x, &in[1], dw, out, &in[2], c->param[0]);
}

static void ref_add_rms_norm(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    int64_t n = dst->ne[0] * dst->ne[1] * dst->ne[2] * dst->ne[3];
    ox_ref_tensor sum = *dst;
    sum.data = malloc((size_t)n * sizeof *sum.data);
    if (!sum.data) {
        for (int64_t e = 0; e < n; e++) dst->data[e] = NAN;
        return;
    }
    if (c->has_weight) ox_ref_rms_norm(&sum, &in[1], &in[3], c->param[0]);
    else memcpy(sum.data, in[1].data, (size_t)n * sizeof *sum.data);
    ox_ref_binary(OX_BINARY_ADD, &sum, &in[0], &sum);
    if (c->kind) memcpy(dst->data, sum.data, (size_t)n * sizeof *sum.data);
    else ox_ref_rms_norm(dst, &sum, &in[2], c->param[0]);
    free(sum.data);
}

/* Inputs: a, then the weights; dst's column slices are the products. */
static ox_status run_matmul_many(ox_queue *q, const op_case *c, const ox_tensor *dst,
                                 const ox_tensor *in)
{
    ox_tensor d[3];
    size_t offset = 0;
    for (int i = 0; i < c->kind; i++) {
        d[i] = *dst;
        d[i].offset += offset;
        d[i].ne[0] = in[1 + i].ne[1];
        offset += (size_t)d[i].ne[0] * sizeof(float);
    }
    return ox_matmul_many(q, c->kind, d, &in[0], &in[1], OX_MATMUL_TRANS_B);
}

static void ref_matmul_many(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    int64_t M = dst->ne[1], total = dst->ne[0], col = 0;
    for (int i = 0; i < c->kind; i++) {
        int64_t N = in[1 + i].ne[1];
        ox_ref_tensor part = {.data = malloc((size_t)(N * M) * sizeof(double)),
                              .ne = {N, M, 1, 1}};
        if (!part.data) { /* fails the comparison: NaN is never within tolerance */
            for (int64_t e = 0; e < total * M; e++) dst->data[e] = NAN;
            return;
        }
        ox_ref_matmul(&part, &in[0], &in[1 + i], OX_MATMUL_TRANS_B);
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) dst->data[m * total + col + j] = part.data[m * N + j];
        free(part.data);
        col += N;
    }
}

/* Inputs: q, k, positions, then q's and k's weights when has_weight. The
 * output not checked is written over its input: it never feeds the one
 * checked, so a second run gives the same bits. */
static ox_status run_rope_qk(ox_queue *q, const op_case *c, const ox_tensor *dst,
                             const ox_tensor *in)
{
    const ox_tensor *qw = c->has_weight ? &in[3] : NULL, *kw = c->has_weight ? &in[4] : NULL;
    ox_tensor table = {0};
    float *host = NULL;
    const ox_tensor *pos;
    ox_status s = rope_positions(c, &in[2], &table, &host, &pos);
    if (s == OX_OK && c->kind)
        s = ox_rope_qk(q, &in[0], &in[0], qw, dst, &in[1], kw, pos, &c->rope, c->param[0]);
    else if (s == OX_OK)
        s = ox_rope_qk(q, dst, &in[0], qw, &in[1], &in[1], kw, pos, &c->rope, c->param[0]);
    return table_done(q, &table, host, s);
}

static void ref_rope_qk(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    const ox_ref_tensor *src = &in[c->kind ? 1 : 0];
    int64_t n = src->ne[0] * src->ne[1] * src->ne[2] * src->ne[3];
    ox_ref_tensor normed = *src;
    normed.data = malloc((size_t)n * sizeof *normed.data);
    if (!normed.data) { /* the comparison then fails: NaN is never within tolerance */
        for (int64_t i = 0; i < n; i++) dst->data[i] = NAN;
        return;
    }
    if (c->has_weight) ox_ref_rms_norm(&normed, src, &in[c->kind ? 4 : 3], c->param[0]);
    else memcpy(normed.data, src->data, (size_t)n * sizeof *normed.data);
    ox_ref_rope(dst, &normed, &in[2], &c->rope);
    free(normed.data);
}

/* The weights of a prepared case (ox_tensor_prepare_weights: made once,
 * found again on later calls). */
static ox_status prepare(const op_case *c, const ox_tensor *w)
{
    return c->prepared ? ox_tensor_prepare_weights(w, NULL) : OX_OK;
}

static ox_status run_matmul(ox_queue *q, const op_case *c, const ox_tensor *dst,
                            const ox_tensor *in)
{
    ox_status s = prepare(c, &in[1]);
    return s != OX_OK ? s : ox_matmul(q, dst, &in[0], &in[1], (unsigned)c->kind);
}

static void ref_matmul(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_matmul(dst, &in[0], &in[1], (unsigned)c->kind);
}

static ox_status run_get_rows(ox_queue *q, const op_case *c, const ox_tensor *dst,
                              const ox_tensor *in)
{
    ox_status s = prepare(c, &in[0]);
    return s != OX_OK ? s : ox_get_rows(q, dst, &in[0], &in[1]);
}

static void ref_get_rows(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    (void)c;
    ox_ref_get_rows(dst, &in[0], &in[1]);
}

static ox_status run_copy(ox_queue *q, const op_case *c, const ox_tensor *dst,
                          const ox_tensor *in)
{
    (void)c;
    return ox_copy(q, dst, &in[0]);
}

/* The values themselves; the caller rounds them to dst's dtype. */
static void ref_copy(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    int64_t n = count(c->out_ne);
    for (int64_t e = 0; e < n; e++) {
        if (dst->idata) dst->idata[e] = in[0].idata[e];
        else dst->data[e] = in[0].data[e];
    }
}

static ox_status run_concat(ox_queue *q, const op_case *c, const ox_tensor *dst,
                            const ox_tensor *in)
{
    return ox_concat(q, dst, &in[0], &in[1], c->kind);
}

static void ref_concat(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_concat(dst, &in[0], &in[1], c->kind);
}

/* Attention inputs: q, k, v, then the mask when present. */
static ox_status run_attention(ox_queue *q, const op_case *c, const ox_tensor *dst,
                               const ox_tensor *in)
{
    return ox_attention(q, dst, &in[0], &in[1], &in[2], optional(in, c->has_mask, 3),
                        &c->attention);
}

/* Paged (kind = page size): the keys and values copied page by page into
 * pools two pages larger, the pages in reverse order, then
 * ox_attention_paged through that table; the reference is the dense one. */
static ox_status run_attention_paged(ox_queue *q, const op_case *c, const ox_tensor *dst,
                                     const ox_tensor *in)
{
    const int page = c->kind;
    const int64_t n_kv = in[1].ne[1], used = (n_kv + page - 1) / page, n_pages = used + 2;
    ox_device *device = NULL;
    ox_status s = ox_queue_device(q, &device);
    ox_tensor pool[2] = {{0}}, table = {0};
    int32_t *pages = malloc((size_t)used * sizeof *pages);
    if (!pages) return OX_ERR_OUT_OF_MEMORY;
    for (int i = 0; s == OX_OK && i < 2; i++)
        s = ox_tensor_alloc(device, in[1 + i].dtype, in[1 + i].ne[0], n_pages * page,
                            in[1 + i].ne[2], 1, &pool[i]);
    if (s == OX_OK) s = ox_tensor_alloc(device, OX_DTYPE_I32, used, 1, 1, 1, &table);
    for (int64_t p = 0; p < used; p++) pages[p] = (int32_t)(n_pages - 1 - p);
    if (s == OX_OK) s = ox_tensor_write(&table, pages, (size_t)used * sizeof *pages);
    for (int64_t p = 0; s == OX_OK && p < used; p++)
        for (int i = 0; s == OX_OK && i < 2; i++) {
            ox_tensor from = in[1 + i], to = pool[i];
            int64_t rows = n_kv - p * page < page ? n_kv - p * page : page;
            from.offset += (size_t)(p * page * from.nb[1]);
            to.offset += (size_t)((int64_t)pages[p] * page * to.nb[1]);
            from.ne[1] = to.ne[1] = rows;
            s = ox_copy(q, &to, &from);
        }
    if (s == OX_OK)
        s = ox_attention_paged(q, dst, &in[0], &pool[0], &pool[1], &table, page, n_kv,
                               optional(in, c->has_mask, 3), &c->attention);
    ox_status f = ox_queue_finish(q); /* before the pools go */
    if (s == OX_OK) s = f;
    for (int i = 0; i < 2; i++)
        if (pool[i].buffer) ox_buffer_free(pool[i].buffer);
    if (table.buffer) ox_buffer_free(table.buffer);
    free(pages);
    return s;
}

static void ref_attention(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_attention(dst, &in[0], &in[1], &in[2], optional_ref(in, c->has_mask, 3),
                     &c->attention);
}

/* ---- constructors ------------------------------------------------------------------ */

static op_case new_case(const char *op, const char *family, ox_dtype out_dtype,
                        const int64_t out_ne[4])
{
    op_case c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.family = family;
    c.out_dtype = out_dtype;
    memcpy(c.out_ne, out_ne, sizeof c.out_ne);
    snprintf(c.dtype, sizeof c.dtype, "%s", ox_dtype_str(out_dtype));
    return c;
}

static const char *const binary_names[] = {"add", "sub", "mul", "div"};

op_case op_case_binary(ox_binary_op kind, ox_dtype dtype, const int64_t a_ne[4],
                       const int64_t b_ne[4], int a_transposed)
{
    static const char symbols[] = "+-*/";
    char sa[40], sb[40];
    op_case c = new_case(binary_names[kind], "binary", dtype, a_ne);
    c.kind = (int)kind;
    c.n_inputs = 2;
    c.in[0] = input(dtype, a_ne, FILL_UNIFORM, -2.0, 2.0);
    c.in[0].transposed = a_transposed;
    /* Divisors stay away from zero. */
    c.in[1] = kind == OX_BINARY_DIV ? input(dtype, b_ne, FILL_UNIFORM, 0.5, 2.0)
                                    : input(dtype, b_ne, FILL_UNIFORM, -2.0, 2.0);
    c.threshold = tolerance(TOL_ARITH, dtype, 0);
    snprintf(c.shape, sizeof c.shape, "%s%s %c %s", shape_text(a_ne, sa, sizeof sa),
             a_transposed ? " (strided)" : "", symbols[kind], shape_text(b_ne, sb, sizeof sb));
    c.run = run_binary;
    c.reference = ref_binary;
    return c;
}

op_case op_case_scale(ox_dtype dtype, const int64_t ne[4], float scale, float bias)
{
    char s[40];
    op_case c = new_case("scale", "scale", dtype, ne);
    c.n_inputs = 1;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -2.0, 2.0);
    c.param[0] = scale;
    c.param[1] = bias;
    c.threshold = tolerance(TOL_ARITH, dtype, 0);
    snprintf(c.shape, sizeof c.shape, "%s, x*%g%+g", shape_text(ne, s, sizeof s), (double)scale,
             (double)bias);
    c.run = run_scale;
    c.reference = ref_scale;
    return c;
}

op_case op_case_clamp(ox_dtype dtype, const int64_t ne[4], float lo, float hi)
{
    char s[40];
    op_case c = new_case("clamp", "clamp", dtype, ne);
    c.n_inputs = 1;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -2.0, 2.0);
    c.param[0] = lo;
    c.param[1] = hi;
    c.threshold = tolerance(TOL_EXACT, dtype, 0);
    snprintf(c.shape, sizeof c.shape, "%s, [%g, %g]", shape_text(ne, s, sizeof s), (double)lo,
             (double)hi);
    c.run = run_clamp;
    c.reference = ref_clamp;
    return c;
}

/* The dtype whose rounding a unary op's results carry: gelu_tanh_f16's are
 * halves whatever dtype holds them, so an F32 result may sit a half-ulp
 * from the reference where a device's tanh straddles a midpoint. */
static ox_dtype rounded_to(ox_unary_op kind, ox_dtype dtype)
{
    return kind == OX_UNARY_GELU_TANH_F16 && dtype == OX_DTYPE_F32 ? OX_DTYPE_F16 : dtype;
}

op_case op_case_unary(ox_unary_op kind, ox_dtype dtype, const int64_t ne[4])
{
    double lo = -4.0, hi = 4.0;
    tolerance_kind tol = TOL_MATH;
    switch (kind) {
    case OX_UNARY_NEG:
    case OX_UNARY_ABS:
    case OX_UNARY_RELU: tol = TOL_EXACT; break;
    case OX_UNARY_LOG:
    case OX_UNARY_SQRT:
    case OX_UNARY_RSQRT: lo = 0.05; break; /* their domain */
    case OX_UNARY_GELU:
    case OX_UNARY_GELU_TANH:
    case OX_UNARY_SILU:
    case OX_UNARY_SIGMOID:
    case OX_UNARY_SOFTPLUS: lo = -8.0, hi = 8.0; break; /* both tails */
    case OX_UNARY_GELU_TANH_F16: lo = -12.0, hi = 12.0; break; /* both cut-offs */
    default: break;
    }
    op_case c = new_case(ox_unary_str(kind), "unary", dtype, ne);
    c.kind = (int)kind;
    c.n_inputs = 1;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, lo, hi);
    c.threshold = tolerance(tol, rounded_to(kind, dtype), 0);
    shape_text(ne, c.shape, sizeof c.shape);
    c.run = run_unary;
    c.reference = ref_unary;
    return c;
}

op_case op_case_reduce(ox_reduce_op kind, ox_dtype dtype, const int64_t ne[4])
{
    static const char *const names[] = {"sum", "mean", "max", "argmax"};
    int64_t out_ne[4] = {1, ne[1], ne[2], ne[3]};
    int arg = kind == OX_REDUCE_ARGMAX;
    op_case c = new_case(names[kind], "reduce", arg ? OX_DTYPE_I32 : dtype, out_ne);
    snprintf(c.dtype, sizeof c.dtype, "%s", ox_dtype_str(dtype));
    c.kind = (int)kind;
    c.n_inputs = 1;
    /* max and argmax: one clear maximum per row, so that the index is unique. */
    c.in[0] = input(dtype, ne, kind >= OX_REDUCE_MAX ? FILL_UNIQUE_MAX : FILL_UNIFORM, -1.0, 1.0);
    c.threshold = tolerance(kind >= OX_REDUCE_MAX ? TOL_EXACT : TOL_MATH, dtype, 0);
    shape_text(ne, c.shape, sizeof c.shape);
    c.run = run_reduce;
    c.reference = ref_reduce;
    return c;
}

op_case op_case_softmax(ox_dtype dtype, const int64_t ne[4], int mask_dtype, int64_t mask_rows,
                        int empty_row, float scale)
{
    char s[40];
    op_case c = new_case("softmax", "softmax", dtype, ne);
    c.n_inputs = 1;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -5.0, 5.0);
    c.param[0] = scale;
    c.threshold = tolerance(TOL_MATH, dtype, 0);
    snprintf(c.shape, sizeof c.shape, "%s", shape_text(ne, s, sizeof s));
    if (mask_dtype >= 0) {
        int64_t mask_ne[4] = {ne[0], mask_rows, 1, 1};
        c.has_mask = 1;
        c.n_inputs = 2;
        c.in[1] = input((ox_dtype)mask_dtype, mask_ne, empty_row ? FILL_MASK_EMPTY : FILL_MASK,
                        -2.0, 0.0);
        append(c.shape, sizeof c.shape, ", mask %s %s%s", ox_dtype_str((ox_dtype)mask_dtype),
               shape_text(mask_ne, s, sizeof s), empty_row ? " (row 0 all -inf)" : "");
    }
    if (scale != 1.0f) append(c.shape, sizeof c.shape, ", scale %g", (double)scale);
    c.run = run_softmax;
    c.reference = ref_softmax;
    return c;
}

op_case op_case_log_softmax(ox_dtype dtype, const int64_t ne[4])
{
    op_case c = new_case("log_softmax", "log_softmax", dtype, ne);
    c.n_inputs = 1;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -5.0, 5.0);
    c.threshold = tolerance(TOL_MATH, dtype, 0);
    shape_text(ne, c.shape, sizeof c.shape);
    c.run = run_log_softmax;
    c.reference = ref_log_softmax;
    return c;
}

op_case op_case_norm(int rms, ox_dtype dtype, const int64_t ne[4], int has_weight, int has_bias,
                     float eps)
{
    int64_t row[4] = {ne[0], 1, 1, 1};
    op_case c = new_case(rms ? "rms_norm" : "layer_norm", "norm", dtype, ne);
    c.kind = rms;
    c.has_weight = has_weight;
    c.has_bias = has_bias && !rms;
    c.n_inputs = 1;
    /* A mean away from zero, so that layer_norm's centring matters. */
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -1.0, 3.0);
    if (c.has_weight) c.in[c.n_inputs++] = input(dtype, row, FILL_UNIFORM, 0.5, 1.5);
    if (c.has_bias) c.in[c.n_inputs++] = input(dtype, row, FILL_UNIFORM, -1.0, 1.0);
    c.param[0] = eps;
    c.threshold = tolerance(TOL_MATH, dtype, 0);
    shape_text(ne, c.shape, sizeof c.shape);
    append(c.shape, sizeof c.shape, "%s%s, eps %g", c.has_weight ? ", weight" : "",
           c.has_bias ? ", bias" : "", (double)eps);
    c.run = run_norm;
    c.reference = ref_norm;
    return c;
}

op_case op_case_rope(ox_dtype dtype, const int64_t ne[4], const ox_rope_params *params)
{
    int64_t positions[4] = {ne[2], 1, 1, 1};
    op_case c = new_case("rope", "rope", dtype, ne);
    c.n_inputs = 2;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[1] = input(OX_DTYPE_I32, positions, FILL_INTEGERS, 0.0, 512.0); /* not 0..n */
    c.rope = *params;
    c.threshold = tolerance(TOL_MATH, dtype, 0);
    shape_text(ne, c.shape, sizeof c.shape);
    append(c.shape, sizeof c.shape, ", %s, n_dims %d, base %g, freq_scale %g",
           params->mode == OX_ROPE_NEOX ? "neox" : "normal", params->n_dims,
           (double)params->freq_base, (double)params->freq_scale);
    c.run = run_rope;
    c.reference = ref_rope;
    return c;
}

static ox_status run_glu(ox_queue *q, const op_case *c, const ox_tensor *dst, const ox_tensor *in)
{
    return ox_glu(q, (ox_unary_op)c->kind, dst, &in[0], &in[1]);
}

static void ref_glu(const op_case *c, ox_ref_tensor *dst, const ox_ref_tensor *in)
{
    ox_ref_unary((ox_unary_op)c->kind, dst, &in[0]);
    ox_ref_binary(OX_BINARY_MUL, dst, dst, &in[1]);
}

op_case op_case_glu(ox_unary_op act, ox_dtype dtype, const int64_t ne[4])
{
    op_case c = new_case("glu", "unary", dtype, ne);
    c.kind = (int)act;
    c.n_inputs = 2;
    c.in[0] = input(dtype, ne, FILL_UNIFORM, -8.0, 8.0);
    c.in[1] = input(dtype, ne, FILL_UNIFORM, -2.0, 2.0);
    c.threshold = tolerance(TOL_MATH, rounded_to(act, dtype), 0);
    shape_text(ne, c.shape, sizeof c.shape);
    append(c.shape, sizeof c.shape, ", %s", ox_unary_str(act));
    c.run = run_glu;
    c.reference = ref_glu;
    return c;
}

op_case op_case_add_rms_norm(int64_t ne0, int64_t rows, int has_delta_weight, int check_x)
{
    int64_t ne[4] = {ne0, rows, 1, 1}, w_ne[4] = {ne0, 1, 1, 1};
    op_case c = new_case("add_rms_norm", "norm", OX_DTYPE_F32, ne);
    c.n_inputs = 5;
    c.in[0] = input(OX_DTYPE_F32, ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[4] = input(OX_DTYPE_F32, ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[1] = input(OX_DTYPE_F32, ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[2] = input(OX_DTYPE_F32, w_ne, FILL_UNIFORM, 0.5, 1.5);
    c.in[3] = input(OX_DTYPE_F32, w_ne, FILL_UNIFORM, 0.5, 1.5);
    c.kind = check_x;
    c.has_weight = has_delta_weight;
    c.param[0] = 1e-6f;
    c.threshold = tolerance(TOL_MATH, OX_DTYPE_F32, 0);
    shape_text(ne, c.shape, sizeof c.shape);
    append(c.shape, sizeof c.shape, ", %s%s", check_x ? "x" : "out",
           has_delta_weight ? ", delta normalised" : "");
    c.run = run_add_rms_norm;
    c.reference = ref_add_rms_norm;
    return c;
}

op_case op_case_matmul_many(int n, const ox_dtype types[], const int64_t N[], int64_t M, int64_t K)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += N[i];
    int64_t dst_ne[4] = {total, M, 1, 1}, a_ne[4] = {K, M, 1, 1};
    op_case c = new_case("matmul_many", "matmul", OX_DTYPE_F32, dst_ne);
    c.kind = n;
    c.n_inputs = 1 + n;
    c.in[0] = input(OX_DTYPE_F32, a_ne, FILL_UNIFORM, -1.0, 1.0);
    c.dtype[0] = '\0';
    int quantized = 0, half_vector = 0;
    for (int i = 0; i < n; i++) {
        int64_t b_ne[4] = {K, N[i], 1, 1};
        c.in[1 + i] = input(types[i], b_ne, FILL_UNIFORM, -1.0, 1.0);
        quantized |= ox_dtype_is_quantized(types[i]);
        half_vector |= M == 1 && (types[i] == OX_DTYPE_F16 || types[i] == OX_DTYPE_BF16);
        append(c.dtype, sizeof c.dtype, "%s%s", i ? "+" : "", ox_dtype_str(types[i]));
    }
    c.threshold = quantized     ? tolerance(TOL_QUANT, OX_DTYPE_F32, K)
                  : half_vector ? tolerance(TOL_HALF_VECTOR, OX_DTYPE_F32, K)
                                : tolerance(TOL_MATMUL, OX_DTYPE_F32, K);
    c.flops = 2.0 * (double)M * (double)total * (double)K;
    snprintf(c.shape, sizeof c.shape, "M%lld K%lld, N", (long long)M, (long long)K);
    for (int i = 0; i < n; i++) append(c.shape, sizeof c.shape, "%s%lld", i ? "+" : " ", (long long)N[i]);
    c.run = run_matmul_many;
    c.reference = ref_matmul_many;
    return c;
}

op_case op_case_rope_qk(int64_t D, int64_t Hq, int64_t Hkv, int64_t T, int has_weight, int keys,
                        ox_dtype k_dtype, const ox_rope_params *params)
{
    int64_t q_ne[4] = {D, Hq, T, 1}, k_ne[4] = {D, Hkv, T, 1}, pos[4] = {T, 1, 1, 1};
    int64_t w_ne[4] = {D, 1, 1, 1};
    op_case c = new_case("rope_qk", "rope", keys ? k_dtype : OX_DTYPE_F32, keys ? k_ne : q_ne);
    c.n_inputs = has_weight ? 5 : 3;
    c.in[0] = input(OX_DTYPE_F32, q_ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[1] = input(OX_DTYPE_F32, k_ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[2] = input(OX_DTYPE_I32, pos, FILL_INTEGERS, 0.0, 512.0);
    c.in[3] = input(OX_DTYPE_F32, w_ne, FILL_UNIFORM, 0.5, 1.5);
    c.in[4] = input(OX_DTYPE_F32, w_ne, FILL_UNIFORM, 0.5, 1.5);
    c.kind = keys;
    c.has_weight = has_weight;
    c.param[0] = 1e-6f;
    c.rope = *params;
    c.threshold = tolerance(TOL_MATH, c.out_dtype, 0);
    snprintf(c.dtype, sizeof c.dtype, "%s", keys ? ox_dtype_str(k_dtype) : "f32");
    snprintf(c.shape, sizeof c.shape, "%s: D%lld H %lld/%lld T%lld, %s%s, n_dims %d",
             keys ? "keys" : "queries", (long long)D, (long long)Hq, (long long)Hkv, (long long)T,
             params->mode == OX_ROPE_NEOX ? "neox" : "normal", has_weight ? ", norms" : "",
             params->n_dims);
    c.run = run_rope_qk;
    c.reference = ref_rope_qk;
    return c;
}

op_case op_case_matmul(ox_dtype a_dtype, ox_dtype b_dtype, int64_t M, int64_t N, int64_t K,
                       unsigned flags, const int64_t a_batch[2], const int64_t b_batch[2])
{
    static const int64_t single[2] = {1, 1};
    if (!a_batch) a_batch = single;
    if (!b_batch) b_batch = single;
    int ta = (flags & OX_MATMUL_TRANS_A) != 0, tb = (flags & OX_MATMUL_TRANS_B) != 0;
    int64_t dst_ne[4] = {N, M, b_batch[0], b_batch[1]};
    int64_t a_ne[4] = {ta ? M : K, ta ? K : M, a_batch[0], a_batch[1]};
    int64_t b_ne[4] = {tb ? K : N, tb ? N : K, b_batch[0], b_batch[1]};
    op_case c = new_case("matmul", "matmul", OX_DTYPE_F32, dst_ne);
    snprintf(c.dtype, sizeof c.dtype, "%s*%s", ox_dtype_str(a_dtype), ox_dtype_str(b_dtype));
    c.kind = (int)flags;
    c.n_inputs = 2;
    c.in[0] = input(a_dtype, a_ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[1] = input(b_dtype, b_ne, FILL_UNIFORM, -1.0, 1.0);
    int half_vector = (M == 1 && (b_dtype == OX_DTYPE_F16 || b_dtype == OX_DTYPE_BF16)) ||
                      (N == 1 && (a_dtype == OX_DTYPE_F16 || a_dtype == OX_DTYPE_BF16));
    c.threshold = ox_dtype_is_quantized(b_dtype) ? tolerance(TOL_QUANT, OX_DTYPE_F32, K)
                  : half_vector                  ? tolerance(TOL_HALF_VECTOR, OX_DTYPE_F32, K)
                                                 : tolerance(TOL_MATMUL, OX_DTYPE_F32, K);
    c.flops = 2.0 * (double)M * (double)N * (double)K * (double)(b_batch[0] * b_batch[1]);
    snprintf(c.shape, sizeof c.shape, "M%lld N%lld K%lld%s%s", (long long)M, (long long)N,
             (long long)K, ta ? " a^T" : "", tb ? " b^T" : "");
    if (b_batch[0] * b_batch[1] > 1)
        append(c.shape, sizeof c.shape, ", batch %lldx%lld over %lldx%lld",
               (long long)a_batch[0], (long long)a_batch[1], (long long)b_batch[0],
               (long long)b_batch[1]);
    c.run = run_matmul;
    c.reference = ref_matmul;
    return c;
}

op_case op_case_prepared(op_case c)
{
    c.prepared = 1;
    append(c.shape, sizeof c.shape, ", prepared");
    return c;
}

op_case op_case_get_rows(ox_dtype table_dtype, ox_dtype dst_dtype, const int64_t table_ne[4],
                         const int64_t ids_ne[3])
{
    char st[40], si[40];
    int64_t dst_ne[4] = {table_ne[0], ids_ne[0], ids_ne[1], ids_ne[2]};
    int64_t id_shape[4] = {ids_ne[0], ids_ne[1], ids_ne[2], 1};
    op_case c = new_case("get_rows", "get_rows", dst_dtype, dst_ne);
    snprintf(c.dtype, sizeof c.dtype, "%s>%s", ox_dtype_str(table_dtype),
             ox_dtype_str(dst_dtype));
    c.n_inputs = 2;
    c.in[0] = input(table_dtype, table_ne, FILL_UNIFORM, -4.0, 4.0);
    c.in[1] = input(OX_DTYPE_I32, id_shape, FILL_INTEGERS, 0.0, (double)table_ne[1]);
    /* Dequantizing is d * q - m in float: exact up to FMA contraction. */
    c.threshold = tolerance(ox_dtype_is_quantized(table_dtype) ? TOL_ARITH : TOL_EXACT, dst_dtype, 0);
    snprintf(c.shape, sizeof c.shape, "table %s, ids %s", shape_text(table_ne, st, sizeof st),
             shape_text(id_shape, si, sizeof si));
    c.run = run_get_rows;
    c.reference = ref_get_rows;
    return c;
}

op_case op_case_copy(ox_dtype src_dtype, ox_dtype dst_dtype, const int64_t ne[4],
                     int src_transposed)
{
    op_case c = new_case("copy", "copy", dst_dtype, ne);
    snprintf(c.dtype, sizeof c.dtype, "%s>%s", ox_dtype_str(src_dtype), ox_dtype_str(dst_dtype));
    c.n_inputs = 1;
    c.in[0] = src_dtype == OX_DTYPE_I32 ? input(src_dtype, ne, FILL_INTEGERS, -100000.0, 100000.0)
                                        : input(src_dtype, ne, FILL_UNIFORM, -4.0, 4.0);
    c.in[0].transposed = src_transposed;
    c.threshold = tolerance(ox_dtype_is_quantized(src_dtype) ? TOL_ARITH : TOL_EXACT, dst_dtype, 0);
    shape_text(ne, c.shape, sizeof c.shape);
    if (src_transposed) append(c.shape, sizeof c.shape, " (strided)");
    c.run = run_copy;
    c.reference = ref_copy;
    return c;
}

op_case op_case_concat(ox_dtype dtype, const int64_t a_ne[4], int64_t b_size, int dim)
{
    char s[40];
    int64_t b_ne[4], dst_ne[4];
    memcpy(b_ne, a_ne, sizeof b_ne);
    b_ne[dim] = b_size;
    memcpy(dst_ne, a_ne, sizeof dst_ne);
    dst_ne[dim] += b_size;
    op_case c = new_case("concat", "concat", dtype, dst_ne);
    c.kind = dim;
    c.n_inputs = 2;
    c.in[0] = input(dtype, a_ne, FILL_UNIFORM, -4.0, 4.0);
    c.in[1] = input(dtype, b_ne, FILL_UNIFORM, -4.0, 4.0);
    c.threshold = tolerance(TOL_EXACT, dtype, 0);
    snprintf(c.shape, sizeof c.shape, "%s | ", shape_text(a_ne, s, sizeof s));
    append(c.shape, sizeof c.shape, "%s, dim %d", shape_text(b_ne, s, sizeof s), dim);
    c.run = run_concat;
    c.reference = ref_concat;
    return c;
}

op_case op_case_attention(ox_dtype kv_dtype, int64_t D, int64_t Dv, int64_t n_q, int64_t n_kv,
                          int64_t H, int64_t H_kv, int64_t B, int causal, int has_mask)
{
    int64_t q_ne[4] = {D, n_q, H, B}, k_ne[4] = {D, n_kv, H_kv, B};
    int64_t v_ne[4] = {Dv, n_kv, H_kv, B}, mask_ne[4] = {n_kv, n_q, 1, 1};
    int64_t dst_ne[4] = {Dv, n_q, H, B};
    op_case c = new_case("attention", "attention", OX_DTYPE_F32, dst_ne);
    snprintf(c.dtype, sizeof c.dtype, "f32 kv %s", ox_dtype_str(kv_dtype));
    c.n_inputs = 3;
    c.in[0] = input(OX_DTYPE_F32, q_ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[1] = input(kv_dtype, k_ne, FILL_UNIFORM, -1.0, 1.0);
    c.in[2] = input(kv_dtype, v_ne, FILL_UNIFORM, -1.0, 1.0);
    if (has_mask) {
        c.has_mask = 1;
        c.in[c.n_inputs++] = input(OX_DTYPE_F32, mask_ne, FILL_MASK, -2.0, 0.0);
    }
    c.attention.scale = (float)(1.0 / sqrt((double)D));
    c.attention.causal = causal;
    c.threshold = tolerance(TOL_MATH, OX_DTYPE_F32, 0);
    /* Query i sees keys j <= n_kv - n_q + i when causal. */
    double pairs = 0;
    for (int64_t i = 0; i < n_q; i++) {
        int64_t seen = causal ? n_kv - n_q + i + 1 : n_kv;
        pairs += (double)(seen < n_kv ? seen : n_kv);
    }
    c.flops = 2.0 * (double)(D + Dv) * pairs * (double)(H * B);
    snprintf(c.shape, sizeof c.shape, "D%lld n_q %lld n_kv %lld H %lld/%lld", (long long)D,
             (long long)n_q, (long long)n_kv, (long long)H, (long long)H_kv);
    if (Dv != D) append(c.shape, sizeof c.shape, " Dv%lld", (long long)Dv);
    if (B > 1) append(c.shape, sizeof c.shape, " B %lld", (long long)B);
    append(c.shape, sizeof c.shape, "%s%s", causal ? ", causal" : "", has_mask ? ", mask" : "");
    c.run = run_attention;
    c.reference = ref_attention;
    return c;
}

/* ---- the grid ---------------------------------------------------------------------- */

int op_case_list_add(op_case_list *list, const op_case *c)
{
    if (list->count == list->capacity) {
        int capacity = list->capacity ? 2 * list->capacity : 256;
        op_case *grown = realloc(list->cases, (size_t)capacity * sizeof *grown);
        if (!grown) return -1;
        list->cases = grown;
        list->capacity = capacity;
    }
    list->cases[list->count++] = *c;
    return 0;
}

void op_case_list_free(op_case_list *list)
{
    free(list->cases);
    memset(list, 0, sizeof *list);
}

int op_case_matches(const op_case *c, const char *name)
{
    return strcmp(c->op, name) == 0 || strcmp(c->family, name) == 0;
}

static const ox_dtype float_types[] = {OX_DTYPE_F32, OX_DTYPE_F16, OX_DTYPE_BF16};
#define N_FLOAT_TYPES 3

/* Shapes shared by the elementwise and row ops: tiny, odd, not a multiple of
 * any tile, 4-D, rows longer than a work-group, and large (1 Mi elements). */
static const int64_t shape_tiny[4] = {1, 1, 1, 1};
static const int64_t shape_odd[4] = {7, 3, 1, 1};
static const int64_t shape_3d[4] = {65, 33, 3, 1};
static const int64_t shape_4d[4] = {16, 5, 6, 4};
static const int64_t shape_rows[4] = {1000, 5, 2, 1};
static const int64_t shape_long[4] = {4097, 3, 1, 1};
static const int64_t shape_large[4] = {4096, 256, 1, 1};
static const int64_t shape_wide[4] = {16384, 64, 1, 1};

/* Add the cases the macro argument builds; on out of memory return -1. */
#define ADD(expression)                                                  \
    do {                                                                 \
        op_case add_case_ = (expression);                                \
        if (op_case_list_add(list, &add_case_) != 0) return -1;          \
    } while (0)

static int build_elementwise(op_case_list *list, int quick)
{
    const int64_t row[4] = {65, 1, 1, 1}, repeat[4] = {16, 5, 3, 2};
    const int64_t view[4] = {33, 65, 3, 1};
    for (int op = OX_BINARY_ADD; op <= OX_BINARY_DIV; op++)
        for (int t = 0; t < N_FLOAT_TYPES; t++) {
            ox_dtype dt = float_types[t];
            ox_binary_op kind = (ox_binary_op)op;
            if (!quick) ADD(op_case_binary(kind, dt, shape_tiny, shape_tiny, 0));
            if (!quick) ADD(op_case_binary(kind, dt, shape_odd, shape_odd, 0));
            ADD(op_case_binary(kind, dt, shape_3d, row, 0));
            if (!quick) ADD(op_case_binary(kind, dt, shape_3d, shape_tiny, 0));
            ADD(op_case_binary(kind, dt, shape_4d, repeat, 0));
            ADD(op_case_binary(kind, dt, view, view, 1));
            if (!quick) ADD(op_case_binary(kind, dt, shape_large, shape_large, 0));
        }
    for (int t = 0; t < N_FLOAT_TYPES; t++) {
        ADD(op_case_scale(float_types[t], shape_3d, 0.75f, -0.25f));
        if (quick) continue;
        ADD(op_case_scale(float_types[t], shape_tiny, -3.0f, 0.0f));
        ADD(op_case_scale(float_types[t], shape_large, 0.75f, -0.25f));
    }
    for (int t = 0; t < N_FLOAT_TYPES; t++) {
        ADD(op_case_clamp(float_types[t], shape_3d, -0.5f, 0.75f));
        if (quick) continue;
        ADD(op_case_clamp(float_types[t], shape_tiny, -0.5f, 0.75f));
        ADD(op_case_clamp(float_types[t], shape_large, -0.5f, 0.75f));
    }
    for (int op = 0; op < OX_UNARY_COUNT; op++)
        for (int t = 0; t < N_FLOAT_TYPES; t++) {
            ox_dtype dt = float_types[t];
            ox_unary_op kind = (ox_unary_op)op;
            ADD(op_case_unary(kind, dt, shape_3d));
            if (quick) continue;
            ADD(op_case_unary(kind, dt, shape_odd));
            ADD(strided(op_case_unary(kind, dt, shape_3d)));
            ADD(op_case_unary(kind, dt, shape_large));
        }
    /* gated units (GEGLU, SwiGLU) */
    static const ox_unary_op acts[] = {OX_UNARY_GELU_TANH, OX_UNARY_SILU, OX_UNARY_GELU,
                                       OX_UNARY_GELU_TANH_F16};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
        for (int t = 0; t < N_FLOAT_TYPES; t++) {
            ADD(op_case_glu(acts[a], float_types[t], shape_3d));
            if (!quick) ADD(op_case_glu(acts[a], float_types[t], shape_odd));
        }
    return 0;
}

static int build_rows(op_case_list *list, int quick)
{
    const int64_t masked[4] = {37, 6, 2, 1};
    const int64_t *const norm_shapes[] = {shape_rows, shape_tiny, shape_odd, shape_long,
                                          shape_large};
    const int n_norm_shapes = quick ? 1 : 5;
    for (int op = OX_REDUCE_SUM; op <= OX_REDUCE_ARGMAX; op++)
        for (int t = 0; t < N_FLOAT_TYPES; t++) {
            ox_dtype dt = float_types[t];
            ox_reduce_op kind = (ox_reduce_op)op;
            ADD(op_case_reduce(kind, dt, shape_odd));
            ADD(op_case_reduce(kind, dt, shape_long));
            if (quick) continue;
            ADD(op_case_reduce(kind, dt, shape_tiny));
            ADD(op_case_reduce(kind, dt, shape_rows));
            ADD(strided(op_case_reduce(kind, dt, shape_3d)));
            ADD(op_case_reduce(kind, dt, shape_wide));
        }
    /* softmax: plain, masked (F32 and F16 masks, repeating, a fully masked
     * row), scaled. */
    for (int t = 0; t < N_FLOAT_TYPES; t++) {
        ox_dtype dt = float_types[t];
        ADD(op_case_softmax(dt, shape_rows, -1, 0, 0, 1.0f));
        ADD(op_case_softmax(dt, masked, OX_DTYPE_F32, 3, 1, 0.125f));
        ADD(op_case_softmax(dt, shape_rows, OX_DTYPE_F16, 5, 0, 1.0f));
        if (quick) continue;
        ADD(op_case_softmax(dt, shape_tiny, -1, 0, 0, 1.0f));
        ADD(op_case_softmax(dt, shape_odd, -1, 0, 0, 0.5f));
        ADD(op_case_softmax(dt, shape_long, -1, 0, 0, 1.0f));
        ADD(op_case_softmax(dt, masked, OX_DTYPE_F32, 6, 0, 1.0f));
        ADD(strided(op_case_softmax(dt, shape_3d, -1, 0, 0, 1.0f)));
        ADD(op_case_softmax(dt, shape_wide, -1, 0, 0, 1.0f));
    }
    for (int t = 0; t < N_FLOAT_TYPES; t++) {
        ox_dtype dt = float_types[t];
        ADD(op_case_log_softmax(dt, shape_rows));
        if (quick) continue;
        ADD(op_case_log_softmax(dt, shape_odd));
        ADD(op_case_log_softmax(dt, shape_long));
        ADD(strided(op_case_log_softmax(dt, shape_3d)));
        ADD(op_case_log_softmax(dt, shape_wide));
    }
    /* rms_norm without and with weight; layer_norm with neither, weight, both. */
    for (int t = 0; t < N_FLOAT_TYPES; t++) {
        ox_dtype dt = float_types[t];
        for (int s = 0; s < n_norm_shapes; s++) {
            ADD(op_case_norm(1, dt, norm_shapes[s], 0, 0, 1e-6f));
            ADD(op_case_norm(1, dt, norm_shapes[s], 1, 0, 1e-6f));
        }
        if (!quick) ADD(strided(op_case_norm(1, dt, shape_3d, 1, 0, 1e-6f)));
    }
    for (int t = 0; t < N_FLOAT_TYPES; t++) {
        ox_dtype dt = float_types[t];
        for (int s = 0; s < n_norm_shapes; s++) {
            ADD(op_case_norm(0, dt, norm_shapes[s], 0, 0, 1e-5f));
            ADD(op_case_norm(0, dt, norm_shapes[s], 1, 0, 1e-5f));
            ADD(op_case_norm(0, dt, norm_shapes[s], 1, 1, 1e-5f));
        }
        if (!quick) ADD(strided(op_case_norm(0, dt, shape_3d, 1, 1, 1e-5f)));
    }
    /* a decoder's residual step: x and the next norm, with and without a
     * norm of the residual branch; a row of 640 (Gemma), one longer than
     * the CPU's tiles, several rows */
    static const int64_t add_norm_shapes[][2] = {{640, 1}, {640, 7}, {3000, 3}, {17, 5}};
    for (int i = 0; i < (quick ? 1 : 4); i++)
        for (int dw = 0; dw < 2; dw++)
            for (int x = 0; x < 2; x++)
                ADD(op_case_add_rms_norm(add_norm_shapes[i][0], add_norm_shapes[i][1], dw, x));
    return 0;
}

static int build_rope(op_case_list *list, int quick)
{
    static const struct {
        int64_t ne[4];
        ox_rope_params params;
        int quick;
    } cases[] = {
        {{64, 4, 7, 1}, {OX_ROPE_NORMAL, 64, 10000.0f, 1.0f}, 1},
        {{64, 4, 7, 1}, {OX_ROPE_NEOX, 64, 10000.0f, 1.0f}, 1},
        {{128, 2, 5, 2}, {OX_ROPE_NEOX, 32, 1000000.0f, 0.25f}, 1},
        {{128, 2, 5, 2}, {OX_ROPE_NORMAL, 96, 10000.0f, 0.5f}, 0},
        {{10, 3, 3, 1}, {OX_ROPE_NORMAL, 6, 10000.0f, 1.0f}, 0},
        {{10, 3, 3, 1}, {OX_ROPE_NEOX, 6, 500.0f, 2.0f}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (quick && !cases[i].quick) continue;
        for (int t = 0; t < N_FLOAT_TYPES; t++)
            ADD(op_case_rope(float_types[t], cases[i].ne, &cases[i].params));
    }
    /* In place (dst == a): each output pair must be computed from the
     * input before either element is overwritten. */
    for (int mode = 0; mode < 2; mode++) {
        static const int64_t ne[4] = {64, 4, 7, 1};
        ox_rope_params p = {mode ? OX_ROPE_NEOX : OX_ROPE_NORMAL, 64, 10000.0f, 1.0f};
        op_case c = op_case_rope(OX_DTYPE_F32, ne, &p);
        c.kind = 1;
        append(c.shape, sizeof c.shape, ", in place");
        ADD(c);
        /* the angles given (ox_rope_table), as a model's forward pass does */
        c = op_case_rope(mode ? OX_DTYPE_F16 : OX_DTYPE_F32, ne, &p);
        c.table = 1;
        append(c.shape, sizeof c.shape, ", angle table");
        ADD(c);
    }
    /* queries and keys in one op, each head normalised first (Gemma 3,
     * Qwen 3) or not (Llama), keys into an F16/BF16 cache */
    static const struct {
        int64_t D, Hq, Hkv, T;
        int weight;
        ox_rope_params params;
    } qk[] = {
        {256, 4, 1, 7, 1, {OX_ROPE_NEOX, 256, 1000000.0f, 1.0f}},
        {64, 8, 2, 1, 0, {OX_ROPE_NORMAL, 64, 10000.0f, 1.0f}},
        {64, 8, 2, 5, 1, {OX_ROPE_NORMAL, 32, 10000.0f, 0.5f}},
        {10, 3, 3, 3, 1, {OX_ROPE_NEOX, 6, 500.0f, 2.0f}},
    };
    for (size_t i = 0; i < sizeof qk / sizeof qk[0]; i++) {
        if (quick && i == 3) continue;
        ADD(op_case_rope_qk(qk[i].D, qk[i].Hq, qk[i].Hkv, qk[i].T, qk[i].weight, 0,
                            OX_DTYPE_F32, &qk[i].params));
        for (int t = 0; t < N_FLOAT_TYPES; t++)
            ADD(op_case_rope_qk(qk[i].D, qk[i].Hq, qk[i].Hkv, qk[i].T, qk[i].weight, 1,
                                float_types[t], &qk[i].params));
        if (i < 2) { /* Gemma's and Llama's, the keys into an F16 cache, angles given */
            op_case c = op_case_rope_qk(qk[i].D, qk[i].Hq, qk[i].Hkv, qk[i].T, qk[i].weight, 1,
                                        OX_DTYPE_F16, &qk[i].params);
            c.table = 1;
            append(c.shape, sizeof c.shape, ", angle table");
            ADD(c);
        }
    }
    return 0;
}

static int build_matmul(op_case_list *list, int quick)
{
    /* M, N, K: odd, tiny, a single column, matrix-vector, not a multiple of
     * the tiles, a whole grid of tiles. */
    static const int64_t shapes[][3] = {{17, 33, 65},  {1, 1, 1},      {100, 1, 257},
                                        {1, 64, 4096}, {130, 70, 200}, {256, 256, 256}};
    static const int64_t quick_shapes[][3] = {{17, 33, 65}, {100, 1, 257}, {1, 64, 1024}};
    static const ox_dtype pairs[][2] = {
        {OX_DTYPE_F32, OX_DTYPE_F32},  {OX_DTYPE_F16, OX_DTYPE_F32},  {OX_DTYPE_BF16, OX_DTYPE_F32},
        {OX_DTYPE_F32, OX_DTYPE_F16},  {OX_DTYPE_F32, OX_DTYPE_BF16}, {OX_DTYPE_F16, OX_DTYPE_F16},
        {OX_DTYPE_BF16, OX_DTYPE_BF16},
    };
    static const unsigned transposes[] = {OX_MATMUL_TRANS_A, OX_MATMUL_TRANS_B,
                                          OX_MATMUL_TRANS_A | OX_MATMUL_TRANS_B};
    static const int64_t batch_1[2] = {1, 1}, batch_3x2[2] = {3, 2}, batch_3x1[2] = {3, 1},
                         batch_6x2[2] = {6, 2};
    const int n_pairs = (int)(sizeof pairs / sizeof pairs[0]);
    const ox_dtype f32 = OX_DTYPE_F32;

    if (quick) {
        for (int p = 0; p < n_pairs; p++)
            ADD(op_case_matmul(pairs[p][0], pairs[p][1], 17, 33, 65, 0, NULL, NULL));
        for (int f = 0; f < 3; f++)
            ADD(op_case_matmul(f32, f32, 17, 33, 65, transposes[f], NULL, NULL));
        for (int s = 1; s < 3; s++) {
            const int64_t *m = quick_shapes[s];
            ADD(op_case_matmul(f32, f32, m[0], m[1], m[2], 0, NULL, NULL));
            ADD(op_case_matmul(f32, f32, m[0], m[1], m[2], OX_MATMUL_TRANS_B, NULL, NULL));
        }
        /* Matrix-vector with 16-bit weights stored as rows of K (b^T). */
        ADD(op_case_matmul(f32, OX_DTYPE_F16, 1, 64, 1024, OX_MATMUL_TRANS_B, NULL, NULL));
        ADD(op_case_matmul(f32, f32, 17, 33, 65, 0, batch_1, batch_3x2));
        ADD(op_case_matmul(f32, f32, 17, 33, 65, OX_MATMUL_TRANS_B, batch_3x1, batch_6x2));
        ADD(op_case_matmul(f32, f32, 40, 70, 300, OX_MATMUL_TRANS_B, batch_3x1, batch_6x2));
        return 0;
    }
    for (int p = 0; p < n_pairs; p++) {
        ox_dtype a = pairs[p][0], b = pairs[p][1];
        for (int s = 0; s < 6; s++)
            ADD(op_case_matmul(a, b, shapes[s][0], shapes[s][1], shapes[s][2], 0, NULL, NULL));
        /* Every transpose: on five shapes for F32, on two for the others. */
        for (int f = 0; f < 3; f++)
            for (int s = 0; s < 5; s++) {
                if (p > 0 && s != 0 && s != 3) continue;
                ADD(op_case_matmul(a, b, shapes[s][0], shapes[s][1], shapes[s][2], transposes[f],
                                   NULL, NULL));
            }
        /* Batches: one a for every b, and a repeating over b in dimensions 2 and 3. */
        ADD(op_case_matmul(a, b, 17, 33, 65, 0, batch_1, batch_3x2));
        ADD(op_case_matmul(a, b, 17, 33, 65, OX_MATMUL_TRANS_B, batch_3x1, batch_6x2));
        /* ... large enough for whole tiles and slices in every batch, besides
         * the partial ones */
        ADD(op_case_matmul(a, b, 40, 70, 300, 0, batch_1, batch_3x2));
        ADD(op_case_matmul(a, b, 40, 70, 300, OX_MATMUL_TRANS_B, batch_3x1, batch_6x2));
    }
    /* One input, several weights (a layer's q, k, v): mixed quantized types
     * that round the input differently (per 32, per 256), and float ones;
     * one token and a few. */
    static const ox_dtype mixed[3] = {OX_DTYPE_Q5_0, OX_DTYPE_Q8_0, OX_DTYPE_Q4_K};
    static const ox_dtype floats[2] = {OX_DTYPE_F32, OX_DTYPE_F16};
    static const int64_t n3[3] = {64, 32, 48}, n2[2] = {40, 24};
    ADD(op_case_matmul_many(3, mixed, n3, 1, 512));
    ADD(op_case_matmul_many(3, mixed, n3, 5, 256));
    ADD(op_case_matmul_many(2, floats, n2, 3, 128));
    return 0;
}

/* Quantized weights (GGUF block types): matrix-vector and small-batch
 * products with b stored as rows of K, embedding lookups, dequantizing
 * copies. */
static const ox_dtype quant_types[] = {OX_DTYPE_Q4_0, OX_DTYPE_Q4_1, OX_DTYPE_Q5_0, OX_DTYPE_Q5_1,
                                       OX_DTYPE_Q8_0, OX_DTYPE_Q4_K, OX_DTYPE_Q5_K, OX_DTYPE_Q6_K};

static op_case prepared_if(int prepared, op_case c)
{
    return prepared ? op_case_prepared(c) : c;
}

static int build_quant(op_case_list *list, int quick)
{
    const ox_dtype f32 = OX_DTYPE_F32;
    static const int64_t table[4] = {512, 37, 1, 1}, long_table[4] = {6400, 17, 1, 1};
    static const int64_t ids[3] = {11, 1, 1};
    static const int64_t rows[4] = {256, 9, 2, 1};
    for (size_t i = 0; i < sizeof quant_types / sizeof quant_types[0]; i++) {
        ox_dtype q = quant_types[i];
        /* each product also with its weights prepared, as a model's are (on
         * the CPU: the packed rows' kernels; 33, 17, 65 and 37 rows leave a
         * partial group of eight in the file's layout) */
        const unsigned tb = OX_MATMUL_TRANS_B;
        for (int p = 0; p < 2; p++) {
            ADD(prepared_if(p, op_case_matmul(f32, q, 1, 33, 512, tb, NULL, NULL)));
            ADD(prepared_if(p, op_case_matmul(f32, q, 5, 17, 256, tb, NULL, NULL)));
            if (quick) continue;
            ADD(prepared_if(p, op_case_matmul(f32, q, 1, 130, 2048, tb, NULL, NULL)));
            ADD(prepared_if(p, op_case_matmul(f32, q, 70, 65, 768, tb, NULL, NULL)));
            ADD(prepared_if(p, op_case_get_rows(q, f32, table, ids)));
            /* rows long enough that the packed layout cuts them in chunks */
            ADD(prepared_if(p, op_case_matmul(f32, q, 3, 40, 6400, tb, NULL, NULL)));
            ADD(prepared_if(p, op_case_get_rows(q, f32, long_table, ids)));
        }
        if (quick) continue;
        ADD(op_case_copy(q, f32, rows, 0));
        ADD(op_case_copy(q, OX_DTYPE_F16, rows, 0));
    }
    return 0;
}

static int build_movement(op_case_list *list, int quick)
{
    static const ox_dtype get_rows_types[][2] = {
        {OX_DTYPE_F32, OX_DTYPE_F32}, {OX_DTYPE_F16, OX_DTYPE_F32}, {OX_DTYPE_F16, OX_DTYPE_F16},
        {OX_DTYPE_BF16, OX_DTYPE_F32}, {OX_DTYPE_BF16, OX_DTYPE_BF16},
    };
    static const int64_t table[4] = {65, 100, 1, 1}, ids[3] = {37, 1, 1};
    static const int64_t batch_table[4] = {16, 10, 2, 1}, batch_ids[3] = {5, 4, 3};
    for (size_t i = 0; i < sizeof get_rows_types / sizeof get_rows_types[0]; i++) {
        ADD(op_case_get_rows(get_rows_types[i][0], get_rows_types[i][1], table, ids));
        if (!quick)
            ADD(op_case_get_rows(get_rows_types[i][0], get_rows_types[i][1], batch_table,
                                 batch_ids));
    }

    /* src, dst, strided source */
    static const struct {
        ox_dtype src, dst;
        int strided;
    } copies[] = {
        {OX_DTYPE_F32, OX_DTYPE_F32, 0},  {OX_DTYPE_F32, OX_DTYPE_F16, 0},
        {OX_DTYPE_F16, OX_DTYPE_F32, 0},  {OX_DTYPE_F32, OX_DTYPE_BF16, 0},
        {OX_DTYPE_BF16, OX_DTYPE_F32, 0}, {OX_DTYPE_F16, OX_DTYPE_BF16, 0},
        {OX_DTYPE_I32, OX_DTYPE_I32, 0},  {OX_DTYPE_F32, OX_DTYPE_F32, 1},
        {OX_DTYPE_F16, OX_DTYPE_F16, 1},  {OX_DTYPE_BF16, OX_DTYPE_F32, 1},
    };
    const int64_t view[4] = {33, 65, 3, 1};
    for (size_t i = 0; i < sizeof copies / sizeof copies[0]; i++) {
        ox_dtype src = copies[i].src, dst = copies[i].dst;
        ADD(op_case_copy(src, dst, copies[i].strided ? view : shape_3d, copies[i].strided));
        if (quick) continue;
        ADD(op_case_copy(src, dst, shape_tiny, 0));
        ADD(op_case_copy(src, dst, shape_large, copies[i].strided));
    }

    static const int64_t parts[4] = {5, 4, 3, 2};
    for (int t = 0; t < N_FLOAT_TYPES; t++)
        for (int dim = 0; dim < 4; dim++) {
            if (quick && t > 0 && dim != 2 * t - 2) continue;
            ADD(op_case_concat(float_types[t], parts, 3, dim));
        }
    if (!quick) ADD(op_case_concat(OX_DTYPE_F32, shape_3d, 7, 1));
    return 0;
}

/* An attention case whose keys and values are transposed views (element
 * strides along the head: the kernels' general loads). */
static op_case strided_kv(op_case c)
{
    c.in[1].transposed = 1;
    c.in[2].transposed = 1;
    append(c.shape, sizeof c.shape, " (strided kv)");
    return c;
}

/* The same through ox_attention_paged, pages of `page` positions. */
static op_case paged(op_case c, int page)
{
    c.op = "attention_paged";
    c.kind = page;
    c.run = run_attention_paged;
    append(c.shape, sizeof c.shape, " (pages of %d)", page);
    return c;
}

static int build_attention(op_case_list *list, int quick)
{
    enum { F32 = 1, F16 = 2, BF16 = 4 }; /* cache dtypes */
    static const struct {
        int64_t D, Dv, n_q, n_kv, H, H_kv, B;
        int causal, mask, strided;
        unsigned types, quick; /* cache dtypes checked; those of --quick */
    } cases[] = {
        {64, 64, 33, 33, 4, 2, 1, 1, 0, 0, F32 | F16, F16},      /* prefill, GQA 2:1 */
        {128, 128, 17, 17, 8, 1, 1, 1, 1, 0, F32 | F16, 0},      /* prefill, one kv head, mask */
        {128, 128, 1, 37, 8, 1, 1, 0, 1, 0, F32 | F16, F16},     /* decode, mask */
        {64, 64, 1, 37, 4, 2, 2, 0, 0, 0, F32 | F16, F32},       /* decode, batch 2 */
        {64, 32, 5, 37, 4, 4, 1, 1, 0, 0, F32 | F16, F32},       /* a chunk of queries after a cache */
        {128, 128, 64, 64, 4, 2, 1, 1, 1, 0, F32 | F16, 0},      /* larger prefill */
        /* long caches: 4 query heads per kv head, and one kv head for all
         * (so few work-groups that the keys are split over several), key
         * counts no block size divides */
        {128, 128, 1, 4096, 32, 8, 1, 0, 0, 0, F16 | BF16, F16},
        {128, 128, 1, 4133, 4, 1, 1, 0, 1, 0, F32 | F16, F16},
        {128, 64, 1, 1000, 8, 8, 2, 0, 0, 0, F16, 0},            /* one head per kv head, Dv < D */
        {80, 80, 3, 517, 8, 2, 1, 1, 0, 0, F16 | BF16, BF16},    /* odd head size, a few queries */
        {256, 256, 1, 600, 8, 4, 1, 0, 0, 0, F16, 0},            /* head size 256 */
        /* prompts of more query rows than a block, with and without a cache */
        {64, 64, 200, 200, 8, 2, 1, 1, 1, 0, F16 | BF16, F16},
        {96, 64, 130, 300, 4, 4, 1, 1, 0, 0, F32 | F16, F32},
        {256, 256, 40, 40, 4, 2, 1, 1, 0, 0, F16, 0},
        {64, 64, 50, 70, 4, 1, 1, 0, 0, 0, F32, 0},              /* not causal, no mask */
        {64, 64, 9, 77, 4, 2, 1, 1, 1, 1, F32 | F16, F32},       /* strided keys and values */
        {64, 64, 1, 300, 4, 2, 1, 0, 0, 1, F16, 0},
    };
    static const ox_dtype kv_types[] = {OX_DTYPE_F32, OX_DTYPE_F16, OX_DTYPE_BF16};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 3; t++) {
            unsigned bit = 1u << t;
            if (!(cases[i].types & bit) || (quick && !(cases[i].quick & bit))) continue;
            op_case c = op_case_attention(kv_types[t], cases[i].D, cases[i].Dv, cases[i].n_q,
                                          cases[i].n_kv, cases[i].H, cases[i].H_kv, cases[i].B,
                                          cases[i].causal, cases[i].mask);
            ADD(cases[i].strided ? strided_kv(c) : c);
        }
    /* paged caches: decode past several pages, a chunk after a cache, a
     * prompt (the tiled kernels), pages of one position */
    static const struct {
        int64_t D, n_q, n_kv, H, H_kv;
        int causal, mask, page;
        ox_dtype kv;
    } pages[] = {
        {128, 1, 300, 8, 2, 0, 1, 64, OX_DTYPE_F16},
        {64, 5, 77, 4, 2, 1, 0, 16, OX_DTYPE_F32},
        {64, 40, 100, 4, 1, 1, 1, 32, OX_DTYPE_BF16},
        {64, 1, 19, 4, 4, 0, 0, 1, OX_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        if (quick && i > 1) continue;
        ADD(paged(op_case_attention(pages[i].kv, pages[i].D, pages[i].D, pages[i].n_q,
                                    pages[i].n_kv, pages[i].H, pages[i].H_kv, 1, pages[i].causal,
                                    pages[i].mask),
                  pages[i].page));
    }
    return 0;
}

#undef ADD

int op_cases_build(op_case_list *list, int quick)
{
    if (build_elementwise(list, quick) || build_rows(list, quick) || build_rope(list, quick) ||
        build_matmul(list, quick) || build_quant(list, quick) || build_movement(list, quick) ||
        build_attention(list, quick))
        return -1;
    return 0;
}

/* ---- inputs -------------------------------------------------------------------------- */

/* splitmix64: small, fast, and good enough for test data. */
typedef struct rng {
    uint64_t state;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* FNV-1a over the case's name, dtype and shape: the same inputs whatever
 * else runs, so a case can be rerun alone with --op. */
static uint64_t case_seed(const op_case *c)
{
    const char *parts[] = {c->op, c->dtype, c->shape};
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t p = 0; p < 3; p++)
        for (const char *s = parts[p]; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static double round_to(ox_dtype dtype, double x)
{
    switch (dtype) {
    case OX_DTYPE_F16: return ox_f16_to_f32(ox_f32_to_f16((float)x));
    case OX_DTYPE_BF16: return ox_bf16_to_f32(ox_f32_to_bf16((float)x));
    case OX_DTYPE_I32: return (double)(int32_t)x;
    default: return (double)(float)x;
    }
}

static void store(ox_dtype dtype, void *bytes, int64_t i, double x)
{
    switch (dtype) {
    case OX_DTYPE_F16: ((uint16_t *)bytes)[i] = ox_f32_to_f16((float)x); break;
    case OX_DTYPE_BF16: ((uint16_t *)bytes)[i] = ox_f32_to_bf16((float)x); break;
    case OX_DTYPE_I32: ((int32_t *)bytes)[i] = (int32_t)x; break;
    default: ((float *)bytes)[i] = (float)x; break;
    }
}

static double load(ox_dtype dtype, const void *bytes, int64_t i)
{
    switch (dtype) {
    case OX_DTYPE_F16: return ox_f16_to_f32(((const uint16_t *)bytes)[i]);
    case OX_DTYPE_BF16: return ox_bf16_to_f32(((const uint16_t *)bytes)[i]);
    case OX_DTYPE_I32: return ((const int32_t *)bytes)[i];
    default: return ((const float *)bytes)[i];
    }
}

/* One input on the host: bytes as the device memory holds them, and the
 * same values in row-major order of the logical shape for the reference. */
typedef struct host_input {
    void *bytes;
    size_t size;
    ox_ref_tensor ref; /* data (or idata for I32); NULL when not wanted */
} host_input;

static void host_inputs_free(host_input *h, int n)
{
    for (int i = 0; i < n; i++) {
        free(h[i].bytes);
        free(h[i].ref.data);
        free(h[i].ref.idata);
    }
}

static double draw(const op_input *in, rng *r, int64_t i0, int64_t row, int64_t peak)
{
    switch (in->fill) {
    case FILL_INTEGERS: return floor(rng_uniform(r, in->lo, in->hi));
    case FILL_UNIQUE_MAX: return i0 == peak ? in->hi + 1.0 : rng_uniform(r, in->lo, in->hi);
    case FILL_MASK:
    case FILL_MASK_EMPTY: {
        double x = rng_uniform(r, in->lo, in->hi);
        int masked = i0 != 0 && rng_next(r) % 4 == 0;
        if (in->fill == FILL_MASK_EMPTY && row == 0) masked = 1;
        return masked ? -INFINITY : x;
    }
    default: return rng_uniform(r, in->lo, in->hi);
    }
}

/* A quantized input: values drawn as floats, quantized row by row with the
 * library's quantizer, and the reference gets the dequantized values, so
 * only the op's arithmetic is compared. Returns 0, or -1. */
static int quant_input_make(const op_input *in, rng *r, int with_reference, host_input *h)
{
    int64_t n = count(in->ne), ne0 = in->ne[0], rows = n / ne0;
    size_t row_bytes = ox_dtype_row_size(in->dtype, ne0);
    float *values = malloc((size_t)n * sizeof *values);
    h->size = (size_t)rows * row_bytes;
    h->bytes = malloc(h->size);
    if (!values || !h->bytes || row_bytes == 0) {
        free(values);
        return -1;
    }
    for (int64_t e = 0; e < n; e++) values[e] = (float)draw(in, r, e % ne0, e / ne0, 0);
    for (int64_t row = 0; row < rows; row++) {
        char *bytes = (char *)h->bytes + (size_t)row * row_bytes;
        if (ox_row_from_f32(in->dtype, values + row * ne0, bytes, ne0) != OX_OK ||
            ox_row_to_f32(in->dtype, bytes, values + row * ne0, ne0) != OX_OK) {
            free(values);
            return -1;
        }
    }
    if (with_reference) {
        memcpy(h->ref.ne, in->ne, sizeof h->ref.ne);
        h->ref.data = malloc((size_t)n * sizeof(double));
        if (!h->ref.data) {
            free(values);
            return -1;
        }
        for (int64_t e = 0; e < n; e++) h->ref.data[e] = values[e];
    }
    free(values);
    return 0;
}

/* Fill h with c's inputs; with_reference: also the reference copies.
 * Returns 0, or -1 out of memory. */
static int host_inputs_make(const op_case *c, int with_reference, host_input *h)
{
    rng r = {case_seed(c)};
    memset(h, 0, (size_t)OP_MAX_INPUTS * sizeof *h);
    for (int i = 0; i < c->n_inputs; i++) {
        const op_input *in = &c->in[i];
        const int64_t *ne = in->ne;
        int64_t n = count(ne), peak = 0;
        if (ox_dtype_is_quantized(in->dtype)) {
            if (quant_input_make(in, &r, with_reference, &h[i]) != 0) return -1;
            continue;
        }
        h[i].size = (size_t)n * ox_dtype_size(in->dtype);
        h[i].bytes = malloc(h[i].size);
        if (!h[i].bytes) return -1;
        if (with_reference) {
            memcpy(h[i].ref.ne, ne, sizeof h[i].ref.ne);
            if (in->dtype == OX_DTYPE_I32) h[i].ref.idata = malloc((size_t)n * sizeof(int32_t));
            else h[i].ref.data = malloc((size_t)n * sizeof(double));
            if (!h[i].ref.idata && !h[i].ref.data) return -1;
        }
        for (int64_t e = 0; e < n; e++) {
            int64_t i0 = e % ne[0], row = e / ne[0];
            if (i0 == 0) peak = (int64_t)(rng_next(&r) % (uint64_t)ne[0]);
            double x = round_to(in->dtype, draw(in, &r, i0, row, peak));
            /* A transposed view's memory holds dimensions 0 and 1 swapped. */
            int64_t at = e;
            if (in->transposed) {
                int64_t i1 = row % ne[1], outer = row / ne[1];
                at = i1 + ne[1] * (i0 + ne[0] * outer);
            }
            store(in->dtype, h[i].bytes, at, x);
            if (h[i].ref.idata) h[i].ref.idata[e] = (int32_t)x;
            else if (h[i].ref.data) h[i].ref.data[e] = x;
        }
    }
    return 0;
}

/* ---- running on a device ---------------------------------------------------------- */

/* A case set up on one device: its queue, inputs and output. */
typedef struct device_run {
    ox_context *ctx;
    ox_queue *queue;
    ox_buffer *buffers[OP_MAX_INPUTS + 1];
    ox_tensor in[OP_MAX_INPUTS];
    ox_tensor dst;
} device_run;

static void device_run_free(device_run *r)
{
    ox_queue_free(r->queue);
    for (int i = 0; i < OP_MAX_INPUTS + 1; i++) ox_buffer_free(r->buffers[i]);
    memset(r, 0, sizeof *r);
}

/* Allocate and upload the inputs (a transposed input as a view of memory
 * written in its storage order, so no op takes part in the upload), and
 * fill the output with 0xff bytes (NaN, or -1 for I32) so that elements an
 * op does not write show. */
static ox_status device_run_setup(device_run *r, ox_device *device, const op_case *c,
                                  const host_input *h)
{
    static const unsigned char poison = 0xff;
    memset(r, 0, sizeof *r);
    r->ctx = ox_device_context(device);
    ox_status s = ox_queue_create(device, &r->queue);
    for (int i = 0; s == OX_OK && i < c->n_inputs; i++) {
        const op_input *in = &c->in[i];
        ox_tensor t;
        int swap = in->transposed;
        s = ox_tensor_alloc(device, in->dtype, in->ne[swap ? 1 : 0], in->ne[swap ? 0 : 1],
                            in->ne[2], in->ne[3], &t);
        if (s != OX_OK) break;
        r->buffers[i] = t.buffer;
        s = ox_tensor_write(&t, h[i].bytes, h[i].size);
        r->in[i] = swap ? ox_tensor_transpose(&t) : t;
    }
    if (s == OX_OK)
        s = ox_tensor_alloc(device, c->out_dtype, c->out_ne[0], c->out_ne[1], c->out_ne[2],
                            c->out_ne[3], &r->dst);
    if (s == OX_OK) {
        r->buffers[OP_MAX_INPUTS] = r->dst.buffer;
        size_t size = (size_t)count(c->out_ne) * ox_dtype_size(c->out_dtype);
        s = ox_buffer_fill(r->dst.buffer, 0, size, &poison, 1);
    }
    return s;
}

static ox_status device_run_call(device_run *r, const op_case *c)
{
    ox_status s = c->run(r->queue, c, &r->dst, r->in);
    if (s == OX_OK) s = ox_queue_finish(r->queue);
    return s;
}

/* Up to max_runs calls, stopping once `budget` seconds were spent. */
static ox_status device_run_time(device_run *r, const op_case *c, int max_runs, double budget,
                                 double *best, int *runs)
{
    double start = cli_seconds();
    *best = INFINITY;
    *runs = 0;
    for (int i = 0; i < max_runs; i++) {
        double t0 = cli_seconds();
        ox_status s = device_run_call(r, c);
        double t1 = cli_seconds();
        if (s != OX_OK) return s;
        if (t1 - t0 < *best) *best = t1 - t0;
        ++*runs;
        if (t1 - start >= budget) break;
    }
    return OX_OK;
}

static ox_status device_run_read(device_run *r, const op_case *c, void *bytes)
{
    size_t size = (size_t)count(c->out_ne) * ox_dtype_size(c->out_dtype);
    return ox_tensor_read(&r->dst, bytes, size);
}

/* "what on DEVICE: STATUS: message" into detail. */
static void describe_failure(char *detail, size_t size, const char *what, ox_device *device,
                             ox_status status)
{
    ox_device_info info = {.struct_size = sizeof info};
    const char *message = ox_errmsg(ox_device_context(device));
    if (ox_device_get_info(device, &info) != OX_OK) snprintf(info.id, sizeof info.id, "?");
    snprintf(detail, size, "%s on %s: %s: %s", what, info.id, ox_status_name(status),
             message && message[0] ? message : ox_status_str(status));
}

/* Bytes of a tensor of `dtype` and shape ne: rows of blocks for the
 * quantized types (ox_dtype_size is a block's size there). */
static double tensor_bytes(ox_dtype dtype, const int64_t ne[4])
{
    return (double)ox_dtype_row_size(dtype, ne[0]) * (double)(count(ne) / ne[0]);
}

double op_case_bytes(const op_case *c)
{
    double bytes = tensor_bytes(c->out_dtype, c->out_ne);
    for (int i = 0; i < c->n_inputs; i++) bytes += tensor_bytes(c->in[i].dtype, c->in[i].ne);
    return bytes;
}

ox_status op_case_time(const op_case *c, ox_device *device, int max_runs, double budget,
                       double *best, int *runs, char *error, size_t error_size)
{
    host_input h[OP_MAX_INPUTS];
    device_run r;
    ox_status s = OX_ERR_OUT_OF_MEMORY;

    memset(&r, 0, sizeof r);
    *best = 0;
    *runs = 0;
    error[0] = '\0';
    if (host_inputs_make(c, 0, h) != 0) {
        snprintf(error, error_size, "out of host memory for the inputs");
        goto out_free_inputs;
    }
    s = device_run_setup(&r, device, c, h);
    if (s != OX_OK) {
        describe_failure(error, error_size, "setup", device, s);
        goto out_free_run;
    }
    s = device_run_call(&r, c); /* warm-up: compiles kernels, maps pages */
    if (s == OX_OK) s = device_run_time(&r, c, max_runs, budget, best, runs);
    if (s != OX_OK) describe_failure(error, error_size, c->op, device, s);
out_free_run:
    device_run_free(&r);
out_free_inputs:
    host_inputs_free(h, c->n_inputs);
    return s;
}

/* ---- comparison ---------------------------------------------------------------------- */

static void fail(op_result *result, const char *format, ...) CLI_PRINTF(2, 3);

static void fail(op_result *result, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(result->detail, sizeof result->detail, format, args);
    va_end(args);
    result->passed = 0;
}

/* "[i0,i1,i2,i3]" of flat element e of shape ne. */
static const char *index_text(const int64_t ne[4], int64_t e, char *buffer, size_t size)
{
    int64_t i[4];
    for (int d = 0; d < 4; d++) {
        i[d] = e % ne[d];
        e /= ne[d];
    }
    char text[96]; /* four 20-digit numbers fit */
    snprintf(text, sizeof text, "[%lld,%lld,%lld,%lld]", (long long)i[0], (long long)i[1],
             (long long)i[2], (long long)i[3]);
    size_t n = strlen(text);
    if (n >= size) n = size - 1;
    memcpy(buffer, text, n);
    buffer[n] = '\0';
    return buffer;
}

static void compare(const op_case *c, const double *got, const double *want, op_result *result)
{
    int64_t n = count(c->out_ne), worst = -1, bad = -1, n_bad = 0, n_differ = 0;
    double max_err = 0;
    char where[64];

    for (int64_t e = 0; e < n; e++) {
        int both_nan = isnan(got[e]) && isnan(want[e]);
        if (!isfinite(want[e]) || !isfinite(got[e])) {
            /* Non-finite values must match the reference exactly. */
            if (got[e] != want[e] && !both_nan && n_bad++ == 0) bad = e;
            continue;
        }
        double err = fabs(got[e] - want[e]);
        if (err > 0) n_differ++;
        if (err > max_err) {
            max_err = err;
            worst = e;
        }
    }
    if (c->out_dtype == OX_DTYPE_I32) result->nmse = (double)(n_differ + n_bad) / (double)n;
    else result->nmse = ox_ref_nmse(got, want, n);
    result->max_abs_err = n_bad ? INFINITY : max_err;
    result->passed = 1;
    if (n_bad) {
        fail(result, "%lld value%s NaN or infinite where the reference differs (first at %s: "
             "%g, expected %g)", (long long)n_bad, n_bad == 1 ? " is" : "s are",
             index_text(c->out_ne, bad, where, sizeof where), got[bad], want[bad]);
    } else if (c->out_dtype == OX_DTYPE_I32 && n_differ) {
        fail(result, "%lld of %lld values differ (largest at %s: %.0f, expected %.0f)",
             (long long)n_differ, (long long)n, index_text(c->out_ne, worst, where, sizeof where),
             got[worst], want[worst]);
    } else if (!(result->nmse <= c->threshold)) {
        fail(result, "NMSE %.3g exceeds %.3g; %lld of %lld values differ, largest error at %s: "
             "%.9g, expected %.9g", result->nmse, c->threshold, (long long)n_differ, (long long)n,
             index_text(c->out_ne, worst, where, sizeof where), got[worst], want[worst]);
    }
}

/* The naive double reference, rounded to the output dtype. */
static int reference_output(const op_case *c, const host_input *h, double *want)
{
    ox_ref_tensor in[OP_MAX_INPUTS], dst = {0};
    int64_t n = count(c->out_ne);
    for (int i = 0; i < c->n_inputs; i++) in[i] = h[i].ref;
    memcpy(dst.ne, c->out_ne, sizeof dst.ne);
    if (c->out_dtype == OX_DTYPE_I32) dst.idata = calloc((size_t)n, sizeof *dst.idata);
    else dst.data = calloc((size_t)n, sizeof *dst.data);
    if (!dst.idata && !dst.data) return -1;
    c->reference(c, &dst, in);
    for (int64_t e = 0; e < n; e++)
        want[e] = dst.idata ? dst.idata[e] : round_to(c->out_dtype, dst.data[e]);
    free(dst.idata);
    free(dst.data);
    return 0;
}

static int is_cpu_backend(ox_device *device)
{
    ox_device_info info = {.struct_size = sizeof info};
    return ox_device_get_info(device, &info) == OX_OK && strcmp(info.backend, "cpu") == 0;
}

void op_case_check(const op_case *c, ox_device *device, ox_device *cpu, op_result *result)
{
    host_input h[OP_MAX_INPUTS];
    device_run run, reference;
    int64_t n = count(c->out_ne);
    size_t size = (size_t)n * ox_dtype_size(c->out_dtype);
    unsigned char *first = malloc(size), *last = malloc(size), *cpu_bytes = malloc(size);
    double *got = malloc((size_t)n * sizeof *got), *want = malloc((size_t)n * sizeof *want);
    int runs = 0, native = is_cpu_backend(device);
    ox_status s;

    memset(result, 0, sizeof *result);
    result->nmse = NAN;
    result->max_abs_err = NAN;
    memset(&run, 0, sizeof run);
    memset(&reference, 0, sizeof reference);
    memset(h, 0, sizeof h);
    if (!first || !last || !cpu_bytes || !got || !want ||
        host_inputs_make(c, native, h) != 0) {
        fail(result, "out of host memory");
        goto out_free;
    }

    /* Run: once (compiles and checks), then timed; keep both outputs. */
    if ((s = device_run_setup(&run, device, c, h)) != OX_OK) {
        describe_failure(result->detail, sizeof result->detail, "setup", device, s);
        goto out_free;
    }
    if ((s = device_run_call(&run, c)) != OX_OK || (s = device_run_read(&run, c, first)) != OX_OK ||
        (s = device_run_time(&run, c, 3, 0.2, &result->seconds, &runs)) != OX_OK ||
        (s = device_run_read(&run, c, last)) != OX_OK) {
        describe_failure(result->detail, sizeof result->detail, c->op, device, s);
        goto out_free;
    }
    if (c->flops > 0) result->gflops = c->flops / result->seconds / 1e9;
    else result->gbps = op_case_bytes(c) / result->seconds / 1e9;
    for (int64_t e = 0; e < n; e++) got[e] = load(c->out_dtype, last, e);

    /* The reference: independent loops for the CPU, the CPU for the others. */
    if (native) {
        if (reference_output(c, h, want) != 0) {
            fail(result, "out of host memory for the reference");
            goto out_free;
        }
    } else if (!cpu) {
        fail(result, "no CPU device to compute the reference on");
        goto out_free;
    } else {
        if ((s = device_run_setup(&reference, cpu, c, h)) != OX_OK ||
            (s = device_run_call(&reference, c)) != OX_OK ||
            (s = device_run_read(&reference, c, cpu_bytes)) != OX_OK) {
            describe_failure(result->detail, sizeof result->detail, "CPU reference", cpu, s);
            goto out_free;
        }
        for (int64_t e = 0; e < n; e++) want[e] = load(c->out_dtype, cpu_bytes, e);
    }

    compare(c, got, want, result);
    /* Reproducible mode: the CPU's bits, not just its values within a
     * tolerance (docs/ARCHITECTURE.md, "Reproducible mode"). */
    result->bitwise = !native && ox_context_is_reproducible(ox_device_context(device));
    if (result->passed && result->bitwise && memcmp(last, cpu_bytes, size) != 0) {
        size_t esize = ox_dtype_size(c->out_dtype);
        int64_t first_at = -1, n_differ = 0;
        char where[64];
        for (int64_t e = 0; e < n; e++)
            if (memcmp(last + (size_t)e * esize, cpu_bytes + (size_t)e * esize, esize) != 0 &&
                n_differ++ == 0)
                first_at = e;
        fail(result, "reproducible mode: %lld of %lld values differ from the CPU's bits (first "
             "at %s: %.9g, the CPU %.9g)", (long long)n_differ, (long long)n,
             index_text(c->out_ne, first_at, where, sizeof where),
             load(c->out_dtype, last, first_at), load(c->out_dtype, cpu_bytes, first_at));
    }
    snprintf(result->bits, sizeof result->bits, "%016llx",
             (unsigned long long)cli_bytes_hash(last, size));
    /* Same inputs, same device: same bits (docs/ARCHITECTURE.md). */
    if (result->passed && memcmp(first, last, size) != 0) {
        size_t esize = ox_dtype_size(c->out_dtype);
        int64_t e = 0;
        char where[64];
        while (memcmp(first + (size_t)e * esize, last + (size_t)e * esize, esize) == 0) e++;
        fail(result, "not deterministic: two calls differ at %s: %.9g, then %.9g",
             index_text(c->out_ne, e, where, sizeof where), load(c->out_dtype, first, e),
             load(c->out_dtype, last, e));
    }
out_free:
    device_run_free(&reference);
    device_run_free(&run);
    host_inputs_free(h, c->n_inputs);
    free(want);
    free(got);
    free(cpu_bytes);
    free(last);
    free(first);
}
