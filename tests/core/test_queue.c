/* Queues and events on the CPU device: non-blocking transfers, ordering,
 * markers, cross-queue waits, finish, and freeing with work pending. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"

#define BIG ((size_t)1 << 22)

static ox_queue *new_queue(ox_device *device)
{
    ox_queue *queue = NULL;
    ASSERT_OK(ox_device_context(device), ox_queue_create(device, &queue));
    ASSERT(queue != NULL);
    return queue;
}

static void wait_and_free(ox_event *event)
{
    ASSERT(event != NULL);
    ASSERT_OK(NULL, ox_event_wait(event));
    int complete = -1;
    ASSERT_OK(NULL, ox_event_query(event, &complete));
    ASSERT_EQ(complete, 1);
    ox_event_free(event);
}

OX_TEST(queue_create_on_device)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *a = new_queue(device), *b = new_queue(device);
    ASSERT(a != b);
    ox_device *owner = NULL;
    ASSERT_OK(ctx, ox_queue_device(a, &owner));
    ASSERT(owner == device);
    ASSERT(ox_queue_device(a, NULL) != OX_OK);
    ASSERT(ox_queue_create(device, NULL) != OX_OK);
    ASSERT_OK(ctx, ox_queue_finish(a)); /* empty queue */
    ox_queue_free(a);
    ox_queue_free(b);
    ox_context_free(ctx);
}

OX_TEST(queue_transfers_with_events)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *a = NULL, *b = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, 1024, &a));
    ASSERT_OK(ctx, ox_buffer_alloc(device, 1024, &b));
    unsigned char data[1024], back[1024], model[1024];
    test_fill_random(data, sizeof data, 1);

    ox_event *event = NULL;
    ASSERT_OK(ctx, ox_queue_write(queue, a, 0, data, sizeof data, &event));
    wait_and_free(event);
    memset(back, 0, sizeof back);
    ASSERT_OK(ctx, ox_queue_read(queue, a, 0, back, sizeof back, &event));
    wait_and_free(event);
    ASSERT(memcmp(back, data, sizeof data) == 0);

    /* b = fill 0x5a5a..., then copy a[100, 400) to b[600, 900). */
    const uint16_t pattern = 0x5a5a;
    ASSERT_OK(ctx, ox_queue_fill(queue, b, 0, 1024, &pattern, 2, &event));
    wait_and_free(event);
    ASSERT_OK(ctx, ox_queue_copy(queue, b, 600, a, 100, 300, &event));
    wait_and_free(event);
    memset(model, 0x5a, sizeof model);
    memcpy(model + 600, data + 100, 300);
    ASSERT_OK(ctx, ox_buffer_read(b, 0, back, sizeof back));
    ASSERT(memcmp(back, model, sizeof model) == 0);

    /* NULL event pointers are allowed. */
    ASSERT_OK(ctx, ox_queue_write(queue, a, 0, model, 16, NULL));
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ASSERT_OK(ctx, ox_buffer_read(a, 0, back, 16));
    ASSERT(memcmp(back, model, 16) == 0);

    ox_queue_free(queue);
    ox_buffer_free(a);
    ox_buffer_free(b);
    ox_context_free(ctx);
}

OX_TEST(queue_is_in_order)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *a = NULL, *b = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &a));
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &b));
    unsigned char *data = malloc(BIG), *back = malloc(BIG);
    ASSERT(data && back);
    for (int round = 0; round < 8; round++) {
        test_fill_random(data, BIG, 100 + (uint64_t)round);
        memset(back, 0, BIG);
        /* Only the last event is waited for: earlier work must be done. */
        ASSERT_OK(ctx, ox_queue_write(queue, a, 0, data, BIG, NULL));
        ASSERT_OK(ctx, ox_queue_copy(queue, b, 0, a, 0, BIG, NULL));
        const uint32_t zero = 0;
        ASSERT_OK(ctx, ox_queue_fill(queue, a, 0, BIG, &zero, 4, NULL));
        ox_event *event = NULL;
        ASSERT_OK(ctx, ox_queue_read(queue, b, 0, back, BIG, &event));
        wait_and_free(event);
        ASSERT(memcmp(back, data, BIG) == 0);
    }
    ox_queue_free(queue);
    ox_buffer_free(a);
    ox_buffer_free(b);
    free(data);
    free(back);
    ox_context_free(ctx);
}

