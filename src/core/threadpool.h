/* A persistent pool of worker threads for the CPU backend and the CPU
 * operators: a parallel-for over task indices, with the calling thread
 * taking part. Workers spin briefly between jobs (low latency for the many
 * small jobs of LLM decoding), then sleep on a condition variable. */
#ifndef OX_CORE_THREADPOOL_H
#define OX_CORE_THREADPOOL_H

#include "openxpu/status.h"

typedef struct ox__pool ox__pool;

/* fn(arg, task, thread): run task number `task` (0 <= task < n_tasks) on
 * thread number `thread` (0 <= thread < ox__pool_size(pool); 0 is the
 * caller). */
typedef void (*ox__pool_fn)(void *arg, size_t task, int thread);

/* Threads to use when nothing is configured: OX_NUM_THREADS if it is a
 * positive number, else the cores this process may run on (its affinity
 * mask), at least 1. */
int ox__pool_default_threads(void);

/* Create a pool of `threads` threads in all (the caller counts as one, so
 * threads - 1 workers are started). threads <= 0 means the default. */
ox_status ox__pool_create(int threads, ox__pool **out);
void ox__pool_free(ox__pool *pool); /* NULL is accepted */
int ox__pool_size(const ox__pool *pool);

/* Run fn for every task in [0, n_tasks) and return when all are done.
 * Tasks are handed out dynamically, so uneven tasks balance. Calls from
 * several threads are serialized; a call from inside a task runs the
 * nested tasks on the calling thread. */
void ox__pool_run(ox__pool *pool, size_t n_tasks, ox__pool_fn fn, void *arg);

#endif /* OX_CORE_THREADPOOL_H */
