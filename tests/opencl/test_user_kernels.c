/* User kernels (openxpu/kernel.h) on every device that runs them here: the
 * CPU (the dialect compiled as C at run time) and the OpenCL device (PoCL).
 * Each program in the portable dialect is checked against a host loop in
 * double precision, the same source on every device; every kind of bad
 * input is refused with a message naming the kernel, the argument or the
 * device. */
#include <openxpu/openxpu.h>
#include <math.h>
#include <pthread.h>
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
/* one partial sum per work-group, by a tree in local memory */
static const char REDUCE_LOCAL_ARGS[] =
    "KERNEL partial_sums(ARG_BUF(float, out), ARG_BUF(const float, x), LOCAL float *tile,\n"
    "                    LOCAL int *count, int n)\n"
    "{\n"
    "    BUF(float, out);\n"
    "    BUF(const float, x);\n"
    "    int lid = ox_local_id(0), wg = ox_local_size(0);\n"
    "    i64 i = ox_global_id(0);\n"
    "    tile[lid] = i < n ? x[i] : 0.0f;\n"
    "    if (lid == 0) count[0] = 0;\n"
    "    BARRIER();\n"
    "    for (int s = wg / 2; s > 0; s >>= 1) {\n"
    "        if (lid < s) tile[lid] += tile[lid + s];\n"
    "        BARRIER();\n"
    "    }\n"
    "    if (i < n) ox_atomic_add_int(&count[0], 1);\n"
    "    BARRIER();\n"
    "    if (lid == 0) out[ox_group_id(0)] = tile[0] + 1000.0f * (float)count[0];\n"
    "}\n";

/* every scalar size, read back through a buffer of i64 */
static const char SCALARS[] =
    "KERNEL scalars(ARG_BUF(i64, out), uchar c, short s, int i, float f, i64 l, double d,\n"
    "               u64 u)\n"
    "{\n"
    "    BUF(i64, out);\n"
    "    out[0] = c; out[1] = s; out[2] = i; out[3] = (i64)(f * 4.0f);\n"
    "    out[4] = l; out[5] = (i64)(d * 8.0); out[6] = (i64)(u >> 1);\n"
    "}\n";

/* the geometry of a 3-d launch: one record per work-item */
static const char GEOMETRY[] =
    "KERNEL geometry(ARG_BUF(int, out))\n"
    "{\n"
    "    BUF(int, out);\n"
    "    i64 gx = ox_global_id(0), gy = ox_global_id(1), gz = ox_global_id(2);\n"
    "    i64 w = (i64)ox_num_groups(0) * ox_local_size(0);\n"
    "    i64 h = (i64)ox_num_groups(1) * ox_local_size(1);\n"
    "    GLOBAL int *r = out + 4 * ((gz * h + gy) * w + gx);\n"
    "    r[0] = ox_group_id(0) * 100 + ox_group_id(1) * 10 + ox_group_id(2);\n"
    "    r[1] = ox_local_id(0) * 100 + ox_local_id(1) * 10 + ox_local_id(2);\n"
    "    r[2] = ox_local_size(0) * 100 + ox_local_size(1) * 10 + ox_local_size(2);\n"
    "    r[3] = ox_num_groups(0) * 100 + ox_num_groups(1) * 10 + ox_num_groups(2);\n"
    "}\n";

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
    ox_device *dev, *other; /* the device under test; another one */
    ox_queue *q;
    const char *id;
} fixture;

/* The devices the cases run on: the CPU (with a C compiler) and the first
 * OpenCL device. A device that cannot run user kernels here is said. */
#define MAX_DEVICES 2

