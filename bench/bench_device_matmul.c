/* bench_device_matmul: SGEMM on an OpenCL device, ours (ox_matmul, the
 * portable kernel kernels/matmul.oxc) against CLBlast's CLBlastSgemm on the
 * same device, in the same run.
 *
 *   bench_device_matmul [--device SEL] [--reps N] [--shape NAME] [--json]
 *                       [--clblast-xgemm NAME=V,...]
 *
 * The device (default opencl:0) is opened through the OpenXPU plugin;
 * CLBlast gets the same OpenCL device in its own cl_context, found by the
 * device's name. Every shape runs twice: row-major A[M x K] . B[K x N]
 * ("plain") and with B stored as N rows of K, as weights are ("b^T",
 * OX_MATMUL_TRANS_B; CLBlast's b transposed). Each side is warmed up, then
 * timed best of --reps (3), a timing enqueueing the call until it lasts at
 * least 50 ms and then waiting once, ours and CLBlast's timings taken in
 * turn; GFLOP/s count 2 M N K. Every result is
 * checked, ours and CLBlast's, against double-precision dot products at
 * sample points, and ours against CLBlast's (NMSE); a wrong result fails the
 * program. CLBlast runs with its defaults for the device (what a user gets)
 * unless --clblast-xgemm overrides its Xgemm parameters (CLBlast's tuner's
 * output, CLBlastOverrideParameters). Built without CLBlast, or on a device
 * CLBlast cannot find, it measures ours alone and says the peer is missing. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "openxpu/openxpu.h"

#ifdef OX_HAVE_CLBLAST
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#endif

typedef struct shape {
    const char *name;
    int64_t M, K, N;
} shape;

static const shape shapes[] = {
    {"256^3", 256, 256, 256},
    {"512^3", 512, 512, 512},
    {"1024^3", 1024, 1024, 1024},
    {"2048^3", 2048, 2048, 2048},
    {"512x2048x2048", 512, 2048, 2048}, /* prefill: attention projections */
    {"512x5632x2048", 512, 5632, 2048}, /* prefill: the feed-forward down projection */
};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])

typedef struct result {
    const shape *s;
    int trans_b;
    double ours, peer;            /* GFLOP/s; peer 0 when missing */
    double ours_err, peer_err;    /* largest relative error at the sample points */
    double nmse;                  /* ours against CLBlast's; -1 without the peer */
    int ok;
} result;

/* Largest relative error of c at 64 sample points (bench_common.h). */
static double sample_error(const shape *s, int tb, const float *a, const float *b, const float *c)
{
    return bench_sample_error(s->M, s->N, s->K, a, s->K, 1, b, tb ? 1 : s->N, tb ? s->K : 1, c);
}

/* ---- ours: ox_matmul on the device ---------------------------------------------- */

typedef struct ours {
    ox_context *ctx;
    ox_device *device;
    ox_queue *queue;
    ox_tensor dst, a, b;
    unsigned flags;
} ours;

static int ox_failed(const ours *o, ox_status s, const char *what)
{
    if (s == OX_OK) return 0;
    fprintf(stderr, "bench_device_matmul: %s: %s\n", what, ox_errmsg(o->ctx));
    return 1;
}

static int ours_run(ours *o, int calls)
{
    for (int i = 0; i < calls; i++)
        if (ox_failed(o, ox_matmul(o->queue, &o->dst, &o->a, &o->b, o->flags), "ox_matmul"))
            return 1;
    return ox_failed(o, ox_queue_finish(o->queue), "ox_queue_finish");
}

/* ---- the peer: CLBlast on its own context of the same device ---------------------- */

typedef struct peer {
    int present;
    char why[256]; /* why not, when absent */
#ifdef OX_HAVE_CLBLAST
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_mem a, b, c;
#endif
    const shape *s;
    int trans_b;
} peer;

