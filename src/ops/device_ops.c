/* Operators on devices other than the CPU: pick the kernel (kernels/<name>.oxc)
 * and its build defines, the launch geometry from the device's limits, and
 * the arguments. Every tensor is passed the same way: its buffer and byte
 * offset (ARG_BUF), then its four sizes and four strides in elements
 * (ARG_SHAPE). */
#include <stdio.h>
#include <string.h>

#include "backends/cpu/cpu_backend.h"
#include "ops/ops_internal.h"
#include "ops/tune.h"

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
    char options[512];
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

/* OX_PROFILE=1: every launch waited for and timed, a table per kernel and
 * options printed to stderr at exit (a developer's tool). */
#include <stdlib.h>
typedef struct profile_row {
    char key[640];
    double seconds;
    long calls;
} profile_row;
static profile_row profile_rows[256];
static int profile_count, profile_on = -1;
static pthread_mutex_t profile_lock = PTHREAD_MUTEX_INITIALIZER;
static void profile_print(void)
{
    double total = 0;
    for (int i = 0; i < profile_count; i++) total += profile_rows[i].seconds;
    for (int i = 0; i < profile_count; i++)
        for (int j = i + 1; j < profile_count; j++)
            if (profile_rows[j].seconds > profile_rows[i].seconds) {
                profile_row t = profile_rows[i];
                profile_rows[i] = profile_rows[j];
                profile_rows[j] = t;
            }
    fprintf(stderr, "OX_PROFILE: %.3f s in %d kernels\n", total, profile_count);
    for (int i = 0; i < profile_count; i++)
        fprintf(stderr, "%9.3f ms %5.1f%% %7ld  %s\n", profile_rows[i].seconds * 1e3,
                100 * profile_rows[i].seconds / total, profile_rows[i].calls, profile_rows[i].key);
}

/* OpenCL on a CPU: half conversions in integer arithmetic (prelude_opencl.h)
 * for the kernels whose work-items the compiler vectorises (PoCL: F16 add
 * 1.9 -> 12.8 GB/s); its vload_half, a call there, keeps them scalar. Kernels
 * with long scalar loops keep vload_half, which is one instruction then. */
static void soft_half_option(launch *l)
{
    if (l->op->device->backend->iface->kernel_language == OX__KERNEL_OPENCL &&
        l->op->device->info.type == OX_DEVICE_CPU)
        option(l, "OX_SOFT_HALF", 1);
}

/* Reproducible mode (docs/ARCHITECTURE.md): every device builds the same
 * kernels with the same reduction orders. Parameters that change an order
 * (work-group sizes of trees, lanes, chunks, key blocks, splits) take one
 * value on every device; those that do not (rows per group, tiles of the
 * products, whose outputs each add up along k in order) stay tuned. */
static bool repro(const ox__op *op)
{
    return op->ctx->reproducible;
}

/* Build (or find) the program and launch `kernel`. */
static ox_status run(launch *l, const char *file, const char *kernel, const size_t groups[3],
                     const size_t local[3])
{
    const ox__op *op = l->op;
    const char *source = ox__kernel_source(file);

    if (repro(op)) option(l, "OX_REPRO", 1);

    if (!source)
        return ox__fail(op->ctx, OX_ERR_INTERNAL, "%s: kernel source '%s' is not embedded",
                        op->name, file);
    ox__program *program;
    ox_status s = ox__device_program(op->device, file, source, l->options, &program);
    if (s != OX_OK) return s;
    ox__kernel *k;
    if ((s = ox__program_kernel(program, kernel, &k)) != OX_OK) return s;
    if (profile_on < 0) {
        const char *env = getenv("OX_PROFILE");
        profile_on = env && *env && strcmp(env, "0") != 0;
        if (profile_on) atexit(profile_print);
    }
    double t0 = 0;
    if (profile_on) {
        op->device->backend->iface->queue_finish(op->queue->impl);
        t0 = ox__seconds();
    }
    s = ox__kernel_launch(op->device, op->queue->impl, k, groups, local, l->n_args, l->args, NULL);
    if (profile_on && s == OX_OK) {
        op->device->backend->iface->queue_finish(op->queue->impl);
        double dt = ox__seconds() - t0;
        char key[640];
        snprintf(key, sizeof key, "%s %s", kernel, l->options);
        pthread_mutex_lock(&profile_lock);
        int i = 0;
        while (i < profile_count && strcmp(profile_rows[i].key, key) != 0) i++;
        if (i < (int)(sizeof profile_rows / sizeof profile_rows[0])) {
            if (i == profile_count) snprintf(profile_rows[profile_count++].key, sizeof profile_rows[0].key, "%s", key);
            profile_rows[i].seconds += dt;
            profile_rows[i].calls++;
        }
        pthread_mutex_unlock(&profile_lock);
    }
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(op->ctx));
        return ox__fail(op->ctx, s, "%s: %s", op->name, message);
    }
    return OX_OK;
}

/* A reduction's work-group size in reproducible mode: exactly `want`, or
 * the launch is refused where the device's groups are smaller. */
static ox_status repro_group(const ox__op *op, size_t want)
{
    size_t limit = op->device->info.max_work_group_size ? op->device->info.max_work_group_size : 64;
    if (want <= limit) return OX_OK;
    return ox__fail(op->ctx, OX_ERR_UNSUPPORTED,
                    "%s: reproducible mode needs work-groups of %zu on every device; %s allows %zu",
                    op->name, want, op->device->info.id, limit);
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
    size_t want = t->ne[0] >= 256 ? 256 : 64;
    ox_status s;
    if (repro(l->op) && (s = repro_group(l->op, want))) return s; /* the tree's shape */
    size_t wg = group_size(l->op, want);
    option(l, "WG", (long)wg);
    size_t local[3] = {wg, 1, 1};
    size_t groups[3] = {(size_t)(t->ne[1] * t->ne[2] * t->ne[3]), 1, 1};
    return run(l, file, kernel, groups, local);
}

/* ---- contiguous fast paths ------------------------------------------------------ */

static bool same_shape(const ox_tensor *x, const ox_tensor *y)
{
    return memcmp(x->ne, y->ne, sizeof x->ne) == 0;
}

/* How b repeats over dst in a contiguous binary op: 0 laid out like dst, 1
 * one row of dst->ne[0] repeated, 2 one element; -1 none of these. */
static int broadcast_mode(const ox_tensor *dst, const ox_tensor *b)
{
    if (!ox_tensor_is_contiguous(b)) return -1;
    if (same_shape(dst, b)) return 0;
    if (b->ne[1] * b->ne[2] * b->ne[3] != 1) return -1;
    if (b->ne[0] == dst->ne[0]) return 1;
    return b->ne[0] == 1 ? 2 : -1;
}

/* Launch a FLAT kernel over rows of `cols` contiguous elements (VEC per
 * work-item, tuned). */
