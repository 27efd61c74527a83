/* User kernels (openxpu/kernel.h) on the OpenCL device (PoCL here): three
 * small programs in the portable dialect, each checked against a host loop,
 * and every kind of bad input refused with a message naming the kernel,
 * the argument or the device. */
#include <openxpu/openxpu.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ox_test.h"
#include "test_helpers.h"

static const char SAXPY[] =
    "KERNEL saxpy(ARG_BUF(float, y), ARG_BUF(const float, x), float a, int n)\n"
    "{\n"
    "    BUF(float, y);\n"
    "    BUF(const float, x);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i < n) y[i] = a * x[i] + y[i];\n"
    "}\n";

/* bias + GELU (tanh form), fused */
static const char BIAS_GELU[] =
    "KERNEL bias_gelu(ARG_BUF(float, y), ARG_BUF(const float, x), ARG_BUF(const float, bias),\n"
    "                 int cols, int n)\n"
    "{\n"
    "    BUF(float, y);\n"
    "    BUF(const float, x);\n"
    "    BUF(const float, bias);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i >= n) return;\n"
    "    float v = x[i] + bias[i % cols];\n"
    "    y[i] = 0.5f * v * (1.0f + ox_tanh(0.7978845608f * (v + 0.044715f * v * v * v)));\n"
    "}\n";

/* one partial sum per work-group, by a tree in local memory */
static const char REDUCE[] =
    "KERNEL partial_sums(ARG_BUF(float, out), ARG_BUF(const float, x), int n)\n"
    "{\n"
    "    BUF(float, out);\n"
    "    BUF(const float, x);\n"
    "    LOCAL_ARRAY(float, tile, WG);\n"
    "    int lid = ox_local_id(0);\n"
    "    i64 i = ox_global_id(0);\n"
    "    tile[lid] = i < n ? x[i] : 0.0f;\n"
    "    BARRIER();\n"
    "    for (int s = WG / 2; s > 0; s >>= 1) {\n"
    "        if (lid < s) tile[lid] += tile[lid + s];\n"
    "        BARRIER();\n"
    "    }\n"
    "    if (lid == 0) out[ox_group_id(0)] = tile[0];\n"
    "}\n";

typedef struct fixture {
    ox_context *ctx;
    ox_device *cl, *cpu;
    ox_queue *q;
} fixture;

static fixture open_opencl(void)
{
    fixture f;
    const char *env = getenv("OX_BACKEND_PATH");
    const char *plugin = env && *env ? env : OX_TEST_OPENCL_PLUGIN;
    ox_context_options o = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    if (!(env && *env)) o.backend_path = plugin;
    ASSERT_OK(NULL, ox_context_create(&o, &f.ctx));
    int n = 0;
    if (ox_device_select(f.ctx, "opencl:0", &f.cl, 1, &n) != OX_OK || n != 1)
        OX_SKIP("no OpenCL device: %s", ox_errmsg(f.ctx));
    ASSERT_OK(f.ctx, ox_device_select(f.ctx, "cpu", &f.cpu, 1, &n));
    ASSERT_OK(f.ctx, ox_queue_create(f.cl, &f.q));
    return f;
}

static ox_buffer *upload(fixture *f, const float *data, size_t count)
{
    ox_buffer *b;
    ASSERT_OK(f->ctx, ox_buffer_alloc(f->cl, count * sizeof(float), &b));
    if (data) ASSERT_OK(f->ctx, ox_buffer_write(b, 0, data, count * sizeof(float)));
    return b;
}

static ox_kernel *build(fixture *f, const char *source, const char *options, const char *name)
{
    ox_program *p;
    ASSERT_OK(f->ctx, ox_program_build(f->cl, source, options, &p));
    ox_kernel *k;
    ASSERT_OK(f->ctx, ox_program_kernel(p, name, &k));
    return k;
}

OX_TEST(saxpy_matches_the_host)
{
    fixture f = open_opencl();
    enum { N = 1000 };
    float x[N], y[N], out[N];
    for (int i = 0; i < N; i++) x[i] = (float)i * 0.5f, y[i] = 1.0f - (float)i;
    ox_buffer *bx = upload(&f, x, N), *by = upload(&f, y, N);
    ox_kernel *k = build(&f, SAXPY, NULL, "saxpy");
    float a = 3.0f;
    int n = N;
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, by));
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 1, bx));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 2, &a, sizeof a));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
    size_t global[3] = {1024, 1, 1}, local[3] = {64, 1, 1};
    ox_event *done;
    ASSERT_OK(f.ctx, ox_kernel_launch(f.q, k, global, local, &done));
    ASSERT_OK(f.ctx, ox_event_wait(done));
    ox_event_free(done);
    ASSERT_OK(f.ctx, ox_buffer_read(by, 0, out, sizeof out));
    for (int i = 0; i < N; i++) ASSERT(out[i] == a * x[i] + y[i]); /* one rounding each */
    ox_context_free(f.ctx);
}