#ifdef OX_HAVE_CLBLAST
/* The OpenCL device called `name`, over every platform. */
static int peer_open(peer *p, const char *name)
{
    cl_platform_id platforms[16];
    cl_uint n_platforms = 0;
    if (clGetPlatformIDs(16, platforms, &n_platforms) != CL_SUCCESS) n_platforms = 0;
    for (cl_uint i = 0; i < n_platforms && !p->present; i++) {
        cl_device_id devices[16];
        cl_uint n = 0;
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 16, devices, &n) != CL_SUCCESS) continue;
        for (cl_uint d = 0; d < n && !p->present; d++) {
            char dname[256] = "";
            clGetDeviceInfo(devices[d], CL_DEVICE_NAME, sizeof dname, dname, NULL);
            if (strcmp(dname, name) != 0) continue;
            cl_int err;
            p->device = devices[d];
            p->context = clCreateContext(NULL, 1, &p->device, NULL, NULL, &err);
            if (err != CL_SUCCESS) break;
            p->queue = clCreateCommandQueue(p->context, p->device, 0, &err);
            if (err != CL_SUCCESS) {
                clReleaseContext(p->context);
                break;
            }
            p->present = 1;
        }
    }
    if (!p->present)
        snprintf(p->why, sizeof p->why, "missing (no OpenCL device named '%s' for CLBlast)", name);
    return p->present;
}

/* --clblast-xgemm "KWG=16,MWG=64,...": CLBlast's Xgemm parameters for
 * single precision instead of its defaults. */
static int peer_override(peer *p, const char *text)
{
    char copy[512], *names[32];
    size_t values[32];
    size_t n = 0;
    snprintf(copy, sizeof copy, "%s", text);
    for (char *tok = strtok(copy, ","); tok && n < 32; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq) return 0;
        *eq = '\0';
        names[n] = tok;
        values[n++] = (size_t)strtoul(eq + 1, NULL, 10);
    }
    CLBlastStatusCode s = CLBlastOverrideParameters(p->device, "Xgemm", CLBlastPrecisionSingle, n,
                                                    (const char **)names, values);
    if (s != CLBlastSuccess) {
        fprintf(stderr, "bench_device_matmul: CLBlastOverrideParameters(Xgemm): status %d\n", (int)s);
        return 0;
    }
    return 1;
}

static int peer_prepare(peer *p, const shape *s, int tb, const float *a, const float *b)
{
    cl_int e1, e2, e3;
    size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
    p->s = s;
    p->trans_b = tb;
    p->a = clCreateBuffer(p->context, CL_MEM_READ_ONLY, na * 4, NULL, &e1);
    p->b = clCreateBuffer(p->context, CL_MEM_READ_ONLY, nb * 4, NULL, &e2);
    p->c = clCreateBuffer(p->context, CL_MEM_READ_WRITE, nc * 4, NULL, &e3);
    if (e1 != CL_SUCCESS || e2 != CL_SUCCESS || e3 != CL_SUCCESS) return 0;
    return clEnqueueWriteBuffer(p->queue, p->a, CL_TRUE, 0, na * 4, a, 0, NULL, NULL) == CL_SUCCESS &&
           clEnqueueWriteBuffer(p->queue, p->b, CL_TRUE, 0, nb * 4, b, 0, NULL, NULL) == CL_SUCCESS;
}

static int peer_run(peer *p, int calls)
{
    const shape *s = p->s;
    for (int i = 0; i < calls; i++) {
        CLBlastStatusCode st = CLBlastSgemm(
            CLBlastLayoutRowMajor, CLBlastTransposeNo, p->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo,
            (size_t)s->M, (size_t)s->N, (size_t)s->K, 1.0f, p->a, 0, (size_t)s->K, p->b, 0,
            (size_t)(p->trans_b ? s->K : s->N), 0.0f, p->c, 0, (size_t)s->N, &p->queue, NULL);
        if (st != CLBlastSuccess) {
            fprintf(stderr, "bench_device_matmul: CLBlastSgemm %s: status %d\n", s->name, (int)st);
            return 1;
        }
    }
    return clFinish(p->queue) != CL_SUCCESS;
}

