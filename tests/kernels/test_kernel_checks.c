/* OX_KERNEL_CHECKS=1 (issue 16): CPU user kernels run on guarded copies of
 * their buffers, and an access outside a buffer stops the launch with a
 * message naming the kernel, the work-item, the argument and the index,
 * leaving every buffer as it was; kernels that stay in bounds give the
 * same results as unchecked. Loops (no barrier) and fibers (barriers) both;
 * buffers of a whole number of pages (one run) and not (two runs, each
 * end exact). Without a C compiler the tests say so. */
#include <stdbool.h>
#include <stdlib.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"

enum { N = 1000, M = 1024 }; /* 4000 bytes: not whole pages; 4096: one page */

static const char *loops_source =
    "KERNEL past_end(ARG_BUF(const float, x), ARG_BUF(float, y), int n)\n"
    "{\n"
    "    BUF(const float, x); BUF(float, y);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i > n) return;\n" /* i == n: one past the end */
    "    y[i] = 2.0f * x[i < n ? i : 0];\n"
    "}\n"
    "KERNEL before_start(ARG_BUF(const float, x), ARG_BUF(float, y), int n)\n"
    "{\n"
    "    BUF(const float, x); BUF(float, y);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i < n) y[i] = x[i - 1];\n" /* i == 0 reads x[-1] */
    "}\n"
    "KERNEL in_bounds(ARG_BUF(const float, x), ARG_BUF(float, y), int n)\n"
    "{\n"
    "    BUF(const float, x); BUF(float, y);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i < n) y[i] = x[i] + 1.0f;\n"
    "}\n";

static const char *fibers_source =
    "KERNEL shifted(ARG_BUF(const float, x), ARG_BUF(float, y), LOCAL float *tile, int shift)\n"
    "{\n"
    "    BUF(const float, x); BUF(float, y);\n"
    "    i64 i = ox_global_id(0);\n"
    "    int l = (int)ox_local_id(0);\n"
    "    tile[l] = x[i];\n"
    "    BARRIER();\n"
    "    y[i + shift] = tile[(int)ox_local_size(0) - 1 - l];\n"
    "}\n";

typedef struct fixture {
    ox_context *ctx;
    ox_device *cpu;
    ox_queue *q;
    ox_buffer *x, *y;
    float hx[M], hy[M];
} fixture;

/* Checks on, a CPU context, x and y of n floats (y all 7.0), and `source`
 * built (or a skip saying why it cannot be). */
static ox_program *setup(fixture *f, int n, const char *source)
{
    setenv("OX_KERNEL_CHECKS", "1", 1);
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS};
    ASSERT_OK(NULL, ox_context_create(&o, &f->ctx));
    int n_dev;
    ASSERT_OK(f->ctx, ox_device_select(f->ctx, "cpu", &f->cpu, 1, &n_dev));
    ASSERT_OK(f->ctx, ox_queue_create(f->cpu, &f->q));
    for (int i = 0; i < n; i++) f->hx[i] = (float)i * 0.5f - 3.0f, f->hy[i] = 7.0f;
    ASSERT_OK(f->ctx, ox_buffer_alloc(f->cpu, (size_t)n * sizeof(float), &f->x));
    ASSERT_OK(f->ctx, ox_buffer_alloc(f->cpu, (size_t)n * sizeof(float), &f->y));
    ASSERT_OK(f->ctx, ox_buffer_write(f->x, 0, f->hx, (size_t)n * sizeof(float)));
    ASSERT_OK(f->ctx, ox_buffer_write(f->y, 0, f->hy, (size_t)n * sizeof(float)));
    ox_program *p;
    ox_status s = ox_program_build(f->cpu, source, NULL, &p);
    if (s == OX_ERR_UNSUPPORTED) OX_SKIP("%s", ox_errmsg(f->ctx));
    ASSERT_OK(f->ctx, s);
    return p;
}

static void teardown(fixture *f, ox_program *p)
{
    ox_program_free(p);
    ox_context_free(f->ctx);
    unsetenv("OX_KERNEL_CHECKS");
}