OX_TEST(bias_gelu_matches_the_host)
{
    fixture f = open_opencl();
    enum { ROWS = 7, COLS = 33, N = ROWS * COLS };
    float x[N], bias[COLS], out[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 17) * 0.37f - 3.0f;
    for (int c = 0; c < COLS; c++) bias[c] = (float)c * 0.05f - 0.8f;
    ox_buffer *bx = upload(&f, x, N), *bb = upload(&f, bias, COLS), *by = upload(&f, NULL, N);
    ox_kernel *k = build(&f, BIAS_GELU, NULL, "bias_gelu");
    int cols = COLS, n = N;
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, by));
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 1, bx));
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 2, bb));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 3, &cols, sizeof cols));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 4, &n, sizeof n));
    size_t global[3] = {256, 1, 1}, local[3] = {32, 1, 1};
    ASSERT_OK(f.ctx, ox_kernel_launch(f.q, k, global, local, NULL));
    ASSERT_OK(f.ctx, ox_queue_finish(f.q));
    ASSERT_OK(f.ctx, ox_buffer_read(by, 0, out, sizeof out));
    for (int i = 0; i < N; i++) {
        double v = (double)x[i] + bias[i % COLS];
        double want = 0.5 * v * (1.0 + tanh(0.7978845608 * (v + 0.044715 * v * v * v)));
        ASSERT_NEAR(out[i], want, 1e-5);
    }
    ox_context_free(f.ctx);
}

OX_TEST(tiled_reduction_with_local_memory)
{
    fixture f = open_opencl();
    enum { N = 3000, WG = 128, GROUPS = (N + WG - 1) / WG };
    float x[N], parts[GROUPS];
    double want = 0;
    for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 101) / 16.0f, want += x[i];
    ox_buffer *bx = upload(&f, x, N), *bo = upload(&f, NULL, GROUPS);
    ox_kernel *k = build(&f, REDUCE, "-DWG=128", "partial_sums");
    int n = N;
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, bo));
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 1, bx));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 2, &n, sizeof n));
    size_t global[3] = {(size_t)GROUPS * WG, 1, 1}, local[3] = {WG, 1, 1};
    ASSERT_OK(f.ctx, ox_kernel_launch(f.q, k, global, local, NULL));
    ASSERT_OK(f.ctx, ox_queue_finish(f.q));
    ASSERT_OK(f.ctx, ox_buffer_read(bo, 0, parts, sizeof parts));
    double got = 0;
    for (int g = 0; g < GROUPS; g++) got += parts[g];
    ASSERT_NEAR(got, want, 1e-6 * want); /* sums of x/16 with 7-bit numerators: exact */
    ox_context_free(f.ctx);
}

OX_TEST(bad_input_is_named)
{
    fixture f = open_opencl();
    ox_program *p;
    /* a syntax error: the compiler's log comes back */
    ASSERT_EQ(ox_program_build(f.cl, "KERNEL broken(int n) { n = ; }", NULL, &p), OX_ERR_BUILD);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "user program");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "opencl:0");
    /* the CPU device runs no portable kernels (yet): said so */
    ASSERT_EQ(ox_program_build(f.cpu, SAXPY, NULL, &p), OX_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "OpenCL CPU device");
    ASSERT_OK(f.ctx, ox_program_build(f.cl, SAXPY, NULL, &p));
    ox_kernel *k;
    ASSERT_EQ(ox_program_kernel(p, "saxpi", &k), OX_ERR_NOT_FOUND);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "no kernel 'saxpi' on opencl:0");
    ASSERT_OK(f.ctx, ox_program_kernel(p, "saxpy", &k));
    ox_buffer *b = upload(&f, NULL, 64), *on_cpu;
    ASSERT_OK(f.ctx, ox_buffer_alloc(f.cpu, 256, &on_cpu));
    ASSERT_EQ(ox_kernel_set_buffer(k, 0, on_cpu), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "argument 0 is a buffer of cpu:0");
    double d = 1;
    ASSERT_EQ(ox_kernel_set_scalar(k, 2, &d, 2), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "'saxpy': argument 2");
    ASSERT_EQ(ox_kernel_set_scalar(k, 99, &d, 4), OX_ERR_OUT_OF_RANGE);
    /* arguments 0 and 3 set, 1 and 2 not */
    int n = 64;
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, b));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
    size_t global[3] = {64, 1, 1}, local[3] = {64, 1, 1};
    ASSERT_EQ(ox_kernel_launch(f.q, k, global, local, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "argument 1 is not set");
    float a = 2;
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 1, b));
    ASSERT_OK(f.ctx, ox_kernel_set_scalar(k, 2, &a, sizeof a));
    size_t odd[3] = {100, 1, 1};
    ASSERT_EQ(ox_kernel_launch(f.q, k, odd, local, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "not a multiple");
    size_t huge[3] = {1 << 20, 1, 1}, big[3] = {1 << 20, 1, 1};
    ASSERT_EQ(ox_kernel_launch(f.q, k, huge, big, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "kernel 'saxpy': work-group");
    ox_queue *cpu_q;
    ASSERT_OK(f.ctx, ox_queue_create(f.cpu, &cpu_q));
    ASSERT_EQ(ox_kernel_launch(cpu_q, k, global, local, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "the queue is on cpu:0");
    ASSERT_OK(f.ctx, ox_kernel_launch(f.q, k, global, local, NULL));
    ASSERT_OK(f.ctx, ox_queue_finish(f.q));
    /* freed: the program's kernels go with it, and are refused after */
    ox_program_free(p);
    ASSERT_EQ(ox_kernel_launch(f.q, k, global, local, NULL), OX_ERR_INVALID_HANDLE);
    ox_context_free(f.ctx);
}

OX_TEST_MAIN(saxpy_matches_the_host, bias_gelu_matches_the_host,
             tiled_reduction_with_local_memory, bad_input_is_named)