static int peer_read(peer *p, float *c)
{
    size_t bytes = (size_t)(p->s->M * p->s->N) * 4;
    return clEnqueueReadBuffer(p->queue, p->c, CL_TRUE, 0, bytes, c, 0, NULL, NULL) == CL_SUCCESS;
}

static void peer_release(peer *p)
{
    if (p->a) clReleaseMemObject(p->a);
    if (p->b) clReleaseMemObject(p->b);
    if (p->c) clReleaseMemObject(p->c);
    p->a = p->b = p->c = NULL;
}

static void peer_close(peer *p)
{
    if (!p->present) return;
    clReleaseCommandQueue(p->queue);
    clReleaseContext(p->context);
}
#endif

/* A side being timed: warmed up (which builds its kernels), then the
 * number of calls a timing enqueues (enough for 50 ms), then timings, the
 * best kept. `failed` when a call fails. */
typedef int (*run_fn)(void *state, int calls);

typedef struct timing {
    run_fn run;
    void *state;
    int calls, failed;
    double best; /* seconds a call */
} timing;

static void timing_start(timing *t)
{
    t->best = INFINITY;
    t->failed = t->run(t->state, 1);
    double start = bench_seconds();
    t->failed = t->failed || t->run(t->state, 1);
    double once = bench_seconds() - start;
    t->calls = once >= 0.05 ? 1 : (int)(0.05 / (once > 1e-6 ? once : 1e-6)) + 1;
}

static void timing_take(timing *t)
{
    if (t->failed) return;
    double start = bench_seconds();
    t->failed = t->run(t->state, t->calls);
    double per_call = (bench_seconds() - start) / t->calls;
    if (per_call < t->best) t->best = per_call;
}

static int run_ours(void *o, int calls)
{
    return ours_run(o, calls);
}

#ifdef OX_HAVE_CLBLAST
static int run_peer(void *p, int calls)
{
    return peer_run(p, calls);
}
#endif

/* F32 accumulation over K terms: relative to sum |a b|, a few eps sqrt(K). */
static double error_bound(const shape *s)
{
    return 1e-6 * sqrt((double)s->K) + 1e-6;
}

static int bench_case(ours *o, peer *p, const shape *s, int tb, int reps, result *r)
{
    size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
    float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *c_peer = malloc(nc * 4);
    memset(r, 0, sizeof *r);
    r->s = s;
    r->trans_b = tb;
    r->nmse = -1;
    r->ok = 0;
    o->a.buffer = o->b.buffer = o->dst.buffer = NULL;
    if (!a || !b || !c || !c_peer) {
        fprintf(stderr, "bench_device_matmul: out of host memory\n");
        goto out;
    }
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < na; i++) a[i] = bench_uniform(&state);
    for (size_t i = 0; i < nb; i++) b[i] = bench_uniform(&state);

    o->flags = tb ? OX_MATMUL_TRANS_B : 0;
    if (ox_failed(o, ox_tensor_alloc(o->device, OX_DTYPE_F32, s->K, s->M, 1, 1, &o->a), "a") ||
        ox_failed(o, ox_tensor_alloc(o->device, OX_DTYPE_F32, tb ? s->K : s->N, tb ? s->N : s->K, 1,
                                     1, &o->b), "b") ||
        ox_failed(o, ox_tensor_alloc(o->device, OX_DTYPE_F32, s->N, s->M, 1, 1, &o->dst), "dst") ||
        ox_failed(o, ox_tensor_write(&o->a, a, na * 4), "write a") ||
        ox_failed(o, ox_tensor_write(&o->b, b, nb * 4), "write b"))
        goto out;
    /* ours and CLBlast's timings alternate, so that both see the same
     * moments of a shared machine */
    timing mine = {.run = run_ours, .state = o}, theirs = {.failed = 1};
    timing_start(&mine);
