/* The public operator entry points: check the queue, every tensor (handle,
 * device, bounds) and the op's shape and dtype rules, then run the CPU's
 * native code or the device's portable kernel. Nothing runs unless every
 * check passed, and each refusal names the op and the shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backends/cpu/cpu_backend.h"
#include "ops/ops_internal.h"

static bool is_float(ox_dtype t)
{
    return t == OX_DTYPE_F32 || t == OX_DTYPE_F16 || t == OX_DTYPE_BF16;
}

static ox_status op_begin(ox__op *op, const char *name, ox_queue *q)
{
    memset(op, 0, sizeof *op);
    op->name = name;
    ox_status s = ox__handle_check(q, OX__HANDLE_QUEUE, name, "queue", &op->ctx);
    if (s != OX_OK) return s;
    op->queue = q;
    op->device = q->device;
    bool on_cpu = q->device->backend->iface == ox__cpu_backend();
    /* in reproducible mode the CPU runs the portable kernels, as every device */
    op->cpu = on_cpu && !op->ctx->reproducible;
    atomic_fetch_add(&op->ctx->n_ops, 1);
    if (on_cpu) { /* its pool serves native code in either mode */
        op->exec.pool = ox__cpu_device_pool(q->device->impl);
        op->exec.features = q->device->info.features;
    }
    return OX_OK;
}

/* A tensor argument: valid, in bounds, on the op's device. NULL is allowed
 * only when `optional`. */
static ox_status arg(const ox__op *op, const char *what, const ox_tensor *t, bool optional)
{
    if (!t) {
        if (optional) return OX_OK;
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s is NULL", op->name, what);
    }
    ox_status s = ox__tensor_check(op->ctx, op->name, what, t);
    if (s != OX_OK) return s;
    if (t->buffer->ctx != op->ctx)
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s belongs to another context", op->name,
                        what);
    if (t->buffer->memory->device != op->device)
        return ox__fail(op->ctx, OX_ERR_INVALID,
                        "%s: %s is on %s but the queue is on %s; copy it with ox_buffer_copy first",
                        op->name, what, t->buffer->memory->device->info.id, op->device->info.id);
    return OX_OK;
}

static ox_status want_float(const ox__op *op, const char *what, const ox_tensor *t)
{
    if (is_float(t->dtype)) return OX_OK;
    return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s is %s; it must be f32, f16 or bf16",
                    op->name, what, ox_dtype_str(t->dtype));
}

static ox_status want_dtype(const ox__op *op, const char *what, const ox_tensor *t, ox_dtype dt)
{
    if (t->dtype == dt) return OX_OK;
    return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s is %s; it must be %s", op->name, what,
                    ox_dtype_str(t->dtype), ox_dtype_str(dt));
}

static ox_status same_dtype(const ox__op *op, const char *wa, const ox_tensor *a, const char *wb,
                            const ox_tensor *b)
{
    if (a->dtype == b->dtype) return OX_OK;
    return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s is %s but %s is %s; they must match",
                    op->name, wa, ox_dtype_str(a->dtype), wb, ox_dtype_str(b->dtype));
}

static ox_status same_shape(const ox__op *op, const char *wa, const ox_tensor *a, const char *wb,
                            const ox_tensor *b)
{
    char sa[96], sb[96];
    for (int i = 0; i < OX_MAX_DIMS; i++)
        if (a->ne[i] != b->ne[i])
            return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s %s and %s %s must have the same shape",
                            op->name, wa, ox__shape_str(a, sa, sizeof sa), wb,
                            ox__shape_str(b, sb, sizeof sb));
    return OX_OK;
}

/* b repeats over a: each b->ne[i] divides a->ne[i]. */
static ox_status repeats(const ox__op *op, const char *wb, const ox_tensor *b, const char *wa,
                         const ox_tensor *a)
{
    char sa[96], sb[96];
    for (int i = 0; i < OX_MAX_DIMS; i++)
        if (a->ne[i] % b->ne[i] != 0)
            return ox__fail(op->ctx, OX_ERR_INVALID,
                            "%s: %s %s does not repeat over %s %s (dimension %d: %lld does not "
                            "divide %lld)",
                            op->name, wb, ox__shape_str(b, sb, sizeof sb), wa,
                            ox__shape_str(a, sa, sizeof sa), i, (long long)b->ne[i],
                            (long long)a->ne[i]);
    return OX_OK;
}

/* A row of ne[0] == a->ne[0] repeating over a (norm weights, biases). */
static ox_status row_param(const ox__op *op, const char *what, const ox_tensor *w,
                           const ox_tensor *a)
{
    ox_status s;
    if (!w) return OX_OK;
    if ((s = arg(op, what, w, false)) || (s = want_float(op, what, w))) return s;
    if (w->ne[0] != a->ne[0]) {
        char sw[96], sa[96];
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s %s must have a row of %lld (a is %s)",
                        op->name, what, ox__shape_str(w, sw, sizeof sw), (long long)a->ne[0],
                        ox__shape_str(a, sa, sizeof sa));
    }
    return repeats(op, what, w, "a", a);
}

