/* bench_user_kernels: user kernels on the CPU (the dialect compiled as C,
 * work-groups on the thread pool, barriers as fibers) against PoCL running
 * the same source on the same cores, measured in the same run.
 *
 *   bench_user_kernels [--reps N] [--json]
 *
 * The kernels are the examples' (examples/kernels): SAXPY over 2^24 floats
 * (no barrier: work-items in a loop), bias + GELU over 4096 x 1024 (2-d
 * groups), and the tiled reduction of 2^24 floats (eight barriers per
 * work-item: fibers), and the cost of a barrier: a kernel that passes 100
 * barriers per work-item in groups of 256, reported in nanoseconds per
 * work-item and barrier. Each launch is timed to completion (queue finished),
 * best of --reps (5) after one warm-up; GB/s counts the bytes the kernel
 * must move. Results are checked against the host first; a wrong result
 * fails the program. Without an OpenCL device the peer column says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "openxpu/openxpu.h"

#ifndef EXAMPLE_KERNEL_DIR
#error "EXAMPLE_KERNEL_DIR must name examples/kernels"
#endif

enum { N = 1 << 24, ROWS = 4096, COLS = 1024, RGROUPS = 256, WG = 256 };

static char *read_text(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", EXAMPLE_KERNEL_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text && fread(text, 1, (size_t)n, f) == (size_t)n) text[n] = '\0';
    else free(text), text = NULL;
    fclose(f);
    return text;
}

#define CHECK(ctx, call)                                                           \
    do {                                                                           \
        ox_status s_ = (call);                                                     \
        if (s_ != OX_OK) {                                                         \
            fprintf(stderr, "bench_user_kernels: %s: %s\n", #call, ox_errmsg(ctx)); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

/* 2 x ROUNDS barriers per work-item, little else */
#define ROUNDS 50
static const char BARRIERS[] =
    "KERNEL barriers(ARG_BUF(float, y), int rounds)\n"
    "{\n"
    "    BUF(float, y);\n"
    "    LOCAL_ARRAY(float, t, 256);\n"
    "    float v = 0.0f;\n"
    "    for (int r = 0; r < rounds; r++) {\n"
    "        t[ox_local_id(0)] = (float)r;\n"
    "        BARRIER();\n"
    "        v += t[(ox_local_id(0) + 1) % ox_local_size(0)];\n"
    "        BARRIER();\n"
    "    }\n"
    "    y[ox_global_id(0)] = v;\n"
    "}\n";
enum { BGROUPS = 64 };

typedef struct device_run {
    ox_context *ctx;
    ox_device *device;
    ox_queue *queue;
    ox_kernel *saxpy, *gelu, *reduce, *barriers;
    ox_buffer *x, *y, *bias, *parts;
} device_run;

static ox_kernel *kernel(device_run *d, const char *file, const char *name)
{
    char *source = file ? read_text(file) : strdup(BARRIERS);
    if (!source) {
        fprintf(stderr, "bench_user_kernels: cannot read %s/%s\n", EXAMPLE_KERNEL_DIR, file);
        exit(1);
    }
    ox_program *p;
    ox_kernel *k;
    CHECK(d->ctx, ox_program_build(d->device, source, NULL, &p));
    CHECK(d->ctx, ox_program_kernel(p, name, &k));
    free(source);
    return k;
}

