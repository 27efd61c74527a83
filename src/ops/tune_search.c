/* The tuner (openxpu/tune.h): for each tunable family and problem class,
 * a coordinate search over the family's candidate parameters on the
 * device. A candidate runs through the public op, exactly as the op layer
 * will run it later; its result is compared with the CPU's result for the
 * same inputs before it is timed, so a wrong candidate never wins. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_internal.h"
#include "ops/ops_internal.h"
#include "ops/tune.h"
#include "ops/tune_internal.h"
#include "openxpu/tune.h"

ox__tune_fault_fn ox__tune_fault;
void *ox__tune_fault_user;

#define MAX_INPUTS 12
/* A model's decode step (ox_tune_options.matrices) is timed between these
 * sizes a class: a decode step reads each weight once, from memory, so a
 * class's matrices are repeated until they are well past the last-level
 * caches (tens of MiB on CPUs and GPUs); larger models' steps are scaled
 * down, each matrix shape kept at least once */
double ox__tune_step_min_bytes = (double)(128 << 20);
#define STEP_MAX_BYTES ((double)(256 << 20))
#define STEP_MAX_PRODUCTS 2048 /* and tiny models' steps repeated at most to this many launches */
#define MAX_TRIED 256

/* The problem classes of each family, tuned in this order. */
static const char *const classes[OX__TUNE_FAMILIES][9] = {
    [OX__TUNE_MATMUL] = {"f32.f32", "f32.f32.bt", "f32.f16.bt", "f16.f32", "f32.f16"},
    [OX__TUNE_MATVEC] = {"f32", "f16", "bf16"},
    [OX__TUNE_QMATVEC] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"},
    [OX__TUNE_QMATMUL] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"},
    [OX__TUNE_ELEMENTWISE] = {"f32", "f16", "bf16"},
    [OX__TUNE_ROWS] = {"f32"},
    [OX__TUNE_ATTENTION] = {"f16", "f32"},
};

/* One problem: inputs on the device and on the CPU, the output of each. */
typedef struct problem {
    ox_context *ctx;
    ox_device *device, *cpu;
    ox_queue *q, *cq;
    int family;
    ox_dtype dtype; /* the class's dtype (weights, elements, cache) */
    unsigned flags; /* matmul: OX_MATMUL_TRANS_B for the classes "*.bt" */
    ox_tensor in[MAX_INPUTS], cin[MAX_INPUTS];
    int n_in;
    ox_tensor out, cout;
    size_t n_out;
    float *result, *reference;
    char shape[64];
    double tolerance; /* normalised mean squared error allowed */
    /* a model's decode step (matvec, qmatvec): the matrices given, and the
     * ones timed: in[1 + i] holds step_copies[i] matrices of step_rows[i]
     * rows, each a product with (a prefix of) the activation row in[0] */
    const ox_tune_matrix *model;
    int n_model, n_step;
    int64_t step_rows[MAX_INPUTS - 1], step_copies[MAX_INPUTS - 1];
} problem;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A tensor of `dtype` on the device and the same on the CPU, filled with
 * uniform values in [-1, 1) converted row by row. */
static ox_status make_input(problem *p, ox_dtype dtype, int64_t ne0, int64_t ne1, int64_t ne2,
                            int64_t ne3, uint64_t seed)
{
    int i = p->n_in;
    ox_status s = ox_tensor_alloc(p->device, dtype, ne0, ne1, ne2, ne3, &p->in[i]);
    if (s != OX_OK) return s;
    if ((s = ox_tensor_alloc(p->cpu, dtype, ne0, ne1, ne2, ne3, &p->cin[i])) != OX_OK) {
        ox_buffer_free(p->in[i].buffer);
        return s;
    }
    p->n_in++;
    int64_t rows = ne1 * ne2 * ne3;
    size_t row_bytes = ox_dtype_row_size(dtype, ne0), bytes = row_bytes * (size_t)rows;
    float *values = ox__alloc(p->ctx, (size_t)ne0 * sizeof(float));
    unsigned char *data = ox__alloc(p->ctx, bytes);
    if (!values || !data) {
        s = ox__fail(p->ctx, OX_ERR_OUT_OF_MEMORY, "ox_device_tune: out of host memory");
        goto out;
    }
    for (int64_t r = 0; r < rows && s == OX_OK; r++) {
        for (int64_t k = 0; k < ne0; k++)
            values[k] = (float)((double)(rng_next(&seed) >> 11) * 0x1.0p-52 - 1.0);
        s = ox_row_from_f32(dtype, values, data + (size_t)r * row_bytes, ne0);
    }
    if (s == OX_OK) s = ox_tensor_write(&p->in[i], data, bytes);
    if (s == OX_OK) s = ox_tensor_write(&p->cin[i], data, bytes);
out:
    ox__free(p->ctx, values, (size_t)ne0 * sizeof(float));
    ox__free(p->ctx, data, bytes);
    return s;
}