static ox__view view(const ox_tensor *t)
{
    ox__view v = {.dtype = t->dtype};
    v.data = (char *)ox__cpu_buffer_data(t->buffer->memory->impl) + t->buffer->offset + t->offset;
    memcpy(v.ne, t->ne, sizeof v.ne);
    memcpy(v.nb, t->nb, sizeof v.nb);
    v.packed = ox__matrix_packed(t); /* NULL but for packed quantized matrices */
    return v;
}

/* ---- elementwise ---------------------------------------------------------- */

static ox_status unary_args(ox__op *op, const ox_tensor *dst, const ox_tensor *a)
{
    ox_status s;
    if ((s = arg(op, "dst", dst, false)) || (s = arg(op, "a", a, false)) ||
        (s = want_float(op, "a", a)) || (s = same_dtype(op, "dst", dst, "a", a)) ||
        (s = same_shape(op, "dst", dst, "a", a)))
        return s;
    return OX_OK;
}

ox_status ox_binary(ox_queue *q, ox_binary_op kind, const ox_tensor *dst, const ox_tensor *a,
                    const ox_tensor *b)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_binary", q);
    if (s != OX_OK) return s;
    if ((unsigned)kind > OX_BINARY_DIV)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_binary: unknown op %d", (int)kind);
    if ((s = unary_args(&op, dst, a)) || (s = arg(&op, "b", b, false)) ||
        (s = same_dtype(&op, "a", a, "b", b)) || (s = repeats(&op, "b", b, "a", a)))
        return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a), vb = view(b);
        return ox__cpu_binary(&op.exec, kind, &vd, &va, &vb);
    }
    return ox__dev_binary(&op, kind, dst, a, b);
}

ox_status ox_add(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b)
{
    return ox_binary(q, OX_BINARY_ADD, dst, a, b);
}

ox_status ox_sub(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b)
{
    return ox_binary(q, OX_BINARY_SUB, dst, a, b);
}

ox_status ox_mul(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b)
{
    return ox_binary(q, OX_BINARY_MUL, dst, a, b);
}

ox_status ox_div(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b)
{
    return ox_binary(q, OX_BINARY_DIV, dst, a, b);
}

ox_status ox_scale(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, float scale, float bias)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_scale", q);
    if (s != OX_OK || (s = unary_args(&op, dst, a))) return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a);
        return ox__cpu_scale(&op.exec, &vd, &va, scale, bias);
    }
    return ox__dev_scale(&op, dst, a, scale, bias);
}

ox_status ox_clamp(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, float lo, float hi)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_clamp", q);
    if (s != OX_OK || (s = unary_args(&op, dst, a))) return s;
    if (!(lo <= hi))
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_clamp: lo %g must not exceed hi %g",
                        (double)lo, (double)hi);
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a);
        return ox__cpu_clamp(&op.exec, &vd, &va, lo, hi);
    }
    return ox__dev_clamp(&op, dst, a, lo, hi);
}

const char *ox_unary_str(ox_unary_op kind)
{
    switch (kind) {
#define OX__UNARY_CASE(name, text) \
    case OX_UNARY_##name:          \
        return text;
        OX_UNARY_LIST(OX__UNARY_CASE)
#undef OX__UNARY_CASE
    case OX_UNARY_COUNT: break;
    }
    return NULL;
}

ox_status ox_unary(ox_queue *q, ox_unary_op kind, const ox_tensor *dst, const ox_tensor *a)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_unary", q);
    if (s != OX_OK) return s;
    if ((unsigned)kind >= OX_UNARY_COUNT)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_unary: unknown op %d", (int)kind);
    if ((s = unary_args(&op, dst, a))) return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a);
        return ox__cpu_unary(&op.exec, kind, &vd, &va);
    }
    return ox__dev_unary(&op, kind, dst, a);
}

ox_status ox_glu(ox_queue *q, ox_unary_op act, const ox_tensor *dst, const ox_tensor *gate,
                 const ox_tensor *up)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_glu", q);
    if (s != OX_OK) return s;
    if ((unsigned)act >= OX_UNARY_COUNT)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_glu: unknown activation %d", (int)act);
    if ((s = unary_args(&op, dst, gate)) || (s = arg(&op, "up", up, false)) ||
        (s = same_dtype(&op, "up", up, "gate", gate)) || (s = same_shape(&op, "up", up, "gate", gate)))
        return s;
    if (dst->buffer->memory == up->buffer->memory &&
        dst->buffer->offset + dst->offset == up->buffer->offset + up->offset)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_glu: dst must not be up (it may be gate)");
    if (op.cpu) {
        ox__view vd = view(dst), vg = view(gate), vu = view(up);
        return ox__cpu_glu(&op.exec, act, &vd, &vg, &vu);
    }
    return ox__dev_glu(&op, act, dst, gate, up);
}

/* ---- rows: reductions, softmax, norms ------------------------------------- */