static int open_devices(fixture *f)
{
    const char *env = getenv("OX_BACKEND_PATH");
    const char *plugin = env && *env ? env : OX_TEST_OPENCL_PLUGIN;
    int n = 0;
    static const char *ids[MAX_DEVICES] = {"cpu", "opencl:0"};
    const char *only = getenv("OX_TEST_DEVICE"); /* for debugging: one of ids */
    for (int i = 0; i < MAX_DEVICES; i++) {
        if (only && *only && strcmp(only, ids[i]) != 0) continue;
        fixture *x = &f[n];
        ox_context_options o = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
        if (!(env && *env)) o.backend_path = plugin;
        ASSERT_OK(NULL, ox_context_create(&o, &x->ctx));
        int got = 0;
        if (ox_device_select(x->ctx, ids[i], &x->dev, 1, &got) != OX_OK || got != 1) {
            printf("  %s: absent here, not run there (%s)\n", ids[i], ox_errmsg(x->ctx));
            ox_context_free(x->ctx);
            continue;
        }
        /* can it build? (the CPU needs a C compiler) */
        ox_program *probe;
        ox_status s = ox_program_build(x->dev, SAXPY, NULL, &probe);
        if (s == OX_ERR_UNSUPPORTED) {
            printf("  %s: no user kernels here, not run there (%s)\n", ids[i], ox_errmsg(x->ctx));
            ox_context_free(x->ctx);
            continue;
        }
        ASSERT_OK(x->ctx, s);
        ox_program_free(probe);
        /* another device, for the foreign-buffer and foreign-queue cases */
        if (ox_device_select(x->ctx, i == 0 ? "opencl:0" : "cpu", &x->other, 1, &got) != OX_OK ||
            got != 1)
            x->other = NULL;
        ASSERT_OK(x->ctx, ox_queue_create(x->dev, &x->q));
        x->id = ids[i];
        n++;
    }
    if (n == 0) OX_SKIP("no device runs user kernels here");
    return n;
}

#define FOR_EACH_DEVICE(f)                                               \
    fixture devices_[MAX_DEVICES];                                      \
    int n_devices_ = open_devices(devices_);                            \
    for (fixture *f = devices_; f < devices_ + n_devices_; f++)         \
        for (int once_ = (printf("  on %s\n", f->id), fflush(stdout), 1); once_; once_ = 0, ox_context_free(f->ctx))

static ox_buffer *upload(fixture *f, const void *data, size_t bytes)
{
    ox_buffer *b;
    ASSERT_OK(f->ctx, ox_buffer_alloc(f->dev, bytes, &b));
    if (data) ASSERT_OK(f->ctx, ox_buffer_write(b, 0, data, bytes));
    return b;
}

static ox_kernel *build(fixture *f, const char *source, const char *options, const char *name)
{
    ox_program *p;
    ASSERT_OK(f->ctx, ox_program_build(f->dev, source, options, &p));
    ox_kernel *k;
    ASSERT_OK(f->ctx, ox_program_kernel(p, name, &k));
    return k;
}

/* Launch k and read `bytes` of buffer b back once it has run. */
static void run_and_read(fixture *f, ox_kernel *k, const size_t global[3], const size_t local[3],
                         ox_buffer *b, void *out, size_t bytes)
{
    ASSERT_OK(f->ctx, ox_kernel_launch(f->q, k, global, local, NULL));
    ASSERT_OK(f->ctx, ox_queue_finish(f->q));
    ASSERT_OK(f->ctx, ox_buffer_read(b, 0, out, bytes));
}

static void saxpy_args(fixture *f, ox_kernel *k, ox_buffer *y, ox_buffer *x, float a, int n)
{
    ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 0, y));
    ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 1, x));
    ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 2, &a, sizeof a));
    ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
}

OX_TEST(saxpy_matches_the_host)
{
    FOR_EACH_DEVICE(f) {
        enum { N = 1000 };
        float x[N], y[N], out[N];
        for (int i = 0; i < N; i++) x[i] = (float)i * 0.5f, y[i] = 1.0f - (float)i;
        ox_buffer *bx = upload(f, x, sizeof x), *by = upload(f, y, sizeof y);
        ox_kernel *k = build(f, SAXPY, NULL, "saxpy");
        float a = 3.0f;
        saxpy_args(f, k, by, bx, a, N);
        size_t global[3] = {1024, 1, 1}, local[3] = {64, 1, 1};
        ox_event *done;
        ASSERT_OK(f->ctx, ox_kernel_launch(f->q, k, global, local, &done));
        ASSERT_OK(f->ctx, ox_event_wait(done));
        ox_event_free(done);
        ASSERT_OK(f->ctx, ox_buffer_read(by, 0, out, sizeof out));
        for (int i = 0; i < N; i++) /* a product and a sum, rounded once each */
            ASSERT(out[i] == (float)((double)(float)((double)a * x[i]) + y[i]));
    }
}

OX_TEST(sub_buffers_are_arguments)
{
    FOR_EACH_DEVICE(f) {
        enum { N = 256, AT = 64 };
        float x[N], y[N], out[N];
        for (int i = 0; i < N; i++) x[i] = (float)i, y[i] = 1.0f;
        ox_buffer *bx = upload(f, x, sizeof x), *by = upload(f, y, sizeof y), *sub;
        ASSERT_OK(f->ctx, ox_buffer_sub(by, AT * sizeof(float), 64 * sizeof(float), &sub));
        ox_kernel *k = build(f, SAXPY, NULL, "saxpy");
        saxpy_args(f, k, sub, bx, 2.0f, 64);
        size_t global[3] = {64, 1, 1}, local[3] = {16, 1, 1};
        run_and_read(f, k, global, local, by, out, sizeof out);
        for (int i = 0; i < N; i++)
            ASSERT(out[i] == (i >= AT && i < AT + 64 ? 2.0f * (float)(i - AT) + 1.0f : 1.0f));
    }
}

