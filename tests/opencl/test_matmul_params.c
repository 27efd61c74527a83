/* Every parameter set of the matmul family that ox__tune_valid accepts must
 * compute the right result: the tuner only chooses among them, by speed.
 * Checked on the OpenCL device (PoCL here) against the CPU device, by NMSE,
 * for a covering sample: for each candidate value of each parameter, a
 * valid set holding it (the others drawn at random, seeded), plus the two
 * classes' defaults. Each set runs one of four problems in turn, all with
 * sizes that are no multiple of any tile: plain; both operands transposed;
 * F16 a times BF16 weights stored as rows of K, batched with a repeating;
 * rows with gaps (strided views) written into a transposed dst. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"
#include "ops/tune.h"
#include "ox_test.h"
#include "test_helpers.h"

typedef struct problem {
    int64_t M, N, K;
    unsigned flags;
    ox_dtype ta, tb;
    int64_t a_batch[2], b_batch[2];
    int64_t gap;   /* extra elements after every row of a and b */
    int dst_transposed;
} problem;

static const problem problems[4] = {
    {37, 45, 83, 0, OX_DTYPE_F32, OX_DTYPE_F32, {1, 1}, {1, 1}, 0, 0},
    {29, 70, 130, OX_MATMUL_TRANS_A | OX_MATMUL_TRANS_B, OX_DTYPE_F32, OX_DTYPE_F32, {1, 1}, {1, 1}, 0, 0},
    {19, 33, 70, OX_MATMUL_TRANS_B, OX_DTYPE_F16, OX_DTYPE_BF16, {1, 2}, {3, 2}, 0, 0},
    {40, 36, 100, 0, OX_DTYPE_F32, OX_DTYPE_F32, {1, 1}, {1, 1}, 3, 1},
};

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static float uniform(uint64_t *state)
{
    return (float)((double)(next_random(state) >> 11) * 0x1.0p-52 - 1.0);
}

typedef struct operands {
    ox_tensor a, b, dst;
    ox_buffer *a_buf, *b_buf, *d_buf;
} operands;

/* A tensor of ne0 x ne1 x batch with `gap` extra elements after each row,
 * in a fresh buffer of `device`, filled from `values` (uniform [-1, 1)). */
static ox_tensor strided(ox_context *ctx, ox_device *device, ox_dtype dtype, int64_t ne0,
                         int64_t ne1, const int64_t batch[2], int64_t gap, ox_buffer **buf,
                         const float *values)
{
    size_t es = ox_dtype_size(dtype);
    int64_t row = ne0 + gap, n = row * ne1 * batch[0] * batch[1];
    ASSERT_OK(ctx, ox_buffer_alloc(device, (size_t)n * es, buf));
    ox_tensor t = ox_tensor_make(*buf, 0, dtype, ne0, ne1, batch[0], batch[1]);
    t.nb[1] = (int64_t)es * row;
    t.nb[2] = t.nb[1] * ne1;
    t.nb[3] = t.nb[2] * batch[0];
    if (values) {
        void *raw = malloc((size_t)n * es);
        ASSERT(raw != NULL);
        ASSERT_OK(ctx, ox_row_from_f32(dtype, values, raw, n));
        ASSERT_OK(ctx, ox_buffer_write(*buf, 0, raw, (size_t)n * es));
        free(raw);
    }
    return t;
}

static void make_operands(ox_context *ctx, ox_device *device, const problem *p, const float *va,
                          const float *vb, operands *o)
{
    int ta = (p->flags & OX_MATMUL_TRANS_A) != 0, tb = (p->flags & OX_MATMUL_TRANS_B) != 0;
    o->a = strided(ctx, device, p->ta, ta ? p->M : p->K, ta ? p->K : p->M, p->a_batch, p->gap,
                   &o->a_buf, va);
    o->b = strided(ctx, device, p->tb, tb ? p->K : p->N, tb ? p->N : p->K, p->b_batch, p->gap,
                   &o->b_buf, vb);
    if (p->dst_transposed) { /* {N, M} viewed through a {M, N} buffer */
        ox_tensor t = strided(ctx, device, OX_DTYPE_F32, p->M, p->N, p->b_batch, 0, &o->d_buf, NULL);
        o->dst = ox_tensor_transpose(&t);
    } else {
        o->dst = strided(ctx, device, OX_DTYPE_F32, p->N, p->M, p->b_batch, 0, &o->d_buf, NULL);
    }
}

static void free_operands(operands *o)
{
    ox_buffer_free(o->a_buf);
    ox_buffer_free(o->b_buf);
    ox_buffer_free(o->d_buf);
}

/* dst as floats in its logical order (N fastest). */
static float *result(ox_context *ctx, const operands *o, size_t n)
{
    float *out = malloc(n * sizeof(float));
    ASSERT(out != NULL);
    ASSERT_OK(ctx, ox_tensor_read(&o->dst, out, n * sizeof(float)));
    return out;
}

typedef struct fixture {
    ox_context *ctx;
    ox_device *dev, *cpu;
    ox_queue *q, *cq;
    char dir[64];
} fixture;

static void open_fixture(fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ox-mmparams-XXXXXX");
    ASSERT(mkdtemp(f->dir) != NULL);
    setenv("OX_CACHE_DIR", f->dir, 1); /* no tuning file but ours */
    ox_context_options o = test_options(0);
    ASSERT(ox_context_create(&o, &f->ctx) == OX_OK);
    int n = 0;
    if (ox_device_select(f->ctx, "opencl:0", &f->dev, 1, &n) != OX_OK || n != 1)
        OX_SKIP("no OpenCL device here (%s)", ox_errmsg(f->ctx));
    ASSERT_OK(f->ctx, ox_device_select(f->ctx, "cpu", &f->cpu, 1, &n));
    ASSERT_OK(f->ctx, ox_queue_create(f->dev, &f->q));
    ASSERT_OK(f->ctx, ox_queue_create(f->cpu, &f->cq));
}