ox_status ox_reduce(ox_queue *q, ox_reduce_op kind, const ox_tensor *dst, const ox_tensor *a)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_reduce", q);
    if (s != OX_OK) return s;
    if ((unsigned)kind > OX_REDUCE_ARGMAX)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_reduce: unknown op %d", (int)kind);
    if ((s = arg(&op, "dst", dst, false)) || (s = arg(&op, "a", a, false)) ||
        (s = want_float(&op, "a", a)))
        return s;
    s = kind == OX_REDUCE_ARGMAX ? want_dtype(&op, "dst", dst, OX_DTYPE_I32)
                                 : same_dtype(&op, "dst", dst, "a", a);
    if (s != OX_OK) return s;
    ox_tensor expect = *a;
    expect.ne[0] = 1;
    if ((s = same_shape(&op, "dst", dst, "a with one column", &expect))) return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a);
        return ox__cpu_reduce(&op.exec, kind, &vd, &va);
    }
    return ox__dev_reduce(&op, kind, dst, a);
}

ox_status ox_softmax(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *mask,
                     float scale)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_softmax", q);
    if (s != OX_OK || (s = unary_args(&op, dst, a)) || (s = arg(&op, "mask", mask, true)))
        return s;
    if (mask) {
        if (mask->dtype != OX_DTYPE_F32 && mask->dtype != OX_DTYPE_F16)
            return ox__fail(op.ctx, OX_ERR_INVALID, "ox_softmax: mask is %s; it must be f32 or f16",
                            ox_dtype_str(mask->dtype));
        if ((s = repeats(&op, "mask", mask, "a", a))) return s;
        if (mask->ne[0] != a->ne[0])
            return ox__fail(op.ctx, OX_ERR_INVALID,
                            "ox_softmax: mask rows have %lld entries but a's rows have %lld",
                            (long long)mask->ne[0], (long long)a->ne[0]);
    }
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a), vm = mask ? view(mask) : vd;
        return ox__cpu_softmax(&op.exec, &vd, &va, mask ? &vm : NULL, scale);
    }
    return ox__dev_softmax(&op, dst, a, mask, scale, false);
}

ox_status ox_log_softmax(ox_queue *q, const ox_tensor *dst, const ox_tensor *a)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_log_softmax", q);
    if (s != OX_OK || (s = unary_args(&op, dst, a))) return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a);
        return ox__cpu_log_softmax(&op.exec, &vd, &va);
    }
    return ox__dev_softmax(&op, dst, a, NULL, 1.0f, true);
}

static ox_status norm(ox_queue *q, const char *name, const ox_tensor *dst, const ox_tensor *a,
                      const ox_tensor *weight, const ox_tensor *bias, float eps, bool rms)
{
    ox__op op;
    ox_status s = op_begin(&op, name, q);
    if (s != OX_OK || (s = unary_args(&op, dst, a)) || (s = row_param(&op, "weight", weight, a)) ||
        (s = row_param(&op, "bias", bias, a)))
        return s;
    if (!(eps >= 0.0f) || isinf(eps))
        return ox__fail(op.ctx, OX_ERR_INVALID, "%s: eps %g must be finite and >= 0", name,
                        (double)eps);
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a), vw = weight ? view(weight) : vd,
                 vb = bias ? view(bias) : vd;
        return rms ? ox__cpu_rms_norm(&op.exec, &vd, &va, weight ? &vw : NULL, eps)
                   : ox__cpu_layer_norm(&op.exec, &vd, &va, weight ? &vw : NULL,
                                        bias ? &vb : NULL, eps);
    }
    return ox__dev_norm(&op, dst, a, weight, bias, eps, rms);
}

ox_status ox_rms_norm(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                      const ox_tensor *weight, float eps)
{
    return norm(q, "ox_rms_norm", dst, a, weight, NULL, eps, true);
}

ox_status ox_layer_norm(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                        const ox_tensor *weight, const ox_tensor *bias, float eps)
{
    return norm(q, "ox_layer_norm", dst, a, weight, bias, eps, false);
}

/* ---- rope ------------------------------------------------------------------------ */

/* A row parameter of exactly ne0 F32 values. */
static ox_status one_row_f32(const ox__op *op, const char *what, const ox_tensor *w, int64_t ne0)
{
    ox_status s;
    if ((s = arg(op, what, w, false)) || (s = want_dtype(op, what, w, OX_DTYPE_F32))) return s;
    if (w->ne[0] != ne0 || ox_tensor_nelements(w) != ne0 || !ox_tensor_is_contiguous(w))
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s must be one contiguous row of %lld",
                        op->name, what, (long long)ne0);
    return OX_OK;
}