OX_TEST(bias_gelu_matches_the_host)
{
    FOR_EACH_DEVICE(f) {
        enum { ROWS = 7, COLS = 33, N = ROWS * COLS };
        float x[N], bias[COLS], out[N];
        for (int i = 0; i < N; i++) x[i] = (float)(i % 17) * 0.37f - 3.0f;
        for (int c = 0; c < COLS; c++) bias[c] = (float)c * 0.05f - 0.8f;
        ox_buffer *bx = upload(f, x, sizeof x), *bb = upload(f, bias, sizeof bias),
                  *by = upload(f, NULL, sizeof out);
        ox_kernel *k = build(f, BIAS_GELU, NULL, "bias_gelu");
        int cols = COLS, n = N;
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 0, by));
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 1, bx));
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 2, bb));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 3, &cols, sizeof cols));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 4, &n, sizeof n));
        size_t global[3] = {256, 1, 1}, local[3] = {32, 1, 1};
        run_and_read(f, k, global, local, by, out, sizeof out);
        for (int i = 0; i < N; i++) {
            double v = (double)x[i] + bias[i % COLS];
            double want = 0.5 * v * (1.0 + tanh(0.7978845608 * (v + 0.044715 * v * v * v)));
            ASSERT_NEAR(out[i], want, 1e-5);
        }
    }
}

static void check_sums(fixture *f, const char *source, const char *options, bool local_args)
{
    enum { N = 3000, WG = 128, GROUPS = (N + WG - 1) / WG };
    float x[N], parts[GROUPS];
    double want = 0;
    for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 101) / 16.0f, want += x[i];
    ox_buffer *bx = upload(f, x, sizeof x), *bo = upload(f, NULL, sizeof parts);
    ox_kernel *k = build(f, source, options, "partial_sums");
    int n = N, i = 0;
    ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, i++, bo));
    ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, i++, bx));
    if (local_args) {
        ASSERT_OK(f->ctx, ox_kernel_set_local(k, i++, WG * sizeof(float)));
        ASSERT_OK(f->ctx, ox_kernel_set_local(k, i++, sizeof(int)));
    }
    ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, i++, &n, sizeof n));
    size_t global[3] = {(size_t)GROUPS * WG, 1, 1}, local[3] = {WG, 1, 1};
    run_and_read(f, k, global, local, bo, parts, sizeof parts);
    double got = 0;
    for (int g = 0; g < GROUPS; g++) {
        double part = 0;
        for (int j = g * WG; j < (g + 1) * WG && j < N; j++) part += x[j];
        if (local_args) { /* the count of work-items in range rides on top */
            int in_range = N - g * WG < WG ? N - g * WG : WG;
            part += 1000.0 * in_range;
        }
        ASSERT_NEAR(parts[g], part, 1e-6 * part); /* x/16 with 7-bit numerators: exact */
        got += parts[g];
    }
    if (!local_args) ASSERT_NEAR(got, want, 1e-6 * want);
}

OX_TEST(tiled_reduction_with_a_local_array)
{
    FOR_EACH_DEVICE(f) check_sums(f, REDUCE, "-DWG=128", false);
}

OX_TEST(tiled_reduction_with_local_parameters)
{
    FOR_EACH_DEVICE(f) check_sums(f, REDUCE_LOCAL_ARGS, NULL, true);
}

OX_TEST(scalars_of_every_size)
{
    FOR_EACH_DEVICE(f) {
        long long out[7];
        ox_buffer *bo = upload(f, NULL, sizeof out);
        ox_kernel *k = build(f, SCALARS, NULL, "scalars");
        unsigned char c = 200;
        short s = -12345;
        int i = -2000000000;
        float fl = -2.75f;
        long long l = -5000000000ll;
        double d = 1.125;
        unsigned long long u = 0xfedcba9876543210ull;
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 0, bo));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 1, &c, sizeof c));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 2, &s, sizeof s));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 3, &i, sizeof i));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 4, &fl, sizeof fl));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 5, &l, sizeof l));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 6, &d, sizeof d));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 7, &u, sizeof u));
        size_t one[3] = {1, 1, 1};
        run_and_read(f, k, one, one, bo, out, sizeof out);
        ASSERT_EQ(out[0], 200);
        ASSERT_EQ(out[1], -12345);
        ASSERT_EQ(out[2], -2000000000);
        ASSERT_EQ(out[3], -11);
        ASSERT_EQ(out[4], -5000000000ll);
        ASSERT_EQ(out[5], 9);
        ASSERT_EQ(out[6], (long long)(u >> 1));
    }
}

