/* Operators on devices other than the CPU: pick the kernel (kernels/<name>.oxc)
 * and its build defines, the launch geometry from the device's limits, and
 * the arguments. Every tensor is passed the same way: its buffer and byte
 * offset (ARG_BUF), then its four sizes and four strides in elements
 * (ARG_SHAPE). */
#include <stdio.h>
#include <string.h>

#include "ops/ops_internal.h"

#define MAX_ARGS 64

typedef struct launch {
    const ox__op *op;
    ox__kernel_arg args[MAX_ARGS];
    int n_args;
    union {
        int64_t i64;
        int32_t i32;
        float f32;
    } values[MAX_ARGS];
    int n_values;
    char options[256];
} launch;

static void add_scalar(launch *l, const void *value, size_t size)
{
    l->args[l->n_args++] = (ox__kernel_arg){.kind = OX__ARG_SCALAR, .value = value, .size = size};
}

static void arg_i64(launch *l, int64_t v)
{
    l->values[l->n_values].i64 = v;
    add_scalar(l, &l->values[l->n_values++].i64, sizeof(int64_t));
}

static void arg_i32(launch *l, int32_t v)
{
    l->values[l->n_values].i32 = v;
    add_scalar(l, &l->values[l->n_values++].i32, sizeof(int32_t));
}

static void arg_f32(launch *l, float v)
{
    l->values[l->n_values].f32 = v;
    add_scalar(l, &l->values[l->n_values++].f32, sizeof(float));
}

static void arg_buffer(launch *l, const ox_tensor *t)
{
    l->args[l->n_args++] = (ox__kernel_arg){.kind = OX__ARG_BUFFER,
                                            .buffer = t->buffer->memory->impl,
                                            .offset = t->buffer->offset + t->offset};
}

/* ARG_BUF + ARG_SHAPE of a tensor: strides in elements, or in bytes for
 * quantized types (whose rows kernels read through ox_dequant). */
static void arg_tensor(launch *l, const ox_tensor *t)
{
    int64_t esize = ox_dtype_is_quantized(t->dtype) ? 1 : (int64_t)ox_dtype_size(t->dtype);
    arg_buffer(l, t);
    for (int i = 0; i < OX_MAX_DIMS; i++) arg_i64(l, t->ne[i]);
    for (int i = 0; i < OX_MAX_DIMS; i++) arg_i64(l, t->nb[i] / esize);
}

static void option(launch *l, const char *name, long value)
{
    size_t used = strlen(l->options);
    snprintf(l->options + used, sizeof l->options - used, "%s-D%s=%ld", used ? " " : "", name,
             value);
}

/* Kernels reading a quantized tensor get ox_dequant for its type. */
static void quant_option(launch *l, ox_dtype dtype)
{
    if (!ox_dtype_is_quantized(dtype)) return;
    option(l, "OX_QUANT", 1);
    option(l, "DT_Q", dtype);
}

/* Build (or find) the program and launch `kernel`. */
static ox_status run(launch *l, const char *file, const char *kernel, const size_t groups[3],
                     const size_t local[3])
{
    const ox__op *op = l->op;
    const char *source = ox__kernel_source(file);
    if (!source)
        return ox__fail(op->ctx, OX_ERR_INTERNAL, "%s: kernel source '%s' is not embedded",
                        op->name, file);
    ox__program *program;
    ox_status s = ox__device_program(op->device, file, source, l->options, &program);
    if (s != OX_OK) return s;
    ox__kernel *k;
    if ((s = ox__program_kernel(program, kernel, &k)) != OX_OK) return s;
    s = ox__kernel_launch(op->device, op->queue->impl, k, groups, local, l->n_args, l->args, NULL);
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(op->ctx));
        return ox__fail(op->ctx, s, "%s: %s", op->name, message);
    }
    return OX_OK;
}

/* The largest power of two <= want that the device's work-groups allow. */
static size_t group_size(const ox__op *op, size_t want)
{
    size_t limit = op->device->info.max_work_group_size ? op->device->info.max_work_group_size : 64;
    size_t g = 1;
    while (g * 2 <= want && g * 2 <= limit) g *= 2;
    return g;
}

/* One work-item per element of `t`, in groups of up to 256. */
static ox_status run_elementwise(launch *l, const char *file, const char *kernel,
                                 const ox_tensor *t)
{
    size_t local[3] = {group_size(l->op, 256), 1, 1};
    size_t n = (size_t)ox_tensor_nelements(t);
    size_t groups[3] = {(n + local[0] - 1) / local[0], 1, 1};
    return run(l, file, kernel, groups, local);
}

