/* Runtime self-checks of one device for 'ox check': write/read round trips,
 * views, copy and fill, queues and events, cross-device copies and the
 * refusal of bad input. Every result is verified against a host copy. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cli.h"

#define KIB ((size_t)1024)
#define MIB (KIB * KIB)

/* ---- helpers ------------------------------------------------------------- */

static check_result fail(check_env *env, const char *format, ...) CLI_PRINTF(2, 3);

static check_result fail(check_env *env, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(env->detail, sizeof env->detail, format, args);
    va_end(args);
    return CHECK_FAIL;
}

/* A library call failed: name the function, the status and the context's
 * message (which usually starts with the function's name already). */
static void call_failed(check_env *env, const char *call, ox_status status)
{
    int name_length = (int)strcspn(call, "(");
    const char *message = ox_errmsg(env->ctx);
    if (strncmp(message, call, (size_t)name_length) == 0 && message[name_length] == ':')
        message += name_length + 1 + (message[name_length + 1] == ' ');
    fail(env, "%.*s: %s: %s", name_length, call, ox_status_name(status), message);
}

/* Make a library call; on failure describe it in the detail and go to
 * `label`. */
#define CHECK_OK(call, label)                                                             \
    do {                                                                                  \
        ox_status check_status_ = (call);                                                 \
        if (check_status_ != OX_OK) {                                                     \
            call_failed(env, #call, check_status_);                                       \
            goto label;                                                                   \
        }                                                                                 \
    } while (0)

/* Deterministic pseudo-random bytes (xorshift32), different for each seed. */
static void fill_random(unsigned char *bytes, size_t size, uint32_t seed)
{
    uint32_t x = seed * 2654435761u ^ 0x9e3779b9u;
    if (x == 0) x = 1;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes[i] = (unsigned char)(x >> 24);
    }
}

static void repeat_pattern(unsigned char *bytes, size_t size, const unsigned char *pattern,
                           size_t pattern_size)
{
    for (size_t i = 0; i < size; i++) bytes[i] = pattern[i % pattern_size];
}

/* 0 if the bytes match; else 1, with the first difference in the detail. */
static int differs(check_env *env, const char *what, const unsigned char *got,
                   const unsigned char *want, size_t size)
{
    if (memcmp(got, want, size) == 0) return 0;
    size_t i = 0;
    while (got[i] == want[i]) i++;
    fail(env, "%s: byte %zu of %zu is 0x%02x, expected 0x%02x", what, i, size, got[i], want[i]);
    return 1;
}

/* Host memory for a check; NULL with the detail set when there is none. */
static unsigned char *host_alloc(check_env *env, size_t size)
{
    unsigned char *bytes = malloc(size);
    if (!bytes) fail(env, "out of host memory (%zu bytes)", size);
    return bytes;
}

static double gigabytes_per_second(size_t bytes, double seconds)
{
    return (double)bytes / (seconds > 1e-9 ? seconds : 1e-9) / 1e9;
}

/* ---- alloc + write + read round trips -------------------------------------- */

static check_result roundtrip_one(check_env *env, size_t size, double *write_seconds,
                                  double *read_seconds)
{
    check_result result = CHECK_FAIL;
    ox_buffer *buffer = NULL;
    unsigned char *src = host_alloc(env, size);
    unsigned char *dst = src ? host_alloc(env, size) : NULL;
    if (!dst) goto out_free_host;

    fill_random(src, size, (uint32_t)size);
    for (size_t i = 0; i < size; i++) dst[i] = (unsigned char)~src[i]; /* stale data shows */
    CHECK_OK(ox_buffer_alloc(env->device, size, &buffer), out_free_host);
    /* Time the second write: the first also pays for mapping fresh pages. */
    CHECK_OK(ox_buffer_write(buffer, 0, src, size), out_free_buffer);
    double start = cli_seconds();
    CHECK_OK(ox_buffer_write(buffer, 0, src, size), out_free_buffer);
    double written = cli_seconds();
    CHECK_OK(ox_buffer_read(buffer, 0, dst, size), out_free_buffer);
    double read = cli_seconds();
    if (differs(env, "read back", dst, src, size)) goto out_free_buffer;

    *write_seconds = written - start;
    *read_seconds = read - written;
    result = CHECK_PASS;
out_free_buffer:
    ox_buffer_free(buffer);
out_free_host:
    free(dst);
    free(src);
    return result;
}