OX_TEST(three_dimensional_geometry)
{
    FOR_EACH_DEVICE(f) {
        enum { GX = 3, GY = 2, GZ = 2, LX = 4, LY = 2, LZ = 3 };
        enum { W = GX * LX, H = GY * LY, D = GZ * LZ, N = W * H * D };
        static int out[4 * N];
        ox_buffer *bo = upload(f, NULL, sizeof out);
        ox_kernel *k = build(f, GEOMETRY, NULL, "geometry");
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 0, bo));
        size_t global[3] = {W, H, D}, local[3] = {LX, LY, LZ};
        run_and_read(f, k, global, local, bo, out, sizeof out);
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const int *r = out + 4 * ((z * H + y) * W + x);
                    ASSERT_EQ(r[0], (x / LX) * 100 + (y / LY) * 10 + z / LZ);
                    ASSERT_EQ(r[1], (x % LX) * 100 + (y % LY) * 10 + z % LZ);
                    ASSERT_EQ(r[2], LX * 100 + LY * 10 + LZ);
                    ASSERT_EQ(r[3], GX * 100 + GY * 10 + GZ);
                }
    }
}

OX_TEST(bad_input_is_named)
{
    FOR_EACH_DEVICE(f) {
        ox_program *p;
        /* a syntax error: the compiler's log comes back */
        ASSERT_EQ(ox_program_build(f->dev, "KERNEL broken(int n) { n = ; }", NULL, &p),
                  OX_ERR_BUILD);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "user program");
        ASSERT_CONTAINS(ox_errmsg(f->ctx), f->id);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "compiler log");
        /* parameters the library cannot place: named before any compiler */
        ASSERT_EQ(ox_program_build(f->dev, "KERNEL k(GLOBAL float *x) { x[0] = 1; }", NULL, &p),
                  OX_ERR_BUILD);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "kernel 'k', parameter 0 'GLOBAL float *x': a pointer");
        ASSERT_EQ(ox_program_build(f->dev, "KERNEL k(size_t n) { }", NULL, &p), OX_ERR_BUILD);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "scalar type 'size_t'");
        ASSERT_EQ(ox_program_build(f->dev, SAXPY, "-O3", &p), OX_ERR_BUILD);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "-O3");

        ASSERT_OK(f->ctx, ox_program_build(f->dev, SAXPY, NULL, &p));
        ox_kernel *k;
        ASSERT_EQ(ox_program_kernel(p, "saxpi", &k), OX_ERR_NOT_FOUND);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "no kernel 'saxpi' on");
        ASSERT_OK(f->ctx, ox_program_kernel(p, "saxpy", &k));
        ox_buffer *b = upload(f, NULL, 64 * sizeof(float));
        if (f->other) {
            ox_buffer *foreign;
            ASSERT_OK(f->ctx, ox_buffer_alloc(f->other, 256, &foreign));
            ASSERT_EQ(ox_kernel_set_buffer(k, 0, foreign), OX_ERR_INVALID);
            ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 0 is a buffer of");
        }
        double d = 1;
        /* wrong kinds and sizes, named with the declared parameter */
        ASSERT_EQ(ox_kernel_set_scalar(k, 2, &d, sizeof d), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "'saxpy'");
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 2: a scalar of 8 bytes; 'a' is declared "
                                           "'float', 4 bytes");
        ASSERT_EQ(ox_kernel_set_scalar(k, 0, &d, 4), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 0 ('y') is a buffer (ARG_BUF), not a scalar");
        ASSERT_EQ(ox_kernel_set_buffer(k, 3, b), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 3 ('n') is a scalar");
        ASSERT_EQ(ox_kernel_set_local(k, 1, 64), OX_ERR_INVALID);
        ASSERT_EQ(ox_kernel_set_scalar(k, 4, &d, 4), OX_ERR_OUT_OF_RANGE);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 4 does not exist; it takes 4");
        /* arguments 0 and 3 set, 1 and 2 not */
        int n = 64;
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 0, b));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
        size_t global[3] = {64, 1, 1}, local[3] = {64, 1, 1};
        ASSERT_EQ(ox_kernel_launch(f->q, k, global, local, NULL), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 1 ('x') is not set");
        float a = 2;
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(k, 1, b));
        ASSERT_OK(f->ctx, ox_kernel_set_scalar(k, 2, &a, sizeof a));
        size_t odd[3] = {100, 1, 1};
        ASSERT_EQ(ox_kernel_launch(f->q, k, odd, local, NULL), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "not a multiple");
        size_t huge[3] = {1 << 20, 1, 1}, big[3] = {1 << 20, 1, 1};
        ASSERT_EQ(ox_kernel_launch(f->q, k, huge, big, NULL), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "kernel 'saxpy': work-group");
        ASSERT_CONTAINS(ox_errmsg(f->ctx), f->id);
        if (f->other) {
            ox_queue *other_q;
            ASSERT_OK(f->ctx, ox_queue_create(f->other, &other_q));
            ASSERT_EQ(ox_kernel_launch(other_q, k, global, local, NULL), OX_ERR_INVALID);
            ASSERT_CONTAINS(ox_errmsg(f->ctx), "the queue is on");
        }
        ASSERT_OK(f->ctx, ox_kernel_launch(f->q, k, global, local, NULL));
        ASSERT_OK(f->ctx, ox_queue_finish(f->q));
        /* freed: the program's kernels go with it, and are refused after */
        ox_program_free(p);
        ASSERT_EQ(ox_kernel_launch(f->q, k, global, local, NULL), OX_ERR_INVALID_HANDLE);

        /* local memory: more than the device has */
        ox_kernel *r = build(f, REDUCE_LOCAL_ARGS, NULL, "partial_sums");
        ox_device_info info = {.struct_size = sizeof info};
        ASSERT_OK(f->ctx, ox_device_get_info(f->dev, &info));
        ASSERT_EQ(ox_kernel_set_local(r, 2, (size_t)info.local_memory_bytes + 1), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "bytes of local memory");
        /* a fixed work-group size is kept */
        ox_kernel *w = build(f, "KERNEL_WG(32, 1, 1) fixed(ARG_BUF(float, y))\n"
                                "{ BUF(float, y); y[ox_global_id(0)] = 1.0f; }\n", NULL, "fixed");
        ASSERT_OK(f->ctx, ox_kernel_set_buffer(w, 0, b));
        ASSERT_EQ(ox_kernel_launch(f->q, w, global, local, NULL), OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "KERNEL_WG(32, 1, 1)");
        size_t wg32[3] = {32, 1, 1};
        ASSERT_OK(f->ctx, ox_kernel_launch(f->q, w, global, wg32, NULL));
    }
}

