/* Contexts: creation with and without options, option checks, backends,
 * the allocator hook (with fault injection) and logging. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "openxpu/openxpu.h"
#include "openxpu/ops.h"
#include "ox_test.h"
#include "test_helpers.h"

/* Provoke a failure the core records (and logs at debug level): a buffer
 * of zero bytes. */
static void provoke_error(ox_context *ctx)
{
    ox_buffer *buffer = NULL;
    ASSERT(ox_buffer_alloc(test_cpu_device(ctx), 0, &buffer) != OX_OK);
    ASSERT(buffer == NULL);
}

OX_TEST(create_with_null_options)
{
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    ASSERT(ctx != NULL);
    int backends = 0, devices = 0;
    ASSERT_OK(ctx, ox_backend_count(ctx, &backends));
    ASSERT(backends >= 1);
    ASSERT_OK(ctx, ox_device_count(ctx, &devices));
    ASSERT(devices >= 1);
    ox_backend_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_OK(ctx, ox_backend_get_info(ctx, 0, &info));
    ASSERT_STR_EQ(info.name, "cpu");
    ASSERT_STR_EQ(ox_errmsg(ctx), "");
    ASSERT_EQ(ox_errcode(ctx), OX_OK);
    ox_context_free(ctx);
}

OX_TEST(create_with_options)
{
    ox_context_options options = test_options(0);
    options.log_level = OX_LOG_ERROR;
    options.num_threads = 2;
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(ctx != NULL);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 64, &buffer));
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(create_null_out_is_an_error)
{
    ox_status status = ox_context_create(NULL, NULL);
    ASSERT(status == OX_ERR_INVALID || status == OX_ERR_MISUSE);
    ASSERT(ox_errmsg(NULL)[0] != '\0');
}

OX_TEST(options_struct_size_zero_is_an_error)
{
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
    options.struct_size = 0;
    ox_context *ctx = (ox_context *)&options; /* must be overwritten with NULL */
    ox_status status = ox_context_create(&options, &ctx);
    ASSERT(status != OX_OK);
    ASSERT(ctx == NULL);
    ASSERT_EQ(ox_errcode(NULL), status);
    ASSERT_CONTAINS(ox_errmsg(NULL), "struct_size");
}

OX_TEST(options_struct_size_absurd_is_an_error)
{
    static const size_t sizes[] = {1, 3, (size_t)1 << 30, SIZE_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
        options.struct_size = sizes[i];
        ox_context *ctx = (ox_context *)&options;
        ox_status status = ox_context_create(&options, &ctx);
        ASSERT_MSG(status != OX_OK, "struct_size %zu accepted", sizes[i]);
        ASSERT(ctx == NULL);
        ASSERT_CONTAINS(ox_errmsg(NULL), "struct_size");
    }
}