static ox_status run_flat(launch *l, const char *file, const char *kernel, ox_dtype dtype,
                          int64_t cols, int64_t rows)
{
    ox__tune_params tp;
    ox__tune_get(l->op->device, OX__TUNE_ELEMENTWISE, ox_dtype_str(dtype), &tp, NULL);
    int vec = tp.v[0];
    size_t wg = group_size(l->op, (size_t)tp.v[1]);
    option(l, "FLAT", 1);
    option(l, "VEC", vec);
    soft_half_option(l);
    size_t items = (size_t)((cols + vec - 1) / vec);
    size_t groups[3] = {(items + wg - 1) / wg, (size_t)rows, 1}, local[3] = {wg, 1, 1};
    return run(l, file, kernel, groups, local);
}

/* Rows for a FLAT launch: one row of everything when b is not a repeated
 * row, else dst's rows (a grid's second dimension holds at least 65535). */
static bool flat_rows(const ox_tensor *dst, int mode, int64_t *cols, int64_t *rows)
{
    int64_t n = ox_tensor_nelements(dst);
    *cols = mode == 1 ? dst->ne[0] : n;
    *rows = n / *cols;
    return *rows <= 65535;
}

ox_status ox__dev_binary(const ox__op *op, ox_binary_op kind, const ox_tensor *dst,
                         const ox_tensor *a, const ox_tensor *b)
{
    int mode = broadcast_mode(dst, b);
    int64_t cols, rows;
    if (mode >= 0 && ox_tensor_is_contiguous(dst) && ox_tensor_is_contiguous(a) &&
        same_shape(dst, a) && flat_rows(dst, mode, &cols, &rows)) {
        launch l = {.op = op};
        option(&l, "DT", dst->dtype);
        option(&l, "OP", kind);
        option(&l, "BMODE", mode);
        arg_buffer(&l, dst);
        arg_buffer(&l, a);
        arg_buffer(&l, b);
        arg_i64(&l, cols);
        return run_flat(&l, "elementwise", "binary_flat", dst->dtype, cols, rows);
    }
    launch l = {.op = op};
    option(&l, "DT", dst->dtype);
    option(&l, "OP", kind);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, b);
    return run_elementwise(&l, "elementwise", "binary", dst);
}

/* unary_flat: dst = f(a) elementwise for contiguous dst and a of one shape;
 * flat_op 0 the unary op `kind`, 1 scale (p0 x + p1), 2 clamp [p0, p1].
 * Returns OX_ERR_UNSUPPORTED, having done nothing, for other layouts. */
static ox_status unary_flat(const ox__op *op, int flat_op, int kind, const ox_tensor *dst,
                            const ox_tensor *a, float p0, float p1)
{
    int64_t cols, rows;
    if (!ox_tensor_is_contiguous(dst) || !ox_tensor_is_contiguous(a) || !same_shape(dst, a) ||
        !flat_rows(dst, 0, &cols, &rows))
        return OX_ERR_UNSUPPORTED;
    launch l = {.op = op};
    option(&l, "DT", dst->dtype);
    option(&l, "OP", kind);
    option(&l, "FLAT_OP", flat_op);
    arg_buffer(&l, dst);
    arg_buffer(&l, a);
    arg_i64(&l, cols);
    arg_f32(&l, p0);
    arg_f32(&l, p1);
    return run_flat(&l, "elementwise", "unary_flat", dst->dtype, cols, rows);
}

ox_status ox__dev_glu(const ox__op *op, ox_unary_op act, const ox_tensor *dst,
                      const ox_tensor *gate, const ox_tensor *up)
{
    int64_t cols, rows;
    if (ox_tensor_is_contiguous(dst) && ox_tensor_is_contiguous(gate) &&
        ox_tensor_is_contiguous(up) && flat_rows(dst, 0, &cols, &rows)) {
        launch l = {.op = op};
        option(&l, "DT", dst->dtype);
        option(&l, "OP", act);
        arg_buffer(&l, dst);
        arg_buffer(&l, gate);
        arg_buffer(&l, up);
        arg_i64(&l, cols);
        return run_flat(&l, "elementwise", "glu_flat", dst->dtype, cols, rows);
    }
    ox_status s = ox__dev_unary(op, act, dst, gate);
    return s != OX_OK ? s : ox__dev_binary(op, OX_BINARY_MUL, dst, dst, up);
}

ox_status ox__dev_scale(const ox__op *op, const ox_tensor *dst, const ox_tensor *a, float scale,
                        float bias)
{
    ox_status fs = unary_flat(op, 1, 0, dst, a, scale, bias);
    if (fs != OX_ERR_UNSUPPORTED) return fs;
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
    ox_status fs = unary_flat(op, 2, 0, dst, a, lo, hi);
    if (fs != OX_ERR_UNSUPPORTED) return fs;
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
    ox_status fs = unary_flat(op, 0, kind, dst, a, 0.0f, 0.0f);
    if (fs != OX_ERR_UNSUPPORTED) return fs;
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

/* A contiguous-rows launch (rows.oxc, CROWS): tuned lanes, rows per group
 * and chunk for the dtype. */
static ox_status run_crows(launch *l, const char *kernel, ox_dtype dtype, int64_t rows)
{
    ox__tune_params tp;
    ox__tune_get(l->op->device, OX__TUNE_ROWS, ox_dtype_str(dtype), &tp, NULL);
    if (repro(l->op)) {
        /* element i into partial i mod 16, then one halving tree: lanes
         * (16, 1) or chunks (1, 16) give the same sums, other splits not */
        bool lanes = tp.v[0] > 1;
        tp.v[0] = lanes ? 16 : 1;
        tp.v[2] = lanes ? 1 : 16;
        ox_status s = repro_group(l->op, (size_t)(tp.v[0] * tp.v[1]));
        if (s != OX_OK) return s;
    }
    option(l, "CROWS", 1);
    option(l, "LANES", tp.v[0]);
    option(l, "ROWS", tp.v[1]);
    option(l, "CHUNK", tp.v[2]);
    size_t groups[3] = {1, ((size_t)rows + (size_t)tp.v[1] - 1) / (size_t)tp.v[1], 1};
    size_t local[3] = {(size_t)tp.v[0], (size_t)tp.v[1], 1};
    if (groups[1] > 65535) return OX_ERR_UNSUPPORTED; /* a grid's second dimension */
    return run(l, "rows", kernel, groups, local);
}

/* A parameter of one contiguous row, or absent. */
static bool one_row(const ox_tensor *t)
{
    return !t || (ox_tensor_is_contiguous(t) && t->ne[1] * t->ne[2] * t->ne[3] == 1);
}

static void softmax_options(launch *l, const ox_tensor *a, const ox_tensor *mask,
                            bool log_softmax)
{
    option(l, "SOFTMAX", 1);
    option(l, "DT", a->dtype);
    option(l, "DT_M", mask ? mask->dtype : OX_DTYPE_F32);
    option(l, "HAS_MASK", mask != NULL);
    option(l, "LOG", log_softmax);
}

ox_status ox__dev_softmax(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                          const ox_tensor *mask, float scale, bool log_softmax)
{
    int64_t rows = a->ne[1] * a->ne[2] * a->ne[3];
    if (ox_tensor_is_contiguous(dst) && ox_tensor_is_contiguous(a) &&
        (!mask || (ox_tensor_is_contiguous(mask) && mask->ne[2] * mask->ne[3] == 1 &&
                   a->ne[1] % mask->ne[1] == 0))) {
        launch l = {.op = op};
        softmax_options(&l, a, mask, log_softmax);
        arg_buffer(&l, dst);
        arg_buffer(&l, a);
        arg_buffer(&l, mask ? mask : a); /* unused without HAS_MASK */
        arg_i64(&l, a->ne[0]);
        arg_i64(&l, rows);
        arg_i64(&l, mask ? mask->ne[1] : 1);
        arg_f32(&l, scale);
        ox_status fs = run_crows(&l, "softmax_c", a->dtype, rows);
        if (fs != OX_ERR_UNSUPPORTED) return fs;
    }
    launch l = {.op = op};
    softmax_options(&l, a, mask, log_softmax);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, mask ? mask : a); /* unused without HAS_MASK */
    arg_f32(&l, scale);
    return run_rows(&l, "rows", "softmax", a);
}