ox_status ox_add_rms_norm(ox_queue *q, const ox_tensor *x, const ox_tensor *delta,
                          const ox_tensor *delta_weight, const ox_tensor *out,
                          const ox_tensor *weight, float eps)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_add_rms_norm", q);
    if (s != OX_OK || (s = arg(&op, "x", x, false)) || (s = arg(&op, "delta", delta, false)) ||
        (s = arg(&op, "out", out, false)) || (s = want_dtype(&op, "x", x, OX_DTYPE_F32)) ||
        (s = want_dtype(&op, "delta", delta, OX_DTYPE_F32)) ||
        (s = want_dtype(&op, "out", out, OX_DTYPE_F32)) ||
        (s = same_shape(&op, "delta", delta, "x", x)) || (s = same_shape(&op, "out", out, "x", x)) ||
        (s = one_row_f32(&op, "weight", weight, x->ne[0])) ||
        (delta_weight && (s = one_row_f32(&op, "delta_weight", delta_weight, x->ne[0]))))
        return s;
    if (!ox_tensor_is_contiguous(x) || !ox_tensor_is_contiguous(delta) ||
        !ox_tensor_is_contiguous(out))
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_add_rms_norm: x, delta and out must be "
                        "contiguous");
    const ox_tensor *t[3] = {x, delta, out};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if ((i == 2 || j == 2) && t[i]->buffer->memory == t[j]->buffer->memory &&
                t[i]->buffer->offset + t[i]->offset == t[j]->buffer->offset + t[j]->offset)
                return ox__fail(op.ctx, OX_ERR_INVALID, "ox_add_rms_norm: out is also %s",
                                j == 2 ? (i ? "delta" : "x") : "x");
    if (!(eps >= 0.0f))
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_add_rms_norm: eps %g must be >= 0", (double)eps);
    if (op.cpu) {
        ox__view vx = view(x), vd = view(delta), vo = view(out), vw = view(weight), vdw;
        if (delta_weight) vdw = view(delta_weight);
        return ox__cpu_add_rms_norm(&op.exec, &vx, &vd, delta_weight ? &vdw : NULL, &vo, &vw, eps);
    }
    return ox__dev_add_rms_norm(&op, x, delta, delta_weight, out, weight, eps);
}

/* The rope parameters against a (head size) and positions (one per token). */
static ox_status rope_params(const ox__op *op, const ox_tensor *a, const ox_tensor *positions,
                             const ox_rope_params *params)
{
    if (!params) return ox__fail(op->ctx, OX_ERR_INVALID, "%s: params is NULL", op->name);
    if (params->mode != OX_ROPE_NORMAL && params->mode != OX_ROPE_NEOX)
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: unknown mode %d", op->name,
                        (int)params->mode);
    if (params->n_dims <= 0 || params->n_dims % 2 || params->n_dims > a->ne[0])
        return ox__fail(op->ctx, OX_ERR_INVALID,
                        "%s: n_dims %d must be even, positive and at most the head size %lld",
                        op->name, params->n_dims, (long long)a->ne[0]);
    if (!(params->freq_base > 0.0f) || !(params->freq_scale > 0.0f))
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: freq_base %g and freq_scale %g must be positive",
                        op->name, (double)params->freq_base, (double)params->freq_scale);
    if (positions->dtype == OX_DTYPE_F32) { /* the angles, as ox_rope_table writes them */
        if (positions->ne[0] != params->n_dims || positions->ne[1] != a->ne[2] ||
            positions->ne[2] != 1 || positions->ne[3] != 1 || !ox_tensor_is_contiguous(positions))
            return ox__fail(op->ctx, OX_ERR_INVALID, "%s: the angle table (F32 positions) is "
                            "[%lld, %lld, %lld, %lld]; it must be contiguous [%d (n_dims), %lld "
                            "(tokens)]", op->name, (long long)positions->ne[0],
                            (long long)positions->ne[1], (long long)positions->ne[2],
                            (long long)positions->ne[3], params->n_dims, (long long)a->ne[2]);
        return OX_OK;
    }
    if (positions->dtype != OX_DTYPE_I32)
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: positions is %s; it must be i32 (positions) "
                        "or f32 (an angle table)", op->name, ox_dtype_str(positions->dtype));
    if (ox_tensor_nelements(positions) != a->ne[2])
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %lld positions for %lld tokens (ne[2])",
                        op->name, (long long)ox_tensor_nelements(positions), (long long)a->ne[2]);
    return OX_OK;
}

ox_status ox_rope(ox_queue *q, const ox_tensor *dst, const ox_tensor *a,
                  const ox_tensor *positions, const ox_rope_params *params)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_rope", q);
    if (s != OX_OK || (s = unary_args(&op, dst, a)) ||
        (s = arg(&op, "positions", positions, false)))
        return s;
    if ((s = rope_params(&op, a, positions, params))) return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a), vp = view(positions);
        return ox__cpu_rope(&op.exec, &vd, &va, &vp, params);
    }
    return ox__dev_rope(&op, dst, a, positions, params);
}

/* One of rope_qk's pairs: src F32, dst of src's shape in a float type, the
 * weight a row of head_dim. */