OX_TEST(no_plugins_gives_only_the_cpu_backend)
{
    ox_context *ctx = test_cpu_context();
    int backends = 0, devices = 0;
    ASSERT_OK(ctx, ox_backend_count(ctx, &backends));
    ASSERT_EQ(backends, 1);
    ASSERT_OK(ctx, ox_device_count(ctx, &devices));
    ASSERT_EQ(devices, 1);

    ox_backend_info info;
    memset(&info, 0x5a, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_OK(ctx, ox_backend_get_info(ctx, 0, &info));
    ASSERT_STR_EQ(info.name, "cpu");
    ASSERT_STR_EQ(info.path, "(built in)");
    ASSERT_EQ(info.abi_version, OX_BACKEND_ABI_VERSION);
    ASSERT_EQ(info.device_count, 1);
    ASSERT(memchr(info.note, '\0', sizeof info.note) != NULL);
    ox_context_free(ctx);
}

OX_TEST(backend_info_checks_its_arguments)
{
    ox_context *ctx = test_cpu_context();
    ox_backend_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ASSERT(ox_backend_get_info(ctx, 1, &info) != OX_OK);
    ASSERT(ox_errmsg(ctx)[0] != '\0');
    ASSERT(ox_backend_get_info(ctx, -1, &info) != OX_OK);
    ASSERT(ox_backend_get_info(ctx, 0, NULL) != OX_OK);
    ASSERT(ox_backend_count(ctx, NULL) != OX_OK);

    /* A struct_size of 0 means the caller's struct holds nothing: refused,
     * and nothing is written. */
    unsigned char poison[sizeof(ox_backend_info)];
    memset(&info, 0xab, sizeof info);
    info.struct_size = 0;
    memcpy(poison, &info, sizeof info);
    ASSERT(ox_backend_get_info(ctx, 0, &info) != OX_OK);
    ASSERT(memcmp(poison, &info, sizeof info) == 0);
    ox_context_free(ctx);
}

OX_TEST(free_null_context)
{
    ox_context_free(NULL);
}

OX_TEST(two_contexts_are_independent)
{
    ox_context *a = test_cpu_context();
    ox_context *b = test_cpu_context();
    ASSERT(a != b);
    ox_device *device_a = test_cpu_device(a);
    ox_device *device_b = test_cpu_device(b);
    ASSERT(device_a != device_b);
    ASSERT(ox_device_context(device_a) == a);
    ASSERT(ox_device_context(device_b) == b);
    provoke_error(a);
    ASSERT(ox_errmsg(a)[0] != '\0');
    ASSERT_STR_EQ(ox_errmsg(b), "");
    ox_context_free(a);
    ox_buffer *buffer = NULL;
    ASSERT_OK(b, ox_buffer_alloc(device_b, 16, &buffer));
    ox_buffer_free(buffer);
    ox_context_free(b);
}

/* ---- allocator hook --------------------------------------------------------- */

OX_TEST(allocator_hook_is_used_and_balanced)
{
    test_alloc counter;
    test_alloc_init(&counter, -1);
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
    test_alloc_attach(&counter, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(atomic_load(&counter.attempts) > 0);
    ASSERT(atomic_load(&counter.live_blocks) > 0);

    long before = atomic_load(&counter.attempts);
    ox_buffer *buffer = NULL, *view = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 4096, &buffer));
    ASSERT_OK(ctx, ox_buffer_sub(buffer, 64, 64, &view));
    ASSERT(atomic_load(&counter.attempts) > before);
    ox_buffer_free(view);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
    ASSERT_ALLOC_BALANCED(&counter);
}

OX_TEST(allocator_fault_injection_in_create)
{
    long n = 0;
    for (;; n++) {
        ASSERT_MSG(n < 100000, "context creation never succeeded");
        test_alloc counter;
        test_alloc_init(&counter, n);
        ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
        test_alloc_attach(&counter, &options);
        ox_context *ctx = (ox_context *)&counter;
        ox_status status = ox_context_create(&options, &ctx);
        if (status == OX_OK) {
            ASSERT(ctx != NULL);
            ASSERT_EQ(atomic_load(&counter.failures), 0);
            ox_context_free(ctx);
            ASSERT_ALLOC_BALANCED(&counter);
            break;
        }
        ASSERT_MSG(status == OX_ERR_OUT_OF_MEMORY, "fail_from %ld: %s (%s)", n,
                   ox_status_name(status), ox_errmsg(NULL));
        ASSERT_MSG(ctx == NULL, "fail_from %ld: *out not NULL after failure", n);
        ASSERT(atomic_load(&counter.failures) > 0);
        ASSERT(ox_errmsg(NULL)[0] != '\0');
        ASSERT_MSG(atomic_load(&counter.live_blocks) == 0,
                   "fail_from %ld: %ld block(s) leaked after failed creation", n,
                   atomic_load(&counter.live_blocks));
        ASSERT_ALLOC_BALANCED(&counter);
    }
    ASSERT(n > 0); /* creation allocates: the hook must have been asked */
}

OX_TEST(allocator_fault_injection_after_create)
{
    for (long extra = 0;; extra++) {
        ASSERT_MSG(extra < 100000, "calls never succeeded");
        test_alloc counter;
        test_alloc_init(&counter, -1);
        ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
        test_alloc_attach(&counter, &options);
        ox_context *ctx = NULL;
        ASSERT_OK(NULL, ox_context_create(&options, &ctx));
        atomic_store(&counter.fail_from, atomic_load(&counter.attempts) + extra);
        ox_status status = test_exercise_device(ctx, 0);
        long failures = atomic_load(&counter.failures);
        if (status != OX_OK) {
            ASSERT_MSG(status == OX_ERR_OUT_OF_MEMORY || status == OX_ERR_DEVICE_MEMORY,
                       "extra %ld: %s (%s)", extra, ox_status_name(status), ox_errmsg(ctx));
            ASSERT(failures > 0);
            ASSERT(ox_errmsg(ctx)[0] != '\0');
        }
        ox_context_free(ctx);
        ASSERT_ALLOC_BALANCED(&counter);
        if (status == OX_OK && failures == 0) break;
    }
}