/* The build options of both norm kernels. */
static void norm_options(launch *l, const ox_tensor *a, const ox_tensor *weight,
                         const ox_tensor *bias, bool rms)
{
    option(l, "NORM", 1);
    option(l, "RMS", rms);
    option(l, "DT", a->dtype);
    option(l, "HAS_W", weight != NULL);
    option(l, "DT_W", weight ? weight->dtype : a->dtype);
    option(l, "HAS_B", bias != NULL);
    option(l, "DT_B", bias ? bias->dtype : a->dtype);
}

ox_status ox__dev_norm(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                       const ox_tensor *weight, const ox_tensor *bias, float eps, bool rms)
{
    int64_t rows = a->ne[1] * a->ne[2] * a->ne[3];
    if (ox_tensor_is_contiguous(dst) && ox_tensor_is_contiguous(a) && one_row(weight) &&
        one_row(bias)) {
        launch l = {.op = op};
        norm_options(&l, a, weight, bias, rms);
        arg_buffer(&l, dst);
        arg_buffer(&l, a);
        arg_buffer(&l, weight ? weight : a);
        arg_buffer(&l, bias ? bias : a);
        arg_i64(&l, a->ne[0]);
        arg_i64(&l, rows);
        arg_f32(&l, eps);
        ox_status fs = run_crows(&l, "row_norm_c", a->dtype, rows);
        if (fs != OX_ERR_UNSUPPORTED) return fs;
    }
    launch l = {.op = op};
    norm_options(&l, a, weight, bias, rms);
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
    option(&l, "TABLE", positions->dtype == OX_DTYPE_F32);
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

ox_status ox__dev_add_rms_norm(const ox__op *op, const ox_tensor *x, const ox_tensor *delta,
                               const ox_tensor *delta_weight, const ox_tensor *out,
                               const ox_tensor *weight, float eps)
{
    int64_t rows = x->ne[1] * x->ne[2] * x->ne[3];
    launch l = {.op = op};
    option(&l, "ADD_NORM", 1);
    option(&l, "HAS_DW", delta_weight != NULL);
    arg_buffer(&l, x);
    arg_buffer(&l, delta);
    arg_buffer(&l, delta_weight ? delta_weight : weight); /* unused without HAS_DW */
    arg_buffer(&l, out);
    arg_buffer(&l, weight);
    arg_i64(&l, x->ne[0]);
    arg_i64(&l, rows);
    arg_f32(&l, eps);
    ox_status s = run_crows(&l, "add_norm_c", OX_DTYPE_F32, rows);
    if (s != OX_ERR_UNSUPPORTED) return s;
    /* more rows than one grid dimension holds: the three ops */
    ox_tensor normed = *delta;
    if (delta_weight) {
        ox_buffer *scratch;
        size_t bytes = (size_t)ox_tensor_nelements(delta) * sizeof(float);
        if ((s = ox__queue_scratch(op->queue, bytes, &scratch))) return s;
        normed = ox_tensor_make(scratch, 0, OX_DTYPE_F32, delta->ne[0], delta->ne[1],
                                delta->ne[2], delta->ne[3]);
        if ((s = ox__dev_norm(op, &normed, delta, delta_weight, NULL, eps, true))) return s;
    }
    if ((s = ox__dev_binary(op, OX_BINARY_ADD, x, x, &normed))) return s;
    return ox__dev_norm(op, out, x, weight, NULL, eps, true);
}

ox_status ox__dev_rope_qk(const ox__op *op, const ox_tensor *q_dst, const ox_tensor *q,
                          const ox_tensor *q_weight, const ox_tensor *k_dst, const ox_tensor *k,
                          const ox_tensor *k_weight, const ox_tensor *positions,
                          const ox_rope_params *params, float eps)
{
    launch l = {.op = op};
    int64_t dmax = 64;
    while (dmax < q->ne[0]) dmax *= 2;
    /* a lane per pair on GPUs; CPU-like devices run lanes one after another
     * between barriers: fewer lanes, more pairs each */
    bool gpu = op->device->info.type == OX_DEVICE_GPU ||
               op->device->info.type == OX_DEVICE_ACCELERATOR;
    size_t lanes = group_size(op, gpu ? (size_t)(q->ne[0] / 2 > 32 ? q->ne[0] / 2 : 32) : 16);
    if (repro(op)) { /* the lanes of the norm's sum */
        ox_status s = repro_group(op, 16);
        if (s != OX_OK) return s;
        lanes = 16;
    }
    option(&l, "ROPE_QK", 1);
    option(&l, "DT_QD", q_dst->dtype);
    option(&l, "DT_KD", k_dst ? k_dst->dtype : OX_DTYPE_F32);
    option(&l, "HAS_QW", q_weight != NULL);
    option(&l, "HAS_KW", k_weight != NULL);
    option(&l, "NEOX", params->mode == OX_ROPE_NEOX);
    option(&l, "TABLE", positions->dtype == OX_DTYPE_F32);
    option(&l, "DMAX", (long)dmax);
    option(&l, "LANES", (long)lanes);
    arg_tensor(&l, q_dst);
    arg_tensor(&l, q);
    arg_buffer(&l, q_weight ? q_weight : q); /* unused without HAS_QW */
    arg_tensor(&l, k_dst ? k_dst : q_dst);   /* without keys: no group takes them */
    arg_tensor(&l, k ? k : q);
    arg_buffer(&l, k_weight ? k_weight : q);
    arg_buffer(&l, positions);
    arg_i32(&l, k ? (int32_t)k->ne[1] : 0);
    arg_i32(&l, params->n_dims);
    arg_f32(&l, params->freq_base);
    arg_f32(&l, params->freq_scale);
    arg_f32(&l, eps);
    size_t groups[3] = {(size_t)(q->ne[2] * q->ne[3]), 1, 1}, local[3] = {lanes, 1, 1};
    return run(&l, "rope", "rope_qk", groups, local);
}

static ox__native_tensor native_tensor(const ox_tensor *t)
{
    ox__native_tensor n = {.buffer = t->buffer->memory->impl,
                           .offset = t->buffer->offset + t->offset, .dtype = (int)t->dtype};
    memcpy(n.ne, t->ne, sizeof n.ne);
    memcpy(n.nb, t->nb, sizeof n.nb);
    return n;
}

/* The activation rows of a matmul with quantized weights: a (F32, K along
 * a_sk, rows m along a_sm, batches over ne2/ne3) as `rows` rows of K. */
typedef struct act_rows {
    int64_t K, M, rows, a_sm, a_sk;
    int qblock; /* activation block: 256 for the K-quants (Q8_K), else 32 (Q8_0) */
} act_rows;

static act_rows activation_rows(const ox_tensor *a, ox_dtype weights, unsigned flags)
{
    bool ta = flags & OX_MATMUL_TRANS_A;
    act_rows r;
    r.K = ta ? a->ne[1] : a->ne[0];
    r.M = ta ? a->ne[0] : a->ne[1];
    r.rows = r.M * a->ne[2] * a->ne[3];
    r.a_sm = (ta ? a->nb[0] : a->nb[1]) / 4;
    r.a_sk = (ta ? a->nb[1] : a->nb[0]) / 4;
    r.qblock = weights == OX_DTYPE_Q4_K || weights == OX_DTYPE_Q5_K || weights == OX_DTYPE_Q6_K
                   ? 256 : 32;
    return r;
}

/* ---- products with quantized weights ------------------------------------------------ */

/* How a product's activations must be rounded: to int8 blocks (xq, xd, xs
 * for qmatvec) or to float values (for qmatvec_f and the tiled kernel), per
 * 32 or per 256 (K-quants). Products that agree share one rounding. */
typedef enum act_kind { ACT_INT, ACT_FLOAT } act_kind;

typedef struct act_format {
    act_kind kind;
    int qblock;
    size_t offset;       /* in the queue's scratch */
    ox_tensor xq, xd, xs; /* ACT_INT */
    ox_tensor rounded;   /* ACT_FLOAT: contiguous {K, M, ne2, ne3} floats */
} act_format;

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* Bytes of the scratch one format takes (256-aligned parts). */
static size_t act_bytes(act_kind kind, const act_rows *r)
{
    size_t values = (size_t)(r->rows * r->K);
    if (kind == ACT_FLOAT) return align_up(values * sizeof(float), 256);
    return align_up(values, 256) +
           align_up((size_t)(r->rows * (r->K / r->qblock)) * sizeof(float), 256) +
           align_up((size_t)(r->rows * (r->K / 16)) * sizeof(int32_t), 256);
}

/* Round a into format f at f->offset of `scratch`: quantize_act (int8, the
 * CPU's formulas, kernels/quant.oxc) or round_act (the same values as
 * floats, kernels/matmul.oxc). */
static ox_status act_make(const ox__op *op, const ox_tensor *a, const act_rows *r,
                          ox_buffer *scratch, act_format *f)
{
    launch l = {.op = op};
    int64_t n_blocks = r->rows * (r->K / r->qblock);
    if (f->kind == ACT_FLOAT) {
        f->rounded = ox_tensor_make(scratch, f->offset, OX_DTYPE_F32, r->K, r->M, a->ne[2], a->ne[3]);
        option(&l, "QBLOCK", f->qblock);
        arg_buffer(&l, &f->rounded);
    } else {
        size_t q_bytes = align_up((size_t)(r->rows * r->K), 256);
        size_t d_bytes = align_up((size_t)n_blocks * sizeof(float), 256);
        f->xq = ox_tensor_make(scratch, f->offset, OX_DTYPE_I32, 1, 1, 1, 1);
        f->xd = ox_tensor_make(scratch, f->offset + q_bytes, OX_DTYPE_F32, 1, 1, 1, 1);
        f->xs = ox_tensor_make(scratch, f->offset + q_bytes + d_bytes, OX_DTYPE_I32, 1, 1, 1, 1);
        option(&l, "QUANTIZE_ACT", 1);
        option(&l, "QB", f->qblock);
        arg_buffer(&l, &f->xq);
        arg_buffer(&l, &f->xd);
        arg_buffer(&l, &f->xs);
    }
    arg_tensor(&l, a);
    arg_i64(&l, r->M);
    arg_i64(&l, r->K);
    arg_i64(&l, r->a_sm);
    arg_i64(&l, r->a_sk);
    arg_i64(&l, n_blocks);
    size_t local[3] = {group_size(op, 64), 1, 1};
    size_t groups[3] = {((size_t)n_blocks + local[0] - 1) / local[0], 1, 1};
    return f->kind == ACT_FLOAT ? run(&l, "matmul", "round_act", groups, local)
                                : run(&l, "quant", "quantize_act", groups, local);
}

/* What one product with quantized weights runs. */
typedef enum quant_path { QP_ROWS, QP_ROWS_FLOAT, QP_TILED } quant_path;

typedef struct quant_plan {
    quant_path path;
    act_kind kind;
    int qblock;
    int lanes, rows, mt, dot4; /* QP_ROWS / QP_ROWS_FLOAT */
} quant_plan;

/* Whether the rows of dst (over m and the batches) are contiguous along N
 * and evenly spaced, and b is one matrix of N contiguous rows of blocks: the
 * layout the row kernels write and read. */
static bool rows_layout(const ox_tensor *dst, const ox_tensor *b, unsigned flags)
{
    return (flags & OX_MATMUL_TRANS_B) && b->ne[2] == 1 && b->ne[3] == 1 && dst->nb[0] == 4 &&
           (dst->ne[2] == 1 || dst->nb[2] == dst->nb[1] * dst->ne[1]) &&
           (dst->ne[3] == 1 || dst->nb[3] == dst->nb[2] * dst->ne[2]);
}

/* The tuned (or default) path of a product: one activation row takes the
 * qmatvec family's variant, several rows qmatmul's (rows or tiles). */
static quant_plan quant_plan_of(const ox__op *op, const ox_tensor *dst, const ox_tensor *b,
                                const act_rows *r, unsigned flags)
{
    quant_plan p = {.path = QP_TILED, .kind = ACT_FLOAT, .qblock = r->qblock};
    if (!rows_layout(dst, b, flags)) return p;
    const char *cls = ox_dtype_str(b->dtype);
    ox__tune_params tp;
    if (repro(op)) {
        /* int8 activations and one lane a row: each output adds its units'
         * exact integer sums in order, whatever the rows per group and the
         * number of activation rows (so a batch gives each row the bits it
         * gets alone) */
        ox__tune_get(op->device, OX__TUNE_QMATMUL, cls, &tp, NULL);
        int rows = tp.v[0] == 0 ? tp.v[1] * tp.v[2] : tp.v[2], mt = r->rows == 1 ? 1 : tp.v[3];
        if (rows > 64) rows = 64;
        bool dot4 = (op->device->info.features & OX_FEATURE_BIT(OX_FEATURE_INT8_DOT)) != 0;
        return (quant_plan){QP_ROWS, ACT_INT, r->qblock, 1, rows, mt, dot4};
    }
    if (r->rows == 1) {
        ox__tune_get(op->device, OX__TUNE_QMATVEC, cls, &tp, NULL);
        if (tp.v[0] == 1)
            return (quant_plan){QP_ROWS_FLOAT, ACT_FLOAT, r->qblock, tp.v[1], tp.v[2], 1, 0};
        return (quant_plan){QP_ROWS, ACT_INT, r->qblock, tp.v[1], tp.v[2], 1, tp.v[3]};
    }
    ox__tune_get(op->device, OX__TUNE_QMATMUL, cls, &tp, NULL);
    if (tp.v[0] == 0) return (quant_plan){QP_ROWS, ACT_INT, r->qblock, tp.v[1], tp.v[2], tp.v[3], tp.v[4]};
    return p;
}

/* The CPU's data of a tensor or buffer view (reproducible mode's native
 * products). */
static void *cpu_data(const ox_tensor *t)
{
    return ox__cpu_buffer_data(t->buffer->memory->impl) + t->buffer->offset + t->offset;
}

/* The product itself, its activations rounded already (format f). */
static ox_status quant_product(const ox__op *op, const ox_tensor *dst, const ox_tensor *b,
                               const act_rows *r, const quant_plan *p, const act_format *f)
{
    int64_t N = b->ne[1];
    if (p->path == QP_ROWS && op->device->backend->iface == ox__cpu_backend() &&
        ox__cpu_qmatvec_repro_supported(b->dtype)) {
        /* reproducible mode on the CPU: native code, the kernel's bits */
        ox__cpu_qmatvec_repro(&op->exec, b->dtype, cpu_data(b), (size_t)b->nb[1],
                              cpu_data(&f->xq), cpu_data(&f->xd), cpu_data(&f->xs), cpu_data(dst),
                              dst->nb[1] / 4, N, r->K, r->rows, r->qblock);
        return OX_OK;
    }
    launch l = {.op = op};
    option(&l, p->path == QP_ROWS ? "QMATVEC" : "QMATVEC_F", 1);
    option(&l, "DT_Q", b->dtype);
    if (p->path == QP_ROWS) option(&l, "QB", r->qblock);
    else soft_half_option(&l);
    option(&l, "LANES", p->lanes);
    option(&l, "ROWS", p->rows);
    if (p->path == QP_ROWS) {
        option(&l, "MT", p->mt);
        option(&l, "DOT4", p->dot4);
    }
    arg_buffer(&l, dst);
    if (p->path == QP_ROWS) arg_i64(&l, dst->nb[1] / 4);
    arg_buffer(&l, b);
    arg_i64(&l, b->nb[1]);
    if (p->path == QP_ROWS) {
        arg_buffer(&l, &f->xq);
        arg_buffer(&l, &f->xd);
        arg_buffer(&l, &f->xs);
    } else {
        arg_buffer(&l, &f->rounded);
    }
    arg_i64(&l, N);
    arg_i64(&l, r->K);
    if (p->path == QP_ROWS) arg_i64(&l, r->rows);
    size_t groups[3] = {1, ((size_t)N + (size_t)p->rows - 1) / (size_t)p->rows,
                        ((size_t)r->rows + (size_t)p->mt - 1) / (size_t)p->mt};
    size_t local[3] = {(size_t)p->lanes, (size_t)p->rows, 1};
    return run(&l, "quant", p->path == QP_ROWS ? "qmatvec" : "qmatvec_f", groups, local);
}

/* The largest element offset of an ne0 x ne1 matrix with strides s0, s1
 * (elements), for the kernels' 32-bit index arithmetic. */
static int64_t max_offset(int64_t ne0, int64_t ne1, int64_t s0, int64_t s1)
{
    return (ne0 - 1) * (s0 < 0 ? -s0 : s0) + (ne1 - 1) * (s1 < 0 ? -s1 : s1);
}

/* matmul.oxc matmul with the tuned parameters tp (TK WG_M WG_N RM RN VW
 * STRM STRN PAD KWI MFIRST, tune.c): one work-group per TM x TN tile of
 * dst, one grid layer per batch. */
static ox_status tiled_matmul(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                              const ox_tensor *b, unsigned flags, const ox__tune_params *tp)
{
    launch l = {.op = op};
    bool ta = flags & OX_MATMUL_TRANS_A, tb = flags & OX_MATMUL_TRANS_B;
    int64_t ea = (int64_t)ox_dtype_size(a->dtype), eb = (int64_t)ox_dtype_size(b->dtype);
    int64_t M = dst->ne[1], N = dst->ne[0], K = ta ? a->ne[1] : a->ne[0];
    bool quant = ox_dtype_is_quantized(b->dtype);
    if (quant) eb = 1; /* byte strides; rows of K (TRANS_B) */
    int64_t a_sm = (ta ? a->nb[0] : a->nb[1]) / ea, a_sk = (ta ? a->nb[1] : a->nb[0]) / ea;
    int64_t b_sk = (tb ? b->nb[0] : b->nb[1]) / eb, b_sn = (tb ? b->nb[1] : b->nb[0]) / eb;
    int64_t d_n = dst->nb[0] / 4, d_m = dst->nb[1] / 4;
    size_t batches = (size_t)(dst->ne[2] * dst->ne[3]);
    int tk = tp->v[0], wg_m = tp->v[1], wg_n = tp->v[2], rm = tp->v[3], rn = tp->v[4];
    int64_t tm = wg_m * rm, tn = wg_n * rn;
    /* the largest offset within one matrix the kernel computes (it adds
     * each batch's base in 64 bits), its tiles reaching one tile past M, N
     * and K; a quantized b's rows are bytes */
    int64_t largest = max_offset(M + tm, K + tk, a_sm, a_sk);
    int64_t b_span = quant ? (N + tn) * b_sn : max_offset(K + tk, N + tn, b_sk, b_sn);
    int64_t d_span = max_offset(M + tm, N + tn, d_m, d_n);
    if (b_span > largest) largest = b_span;
    if (d_span > largest) largest = d_span;
    option(&l, "DT_A", a->dtype);
    option(&l, "DT_B", b->dtype);
    quant_option(&l, b->dtype);
    soft_half_option(&l);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, b);
    const ox__tune_family_desc *desc = ox__tune_family_get(OX__TUNE_MATMUL);
    for (int i = 0; i < desc->n_params; i++) option(&l, desc->param[i], tp->v[i]);
    option(&l, "A_KFAST", a_sk == 1);
    option(&l, "A_UNIT", a_sm == 1);
    option(&l, "B_KFAST", !quant && b_sk == 1 && b_sn != 1);
    option(&l, "B_UNIT", b_sn == 1);
    option(&l, "D_UNIT", d_n == 1);
    option(&l, "IDX32", largest < INT32_MAX);
    arg_i64(&l, M);
    arg_i64(&l, N);
    arg_i64(&l, K);
    arg_i64(&l, a_sm);
    arg_i64(&l, a_sk);
    arg_i64(&l, b_sk);
    arg_i64(&l, b_sn);
    size_t n_tiles = (size_t)((N + tn - 1) / tn), m_tiles = (size_t)((M + tm - 1) / tm);
    bool m_first = tp->v[10];
    size_t groups[3] = {m_first ? m_tiles : n_tiles, m_first ? n_tiles : m_tiles, batches};
    size_t local[3] = {(size_t)wg_n, (size_t)wg_m, 1};
    return run(&l, "matmul", "matmul", groups, local);
}

