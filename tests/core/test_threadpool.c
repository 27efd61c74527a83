/* The internal thread pool (core/threadpool.h): every task runs exactly
 * once, on a thread index in range, with nested and back-to-back runs.
 * Each case sets an alarm: a hang (a lost wake-up) fails it with SIGALRM. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "openxpu/openxpu.h"
#include "ox_test.h"

typedef struct count_job {
    atomic_int *runs;        /* per task */
    atomic_ullong sum;
    atomic_int bad_thread;
    int pool_size;
} count_job;

static void count_task(void *p, size_t task, int thread)
{
    count_job *job = p;
    atomic_fetch_add(&job->runs[task], 1);
    atomic_fetch_add(&job->sum, (unsigned long long)task + 1);
    if (thread < 0 || thread >= job->pool_size) atomic_fetch_add(&job->bad_thread, 1);
}

/* Run n tasks on `pool` and check each ran once and the sum 1 + ... + n. */
static void run_and_check(ox__pool *pool, size_t n)
{
    count_job job;
    job.runs = calloc(n ? n : 1, sizeof *job.runs);
    ASSERT(job.runs != NULL);
    atomic_init(&job.sum, 0);
    atomic_init(&job.bad_thread, 0);
    job.pool_size = ox__pool_size(pool);
    ox__pool_run(pool, n, count_task, &job);
    for (size_t i = 0; i < n; i++)
        ASSERT_MSG(atomic_load(&job.runs[i]) == 1, "task %zu ran %d times", i,
                   atomic_load(&job.runs[i]));
    unsigned long long expected = (unsigned long long)n * (n + 1) / 2;
    ASSERT_MSG(atomic_load(&job.sum) == expected, "sum %llu, expected %llu",
               atomic_load(&job.sum), expected);
    ASSERT_EQ(atomic_load(&job.bad_thread), 0);
    free(job.runs);
}

static int affinity_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}

OX_TEST(parallel_sum_many_sizes)
{
    alarm(30);
    static const int threads[] = {1, 2, 3, 4, 8};
    static const size_t tasks[] = {0, 1, 2, 3, 7, 64, 1000, 100000};
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        ox__pool *pool = NULL;
        ASSERT_OK(NULL, ox__pool_create(threads[t], &pool));
        ASSERT(pool != NULL);
        ASSERT_EQ(ox__pool_size(pool), threads[t]);
        for (size_t n = 0; n < sizeof tasks / sizeof tasks[0]; n++) run_and_check(pool, tasks[n]);
        ox__pool_free(pool);
    }
    ox__pool_free(NULL);
}

typedef struct thread_use {
    atomic_int used[64];
} thread_use;

static void record_thread(void *p, size_t task, int thread)
{
    thread_use *use = p;
    (void)task;
    if (thread >= 0 && thread < 64) atomic_fetch_add(&use->used[thread], 1);
    /* A little work so that several threads get a share. */
    volatile double x = 0;
    for (int i = 0; i < 20000; i++) x += i * 0.5;
    (void)x;
}

OX_TEST(thread_indices_in_range)
{
    alarm(30);
    ox__pool *pool = NULL;
    ASSERT_OK(NULL, ox__pool_create(4, &pool));
    static thread_use use;
    for (int i = 0; i < 64; i++) atomic_init(&use.used[i], 0);
    ox__pool_run(pool, 4000, record_thread, &use);
    int total = 0;
    for (int i = 0; i < 64; i++) {
        if (i >= 4) ASSERT_EQ(atomic_load(&use.used[i]), 0);
        total += atomic_load(&use.used[i]);
    }
    ASSERT_EQ(total, 4000);
    ox__pool_free(pool);
}

OX_TEST(default_size)
{
    alarm(30);
    unsetenv("OX_NUM_THREADS");
    int cpus = affinity_cpus();
    ASSERT(cpus >= 1);
    ASSERT_EQ(ox__pool_default_threads(), cpus);
    ox__pool *pool = NULL;
    ASSERT_OK(NULL, ox__pool_create(0, &pool));
    ASSERT_EQ(ox__pool_size(pool), cpus);
    run_and_check(pool, 5000);
    ox__pool_free(pool);
    ASSERT_OK(NULL, ox__pool_create(-3, &pool));
    ASSERT_EQ(ox__pool_size(pool), cpus);
    ox__pool_free(pool);
}

OX_TEST(default_size_from_env)
{
    alarm(30);
    setenv("OX_NUM_THREADS", "3", 1);
    ASSERT_EQ(ox__pool_default_threads(), 3);
    ox__pool *pool = NULL;
    ASSERT_OK(NULL, ox__pool_create(0, &pool));
    ASSERT_EQ(ox__pool_size(pool), 3);
    run_and_check(pool, 999);
    ox__pool_free(pool);
    /* An explicit count wins over the environment. */
    ASSERT_OK(NULL, ox__pool_create(2, &pool));
    ASSERT_EQ(ox__pool_size(pool), 2);
    ox__pool_free(pool);
}

OX_TEST(default_size_env_invalid)
{
    int cpus = affinity_cpus();
    ASSERT(cpus >= 1);
    static const char *const invalid[] = {"0", "abc", "-2", ""};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        setenv("OX_NUM_THREADS", invalid[i], 1);
        ASSERT_MSG(ox__pool_default_threads() == cpus, "OX_NUM_THREADS=\"%s\": %d, expected %d",
                   invalid[i], ox__pool_default_threads(), cpus);
    }
}