static ox_status rope_qk_pair(const ox__op *op, const char *wd, const ox_tensor *dst,
                              const char *ws, const ox_tensor *src, const char *ww,
                              const ox_tensor *weight)
{
    ox_status s;
    if ((s = arg(op, wd, dst, false)) || (s = arg(op, ws, src, false)) ||
        (s = want_dtype(op, ws, src, OX_DTYPE_F32)) || (s = want_float(op, wd, dst)) ||
        (s = same_shape(op, wd, dst, ws, src)))
        return s;
    if (src->ne[0] > 1024)
        return ox__fail(op->ctx, OX_ERR_UNSUPPORTED, "%s: head size %lld of %s is above 1024",
                        op->name, (long long)src->ne[0], ws);
    if (!weight) return OX_OK;
    if ((s = arg(op, ww, weight, false)) || (s = want_dtype(op, ww, weight, OX_DTYPE_F32)))
        return s;
    if (weight->ne[0] != src->ne[0] || ox_tensor_nelements(weight) != weight->ne[0])
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s must be one row of %lld (the head size)",
                        op->name, ww, (long long)src->ne[0]);
    return OX_OK;
}

ox_status ox_rope_qk(ox_queue *queue, const ox_tensor *q_dst, const ox_tensor *q,
                     const ox_tensor *q_weight, const ox_tensor *k_dst, const ox_tensor *k,
                     const ox_tensor *k_weight, const ox_tensor *positions,
                     const ox_rope_params *params, float eps)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_rope_qk", queue);
    if (s != OX_OK || (s = rope_qk_pair(&op, "q_dst", q_dst, "q", q, "q_weight", q_weight)))
        return s;
    bool keys = k || k_dst || k_weight;
    if (keys && (s = rope_qk_pair(&op, "k_dst", k_dst, "k", k, "k_weight", k_weight))) return s;
    if ((s = arg(&op, "positions", positions, false)) ||
        (s = rope_params(&op, q, positions, params)))
        return s;
    if (keys && (k->ne[0] != q->ne[0] || k->ne[2] != q->ne[2] || k->ne[3] != q->ne[3]))
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_rope_qk: k's head size, tokens and batch "
                        "(%lld, %lld, %lld) differ from q's (%lld, %lld, %lld)",
                        (long long)k->ne[0], (long long)k->ne[2], (long long)k->ne[3],
                        (long long)q->ne[0], (long long)q->ne[2], (long long)q->ne[3]);
    if (!(eps >= 0.0f))
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_rope_qk: eps %g must be >= 0", (double)eps);
    if (op.cpu) {
        ox__view vp = view(positions);
        for (int i = 0; i < (keys ? 2 : 1); i++) {
            const ox_tensor *w = i ? k_weight : q_weight;
            ox__view vd = view(i ? k_dst : q_dst), va = view(i ? k : q), vw;
            if (w) vw = view(w);
            if ((s = ox__cpu_rope_norm(&op.exec, &vd, &va, w ? &vw : NULL, eps, &vp, params)))
                return s;
        }
        return OX_OK;
    }
    return ox__dev_rope_qk(&op, q_dst, q, q_weight, keys ? k_dst : NULL, keys ? k : NULL,
                           k_weight, positions, params, eps);
}

/* ---- matmul ------------------------------------------------------------------------ */

/* One product's arguments, as ox_matmul states them. */
static ox_status matmul_args(const ox__op *o, const ox_tensor *dst, const ox_tensor *a,
                             const ox_tensor *b, unsigned flags)
{
    char sd[96], sa[96], sb[96];
    ox__op op = *o;
    ox_status s;
    if ((s = arg(&op, "dst", dst, false)) || (s = arg(&op, "a", a, false)) ||
        (s = arg(&op, "b", b, false)) || (s = want_dtype(&op, "dst", dst, OX_DTYPE_F32)) ||
        (s = want_float(&op, "a", a)))
        return s;
    if (flags & ~(unsigned)(OX_MATMUL_TRANS_A | OX_MATMUL_TRANS_B))
        return ox__fail(op.ctx, OX_ERR_INVALID, "%s: unknown flags 0x%x", op.name, flags);
    if (!ox_dtype_is_quantized(b->dtype)) {
        if ((s = want_float(&op, "b", b))) return s;
    } else if (!(flags & OX_MATMUL_TRANS_B) || a->dtype != OX_DTYPE_F32) {
        return ox__fail(op.ctx, OX_ERR_INVALID,
                        "%s: b is %s, quantized: it must be stored as N rows of K "
                        "(OX_MATMUL_TRANS_B%s) and a must be f32 (a is %s)", op.name,
                        ox_dtype_str(b->dtype), flags & OX_MATMUL_TRANS_B ? "" : ", not set",
                        ox_dtype_str(a->dtype));
    }
    int64_t M = flags & OX_MATMUL_TRANS_A ? a->ne[0] : a->ne[1];
    int64_t Ka = flags & OX_MATMUL_TRANS_A ? a->ne[1] : a->ne[0];
    int64_t Kb = flags & OX_MATMUL_TRANS_B ? b->ne[0] : b->ne[1];
    int64_t N = flags & OX_MATMUL_TRANS_B ? b->ne[1] : b->ne[0];
    if (Ka != Kb || dst->ne[0] != N || dst->ne[1] != M || dst->ne[2] != b->ne[2] ||
        dst->ne[3] != b->ne[3] || b->ne[2] % a->ne[2] || b->ne[3] % a->ne[3])
        return ox__fail(op.ctx, OX_ERR_INVALID,
                        "%s: shapes do not fit: dst %s = a %s%s . b %s%s (want dst "
                        "[N=%lld, M=%lld, b's batch], K of a %lld == K of b %lld, a's batch "
                        "dividing b's)", op.name,
                        ox__shape_str(dst, sd, sizeof sd), ox__shape_str(a, sa, sizeof sa),
                        flags & OX_MATMUL_TRANS_A ? "^T" : "", ox__shape_str(b, sb, sizeof sb),
                        flags & OX_MATMUL_TRANS_B ? "^T" : "", (long long)N, (long long)M,
                        (long long)Ka, (long long)Kb);
    return OX_OK;
}