/* ---- logging ---------------------------------------------------------------- */

static ox_context *logged_context(test_log *log, ox_log_level level)
{
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
    options.log_level = level;
    test_log_attach(log, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    return ctx;
}

OX_TEST(log_callback_receives_messages)
{
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    ox_context *ctx = logged_context(&log, OX_LOG_DEBUG);
    provoke_error(ctx);
    /* The failure is logged at debug level with its message. */
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, ox_errmsg(ctx), NULL);
    ASSERT(log.count > 0);
    ASSERT_EQ(log.trailing_newline, 0);
    ox_context_free(ctx);
}

OX_TEST(log_default_level_drops_debug)
{
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    ox_context *ctx = logged_context(&log, OX_LOG_DEFAULT);
    provoke_error(ctx);
    ox_buffer *buffer = NULL;
    ASSERT(ox_buffer_sub(NULL, 0, 1, &buffer) != OX_OK);
    ox_context_free(ctx);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_INFO, NULL, NULL);
}

OX_TEST(log_env_debug_wins_over_options)
{
    setenv("OX_LOG", "debug", 1);
    static test_log log;
    test_log_init(&log);
    ox_context *ctx = logged_context(&log, OX_LOG_ERROR);
    provoke_error(ctx);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, NULL, NULL);
    ox_context_free(ctx);
}

OX_TEST(log_env_error_drops_warnings)
{
    setenv("OX_LOG", "error", 1);
    static test_log log;
    test_log_init(&log);
    ox_context *ctx = logged_context(&log, OX_LOG_DEBUG);
    provoke_error(ctx);
    /* A freed buffer freed again: at most a warning, which OX_LOG=error drops. */
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 8, &buffer));
    ox_buffer_free(buffer);
    ox_buffer_free(buffer);
    ASSERT_OK(ctx, ox_context_set_log_level(ctx, OX_LOG_DEBUG));
    provoke_error(ctx);
    ox_context_free(ctx);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_WARN, NULL, NULL);
}

OX_TEST(log_set_level)
{
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    ox_context *ctx = logged_context(&log, OX_LOG_DEFAULT);
    provoke_error(ctx);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_INFO, NULL, NULL);

    ASSERT_OK(ctx, ox_context_set_log_level(ctx, OX_LOG_DEBUG));
    provoke_error(ctx);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, NULL, NULL);

    ASSERT_OK(ctx, ox_context_set_log_level(ctx, OX_LOG_OFF));
    int before = log.count;
    provoke_error(ctx);
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(test_cpu_device(ctx), 8, &buffer));
    ox_buffer_free(buffer);
    ox_buffer_free(buffer); /* would warn */
    ASSERT_EQ(log.count, before);
    ox_context_free(ctx);
}

OX_TEST(log_default_callback_writes_stderr)
{
    unsetenv("OX_LOG");
    char path[] = "/tmp/ox_test_stderr_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ASSERT(saved >= 0);
    ASSERT(dup2(fd, STDERR_FILENO) == STDERR_FILENO);

    ox_context *ctx = test_cpu_context();
    ox_status status = ox_context_set_log_level(ctx, OX_LOG_DEBUG);
    provoke_error(ctx);
    char message[1100];
    snprintf(message, sizeof message, "%s", ox_errmsg(ctx));
    ox_context_free(ctx);

    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ASSERT_OK(NULL, status);
    char text[16384];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    ASSERT(n > 0);
    text[n] = '\0';
    /* One line "openxpu: debug: ..." carries the failure's message. */
    int found = 0;
    for (char *line = strtok(text, "\n"); line && !found; line = strtok(NULL, "\n"))
        found = strncmp(line, "openxpu: debug: ", 16) == 0 && strstr(line, message) != NULL;
    ASSERT_MSG(found, "no line \"openxpu: debug: ...%s...\" on stderr", message);
}