static check_result check_roundtrip(check_env *env)
{
    static const size_t sizes[] = {1, 4097, MIB, 64 * MIB};
    size_t count = env->quick ? 3 : 4, done = 0, largest = 0;
    uint64_t limit = env->info->max_alloc_bytes;
    double write_seconds = 0, read_seconds = 0;

    for (size_t i = 0; i < count; i++) {
        if (limit && sizes[i] > limit) continue; /* the device cannot hold it */
        if (roundtrip_one(env, sizes[i], &write_seconds, &read_seconds) != CHECK_PASS)
            return CHECK_FAIL;
        largest = sizes[i];
        done++;
    }
    if (!done)
        return fail(env, "no test size fits max_alloc_bytes %llu", (unsigned long long)limit);

    char largest_text[32], limit_text[32] = "";
    cli_format_bytes(largest, largest_text, sizeof largest_text);
    if (done < count) {
        cli_format_bytes(limit, limit_text, sizeof limit_text);
        snprintf(limit_text + strlen(limit_text), sizeof limit_text - strlen(limit_text),
                 " max alloc");
    }
    snprintf(env->detail, sizeof env->detail,
             "%zu sizes, 1 B to %s%s%s%s; write %.2f GB/s, read %.2f GB/s", done, largest_text,
             done < count ? " (" : "", limit_text, done < count ? ")" : "",
             gigabytes_per_second(largest, write_seconds),
             gigabytes_per_second(largest, read_seconds));
    return CHECK_PASS;
}

/* ---- views: ox_buffer_sub ------------------------------------------------------ */

#define SUB_PARENT_SIZE (64 * KIB)
#define SUB_VIEW_OFFSET (4 * KIB) /* view in the parent */
#define SUB_VIEW_SIZE (8 * KIB)
#define SUB_INNER_OFFSET KIB      /* view of the view, in the view */
#define SUB_INNER_SIZE (2 * KIB)

static check_result check_sub_buffer(check_env *env)
{
    const size_t inner_at = SUB_VIEW_OFFSET + SUB_INNER_OFFSET; /* in the parent */
    check_result result = CHECK_FAIL;
    ox_buffer *parent = NULL, *view = NULL, *inner = NULL;
    unsigned char patch[SUB_INNER_SIZE];
    size_t size = 0;
    unsigned char *want = host_alloc(env, 2 * SUB_PARENT_SIZE);
    unsigned char *got = want + SUB_PARENT_SIZE;
    if (!want) return CHECK_FAIL;

    fill_random(want, SUB_PARENT_SIZE, 1);
    CHECK_OK(ox_buffer_alloc(env->device, SUB_PARENT_SIZE, &parent), out_free_buffers);
    CHECK_OK(ox_buffer_write(parent, 0, want, SUB_PARENT_SIZE), out_free_buffers);
    CHECK_OK(ox_buffer_sub(parent, SUB_VIEW_OFFSET, SUB_VIEW_SIZE, &view), out_free_buffers);
    CHECK_OK(ox_buffer_sub(view, SUB_INNER_OFFSET, SUB_INNER_SIZE, &inner), out_free_buffers);
    CHECK_OK(ox_buffer_size(inner, &size), out_free_buffers);
    if (size != SUB_INNER_SIZE) {
        fail(env, "view of a view has size %zu, expected %zu", size, SUB_INNER_SIZE);
        goto out_free_buffers;
    }

    /* Writes through either view land at the right place of the parent. */
    fill_random(patch, 1000, 2);
    CHECK_OK(ox_buffer_write(view, 100, patch, 1000), out_free_buffers);
    memcpy(want + SUB_VIEW_OFFSET + 100, patch, 1000);
    fill_random(patch, SUB_INNER_SIZE, 3);
    CHECK_OK(ox_buffer_write(inner, 0, patch, SUB_INNER_SIZE), out_free_buffers);
    memcpy(want + inner_at, patch, SUB_INNER_SIZE);
    CHECK_OK(ox_buffer_read(parent, 0, got, SUB_PARENT_SIZE), out_free_buffers);
    if (differs(env, "parent after writes through views", got, want, SUB_PARENT_SIZE))
        goto out_free_buffers;

    /* Reads through a view see the parent's bytes at its offset. */
    CHECK_OK(ox_buffer_read(view, 0, got, SUB_VIEW_SIZE), out_free_buffers);
    if (differs(env, "read through a view", got, want + SUB_VIEW_OFFSET, SUB_VIEW_SIZE))
        goto out_free_buffers;

    /* A view keeps the memory alive after its parent is freed. */
    ox_buffer_free(parent);
    parent = NULL;
    CHECK_OK(ox_buffer_read(inner, 0, got, SUB_INNER_SIZE), out_free_buffers);
    if (differs(env, "view of a view after freeing the parent", got, want + inner_at,
                SUB_INNER_SIZE))
        goto out_free_buffers;

    snprintf(env->detail, sizeof env->detail,
             "view at %zu and view of a view at %zu of %zu bytes; outlive the parent",
             SUB_VIEW_OFFSET, inner_at, SUB_PARENT_SIZE);
    result = CHECK_PASS;
out_free_buffers:
    ox_buffer_free(inner);
    ox_buffer_free(view);
    ox_buffer_free(parent);
    free(want);
    return result;
}

