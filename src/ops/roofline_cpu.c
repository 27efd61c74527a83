/* The CPU's limits, natively (ox_device_measure_limits): its ops run C on
 * the thread pool, not portable kernels, so their roofline is what C on the
 * pool reaches. Every thread of the pool takes part:
 *   copy   memcpy of a contiguous slice per thread (the C library streams
 *          large copies with non-temporal stores where that pays);
 *   triad  a = b + s * c over a slice per thread, plain stores;
 *   FMA    independent FMA chains in the widest SIMD the CPU has (AVX-512,
 *          AVX2 + FMA, NEON, else scalar multiply-adds), chosen at run time.
 * F16: 0. The CPU backend reports no half arithmetic (its ops compute F16
 * data in F32, OX_FEATURE_HALF_ARITH is unset); ARM FP16 or AVX-512 FP16
 * FMA loops belong here once its ops compute in half. */
#include <string.h>

#include "backends/cpu/cpu_backend.h"
#include "ops/roofline.h"

/* ---- streaming ------------------------------------------------------------------ */

typedef struct stream_job {
    ox__pool *pool;
    float *a;
    const float *b, *c;
    float s;
    size_t n, tasks;
    int triad;
} stream_job;

static void triad_slice(float *restrict a, const float *restrict b, const float *restrict c,
                        float s, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

/* Task t: elements [n t / tasks, n (t + 1) / tasks), rounded to 64 bytes. */
static void stream_task(void *arg, size_t task, int thread)
{
    const stream_job *j = arg;
    (void)thread;
    size_t lo = (j->n * task / j->tasks) & ~(size_t)15;
    size_t hi = task + 1 == j->tasks ? j->n : (j->n * (task + 1) / j->tasks) & ~(size_t)15;
    if (j->triad) triad_slice(j->a + lo, j->b + lo, j->c + lo, j->s, hi - lo);
    else memcpy(j->a + lo, j->b + lo, (hi - lo) * sizeof(float));
}

static ox_status stream_run(void *arg, int64_t rounds)
{
    stream_job *j = arg;
    (void)rounds;
    ox__pool_run(j->pool, j->tasks, stream_task, j);
    return OX_OK;
}

/* ---- FMA ---------------------------------------------------------------------------- */

#define SCALAR_CHAINS 8

/* Without SIMD FMA: multiply-adds (2 FLOP each) in independent chains. */
static float fma_scalar(int64_t rounds)
{
    float x[SCALAR_CHAINS], m = 0.999f, q = 0.001f, sum = 0;
    for (int c = 0; c < SCALAR_CHAINS; c++) x[c] = 0.125f * (float)c;
    for (int64_t r = 0; r < rounds; r++)
        for (int c = 0; c < SCALAR_CHAINS; c++) x[c] = x[c] * m + q;
    for (int c = 0; c < SCALAR_CHAINS; c++) sum += x[c];
    return sum;
}

typedef struct fma_loop {
    float (*run)(int64_t rounds);
    double flop; /* per round */
} fma_loop;

static fma_loop choose_loop(uint64_t features)
{
#ifdef OX__ROOFLINE_X86
    /* as matmul: the AVX-512 file is compiled for F, BW, VL (and DQ with them) */
    const uint64_t avx512 = OX_FEATURE_BIT(OX_FEATURE_AVX512F) | OX_FEATURE_BIT(OX_FEATURE_AVX512BW) |
                            OX_FEATURE_BIT(OX_FEATURE_AVX512VL) | OX_FEATURE_BIT(OX_FEATURE_FMA);
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA);
    if ((features & avx512) == avx512)
        return (fma_loop){ox__roofline_fma_avx512, OX__ROOFLINE_AVX512_FLOP};
    if ((features & avx2) == avx2) return (fma_loop){ox__roofline_fma_avx2, OX__ROOFLINE_AVX2_FLOP};
#elif defined(__aarch64__)
    (void)features;
    return (fma_loop){ox__roofline_fma_neon, OX__ROOFLINE_NEON_FLOP};
#else
    (void)features;
#endif
    return (fma_loop){fma_scalar, SCALAR_CHAINS * 2};
}

typedef struct fma_job {
    ox__pool *pool;
    fma_loop loop;
    int64_t rounds;
    size_t tasks;
    float *results; /* one per task, so no call can be dropped */
} fma_job;

static void fma_task(void *arg, size_t task, int thread)
{
    fma_job *j = arg;
    (void)thread;
    j->results[task] = j->loop.run(j->rounds);
}

static ox_status fma_run(void *arg, int64_t rounds)
{
    fma_job *j = arg;
    j->rounds = rounds;
    ox__pool_run(j->pool, j->tasks, fma_task, j);
    return OX_OK;
}

/* ---- the measurement ---------------------------------------------------------------- */

ox_status ox__roofline_cpu(ox_device *device, const ox__roofline_arrays *arrays,
                           ox_device_limits *out)
{
    ox__pool *pool = ox__cpu_device_pool(device->impl);
    size_t threads = (size_t)ox__pool_size(pool);
    double bytes = (double)arrays->n * sizeof(float), best;
    stream_job sj = {.pool = pool, .n = arrays->n, .tasks = threads, .s = 3.0f,
                     .a = (float *)(void *)(ox__cpu_buffer_data(arrays->a->memory->impl) +
                                            arrays->a->offset),
                     .b = (const float *)(void *)(ox__cpu_buffer_data(arrays->b->memory->impl) +
                                                  arrays->b->offset),
                     .c = (const float *)(void *)(ox__cpu_buffer_data(arrays->c->memory->impl) +
                                                  arrays->c->offset)};
    ox_status s = ox__roofline_best(stream_run, &sj, 0, OX__ROOFLINE_STREAM_RUNS, &best);
    if (s != OX_OK) return s;
    out->copy_gbps = 2 * bytes / best / 1e9;
    sj.triad = 1;
    if ((s = ox__roofline_best(stream_run, &sj, 0, OX__ROOFLINE_STREAM_RUNS, &best)) != OX_OK) return s;
    out->triad_gbps = 3 * bytes / best / 1e9;

    fma_job fj = {.pool = pool, .loop = choose_loop(device->info.features), .tasks = threads};
    fj.results = ox__calloc(device->ctx, threads, sizeof *fj.results);
    if (!fj.results) return ox__fail(device->ctx, OX_ERR_OUT_OF_MEMORY, "out of host memory");
    s = ox__roofline_rate(fma_run, &fj, fj.loop.flop * (double)threads, INT64_C(1) << 40,
                          &out->f32_gflops);
    ox__free(device->ctx, fj.results, threads * sizeof *fj.results);
    out->f16_gflops = 0;
    return s;
}