#ifdef OX_HAVE_CLBLAST
    int prepared = 0;
    if (p->present) {
        prepared = peer_prepare(p, s, tb, a, b);
        theirs = (timing){.run = run_peer, .state = p, .failed = !prepared};
        if (prepared) timing_start(&theirs);
    }
#endif
    for (int rep = 0; rep < reps; rep++) {
        timing_take(&mine);
        timing_take(&theirs);
    }
    double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
    if (mine.failed || ox_failed(o, ox_tensor_read(&o->dst, c, nc * 4), "read dst")) goto out_peer;
    r->ours = flops / mine.best * 1e-9;
    r->ours_err = sample_error(s, tb, a, b, c);
    r->ok = r->ours_err <= error_bound(s);
    if (!r->ok)
        fprintf(stderr, "bench_device_matmul: %s%s: ours wrong (relative error %.3g)\n", s->name,
                tb ? " b^T" : "", r->ours_err);
#ifdef OX_HAVE_CLBLAST
    if (p->present) {
        if (theirs.failed || !peer_read(p, c_peer)) {
            fprintf(stderr, "bench_device_matmul: %s: CLBlast failed\n", s->name);
            r->ok = 0;
            goto out_peer;
        }
        r->peer = flops / theirs.best * 1e-9;
        r->peer_err = sample_error(s, tb, a, b, c_peer);
        double err = 0, norm = 0;
        for (size_t i = 0; i < nc; i++) {
            err += ((double)c[i] - c_peer[i]) * ((double)c[i] - c_peer[i]);
            norm += (double)c_peer[i] * c_peer[i];
        }
        r->nmse = norm > 0 ? err / norm : err;
        if (!(r->peer_err <= error_bound(s)) || !(r->nmse <= 1e-10)) {
            fprintf(stderr, "bench_device_matmul: %s%s: CLBlast's error %.3g, NMSE ours vs CLBlast %.3g\n",
                    s->name, tb ? " b^T" : "", r->peer_err, r->nmse);
            r->ok = 0;
        }
    }
#endif
out_peer:
#ifdef OX_HAVE_CLBLAST
    if (p->present) peer_release(p); /* also what a failed prepare made */
#else
    (void)p;
#endif
out:
    ox_buffer_free(o->a.buffer);
    ox_buffer_free(o->b.buffer);
    ox_buffer_free(o->dst.buffer);
    free(a);
    free(b);
    free(c);
    free(c_peer);
    return r->ok;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_device_matmul [--device SEL] [--reps N] [--shape NAME] [--json]\n"
                    "                           [--clblast-xgemm NAME=V,...]\n");
}

int main(int argc, char **argv)
{
    const char *selection = "opencl:0", *only = NULL, *xgemm = NULL;
    int reps = 3, json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) selection = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--clblast-xgemm") == 0 && i + 1 < argc) xgemm = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (reps < 1) {
        usage();
        return 2;
    }
    ours o = {0};
    int n = 0;
    if (ox_context_create(NULL, &o.ctx) != OX_OK) {
        fprintf(stderr, "bench_device_matmul: %s\n", ox_errmsg(NULL));
        return 1;
    }
    if (ox_device_select(o.ctx, selection, &o.device, 1, &n) != OX_OK || n != 1) {
        fprintf(stderr, "bench_device_matmul: no device '%s' (%s)\n", selection, ox_errmsg(o.ctx));
        ox_context_free(o.ctx);
        return 1;
    }
    ox_device_info info = {.struct_size = sizeof info};
    if (ox_failed(&o, ox_device_get_info(o.device, &info), "device info") ||
        ox_failed(&o, ox_queue_create(o.device, &o.queue), "queue")) {
        ox_context_free(o.ctx);
        return 1;
    }
    peer p = {0};
    snprintf(p.why, sizeof p.why, "missing (built without CLBlast)");
    const char *peer_name = "CLBlast";