typedef struct nested_job {
    ox__pool *pool;
    atomic_int inner_runs[16 * 32];
    atomic_int bad_thread;
} nested_job;

typedef struct inner_arg {
    nested_job *job;
    size_t outer;
} inner_arg;

static void inner_task(void *p, size_t task, int thread)
{
    inner_arg *arg = p;
    atomic_fetch_add(&arg->job->inner_runs[arg->outer * 32 + task], 1);
    if (thread < 0 || thread >= ox__pool_size(arg->job->pool))
        atomic_fetch_add(&arg->job->bad_thread, 1);
}

static void outer_task(void *p, size_t task, int thread)
{
    nested_job *job = p;
    (void)thread;
    inner_arg arg = {job, task};
    ox__pool_run(job->pool, 32, inner_task, &arg);
}

OX_TEST(nested_run_completes)
{
    alarm(30);
    static nested_job job;
    ASSERT_OK(NULL, ox__pool_create(4, &job.pool));
    for (int i = 0; i < 16 * 32; i++) atomic_init(&job.inner_runs[i], 0);
    atomic_init(&job.bad_thread, 0);
    ox__pool_run(job.pool, 16, outer_task, &job);
    for (int i = 0; i < 16 * 32; i++) ASSERT_EQ(atomic_load(&job.inner_runs[i]), 1);
    ASSERT_EQ(atomic_load(&job.bad_thread), 0);
    ox__pool_free(job.pool);
}

static void tiny_task(void *p, size_t task, int thread)
{
    (void)thread;
    atomic_fetch_add((atomic_ullong *)p, (unsigned long long)task + 1);
}

OX_TEST(many_tiny_runs)
{
    alarm(30);
    static const int threads[] = {2, 4};
    for (size_t t = 0; t < 2; t++) {
        ox__pool *pool = NULL;
        ASSERT_OK(NULL, ox__pool_create(threads[t], &pool));
        atomic_ullong sum;
        atomic_init(&sum, 0);
        unsigned long long expected = 0;
        for (int run = 0; run < 10000; run++) {
            size_t n = (size_t)(run % 9); /* 0..8 tasks */
            ox__pool_run(pool, n, tiny_task, &sum);
            expected += n * (n + 1) / 2;
            /* Every run is complete when ox__pool_run returns. */
            ASSERT_MSG(atomic_load(&sum) == expected, "run %d: sum %llu, expected %llu", run,
                       atomic_load(&sum), expected);
        }
        ox__pool_free(pool);
    }
}

OX_TEST(runs_after_workers_sleep)
{
    alarm(30);
    ox__pool *pool = NULL;
    ASSERT_OK(NULL, ox__pool_create(3, &pool));
    atomic_ullong sum;
    atomic_init(&sum, 0);
    unsigned long long expected = 0;
    for (int run = 0; run < 200; run++) {
        usleep(2000); /* long enough for idle workers to stop spinning and sleep */
        ox__pool_run(pool, 16, tiny_task, &sum);
        expected += 16 * 17 / 2;
        ASSERT_EQ(atomic_load(&sum), expected);
    }
    ox__pool_free(pool);
}

typedef struct caller_arg {
    ox__pool *pool;
    int bad;
} caller_arg;

static void *run_from_thread(void *p)
{
    caller_arg *arg = p;
    for (int i = 0; i < 200; i++) {
        count_job job;
        atomic_int runs[300];
        for (int k = 0; k < 300; k++) atomic_init(&runs[k], 0);
        job.runs = runs;
        atomic_init(&job.sum, 0);
        atomic_init(&job.bad_thread, 0);
        job.pool_size = ox__pool_size(arg->pool);
        ox__pool_run(arg->pool, 300, count_task, &job);
        for (int k = 0; k < 300; k++)
            if (atomic_load(&runs[k]) != 1) arg->bad++;
        if (atomic_load(&job.sum) != 300ull * 301 / 2 || atomic_load(&job.bad_thread))
            arg->bad++;
    }
    return NULL;
}

OX_TEST(runs_from_several_threads_are_serialized)
{
    alarm(30);
    ox__pool *pool = NULL;
    ASSERT_OK(NULL, ox__pool_create(3, &pool));
    pthread_t threads[3];
    caller_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (caller_arg){pool, 0};
        ASSERT(pthread_create(&threads[i], NULL, run_from_thread, &args[i]) == 0);
    }
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 3; i++) ASSERT_EQ(args[i].bad, 0);
    ox__pool_free(pool);
}

OX_TEST(create_and_free_repeatedly)
{
    alarm(30);
    for (int i = 0; i < 200; i++) {
        ox__pool *pool = NULL;
        ASSERT_OK(NULL, ox__pool_create(1 + i % 4, &pool));
        if (i % 2) run_and_check(pool, (size_t)i);
        ox__pool_free(pool);
    }
}

OX_TEST_MAIN(parallel_sum_many_sizes, thread_indices_in_range, default_size,
             default_size_from_env, default_size_env_invalid, nested_run_completes,
             many_tiny_runs, runs_after_workers_sleep, runs_from_several_threads_are_serialized,
             create_and_free_repeatedly)