/* What a program defines and what each kernel takes, as declared. */
OX_TEST(kernels_and_parameters_are_listed)
{
    FOR_EACH_DEVICE(f) {
        ox_program *p;
        ASSERT_OK(f->ctx, ox_program_build(f->dev, REDUCE_LOCAL_ARGS, NULL, &p));
        int count = -1;
        const char *name;
        ASSERT_OK(f->ctx, ox_program_kernel_count(p, &count));
        ASSERT_EQ(count, 1);
        ASSERT_OK(f->ctx, ox_program_kernel_name(p, 0, &name));
        ASSERT_STR_EQ(name, "partial_sums");
        ASSERT_EQ(ox_program_kernel_name(p, 1, &name), OX_ERR_OUT_OF_RANGE);
        ox_kernel *k;
        ASSERT_OK(f->ctx, ox_program_kernel(p, name, &k));
        ASSERT_OK(f->ctx, ox_kernel_arg_count(k, &count));
        ASSERT_EQ(count, 5);
        static const struct {
            ox_kernel_arg_kind kind;
            const char *name, *type;
            size_t size;
        } want[5] = {{OX_KERNEL_ARG_BUFFER, "out", "float", 0},
                     {OX_KERNEL_ARG_BUFFER, "x", "const float", 0},
                     {OX_KERNEL_ARG_LOCAL, "tile", "LOCAL float *", 0},
                     {OX_KERNEL_ARG_LOCAL, "count", "LOCAL int *", 0},
                     {OX_KERNEL_ARG_SCALAR, "n", "int", 4}};
        for (int i = 0; i < 5; i++) {
            ox_kernel_arg_info info = {.struct_size = sizeof info};
            ASSERT_OK(f->ctx, ox_kernel_get_arg_info(k, i, &info));
            ASSERT_EQ(info.kind, want[i].kind);
            ASSERT_STR_EQ(info.name, want[i].name);
            ASSERT_STR_EQ(info.type, want[i].type);
            ASSERT_EQ(info.size, want[i].size);
        }
        ox_kernel_arg_info info = {.struct_size = sizeof info};
        ASSERT_EQ(ox_kernel_get_arg_info(k, 5, &info), OX_ERR_OUT_OF_RANGE);
        ASSERT_CONTAINS(ox_errmsg(f->ctx), "argument 5 does not exist; it takes 5");
        info.struct_size = 0;
        ASSERT_EQ(ox_kernel_get_arg_info(k, 0, &info), OX_ERR_INVALID);
    }
}