static ox_status make_output(problem *p, ox_dtype dtype, int64_t ne0, int64_t ne1, int64_t ne2,
                             int64_t ne3)
{
    ox_status s = ox_tensor_alloc(p->device, dtype, ne0, ne1, ne2, ne3, &p->out);
    if (s != OX_OK) return s;
    if ((s = ox_tensor_alloc(p->cpu, dtype, ne0, ne1, ne2, ne3, &p->cout)) != OX_OK) {
        ox_buffer_free(p->out.buffer);
        p->out.buffer = NULL;
        return s;
    }
    p->n_out = (size_t)(ne0 * ne1 * ne2 * ne3);
    p->result = ox__alloc(p->ctx, p->n_out * sizeof(float));
    p->reference = ox__alloc(p->ctx, p->n_out * sizeof(float));
    if (!p->result || !p->reference)
        return ox__fail(p->ctx, OX_ERR_OUT_OF_MEMORY, "ox_device_tune: out of host memory");
    return OX_OK;
}

static void problem_free(problem *p)
{
    for (int i = 0; i < p->n_in; i++) {
        ox_buffer_free(p->in[i].buffer);
        ox_buffer_free(p->cin[i].buffer);
    }
    if (p->out.buffer) ox_buffer_free(p->out.buffer);
    if (p->cout.buffer) ox_buffer_free(p->cout.buffer);
    if (p->result) ox__free(p->ctx, p->result, p->n_out * sizeof(float));
    if (p->reference) ox__free(p->ctx, p->reference, p->n_out * sizeof(float));
    ox_queue_free(p->q);
    ox_queue_free(p->cq);
}

/* Products with one activation row: one large matrix (in[1], beyond the
 * caches), then SMALL_MATS small ones, row slices of in[3] (a small model's
 * projections, each read once as a decode step reads its layers): the
 * parameters that win must win on both, since a decode step of a small
 * model is many short launches (Gemma 3 270M: K 640), where the per-row
 * and per-group costs that a large matrix hides count. Each writes its own
 * part of out. */
#define SMALL_MATS 16
#define SMALL_N 2048
#define SMALL_K 1024
static ox_status run_matvecs(ox_queue *q, const ox_tensor *in, const ox_tensor *out)
{
    ox_tensor o = *out;
    int64_t n_big = in[1].ne[1];
    o.ne[0] = n_big;
    o.nb[1] = o.nb[2] = o.nb[3] = o.nb[0] * n_big;
    ox_status s = ox_matmul(q, &o, &in[0], &in[1], OX_MATMUL_TRANS_B);
    for (int i = 0; i < SMALL_MATS && s == OX_OK; i++) {
        ox_tensor w = in[3], d = *out;
        w.ne[1] = SMALL_N;
        w.offset += (size_t)i * SMALL_N * w.nb[1];
        d.ne[0] = SMALL_N;
        d.offset += (size_t)(n_big + i * SMALL_N) * d.nb[0];
        d.nb[1] = d.nb[2] = d.nb[3] = d.nb[0] * SMALL_N;
        s = ox_matmul(q, &d, &in[2], &w, OX_MATMUL_TRANS_B);
    }
    return s;
}

/* A model's decode step of the class's dtype: every matrix its number of
 * times, each read once, in turn. */
static ox_status run_step(const problem *p, ox_queue *q, const ox_tensor *in, const ox_tensor *out)
{
    ox_status s = OX_OK;
    int64_t at = 0;
    for (int i = 0; i < p->n_step && s == OX_OK; i++) {
        int64_t rows = p->step_rows[i];
        for (int64_t c = 0; c < p->step_copies[i] && s == OX_OK; c++, at += rows) {
            ox_tensor x = in[0], w = in[1 + i], d = *out;
            x.ne[0] = w.ne[0];
            w.ne[1] = rows;
            w.offset += (size_t)(c * rows) * w.nb[1];
            w.nb[2] = w.nb[3] = w.nb[1] * (size_t)rows;
            d.ne[0] = rows;
            d.offset += (size_t)at * d.nb[0];
            d.nb[1] = d.nb[2] = d.nb[3] = d.nb[0] * (size_t)rows;
            s = ox_matmul(q, &d, &x, &w, OX_MATMUL_TRANS_B);
        }
    }
    return s;
}