static ox_status float_matvec(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                              const ox_tensor *b, unsigned flags)
{
    bool ta = flags & OX_MATMUL_TRANS_A, tb = flags & OX_MATMUL_TRANS_B;
    int64_t ea = (int64_t)ox_dtype_size(a->dtype), eb = (int64_t)ox_dtype_size(b->dtype);
    int64_t N = dst->ne[0], K = ta ? a->ne[1] : a->ne[0];
    int64_t a_sk = (ta ? a->nb[1] : a->nb[0]) / ea;
    int64_t b_sk = (tb ? b->nb[0] : b->nb[1]) / eb, b_sn = (tb ? b->nb[1] : b->nb[0]) / eb;
    ox__tune_params tp;
    ox__tune_get(op->device, OX__TUNE_MATVEC, ox_dtype_str(b->dtype), &tp, NULL);
    int T = tp.v[0], R = tp.v[1], CH = tp.v[2];
    if (repro(op)) { /* one lane, one partial sum: k in order, as the tiled kernel */
        R = T * R > 64 ? 64 : T * R;
        T = 1;
        CH = 1;
    }
    launch l = {.op = op};
    option(&l, "MATVEC", 1);
    option(&l, "DT_A", a->dtype);
    option(&l, "DT_B", b->dtype);
    option(&l, "LANES", T);
    option(&l, "ROWS", R);
    option(&l, "CHUNK", CH);
    option(&l, "A_K1", a_sk == 1);
    option(&l, "B_K1", b_sk == 1);
    arg_tensor(&l, dst);
    arg_tensor(&l, a);
    arg_tensor(&l, b);
    arg_i64(&l, N);
    arg_i64(&l, K);
    arg_i64(&l, a_sk);
    arg_i64(&l, b_sk);
    arg_i64(&l, b_sn);
    size_t batches = (size_t)(dst->ne[2] * dst->ne[3]);
    size_t groups[3] = {1, ((size_t)N + (size_t)R - 1) / (size_t)R, batches};
    size_t local[3] = {(size_t)T, (size_t)R, 1};
    return run(&l, "matmul", "matvec", groups, local);
}

