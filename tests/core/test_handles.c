/* Handle checks: NULL, freed, foreign and wrong-type handles are refused
 * with OX_ERR_INVALID_HANDLE and a message naming the argument, never
 * dereferenced. */
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"

/* `status` is OX_ERR_INVALID_HANDLE and the message names the function and
 * the argument (`what`, or `what_alt` if not NULL). The message sits in the
 * thread's context-less slot; where the call also had a valid handle of
 * `ctx`, the header leaves open which slot holds it, so either may. */
static void expect_refused_at(int line, ox_context *ctx, ox_status status, const char *func,
                              const char *what, const char *what_alt)
{
    ASSERT_MSG(status == OX_ERR_INVALID_HANDLE, "line %d: %s: %s, expected OX_ERR_INVALID_HANDLE",
               line, func, ox_status_name(status));
    const char *message = ox_errmsg(NULL);
    if (ctx && !strstr(message, func)) message = ox_errmsg(ctx);
    int named = strstr(message, what) || (what_alt && strstr(message, what_alt));
    ASSERT_MSG(strstr(message, func) && named, "line %d: message \"%s\" should name %s and %s",
               line, message, func, what);
}
#define EXPECT_REFUSED(ctx, call, func, what) \
    expect_refused_at(__LINE__, ctx, (call), func, what, NULL)
#define EXPECT_CONTEXT_REFUSED(call, func) \
    expect_refused_at(__LINE__, NULL, (call), func, "ctx", "context")

OX_TEST(null_context_refused)
{
    int n = 0;
    ox_device *device = NULL;
    ox_device *devices[2];
    ox_backend_info binfo;
    memset(&binfo, 0, sizeof binfo);
    binfo.struct_size = sizeof binfo;
    EXPECT_CONTEXT_REFUSED(ox_context_set_log_level(NULL, OX_LOG_DEBUG), "ox_context_set_log_level");
    EXPECT_CONTEXT_REFUSED(ox_backend_count(NULL, &n), "ox_backend_count");
    EXPECT_CONTEXT_REFUSED(ox_backend_get_info(NULL, 0, &binfo), "ox_backend_get_info");
    EXPECT_CONTEXT_REFUSED(ox_device_count(NULL, &n), "ox_device_count");
    EXPECT_CONTEXT_REFUSED(ox_device_get(NULL, 0, &device), "ox_device_get");
    EXPECT_CONTEXT_REFUSED(ox_device_select(NULL, "cpu", devices, 2, &n), "ox_device_select");
    EXPECT_CONTEXT_REFUSED(ox_device_default(NULL, &device), "ox_device_default");
    ASSERT_EQ(ox_errcode(NULL), OX_ERR_INVALID_HANDLE);
    ASSERT(ox_device_context(NULL) == NULL);
}

OX_TEST(null_device_buffer_queue_event_refused)
{
    ox_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ox_buffer *buffer = NULL;
    ox_queue *queue = NULL;
    ox_event *event = NULL;
    ox_device *device = NULL;
    unsigned char host[16] = {0};
    size_t size = 0;
    int complete = 0;
    EXPECT_REFUSED(NULL, ox_device_get_info(NULL, &info), "ox_device_get_info", "device");
    EXPECT_REFUSED(NULL, ox_buffer_alloc(NULL, 16, &buffer), "ox_buffer_alloc", "device");
    EXPECT_REFUSED(NULL, ox_buffer_sub(NULL, 0, 1, &buffer), "ox_buffer_sub", "parent");
    EXPECT_REFUSED(NULL, ox_buffer_size(NULL, &size), "ox_buffer_size", "buffer");
    EXPECT_REFUSED(NULL, ox_buffer_device(NULL, &device), "ox_buffer_device", "buffer");
    EXPECT_REFUSED(NULL, ox_buffer_write(NULL, 0, host, 4), "ox_buffer_write", "buffer");
    EXPECT_REFUSED(NULL, ox_buffer_read(NULL, 0, host, 4), "ox_buffer_read", "buffer");
    EXPECT_REFUSED(NULL, ox_buffer_fill(NULL, 0, 4, host, 4), "ox_buffer_fill", "buffer");
    EXPECT_REFUSED(NULL, ox_buffer_copy(NULL, 0, NULL, 0, 4), "ox_buffer_copy", "dst");
    EXPECT_REFUSED(NULL, ox_queue_create(NULL, &queue), "ox_queue_create", "device");
    EXPECT_REFUSED(NULL, ox_queue_device(NULL, &device), "ox_queue_device", "queue");
    EXPECT_REFUSED(NULL, ox_queue_finish(NULL), "ox_queue_finish", "queue");
    EXPECT_REFUSED(NULL, ox_queue_write(NULL, NULL, 0, host, 4, &event), "ox_queue_write", "queue");
    EXPECT_REFUSED(NULL, ox_queue_read(NULL, NULL, 0, host, 4, &event), "ox_queue_read", "queue");
    EXPECT_REFUSED(NULL, ox_queue_copy(NULL, NULL, 0, NULL, 0, 4, &event), "ox_queue_copy",
                   "queue");
    EXPECT_REFUSED(NULL, ox_queue_fill(NULL, NULL, 0, 4, host, 4, &event), "ox_queue_fill",
                   "queue");
    EXPECT_REFUSED(NULL, ox_queue_marker(NULL, &event), "ox_queue_marker", "queue");
    EXPECT_REFUSED(NULL, ox_queue_wait_event(NULL, NULL), "ox_queue_wait_event", "queue");
    EXPECT_REFUSED(NULL, ox_event_wait(NULL), "ox_event_wait", "event");
    EXPECT_REFUSED(NULL, ox_event_query(NULL, &complete), "ox_event_query", "event");
    ASSERT(buffer == NULL && queue == NULL && event == NULL);
    /* Destructors accept NULL. */
    ox_buffer_free(NULL);
    ox_queue_free(NULL);
    ox_event_free(NULL);
}

