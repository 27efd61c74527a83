/* bench_matmul: the CPU matmul (ox__cpu_matmul) against OpenBLAS on the same
 * shapes, in the same run, with the same number of threads.
 *
 *   bench_matmul [--threads N] [--reps N] [--kernels avx2|generic] [--json]
 *
 * --kernels hides the CPU's wider SIMD from ours, to measure the AVX2 or the
 * portable kernels on a machine that has more.
 *
 * For every shape: ours with F32 operands, ours with F16 weights (b), and
 * OpenBLAS cblas_sgemm (cblas_sgemv for the matrix-vector shape), each
 * warmed up once, then timed best-of-reps (a timing repeats the call until
 * it lasts 20 ms); GFLOP/s count 2 M N K. Every result is checked (against
 * double-precision dot products at sample points, and against OpenBLAS), and
 * the program fails if one is wrong. Without OpenBLAS it still measures ours
 * and says that the peer is missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "openxpu/device.h"
#include "ops/cpu_ops.h"
#include "ops/matmul.h"

#ifdef OX_HAVE_OPENBLAS
#include <cblas.h>
#endif

typedef struct shape {
    const char *name;
    int64_t M, K, N;
    unsigned flags;
} shape;

/* b is the weight in the LLM shapes: stored N rows of K (TRANS_B). */
static const shape shapes[] = {
    {"256^3", 256, 256, 256, 0},
    {"512^3", 512, 512, 512, 0},
    {"1024^3", 1024, 1024, 1024, 0},
    {"2048^3", 2048, 2048, 2048, 0},
    {"decode 1x4096x4096", 1, 4096, 4096, OX_MATMUL_TRANS_B},
    {"prefill 512x2048x2048", 512, 2048, 2048, OX_MATMUL_TRANS_B},
};
#define SHAPE_COUNT (sizeof shapes / sizeof shapes[0])

typedef struct result {
    double ours_f32, ours_f16, peer; /* GFLOP/s; peer 0 when missing */
} result;

/* What one timed call runs. */
typedef struct call {
    const shape *s;
    ox__cpu_exec exec;
    ox__view dst, a, b, b16;
    const float *a_data, *b_data;
    float *c;
    int use_f16;
} call;

static void run_ours(call *c)
{
    ox_status s = ox__cpu_matmul(&c->exec, &c->dst, &c->a, c->use_f16 ? &c->b16 : &c->b,
                                 c->s->flags);
    if (s != OX_OK) {
        fprintf(stderr, "bench_matmul: ox__cpu_matmul failed (%d)\n", (int)s);
        exit(1);
    }
}

#ifdef OX_HAVE_OPENBLAS
static void run_peer(call *c)
{
    const shape *s = c->s;
    int M = (int)s->M, K = (int)s->K, N = (int)s->N;
    int ta = (s->flags & OX_MATMUL_TRANS_A) != 0, tb = (s->flags & OX_MATMUL_TRANS_B) != 0;
    if (M == 1 && !ta) { /* y = W x: what a caller would use for decoding */
        if (tb)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, c->b_data, K, c->a_data, 1, 0.0f,
                        c->c, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasTrans, K, N, 1.0f, c->b_data, N, c->a_data, 1, 0.0f,
                        c->c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, 1.0f, c->a_data, ta ? M : K, c->b_data, tb ? K : N, 0.0f, c->c, N);
}
#endif

/* Best seconds per call of fn over `reps` timings, after one warm-up. */
static double best_seconds(void (*fn)(call *), call *c, int reps)
{
    fn(c);
    double t = bench_seconds();
    fn(c);
    double once = bench_seconds() - t;
    int iters = once >= 0.02 ? 1 : (int)(0.02 / (once > 1e-7 ? once : 1e-7)) + 1;
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        t = bench_seconds();
        for (int i = 0; i < iters; i++) fn(c);
        t = (bench_seconds() - t) / iters;
        if (t < best) best = t;
    }
    return best;
}

/* A dense host matrix of rows x cols elements of `type`. */
static ox__view make_view(ox_dtype type, int64_t cols, int64_t rows, void *data)
{
    ox__view v = {.data = data, .dtype = type, .ne = {cols, rows, 1, 1}};
    v.nb[0] = (int64_t)ox_dtype_size(type);
    v.nb[1] = v.nb[0] * cols;
    v.nb[2] = v.nb[3] = v.nb[1] * rows;
    return v;
}

