/* bench_quant: the CPU matrix-vector product with quantized weights (the
 * LLM decode step) against the machine's memory bandwidth, measured in the
 * same run with the same threads.
 *
 *   bench_quant [--threads N] [--reps N] [--kernels avx512vnni|avx2|scalar] [--mib N]
 *               [--in-cache] [--packed] [--shape KxN]... [--types T,T,...] [--json]
 *
 * --kernels: the best the CPU has by default; avx2 leaves AVX-512 VNNI out.
 *
 * Bandwidth: a read of a buffer of --mib MiB (1024 by default) split over
 * the threads (a sum of every word), best of reps. Matvec: dst[1 x N] = a[1 x K] . Wᵀ for
 * W quantized N rows of K (TRANS_B), for Q4_0, Q8_0, Q4_K, Q6_K (or the --types ones, F16
 * and BF16 too: the same matrix-vector product with 16-bit float weights) at
 * K = N = 4096 and K = 2048, N = 8192 (or the --shape ones, up to 8;
 * K a multiple of 256). Successive calls cycle through
 * copies of W totalling at least 256 MiB, so the weights come from memory,
 * not the last-level cache, as they do in a model; --in-cache uses one copy
 * (4.7-9.4 MiB, from the last-level cache after the first call), which
 * shows how fast a kernel is when memory is not the limit. --packed gives
 * the kernels the weights in the packed layout too (ox__qpack_rows), as a
 * model loaded on the CPU has them. GB/s counts the weight
 * bytes read per call; "of bw" is that over the measured read bandwidth.
 * Each timing repeats the call until it lasts 50 ms; best of reps. Every
 * result is checked against double-precision dot products with the
 * dequantized weights, and the program fails if one is wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "openxpu/device.h"
#include "ops/cpu_ops.h"
#include "ops/quant.h"

#define DISTINCT_ROWS 64          /* random rows, repeated down W */
#define CYCLE_BYTES ((size_t)256 << 20)

typedef struct shape {
    int64_t K, N;
} shape;

#define MAX_SHAPES 8
static shape shapes[MAX_SHAPES] = {{4096, 4096}, {2048, 8192}};
static size_t shape_count = 2;
#define MAX_TYPES 8 /* every quantized type */
static ox_dtype types[MAX_TYPES] = {OX_DTYPE_Q4_0, OX_DTYPE_Q8_0, OX_DTYPE_Q4_K, OX_DTYPE_Q6_K};
static size_t type_count = 4;

static uint64_t rng = 0x853C49E6748FEA9Bull;

static float rand_normal(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((double)(rng >> 11) + 1) * 0x1p-53;
    }
    return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* ---- memory bandwidth ------------------------------------------------------------ */

typedef struct read_job {
    const uint64_t *data;
    size_t words, tasks;
    uint64_t sums[64];
} read_job;

static void read_task(void *arg, size_t task, int thread)
{
    read_job *job = arg;
    size_t begin = job->words * task / job->tasks, end = job->words * (task + 1) / job->tasks;
    uint64_t sum[8] = {0};
    (void)thread;
    /* every word, in eight independent sums the compiler can keep in
     * registers (or vectorize): the loop runs faster than memory */
    for (size_t i = begin; i + 8 <= end; i += 8)
        for (int j = 0; j < 8; j++) sum[j] += job->data[i + j];
    job->sums[task] = sum[0] + sum[1] + sum[2] + sum[3] + sum[4] + sum[5] + sum[6] + sum[7];
}

static void fill_task(void *arg, size_t task, int thread)
{
    read_job *job = arg;
    size_t begin = job->words * task / job->tasks, end = job->words * (task + 1) / job->tasks;
    uint64_t *data = (uint64_t *)(uintptr_t)job->data;
    (void)thread;
    for (size_t i = begin; i < end; i++) data[i] = i;
}

/* GB/s (1e9 bytes) of a parallel read of `mib` MiB, best of reps. */
static double read_bandwidth(ox__pool *pool, int threads, size_t mib, int reps)
{
    read_job job = {.words = (mib << 20) / 8, .tasks = (size_t)threads};
    uint64_t *data = malloc(job.words * 8);
    if (!data) return 0;
    job.data = data;
    ox__pool_run(pool, job.tasks, fill_task, &job); /* fault the pages in, on every thread */
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = bench_seconds();
        ox__pool_run(pool, job.tasks, read_task, &job);
        double t = bench_seconds() - t0;
        if (r > 0 && t < best) best = t; /* the first is a warm-up */
    }
    uint64_t check = 0;
    for (size_t i = 0; i < job.tasks; i++) check += job.sums[i];
    free(data);
    if (check == 0) return 0; /* keeps the sums alive */
    return (double)(job.words * 8) / best * 1e-9;
}

/* ---- quantized matvec ------------------------------------------------------------- */

typedef struct result {
    ox_dtype type;
    shape s;
    size_t weight_bytes;
    double us_per_call, gbps;
    double nmse;
} result;