/* One work-group per row of `t` (rows over dims 1..3). */
static ox_status run_rows(launch *l, const char *file, const char *kernel, const ox_tensor *t)
{
    size_t wg = group_size(l->op, t->ne[0] >= 256 ? 256 : 64);
    option(l, "WG", (long)wg);
    size_t local[3] = {wg, 1, 1};
    size_t groups[3] = {(size_t)(t->ne[1] * t->ne[2] * t->ne[3]), 1, 1};
    return run(l, file, kernel, groups, local);
}

ox_status ox__dev_binary(const ox__op *op, ox_binary_op kind, const ox_tensor *dst,
                         const ox_tensor *a, const ox_tensor *b)
{
    launch l = {.op = op};
    option(&l, "DT", dst->dtype);
    option(&l, "OP", kind);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, b);
    return run_elementwise(&l, "elementwise", "binary", dst);
}

ox_status ox__dev_scale(const ox__op *op, const ox_tensor *dst, const ox_tensor *a, float scale,
                        float bias)
{
    launch l = {.op = op};
    option(&l, "DT", dst->dtype);
    option(&l, "OP", 0);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_f32(&l, scale);
    arg_f32(&l, bias);
    return run_elementwise(&l, "elementwise", "scale", dst);
}

ox_status ox__dev_clamp(const ox__op *op, const ox_tensor *dst, const ox_tensor *a, float lo,
                        float hi)
{
    launch l = {.op = op};
    option(&l, "DT", dst->dtype);
    option(&l, "OP", 0);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_f32(&l, lo);
    arg_f32(&l, hi);
    return run_elementwise(&l, "elementwise", "clamp_values", dst);
}

ox_status ox__dev_unary(const ox__op *op, ox_unary_op kind, const ox_tensor *dst,
                        const ox_tensor *a)
{
    launch l = {.op = op};
    option(&l, "DT", dst->dtype);
    option(&l, "OP", kind);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    return run_elementwise(&l, "elementwise", "unary", dst);
}

ox_status ox__dev_reduce(const ox__op *op, ox_reduce_op kind, const ox_tensor *dst,
                         const ox_tensor *a)
{
    launch l = {.op = op};
    option(&l, "DT", a->dtype);
    option(&l, "DT_D", dst->dtype);
    option(&l, "OP", kind);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    return run_rows(&l, "rows", "reduce", a);
}

ox_status ox__dev_softmax(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                          const ox_tensor *mask, float scale, bool log_softmax)
{
    launch l = {.op = op};
    option(&l, "SOFTMAX", 1);
    option(&l, "DT", a->dtype);
    option(&l, "DT_M", mask ? mask->dtype : OX_DTYPE_F32);
    option(&l, "HAS_MASK", mask != NULL);
    option(&l, "LOG", log_softmax);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, mask ? mask : a); /* unused without HAS_MASK */
    arg_f32(&l, scale);
    return run_rows(&l, "rows", "softmax", a);
}

ox_status ox__dev_norm(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                       const ox_tensor *weight, const ox_tensor *bias, float eps, bool rms)
{
    launch l = {.op = op};
    option(&l, "NORM", 1);
    option(&l, "RMS", rms);
    option(&l, "DT", a->dtype);
    option(&l, "HAS_W", weight != NULL);
    option(&l, "DT_W", weight ? weight->dtype : a->dtype);
    option(&l, "HAS_B", bias != NULL);
    option(&l, "DT_B", bias ? bias->dtype : a->dtype);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, weight ? weight : a);
    arg_tensor(&l, bias ? bias : a);
    arg_f32(&l, eps);
    return run_rows(&l, "rows", "row_norm", a);
}

ox_status ox__dev_rope(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                       const ox_tensor *positions, const ox_rope_params *params)
{
    launch l = {.op = op};
    option(&l, "DT", a->dtype);
    option(&l, "NEOX", params->mode == OX_ROPE_NEOX);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_buffer(&l, positions);
    arg_i32(&l, params->n_dims);
    arg_f32(&l, params->freq_base);
    arg_f32(&l, params->freq_scale);
    /* one work-item per pair and per element past n_dims */
    size_t local[3] = {group_size(op, 256), 1, 1};
    size_t n = (size_t)((dst->ne[0] - params->n_dims / 2) * dst->ne[1] * dst->ne[2] * dst->ne[3]);
    size_t groups[3] = {(n + local[0] - 1) / local[0], 1, 1};
    return run(&l, "rope", "rope", groups, local);
}