#ifdef OX_HAVE_CLBLAST
    if (strcmp(info.backend, "opencl") != 0)
        snprintf(p.why, sizeof p.why, "missing (%s is not an OpenCL device)", info.id);
    else if (peer_open(&p, info.name) && xgemm && !peer_override(&p, xgemm))
        return 1;
    peer_name = xgemm ? "CLBlast " OX_CLBLAST_VERSION " (Xgemm parameters given)"
                      : "CLBlast " OX_CLBLAST_VERSION " (defaults)";
#else
    (void)xgemm;
#endif
    double load[1] = {0};
    if (getloadavg(load, 1) < 1) load[0] = -1;
    if (!json) {
        printf("device: %s (%s, driver %s); peer: %s; load average %.2f\n", info.id, info.name,
               info.driver_version, p.present ? peer_name : p.why, load[0]);
        if (load[0] > 1.5) printf("warning: the machine is busy (load > 1.5): numbers are noisy\n");
        printf("%-20s %6s %12s %12s %8s\n", "shape (MxKxN)", "b", "ours", "CLBlast", "ratio");
        printf("%-20s %6s %12s %12s %8s\n", "", "", "GFLOP/s", "GFLOP/s", "");
    }
    result results[2 * SHAPE_COUNT];
    int count = 0, ok = 1;
    for (size_t i = 0; i < SHAPE_COUNT; i++) {
        if (only && strcmp(only, shapes[i].name) != 0) continue;
        for (int tb = 1; tb >= 0; tb--) {
            result *r = &results[count++];
            ok &= bench_case(&o, &p, &shapes[i], tb, reps, r);
            if (json) continue;
            printf("%-20s %6s %12.2f", shapes[i].name, tb ? "N x K" : "K x N", r->ours);
            if (r->peer > 0) printf(" %12.2f %8.2f\n", r->peer, r->ours / r->peer);
            else printf(" %12s %8s\n", "-", "-");
            fflush(stdout);
        }
    }
    if (count == 0) {
        fprintf(stderr, "bench_device_matmul: no shape '%s'\n", only);
        ok = 0;
    }
    if (json) {
        printf("{\n  \"device\": \"%s\",\n  \"device_name\": \"%s\",\n  \"driver\": \"%s\",\n", info.id,
               info.name, info.driver_version);
        printf("  \"peer\": \"%s\",\n  \"load_average\": %.2f,\n  \"ok\": %s,\n  \"results\": [\n",
               p.present ? peer_name : p.why, load[0], ok ? "true" : "false");
        for (int i = 0; i < count; i++) {
            const result *r = &results[i];
            printf("    {\"shape\": \"%s\", \"M\": %lld, \"K\": %lld, \"N\": %lld, \"trans_b\": %s, "
                   "\"ours_gflops\": %.2f, \"ours_error\": %.3g, ",
                   r->s->name, (long long)r->s->M, (long long)r->s->K, (long long)r->s->N,
                   r->trans_b ? "true" : "false", r->ours, r->ours_err);
            if (r->peer > 0)
                printf("\"peer_gflops\": %.2f, \"peer_error\": %.3g, \"nmse\": %.3g, \"ratio\": %.3f}",
                       r->peer, r->peer_err, r->nmse, r->ours / r->peer);
            else
                printf("\"peer_gflops\": null, \"peer_error\": null, \"nmse\": null, \"ratio\": null}");
            printf("%s\n", i + 1 < count ? "," : "");
        }
        printf("  ]\n}\n");
    } else if (!ok) {
        printf("FAILED: a result was wrong (see above)\n");
    }
#ifdef OX_HAVE_CLBLAST
    peer_close(&p);
#endif
    ox_queue_free(o.queue);
    ox_context_free(o.ctx);
    return ok ? 0 : 1;
}