/* Run the problem's op on queue q with tensors in[] into out. */
static ox_status run_op(const problem *p, ox_queue *q, const ox_tensor *in, const ox_tensor *out)
{
    switch (p->family) {
    case OX__TUNE_MATMUL: return ox_matmul(q, out, &in[0], &in[1], p->flags);
    case OX__TUNE_MATVEC:
    case OX__TUNE_QMATVEC: return p->n_step ? run_step(p, q, in, out) : run_matvecs(q, in, out);
    case OX__TUNE_QMATMUL: return ox_matmul(q, out, &in[0], &in[1], OX_MATMUL_TRANS_B);
    case OX__TUNE_ELEMENTWISE: return ox_add(q, out, &in[0], &in[1]);
    case OX__TUNE_ROWS: return ox_rms_norm(q, out, &in[0], &in[1], 1e-6f);
    case OX__TUNE_ATTENTION: { /* a decode step, then a causal prompt, into one output */
        ox_attention_params dec = {.scale = 0.125f, .causal = 0};
        ox_attention_params pro = {.scale = 0.125f, .causal = 1};
        ox_tensor o1 = *out, o2 = *out;
        o1.ne[0] = in[0].ne[0], o1.ne[1] = 1, o1.ne[2] = in[0].ne[2];
        o1.nb[1] = o1.nb[0] * o1.ne[0], o1.nb[2] = o1.nb[3] = o1.nb[1];
        o2.offset += (size_t)(in[0].ne[0] * in[0].ne[2]) * sizeof(float);
        o2.ne[0] = in[3].ne[0], o2.ne[1] = in[3].ne[1], o2.ne[2] = in[3].ne[2];
        o2.nb[1] = o2.nb[0] * o2.ne[0], o2.nb[2] = o2.nb[1] * o2.ne[1];
        o2.nb[3] = o2.nb[2] * o2.ne[2];
        ox_status s = ox_attention(q, &o1, &in[0], &in[1], &in[2], NULL, &dec);
        return s != OX_OK ? s : ox_attention(q, &o2, &in[3], &in[4], &in[5], NULL, &pro);
    }
    default: return OX_ERR_INTERNAL;
    }
}

/* The output as floats into dst. */
static ox_status read_output(const problem *p, const ox_tensor *out, float *dst)
{
    if (out->dtype == OX_DTYPE_F32) return ox_tensor_read(out, dst, p->n_out * sizeof(float));
    size_t bytes = ox_dtype_row_size(out->dtype, (int64_t)p->n_out);
    void *raw = ox__alloc(p->ctx, bytes);
    if (!raw) return ox__fail(p->ctx, OX_ERR_OUT_OF_MEMORY, "ox_device_tune: out of host memory");
    ox_status s = ox_tensor_read(out, raw, bytes);
    if (s == OX_OK) s = ox_row_to_f32(out->dtype, raw, dst, (int64_t)p->n_out);
    ox__free(p->ctx, raw, bytes);
    return s;
}

/* Whether t is a matrix of dtype `dtype` that can be timed: positive
 * sizes, rows that the dtype's blocks divide. */
static bool step_matrix(const ox_tune_matrix *t, ox_dtype dtype)
{
    return t->dtype == dtype && t->rows > 0 && t->count > 0 && t->cols > 0 &&
           ox_dtype_row_size(dtype, t->cols) > 0;
}

static double step_bytes(const ox_tune_matrix *t)
{
    return (double)ox_dtype_row_size(t->dtype, t->cols) * (double)t->rows * t->count;
}

/* Whether a class of `family` is timed on a model's step, and that step
 * has matrices of its dtype (*uses). */
static bool on_model_step(const ox_tune_matrix *m, int n, int family, const char *cls, bool *uses)
{
    ox_dtype dt;
    *uses = false;
    if (n <= 0 || (family != OX__TUNE_MATVEC && family != OX__TUNE_QMATVEC) ||
        ox_dtype_from_str(cls, &dt) != OX_OK)
        return false;
    for (int i = 0; i < n && !*uses; i++) *uses = step_matrix(&m[i], dt);
    return true;
}

/* The problem of a model's decode step for the class's dtype: its
 * matrices (the MAX_INPUTS - 1 largest by bytes a step, when there are
 * more shapes) with their counts, scaled to ox__tune_step_min_bytes
 * .. STEP_MAX_BYTES in all. */
