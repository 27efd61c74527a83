/* The reproducible math of kernels/common.h (issue 17): ox_repro_exp, _log,
 * _tanh, _rsqrt and _recip over a sweep of every 4096th float bit pattern
 * (both signs, zeros, subnormals, infinities, NaNs) and chosen values,
 * compiled as C on the CPU and as OpenCL C on the OpenCL device: the two
 * give the same bits for every input (any NaN counts as the same NaN), and
 * each function is within its bound in units of the last place of libm's
 * double-precision result (sin and cos to |x| = 2^20, where their
 * reduction is exact). Without an OpenCL device the CPU half runs and
 * the comparison says it is skipped. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "opencl_test.h"

#define N_FN 8
static const char *const fn_names[N_FN] = {"exp", "log", "tanh", "rsqrt", "recip", "erf",
                                            "sin", "cos"};
/* the bounds, in units in the last place of the float nearest the true value */
static const double fn_ulps[N_FN] = {2.0, 2.0, 4.0, 2.0, 1.0, 1.0, 2.0, 2.0};

static const char *source =
    "KERNEL repro(ARG_BUF(const float, x), ARG_BUF(float, y), int n)\n"
    "{\n"
    "    BUF(const float, x); BUF(float, y);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    float v = x[i];\n"
    "    y[8 * i + 0] = ox_repro_exp(v);\n"
    "    y[8 * i + 1] = ox_repro_log(v);\n"
    "    y[8 * i + 2] = ox_repro_tanh(v);\n"
    "    y[8 * i + 3] = ox_repro_rsqrt(v);\n"
    "    y[8 * i + 4] = v >= 1.17549435e-38f && v < 8.5e37f ? ox_repro_recip(v) : 0.0f;\n"
    "    y[8 * i + 5] = ox_repro_erf(v);\n"
    "    y[8 * i + 6] = ox_repro_sin(v);\n"
    "    y[8 * i + 7] = ox_repro_cos(v);\n"
    "}\n";

static double reference(int fn, float v)
{
    double x = v;
    switch (fn) {
    case 0: return exp(x);
    case 1: return log(x);
    case 2: return tanh(x);
    case 3: return 1.0 / sqrt(x);
    case 5: return erf(x);
    case 6: return sin(x);
    case 7: return cos(x);
    default: return v >= 1.17549435e-38f && v < 8.5e37f ? 1.0 / x : 0.0;
    }
}

/* |got - want| in units of the last place of want rounded to float */
static double ulps(float got, double want)
{
    if (isnan(want)) return isnan(got) ? 0.0 : INFINITY;
    float w = (float)want;
    if (isinf(w) || isinf(got)) return got == w ? 0.0 : INFINITY;
    int e;
    frexpf(w == 0.0f ? 1e-45f : w, &e);
    double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)got - want) / ulp;
}

/* Kernel "repro" of src built with options on dev over x[0..n), `per`
 * results an input into y. */
static void run(ox_context *ctx, ox_device *dev, const char *src, const char *options,
                const float *x, int n, int per, float *y)
{
    ox_program *p;
    ox_status s = ox_program_build(dev, src, options, &p);
    if (s == OX_ERR_UNSUPPORTED) OX_SKIP("%s", ox_errmsg(ctx));
    ASSERT_OK(ctx, s);
    ox_kernel *k;
    ox_buffer *bx, *by;
    ox_queue *q;
    ASSERT_OK(ctx, ox_program_kernel(p, "repro", &k));
    ASSERT_OK(ctx, ox_buffer_alloc(dev, (size_t)n * sizeof *x, &bx));
    ASSERT_OK(ctx, ox_buffer_alloc(dev, (size_t)n * per * sizeof *y, &by));
    ASSERT_OK(ctx, ox_buffer_write(bx, 0, x, (size_t)n * sizeof *x));
    ASSERT_OK(ctx, ox_kernel_set_buffer(k, 0, bx));
    ASSERT_OK(ctx, ox_kernel_set_buffer(k, 1, by));
    ASSERT_OK(ctx, ox_kernel_set_scalar(k, 2, &n, sizeof n));
    ASSERT_OK(ctx, ox_queue_create(dev, &q));
    size_t global[3] = {((size_t)n + 63) / 64 * 64, 1, 1}, local[3] = {64, 1, 1};
    ASSERT_OK(ctx, ox_kernel_launch(q, k, global, local, NULL));
    ASSERT_OK(ctx, ox_queue_finish(q));
    ASSERT_OK(ctx, ox_buffer_read(by, 0, y, (size_t)n * per * sizeof *y));
    ox_queue_free(q);
    ox_buffer_free(bx);
    ox_buffer_free(by);
    ox_program_free(p);
}

enum { SWEEP = 1 << 20 };
static const float chosen[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.3f, -0.3f, 0.29999998f, 9.0f, -9.0f,
                               88.72283f, 88.7228394f, 88.72284f, -103.97207f, -103.972084f,
                               -87.33655f, 1e-45f, 1.17549435e-38f, 1.41421354f, 1.41421366f,
                               0.70710677f, 2.0f, 0.5f, (float)M_PI, 0.99999994f, 1.4999999f,
                               1.5f, 3.9999998f, 4.0f, -2.25f, -3.75f};
#define N_INPUTS (SWEEP + (int)(sizeof chosen / sizeof chosen[0]))