static ox__native_tensor native_tensor(const ox_tensor *t)
{
    ox__native_tensor n = {.buffer = t->buffer->memory->impl,
                           .offset = t->buffer->offset + t->offset, .dtype = (int)t->dtype};
    memcpy(n.ne, t->ne, sizeof n.ne);
    memcpy(n.nb, t->nb, sizeof n.nb);
    return n;
}

/* The F32 operand of a matmul with quantized weights, rounded to 8 bits as
 * the CPU rounds it (kernels/matmul.oxc, round_act), into the queue's
 * scratch buffer as a contiguous {K, M, ne2, ne3} tensor. */
static ox_status round_activations(const ox__op *op, const ox_tensor *a, ox_dtype weights,
                                   unsigned flags, ox_tensor *out)
{
    bool ta = flags & OX_MATMUL_TRANS_A;
    int64_t K = ta ? a->ne[1] : a->ne[0], M = ta ? a->ne[0] : a->ne[1];
    int64_t rows = M * a->ne[2] * a->ne[3];
    int qblock = weights == OX_DTYPE_Q4_K || weights == OX_DTYPE_Q5_K || weights == OX_DTYPE_Q6_K
                     ? 256 : 32;
    ox_buffer *scratch;
    ox_status s = ox__queue_scratch(op->queue, (size_t)(rows * K) * sizeof(float), &scratch);
    if (s != OX_OK) return s;
    *out = ox_tensor_make(scratch, 0, OX_DTYPE_F32, K, M, a->ne[2], a->ne[3]);
    launch l = {.op = op};
    option(&l, "QBLOCK", qblock);
    arg_buffer(&l, out);
    arg_tensor(&l, a);
    arg_i64(&l, M);
    arg_i64(&l, K);
    arg_i64(&l, (ta ? a->nb[0] : a->nb[1]) / 4);
    arg_i64(&l, (ta ? a->nb[1] : a->nb[0]) / 4);
    int64_t n_blocks = rows * (K / qblock);
    arg_i64(&l, n_blocks);
    size_t local[3] = {group_size(op, 64), 1, 1};
    size_t groups[3] = {((size_t)n_blocks + local[0] - 1) / local[0], 1, 1};
    return run(&l, "matmul", "round_act", groups, local);
}

ox_status ox__dev_matmul(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                         const ox_tensor *b, unsigned flags)
{
    const ox__backend_iface *be = op->device->backend->iface;
    if (be->native_matmul && op->ctx->native_libs) {
        ox__native_tensor nd = native_tensor(dst), na = native_tensor(a), nb = native_tensor(b);
        ox_status s = be->native_matmul(op->queue->impl, &nd, &na, &nb, flags);
        if (s != OX_ERR_UNSUPPORTED) {
            if (s != OX_OK) {
                char message[OX__ERRMSG_MAX];
                ox__copy_string(message, sizeof message, ox_errmsg(op->ctx));
                return ox__fail(op->ctx, s, "%s: %s: %s", op->name, op->device->info.id, message);
            }
            return OX_OK;
        }
    }
    ox_tensor rounded;
    if (ox_dtype_is_quantized(b->dtype)) {
        ox_status s = round_activations(op, a, b->dtype, flags, &rounded);
        if (s != OX_OK) return s;
        a = &rounded;
        flags &= ~(unsigned)OX_MATMUL_TRANS_A;
    }
    launch l = {.op = op};
    bool ta = flags & OX_MATMUL_TRANS_A, tb = flags & OX_MATMUL_TRANS_B;
    int64_t ea = (int64_t)ox_dtype_size(a->dtype), eb = (int64_t)ox_dtype_size(b->dtype);
    int64_t M = dst->ne[1], N = dst->ne[0], K = ta ? a->ne[1] : a->ne[0];
    if (ox_dtype_is_quantized(b->dtype)) eb = 1; /* byte strides; rows of K (TRANS_B) */
    int64_t a_sm = (ta ? a->nb[0] : a->nb[1]) / ea, a_sk = (ta ? a->nb[1] : a->nb[0]) / ea;
    int64_t b_sk = (tb ? b->nb[0] : b->nb[1]) / eb, b_sn = (tb ? b->nb[1] : b->nb[0]) / eb;
    size_t batches = (size_t)(dst->ne[2] * dst->ne[3]);
    option(&l, "DT_A", a->dtype);
    option(&l, "DT_B", b->dtype);
    quant_option(&l, b->dtype);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, b);
    if (M == 1) {
        size_t wg = group_size(op, K >= 256 ? 256 : 64);
        option(&l, "WG", (long)wg);
        arg_i64(&l, N);
        arg_i64(&l, K);
        arg_i64(&l, a_sk);
        arg_i64(&l, b_sk);
        arg_i64(&l, b_sn);
        size_t groups[3] = {(size_t)N, batches, 1}, local[3] = {wg, 1, 1};
        return run(&l, "matmul", "matvec", groups, local);
    }
    /* 16x16 work-items of 4x4 outputs (64x64 tiles) where the device allows
     * 256-item groups and 8 KiB of local memory; else 8x8 of 2x2. */
    int wg = op->device->info.max_work_group_size >= 256 &&
                     op->device->info.local_memory_bytes >= 8192 ? 16 : 8;
    int r = wg == 16 ? 4 : 2;
    option(&l, "TK", 16);
    option(&l, "WG_M", wg);
    option(&l, "WG_N", wg);
    option(&l, "RM", r);
    option(&l, "RN", r);
    option(&l, "A_KFAST", a_sk == 1);
    option(&l, "B_KFAST", b_sk == 1 && b_sn != 1);
    arg_i64(&l, M);
    arg_i64(&l, N);
    arg_i64(&l, K);
    arg_i64(&l, a_sm);
    arg_i64(&l, a_sk);
    arg_i64(&l, b_sk);
    arg_i64(&l, b_sn);
    size_t tile = (size_t)(wg * r);
    size_t groups[3] = {((size_t)N + tile - 1) / tile, ((size_t)M + tile - 1) / tile, batches};
    size_t local[3] = {(size_t)wg, (size_t)wg, 1};
    return run(&l, "matmul", "matmul", groups, local);
}