static int bench_one(ox_dtype type, shape s, ox__pool *pool, uint64_t features, int reps,
                     int in_cache, int packed, result *out)
{
    size_t row_bytes = ox_dtype_row_size(type, s.K), bytes = row_bytes * (size_t)s.N;
    size_t copies = in_cache ? 1 : (CYCLE_BYTES + bytes - 1) / bytes;
    packed = packed && ox_dtype_is_quantized(type); /* F16 / BF16 rows have one layout */
    char *w = malloc(bytes * copies), *pk = packed ? malloc(bytes * copies) : NULL;
    float *a = malloc((size_t)s.K * sizeof *a), *row = malloc((size_t)s.K * sizeof *row);
    float *deq = malloc((size_t)(DISTINCT_ROWS * s.K) * sizeof *deq);
    float *y = malloc((size_t)s.N * sizeof *y);
    int ok = 0;
    if (!w || !a || !row || !deq || !y || (packed && !pk)) goto out_free;
    for (int64_t k = 0; k < s.K; k++) a[k] = rand_normal();
    for (int r = 0; r < DISTINCT_ROWS; r++) {
        for (int64_t k = 0; k < s.K; k++) row[k] = rand_normal();
        ox_row_from_f32(type, row, w + (size_t)r * row_bytes, s.K);
        ox_row_to_f32(type, w + (size_t)r * row_bytes, deq + r * s.K, s.K);
    }
    for (size_t r = DISTINCT_ROWS; r < (size_t)s.N * copies; r++)
        memcpy(w + r * row_bytes, w + (r % DISTINCT_ROWS) * row_bytes, row_bytes);
    for (size_t c = 0; packed && c < copies; c++)
        ox__qpack_rows(type, w + c * bytes, row_bytes, s.N, s.K, pk + c * bytes);

    ox__cpu_exec x = {.pool = pool, .features = features};
    ox__view va = {.data = (char *)a, .dtype = OX_DTYPE_F32, .ne = {s.K, 1, 1, 1},
                   .nb = {4, 4 * s.K, 4 * s.K, 4 * s.K}};
    ox__view vd = {.data = (char *)y, .dtype = OX_DTYPE_F32, .ne = {s.N, 1, 1, 1},
                   .nb = {4, 4 * s.N, 4 * s.N, 4 * s.N}};
    ox__view vb = {.dtype = type, .ne = {s.K, s.N, 1, 1},
                   .nb = {(int64_t)ox_dtype_size(type), (int64_t)row_bytes, (int64_t)bytes,
                          (int64_t)bytes}};
    size_t next = 0;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        int calls = 0;
        double t0 = bench_seconds(), t;
        do {
            size_t c = next++ % copies;
            vb.data = w + c * bytes;
            vb.packed = pk ? pk + c * bytes : NULL;
            if (ox__cpu_matmul(&x, &vd, &va, &vb, OX_MATMUL_TRANS_B) != OX_OK) goto out_free;
            calls++;
        } while ((t = bench_seconds() - t0) < 0.05);
        if (r > 0 && t / calls < best) best = t / calls; /* the first is a warm-up */
    }
    /* check: row n of W is distinct row n % DISTINCT_ROWS */
    double err = 0, norm = 0;
    for (int64_t n = 0; n < s.N; n++) {
        const float *wr = deq + (n % DISTINCT_ROWS) * s.K;
        double want = 0;
        for (int64_t k = 0; k < s.K; k++) want += (double)a[k] * wr[k];
        err += (y[n] - want) * (y[n] - want);
        norm += want * want;
    }
    *out = (result){.type = type, .s = s, .weight_bytes = bytes, .us_per_call = best * 1e6,
                    .gbps = (double)bytes / best * 1e-9, .nmse = err / norm};
    ok = out->nmse <= 5e-4; /* the activations' 8-bit rounding: ~3e-5 (tests/quant) */
    if (!ok)
        fprintf(stderr, "bench_quant: %s %lldx%lld is wrong: nmse %.3g\n", ox_dtype_str(type),
                (long long)s.K, (long long)s.N, out->nmse);