/* ---- ox_buffer_copy and ox_buffer_fill -------------------------------------------- */

#define COPY_SIZE (64 * KIB)

static check_result check_copy_fill(check_env *env)
{
    static const unsigned char pattern[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                              0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
    check_result result = CHECK_FAIL;
    ox_buffer *a = NULL, *b = NULL;
    unsigned char *want = host_alloc(env, 2 * COPY_SIZE);
    unsigned char *got = want + COPY_SIZE;
    if (!want) return CHECK_FAIL;

    fill_random(want, COPY_SIZE, 4);
    CHECK_OK(ox_buffer_alloc(env->device, COPY_SIZE, &a), out_free_buffers);
    CHECK_OK(ox_buffer_alloc(env->device, COPY_SIZE, &b), out_free_buffers);
    CHECK_OK(ox_buffer_write(a, 0, want, COPY_SIZE), out_free_buffers);

    /* Within one buffer (first quarter to third), then all of a to b. */
    CHECK_OK(ox_buffer_copy(a, COPY_SIZE / 2, a, 0, COPY_SIZE / 4), out_free_buffers);
    memcpy(want + COPY_SIZE / 2, want, COPY_SIZE / 4);
    CHECK_OK(ox_buffer_copy(b, 0, a, 0, COPY_SIZE), out_free_buffers);
    CHECK_OK(ox_buffer_read(b, 0, got, COPY_SIZE), out_free_buffers);
    if (differs(env, "after copies", got, want, COPY_SIZE)) goto out_free_buffers;

    /* Fills of 1-, 4- and 16-byte patterns at offsets that are multiples of them. */
    CHECK_OK(ox_buffer_fill(b, 3, 1001, pattern, 1), out_free_buffers);
    repeat_pattern(want + 3, 1001, pattern, 1);
    CHECK_OK(ox_buffer_fill(b, 4 * KIB, 4 * KIB, pattern, 4), out_free_buffers);
    repeat_pattern(want + 4 * KIB, 4 * KIB, pattern, 4);
    CHECK_OK(ox_buffer_fill(b, 16 * KIB + 16, 16 * 257, pattern, 16), out_free_buffers);
    repeat_pattern(want + 16 * KIB + 16, 16 * 257, pattern, 16);
    CHECK_OK(ox_buffer_read(b, 0, got, COPY_SIZE), out_free_buffers);
    if (differs(env, "after fills", got, want, COPY_SIZE)) goto out_free_buffers;

    snprintf(env->detail, sizeof env->detail,
             "copy within and across buffers; fill with 1-, 4- and 16-byte patterns");
    result = CHECK_PASS;
out_free_buffers:
    ox_buffer_free(b);
    ox_buffer_free(a);
    free(want);
    return result;
}

/* ---- queues and events ------------------------------------------------------------- */

#define QUEUE_SIZE MIB
#define QUEUE_CHUNKS 4
#define QUEUE_EVENTS (QUEUE_CHUNKS + 4)

static check_result check_queue(check_env *env)
{
    static const unsigned char pattern[4] = {0xca, 0xfe, 0xf0, 0x0d};
    const size_t chunk = QUEUE_SIZE / QUEUE_CHUNKS;
    check_result result = CHECK_FAIL;
    ox_queue *queue = NULL;
    ox_device *queue_device = NULL;
    ox_buffer *a = NULL, *b = NULL;
    ox_event *events[QUEUE_EVENTS] = {NULL};
    ox_event **copied = &events[QUEUE_CHUNKS], **filled = copied + 1, **read_b = copied + 2,
             **marker = copied + 3;
    unsigned char *src = host_alloc(env, 4 * QUEUE_SIZE);
    unsigned char *got_a = src + QUEUE_SIZE, *got_b = got_a + QUEUE_SIZE;
    unsigned char *want_a = got_b + QUEUE_SIZE;
    if (!src) return CHECK_FAIL;

    fill_random(src, QUEUE_SIZE, 7);
    memset(got_a, 0, 2 * QUEUE_SIZE);
    repeat_pattern(want_a, QUEUE_SIZE, pattern, sizeof pattern);
    CHECK_OK(ox_buffer_alloc(env->device, QUEUE_SIZE, &a), out_free_queue);
    CHECK_OK(ox_buffer_alloc(env->device, QUEUE_SIZE, &b), out_free_queue);
    CHECK_OK(ox_queue_create(env->device, &queue), out_free_queue);
    CHECK_OK(ox_queue_device(queue, &queue_device), out_free_queue);
    if (queue_device != env->device) {
        fail(env, "ox_queue_device returned another device");
        goto out_free_queue;
    }

    /* In order: the copy sees every write, the fill comes after the copy. */
    for (size_t c = 0; c < QUEUE_CHUNKS; c++)
        CHECK_OK(ox_queue_write(queue, a, c * chunk, src + c * chunk, chunk, &events[c]),
                 out_free_queue);
    CHECK_OK(ox_queue_copy(queue, b, 0, a, 0, QUEUE_SIZE, copied), out_free_queue);
    CHECK_OK(ox_queue_fill(queue, a, 0, QUEUE_SIZE, pattern, sizeof pattern, filled),
             out_free_queue);
    CHECK_OK(ox_queue_read(queue, b, 0, got_b, QUEUE_SIZE, read_b), out_free_queue);
    CHECK_OK(ox_queue_read(queue, a, 0, got_a, QUEUE_SIZE, NULL), out_free_queue);
    CHECK_OK(ox_queue_marker(queue, marker), out_free_queue);

    CHECK_OK(ox_event_wait(*read_b), out_free_queue);
    if (differs(env, "queued writes, copy, read", got_b, src, QUEUE_SIZE)) goto out_free_queue;
    CHECK_OK(ox_event_wait(*marker), out_free_queue);
    for (int e = 0; e < QUEUE_EVENTS; e++) {
        int complete = 0;
        CHECK_OK(ox_event_query(events[e], &complete), out_free_queue);
        if (!complete) {
            fail(env, "event %d of %d is not complete after the marker", e + 1, QUEUE_EVENTS);
            goto out_free_queue;
        }
    }
    if (differs(env, "queued fill, read", got_a, want_a, QUEUE_SIZE)) goto out_free_queue;
    CHECK_OK(ox_queue_finish(queue), out_free_queue);

    snprintf(env->detail, sizeof env->detail,
             "%d writes, copy, fill, 2 reads and a marker in order; %d events complete",
             QUEUE_CHUNKS, QUEUE_EVENTS);
    result = CHECK_PASS;
out_free_queue:
    ox_queue_free(queue); /* finishes the work that uses the host memory */
    for (int e = 0; e < QUEUE_EVENTS; e++) ox_event_free(events[e]);
    ox_buffer_free(b);
    ox_buffer_free(a);
    free(src);
    return result;
}

/* ---- copies between the device and the CPU ---------------------------------------- */

#define CROSS_SIZE MIB

static check_result check_cross_device(check_env *env)
{
    check_result result = CHECK_FAIL;
    ox_buffer *on_device = NULL, *on_cpu = NULL;
    ox_queue *device_queue = NULL, *cpu_queue = NULL;
    ox_event *written = NULL, *marker = NULL;
    int complete = 0;

    if (!env->cpu) return fail(env, "no CPU device to copy to and from");
    if (env->device == env->cpu) {
        snprintf(env->detail, sizeof env->detail, "the device is the CPU");
        return CHECK_SKIP;
    }
    unsigned char *want = host_alloc(env, 3 * CROSS_SIZE);
    unsigned char *other = want + CROSS_SIZE, *got = other + CROSS_SIZE;
    if (!want) return CHECK_FAIL;

    fill_random(want, CROSS_SIZE, 5);
    fill_random(other, CROSS_SIZE, 6);
    CHECK_OK(ox_buffer_alloc(env->device, CROSS_SIZE, &on_device), out_free_all);
    CHECK_OK(ox_buffer_alloc(env->cpu, CROSS_SIZE, &on_cpu), out_free_all);

    CHECK_OK(ox_buffer_write(on_device, 0, want, CROSS_SIZE), out_free_all);
    CHECK_OK(ox_buffer_copy(on_cpu, 0, on_device, 0, CROSS_SIZE), out_free_all);
    CHECK_OK(ox_buffer_read(on_cpu, 0, got, CROSS_SIZE), out_free_all);
    if (differs(env, "device to CPU", got, want, CROSS_SIZE)) goto out_free_all;

    CHECK_OK(ox_buffer_write(on_cpu, 0, other, CROSS_SIZE), out_free_all);
    CHECK_OK(ox_buffer_copy(on_device, CROSS_SIZE / 2, on_cpu, 0, CROSS_SIZE / 2), out_free_all);
    memcpy(want + CROSS_SIZE / 2, other, CROSS_SIZE / 2);
    CHECK_OK(ox_buffer_read(on_device, 0, got, CROSS_SIZE), out_free_all);
    if (differs(env, "CPU to device", got, want, CROSS_SIZE)) goto out_free_all;

    /* A CPU queue that waits for an event of the device's queue. */
    CHECK_OK(ox_queue_create(env->device, &device_queue), out_free_all);
    CHECK_OK(ox_queue_create(env->cpu, &cpu_queue), out_free_all);
    CHECK_OK(ox_queue_write(device_queue, on_device, 0, other, CROSS_SIZE, &written), out_free_all);
    CHECK_OK(ox_queue_wait_event(cpu_queue, written), out_free_all);
    CHECK_OK(ox_queue_marker(cpu_queue, &marker), out_free_all);
    CHECK_OK(ox_event_wait(marker), out_free_all);
    CHECK_OK(ox_event_query(written, &complete), out_free_all);
    if (!complete) {
        fail(env, "a CPU queue passed a device event that is not complete");
        goto out_free_all;
    }
    CHECK_OK(ox_buffer_read(on_device, 0, got, CROSS_SIZE), out_free_all);
    if (differs(env, "queued write awaited from the CPU queue", got, other, CROSS_SIZE))
        goto out_free_all;

    snprintf(env->detail, sizeof env->detail,
             "1 MiB each way with the CPU; a CPU queue waited for a device event");
    result = CHECK_PASS;
out_free_all:
    ox_queue_free(cpu_queue);
    ox_queue_free(device_queue);
    ox_event_free(marker);
    ox_event_free(written);
    ox_buffer_free(on_cpu);
    ox_buffer_free(on_device);
    free(want);
    return result;
}

/* ---- bad input is refused, and leaves the data alone ----------------------------- */

#define BAD_SIZE 4096

/* 0 if `status` is the expected refusal (any error when `expected` is
 * OX_OK); else 1 with the detail set. */
static int not_refused(check_env *env, const char *call, ox_status status, ox_status expected)
{
    if (status == OX_OK) {
        fail(env, "%s was accepted", call);
        return 1;
    }
    if (expected != OX_OK && status != expected) {
        fail(env, "%s returned %s, expected %s: %s", call, ox_status_name(status),
             ox_status_name(expected), ox_errmsg(env->ctx));
        return 1;
    }
    return 0;
}

static check_result check_bad_input(check_env *env)
{
    static const unsigned char pattern[16] = {0};
    check_result result = CHECK_FAIL;
    ox_buffer *buffer = NULL, *view = NULL, *empty = NULL;
    unsigned char want[BAD_SIZE], got[BAD_SIZE];
    ox_status status;

    fill_random(want, BAD_SIZE, 8);
    CHECK_OK(ox_buffer_alloc(env->device, BAD_SIZE, &buffer), out_free_buffers);
    CHECK_OK(ox_buffer_write(buffer, 0, want, BAD_SIZE), out_free_buffers);

    /* Out of range: the code, and a message that names the sizes. */
    status = ox_buffer_read(buffer, 4000, got, 200);
    if (not_refused(env, "read of 200 bytes at 4000 of 4096", status, OX_ERR_OUT_OF_RANGE))
        goto out_free_buffers;
    const char *message = ox_errmsg(env->ctx);
    if (ox_errcode(env->ctx) != OX_ERR_OUT_OF_RANGE || !strstr(message, "4000") ||
        !strstr(message, "200") || !strstr(message, "4096")) {
        fail(env, "out-of-range read: ox_errcode %s, message does not name 4000, 200 and 4096: "
             "\"%s\"", ox_status_name(ox_errcode(env->ctx)), message);
        goto out_free_buffers;
    }
    status = ox_buffer_read(buffer, SIZE_MAX - 1, got, 2);
    if (not_refused(env, "read where offset + size overflows", status, OX_ERR_OUT_OF_RANGE))
        goto out_free_buffers;
    status = ox_buffer_write(buffer, BAD_SIZE - 1, want, 2);
    if (not_refused(env, "write of 2 bytes at 4095 of 4096", status, OX_ERR_OUT_OF_RANGE))
        goto out_free_buffers;

    /* Other misuse: any error will do. */
    status = ox_buffer_write(buffer, 0, NULL, 16);
    if (not_refused(env, "write from NULL", status, OX_OK)) goto out_free_buffers;
    status = ox_buffer_sub(buffer, 4000, 200, &view);
    if (not_refused(env, "view of 200 bytes at 4000 of 4096", status, OX_OK)) goto out_free_buffers;
    status = ox_buffer_fill(buffer, 0, 12, pattern, 3);
    if (not_refused(env, "fill with a 3-byte pattern", status, OX_OK)) goto out_free_buffers;
    status = ox_buffer_fill(buffer, 2, 8, pattern, 4);
    if (not_refused(env, "fill at an offset not a multiple of the pattern", status, OX_OK))
        goto out_free_buffers;
    status = ox_buffer_copy(buffer, 0, buffer, 100, 1000);
    if (not_refused(env, "copy between overlapping ranges", status, OX_OK)) goto out_free_buffers;
    status = ox_buffer_alloc(env->device, 0, &empty);
    if (not_refused(env, "allocation of 0 bytes", status, OX_OK)) goto out_free_buffers;

    /* Zero-byte transfers are valid no-ops, even at the very end. */
    CHECK_OK(ox_buffer_read(buffer, BAD_SIZE, got, 0), out_free_buffers);
    CHECK_OK(ox_buffer_read(buffer, 0, got, BAD_SIZE), out_free_buffers);
    if (differs(env, "buffer after refused calls", got, want, BAD_SIZE)) goto out_free_buffers;

    snprintf(env->detail, sizeof env->detail,
             "9 bad calls refused, out-of-range message names the sizes; data intact");
    result = CHECK_PASS;
out_free_buffers:
    ox_buffer_free(empty);
    ox_buffer_free(view);
    ox_buffer_free(buffer);
    return result;
}

const check_def check_runtime_table[] = {
    {"roundtrip", check_roundtrip},
    {"sub-buffer", check_sub_buffer},
    {"copy-fill", check_copy_fill},
    {"queue", check_queue},
    {"cross-device", check_cross_device},
    {"bad-input", check_bad_input},
    {NULL, NULL},
};