OX_TEST(null_second_handle_refused)
{
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_buffer *buffer = NULL;
    ox_queue *queue = NULL;
    ox_event *event = NULL;
    unsigned char host[16] = {0};
    ASSERT_OK(ctx, ox_buffer_alloc(device, 64, &buffer));
    ASSERT_OK(ctx, ox_queue_create(device, &queue));
    EXPECT_REFUSED(ctx, ox_buffer_copy(buffer, 0, NULL, 0, 4), "ox_buffer_copy", "src");
    EXPECT_REFUSED(ctx, ox_buffer_copy(NULL, 0, buffer, 0, 4), "ox_buffer_copy", "dst");
    EXPECT_REFUSED(ctx, ox_queue_write(queue, NULL, 0, host, 4, &event), "ox_queue_write",
                   "buffer");
    EXPECT_REFUSED(ctx, ox_queue_read(queue, NULL, 0, host, 4, &event), "ox_queue_read",
                   "buffer");
    EXPECT_REFUSED(ctx, ox_queue_copy(queue, NULL, 0, buffer, 0, 4, &event), "ox_queue_copy",
                   "dst");
    EXPECT_REFUSED(ctx, ox_queue_copy(queue, buffer, 0, NULL, 0, 4, &event), "ox_queue_copy",
                   "src");
    EXPECT_REFUSED(ctx, ox_queue_fill(queue, NULL, 0, 4, host, 4, &event), "ox_queue_fill",
                   "buffer");
    EXPECT_REFUSED(ctx, ox_queue_wait_event(queue, NULL), "ox_queue_wait_event", "event");
    ASSERT(event == NULL);
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ox_queue_free(queue);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(freed_buffer_refused)
{
    ox_context *ctx = test_cpu_context();
    ox_buffer *buffer = NULL, *view = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 64, &buffer));
    ox_buffer_free(buffer);
    unsigned char host[8] = {0};
    size_t size = 0;
    ASSERT_EQ(ox_buffer_write(buffer, 0, host, 8), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT_CONTAINS(ox_errmsg(ctx), "ox_buffer_write");
    ASSERT_EQ(ox_errcode(ctx), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_buffer_read(buffer, 0, host, 8), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT_EQ(ox_buffer_size(buffer, &size), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_buffer_sub(buffer, 0, 8, &view), OX_ERR_INVALID_HANDLE);
    ASSERT(view == NULL);
    ox_context_free(ctx);
}

OX_TEST(freed_view_refused_parent_still_works)
{
    ox_context *ctx = test_cpu_context();
    ox_buffer *buffer = NULL, *view = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 64, &buffer));
    ASSERT_OK(ctx, ox_buffer_sub(buffer, 8, 8, &view));
    ox_buffer_free(view);
    unsigned char host[8] = {1, 2, 3, 4, 5, 6, 7, 8}, back[8] = {0};
    ASSERT_EQ(ox_buffer_write(view, 0, host, 8), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT_OK(ctx, ox_buffer_write(buffer, 8, host, 8));
    ASSERT_OK(ctx, ox_buffer_read(buffer, 8, back, 8));
    ASSERT(memcmp(host, back, 8) == 0);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(freed_queue_and_event_refused)
{
    ox_context *ctx = test_cpu_context();
    ox_queue *queue = NULL;
    ox_event *event = NULL, *other = NULL;
    ASSERT_OK(ctx, ox_queue_create(test_cpu_device(ctx), &queue));
    ASSERT_OK(ctx, ox_queue_marker(queue, &event));
    ASSERT_OK(ctx, ox_event_wait(event));
    ox_event_free(event);
    int complete = -1;
    ASSERT_EQ(ox_event_wait(event), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT_EQ(ox_event_query(event, &complete), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT_EQ(complete, -1);
    ASSERT_EQ(ox_queue_wait_event(queue, event), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ox_event_free(event); /* a second free: no crash */

    ox_queue_free(queue);
    ASSERT_EQ(ox_queue_finish(queue), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT_EQ(ox_queue_marker(queue, &other), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "freed");
    ASSERT(other == NULL);
    ox_queue_free(queue);
    ox_context_free(ctx);
}

OX_TEST(double_free_warns)
{
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
    test_log_attach(&log, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_buffer *buffer = NULL, *other = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 64, &buffer));
    ox_buffer_free(buffer);
    ASSERT_NOT_LOGGED(&log, OX_LOG_WARN, OX_LOG_OFF, NULL, NULL);
    ox_buffer_free(buffer);
    ASSERT_LOGGED(&log, OX_LOG_WARN, OX_LOG_WARN, NULL, NULL);
    /* The context is unharmed. */
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 64, &other));
    ox_buffer_free(other);
    ox_context_free(ctx);
}

OX_TEST(foreign_pointer_refused)
{
    ox_context *ctx = test_cpu_context();
    union {
        unsigned char bytes[512];
        void *pointers[64];
    } junk;
    test_fill_random(junk.bytes, sizeof junk.bytes, 1);
    unsigned char host[8] = {0};
    size_t size = 0;
    int complete = 0;
    ox_device *device = NULL;
    ASSERT_EQ(ox_buffer_write((ox_buffer *)&junk, 0, host, 8), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(NULL), "buffer");
    ASSERT_EQ(ox_buffer_size((ox_buffer *)&junk, &size), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_queue_finish((ox_queue *)&junk), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_event_query((ox_event *)&junk, &complete), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_device_count((ox_context *)&junk, &complete), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_device_get((ox_context *)(junk.bytes + 8), 0, &device), OX_ERR_INVALID_HANDLE);
    /* A pointer that is no context reads the context-less message. */
    ASSERT(ox_errmsg((ox_context *)&junk) != NULL);
    ASSERT_EQ(ox_errcode((ox_context *)&junk), OX_ERR_INVALID_HANDLE);
    /* Freeing a foreign pointer does nothing. */
    ox_buffer_free((ox_buffer *)&junk);
    ox_queue_free((ox_queue *)&junk);
    ox_event_free((ox_event *)&junk);
    ox_context_free((ox_context *)&junk);
    ox_context_free(ctx);
}

OX_TEST(wrong_type_refused)
{
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_buffer *buffer = NULL;
    ox_queue *queue = NULL;
    ox_event *event = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, 64, &buffer));
    ASSERT_OK(ctx, ox_queue_create(device, &queue));
    ASSERT_OK(ctx, ox_queue_marker(queue, &event));
    unsigned char host[8] = {0};
    size_t size = 0;
    int n = 0;
    ox_device *out_device = NULL;

    EXPECT_REFUSED(ctx, ox_buffer_write((ox_buffer *)device, 0, host, 8), "ox_buffer_write",
                   "buffer");
    ASSERT_EQ(ox_buffer_size((ox_buffer *)queue, &size), OX_ERR_INVALID_HANDLE);
    ox_buffer *refused = NULL;
    ASSERT_EQ(ox_buffer_alloc((ox_device *)buffer, 8, &refused), OX_ERR_INVALID_HANDLE);
    ASSERT(refused == NULL);
    ASSERT_EQ(ox_queue_finish((ox_queue *)event), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_event_wait((ox_event *)queue), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_device_count((ox_context *)device, &n), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_queue_device((ox_queue *)ctx, &out_device), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_queue_wait_event(queue, (ox_event *)buffer), OX_ERR_INVALID_HANDLE);

    /* Destructors given the wrong type do nothing. */
    ox_buffer_free((ox_buffer *)device);
    ox_buffer_free((ox_buffer *)queue);
    ox_queue_free((ox_queue *)buffer);
    ox_event_free((ox_event *)buffer);
    ox_context_free((ox_context *)device);

    ASSERT_OK(ctx, ox_buffer_write(buffer, 0, host, 8));
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ASSERT_OK(ctx, ox_event_wait(event));
    ASSERT_OK(ctx, ox_device_count(ctx, &n));
    ASSERT_EQ(n, 1);
    ox_event_free(event);
    ox_queue_free(queue);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(handles_refused_after_context_free)
{
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    ox_buffer *buffer = NULL, *view = NULL;
    ox_queue *queue = NULL;
    ox_event *event = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(device, 64, &buffer));
    ASSERT_OK(ctx, ox_buffer_sub(buffer, 0, 32, &view));
    ASSERT_OK(ctx, ox_queue_create(device, &queue));
    ASSERT_OK(ctx, ox_queue_marker(queue, &event));
    ox_context_free(ctx);

    unsigned char host[8] = {0};
    int n = 0;
    ox_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_EQ(ox_device_count(ctx, &n), OX_ERR_INVALID_HANDLE);
    ASSERT(ox_errmsg(NULL)[0] != '\0');
    ASSERT(ox_errmsg(ctx) != NULL); /* not a live context: no crash */
    ASSERT_EQ(ox_device_get_info(device, &info), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_buffer_write(buffer, 0, host, 8), OX_ERR_INVALID_HANDLE);
    ASSERT(ox_errmsg(NULL)[0] != '\0');
    ASSERT_EQ(ox_buffer_read(view, 0, host, 8), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_queue_finish(queue), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_event_wait(event), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_context_set_log_level(ctx, OX_LOG_DEBUG), OX_ERR_INVALID_HANDLE);
    /* Freeing what went with the context does nothing. */
    ox_event_free(event);
    ox_queue_free(queue);
    ox_buffer_free(view);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(buffers_of_two_contexts_refused)
{
    ox_context *a = test_cpu_context();
    ox_context *b = test_cpu_context();
    ox_buffer *buffer_a = NULL, *buffer_b = NULL;
    ASSERT_OK(a, ox_buffer_alloc(test_cpu_device(a), 64, &buffer_a));
    ASSERT_OK(b, ox_buffer_alloc(test_cpu_device(b), 64, &buffer_b));
    unsigned char data_a[64], data_b[64], back[64];
    test_fill_random(data_a, 64, 1);
    test_fill_random(data_b, 64, 2);
    ASSERT_OK(a, ox_buffer_write(buffer_a, 0, data_a, 64));
    ASSERT_OK(b, ox_buffer_write(buffer_b, 0, data_b, 64));

    ASSERT(ox_buffer_copy(buffer_a, 0, buffer_b, 0, 64) != OX_OK);
    ASSERT(ox_errmsg(a)[0] != '\0' || ox_errmsg(b)[0] != '\0' || ox_errmsg(NULL)[0] != '\0');
    ASSERT(ox_buffer_copy(buffer_b, 0, buffer_a, 0, 64) != OX_OK);
    ASSERT_OK(a, ox_buffer_read(buffer_a, 0, back, 64));
    ASSERT(memcmp(back, data_a, 64) == 0);
    ASSERT_OK(b, ox_buffer_read(buffer_b, 0, back, 64));
    ASSERT(memcmp(back, data_b, 64) == 0);

    /* A buffer of context b is not a valid parent on a's device either. */
    ox_queue *queue_a = NULL;
    ox_event *event = NULL;
    ASSERT_OK(a, ox_queue_create(test_cpu_device(a), &queue_a));
    ASSERT(ox_queue_write(queue_a, buffer_b, 0, data_a, 64, &event) != OX_OK);
    ASSERT(event == NULL);
    ASSERT_OK(b, ox_buffer_read(buffer_b, 0, back, 64));
    ASSERT(memcmp(back, data_b, 64) == 0);
    ox_queue_free(queue_a);
    ox_buffer_free(buffer_a);
    ox_buffer_free(buffer_b);
    ox_context_free(a);
    ox_context_free(b);
}

OX_TEST_MAIN(null_context_refused, null_device_buffer_queue_event_refused,
             null_second_handle_refused, freed_buffer_refused,
             freed_view_refused_parent_still_works, freed_queue_and_event_refused,
             double_free_warns, foreign_pointer_refused, wrong_type_refused,
             handles_refused_after_context_free, buffers_of_two_contexts_refused)