OX_TEST(marker_and_query)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_event *marker = NULL;
    ASSERT_OK(ctx, ox_queue_marker(queue, &marker));
    wait_and_free(marker);

    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &buffer));
    unsigned char *data = malloc(BIG), *back = malloc(BIG);
    ASSERT(data && back);
    test_fill_random(data, BIG, 5);
    ASSERT_OK(ctx, ox_queue_write(queue, buffer, 0, data, BIG, NULL));
    ASSERT_OK(ctx, ox_queue_read(queue, buffer, 0, back, BIG, NULL));
    ASSERT_OK(ctx, ox_queue_marker(queue, &marker));
    int complete = -1;
    ASSERT_OK(ctx, ox_event_query(marker, &complete));
    ASSERT(complete == 0 || complete == 1);
    ASSERT_OK(ctx, ox_event_wait(marker));
    ASSERT(memcmp(back, data, BIG) == 0);
    ASSERT_OK(ctx, ox_event_wait(marker)); /* waiting again is fine */
    ASSERT(ox_event_query(marker, NULL) != OX_OK);
    wait_and_free(marker);
    ox_queue_free(queue);
    ox_buffer_free(buffer);
    free(data);
    free(back);
    ox_context_free(ctx);
}

OX_TEST(wait_for_event_of_another_queue)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *producer = new_queue(device), *consumer = new_queue(device);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &buffer));
    unsigned char *data = malloc(BIG), *back = malloc(BIG);
    ASSERT(data && back);
    for (int round = 0; round < 8; round++) {
        test_fill_random(data, BIG, 200 + (uint64_t)round);
        memset(back, 0, BIG);
        ox_event *written = NULL, *read = NULL;
        ASSERT_OK(ctx, ox_queue_write(producer, buffer, 0, data, BIG, &written));
        ASSERT_OK(ctx, ox_queue_wait_event(consumer, written));
        ASSERT_OK(ctx, ox_queue_read(consumer, buffer, 0, back, BIG, &read));
        wait_and_free(read);
        ASSERT(memcmp(back, data, BIG) == 0);
        ox_event_free(written);
    }
    ox_queue_free(producer);
    ox_queue_free(consumer);
    ox_buffer_free(buffer);
    free(data);
    free(back);
    ox_context_free(ctx);
}

OX_TEST(finish_completes_every_event)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &buffer));
    unsigned char *data = malloc(BIG), *back = malloc(BIG);
    ASSERT(data && back);
    test_fill_random(data, BIG, 9);
    ox_event *events[4] = {NULL};
    ASSERT_OK(ctx, ox_queue_write(queue, buffer, 0, data, BIG, &events[0]));
    ASSERT_OK(ctx, ox_queue_read(queue, buffer, 0, back, BIG, &events[1]));
    ASSERT_OK(ctx, ox_queue_marker(queue, &events[2]));
    ASSERT_OK(ctx, ox_queue_read(queue, buffer, 0, back, 16, &events[3]));
    ASSERT_OK(ctx, ox_queue_finish(queue));
    for (int i = 0; i < 4; i++) {
        int complete = -1;
        ASSERT_OK(ctx, ox_event_query(events[i], &complete));
        ASSERT_EQ(complete, 1);
        ox_event_free(events[i]);
    }
    ASSERT(memcmp(back, data, BIG) == 0);
    ox_queue_free(queue);
    ox_buffer_free(buffer);
    free(data);
    free(back);
    ox_context_free(ctx);
}