static ox_status step_make(problem *p)
{
    int order[MAX_INPUTS - 1], n = 0, shapes = 0;
    double total = 0;
    for (int i = 0; i < p->n_model; i++)
        if (step_matrix(&p->model[i], p->dtype)) {
            total += step_bytes(&p->model[i]);
            shapes++;
        }
    /* the largest first, each picked once */
    while (n < shapes && n < MAX_INPUTS - 1) {
        int pick = -1;
        for (int i = 0; i < p->n_model; i++) {
            bool taken = false;
            for (int k = 0; k < n && !taken; k++) taken = order[k] == i;
            if (!taken && step_matrix(&p->model[i], p->dtype) &&
                (pick < 0 || step_bytes(&p->model[i]) > step_bytes(&p->model[pick])))
                pick = i;
        }
        order[n++] = pick;
    }
    int left_out = shapes - n;
    if (n == 0)
        return ox__fail(p->ctx, OX_ERR_INVALID, "ox_device_tune: the model has no %s matrices",
                        ox_dtype_str(p->dtype));
    double scale = total > STEP_MAX_BYTES ? STEP_MAX_BYTES / total
                   : total < ox__tune_step_min_bytes ? ceil(ox__tune_step_min_bytes / total)
                                                     : 1.0;
    double launches = 0;
    for (int i = 0; i < n; i++) launches += p->model[order[i]].count;
    if (scale > 1 && launches * scale > STEP_MAX_PRODUCTS)
        scale = floor(STEP_MAX_PRODUCTS / launches) > 1 ? floor(STEP_MAX_PRODUCTS / launches) : 1;
    int64_t k_max = 0, outputs = 0, products = 0;
    double timed = 0;
    for (int i = 0; i < n; i++)
        if (p->model[order[i]].cols > k_max) k_max = p->model[order[i]].cols;
    ox_status s = make_input(p, OX_DTYPE_F32, k_max, 1, 1, 1, 3);
    for (int i = 0; i < n && s == OX_OK; i++) {
        const ox_tune_matrix *t = &p->model[order[i]];
        int64_t copies = llround(t->count * scale);
        if (copies < 1) copies = 1;
        p->step_rows[i] = t->rows;
        p->step_copies[i] = copies;
        p->n_step = i + 1;
        outputs += t->rows * copies;
        products += copies;
        timed += (double)ox_dtype_row_size(t->dtype, t->cols) * (double)(t->rows * copies);
        s = make_input(p, p->dtype, t->cols, t->rows * copies, 1, 1, 20 + (uint64_t)i);
    }
    if (s != OX_OK) return s;
    snprintf(p->shape, sizeof p->shape, "step %lld of %d%s, %.0f MiB",
             (long long)products, n, left_out ? "+" : "",
             timed / (1 << 20));
    return make_output(p, OX_DTYPE_F32, outputs, 1, 1, 1);
}