/* A program built once is loaded from the kernel cache by the next
 * context (a fresh cache folder, so the first build is a miss). */
OX_TEST(programs_are_cached)
{
    char dir_name[] = "/tmp/ox-user-cache-XXXXXX";
    const char *dir = mkdtemp(dir_name);
    ASSERT(dir != NULL);
    setenv("OX_CACHE_DIR", dir, 1);
    static const char *ids[2] = {"cpu", "opencl:0"};
    const char *env = getenv("OX_BACKEND_PATH");
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        for (int round = 0; round < 2; round++) {
            test_log log;
            test_log_init(&log);
            ox_context_options o = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
            if (!(env && *env)) o.backend_path = OX_TEST_OPENCL_PLUGIN;
            o.log_level = OX_LOG_DEBUG;
            test_log_attach(&log, &o);
            ox_context *ctx;
            ASSERT_OK(NULL, ox_context_create(&o, &ctx));
            ox_device *dev;
            int n = 0;
            ox_program *p;
            if (ox_device_select(ctx, ids[i], &dev, 1, &n) != OX_OK || n != 1 ||
                ox_program_build(dev, SAXPY, "-DUNIQUE_TO_THIS_TEST=1", &p) == OX_ERR_UNSUPPORTED) {
                printf("  %s: not here, not run there\n", ids[i]);
                ox_context_free(ctx);
                break;
            }
            ox_kernel *k;
            ASSERT_OK(ctx, ox_program_kernel(p, "saxpy", &k));
            if (round == 0) {
                ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", dir);
            } else {
                ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: hit", dir);
                printf("  %s: the second build came from the cache\n", ids[i]);
                ran++;
            }
            ox_context_free(ctx);
        }
    }
    unsetenv("OX_CACHE_DIR");
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    ASSERT_EQ(system(command), 0);
    if (!ran) OX_SKIP("no device runs user kernels here");
}

/* The CPU's own checks: barriers that split a group, local arrays that do
 * not fit, no compiler at all. */
static fixture open_cpu(void)
{
    fixture f = {.id = "cpu"};
    ox_context_options o = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    ASSERT_OK(NULL, ox_context_create(&o, &f.ctx));
    int n;
    ASSERT_OK(f.ctx, ox_device_select(f.ctx, "cpu", &f.dev, 1, &n));
    ASSERT_OK(f.ctx, ox_queue_create(f.dev, &f.q));
    ox_program *probe;
    if (ox_program_build(f.dev, SAXPY, NULL, &probe) == OX_ERR_UNSUPPORTED)
        OX_SKIP("the CPU has no C compiler here: %s", ox_errmsg(f.ctx));
    ox_program_free(probe);
    return f;
}

OX_TEST(cpu_names_a_group_split_at_a_barrier)
{
    fixture f = open_cpu();
    ox_buffer *b = upload(&f, NULL, 64 * sizeof(float));
    size_t global[3] = {64, 1, 1}, local[3] = {32, 1, 1};
    ox_kernel *k = build(&f, "KERNEL split(ARG_BUF(float, y))\n"
                             "{\n"
                             "    BUF(float, y);\n"
                             "    if (ox_local_id(0) == 3) return;\n"
                             "    BARRIER();\n"
                             "    y[ox_global_id(0)] = 1.0f;\n"
                             "}\n", NULL, "split");
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, b));
    ASSERT_EQ(ox_kernel_launch(f.q, k, global, local, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "work-item (3, 0, 0) returned while others wait at the "
                                      "barrier on line 5");
    k = build(&f, "KERNEL two(ARG_BUF(float, y))\n"
                  "{\n"
                  "    BUF(float, y);\n"
                  "    if (ox_local_id(0) & 1) { BARRIER(); } else { BARRIER(); }\n"
                  "    y[ox_global_id(0)] = 1.0f;\n"
                  "}\n", NULL, "two");
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, b));
    /* the same line: two barriers on one line are one to this check */
    ASSERT_OK(f.ctx, ox_kernel_launch(f.q, k, global, local, NULL));
    k = build(&f, "KERNEL two(ARG_BUF(float, y))\n"
                  "{\n"
                  "    BUF(float, y);\n"
                  "    if (ox_local_id(0) & 1) { BARRIER(); }\n"
                  "    else { BARRIER(); }\n"
                  "    y[ox_global_id(0)] = 1.0f;\n"
                  "}\n", NULL, "two");
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, b));
    ASSERT_EQ(ox_kernel_launch(f.q, k, global, local, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "different barriers (lines 4 and 5)");
    ox_context_free(f.ctx);
}