OX_TEST(queue_free_with_pending_events)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &buffer));
    unsigned char *data = malloc(BIG), *back = malloc(BIG);
    ASSERT(data && back);
    test_fill_random(data, BIG, 13);
    ox_event *write_done = NULL, *read_done = NULL, *marker = NULL;
    ASSERT_OK(ctx, ox_queue_write(queue, buffer, 0, data, BIG, &write_done));
    ASSERT_OK(ctx, ox_queue_read(queue, buffer, 0, back, BIG, &read_done));
    ASSERT_OK(ctx, ox_queue_marker(queue, &marker));
    ox_queue_free(queue); /* finishes the work first */
    ASSERT(memcmp(back, data, BIG) == 0);
    int complete = -1;
    ASSERT_OK(ctx, ox_event_query(read_done, &complete));
    ASSERT_EQ(complete, 1);
    wait_and_free(write_done);
    wait_and_free(read_done);
    /* An event of a freed queue can still be waited for by another queue. */
    ox_queue *other = new_queue(device);
    ASSERT_OK(ctx, ox_queue_wait_event(other, marker));
    ASSERT_OK(ctx, ox_queue_finish(other));
    ox_queue_free(other);
    wait_and_free(marker);
    ox_buffer_free(buffer);
    free(data);
    free(back);
    ox_context_free(ctx);
}

OX_TEST(context_free_with_live_queue_and_events)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, BIG, &buffer));
    unsigned char *data = malloc(BIG), *back = malloc(BIG);
    ASSERT(data && back);
    test_fill_random(data, BIG, 17);
    memset(back, 0, BIG);
    ox_event *event = NULL;
    ASSERT_OK(ctx, ox_queue_write(queue, buffer, 0, data, BIG, NULL));
    ASSERT_OK(ctx, ox_queue_read(queue, buffer, 0, back, BIG, &event));
    ox_context_free(ctx); /* waits for the queued work, frees everything */
    ASSERT(memcmp(back, data, BIG) == 0);
    free(data);
    free(back);
}