static ox_status problem_make(problem *p, int family, const char *cls)
{
    bool gpu = p->device->info.type == OX_DEVICE_GPU ||
               p->device->info.type == OX_DEVICE_ACCELERATOR;
    ox_status s;
    p->family = family;
    p->tolerance = 1e-8;
    /* matmul classes: "A.B" or "A.B.bt" */
    char dt[16];
    snprintf(dt, sizeof dt, "%s", family == OX__TUNE_MATMUL ? strchr(cls, '.') + 1 : cls);
    if (family == OX__TUNE_MATMUL && strchr(dt, '.')) {
        *strchr(dt, '.') = '\0';
        p->flags = OX_MATMUL_TRANS_B;
    }
    if ((s = ox_dtype_from_str(dt, &p->dtype)) != OX_OK) return s;
    if ((s = ox_queue_create(p->device, &p->q)) || (s = ox_queue_create(p->cpu, &p->cq))) return s;
    switch (family) {
    case OX__TUNE_MATMUL: {
        ox_dtype a_dt;
        char first[16];
        snprintf(first, sizeof first, "%.*s", (int)(strchr(cls, '.') - cls), cls);
        if ((s = ox_dtype_from_str(first, &a_dt)) != OX_OK) return s;
        /* 1024 on CPU-like devices: large enough that b's slices come
         * from beyond the core's caches, as in the products that matter */
        int64_t n = gpu ? 2048 : 1024;
        snprintf(p->shape, sizeof p->shape, "M%lld N%lld K%lld%s", (long long)n, (long long)n,
                 (long long)n, p->flags ? " b^T" : "");
        if ((s = make_input(p, a_dt, n, n, 1, 1, 1)) || (s = make_input(p, p->dtype, n, n, 1, 1, 2)))
            return s;
        p->tolerance = 1e-9;
        return make_output(p, OX_DTYPE_F32, n, n, 1, 1);
    }
    case OX__TUNE_MATVEC:
    case OX__TUNE_QMATVEC:
    case OX__TUNE_QMATMUL: {
        /* 16-bit weights: the CPU's reference multiplies them with the
         * activations rounded to halves (ox__mm_half_scale, as llama.cpp
         * does), a device with the F32 activations; that rounding alone is
         * an NMSE of a few 1e-8, so every candidate failed the bound of
         * the F32 products and F16 / BF16 matrix-vector products were
         * never tuned. ox check's bound for them (TOL_HALF_VECTOR). */
        if (family == OX__TUNE_MATVEC && (p->dtype == OX_DTYPE_F16 || p->dtype == OX_DTYPE_BF16))
            p->tolerance = 1e-6;
        if (family != OX__TUNE_QMATMUL && p->n_model > 0) return step_make(p);
        /* a prompt's batch for qmatmul (it picks between rows and tiles) */
        int64_t M = family == OX__TUNE_QMATMUL ? 256 : 1;
        int64_t N = family == OX__TUNE_QMATMUL ? 2048 : 16384, K = family == OX__TUNE_QMATMUL ? 2048 : 4096;
        if (family == OX__TUNE_MATVEC) N = 8192;
        if (gpu && family != OX__TUNE_QMATMUL) N *= 4;
        if (gpu && family == OX__TUNE_QMATMUL) M = 512, N = 4096, K = 4096;
        if (family == OX__TUNE_QMATMUL) {
            snprintf(p->shape, sizeof p->shape, "M%lld N%lld K%lld", (long long)M, (long long)N,
                     (long long)K);
            if ((s = make_input(p, OX_DTYPE_F32, K, M, 1, 1, 3)) ||
                (s = make_input(p, p->dtype, K, N, 1, 1, 4)))
                return s;
            return make_output(p, OX_DTYPE_F32, N, M, 1, 1);
        }
        snprintf(p->shape, sizeof p->shape, "N%lld K%lld + %dx N%d K%d", (long long)N,
                 (long long)K, SMALL_MATS, SMALL_N, SMALL_K);
        if ((s = make_input(p, OX_DTYPE_F32, K, 1, 1, 1, 3)) ||
            (s = make_input(p, p->dtype, K, N, 1, 1, 4)) ||
            (s = make_input(p, OX_DTYPE_F32, SMALL_K, 1, 1, 1, 15)) ||
            (s = make_input(p, p->dtype, SMALL_K, SMALL_N * SMALL_MATS, 1, 1, 16)))
            return s;
        return make_output(p, OX_DTYPE_F32, N + SMALL_N * SMALL_MATS, 1, 1, 1);
    }
    case OX__TUNE_ELEMENTWISE: {
        int64_t n = gpu ? 8192 : 4096;
        snprintf(p->shape, sizeof p->shape, "%lldx%lld + %lldx%lld", (long long)n, (long long)n,
                 (long long)n, (long long)n);
        if ((s = make_input(p, p->dtype, n, n, 1, 1, 5)) ||
            (s = make_input(p, p->dtype, n, n, 1, 1, 6)))
            return s;
        p->tolerance = 0; /* every element as the CPU rounds it */
        return make_output(p, p->dtype, n, n, 1, 1);
    }
    case OX__TUNE_ROWS:
        snprintf(p->shape, sizeof p->shape, "4096x4096, weight");
        if ((s = make_input(p, p->dtype, 4096, 4096, 1, 1, 7)) ||
            (s = make_input(p, p->dtype, 4096, 1, 1, 1, 8)))
            return s;
        return make_output(p, p->dtype, 4096, 4096, 1, 1);
    case OX__TUNE_ATTENTION: {
        /* both kernels' parameters matter: a decode step over a long cache
         * and a causal prompt, timed together */
        int64_t D = 128, H = 32, Hkv = 8, n_kv = 4096, P = gpu ? 1024 : 256, Hp = 8, Hpkv = 2;
        snprintf(p->shape, sizeof p->shape, "D%lld 1x%lld H%lld + %lld causal", (long long)D,
                 (long long)n_kv, (long long)H, (long long)P);
        if ((s = make_input(p, OX_DTYPE_F32, D, 1, H, 1, 9)) ||
            (s = make_input(p, p->dtype, D, n_kv, Hkv, 1, 10)) ||
            (s = make_input(p, p->dtype, D, n_kv, Hkv, 1, 11)) ||
            (s = make_input(p, OX_DTYPE_F32, D, P, Hp, 1, 12)) ||
            (s = make_input(p, p->dtype, D, P, Hpkv, 1, 13)) ||
            (s = make_input(p, p->dtype, D, P, Hpkv, 1, 14)))
            return s;
        return make_output(p, OX_DTYPE_F32, D * H + D * P * Hp, 1, 1, 1);
    }
    default: return ox__fail(p->ctx, OX_ERR_INTERNAL, "ox_device_tune: no problem for family %d", family);
    }
}

/* NMSE of result against reference; infinite where a value is not finite
 * and the reference's is, or differs from a non-finite reference. */
static double nmse(const float *x, const float *ref, size_t n)
{
    double err = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(ref[i])) {
            if (!(isnan(x[i]) && isnan(ref[i])) && x[i] != ref[i]) return INFINITY;
            continue;
        }
        double d = (double)x[i] - (double)ref[i];
        err += d * d;
        norm += (double)ref[i] * (double)ref[i];
    }
    return norm > 0 ? err / norm : err;
}

/* Run candidate `cand` (already put in the device's table): check it, then
 * time it. OX_OK with *seconds; OX_ERR_INVALID when its result is wrong;
 * another status when it failed to build or run. */