/* The inputs, a context with every backend, and the CPU's results. */
static ox_context *on_cpu(float **x, float **cpu)
{
    int n = N_INPUTS;
    *x = calloc((size_t)n, sizeof **x), *cpu = calloc((size_t)n * N_FN, sizeof **cpu);
    ASSERT_MSG(*x && *cpu, "out of memory");
    for (int i = 0; i < SWEEP; i++) {
        uint32_t u = (uint32_t)i * 4096u + 1234u;
        memcpy(&(*x)[i], &u, sizeof u);
    }
    memcpy(*x + SWEEP, chosen, sizeof chosen);
    ox_context_options options = test_options(0);
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_device *d;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &d, 1, &count));
    run(ctx, d, source, NULL, *x, n, N_FN, *cpu);
    return ctx;
}

OX_TEST(cpu_within_bounds_of_libm)
{
    float *x, *cpu;
    ox_context *ctx = on_cpu(&x, &cpu);
    double worst[N_FN] = {0};
    int worst_at[N_FN] = {0};
    for (int i = 0; i < N_INPUTS; i++)
        for (int f = 0; f < N_FN; f++) {
            if (f >= 6 && fabsf(x[i]) > 1048576.0f) continue; /* sin, cos: to 2^20 */
            double e = ulps(cpu[(size_t)i * N_FN + f], reference(f, x[i]));
            if (e > worst[f] || isnan(e)) worst[f] = e, worst_at[f] = i;
        }
    for (int f = 0; f < N_FN; f++) {
        float v = x[worst_at[f]];
        printf("  ox_repro_%-5s worst %.3f ulp (at %a: %a, libm %a)\n", fn_names[f], worst[f],
               (double)v, (double)cpu[(size_t)worst_at[f] * N_FN + f], reference(f, v));
        ASSERT_MSG(worst[f] <= fn_ulps[f], "ox_repro_%s: %.3f ulp at %a, bound %.1f",
                   fn_names[f], worst[f], (double)v, fn_ulps[f]);
    }
    free(x), free(cpu);
    ox_context_free(ctx);
}

OX_TEST(same_bits_on_cpu_and_opencl)
{
    float *x, *cpu;
    ox_context *ctx = on_cpu(&x, &cpu);
    int n = N_INPUTS, count = 0;
    ox_device *d;
    if (ox_device_select(ctx, "opencl:0", &d, 1, &count) != OX_OK || count == 0)
        OX_SKIP("no OpenCL device: only the CPU's results were checked (against libm)");
    float *dev = calloc((size_t)n * N_FN, sizeof *dev);
    ASSERT_MSG(dev, "out of memory");
    run(ctx, d, source, NULL, x, n, N_FN, dev);
    int differ = 0;
    for (size_t i = 0; i < (size_t)n * N_FN; i++) {
        uint32_t a, b;
        memcpy(&a, &cpu[i], 4), memcpy(&b, &dev[i], 4);
        if (a == b || (isnan(cpu[i]) && isnan(dev[i]))) continue;
        if (differ++ < 5)
            fprintf(stderr, "  ox_repro_%s(%a): cpu %a, opencl:0 %a\n", fn_names[i % N_FN],
                    (double)x[i / N_FN], (double)cpu[i], (double)dev[i]);
    }
    ASSERT_MSG(differ == 0, "%d of %d results differ between the CPU and opencl:0", differ,
               n * N_FN);
    printf("  cpu and opencl:0: %d results, the same bits\n", n * N_FN);
    free(x), free(cpu), free(dev);
    ox_context_free(ctx);
}

/* A whole kernel in a reproducible build (-DOX_REPRO=1): the dialect's own
 * math names, plain a * b + c, division and square root give the same bits
 * on the CPU and OpenCL, which the same source built without it need not. */
static const char *mixed_source =
    "KERNEL repro(ARG_BUF(const float, x), ARG_BUF(float, y), int n)\n"
    "{\n"
    "    BUF(const float, x); BUF(float, y);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    float v = x[i], a = ox_fabs(v);\n"
    "    if (!(a < 1e30f)) a = 1.0f;\n"
    "    float w = ox_exp(v * 0.01f) * v + ox_tanh(v) / (1.0f + ox_sqrt(a));\n"
    "    w = w + ox_rsqrt(a + 1.0f) * v * 0.5f + ox_erf(v) + ox_sin(a) * ox_cos(a);\n"
    "    y[i] = w * 0.25f + ox_log(a + 1.0f);\n"
    "}\n";

OX_TEST(reproducible_build_same_bits)
{
    float *x, *cpu;
    ox_context *ctx = on_cpu(&x, &cpu);
    int n = N_INPUTS, count = 0, differ[2] = {0, 0};
    ox_device *c, *d;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &c, 1, &count));
    if (ox_device_select(ctx, "opencl:0", &d, 1, &count) != OX_OK || count == 0)
        OX_SKIP("no OpenCL device to compare the CPU with");
    float *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    ASSERT_MSG(a && b, "out of memory");
    for (int build = 0; build < 2; build++) {
        const char *options = build ? "-DOX_REPRO=1" : NULL;
        run(ctx, c, mixed_source, options, x, n, 1, a);
        run(ctx, d, mixed_source, options, x, n, 1, b);
        for (int i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], 4) && !(isnan(a[i]) && isnan(b[i]))) differ[build]++;
    }
    printf("  results that differ between cpu and opencl:0: %d of %d by default, %d with "
           "-DOX_REPRO=1\n", differ[0], n, differ[1]);
    ASSERT_MSG(differ[1] == 0, "%d of %d results differ in the reproducible build", differ[1], n);
    free(a), free(b), free(x), free(cpu);
    ox_context_free(ctx);
}

OX_TEST_MAIN(cpu_within_bounds_of_libm, same_bits_on_cpu_and_opencl, reproducible_build_same_bits)