OX_TEST(queue_argument_checks)
{
    alarm(60);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, 128, &buffer));
    unsigned char data[128];
    test_fill_random(data, sizeof data, 21);
    ASSERT_OK(ctx, ox_buffer_write(buffer, 0, data, sizeof data));
    unsigned char junk[256];
    memset(junk, 0x33, sizeof junk);
    const uint32_t pattern = 0;

    ox_event *event = NULL;
    ASSERT_EQ(ox_queue_write(queue, buffer, 96, junk, 64, &event), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "96");
    ASSERT(event == NULL);
    ASSERT_EQ(ox_queue_read(queue, buffer, SIZE_MAX, junk, 2, &event), OX_ERR_OUT_OF_RANGE);
    ASSERT(event == NULL);
    ASSERT_EQ(ox_queue_copy(queue, buffer, 0, buffer, 100, 29, &event), OX_ERR_OUT_OF_RANGE);
    ASSERT(event == NULL);
    ASSERT(ox_queue_copy(queue, buffer, 0, buffer, 10, 20, &event) != OX_OK); /* overlap */
    ASSERT(event == NULL);
    ASSERT_EQ(ox_queue_fill(queue, buffer, 64, 128, &pattern, 4, &event), OX_ERR_OUT_OF_RANGE);
    ASSERT(event == NULL);
    ASSERT(ox_queue_fill(queue, buffer, 2, 8, &pattern, 4, &event) != OX_OK);
    ASSERT(ox_queue_fill(queue, buffer, 0, 9, &pattern, 3, &event) != OX_OK);
    ASSERT(event == NULL);
    ASSERT_EQ(ox_queue_write(queue, buffer, 0, NULL, 8, &event), OX_ERR_INVALID);
    ASSERT_EQ(ox_queue_read(queue, buffer, 0, NULL, 8, &event), OX_ERR_INVALID);
    ASSERT(event == NULL);
    ASSERT(ox_queue_marker(queue, NULL) != OX_OK);
    ASSERT_OK(ctx, ox_queue_finish(queue));

    unsigned char back[128];
    ASSERT_OK(ctx, ox_buffer_read(buffer, 0, back, sizeof back));
    ASSERT(memcmp(back, data, sizeof data) == 0);

    /* A zero-byte transfer still gives an event that completes. */
    ASSERT_OK(ctx, ox_queue_write(queue, buffer, 0, junk, 0, &event));
    wait_and_free(event);
    ox_queue_free(queue);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(other_context_refused)
{
    alarm(60);
    ox_context *a = test_cpu_context();
    ox_context *b = test_cpu_context();
    ox_queue *queue_a = new_queue(test_cpu_device(a));
    ox_queue *queue_b = new_queue(test_cpu_device(b));
    ox_buffer *buffer_a = NULL, *buffer_b = NULL;
    ASSERT_OK(a, ox_buffer_alloc(test_cpu_device(a), 64, &buffer_a));
    ASSERT_OK(b, ox_buffer_alloc(test_cpu_device(b), 64, &buffer_b));
    unsigned char data[64], back[64];
    test_fill_random(data, sizeof data, 31);
    ASSERT_OK(b, ox_buffer_write(buffer_b, 0, data, sizeof data));

    ox_event *event = NULL;
    unsigned char junk[64];
    memset(junk, 0, sizeof junk);
    ASSERT(ox_queue_write(queue_a, buffer_b, 0, junk, 64, &event) != OX_OK);
    ASSERT(ox_queue_read(queue_a, buffer_b, 0, junk, 64, &event) != OX_OK);
    ASSERT(ox_queue_copy(queue_a, buffer_a, 0, buffer_b, 0, 64, &event) != OX_OK);
    ASSERT(ox_queue_copy(queue_a, buffer_b, 0, buffer_a, 0, 64, &event) != OX_OK);
    const uint8_t zero = 0;
    ASSERT(ox_queue_fill(queue_a, buffer_b, 0, 64, &zero, 1, &event) != OX_OK);
    ASSERT(event == NULL);

    ox_event *event_b = NULL;
    ASSERT_OK(b, ox_queue_marker(queue_b, &event_b));
    ASSERT(ox_queue_wait_event(queue_a, event_b) != OX_OK);

    ASSERT_OK(b, ox_buffer_read(buffer_b, 0, back, sizeof back));
    ASSERT(memcmp(back, data, sizeof data) == 0);
    wait_and_free(event_b);
    ox_queue_free(queue_a);
    ox_queue_free(queue_b);
    ox_buffer_free(buffer_a);
    ox_buffer_free(buffer_b);
    ox_context_free(a);
    ox_context_free(b);
}

OX_TEST(many_events)
{
    alarm(120);
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_queue *queue = new_queue(device);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, 4096, &buffer));
    static uint32_t values[2000], back[2000];
    for (uint32_t i = 0; i < 2000; i++) values[i] = i * 2654435761u;
    for (int i = 0; i < 2000; i++) {
        ox_event *event = NULL;
        ASSERT_OK(ctx, ox_queue_write(queue, buffer, (size_t)(i % 1024) * 4, &values[i], 4,
                                      &event));
        ASSERT_OK(ctx, ox_queue_read(queue, buffer, (size_t)(i % 1024) * 4, &back[i], 4, NULL));
        if (i % 3 == 0) ASSERT_OK(ctx, ox_event_wait(event));
        ox_event_free(event);
    }
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ASSERT(memcmp(values, back, sizeof values) == 0);
    ox_queue_free(queue);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST_MAIN(queue_create_on_device, queue_transfers_with_events, queue_is_in_order,
             marker_and_query, wait_for_event_of_another_queue, finish_completes_every_event,
             queue_free_with_pending_events, context_free_with_live_queue_and_events,
             queue_argument_checks, other_context_refused, many_events)