ox_status ox_matmul(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b,
                    unsigned flags)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_matmul", q);
    if (s != OX_OK || (s = matmul_args(&op, dst, a, b, flags))) return s;
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a), vb = view(b);
        return ox__cpu_matmul(&op.exec, &vd, &va, &vb, flags);
    }
    return ox__dev_matmul(&op, dst, a, b, flags);
}

ox_status ox_matmul_many(ox_queue *q, int n, const ox_tensor *dst, const ox_tensor *a,
                         const ox_tensor *b, unsigned flags)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_matmul_many", q);
    if (s != OX_OK) return s;
    if (n < 1 || n > OX_MATMUL_MANY_MAX || !dst || !b)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_matmul_many: n is %d (1 to %d) or dst or b "
                        "is NULL", n, OX_MATMUL_MANY_MAX);
    for (int i = 0; i < n; i++)
        if ((s = matmul_args(&op, &dst[i], a, &b[i], flags))) return s;
    for (int i = 0; i < n; i++) /* no product may write what another reads */
        for (int j = 0; j < n; j++)
            if (i != j && dst[i].buffer->memory == dst[j].buffer->memory &&
                dst[i].buffer->offset + dst[i].offset == dst[j].buffer->offset + dst[j].offset)
                return ox__fail(op.ctx, OX_ERR_INVALID, "ox_matmul_many: dst[%d] and dst[%d] "
                                "are the same tensor", i, j);
    if (op.cpu) {
        ox__view va = view(a);
        for (int i = 0; i < n && s == OX_OK; i++) {
            ox__view vd = view(&dst[i]), vb = view(&b[i]);
            s = ox__cpu_matmul(&op.exec, &vd, &va, &vb, flags);
        }
        return s;
    }
    return ox__dev_matmul_many(&op, n, dst, a, b, flags);
}

/* ---- data movement ------------------------------------------------------------------ */

ox_status ox_get_rows(ox_queue *q, const ox_tensor *dst, const ox_tensor *table,
                      const ox_tensor *ids)
{
    ox__op op;
    char sd[96], st[96], si[96];
    ox_status s = op_begin(&op, "ox_get_rows", q);
    if (s != OX_OK || (s = arg(&op, "dst", dst, false)) || (s = arg(&op, "table", table, false)) ||
        (s = arg(&op, "ids", ids, false)) || (s = want_dtype(&op, "ids", ids, OX_DTYPE_I32)))
        return s;
    if (ox_dtype_is_quantized(table->dtype)) { /* rows are dequantized */
        if ((s = want_dtype(&op, "dst", dst, OX_DTYPE_F32))) return s;
    } else if ((s = want_float(&op, "table", table))) {
        return s;
    }
    if (dst->dtype != OX_DTYPE_F32 && dst->dtype != table->dtype)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_get_rows: dst is %s; it must be f32 or %s",
                        ox_dtype_str(dst->dtype), ox_dtype_str(table->dtype));
    if (dst->ne[0] != table->ne[0] || dst->ne[1] != ids->ne[0] || dst->ne[2] != ids->ne[1] ||
        dst->ne[3] != ids->ne[2] || ids->ne[3] != 1 || ids->ne[1] % table->ne[2] ||
        ids->ne[2] % table->ne[3])
        return ox__fail(op.ctx, OX_ERR_INVALID,
                        "ox_get_rows: dst %s does not fit table %s and ids %s (want dst [D, n, "
                        "I2, I3] for table [D, rows, ..] and ids [n, I2, I3, 1])",
                        ox__shape_str(dst, sd, sizeof sd), ox__shape_str(table, st, sizeof st),
                        ox__shape_str(ids, si, sizeof si));
    if (op.cpu) {
        ox__view vd = view(dst), vt = view(table), vi = view(ids);
        return ox__cpu_get_rows(&op.exec, &vd, &vt, &vi);
    }
    return ox__dev_get_rows(&op, dst, table, ids);
}