static void setup(device_run *d, const float *x, const float *bias)
{
    d->saxpy = kernel(d, "saxpy.oxc", "saxpy");
    d->gelu = kernel(d, "bias_gelu.oxc", "bias_gelu");
    d->reduce = kernel(d, "reduce.oxc", "partial_sums");
    d->barriers = kernel(d, NULL, "barriers");
    CHECK(d->ctx, ox_buffer_alloc(d->device, (size_t)N * 4, &d->x));
    CHECK(d->ctx, ox_buffer_alloc(d->device, (size_t)N * 4, &d->y));
    CHECK(d->ctx, ox_buffer_alloc(d->device, COLS * 4, &d->bias));
    CHECK(d->ctx, ox_buffer_alloc(d->device, RGROUPS * 4, &d->parts));
    CHECK(d->ctx, ox_queue_write(d->queue, d->x, 0, x, (size_t)N * 4, NULL));
    CHECK(d->ctx, ox_queue_write(d->queue, d->bias, 0, bias, COLS * 4, NULL));
    float a = 0.5f;
    int n = N, rows = ROWS, cols = COLS;
    long long n64 = N;
    CHECK(d->ctx, ox_kernel_set_buffer(d->saxpy, 0, d->y));
    CHECK(d->ctx, ox_kernel_set_buffer(d->saxpy, 1, d->x));
    CHECK(d->ctx, ox_kernel_set_scalar(d->saxpy, 2, &a, sizeof a));
    CHECK(d->ctx, ox_kernel_set_scalar(d->saxpy, 3, &n, sizeof n));
    CHECK(d->ctx, ox_kernel_set_buffer(d->gelu, 0, d->y));
    CHECK(d->ctx, ox_kernel_set_buffer(d->gelu, 1, d->x));
    CHECK(d->ctx, ox_kernel_set_buffer(d->gelu, 2, d->bias));
    CHECK(d->ctx, ox_kernel_set_scalar(d->gelu, 3, &rows, sizeof rows));
    CHECK(d->ctx, ox_kernel_set_scalar(d->gelu, 4, &cols, sizeof cols));
    CHECK(d->ctx, ox_kernel_set_buffer(d->reduce, 0, d->parts));
    CHECK(d->ctx, ox_kernel_set_buffer(d->reduce, 1, d->x));
    CHECK(d->ctx, ox_kernel_set_local(d->reduce, 2, WG * sizeof(float)));
    CHECK(d->ctx, ox_kernel_set_scalar(d->reduce, 3, &n64, sizeof n64));
    int rounds = ROUNDS;
    CHECK(d->ctx, ox_kernel_set_buffer(d->barriers, 0, d->y));
    CHECK(d->ctx, ox_kernel_set_scalar(d->barriers, 1, &rounds, sizeof rounds));
    CHECK(d->ctx, ox_queue_finish(d->queue));
}

/* Seconds of one launch of case c, best of reps after a warm-up. */
static double time_case(device_run *d, int c, int reps)
{
    static const size_t g_saxpy[3] = {N, 1, 1}, l_saxpy[3] = {256, 1, 1};
    static const size_t g_gelu[3] = {COLS, ROWS, 1}, l_gelu[3] = {64, 4, 1};
    static const size_t g_red[3] = {(size_t)RGROUPS * WG, 1, 1}, l_red[3] = {WG, 1, 1};
    static const size_t g_bar[3] = {(size_t)BGROUPS * 256, 1, 1};
    ox_kernel *const kernels[4] = {d->saxpy, d->gelu, d->reduce, d->barriers};
    const size_t *const globals[4] = {g_saxpy, g_gelu, g_red, g_bar};
    const size_t *const locals[4] = {l_saxpy, l_gelu, l_red, l_red};
    ox_kernel *k = kernels[c];
    const size_t *g = globals[c], *l = locals[c];
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_seconds();
        CHECK(d->ctx, ox_kernel_launch(d->queue, k, g, l, NULL));
        CHECK(d->ctx, ox_queue_finish(d->queue));
        double t = bench_seconds() - t0;
        if (r > 0 && t < best) best = t; /* run 0 warms up */
    }
    return best;
}

/* The reduction's result against the host's double sum. */
static int check_sum(device_run *d, double want)
{
    float parts[RGROUPS];
    CHECK(d->ctx, ox_queue_read(d->queue, d->parts, 0, parts, sizeof parts, NULL));
    CHECK(d->ctx, ox_queue_finish(d->queue));
    double got = 0;
    for (int i = 0; i < RGROUPS; i++) got += parts[i];
    return fabs(got - want) <= 1e-5 * fabs(want);
}

