/* Helpers shared by the unit tests: a log callback that records what it
 * receives, a counting host allocator that can fail on demand (fault
 * injection), a CPU-only context, and a small deterministic random source. */
#ifndef OX_TEST_HELPERS_H
#define OX_TEST_HELPERS_H

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"

/* ---- log capture ---------------------------------------------------------- */

#define TEST_LOG_MAX 256
#define TEST_LOG_TEXT 1024

typedef struct test_log {
    pthread_mutex_t lock;
    int count;              /* messages received (also those not stored) */
    int wrong_user;         /* calls with another user pointer */
    int trailing_newline;   /* messages ending in '\n' (the contract says none) */
    ox_log_level levels[TEST_LOG_MAX];
    char text[TEST_LOG_MAX][TEST_LOG_TEXT];
} test_log;

static inline void test_log_init(test_log *log)
{
    memset(log, 0, sizeof *log);
    pthread_mutex_init(&log->lock, NULL);
}

/* An ox_log_fn; `user` must be the test_log. */
static inline void test_log_fn(void *user, ox_log_level level, const char *message)
{
    test_log *log = user;
    pthread_mutex_lock(&log->lock);
    if (log->count < TEST_LOG_MAX) {
        log->levels[log->count] = level;
        snprintf(log->text[log->count], TEST_LOG_TEXT, "%s", message ? message : "(null)");
    }
    size_t n = message ? strlen(message) : 0;
    if (n > 0 && message[n - 1] == '\n') log->trailing_newline++;
    log->count++;
    pthread_mutex_unlock(&log->lock);
}

/* Set the options' log callback to record into `log`. */
static inline void test_log_attach(test_log *log, ox_context_options *options)
{
    options->log = test_log_fn;
    options->log_user = log;
}

/* Case-insensitive substring test. */
static inline int test_contains_ci(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *h = haystack; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] &&
               tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return 1;
    }
    return n == 0;
}

/* Index of the first stored message with min <= level <= max that contains
 * every non-NULL needle (case-insensitive), or -1. */
static inline int test_log_find(test_log *log, ox_log_level min, ox_log_level max,
                                const char *needle1, const char *needle2)
{
    int found = -1;
    pthread_mutex_lock(&log->lock);
    int stored = log->count < TEST_LOG_MAX ? log->count : TEST_LOG_MAX;
    for (int i = 0; i < stored && found < 0; i++) {
        if (log->levels[i] < min || log->levels[i] > max) continue;
        if (needle1 && !test_contains_ci(log->text[i], needle1)) continue;
        if (needle2 && !test_contains_ci(log->text[i], needle2)) continue;
        found = i;
    }
    pthread_mutex_unlock(&log->lock);
    return found;
}

/* Print what was received, to explain a failed assertion. */
static inline void test_log_dump(test_log *log)
{
    pthread_mutex_lock(&log->lock);
    int stored = log->count < TEST_LOG_MAX ? log->count : TEST_LOG_MAX;
    fprintf(stderr, "  log received %d message(s):\n", log->count);
    for (int i = 0; i < stored; i++)
        fprintf(stderr, "    [%s] %s\n", ox_log_level_str(log->levels[i]), log->text[i]);
    pthread_mutex_unlock(&log->lock);
}

#define ASSERT_LOGGED(log, min, max, needle1, needle2)                              \
    do {                                                                            \
        if (test_log_find((log), (min), (max), (needle1), (needle2)) < 0) {         \
            test_log_dump(log);                                                     \
            OX_TEST_FAIL_AT("no %s..%s log message containing \"%s\" and \"%s\"",   \
                            ox_log_level_str(min), ox_log_level_str(max),           \
                            (needle1) ? (needle1) : "", (needle2) ? (needle2) : "");  \
        }                                                                           \
    } while (0)

#define ASSERT_NOT_LOGGED(log, min, max, needle1, needle2)                          \
    do {                                                                            \
        if (test_log_find((log), (min), (max), (needle1), (needle2)) >= 0) {        \
            test_log_dump(log);                                                     \
            OX_TEST_FAIL_AT("unexpected %s..%s log message containing \"%s\"",      \
                            ox_log_level_str(min), ox_log_level_str(max),           \
                            (needle1) ? (needle1) : "");                            \
        }                                                                           \
    } while (0)

/* ---- counting allocator with fault injection -------------------------------- */

/* Each block carries its size, so the counts do not depend on the sizes the
 * library passes back; a wrong old_size is counted separately. */
typedef union test_alloc_header {
    max_align_t align;
    size_t size;
} test_alloc_header;

typedef struct test_alloc {
    atomic_long attempts;      /* allocations and resizes asked for */
    atomic_long fail_from;     /* attempt number from which every one fails; -1: never */
    atomic_long failures;      /* attempts refused */
    atomic_long live_blocks;   /* blocks handed out and not yet freed */
    atomic_llong live_bytes;
    atomic_long size_mismatch; /* old_size differing from the block's size */
} test_alloc;