/* A product with quantized weights, on its own. */
static ox_status quant_matmul(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                              const ox_tensor *b, unsigned flags)
{
    act_rows r = activation_rows(a, b->dtype, flags);
    quant_plan p = quant_plan_of(op, dst, b, &r, flags);
    act_format f = {.kind = p.kind, .qblock = r.qblock};
    ox_buffer *scratch;
    ox_status s = ox__queue_scratch(op->queue, act_bytes(p.kind, &r), &scratch);
    if (s != OX_OK || (s = act_make(op, a, &r, scratch, &f))) return s;
    if (p.path != QP_TILED) return quant_product(op, dst, b, &r, &p, &f);
    ox__tune_params tp;
    /* the tiles of an F32 product whose b is read along K (dequantized as
     * it is staged, whatever the tile parameters) */
    ox__tune_get(op->device, OX__TUNE_MATMUL, "f32.f32.bt", &tp, NULL);
    return tiled_matmul(op, dst, &f.rounded, b, flags & ~(unsigned)OX_MATMUL_TRANS_A, &tp);
}

static ox_status native_matmul(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                               const ox_tensor *b, unsigned flags)
{
    const ox__backend_iface *be = op->device->backend->iface;
    if (!be->native_matmul || !op->ctx->native_libs) return OX_ERR_UNSUPPORTED;
    ox__native_tensor nd = native_tensor(dst), na = native_tensor(a), nb = native_tensor(b);
    ox_status s = be->native_matmul(op->queue->impl, &nd, &na, &nb, flags);
    if (s == OX_ERR_UNSUPPORTED) return s;
    atomic_fetch_add(&op->ctx->n_launches, 1);
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(op->ctx));
        return ox__fail(op->ctx, s, "%s: %s: %s", op->name, op->device->info.id, message);
    }
    return OX_OK;
}