ox_status ox__dev_get_rows(const ox__op *op, const ox_tensor *dst, const ox_tensor *table,
                           const ox_tensor *ids)
{
    launch l = {.op = op};
    option(&l, "DT_S", table->dtype);
    option(&l, "DT_D", dst->dtype);
    quant_option(&l, table->dtype);
    arg_tensor(&l, dst);
    arg_tensor(&l, table);
    arg_tensor(&l, ids);
    return run_elementwise(&l, "movement", "get_rows", dst);
}

ox_status ox__dev_copy(const ox__op *op, const ox_tensor *dst, const ox_tensor *src)
{
    launch l = {.op = op};
    option(&l, "DT_S", src->dtype);
    option(&l, "DT_D", dst->dtype);
    quant_option(&l, src->dtype);
    arg_tensor(&l, dst);
    arg_tensor(&l, src);
    return run_elementwise(&l, "movement", "copy", dst);
}

ox_status ox__dev_attention(const ox__op *op, const ox_tensor *dst, const ox_tensor *q,
                            const ox_tensor *k, const ox_tensor *v, const ox_tensor *mask,
                            const ox_attention_params *params)
{
    launch l = {.op = op};
    size_t wg = group_size(op, 64);
    int64_t acc = (v->ne[0] + (int64_t)wg - 1) / (int64_t)wg;
    int64_t dmax = 64;
    while (dmax < q->ne[0]) dmax *= 2;
    if (dmax * 4 + 2 * (int64_t)wg * 4 > (int64_t)op->device->info.local_memory_bytes &&
        op->device->info.local_memory_bytes)
        return ox__fail(op->ctx, OX_ERR_UNSUPPORTED,
                        "%s: head size %lld needs more local memory than %s has", op->name,
                        (long long)q->ne[0], op->device->info.id);
    option(&l, "DT_K", k->dtype);
    option(&l, "DT_V", v->dtype);
    option(&l, "WG", (long)wg);
    option(&l, "ACC", (long)acc);
    option(&l, "DMAX", (long)dmax);
    option(&l, "HAS_MASK", mask != NULL);
    option(&l, "CAUSAL", params->causal != 0);
    arg_tensor(&l, dst);
    arg_tensor(&l, q);
    arg_tensor(&l, k);
    arg_tensor(&l, v);
    arg_tensor(&l, mask ? mask : q); /* unused without HAS_MASK */
    arg_f32(&l, params->scale);
    size_t groups[3] = {(size_t)q->ne[1], (size_t)q->ne[2], (size_t)q->ne[3]};
    size_t local[3] = {wg, 1, 1};
    return run(&l, "attention", "attention", groups, local);
}