OX_TEST(cpu_names_local_memory_that_does_not_fit)
{
    fixture f = open_cpu();
    ox_buffer *b = upload(&f, NULL, 64 * sizeof(float));
    ox_kernel *k = build(&f, "KERNEL big(ARG_BUF(float, y))\n"
                             "{\n"
                             "    BUF(float, y);\n"
                             "    LOCAL_ARRAY(float, t, 20000);\n"
                             "    t[ox_local_id(0)] = 1.0f;\n"
                             "    y[ox_global_id(0)] = t[ox_local_id(0)];\n"
                             "}\n", NULL, "big");
    ASSERT_OK(f.ctx, ox_kernel_set_buffer(k, 0, b));
    size_t global[3] = {64, 1, 1}, local[3] = {32, 1, 1};
    ASSERT_EQ(ox_kernel_launch(f.q, k, global, local, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "local memory (bytes) 80000 exceeds the 65536");
    ox_context_free(f.ctx);
}

/* Two threads, each launching its own reduction (barriers: fibers) on the
 * CPU at the same time: launches take turns, both sums are right. */
typedef struct racer {
    fixture *f;
    ox_kernel *k;
    ox_queue *q;
    ox_buffer *out;
    int failures;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    size_t global[3] = {64 * 128, 1, 1}, local[3] = {128, 1, 1};
    for (int i = 0; i < 20; i++)
        if (ox_kernel_launch(r->q, r->k, global, local, NULL) != OX_OK) r->failures++;
    return NULL;
}

OX_TEST(cpu_launches_from_two_threads)
{
    fixture f = open_cpu();
    enum { N = 64 * 128 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 7);
    ox_buffer *bx = upload(&f, x, sizeof x);
    racer r[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        r[i] = (racer){.f = &f, .k = build(&f, REDUCE_LOCAL_ARGS, NULL, "partial_sums")};
        ASSERT_OK(f.ctx, ox_queue_create(f.dev, &r[i].q));
        r[i].out = upload(&f, NULL, 64 * sizeof(float));
        int n = N;
        ASSERT_OK(f.ctx, ox_kernel_set_buffer(r[i].k, 0, r[i].out));
        ASSERT_OK(f.ctx, ox_kernel_set_buffer(r[i].k, 1, bx));
        ASSERT_OK(f.ctx, ox_kernel_set_local(r[i].k, 2, 128 * sizeof(float)));
        ASSERT_OK(f.ctx, ox_kernel_set_local(r[i].k, 3, sizeof(int)));
        ASSERT_OK(f.ctx, ox_kernel_set_scalar(r[i].k, 4, &n, sizeof n));
    }
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(r[i].failures, 0);
        float parts[64];
        ASSERT_OK(f.ctx, ox_buffer_read(r[i].out, 0, parts, sizeof parts));
        for (int g = 0; g < 64; g++) {
            double want = 1000.0 * 128;
            for (int j = g * 128; j < (g + 1) * 128; j++) want += x[j];
            ASSERT_NEAR(parts[g], want, 1e-3);
        }
    }
    ox_context_free(f.ctx);
}

/* Every host allocation of a build, an argument and a launch on the CPU
 * failing in turn: each call fails cleanly or succeeds, nothing leaks, and
 * the first run with no failure gives the right sums. */