ox_status ox__dev_matmul(const ox__op *op, const ox_tensor *dst, const ox_tensor *a,
                         const ox_tensor *b, unsigned flags)
{
    ox_status s = native_matmul(op, dst, a, b, flags);
    if (s != OX_ERR_UNSUPPORTED) return s;
    if (ox_dtype_is_quantized(b->dtype)) return quant_matmul(op, dst, a, b, flags);
    if (dst->ne[1] == 1) return float_matvec(op, dst, a, b, flags);
    /* the class: the dtypes, and whether b is read along K (weights stored
     * as N rows of K), which stages differently (tune.h) */
    bool tb = flags & OX_MATMUL_TRANS_B;
    int64_t eb = (int64_t)ox_dtype_size(b->dtype);
    bool b_kfast = (tb ? b->nb[0] : b->nb[1]) == eb && (tb ? b->nb[1] : b->nb[0]) != eb;
    char cls[32];
    snprintf(cls, sizeof cls, "%s.%s%s", ox_dtype_str(a->dtype), ox_dtype_str(b->dtype),
             b_kfast ? ".bt" : "");
    ox__tune_params tp;
    ox__tune_get(op->device, OX__TUNE_MATMUL, cls, &tp, NULL);
    return tiled_matmul(op, dst, a, b, flags, &tp);
}