ox_status ox_copy(ox_queue *q, const ox_tensor *dst, const ox_tensor *src)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_copy", q);
    if (s != OX_OK || (s = arg(&op, "dst", dst, false)) || (s = arg(&op, "src", src, false)) ||
        (s = same_shape(&op, "dst", dst, "src", src)))
        return s;
    if ((dst->dtype == OX_DTYPE_I32) != (src->dtype == OX_DTYPE_I32))
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_copy: cannot convert %s to %s",
                        ox_dtype_str(src->dtype), ox_dtype_str(dst->dtype));
    if (ox_dtype_is_quantized(dst->dtype) || ox_dtype_is_quantized(src->dtype)) {
        if (!is_float(dst->dtype)) /* quantized -> quantized, or a float -> quantized */
            return ox__fail(op.ctx, OX_ERR_INVALID,
                            "ox_copy: cannot convert %s to %s: quantized tensors are only read "
                            "(dequantized into f32, f16 or bf16); quantize rows with "
                            "ox_row_from_f32",
                            ox_dtype_str(src->dtype), ox_dtype_str(dst->dtype));
    }
    if (op.cpu) {
        ox__view vd = view(dst), vs = view(src);
        return ox__cpu_copy(&op.exec, &vd, &vs);
    }
    return ox__dev_copy(&op, dst, src);
}

ox_status ox_concat(ox_queue *q, const ox_tensor *dst, const ox_tensor *a, const ox_tensor *b,
                    int dim)
{
    ox__op op;
    char sd[96], sa[96], sb[96];
    ox_status s = op_begin(&op, "ox_concat", q);
    if (s != OX_OK || (s = arg(&op, "dst", dst, false)) || (s = arg(&op, "a", a, false)) ||
        (s = arg(&op, "b", b, false)) || (s = same_dtype(&op, "dst", dst, "a", a)) ||
        (s = same_dtype(&op, "a", a, "b", b)))
        return s;
    if (dim < 0 || dim >= OX_MAX_DIMS)
        return ox__fail(op.ctx, OX_ERR_INVALID, "ox_concat: dim %d is not 0..3", dim);
    for (int i = 0; i < OX_MAX_DIMS; i++) {
        int64_t want = i == dim ? a->ne[i] + b->ne[i] : a->ne[i];
        if ((i != dim && b->ne[i] != a->ne[i]) || dst->ne[i] != want)
            return ox__fail(op.ctx, OX_ERR_INVALID,
                            "ox_concat: cannot join a %s and b %s along dimension %d into dst %s",
                            ox__shape_str(a, sa, sizeof sa), ox__shape_str(b, sb, sizeof sb), dim,
                            ox__shape_str(dst, sd, sizeof sd));
    }
    if (op.cpu) {
        ox__view vd = view(dst), va = view(a), vb = view(b);
        return ox__cpu_concat(&op.exec, &vd, &va, &vb, dim);
    }
    /* On devices: two copies into the two parts of dst. */
    ox_tensor part = *dst;
    memcpy(part.ne, a->ne, sizeof part.ne);
    if ((s = ox__dev_copy(&op, &part, a)) != OX_OK) return s;
    part.offset = dst->offset + (size_t)(a->ne[dim] * dst->nb[dim]);
    memcpy(part.ne, b->ne, sizeof part.ne);
    return ox__dev_copy(&op, &part, b);
}

/* ---- attention ------------------------------------------------------------------------ */

/* The checks and the run of ox_attention and ox_attention_paged: key and
 * value as logical [D, n_kv, H_kv, B] views (over the pools when paged). */
static ox_status attention_run(ox__op *op, const ox_tensor *dst, const ox_tensor *query,
                               const ox_tensor *key, const ox_tensor *value, const ox_tensor *mask,
                               const ox_attention_params *params, const ox__dev_pages *pages)
{
    char sd[96], sq[96], sk[96], sv[96];
    if (!params) return ox__fail(op->ctx, OX_ERR_INVALID, "%s: params is NULL", op->name);
    for (int i = 0; i < 2; i++) {
        const ox_tensor *t = i ? value : key;
        if (t->dtype != OX_DTYPE_F32 && t->dtype != OX_DTYPE_F16 && t->dtype != OX_DTYPE_BF16)
            return ox__fail(op->ctx, OX_ERR_INVALID, "%s: %s is %s; it must be f32, f16 or bf16",
                            op->name, i ? "v" : "k", ox_dtype_str(t->dtype));
    }
    int64_t D = query->ne[0], nq = query->ne[1], H = query->ne[2], B = query->ne[3];
    int64_t nkv = key->ne[1], Hkv = key->ne[2], Dv = value->ne[0];
    bool ok = key->ne[0] == D && key->ne[3] == B && value->ne[1] == nkv && value->ne[2] == Hkv &&
              value->ne[3] == B && Hkv > 0 && H % Hkv == 0 && dst->ne[0] == Dv &&
              dst->ne[1] == nq && dst->ne[2] == H && dst->ne[3] == B;
    if (!ok)
        return ox__fail(op->ctx, OX_ERR_INVALID,
                        "%s: shapes do not fit: q %s, k %s, v %s, dst %s (want q [D, n_q, H, B], "
                        "k [D, n_kv, H_kv, B], v [Dv, n_kv, H_kv, B], dst [Dv, n_q, H, B], "
                        "H_kv dividing H)",
                        op->name, ox__shape_str(query, sq, sizeof sq),
                        ox__shape_str(key, sk, sizeof sk), ox__shape_str(value, sv, sizeof sv),
                        ox__shape_str(dst, sd, sizeof sd));
    if (mask && (mask->dtype != OX_DTYPE_F32 || mask->ne[0] != nkv || mask->ne[1] != nq ||
                 mask->ne[2] != 1 || mask->ne[3] != 1))
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: mask %s must be f32 [n_kv=%lld, n_q=%lld, 1, 1]",
                        op->name, ox__shape_str(mask, sd, sizeof sd), (long long)nkv, (long long)nq);
    if (params->causal && nq > nkv)
        return ox__fail(op->ctx, OX_ERR_INVALID, "%s: causal attention needs n_q %lld <= n_kv %lld",
                        op->name, (long long)nq, (long long)nkv);
    if (op->cpu) {
        ox__view vd = view(dst), vq = view(query), vk = view(key), vv = view(value),
                 vm = mask ? view(mask) : vd;
        ox__att_pages cp = {0};
        if (pages) {
            ox__view vp = view(pages->table);
            cp = (ox__att_pages){(const int32_t *)(const void *)vp.data, pages->shift, pages->n_pages};
        }
        return ox__cpu_attention(&op->exec, &vd, &vq, &vk, &vv, mask ? &vm : NULL, params,
                                 pages ? &cp : NULL);
    }
    return ox__dev_attention(op, dst, query, key, value, mask, params, pages);
}

