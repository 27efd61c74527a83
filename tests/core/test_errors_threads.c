/* Error messages are kept per context and per thread: a failure on one
 * thread never overwrites the message another thread reads. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"

#define ROUNDS 2000

typedef struct shared_state {
    ox_context *ctx;
    ox_buffer *buffer; /* 128 bytes */
    pthread_barrier_t barrier;
    int failures[2];
    char first_failure[2][1200];
} shared_state;

typedef struct thread_arg {
    shared_state *shared;
    int which;
} thread_arg;

static void note_failure(shared_state *s, int which, int round, const char *what,
                         const char *message)
{
    if (s->failures[which]++ == 0)
        snprintf(s->first_failure[which], sizeof s->first_failure[which],
                 "thread %d round %d: %s: \"%s\"", which, round, what, message);
}

/* Thread 0 writes out of range (offset 96 + size 64 > 128); thread 1 asks
 * for a view at offset 1000. Both fail between the same two barriers, then
 * each reads its own message. */
static void *provoke(void *p)
{
    thread_arg *arg = p;
    shared_state *s = arg->shared;
    unsigned char host[64] = {0};
    for (int round = 0; round < ROUNDS; round++) {
        ox_status status;
        ox_buffer *view = NULL;
        if (arg->which == 0) status = ox_buffer_write(s->buffer, 96, host, 64);
        else status = ox_buffer_sub(s->buffer, 1000, 7, &view);
        pthread_barrier_wait(&s->barrier);
        const char *message = ox_errmsg(s->ctx);
        if (status != OX_ERR_OUT_OF_RANGE) note_failure(s, arg->which, round, "status", message);
        else if (ox_errcode(s->ctx) != OX_ERR_OUT_OF_RANGE)
            note_failure(s, arg->which, round, "errcode", message);
        else if (arg->which == 0 && (!strstr(message, "96") || strstr(message, "1000")))
            note_failure(s, arg->which, round, "message", message);
        else if (arg->which == 1 && (!strstr(message, "1000") || strstr(message, "96")))
            note_failure(s, arg->which, round, "message", message);
        pthread_barrier_wait(&s->barrier);
    }
    return NULL;
}

OX_TEST(messages_are_per_thread)
{
    alarm(120);
    static shared_state s;
    s.ctx = test_cpu_context();
    ASSERT_OK(s.ctx, ox_buffer_alloc(test_cpu_device(s.ctx), 128, &s.buffer));
    ASSERT(pthread_barrier_init(&s.barrier, NULL, 2) == 0);
    pthread_t threads[2];
    thread_arg args[2] = {{&s, 0}, {&s, 1}};
    for (int i = 0; i < 2; i++) ASSERT(pthread_create(&threads[i], NULL, provoke, &args[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 2; i++)
        ASSERT_MSG(s.failures[i] == 0, "%d wrong round(s), first: %s", s.failures[i],
                   s.first_failure[i]);
    pthread_barrier_destroy(&s.barrier);
    ox_buffer_free(s.buffer);
    ox_context_free(s.ctx);
}

typedef struct fresh_result {
    ox_context *ctx;
    char message[1200];
    char contextless[1200];
    ox_status code;
    ox_status contextless_code;
} fresh_result;

static void *read_fresh(void *p)
{
    fresh_result *r = p;
    snprintf(r->message, sizeof r->message, "%s", ox_errmsg(r->ctx));
    snprintf(r->contextless, sizeof r->contextless, "%s", ox_errmsg(NULL));
    r->code = ox_errcode(r->ctx);
    r->contextless_code = ox_errcode(NULL);
    return NULL;
}

OX_TEST(errmsg_is_empty_on_a_fresh_thread)
{
    ox_context *ctx = test_cpu_context();
    ox_buffer *buffer = NULL;
    ASSERT(ox_buffer_alloc(test_cpu_device(ctx), 0, &buffer) != OX_OK);
    ASSERT(ox_buffer_size(NULL, NULL) != OX_OK); /* a context-less failure too */
    ASSERT(ox_errmsg(ctx)[0] != '\0');
    ASSERT(ox_errmsg(NULL)[0] != '\0');
    char before[1200];
    snprintf(before, sizeof before, "%s", ox_errmsg(ctx));

    fresh_result r;
    memset(&r, 0x5a, sizeof r);
    r.ctx = ctx;
    pthread_t thread;
    ASSERT(pthread_create(&thread, NULL, read_fresh, &r) == 0);
    pthread_join(thread, NULL);
    ASSERT_STR_EQ(r.message, "");
    ASSERT_STR_EQ(r.contextless, "");
    ASSERT_EQ(r.code, OX_OK);
    ASSERT_EQ(r.contextless_code, OX_OK);
    /* This thread's message is still there. */
    ASSERT_STR_EQ(ox_errmsg(ctx), before);
    ox_context_free(ctx);
}

typedef struct contextless_result {
    char message[1200];
} contextless_result;

static void *contextless_failure(void *p)
{
    contextless_result *r = p;
    size_t size = 0;
    ox_buffer_size(NULL, &size);
    snprintf(r->message, sizeof r->message, "%s", ox_errmsg(NULL));
    return NULL;
}

OX_TEST(contextless_messages_are_per_thread)
{
    ox_queue_finish(NULL);
    char mine[1200];
    snprintf(mine, sizeof mine, "%s", ox_errmsg(NULL));
    ASSERT_CONTAINS(mine, "queue");

    contextless_result r;
    memset(&r, 0, sizeof r);
    pthread_t thread;
    ASSERT(pthread_create(&thread, NULL, contextless_failure, &r) == 0);
    pthread_join(thread, NULL);
    ASSERT_CONTAINS(r.message, "ox_buffer_size");
    ASSERT_STR_EQ(ox_errmsg(NULL), mine);
}

typedef struct worker_arg {
    ox_context *ctx;
    int index;
    int bad;
} worker_arg;

/* Each thread uses its own buffer of the shared context, with its own data. */
static void *use_buffers(void *p)
{
    worker_arg *arg = p;
    ox_device *device = NULL;
    if (ox_device_get(arg->ctx, 0, &device) != OX_OK) {
        arg->bad++;
        return NULL;
    }
    unsigned char data[512], back[512];
    for (int round = 0; round < 200; round++) {
        ox_buffer *buffer = NULL;
        if (ox_buffer_alloc(device, sizeof data, &buffer) != OX_OK) {
            arg->bad++;
            continue;
        }
        test_fill_random(data, sizeof data, (uint64_t)(arg->index * 1000 + round));
        if (ox_buffer_write(buffer, 0, data, sizeof data) != OX_OK ||
            ox_buffer_read(buffer, 0, back, sizeof back) != OX_OK ||
            memcmp(data, back, sizeof data) != 0)
            arg->bad++;
        ox_buffer_free(buffer);
    }
    return NULL;
}

OX_TEST(one_context_many_threads)
{
    alarm(120);
    ox_context *ctx = test_cpu_context();
    pthread_t threads[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){ctx, i, 0};
        ASSERT(pthread_create(&threads[i], NULL, use_buffers, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++) ASSERT_EQ(args[i].bad, 0);
    ox_context_free(ctx);
}

OX_TEST_MAIN(messages_are_per_thread, errmsg_is_empty_on_a_fresh_thread,
             contextless_messages_are_per_thread, one_context_many_threads)