/* Largest relative error of c at 64 sample points against double dot
 * products over the weights `b` (the F16-rounded copy for that run); op(a)
 * and op(b) from the dense F32 arrays. */
static double sample_error(const shape *s, const float *a, const float *b, const float *c)
{
    bool ta = s->flags & OX_MATMUL_TRANS_A, tb = s->flags & OX_MATMUL_TRANS_B;
    return bench_sample_error(s->M, s->N, s->K, a, ta ? 1 : s->K, ta ? s->M : 1, b,
                              tb ? 1 : s->N, tb ? s->K : 1, c);
}

static int bench_shape(const shape *s, ox__pool *pool, uint64_t features, int reps, result *out)
{
    int64_t na = s->M * s->K, nb = s->K * s->N, nc = s->M * s->N;
    int ta = (s->flags & OX_MATMUL_TRANS_A) != 0, tb = (s->flags & OX_MATMUL_TRANS_B) != 0;
    float *a = malloc((size_t)na * sizeof(float)), *b = malloc((size_t)nb * sizeof(float));
    float *b_rounded = malloc((size_t)nb * sizeof(float));
    uint16_t *b16 = malloc((size_t)nb * sizeof(uint16_t));
    float *c = malloc((size_t)nc * sizeof(float)), *c_peer = malloc((size_t)nc * sizeof(float));
    int ok = 1;
    if (!a || !b || !b_rounded || !b16 || !c || !c_peer) {
        fprintf(stderr, "bench_matmul: out of memory\n");
        ok = 0;
        goto done;
    }
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (int64_t i = 0; i < na; i++) a[i] = bench_uniform(&state);
    for (int64_t i = 0; i < nb; i++) {
        b[i] = bench_uniform(&state);
        b16[i] = ox_f32_to_f16(b[i]);
        b_rounded[i] = ox_f16_to_f32(b16[i]);
    }
    call cl = {.s = s, .exec = {.pool = pool, .features = features}, .a_data = a, .b_data = b};
    cl.dst = make_view(OX_DTYPE_F32, s->N, s->M, c);
    cl.a = make_view(OX_DTYPE_F32, ta ? s->M : s->K, ta ? s->K : s->M, a);
    cl.b = make_view(OX_DTYPE_F32, tb ? s->K : s->N, tb ? s->N : s->K, b);
    cl.b16 = make_view(OX_DTYPE_F16, tb ? s->K : s->N, tb ? s->N : s->K, b16);
    double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;

    cl.use_f16 = 1;
    out->ours_f16 = flops / best_seconds(run_ours, &cl, reps) * 1e-9;
    double err16 = sample_error(s, a, b_rounded, c);
    cl.use_f16 = 0;
    out->ours_f32 = flops / best_seconds(run_ours, &cl, reps) * 1e-9;
    double err32 = sample_error(s, a, b, c);
    /* F32 accumulation over K terms: relative to sum |a b|, a few eps * sqrt(K) */
    double bound = 1e-6 * sqrt((double)s->K) + 1e-6;
    if (err32 > bound || err16 > bound) {
        fprintf(stderr, "bench_matmul: %s: wrong result (relative error f32 %.3g, f16 %.3g)\n",
                s->name, err32, err16);
        ok = 0;
    }
    out->peer = 0;
#ifdef OX_HAVE_OPENBLAS
    cl.c = c_peer;
    out->peer = flops / best_seconds(run_peer, &cl, reps) * 1e-9;
    double err = 0, norm = 0;
    for (int64_t i = 0; i < nc; i++) {
        err += ((double)c[i] - c_peer[i]) * ((double)c[i] - c_peer[i]);
        norm += (double)c_peer[i] * c_peer[i];
    }
    if (!(err <= 1e-10 * norm)) {
        fprintf(stderr, "bench_matmul: %s: differs from OpenBLAS (NMSE %.3g)\n", s->name,
                err / norm);
        ok = 0;
    }
#endif
done:
    free(a);
    free(b);
    free(b_rounded);
    free(b16);
    free(c);
    free(c_peer);
    return ok;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_matmul [--threads N] [--reps N] [--kernels avx2|generic] "
                    "[--json]\n");
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, json = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--kernels") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || reps < 1) {
        usage();
        return 2;
    }
    const ox__cpu_info *cpu = ox__cpu_detect();
    uint64_t features = cpu->features;
    if (only && strcmp(only, "avx2") == 0) {
        features &= ~(OX_FEATURE_BIT(OX_FEATURE_AVX512F) | OX_FEATURE_BIT(OX_FEATURE_AVX512BW) |
                      OX_FEATURE_BIT(OX_FEATURE_AVX512VL));
    } else if (only && strcmp(only, "generic") == 0) {
        features = 0;
    } else if (only) {
        usage();
        return 2;
    }
    ox__pool *pool = NULL;
    if (ox__pool_create(threads, &pool) != OX_OK) {
        fprintf(stderr, "bench_matmul: cannot start %d threads\n", threads);
        return 1;
    }
    const char *peer = "missing (built without OpenBLAS)";
