/* The persistent thread pool behind the CPU backend (see threadpool.h).
 *
 * A job is published by bumping a generation counter; workers that see the
 * new generation take task indices from a shared atomic counter until none
 * remain. The caller waits for the tasks, not for the workers: a worker the
 * OS has not scheduled yet (another process on the cores) must not hold up
 * every job by a time slice. So a job ends in two steps: when all its tasks
 * are done the caller closes it (closed = its generation), then waits for
 * the workers inside it (`active`) to leave. A worker joins by counting
 * itself active and then checking the job is not closed; with both sides
 * sequentially consistent, a worker either is seen by the caller's wait or
 * sees the job closed and stays out, so no worker reads a job's fields
 * while the caller rewrites them for the next one.
 * Between jobs a worker spins for a short while (so back-to-back jobs start
 * in well under a microsecond), then sleeps on a condition variable. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/threadpool.h"

#define MAX_THREADS 4096
#define SPIN_NS 200000 /* how long an idle worker spins before sleeping */

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

typedef struct worker {
    ox__pool *pool;
    int index;
    pthread_t thread;
} worker;

struct ox__pool {
    int size;             /* threads in all, the caller included */
    worker *workers;      /* size - 1 */
    pthread_mutex_t run_lock; /* one job at a time */
    pthread_mutex_t lock; /* guards sleeping and the wake-up */
    pthread_cond_t wake;
    int sleepers;
    atomic_uint generation;
    atomic_bool stop;
    /* the current job */
    ox__pool_fn fn;
    void *arg;
    size_t n_tasks;
    atomic_size_t next_task;
    atomic_size_t tasks_done; /* tasks of the current job finished */
    atomic_int active;        /* workers inside the current job */
    atomic_uint closed;       /* the last generation closed to joiners */
};

static _Thread_local bool tls_in_task;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* OX_NUM_THREADS may ask for this many threads per usable core at most
 * (more only add switching; 1000 threads once reported 1000 compute units). */
#define THREADS_PER_CORE 4

int ox__pool_default_threads(void)
{
    int cores = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
    if (cores <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cores = n > 0 ? (int)(n < MAX_THREADS ? n : MAX_THREADS) : 1;
    }
    const char *env = getenv("OX_NUM_THREADS");
    if (!env || !*env) return cores;
    static atomic_flag warned = ATOMIC_FLAG_INIT; /* said once a process */
    char *end;
    errno = 0;
    long n = strtol(env, &end, 10);
    long cap = (long)cores * THREADS_PER_CORE < MAX_THREADS ? (long)cores * THREADS_PER_CORE
                                                             : MAX_THREADS;
    if (errno != 0 || *end != '\0' || n <= 0) {
        if (!atomic_flag_test_and_set(&warned))
            ox__log_default(OX_LOG_WARN, "OX_NUM_THREADS=%.40s is not a positive integer; using "
                            "%d (the usable cores)", env, cores);
        return cores;
    }
    if (n > cap) {
        if (!atomic_flag_test_and_set(&warned))
            ox__log_default(OX_LOG_WARN, "OX_NUM_THREADS=%ld is more than %d x the %d usable cores; "
                            "using %ld", n, THREADS_PER_CORE, cores, cap);
        return (int)cap;
    }
    return (int)n;
}

static void run_tasks(ox__pool *pool, int thread)
{
    bool was_in_task = tls_in_task;
    tls_in_task = true;
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (t >= pool->n_tasks) break;
        pool->fn(pool->arg, t, thread);
        atomic_fetch_add_explicit(&pool->tasks_done, 1, memory_order_release);
    }
    tls_in_task = was_in_task;
}

static void *worker_main(void *p)
{
    worker *w = p;
    ox__pool *pool = w->pool;
    /* Generation 0 is the pool's state at creation, before any worker ran:
     * a job published before this thread got here must still be seen. */
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        uint64_t spin_start = now_ns();
        unsigned spins = 0;
        /* Spin a little, then sleep until a new generation or stop. */
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            cpu_relax();
            if (++spins % 256 == 0 && now_ns() - spin_start > SPIN_NS) {
                pthread_mutex_lock(&pool->lock);
                pool->sleepers++;
                while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                    pthread_cond_wait(&pool->wake, &pool->lock);
                pool->sleepers--;
                pthread_mutex_unlock(&pool->lock);
            }
        }
        if (atomic_load(&pool->stop)) break;
        seen = gen;
        atomic_fetch_add(&pool->active, 1);
        /* Join only a job not closed yet: closed counts up with the
         * generations, so a closed job has closed - gen <= INT_MAX. */
        if ((int)(atomic_load(&pool->closed) - gen) < 0) run_tasks(pool, w->index);
        atomic_fetch_sub(&pool->active, 1);
    }
    return NULL;
}

ox_status ox__pool_create(int threads, ox__pool **out)
{
    *out = NULL;
    if (threads <= 0) threads = ox__pool_default_threads();
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    ox__pool *pool = calloc(1, sizeof *pool);
    if (!pool) return OX_ERR_OUT_OF_MEMORY;
    pool->size = threads;
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->stop, false);
    atomic_init(&pool->next_task, 0);
    atomic_init(&pool->tasks_done, 0);
    atomic_init(&pool->active, 0);
    atomic_init(&pool->closed, 0);
    if (threads > 1) {
        pool->workers = calloc((size_t)threads - 1, sizeof *pool->workers);
        if (!pool->workers) goto err_free_pool;
    }
    for (int i = 0; i < threads - 1; i++) {
        worker *w = &pool->workers[i];
        w->pool = pool;
        w->index = i + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pool->size = i + 1; /* the ones started so far, plus the caller */
            ox__pool_free(pool);
            return OX_ERR_BACKEND;
        }
    }
    *out = pool;
    return OX_OK;

err_free_pool:
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    free(pool);
    return OX_ERR_OUT_OF_MEMORY;
}

void ox__pool_free(ox__pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->size - 1; i++) pthread_join(pool->workers[i].thread, NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    free(pool);
}

int ox__pool_size(const ox__pool *pool)
{
    return pool->size;
}

void ox__pool_run(ox__pool *pool, size_t n_tasks, ox__pool_fn fn, void *arg)
{
    if (n_tasks == 0) return;
    if (tls_in_task || pool->size == 1 || n_tasks == 1) {
        /* Nested, single-threaded or trivial: run here, in order. */
        for (size_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&pool->run_lock);
    pool->fn = fn;
    pool->arg = arg;
    pool->n_tasks = n_tasks;
    atomic_store_explicit(&pool->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->tasks_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->lock);
    unsigned gen = atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release) + 1;
    if (pool->sleepers) pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    run_tasks(pool, 0);
    unsigned spins = 0;
    while (atomic_load_explicit(&pool->tasks_done, memory_order_acquire) < n_tasks) {
        cpu_relax();
        if (++spins % 1024 == 0) sched_yield();
    }
    atomic_store(&pool->closed, gen);
    while (atomic_load(&pool->active) > 0) {
        cpu_relax();
        if (++spins % 1024 == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool->run_lock);
}
