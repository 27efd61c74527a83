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

#endif /* OX_BENCH_COMMON_H */