ox_status ox_attention(ox_queue *q, const ox_tensor *dst, const ox_tensor *query,
                       const ox_tensor *key, const ox_tensor *value, const ox_tensor *mask,
                       const ox_attention_params *params)
{
    ox__op op;
    ox_status s = op_begin(&op, "ox_attention", q);
    if (s != OX_OK || (s = arg(&op, "dst", dst, false)) || (s = arg(&op, "q", query, false)) ||
        (s = arg(&op, "k", key, false)) || (s = arg(&op, "v", value, false)) ||
        (s = arg(&op, "mask", mask, true)) || (s = want_dtype(&op, "dst", dst, OX_DTYPE_F32)) ||
        (s = want_dtype(&op, "q", query, OX_DTYPE_F32)))
        return s;
    return attention_run(&op, dst, query, key, value, mask, params, NULL);
}

ox_status ox_attention_paged(ox_queue *q, const ox_tensor *dst, const ox_tensor *query,
                             const ox_tensor *k_pool, const ox_tensor *v_pool,
                             const ox_tensor *pages, int page_size, int64_t n_kv,
                             const ox_tensor *mask, const ox_attention_params *params)
{
    ox__op op;
    char sk[96], sv[96], sp[96];
    ox_status s = op_begin(&op, "ox_attention_paged", q);
    if (s != OX_OK || (s = arg(&op, "dst", dst, false)) || (s = arg(&op, "q", query, false)) ||
        (s = arg(&op, "k_pool", k_pool, false)) || (s = arg(&op, "v_pool", v_pool, false)) ||
        (s = arg(&op, "pages", pages, false)) || (s = arg(&op, "mask", mask, true)) ||
        (s = want_dtype(&op, "dst", dst, OX_DTYPE_F32)) ||
        (s = want_dtype(&op, "q", query, OX_DTYPE_F32)) ||
        (s = want_dtype(&op, "pages", pages, OX_DTYPE_I32)))
        return s;
    if (page_size <= 0 || (page_size & (page_size - 1)) || page_size > (1 << 20))
        return ox__fail(op.ctx, OX_ERR_INVALID,
                        "ox_attention_paged: page_size %d is not a power of two from 1 to 2^20",
                        page_size);
    int64_t rows = k_pool->ne[1], n_pages = rows / page_size, need = 0;
    if (n_kv >= 0) need = (n_kv + page_size - 1) / page_size;
    if (n_kv < 0 || n_kv > INT32_MAX / 2 || rows == 0 || rows % page_size || v_pool->ne[1] != rows ||
        k_pool->ne[3] != 1 || v_pool->ne[3] != 1 || query->ne[3] != 1 ||
        pages->nb[0] != (int64_t)sizeof(int32_t) || pages->ne[0] < need ||
        pages->ne[1] * pages->ne[2] * pages->ne[3] != 1)
        return ox__fail(op.ctx, OX_ERR_INVALID,
                        "ox_attention_paged: %lld keys in pages of %d do not fit k_pool %s, "
                        "v_pool %s, pages %s (want pools [D, n_pages * page_size, H_kv, 1] alike, "
                        "a contiguous i32 table of at least %lld pages, one batch)",
                        (long long)n_kv, page_size, ox__shape_str(k_pool, sk, sizeof sk),
                        ox__shape_str(v_pool, sv, sizeof sv), ox__shape_str(pages, sp, sizeof sp),
                        (long long)need);
    ox_tensor k = *k_pool, v = *v_pool; /* logical views: n_kv rows, reached through the table */
    k.ne[1] = v.ne[1] = n_kv;
    int shift = 0;
    while ((1 << shift) < page_size) shift++;
    ox__dev_pages pg = {pages, page_size, shift, n_pages};
    return attention_run(&op, dst, query, &k, &v, mask, params, &pg);
}