out_free:
    free(pk);
    free(w);
    free(a);
    free(row);
    free(deq);
    free(y);
    return ok;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_quant [--threads N] [--reps N] [--kernels avx512vnni|avx2|scalar] "
                    "[--mib N] [--in-cache] [--packed] [--shape KxN]... [--types T,T,...] [--json]\n");
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, json = 0, in_cache = 0, packed = 0;
    size_t custom_shapes = 0;
    long mib = 1024;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--in-cache") == 0) in_cache = 1;
        else if (strcmp(argv[i], "--packed") == 0) packed = 1;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) mib = atol(argv[++i]);
        else if (strcmp(argv[i], "--kernels") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--types") == 0 && i + 1 < argc) {
            char list[128];
            snprintf(list, sizeof list, "%s", argv[++i]);
            type_count = 0;
            for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                ox_dtype dt;
                if (type_count == MAX_TYPES || ox_dtype_from_str(t, &dt) != OX_OK ||
                    !(ox_dtype_is_quantized(dt) || dt == OX_DTYPE_F16 || dt == OX_DTYPE_BF16)) {
                    fprintf(stderr, "bench_quant: --types %s: want quantized or 16-bit float "
                            "types, e.g. q4_0,q5_k,f16 (up to %d)\n", argv[i], MAX_TYPES);
                    return 2;
                }
                types[type_count++] = dt;
            }
            if (type_count == 0) {
                fprintf(stderr, "bench_quant: --types: no type given\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
            long long K = 0, N = 0;
            char end = 0;
            if (custom_shapes == MAX_SHAPES ||
                sscanf(argv[++i], "%lldx%lld%c", &K, &N, &end) != 2 || K < 256 || K % 256 || K > (1 << 20) || N < 8 || N > (1 << 20)) {
                fprintf(stderr, "bench_quant: --shape %s: want KxN, K a multiple of 256, N >= 8 "
                        "(up to %d shapes)\n", argv[i], MAX_SHAPES);
                return 2;
            }
            shapes[custom_shapes++] = (shape){K, N};
            shape_count = custom_shapes;
        } else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || reps < 1 || mib < 1) {
        usage();
        return 2;
    }
    const ox__cpu_info *cpu = ox__cpu_detect();
    uint64_t features = cpu->features;
    if (only && strcmp(only, "scalar") == 0) {
        features = 0;
    } else if (only && strcmp(only, "avx2") == 0) {
        features &= ~OX_FEATURE_BIT(OX_FEATURE_AVX512VNNI);
    } else if (only && strcmp(only, "avx512vnni") != 0) {
        usage();
        return 2;
    }
    ox__pool *pool = NULL;
    if (ox__pool_create(threads, &pool) != OX_OK) {
        fprintf(stderr, "bench_quant: cannot start %d threads\n", threads);
        return 1;
    }
    double load[1] = {0};
    if (getloadavg(load, 1) < 1) load[0] = -1;
    double bw = read_bandwidth(pool, threads, (size_t)mib, reps);
    if (bw <= 0) {
        fprintf(stderr, "bench_quant: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    const char *kernels = ox__cpu_quant_kernels(features);
    if (!json) {
        printf("cpu: %s, %d threads, kernels %s%s; load average %.2f\n", cpu->name, threads,
               kernels, packed ? " on packed rows" : "", load[0]);
        if (load[0] > 1.5) printf("warning: the machine is busy (load > 1.5): numbers are noisy\n");
        printf("memory read bandwidth (%ld MiB read-sum): %.2f GB/s\n", mib, bw);
        printf("%-6s %-12s %10s %10s %10s %8s\n", "type", "K x N", "MB", "us/call", "GB/s",
               "of bw");
    }
    result results[MAX_SHAPES * MAX_TYPES] = {{0}};
    int ok = 1;
    for (size_t t = 0; t < type_count; t++)
        for (size_t s = 0; s < shape_count; s++) {
            result *r = &results[t * shape_count + s];
            ok &= bench_one(types[t], shapes[s], pool, features, reps, in_cache, packed, r);
            if (json) continue;
            char name[32];
            snprintf(name, sizeof name, "%lldx%lld", (long long)r->s.K, (long long)r->s.N);
            printf("%-6s %-12s %10.2f %10.1f %10.2f %7.0f%%\n", ox_dtype_str(r->type), name,
                   (double)r->weight_bytes * 1e-6, r->us_per_call, r->gbps, 100 * r->gbps / bw);
            fflush(stdout);
        }
    if (json) {
        printf("{\n  \"cpu\": \"%s\",\n  \"threads\": %d,\n  \"kernels\": \"%s\",\n"
               "  \"packed\": %s,\n", cpu->name, threads, kernels, packed ? "true" : "false");
        printf("  \"load_average\": %.2f,\n  \"read_bandwidth_gbps\": %.3f,\n  \"ok\": %s,\n"
               "  \"results\": [\n",
               load[0], bw, ok ? "true" : "false");
        for (size_t i = 0; i < shape_count * type_count; i++) {
            const result *r = &results[i];
            printf("    {\"type\": \"%s\", \"K\": %lld, \"N\": %lld, \"weight_bytes\": %zu, "
                   "\"us_per_call\": %.2f, \"gbps\": %.3f, \"fraction_of_bandwidth\": %.3f, "
                   "\"nmse\": %.3g}%s\n",
                   ox_dtype_str(r->type), (long long)r->s.K, (long long)r->s.N, r->weight_bytes,
                   r->us_per_call, r->gbps, r->gbps / bw, r->nmse,
                   i + 1 < shape_count * type_count ? "," : "");
        }
        printf("  ]\n}\n");
    }
    ox__pool_free(pool);
    return ok ? 0 : 1;
}