static void close_fixture(fixture *f)
{
    ox_queue_free(f->q);
    ox_queue_free(f->cq);
    ox_context_free(f->ctx);
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", f->dir);
    ASSERT(system(command) == 0);
}

/* Run problem p with parameter set `params` (as the tuned entry of p's
 * class) on the device and on the CPU; the NMSE between them. */
static double run_problem(fixture *f, const problem *p, const ox__tune_params *params)
{
    int tb = (p->flags & OX_MATMUL_TRANS_B) != 0;
    char cls[32];
    snprintf(cls, sizeof cls, "%s.%s%s", ox_dtype_str(p->ta), ox_dtype_str(p->tb),
             tb && p->gap == 0 ? ".bt" : "");
    ASSERT_OK(f->ctx, ox__tune_put(f->dev, OX__TUNE_MATMUL, cls, params, 0, false));
    size_t na = (size_t)((p->K + p->gap) * (p->M + p->gap) * p->a_batch[0] * p->a_batch[1]);
    size_t nb = (size_t)((p->K + p->gap) * (p->N + p->gap) * p->b_batch[0] * p->b_batch[1]);
    size_t nd = (size_t)(p->M * p->N * p->b_batch[0] * p->b_batch[1]);
    float *va = malloc(na * sizeof(float)), *vb = malloc(nb * sizeof(float));
    ASSERT(va && vb);
    uint64_t seed = 7;
    for (size_t i = 0; i < na; i++) va[i] = uniform(&seed);
    for (size_t i = 0; i < nb; i++) vb[i] = uniform(&seed);
    operands dev, cpu;
    make_operands(f->ctx, f->dev, p, va, vb, &dev);
    make_operands(f->ctx, f->cpu, p, va, vb, &cpu);
    ASSERT_OK(f->ctx, ox_matmul(f->q, &dev.dst, &dev.a, &dev.b, p->flags));
    ASSERT_OK(f->ctx, ox_queue_finish(f->q));
    ASSERT_OK(f->ctx, ox_matmul(f->cq, &cpu.dst, &cpu.a, &cpu.b, p->flags));
    ASSERT_OK(f->ctx, ox_queue_finish(f->cq));
    float *x = result(f->ctx, &dev, nd), *ref = result(f->ctx, &cpu, nd);
    double err = 0, norm = 0;
    for (size_t i = 0; i < nd; i++) {
        double d = (double)x[i] - ref[i];
        err += isfinite(d) ? d * d : INFINITY;
        norm += (double)ref[i] * ref[i];
    }
    free(x);
    free(ref);
    free(va);
    free(vb);
    free_operands(&dev);
    free_operands(&cpu);
    return err / norm;
}

static void check_set(fixture *f, const ox__tune_params *set, int problem_index)
{
    const problem *p = &problems[problem_index];
    double e = run_problem(f, p, set);
    char text[160];
    ox__tune_format(OX__TUNE_MATMUL, set, text, sizeof text);
    if (getenv("OX_TEST_VERBOSE")) printf("  %-70s problem %d NMSE %.3g\n", text, problem_index, e);
    ASSERT_MSG(e <= 1e-10, "%s on problem %d (M%lld N%lld K%lld): NMSE %.3g", text,
               problem_index, (long long)p->M, (long long)p->N, (long long)p->K, e);
}

/* The defaults of both device classes (a GPU's where this device allows
 * them) on every problem. */
OX_TEST(defaults_are_right)
{
    fixture f;
    open_fixture(&f);
    ox_device_info info = test_device_info(f.dev), gpu = info;
    gpu.type = OX_DEVICE_GPU;
    static const char *const classes[2] = {"f32.f32", "f32.f32.bt"};
    for (int c = 0; c < 2; c++) {
        ox__tune_params cpu_set, gpu_set;
        ox__tune_defaults(&info, OX__TUNE_MATMUL, classes[c], &cpu_set);
        ox__tune_defaults(&gpu, OX__TUNE_MATMUL, classes[c], &gpu_set);
        for (int p = 0; p < 4; p++) {
            check_set(&f, &cpu_set, p);
            if (ox__tune_valid(&info, OX__TUNE_MATMUL, &gpu_set)) check_set(&f, &gpu_set, p);
        }
    }
    close_fixture(&f);
}

/* For each candidate value of each parameter, a valid set holding it (the
 * others at random), on the four problems in turn. */
OX_TEST(every_valid_parameter_set_is_right)
{
    fixture f;
    open_fixture(&f);
    ox_device_info info = test_device_info(f.dev);
    const ox__tune_family_desc *d = ox__tune_family_get(OX__TUNE_MATMUL);
    uint64_t seed = 12345;
    int count = 0;
    for (int i = 0; i < d->n_params; i++) {
        for (int c = 0; c < d->n_candidates[i]; c++) {
            ox__tune_params p;
            int tries = 0;
            do {
                for (int j = 0; j < d->n_params; j++)
                    p.v[j] = d->candidates[j][next_random(&seed) % (uint64_t)d->n_candidates[j]];
                p.v[i] = d->candidates[i][c];
            } while (!ox__tune_valid(&info, OX__TUNE_MATMUL, &p) && ++tries < 10000);
            ASSERT_MSG(tries < 10000, "no valid set with %s=%d", d->param[i], d->candidates[i][c]);
            check_set(&f, &p, count++ % 4);
        }
    }
    close_fixture(&f);
}

OX_TEST_MAIN(defaults_are_right, every_valid_parameter_set_is_right)