#ifdef OX_HAVE_OPENBLAS
    openblas_set_num_threads(threads);
    peer = openblas_get_config();
#endif
    double load[1] = {0};
    if (getloadavg(load, 1) < 1) load[0] = -1;
    const char *kernels = ox__cpu_matmul_kernels(features);

    result results[SHAPE_COUNT];
    int ok = 1;
    if (!json) {
        printf("cpu: %s, %d threads, kernels %s; peer: %s; load average %.2f\n", cpu->name,
               threads, kernels, peer, load[0]);
        if (load[0] > 1.5) printf("warning: the machine is busy (load > 1.5): numbers are noisy\n");
        printf("%-24s %12s %12s %12s %10s %10s\n", "shape (MxKxN)", "ours f32", "ours f16-w",
               "OpenBLAS", "f32/peer", "f16-w/peer");
        printf("%-24s %12s %12s %12s %10s %10s\n", "", "GFLOP/s", "GFLOP/s", "GFLOP/s", "", "");
    }
    for (size_t i = 0; i < SHAPE_COUNT; i++) {
        ok &= bench_shape(&shapes[i], pool, features, reps, &results[i]);
        const result *r = &results[i];
        if (json) continue;
        printf("%-24s %12.1f %12.1f", shapes[i].name, r->ours_f32, r->ours_f16);
        if (r->peer > 0)
            printf(" %12.1f %10.2f %10.2f\n", r->peer, r->ours_f32 / r->peer,
                   r->ours_f16 / r->peer);
        else
            printf(" %12s %10s %10s\n", "-", "-", "-");
        fflush(stdout);
    }
    if (json) {
        printf("{\n  \"cpu\": \"%s\",\n  \"threads\": %d,\n  \"kernels\": \"%s\",\n", cpu->name,
               threads, kernels);
        printf("  \"peer\": \"%s\",\n  \"load_average\": %.2f,\n  \"ok\": %s,\n  \"results\": [\n",
               peer, load[0], ok ? "true" : "false");
        for (size_t i = 0; i < SHAPE_COUNT; i++) {
            const shape *s = &shapes[i];
            const result *r = &results[i];
            printf("    {\"shape\": \"%s\", \"M\": %lld, \"K\": %lld, \"N\": %lld, "
                   "\"trans_b\": %s, \"ours_f32_gflops\": %.2f, \"ours_f16w_gflops\": %.2f, ",
                   s->name, (long long)s->M, (long long)s->K, (long long)s->N,
                   (s->flags & OX_MATMUL_TRANS_B) ? "true" : "false", r->ours_f32, r->ours_f16);
            if (r->peer > 0)
                printf("\"peer_gflops\": %.2f, \"ratio_f32\": %.3f, \"ratio_f16w\": %.3f}",
                       r->peer, r->ours_f32 / r->peer, r->ours_f16 / r->peer);
            else
                printf("\"peer_gflops\": null, \"ratio_f32\": null, \"ratio_f16w\": null}");
            printf("%s\n", i + 1 < SHAPE_COUNT ? "," : "");
        }
        printf("  ]\n}\n");
    } else if (!ok) {
        printf("FAILED: a result was wrong (see above)\n");
    }
    ox__pool_free(pool);
    return ok ? 0 : 1;
}