ox_status ox__dev_matmul_many(const ox__op *op, int n, const ox_tensor *dst, const ox_tensor *a,
                              const ox_tensor *b, unsigned flags)
{
    quant_plan plans[OX_MATMUL_MANY_MAX];
    act_rows rows[OX_MATMUL_MANY_MAX];
    bool shared[OX_MATMUL_MANY_MAX];
    act_format formats[4];
    int n_formats = 0, which[OX_MATMUL_MANY_MAX];
    size_t total = 0;
    ox_status s;
    /* the products that cannot share a rounding run first, on their own
     * (they use the scratch themselves) */
    for (int i = 0; i < n; i++) {
        shared[i] = false;
        if (!ox_dtype_is_quantized(b[i].dtype) ||
            (op->device->backend->iface->native_matmul && op->ctx->native_libs)) {
            if ((s = ox__dev_matmul(op, &dst[i], a, &b[i], flags))) return s;
            continue;
        }
        rows[i] = activation_rows(a, b[i].dtype, flags);
        plans[i] = quant_plan_of(op, &dst[i], &b[i], &rows[i], flags);
        if (plans[i].path == QP_TILED) {
            if ((s = quant_matmul(op, &dst[i], a, &b[i], flags))) return s;
            continue;
        }
        shared[i] = true;
        int f = 0;
        while (f < n_formats && (formats[f].kind != plans[i].kind ||
                                 formats[f].qblock != plans[i].qblock))
            f++;
        if (f == n_formats) {
            formats[f] = (act_format){.kind = plans[i].kind, .qblock = plans[i].qblock,
                                      .offset = total};
            total += act_bytes(plans[i].kind, &rows[i]);
            n_formats++;
        }
        which[i] = f;
    }
    if (n_formats == 0) return OX_OK;
    ox_buffer *scratch;
    if ((s = ox__queue_scratch(op->queue, total, &scratch))) return s;
    for (int f = 0; f < n_formats; f++) {
        int first = 0;
        while (!shared[first] || which[first] != f) first++;
        if ((s = act_make(op, a, &rows[first], scratch, &formats[f]))) return s;
    }
    for (int i = 0; i < n; i++)
        if (shared[i] &&
            (s = quant_product(op, &dst[i], &b[i], &rows[i], &plans[i], &formats[which[i]])))
            return s;
    return OX_OK;
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
    if (!ox_dtype_is_quantized(src->dtype) && ox_tensor_is_contiguous(dst) &&
        ox_tensor_is_contiguous(src) && same_shape(dst, src)) {
        int64_t n = ox_tensor_nelements(dst);
        launch l = {.op = op};
        option(&l, "DT_S", src->dtype);
        option(&l, "DT_D", dst->dtype);
        arg_buffer(&l, dst);
        arg_buffer(&l, src);
        arg_i64(&l, n);
        return run_flat(&l, "movement", "copy_flat",
                        src->dtype == OX_DTYPE_F32 ? dst->dtype : src->dtype, n, 1);
    }
    launch l = {.op = op};
    option(&l, "DT_S", src->dtype);
    option(&l, "DT_D", dst->dtype);
    quant_option(&l, src->dtype);
    arg_tensor(&l, dst);
    arg_tensor(&l, src);
    return run_elementwise(&l, "movement", "copy", dst);
}

/* ---- attention (kernels/attention.oxc) ------------------------------------- */

/* At most this many query rows (queries x heads sharing a kv head) take the
 * decode kernel; more take the tiled one. */
#define ATT_DECODE_ROWS 8
/* Splits keep their partial results under this many bytes of scratch, and
 * take at least this many keys each when their number is chosen (fewer do
 * not repay the combine pass's launch). */
#define ATT_SCRATCH_MAX ((size_t)64 << 20)
#define ATT_SPLIT_KEYS 256

static int64_t pow2_at_least(int64_t n)
{
    int64_t p = 1;
    while (p < n) p *= 2;
    return p;
}

/* How many splits the keys [0, n_kv) take, `step` keys being the unit, for
 * `groups` work-groups per split: SPLIT when tuned to a count, else (0) as
 * many as keep every compute unit busy (two groups each) with at least two
 * steps and ATT_SPLIT_KEYS keys per split; the partial results within
 * ATT_SCRATCH_MAX. */
static int64_t att_splits(uint32_t compute_units, int split, int64_t n_kv, int64_t step,
                          int64_t groups, int64_t record_bytes)
{
    int64_t n = split;
    if (n == 0) {
        int64_t target = 2 * (int64_t)(compute_units ? compute_units : 1);
        n = groups >= target ? 1 : (target + groups - 1) / groups;
        int64_t by_keys = n_kv / (2 * step > ATT_SPLIT_KEYS ? 2 * step : ATT_SPLIT_KEYS);
        n = n < by_keys ? n : by_keys;
    }
    int64_t by_scratch = (int64_t)(ATT_SCRATCH_MAX / (size_t)record_bytes);
    if (n > by_scratch) n = by_scratch;
    if (n > n_kv / step) n = n_kv / step;
    return n < 1 ? 1 : n;
}

static void att_common_args(launch *l, const ox_tensor *dst, const ox_tensor *q,
                            const ox_tensor *k, const ox_tensor *v, const ox_tensor *mask,
                            const ox_tensor *part, float scale, int64_t split_len,
                            const ox__dev_pages *pages)
{
    arg_tensor(l, dst);
    arg_tensor(l, q);
    arg_tensor(l, k);
    arg_tensor(l, v);
    arg_tensor(l, mask ? mask : q); /* unused without HAS_MASK */
    arg_buffer(l, part);
    arg_f32(l, scale);
    arg_i32(l, (int32_t)split_len);
    arg_buffer(l, pages ? pages->table : q); /* unused without PAGED */
    arg_i32(l, pages ? (int32_t)pages->n_pages : 0);
}

/* Attention in one or two passes. Rows r = i G + g of a kv head (query i,
 * head hk G + g) are blocked: ROWS per group in the decode kernel, BQ in
 * the tiled one; with n_split > 1 each group takes split_len keys, writes
 * its partial (max, sum, sums) to the queue's scratch, and
 * attention_combine merges them. Parameters: OX__TUNE_ATTENTION for the
 * cache's dtype; blocks that do not fit the device's local memory for this
 * head size are halved. */