static ox_status try_candidate(problem *p, const ox__tune_params *cand, double *seconds)
{
    ox_status s = run_op(p, p->q, p->in, &p->out);
    if (s == OX_OK) s = ox_queue_finish(p->q);
    if (s == OX_OK) s = read_output(p, &p->out, p->result);
    if (s != OX_OK) return s;
    bool sabotaged = ox__tune_fault &&
                     ox__tune_fault(p->family, cand, p->result, p->n_out, ox__tune_fault_user);
    double e = nmse(p->result, p->reference, p->n_out);
    if (!(e <= p->tolerance)) {
        char params[128];
        ox__tune_format(p->family, cand, params, sizeof params);
        return ox__fail(p->ctx, OX_ERR_INVALID, "%s %s: NMSE %.3g above %.3g", params,
                        p->shape, e, p->tolerance);
    }
    double best = INFINITY, start = ox__seconds();
    for (int rep = 0; rep < 10 && (rep < 3 || ox__seconds() - start < 0.3); rep++) {
        double t0 = ox__seconds();
        if ((s = run_op(p, p->q, p->in, &p->out)) || (s = ox_queue_finish(p->q))) return s;
        double t = ox__seconds() - t0;
        if (t < best) best = t;
    }
    *seconds = sabotaged ? 1e-9 : best;
    return OX_OK;
}

static bool same_params(const ox__tune_params *a, const ox__tune_params *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a->v[i] != b->v[i]) return false;
    return true;
}

/* Search one class: the defaults, then the current entry if tuned, then
 * coordinate descent: each parameter in turn through its candidates, the
 * others fixed at the best so far, rounds until none improves or the time
 * (until `deadline`) is up. */
static ox_status tune_class(ox_device *device, ox_device *cpu, int family, const char *cls,
                            double deadline, const ox_tune_options *o, ox_tune_result *r)
{
    ox_context *ctx = device->ctx;
    const ox__tune_family_desc *desc = ox__tune_family_get(family);
    const unsigned flags = o->flags;
    problem p = {.ctx = ctx, .device = device, .cpu = cpu, .model = o->matrices,
                 .n_model = o->n_matrices};
    ox__tune_params start, defaults, best;
    bool had_entry;
    double best_t = INFINITY;
    memset(r, 0, sizeof *r);
    r->struct_size = sizeof *r;
    ox__copy_string(r->op, sizeof r->op, desc->name);
    ox__copy_string(r->cls, sizeof r->cls, cls);
    ox__tune_get(device, family, cls, &start, &had_entry);
    ox__tune_defaults(&device->info, family, cls, &defaults);
    ox__tune_format(family, &defaults, r->default_params, sizeof r->default_params);
    ox_status s = problem_make(&p, family, cls);
    if (s == OX_OK) s = run_op(&p, p.cq, p.cin, &p.cout);
    if (s == OX_OK) s = read_output(&p, &p.cout, p.reference);
    ox__copy_string(r->shape, sizeof r->shape, p.shape);
    if (s != OX_OK) goto out;

    ox__tune_params *tried = ox__alloc(ctx, MAX_TRIED * sizeof *tried);
    if (!tried) {
        s = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_device_tune: out of host memory");
        goto out;
    }
    int n_tried = 0;
    ox__tune_params firsts[2] = {defaults, start};
    for (int i = 0; i < (had_entry ? 2 : 1); i++) {
        const ox__tune_params *c = &firsts[i];
        if (i == 1 && same_params(c, &defaults, desc->n_params)) break;
        double t;
        tried[n_tried++] = *c;
        if ((s = ox__tune_put(device, family, cls, c, 0, false)) != OX_OK) goto out_free;
        ox_status cs = try_candidate(&p, c, &t);
        if (cs == OX_OK) {
            r->tried++;
            if (i == 0) r->default_seconds = t;
            if (t < best_t) best_t = t, best = *c;
        } else if (cs == OX_ERR_INVALID) {
            r->rejected++;
            ox__log(ctx, OX_LOG_WARN, "tuning %s %s on %s: %s rejected: %s", desc->name, cls,
                    device->info.id, i ? "the tuned entry" : "the default", ox_errmsg(ctx));
        } else {
            r->failed++;
        }
    }
    bool improved = true;
    for (int round = 0; improved && round < 4; round++) {
        improved = false;
        for (int i = 0; i < desc->n_params; i++) {
            for (int c = 0; c < desc->n_candidates[i]; c++) {
                if (ox__seconds() > deadline) {
                    r->stopped = 1;
                    goto done;
                }
                ox__tune_params cand = isinf(best_t) ? defaults : best;
                cand.v[i] = desc->candidates[i][c];
                if (!ox__tune_valid(&device->info, family, &cand)) continue;
                bool seen = false;
                for (int k = 0; k < n_tried && !seen; k++)
                    seen = same_params(&tried[k], &cand, desc->n_params);
                if (seen || n_tried == MAX_TRIED) continue;
                tried[n_tried++] = cand;
                double t;
                if ((s = ox__tune_put(device, family, cls, &cand, 0, false)) != OX_OK)
                    goto out_free;
                ox_status cs = try_candidate(&p, &cand, &t);
                if (cs == OX_OK) {
                    r->tried++;
                    if (t < best_t * 0.97) {
                        best_t = t, best = cand;
                        improved = true;
                    }
                } else if (cs == OX_ERR_INVALID) {
                    r->rejected++;
                    ox__log(ctx, OX_LOG_INFO, "tuning %s %s on %s: rejected %s", desc->name, cls,
                            device->info.id, ox_errmsg(ctx));
                } else {
                    r->failed++;
                    ox__log(ctx, OX_LOG_DEBUG, "tuning %s %s on %s: a candidate failed: %s",
                            desc->name, cls, device->info.id, ox_errmsg(ctx));
                }
            }
        }
    }
done:
    s = OX_OK;
    if (isinf(best_t)) {
        s = ox__fail(ctx, OX_ERR_BACKEND, "ox_device_tune: no candidate of %s %s ran correctly on %s",
                     desc->name, cls, device->info.id);
    } else {
        r->best_seconds = best_t;
        ox__tune_format(family, &best, r->best_params, sizeof r->best_params);
    }
out_free:
    ox__free(ctx, tried, MAX_TRIED * sizeof *tried);
out:
    /* leave the table as it was (dry run, failure) or with the winner */
    if (s == OX_OK && !(flags & OX_TUNE_DRY_RUN)) {
        ox__tune_put(device, family, cls, &best, best_t, false);
    } else if (had_entry) {
        ox__tune_put(device, family, cls, &start, 0, false);
    } else {
        ox__tune_put(device, family, cls, &defaults, 0, true);
    }
    problem_free(&p);
    return s;
}