int main(int argc, char **argv)
{
    int reps = 5, json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else {
            fprintf(stderr, "usage: bench_user_kernels [--reps N] [--json]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    float *x = malloc((size_t)N * 4), bias[COLS];
    if (!x) return 1;
    double want = 0;
    for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 1001) / 64.0f - 7.0f, want += x[i];
    for (int c = 0; c < COLS; c++) bias[c] = (float)(c % 13) * 0.1f - 0.6f;

    static const char *const ids[2] = {"cpu", "opencl:0"};
    device_run runs[2] = {{0}};
    int present[2] = {0, 0};
    double seconds[2][4] = {{0}};
    for (int i = 0; i < 2; i++) {
        device_run *d = &runs[i];
        CHECK(NULL, ox_context_create(NULL, &d->ctx));
        int n = 0;
        if (ox_device_select(d->ctx, ids[i], &d->device, 1, &n) != OX_OK || n != 1) continue;
        CHECK(d->ctx, ox_queue_create(d->device, &d->queue));
        setup(d, x, bias);
        for (int c = 0; c < 4; c++) seconds[i][c] = time_case(d, c, reps);
        if (!check_sum(d, want)) {
            fprintf(stderr, "bench_user_kernels: %s: the reduction is wrong\n", ids[i]);
            return 1;
        }
        present[i] = 1;
    }
    if (!present[0]) return 1;
    static const char *const names[3] = {"saxpy 2^24", "bias_gelu 4096x1024", "reduce 2^24"};
    /* bytes moved: saxpy reads x, y and writes y; gelu reads x, writes y; reduce reads x */
    static const double bytes[3] = {3.0 * N * 4, 2.0 * ROWS * COLS * 4, 1.0 * N * 4};
    if (json) printf("{\"cases\": [");
    else printf("%-22s %12s %12s %10s\n", "case", "cpu GB/s", "PoCL GB/s", "cpu/PoCL");
    for (int c = 0; c < 3; c++) {
        double ours = bytes[c] / seconds[0][c] * 1e-9;
        double peer = present[1] ? bytes[c] / seconds[1][c] * 1e-9 : 0;
        if (json)
            printf("%s{\"case\": \"%s\", \"cpu_gbps\": %.3f, \"pocl_gbps\": %.3f}", c ? ", " : "",
                   names[c], ours, peer);
        else if (present[1])
            printf("%-22s %12.2f %12.2f %9.2fx\n", names[c], ours, peer, ours / peer);
        else
            printf("%-22s %12.2f %12s %10s\n", names[c], ours, "no device", "-");
    }
    /* the barrier: nanoseconds per work-item and barrier, one thread's time
     * (the CPU device's threads run groups side by side) */
    double per = (double)BGROUPS * 256 * 2 * ROUNDS;
    int threads = 1;
    ox_device_info info = {.struct_size = sizeof info};
    if (ox_device_get_info(runs[0].device, &info) == OX_OK) threads = (int)info.compute_units;
    double ours_ns = seconds[0][3] * threads / per * 1e9;
    double peer_ns = present[1] ? seconds[1][3] * threads / per * 1e9 : 0;
    if (json) {
        printf(", {\"case\": \"barrier\", \"cpu_ns\": %.2f, \"pocl_ns\": %.2f}]}\n", ours_ns,
               peer_ns);
    } else {
        printf("%-22s %12s %12s\n", "barrier, ns per item", "cpu", "PoCL");
        if (present[1]) printf("%-22s %12.1f %12.1f\n", "(x threads)", ours_ns, peer_ns);
        else printf("%-22s %12.1f %12s\n", "(x threads)", ours_ns, "no device");
    }
    for (int i = 0; i < 2; i++) ox_context_free(runs[i].ctx);
    free(x);
    return 0;
}