ox_status ox__dev_attention(const ox__op *op, const ox_tensor *dst, const ox_tensor *q,
                            const ox_tensor *k, const ox_tensor *v, const ox_tensor *mask,
                            const ox_attention_params *params, const ox__dev_pages *pages)
{
    const ox_device_info *info = &op->device->info;
    const int64_t D = q->ne[0], Dv = v->ne[0], nq = q->ne[1], H = q->ne[2], B = q->ne[3];
    const int64_t nkv = k->ne[1], Hkv = k->ne[2], nrows = nq * (H / Hkv);
    if (nq == 0 || H == 0 || B == 0 || Dv == 0) return OX_OK;
    if (D == 0 || nkv > INT32_MAX / 2 || nrows > INT32_MAX / 2)
        return ox__fail(op->ctx, OX_ERR_UNSUPPORTED,
                        "%s: head size %lld, %lld keys, %lld query rows per kv head: the kernels "
                        "take head sizes from 1 and counts below 2^30 on %s",
                        op->name, (long long)D, (long long)nkv, (long long)nrows, info->id);
    uint64_t local_max = info->local_memory_bytes ? info->local_memory_bytes : 16384;
    uint32_t compute_units = info->compute_units;
    ox__tune_params tp;
    ox__tune_get(op->device, OX__TUNE_ATTENTION, ox_dtype_str(k->dtype), &tp, NULL);
    if (repro(op)) {
        /* key blocks, lanes and splits fix the order of the online softmax:
         * one set for every device (a CPU-like device's defaults), blocks
         * fitted to 32 KiB of local memory (OpenCL's least) and splits
         * counted for 16 compute units */
        ox__tune_params fixed = {.v = {8, 0, 1, 64, 16}};
        tp = fixed;
        local_max = 32768;
        compute_units = 16;
        ox_status rs = repro_group(op, 8);
        if (rs != OX_OK) return rs;
    }
    int64_t wg = tp.v[0], lanes = tp.v[2], bq = tp.v[3], bk = tp.v[4];
    int split = tp.v[1];

    /* the tiled kernel: BQ rows (no more than there are), ROWS_Y x LANES
     * work-items, BK keys per step, halved until they fit */
    bool tiled = nrows > ATT_DECODE_ROWS;
    int64_t rows_y = 0;
    if (tiled) {
        bq = bq < pow2_at_least(nrows) ? bq : pow2_at_least(nrows);
        uint64_t bytes;
        while ((bytes = ox__tune_attention_tiled_bytes(D, Dv, lanes, bq, bk)) > local_max && bk > 8)
            bk /= 2;
        while ((bytes = ox__tune_attention_tiled_bytes(D, Dv, lanes, bq, bk)) > local_max && bq > 1)
            bq /= 2;
        tiled = bytes <= local_max;
        rows_y = wg / lanes < bq ? wg / lanes : bq;
    }
    /* the decode kernel: ROWS rows (no more than WG, whose work-items take
     * a row's scores in runs), KSTEP keys per step (a multiple of the
     * WG / LANES key rows a pass reads), halved until they fit */
    int64_t rows = 0, kstep = 0;
    if (!tiled) {
        rows = pow2_at_least(nrows < ATT_DECODE_ROWS ? nrows : ATT_DECODE_ROWS);
        rows = rows < wg ? rows : wg;
        kstep = bk > wg / lanes ? bk : wg / lanes;
        uint64_t bytes;
        while ((bytes = ox__tune_attention_decode_bytes(D, lanes, wg, rows, kstep)) > local_max &&
               kstep > wg / lanes)
            kstep /= 2;
        while ((bytes = ox__tune_attention_decode_bytes(D, lanes, wg, rows, kstep)) > local_max &&
               rows > 1)
            rows /= 2;
        if (bytes > local_max)
            return ox__fail(op->ctx, OX_ERR_UNSUPPORTED,
                            "%s: head size %lld needs %llu bytes of local memory; %s has %llu",
                            op->name, (long long)D, (unsigned long long)bytes, info->id,
                            (unsigned long long)local_max);
    }
    int64_t block = tiled ? bq : rows, step = tiled ? bk : kstep;
    int64_t row_blocks = (nrows + block - 1) / block;
    int64_t record = (Dv + 2) * (int64_t)sizeof(float);
    int64_t n_split = att_splits(compute_units, split, nkv, step, row_blocks * Hkv * B, nq * H * B * record);
    int64_t split_len = (nkv + n_split - 1) / n_split;
    split_len = (split_len + step - 1) / step * step;
    n_split = nkv ? (nkv + split_len - 1) / split_len : 1;

    ox_tensor part = *dst;
    if (n_split > 1) {
        ox_buffer *scratch;
        size_t bytes = (size_t)(n_split * nq * H * B * record);
        ox_status s = ox__queue_scratch(op->queue, bytes, &scratch);
        if (s != OX_OK) return s;
        part = ox_tensor_make(scratch, 0, OX_DTYPE_F32, (int64_t)(bytes / 4), 1, 1, 1);
    }
    launch l = {.op = op};
    int64_t esize_k = (int64_t)ox_dtype_size(k->dtype), esize_v = (int64_t)ox_dtype_size(v->dtype);
    option(&l, tiled ? "TILED" : "DECODE", 1);
    option(&l, "DT_K", k->dtype);
    option(&l, "DT_V", v->dtype);
    option(&l, "HEAD_D", (long)D);
    option(&l, "HEAD_DV", (long)Dv);
    option(&l, "HAS_MASK", mask != NULL);
    option(&l, "CAUSAL", params->causal != 0);
    option(&l, "K_UNIT", k->nb[0] == esize_k);
    option(&l, "V_UNIT", v->nb[0] == esize_v);
    option(&l, "M_UNIT", !mask || mask->nb[0] == (int64_t)sizeof(float));
    option(&l, "PAGED", pages != NULL);
    if (pages) option(&l, "PAGE_SHIFT", (long)pages->shift);
    option(&l, "LANES", (long)lanes);
    option(&l, "RUN", ox__tune_attention_run((int)lanes));
    size_t groups[3] = {(size_t)row_blocks, (size_t)(Hkv * B), (size_t)n_split};
    size_t local[3] = {(size_t)lanes, 0, 1};
    if (tiled) {
        option(&l, "ROWS_Y", (long)rows_y);
        option(&l, "BQ", (long)bq);
        option(&l, "BK", (long)bk);
        local[1] = (size_t)rows_y;
    } else {
        option(&l, "WG", (long)wg);
        option(&l, "ROWS", (long)rows);
        option(&l, "KSTEP", (long)kstep);
        local[1] = (size_t)(wg / lanes);
    }
    att_common_args(&l, dst, q, k, v, mask, &part, params->scale, split_len, pages);
    const char *kernel = tiled ? "attention_tiled" : "attention_decode";
    ox_status s = run(&l, "attention", kernel, groups, local);
    if (s != OX_OK || n_split == 1) return s;

    launch c = {.op = op};
    size_t wg_combine = group_size(op, (size_t)(Dv < 256 ? pow2_at_least(Dv) : 256));
    option(&c, "COMBINE", 1);
    option(&c, "HEAD_DV", (long)Dv);
    option(&c, "WG", (long)wg_combine);
    arg_tensor(&c, dst);
    arg_buffer(&c, &part);
    arg_i32(&c, (int32_t)n_split);
    size_t combine_groups[3] = {(size_t)nq, (size_t)H, (size_t)B};
    size_t combine_local[3] = {wg_combine, 1, 1};
    return run(&c, "attention", "attention_combine", combine_groups, combine_local);
}
