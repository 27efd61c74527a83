/* What the benchmark programs share: a monotonic clock, and the uniform
 * values in [-1, 1) the matmul benchmarks fill their operands with.
 * Header-only: each program is built on its own, some against the public
 * library only. */
#ifndef OX_BENCH_COMMON_H
#define OX_BENCH_COMMON_H

#include <stdint.h>
#include <time.h>

static inline double bench_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64 on *state, 24 bits of it scaled to [-1, 1). */
static inline float bench_uniform(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (float)((double)(x >> 40) / 16777216.0 * 2 - 1);
}

/* Largest error of the M x N product c at 64 sample points against double
 * dot products, relative to sum |a b| there; a[m * a_sm + k * a_sk],
 * b[k * b_sk + n * b_sn]. A NaN makes the result NaN. */
static inline double bench_sample_error(int64_t M, int64_t N, int64_t K, const float *a,
                                        int64_t a_sm, int64_t a_sk, const float *b, int64_t b_sk,
                                        int64_t b_sn, const float *c)
{
    uint64_t state = 12345;
    double worst = 0;
    for (int i = 0; i < 64; i++) {
        int64_t m = (int64_t)((bench_uniform(&state) + 1) / 2 * (float)M) % M;
        int64_t n = (int64_t)((bench_uniform(&state) + 1) / 2 * (float)N) % N;
        double sum = 0, norm = 0;
        for (int64_t k = 0; k < K; k++) {
            double p = (double)a[m * a_sm + k * a_sk] * b[k * b_sk + n * b_sn];
            sum += p;
            norm += p < 0 ? -p : p;
        }
        double d = c[m * N + n] - sum, err = (d < 0 ? -d : d) / (norm > 0 ? norm : 1);
        if (!(err <= worst)) worst = err; /* NaN sticks */
    }
    return worst;
}

#endif /* OX_BENCH_COMMON_H */