static inline void test_alloc_init(test_alloc *a, long fail_from)
{
    atomic_init(&a->attempts, 0);
    atomic_init(&a->fail_from, fail_from);
    atomic_init(&a->failures, 0);
    atomic_init(&a->live_blocks, 0);
    atomic_init(&a->live_bytes, 0);
    atomic_init(&a->size_mismatch, 0);
}

/* An ox_alloc_fn; `user` must be the test_alloc. */
static inline void *test_alloc_fn(void *user, void *ptr, size_t old_size, size_t new_size)
{
    test_alloc *a = user;
    test_alloc_header *block = ptr ? (test_alloc_header *)ptr - 1 : NULL;
    if (block && block->size != old_size) atomic_fetch_add(&a->size_mismatch, 1);
    if (new_size == 0) {
        if (block) {
            atomic_fetch_sub(&a->live_blocks, 1);
            atomic_fetch_sub(&a->live_bytes, (long long)block->size);
            free(block);
        }
        return NULL;
    }
    long attempt = atomic_fetch_add(&a->attempts, 1);
    long fail_from = atomic_load(&a->fail_from);
    if (fail_from >= 0 && attempt >= fail_from) {
        atomic_fetch_add(&a->failures, 1);
        return NULL;
    }
    if (new_size > SIZE_MAX - sizeof(test_alloc_header)) return NULL;
    size_t before = block ? block->size : 0;
    test_alloc_header *grown = realloc(block, sizeof(test_alloc_header) + new_size);
    if (!grown) return NULL;
    if (!block) atomic_fetch_add(&a->live_blocks, 1);
    atomic_fetch_add(&a->live_bytes, (long long)new_size - (long long)before);
    grown->size = new_size;
    return grown + 1;
}

static inline void test_alloc_attach(test_alloc *a, ox_context_options *options)
{
    options->alloc = test_alloc_fn;
    options->alloc_user = a;
}

/* After ox_context_free: every block handed out came back, with its size. */
#define ASSERT_ALLOC_BALANCED(a)                                                    \
    do {                                                                            \
        ASSERT_EQ(atomic_load(&(a)->live_blocks), 0);                               \
        ASSERT_EQ(atomic_load(&(a)->live_bytes), 0);                                \
        ASSERT_EQ(atomic_load(&(a)->size_mismatch), 0);                             \
    } while (0)

/* ---- contexts and data ----------------------------------------------------- */

static inline ox_context_options test_options(unsigned flags)
{
    ox_context_options options;
    memset(&options, 0, sizeof options);
    options.struct_size = sizeof options;
    options.flags = flags;
    return options;
}

/* A context with only the built-in CPU backend. */
static inline ox_context *test_cpu_context(void)
{
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(ctx != NULL);
    return ctx;
}

/* Device 0 of a context (the CPU). */
static inline ox_device *test_cpu_device(ox_context *ctx)
{
    ox_device *device = NULL;
    ASSERT_OK(ctx, ox_device_get(ctx, 0, &device));
    ASSERT(device != NULL);
    return device;
}

static inline ox_device_info test_device_info(ox_device *device)
{
    ox_device_info info;
    memset(&info, 0x5a, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_OK(ox_device_context(device), ox_device_get_info(device, &info));
    return info;
}

/* Deterministic pseudo-random bytes (xorshift64*). */
static inline void test_fill_random(void *dst, size_t size, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    unsigned char *p = dst;
    for (size_t i = 0; i < size; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

/* A buffer, a view, a queue and an event on device `index`, for fault
 * injection: returns the first failure, after releasing what was made. */
static inline ox_status test_exercise_device(ox_context *ctx, int index)
{
    ox_device *device = NULL;
    ox_buffer *buffer = NULL, *view = NULL;
    ox_queue *queue = NULL;
    ox_event *event = NULL;
    unsigned char data[128], back[128];
    test_fill_random(data, sizeof data, 7);
    ox_status status = ox_device_get(ctx, index, &device);
    if (status != OX_OK) return status;
    if ((status = ox_buffer_alloc(device, 256, &buffer)) != OX_OK) goto done;
    if ((status = ox_buffer_sub(buffer, 128, 128, &view)) != OX_OK) goto done;
    if ((status = ox_buffer_write(view, 0, data, 128)) != OX_OK) goto done;
    if ((status = ox_queue_create(device, &queue)) != OX_OK) goto done;
    if ((status = ox_queue_read(queue, buffer, 128, back, 128, &event)) != OX_OK) goto done;
    if ((status = ox_event_wait(event)) != OX_OK) goto done;
    ASSERT(memcmp(back, data, 128) == 0);
done:
    ox_event_free(event);
    ox_queue_free(queue);
    ox_buffer_free(view);
    ox_buffer_free(buffer);
    return status;
}

#endif /* OX_TEST_HELPERS_H */