/* Whether name (a GGUF tensor's) ends in `suffix`. */
static bool ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

ox_status ox_tune_model_matrices(const ox_gguf *gguf, ox_tune_matrix *out, int cap, int *n)
{
    if (!gguf) return OX_ERR_INVALID;
    ox_context *ctx = ox__gguf_context(gguf);
    if (!n || cap < 0 || (cap > 0 && !out))
        return ox__fail(ctx, OX_ERR_INVALID, "%s: n missing, or out missing with cap %d", __func__,
                        cap);
    /* without output.weight the output projection is the token embedding */
    bool tied = ox_gguf_find_tensor(gguf, "output.weight") < 0;
    int count = 0;
    for (int64_t i = 0; i < ox_gguf_tensor_count(gguf); i++) {
        ox_gguf_tensor_info t = {.struct_size = sizeof t};
        ox_status s = ox_gguf_tensor_info_get(gguf, i, &t);
        if (s != OX_OK) return s;
        bool embedding = strcmp(t.name, "token_embd.weight") == 0;
        if (t.n_dims != 2 || t.ne[1] < 2 || !ends_with(t.name, ".weight") ||
            t.dtype == OX_DTYPE_COUNT || (embedding && !tied) ||
            (!embedding && strstr(t.name, "embd") != NULL))
            continue;
        int at = 0;
        while (at < count && !(out[at].dtype == t.dtype && out[at].rows == t.ne[1] &&
                               out[at].cols == t.ne[0]))
            at++;
        if (at < count) {
            out[at].count++;
            continue;
        }
        if (count == cap)
            return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: the model has more than %d matrix "
                            "shapes", __func__, cap);
        out[count++] = (ox_tune_matrix){.dtype = t.dtype, .rows = t.ne[1], .cols = t.ne[0],
                                        .count = 1};
    }
    *n = count;
    return OX_OK;
}

const char *ox_tune_op_name(int i)
{
    const ox__tune_family_desc *d = i >= 0 ? ox__tune_family_get(i) : NULL;
    return d ? d->name : NULL;
}

