/* Scratch memory a thread keeps between operator calls (cpu_ops.h):
 * repeated products and attention calls do not fault fresh pages in each
 * time, and large per-task state stays off the workers' stacks. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ops/cpu_ops.h"

static void *alloc_floats(size_t n)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

/* Kept scratch is freed by the key's destructor when the thread exits;
 * scratch above SCRATCH_KEEP_FLOATS, or needed by a nested call, is
 * allocated for the call only. */
#define SCRATCH_KEEP_FLOATS ((size_t)1 << 24) /* 64 MiB */

static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key; /* its value frees the kept scratch at thread exit */
static bool scratch_key_ok;
static _Thread_local float *scratch_kept;
static _Thread_local size_t scratch_kept_floats;
static _Thread_local bool scratch_in_use;

static void scratch_key_create(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, free) == 0;
}

float *ox__scratch_acquire(size_t floats)
{
    pthread_once(&scratch_once, scratch_key_create);
    if (!scratch_key_ok || scratch_in_use || floats > SCRATCH_KEEP_FLOATS)
        return alloc_floats(floats);
    if (scratch_kept_floats < floats) {
        pthread_setspecific(scratch_key, NULL);
        free(scratch_kept);
        scratch_kept_floats = 0;
        scratch_kept = alloc_floats(floats);
        if (!scratch_kept) return NULL;
        if (pthread_setspecific(scratch_key, scratch_kept) != 0) {
            float *p = scratch_kept;
            scratch_kept = NULL;
            return p; /* not kept: freed by ox__scratch_release */
        }
        scratch_kept_floats = floats;
    }
    scratch_in_use = true;
    return scratch_kept;
}

void ox__scratch_release(float *p)
{
    if (p && p == scratch_kept) scratch_in_use = false;
    else free(p);
}