/* Reproducible mode: the flag and OX_REPRODUCIBLE set it, unknown flag
 * bits are refused, and an op on the CPU then runs the portable kernel
 * (compiled as C), its values those of a double-precision softmax. */
OX_TEST(reproducible_mode)
{
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS | (1u << 30));
    ox_context *ctx = NULL;
    ASSERT(ox_context_create(&options, &ctx) == OX_ERR_INVALID);
    ASSERT(strstr(ox_errmsg(NULL), "unknown bits 0x40000000") != NULL);
    ASSERT(ox_context_is_reproducible(NULL) == 0);

    options = test_options(OX_CONTEXT_NO_PLUGINS);
    unsetenv("OX_REPRODUCIBLE");
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(ox_context_is_reproducible(ctx) == 0);
    ox_context_free(ctx);
    setenv("OX_REPRODUCIBLE", "1", 1);
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(ox_context_is_reproducible(ctx) == 1);
    ox_context_free(ctx);
    unsetenv("OX_REPRODUCIBLE");

    options = test_options(OX_CONTEXT_NO_PLUGINS | OX_CONTEXT_REPRODUCIBLE);
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(ox_context_is_reproducible(ctx) == 1);
    ox_device *cpu = test_cpu_device(ctx);
    enum { N = 300, ROWS = 3 };
    float x[N * ROWS], y[N * ROWS];
    for (int i = 0; i < N * ROWS; i++) x[i] = (float)((i * 37) % 101) / 10.0f - 5.0f;
    ox_tensor a, d;
    ox_queue *q = NULL;
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F32, N, ROWS, 1, 1, &a));
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F32, N, ROWS, 1, 1, &d));
    ASSERT_OK(ctx, ox_queue_create(cpu, &q));
    ASSERT_OK(ctx, ox_buffer_write(a.buffer, 0, x, sizeof x));
    ox_status s = ox_softmax(q, &d, &a, NULL, 1.0f);
    if (s == OX_ERR_UNSUPPORTED && strstr(ox_errmsg(ctx), "no C compiler")) {
        printf("  no C compiler here: the reproducible CPU path was not run\n");
    } else {
        ASSERT_OK(ctx, s);
        ASSERT_OK(ctx, ox_queue_finish(q));
        ASSERT_OK(ctx, ox_buffer_read(d.buffer, 0, y, sizeof y));
        for (int r = 0; r < ROWS; r++) {
            double mx = -1e300, sum = 0;
            for (int i = 0; i < N; i++) mx = x[r * N + i] > mx ? x[r * N + i] : mx;
            for (int i = 0; i < N; i++) sum += exp((double)x[r * N + i] - mx);
            for (int i = 0; i < N; i++) {
                double want = exp((double)x[r * N + i] - mx) / sum;
                ASSERT_MSG(fabs(y[r * N + i] - want) <= 1e-6 * want + 1e-12,
                           "row %d, %d: %.9g, want %.9g", r, i, y[r * N + i], want);
            }
        }
        /* the CPU's native code was not what ran: the kernel was launched */
        ox_counters counters = {.struct_size = sizeof counters};
        ASSERT_OK(ctx, ox_context_counters(ctx, &counters));
        ASSERT(counters.launches >= 1);
    }
    ox_queue_free(q);
    ox_buffer_free(a.buffer);
    ox_buffer_free(d.buffer);
    ox_context_free(ctx);
}

OX_TEST_MAIN(create_with_null_options, create_with_options, create_null_out_is_an_error,
             options_struct_size_zero_is_an_error, options_struct_size_absurd_is_an_error,
             no_plugins_gives_only_the_cpu_backend, backend_info_checks_its_arguments,
             free_null_context, two_contexts_are_independent, allocator_hook_is_used_and_balanced,
             allocator_fault_injection_in_create, allocator_fault_injection_after_create,
             log_callback_receives_messages, log_default_level_drops_debug,
             log_env_debug_wins_over_options, log_env_error_drops_warnings, log_set_level,
             log_default_callback_writes_stderr, reproducible_mode)