ox_status ox_device_tune(ox_device *device, const ox_tune_options *options)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    /* the options as this version knows them: fields appended since a
     * caller was built read as zero */
    ox_tune_options o = {.struct_size = sizeof o};
    const size_t first = offsetof(ox_tune_options, matrices);
    if (options && (options->struct_size < first || options->struct_size > 4096))
        return ox__fail(ctx, OX_ERR_INVALID, "%s: options->struct_size is %zu; set it to "
                        "sizeof(ox_tune_options) (%zu)", __func__, options->struct_size, sizeof o);
    if (options)
        memcpy(&o, options, options->struct_size < sizeof o ? options->struct_size : sizeof o);
    if (o.n_matrices < 0 || (o.n_matrices > 0 && !o.matrices))
        return ox__fail(ctx, OX_ERR_INVALID, "%s: options->n_matrices is %d with matrices %s",
                        __func__, o.n_matrices, o.matrices ? "given" : "NULL");
    if (o.n_matrices > 0) {
        bool any = false;
        for (int f = OX__TUNE_MATVEC; f <= OX__TUNE_QMATVEC; f++)
            for (int c = 0; c < 9 && classes[f][c] && !any; c++)
                on_model_step(o.matrices, o.n_matrices, f, classes[f][c], &any);
        if (!any)
            return ox__fail(ctx, OX_ERR_INVALID, "%s: none of the %d model matrices given has a "
                            "dtype the matrix-vector kernels take (f32, f16, bf16, q4_0 .. q6_k) "
                            "and a valid shape", __func__, o.n_matrices);
    }
    if (device->backend->iface == ox__cpu_backend() ||
        device->backend->iface->kernel_language == OX__KERNEL_NONE)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                        "%s: %s runs native code, not portable kernels: nothing to tune", __func__,
                        device->info.id);
    int only = -1;
    if (o.op) {
        only = ox__tune_family_find(o.op);
        if (only < 0) {
            char list[256] = "";
            for (int f = 0; f < OX__TUNE_FAMILIES; f++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", f ? ", " : "",
                         ox__tune_family_get(f)->name);
            return ox__fail(ctx, OX_ERR_INVALID, "%s: no tunable op '%s'; they are: %s", __func__,
                            o.op, list);
        }
    }
    if ((s = ox__device_open(device, __func__)) != OX_OK) return s;
    ox_device *cpu;
    int n;
    if ((s = ox_device_select(ctx, "cpu", &cpu, 1, &n)) != OX_OK) return s;
    double budget = o.budget_seconds > 0 ? o.budget_seconds : 120.0;
    unsigned flags = o.flags;
    /* the classes to tune: with a model's step, the matrix-vector classes
     * of the dtypes it uses */
    bool run[OX__TUNE_FAMILIES][9] = {{false}};
    int tasks = 0;
    for (int f = 0; f < OX__TUNE_FAMILIES; f++)
        for (int c = 0; (only < 0 || f == only) && c < 9 && classes[f][c]; c++) {
            bool uses;
            run[f][c] = !on_model_step(o.matrices, o.n_matrices, f, classes[f][c], &uses) || uses;
            tasks += run[f][c];
        }
    if (tasks == 0)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: the model uses no class of %s", __func__,
                        only >= 0 ? ox__tune_family_get(only)->name : "any family");
    double start = ox__seconds(), end = start + budget;
    ox_status first_error = OX_OK;
    for (int f = 0; f < OX__TUNE_FAMILIES; f++) {
        for (int c = 0; (only < 0 || f == only) && c < 9 && classes[f][c]; c++) {
            if (!run[f][c]) continue;
            /* the time left shared by the classes left */
            double deadline = ox__seconds() + (end - ox__seconds()) / tasks--;
            ox_tune_result r;
            s = tune_class(device, cpu, f, classes[f][c], deadline, &o, &r);
            if (s != OX_OK && first_error == OX_OK) first_error = s;
            if (s != OX_OK)
                ox__log(ctx, OX_LOG_WARN, "tuning %s %s on %s: %s", r.op, r.cls, device->info.id,
                        ox_errmsg(ctx));
            if (o.callback) o.callback(&r, o.user);
        }
    }
    if (!(flags & OX_TUNE_DRY_RUN) && (s = ox__tune_save(device)) != OX_OK) return s;
    if (first_error != OX_OK)
        return ox__fail(ctx, first_error, "%s: some classes could not be tuned on %s (see the "
                        "warnings); the others were", __func__, device->info.id);
    return OX_OK;
}

ox_status ox_device_tune_params(ox_device *device, const char *op, const char *cls, char *buf,
                                size_t cap, int *tuned)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    int f = op ? ox__tune_family_find(op) : -1;
    if (f < 0 || !cls || !buf || cap == 0)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: unknown op '%s', or cls or buf missing",
                        __func__, op ? op : "(null)");
    ox__tune_params p;
    bool t;
    ox__tune_get(device, f, cls, &p, &t);
    ox__tune_format(f, &p, buf, cap);
    if (tuned) *tuned = t;
    return OX_OK;
}

ox_status ox_device_tuned(ox_device *device, int i, const char **op, char *cls, size_t cls_cap,
                          char *params, size_t params_cap)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!op || !cls || cls_cap == 0 || !params || params_cap == 0)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: op, cls or params missing", __func__);
    ox__tune_family f;
    ox__tune_params p;
    if (!ox__tune_entry(device, i, &f, cls, cls_cap, &p))
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: the device has no tuned entry %d", __func__,
                        i);
    *op = ox__tune_family_get(f)->name;
    ox__tune_format(f, &p, params, params_cap);
    return OX_OK;
}