OX_TEST(cpu_survives_allocation_failures)
{
    fixture probe = open_cpu(); /* skips without a C compiler */
    ox_context_free(probe.ctx);
    enum { N = 1024, WG = 64, GROUPS = N / WG };
    float x[N], parts[GROUPS];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 9);
    int clean_run = 0;
    for (long k = 0; k < 400 && !clean_run; k++) {
        test_alloc a;
        test_alloc_init(&a, -1);
        ox_context_options o = test_options(OX_CONTEXT_NO_PLUGINS);
        test_alloc_attach(&a, &o);
        ox_context *ctx;
        ASSERT_OK(NULL, ox_context_create(&o, &ctx));
        ox_device *cpu;
        int n = 0;
        ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &n));
        ox_queue *q;
        ox_buffer *bx, *bo;
        ASSERT_OK(ctx, ox_queue_create(cpu, &q));
        ASSERT_OK(ctx, ox_buffer_alloc(cpu, sizeof x, &bx));
        ASSERT_OK(ctx, ox_buffer_alloc(cpu, sizeof parts, &bo));
        ASSERT_OK(ctx, ox_buffer_write(bx, 0, x, sizeof x));
        atomic_store(&a.fail_from, atomic_load(&a.attempts) + k); /* from here on */
        ox_program *p = NULL;
        ox_kernel *kern = NULL;
        int count = N;
        size_t global[3] = {N, 1, 1}, local[3] = {WG, 1, 1};
        ox_status s = ox_program_build(cpu, REDUCE_LOCAL_ARGS, NULL, &p);
        if (s == OX_OK) s = ox_program_kernel(p, "partial_sums", &kern);
        if (s == OX_OK) s = ox_kernel_set_buffer(kern, 0, bo);
        if (s == OX_OK) s = ox_kernel_set_buffer(kern, 1, bx);
        if (s == OX_OK) s = ox_kernel_set_local(kern, 2, WG * sizeof(float));
        if (s == OX_OK) s = ox_kernel_set_local(kern, 3, sizeof(int));
        if (s == OX_OK) s = ox_kernel_set_scalar(kern, 4, &count, sizeof count);
        if (s == OX_OK) s = ox_kernel_launch(q, kern, global, local, NULL);
        ASSERT_MSG(s == OX_OK || s == OX_ERR_OUT_OF_MEMORY, "failure from allocation %ld: %s (%s)",
                   k, ox_status_str(s), ox_errmsg(ctx));
        if (s == OX_OK && atomic_load(&a.failures) == 0) {
            atomic_store(&a.fail_from, -1);
            ASSERT_OK(ctx, ox_buffer_read(bo, 0, parts, sizeof parts));
            for (int g = 0; g < GROUPS; g++) {
                double want = 1000.0 * WG;
                for (int j = g * WG; j < (g + 1) * WG; j++) want += x[j];
                ASSERT_NEAR(parts[g], want, 1e-3);
            }
            clean_run = 1;
            printf("  %ld allocation failures survived before a clean run\n", k);
        }
        ox_context_free(ctx);
        ASSERT_ALLOC_BALANCED(&a);
    }
    ASSERT(clean_run);
}

OX_TEST(cpu_without_a_compiler_says_what_to_do)
{
    setenv("OX_CC", "/nonexistent/cc", 1);
    ox_context *ctx;
    ox_context_options o = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    ox_device *cpu;
    int n;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &n));
    ox_program *p;
    ASSERT_EQ(ox_program_build(cpu, SAXPY, NULL, &p), OX_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(ox_errmsg(ctx), "no C compiler found (OX_CC=/nonexistent/cc is not "
                                    "executable)");
    ASSERT_CONTAINS(ox_errmsg(ctx), "OpenCL CPU device");
    ox_context_free(ctx);
    /* with the OpenCL plugin, the message names the device to use */
    const char *env = getenv("OX_BACKEND_PATH");
    if (!(env && *env)) o.backend_path = OX_TEST_OPENCL_PLUGIN;
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    ox_device *pocl;
    if (ox_device_select(ctx, "opencl:0", &pocl, 1, &n) == OX_OK && n == 1) {
        ox_device_info info = {.struct_size = sizeof info};
        ASSERT_OK(ctx, ox_device_get_info(pocl, &info));
        ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &n));
        ASSERT_EQ(ox_program_build(cpu, SAXPY, NULL, &p), OX_ERR_UNSUPPORTED);
        if (info.type == OX_DEVICE_CPU)
            ASSERT_CONTAINS(ox_errmsg(ctx), "here that is opencl:0");
        printf("  %s\n", ox_errmsg(ctx));
    }
    ox_context_free(ctx);
}

OX_TEST_MAIN(saxpy_matches_the_host, sub_buffers_are_arguments, bias_gelu_matches_the_host,
             tiled_reduction_with_a_local_array, tiled_reduction_with_local_parameters,
             scalars_of_every_size, three_dimensional_geometry, bad_input_is_named,
             kernels_and_parameters_are_listed, programs_are_cached,
             cpu_names_a_group_split_at_a_barrier, cpu_names_local_memory_that_does_not_fit,
             cpu_launches_from_two_threads, cpu_survives_allocation_failures,
             cpu_without_a_compiler_says_what_to_do)