/* Launch kernel `name` of p over `global` items in groups of 64 (arguments
 * x, y, [local tile,] scalar). */
static ox_status launch(fixture *f, ox_program *p, const char *name, size_t global, int scalar,
                        bool tile)
{
    ox_kernel *k;
    ox_status s = ox_program_kernel(p, name, &k);
    if (s != OX_OK) return s;
    int at = 2;
    if ((s = ox_kernel_set_buffer(k, 0, f->x)) == OX_OK &&
        (s = ox_kernel_set_buffer(k, 1, f->y)) == OX_OK &&
        (!tile || (s = ox_kernel_set_local(k, at++, 64 * sizeof(float))) == OX_OK) &&
        (s = ox_kernel_set_scalar(k, at, &scalar, sizeof scalar)) == OX_OK) {
        size_t g[3] = {global, 1, 1}, l[3] = {64, 1, 1};
        s = ox_kernel_launch(f->q, k, g, l, NULL);
    }
    return s;
}

/* y still holds its 7.0s */
static void y_unchanged(fixture *f, int n)
{
    float back[M];
    ASSERT_OK(f->ctx, ox_buffer_read(f->y, 0, back, (size_t)n * sizeof(float)));
    for (int i = 0; i < n; i++) ASSERT_MSG(back[i] == 7.0f, "y[%d] = %g after a caught launch", i,
                                           (double)back[i]);
}

OX_TEST(loops_out_of_bounds_named)
{
    fixture f;
    ox_program *p = setup(&f, N, loops_source);

    /* 1024 work-items, n = 1000: item 1000 (group 15, item 40) writes y[1000] */
    ASSERT_EQ(launch(&f, p, "past_end", M, N, false), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "kernel 'past_end', group (15, 0, 0), work-item (40, 0, 0)");
#if defined(__x86_64__)
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "write out of the bounds");
#endif
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "argument 1 'y' (float, 1000 elements): index 1000 ");
    y_unchanged(&f, N);

    ASSERT_EQ(launch(&f, p, "before_start", M, N, false), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "kernel 'before_start', group (0, 0, 0), work-item (0, 0, 0)");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "argument 0 'x' (const float, 1000 elements): index -1 ");
    y_unchanged(&f, N);

    /* in bounds: the launch runs, and its results are written back */
    ASSERT_OK(f.ctx, launch(&f, p, "in_bounds", M, N, false));
    float back[N];
    ASSERT_OK(f.ctx, ox_buffer_read(f.y, 0, back, sizeof back));
    for (int i = 0; i < N; i++)
        ASSERT_MSG(back[i] == f.hx[i] + 1.0f, "y[%d] = %g, want %g", i, (double)back[i],
                   (double)(f.hx[i] + 1.0f));
    teardown(&f, p);
}

OX_TEST(fibers_out_of_bounds_named)
{
    fixture f;
    ox_program *p = setup(&f, M, fibers_source);
    /* shift 1: the last item (group 15, item 63) writes y[1024] after the barrier */
    ASSERT_EQ(launch(&f, p, "shifted", M, 1, true), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "kernel 'shifted', group (15, 0, 0), work-item (63, 0, 0)");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "argument 1 'y' (float, 1024 elements): index 1024 ");
    y_unchanged(&f, M);
    /* shift 0: each group's tile reversed; the fibers left by the fault are made afresh */
    ASSERT_OK(f.ctx, launch(&f, p, "shifted", M, 0, true));
    float back[M];
    ASSERT_OK(f.ctx, ox_buffer_read(f.y, 0, back, sizeof back));
    for (int i = 0; i < M; i++) {
        float want = f.hx[i / 64 * 64 + 63 - i % 64];
        ASSERT_MSG(back[i] == want, "y[%d] = %g, want %g", i, (double)back[i], (double)want);
    }
    teardown(&f, p);
}

OX_TEST_MAIN(loops_out_of_bounds_named, fibers_out_of_bounds_named)
