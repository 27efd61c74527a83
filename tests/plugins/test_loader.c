/* The backend plugin loader, with the fixture plugins of tests/plugins/: a
 * working fake GPU backend, its duplicate, and broken plugins that must be
 * skipped with a warning while context creation still succeeds. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"

#ifndef OX_TEST_PLUGIN_DIR_BUILT
#define OX_TEST_PLUGIN_DIR_BUILT ""
#endif

#define PATH_CAP 4096

/* Join fixture folders (or files) below the plugin directory with ':';
 * the list ends with NULL. An entry starting with '/' is used as is. */
static const char *fixtures(char *buf, const char *first, ...)
{
    const char *base = getenv("OX_TEST_PLUGIN_DIR");
    if (!base || !base[0]) base = OX_TEST_PLUGIN_DIR_BUILT;
    if (!base[0]) OX_SKIP("OX_TEST_PLUGIN_DIR is not set");
    size_t n = 0;
    buf[0] = '\0';
    va_list ap;
    va_start(ap, first);
    for (const char *sub = first; sub; sub = va_arg(ap, const char *)) {
        int w = sub[0] == '/' ? snprintf(buf + n, PATH_CAP - n, "%s%s", n ? ":" : "", sub)
                              : snprintf(buf + n, PATH_CAP - n, "%s%s/%s", n ? ":" : "", base, sub);
        ASSERT(w > 0 && (size_t)w < PATH_CAP - n);
        n += (size_t)w;
    }
    va_end(ap);
    return buf;
}

/* A context loading plugins only from `path` (and OX_BACKEND_PATH). */
static ox_context *context_with(const char *path, unsigned flags, test_log *log,
                                ox_log_level level)
{
    ox_context_options options = test_options(flags | OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    options.backend_path = path;
    options.log_level = level;
    if (log) test_log_attach(log, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ASSERT(ctx != NULL);
    return ctx;
}

/* A context with the cpu and fake backends. */
static ox_context *fake_context(void)
{
    char path[PATH_CAP];
    unsetenv("OX_BACKEND_PATH");
    unsetenv("OX_DEVICE");
    unsetenv("OX_FAKE_FAIL_ALLOC");
    return context_with(fixtures(path, "fake", NULL), 0, NULL, OX_LOG_DEFAULT);
}

static int backend_count(ox_context *ctx)
{
    int n = -1;
    ASSERT_OK(ctx, ox_backend_count(ctx, &n));
    return n;
}

static ox_backend_info backend_info(ox_context *ctx, int index)
{
    ox_backend_info info;
    memset(&info, 0x5a, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_OK(ctx, ox_backend_get_info(ctx, index, &info));
    return info;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The one device a selection names. */
static ox_device *select_one(ox_context *ctx, const char *selection)
{
    ox_device *devices[4] = {NULL};
    int count = 0;
    ox_status status = ox_device_select(ctx, selection, devices, 4, &count);
    ASSERT_MSG(status == OX_OK, "\"%s\": %s (%s)", selection, ox_status_name(status),
               ox_errmsg(ctx));
    ASSERT_MSG(count == 1, "\"%s\": %d devices", selection, count);
    return devices[0];
}

OX_TEST(fake_backend_is_loaded)
{
    ox_context *ctx = fake_context();
    ASSERT_EQ(backend_count(ctx), 2);
    int devices = 0;
    ASSERT_OK(ctx, ox_device_count(ctx, &devices));
    ASSERT_EQ(devices, 3);

    ox_backend_info cpu = backend_info(ctx, 0);
    ASSERT_STR_EQ(cpu.name, "cpu");
    ox_backend_info fake = backend_info(ctx, 1);
    ASSERT_STR_EQ(fake.name, "fake");
    ASSERT_MSG(ends_with(fake.path, "/fake/libox-fake.so"), "path \"%s\"", fake.path);
    ASSERT_EQ(fake.abi_version, OX_BACKEND_ABI_VERSION);
    ASSERT_EQ(fake.device_count, 2);
    ASSERT_STR_EQ(fake.note, ""); /* the optional note slot is NULL */

    /* Devices in backend load order, the CPU first. */
    static const char *const ids[] = {"cpu:0", "fake:0", "fake:1"};
    for (int i = 0; i < 3; i++) {
        ox_device *device = NULL;
        ASSERT_OK(ctx, ox_device_get(ctx, i, &device));
        ox_device_info info = test_device_info(device);
        ASSERT_STR_EQ(info.id, ids[i]);
        if (i == 0) continue;
        char name[32];
        snprintf(name, sizeof name, "Fake GPU %d", i - 1);
        ASSERT_STR_EQ(info.backend, "fake");
        ASSERT_EQ(info.index, i - 1);
        ASSERT_EQ(info.type, OX_DEVICE_GPU);
        ASSERT_STR_EQ(info.name, name);
        ASSERT_STR_EQ(info.vendor, "OpenXPU tests");
        ASSERT_STR_EQ(info.driver_version, "fake 1.0");
        ASSERT(info.memory_bytes == ((uint64_t)64 << 20));
        ASSERT_EQ(info.compute_units, 4);
    }
    ox_context_free(ctx);
}

OX_TEST(select_fake_devices)
{
    ox_context *ctx = fake_context();
    ox_device *cpu = NULL, *fake0 = NULL, *fake1 = NULL;
    ASSERT_OK(ctx, ox_device_get(ctx, 0, &cpu));
    ASSERT_OK(ctx, ox_device_get(ctx, 1, &fake0));
    ASSERT_OK(ctx, ox_device_get(ctx, 2, &fake1));

    ASSERT(select_one(ctx, "fake:1") == fake1);
    ASSERT_STR_EQ(test_device_info(select_one(ctx, "fake:1")).name, "Fake GPU 1");
    ASSERT(select_one(ctx, "FAKE:0") == fake0);
    ASSERT(select_one(ctx, "fake") == fake0);
    ASSERT(select_one(ctx, "default") == fake0);
    ASSERT(select_one(ctx, "cpu") == cpu);

    ox_device *devices[4] = {NULL};
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "fake:*", devices, 4, &count));
    ASSERT_EQ(count, 2);
    ASSERT(devices[0] == fake0 && devices[1] == fake1);
    ASSERT_OK(ctx, ox_device_select(ctx, "all", devices, 4, &count));
    ASSERT_EQ(count, 3);
    ASSERT(devices[0] == cpu && devices[1] == fake0 && devices[2] == fake1);
    ASSERT_OK(ctx, ox_device_select(ctx, " fake:1 , cpu ", devices, 4, &count));
    ASSERT_EQ(count, 2);
    ASSERT(devices[0] == fake1 && devices[1] == cpu);

    /* Capacity smaller than the selection: the count is still the total. */
    ox_device *sentinel = (ox_device *)&count;
    devices[1] = sentinel;
    ASSERT_OK(ctx, ox_device_select(ctx, "all", devices, 1, &count));
    ASSERT_EQ(count, 3);
    ASSERT(devices[0] == cpu);
    ASSERT(devices[1] == sentinel);
    ASSERT_OK(ctx, ox_device_select(ctx, "fake:*", NULL, 0, &count));
    ASSERT_EQ(count, 2);

    ASSERT(ox_device_select(ctx, "fake:2", devices, 4, &count) != OX_OK);
    ASSERT_CONTAINS(ox_errmsg(ctx), "fake:0");
    ASSERT_CONTAINS(ox_errmsg(ctx), "fake:1");
    ASSERT(ox_device_select(ctx, "fake:1,fake:*", devices, 4, &count) != OX_OK);
    ASSERT(ox_device_select(ctx, "all,fake", devices, 4, &count) != OX_OK);

    ox_device *device = NULL;
    ASSERT_OK(ctx, ox_device_default(ctx, &device));
    ASSERT(device == fake0);
    ox_context_free(ctx);
}

OX_TEST(default_device_from_env_with_fake)
{
    ox_context *ctx = fake_context();
    ox_device *fake1 = NULL, *cpu = NULL, *device = NULL;
    ASSERT_OK(ctx, ox_device_get(ctx, 0, &cpu));
    ASSERT_OK(ctx, ox_device_get(ctx, 2, &fake1));
    setenv("OX_DEVICE", "fake:1", 1);
    ASSERT_OK(ctx, ox_device_default(ctx, &device));
    ASSERT(device == fake1);
    ASSERT(select_one(ctx, "default") == fake1);
    setenv("OX_DEVICE", "cpu", 1);
    ASSERT_OK(ctx, ox_device_default(ctx, &device));
    ASSERT(device == cpu);
    static const char *const several[] = {"fake:*", "all", "cpu,fake:0"};
    for (size_t i = 0; i < sizeof several / sizeof several[0]; i++) {
        setenv("OX_DEVICE", several[i], 1);
        ASSERT_MSG(ox_device_default(ctx, &device) != OX_OK, "OX_DEVICE=\"%s\" accepted",
                   several[i]);
    }
    ox_context_free(ctx);
}

OX_TEST(fake_buffers)
{
    ox_context *ctx = fake_context();
    ox_device *fake1 = select_one(ctx, "fake:1");
    ox_buffer *buffer = NULL, *view = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(fake1, 4096, &buffer));
    ox_device *owner = NULL;
    ASSERT_OK(ctx, ox_buffer_device(buffer, &owner));
    ASSERT(owner == fake1);
    unsigned char data[4096], back[4096], model[4096];
    test_fill_random(data, sizeof data, 1);
    ASSERT_OK(ctx, ox_buffer_write(buffer, 0, data, sizeof data));
    memcpy(model, data, sizeof data);
    ASSERT_OK(ctx, ox_buffer_read(buffer, 0, back, sizeof back));
    ASSERT(memcmp(back, model, sizeof model) == 0);

    /* A view, a fill through the core's default (the fake has no
     * queue_fill), and a copy within the buffer. */
    ASSERT_OK(ctx, ox_buffer_sub(buffer, 1024, 1024, &view));
    unsigned char pattern[16];
    test_fill_random(pattern, sizeof pattern, 2);
    ASSERT_OK(ctx, ox_buffer_fill(view, 16, 512, pattern, 16));
    for (size_t i = 0; i < 512; i++) model[1024 + 16 + i] = pattern[i % 16];
    ASSERT_OK(ctx, ox_buffer_fill(buffer, 3000, 7, pattern, 1));
    memset(model + 3000, pattern[0], 7);
    ASSERT_OK(ctx, ox_buffer_copy(buffer, 0, view, 0, 1024));
    memmove(model, model + 1024, 1024);
    ASSERT_OK(ctx, ox_buffer_read(buffer, 0, back, sizeof back));
    ASSERT(memcmp(back, model, sizeof model) == 0);

    ASSERT_EQ(ox_buffer_write(view, 1000, data, 25), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "fake:1");
    ox_buffer *too_big = NULL;
    ASSERT(ox_buffer_alloc(fake1, ((size_t)64 << 20) + 1, &too_big) != OX_OK);
    ASSERT(too_big == NULL);
    ox_buffer_free(view);
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(cross_device_copy)
{
    ox_context *ctx = fake_context();
    ox_buffer *cpu = NULL, *fake0 = NULL, *fake1 = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(select_one(ctx, "cpu"), 1000, &cpu));
    ASSERT_OK(ctx, ox_buffer_alloc(select_one(ctx, "fake:0"), 1000, &fake0));
    ASSERT_OK(ctx, ox_buffer_alloc(select_one(ctx, "fake:1"), 1000, &fake1));
    unsigned char a[1000], b[1000], c[1000], back[1000];
    test_fill_random(a, sizeof a, 3);
    test_fill_random(b, sizeof b, 4);
    test_fill_random(c, sizeof c, 5);
    ASSERT_OK(ctx, ox_buffer_write(cpu, 0, a, 1000));
    ASSERT_OK(ctx, ox_buffer_write(fake0, 0, b, 1000));
    ASSERT_OK(ctx, ox_buffer_write(fake1, 0, c, 1000));

    ASSERT_OK(ctx, ox_buffer_copy(fake0, 100, cpu, 200, 300)); /* cpu -> fake */
    memcpy(b + 100, a + 200, 300);
    ASSERT_OK(ctx, ox_buffer_copy(cpu, 0, fake1, 500, 500)); /* fake -> cpu */
    memcpy(a, c + 500, 500);
    ASSERT_OK(ctx, ox_buffer_copy(fake1, 0, fake0, 0, 1000)); /* fake -> other fake */
    memcpy(c, b, 1000);

    ASSERT_OK(ctx, ox_buffer_read(cpu, 0, back, 1000));
    ASSERT(memcmp(back, a, 1000) == 0);
    ASSERT_OK(ctx, ox_buffer_read(fake0, 0, back, 1000));
    ASSERT(memcmp(back, b, 1000) == 0);
    ASSERT_OK(ctx, ox_buffer_read(fake1, 0, back, 1000));
    ASSERT(memcmp(back, c, 1000) == 0);

    ASSERT_EQ(ox_buffer_copy(fake0, 900, cpu, 0, 101), OX_ERR_OUT_OF_RANGE);
    ASSERT_OK(ctx, ox_buffer_read(fake0, 0, back, 1000));
    ASSERT(memcmp(back, b, 1000) == 0);
    ox_buffer_free(cpu);
    ox_buffer_free(fake0);
    ox_buffer_free(fake1);
    ox_context_free(ctx);
}

OX_TEST(fake_queues_and_cross_backend_events)
{
    ox_context *ctx = fake_context();
    ox_device *cpu_device = select_one(ctx, "cpu"), *fake_device = select_one(ctx, "fake:0");
    ox_queue *cpu_queue = NULL, *fake_queue = NULL;
    ASSERT_OK(ctx, ox_queue_create(cpu_device, &cpu_queue));
    ASSERT_OK(ctx, ox_queue_create(fake_device, &fake_queue));
    ox_buffer *cpu = NULL, *fake = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(cpu_device, 512, &cpu));
    ASSERT_OK(ctx, ox_buffer_alloc(fake_device, 512, &fake));
    unsigned char data[512], back[512];
    test_fill_random(data, sizeof data, 6);

    ox_event *written = NULL, *read = NULL;
    ASSERT_OK(ctx, ox_queue_write(fake_queue, fake, 0, data, 512, &written));
    ASSERT_OK(ctx, ox_queue_wait_event(cpu_queue, written)); /* fake event, cpu queue */
    ASSERT_OK(ctx, ox_queue_write(cpu_queue, cpu, 0, data, 512, NULL));
    ox_event *marker = NULL;
    ASSERT_OK(ctx, ox_queue_marker(cpu_queue, &marker));
    ASSERT_OK(ctx, ox_queue_wait_event(fake_queue, marker)); /* cpu event, fake queue */
    ASSERT_OK(ctx, ox_queue_read(fake_queue, fake, 0, back, 512, &read));
    ASSERT_OK(ctx, ox_event_wait(read));
    int complete = 0;
    ASSERT_OK(ctx, ox_event_query(read, &complete));
    ASSERT_EQ(complete, 1);
    ASSERT(memcmp(back, data, 512) == 0);
    const uint32_t word = 0x01020304u;
    ASSERT_OK(ctx, ox_queue_fill(fake_queue, fake, 0, 512, &word, 4, NULL));
    ASSERT_OK(ctx, ox_queue_finish(fake_queue));
    ASSERT_OK(ctx, ox_buffer_read(fake, 0, back, 512));
    for (size_t i = 0; i < 512; i++) ASSERT(back[i] == ((const unsigned char *)&word)[i % 4]);
    ASSERT_OK(ctx, ox_queue_finish(cpu_queue));

    /* A queue only takes buffers of its own device. */
    ox_event *refused = NULL;
    ASSERT(ox_queue_write(cpu_queue, fake, 0, data, 16, &refused) != OX_OK);
    ASSERT(ox_queue_read(fake_queue, cpu, 0, back, 16, &refused) != OX_OK);
    ASSERT(ox_queue_copy(cpu_queue, cpu, 0, fake, 0, 16, &refused) != OX_OK);
    ASSERT(ox_queue_fill(fake_queue, cpu, 0, 4, &word, 4, &refused) != OX_OK);
    ASSERT(refused == NULL);

    ox_event_free(written);
    ox_event_free(read);
    ox_event_free(marker);
    ox_queue_free(cpu_queue);
    ox_queue_free(fake_queue);
    ox_buffer_free(cpu);
    ox_buffer_free(fake);
    ox_context_free(ctx);
}

OX_TEST(fake_alloc_failure)
{
    ox_context *ctx = fake_context();
    ox_device *fake = select_one(ctx, "fake:1");
    setenv("OX_FAKE_FAIL_ALLOC", "1", 1);
    ox_buffer *buffer = NULL;
    ASSERT_EQ(ox_buffer_alloc(fake, 4096, &buffer), OX_ERR_DEVICE_MEMORY);
    ASSERT(buffer == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "fake");
    ASSERT_EQ(ox_errcode(ctx), OX_ERR_DEVICE_MEMORY);
    /* Other devices are not affected, and the fake recovers. */
    ASSERT_OK(ctx, ox_buffer_alloc(select_one(ctx, "cpu"), 4096, &buffer));
    ox_buffer_free(buffer);
    unsetenv("OX_FAKE_FAIL_ALLOC");
    ASSERT_OK(ctx, ox_buffer_alloc(fake, 4096, &buffer));
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

/* The text after the last mention of `file` in a warning naming it, or
 * NULL: the reason, which must not be found in the path itself. */
static const char *reason_after(test_log *log, const char *file)
{
    int i = test_log_find(log, OX_LOG_WARN, OX_LOG_WARN, file, NULL);
    if (i < 0) return NULL;
    const char *rest = log->text[i];
    for (const char *hit; (hit = strstr(rest, file)) != NULL;) rest = hit + strlen(file);
    return rest;
}

/* Context creation with one broken fixture succeeds with only the CPU
 * backend and a warning naming the file and, after it, giving the reason:
 * text containing `reason` or `reason_alt` (case-insensitive). */
static void check_broken(const char *folder, const char *file, const char *reason,
                         const char *reason_alt)
{
    unsetenv("OX_BACKEND_PATH");
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    char path[PATH_CAP];
    ox_context *ctx = context_with(fixtures(path, folder, NULL), 0, &log, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 1);
    ASSERT_STR_EQ(backend_info(ctx, 0).name, "cpu");
    int devices = 0;
    ASSERT_OK(ctx, ox_device_count(ctx, &devices));
    ASSERT_EQ(devices, 1);
    ASSERT_LOGGED(&log, OX_LOG_WARN, OX_LOG_WARN, file, NULL);
    const char *why = reason_after(&log, file);
    ASSERT_MSG(test_contains_ci(why, reason) || (reason_alt && test_contains_ci(why, reason_alt)),
               "warning gives no reason \"%s\" after the file name: \"%s\"", reason, why);
    /* The context works. */
    ox_buffer *buffer = NULL;
    ASSERT_OK(ctx, ox_buffer_alloc(select_one(ctx, "cpu"), 64, &buffer));
    ox_buffer_free(buffer);
    ox_context_free(ctx);
}

OX_TEST(broken_abi_version)
{
    check_broken("badabi", "libox-badabi.so", "999", NULL);
}

OX_TEST(broken_missing_slot)
{
    check_broken("missing", "libox-missing.so", "buffer_alloc", NULL);
}

OX_TEST(broken_null_entry)
{
    check_broken("nullentry", "libox-nullentry.so", "returned", NULL);
}

OX_TEST(broken_no_entry_symbol)
{
    check_broken("noentry", "libox-noentry.so", "ox_backend_entry", NULL);
}

OX_TEST(broken_not_a_shared_object)
{
    /* dlopen's reason for a text file is "invalid ELF header". */
    check_broken("garbage", "libox-garbage.so", "ELF header", "shared object");
}

OX_TEST(every_broken_fixture_at_once)
{
    unsetenv("OX_BACKEND_PATH");
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    char path[PATH_CAP];
    fixtures(path, "badabi", "missing", "nullentry", "noentry", "garbage", "fake", NULL);
    ox_context *ctx = context_with(path, 0, &log, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 2);
    ASSERT_STR_EQ(backend_info(ctx, 1).name, "fake");
    static const char *const files[] = {"libox-badabi.so", "libox-missing.so",
                                        "libox-nullentry.so", "libox-noentry.so",
                                        "libox-garbage.so"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        ASSERT_LOGGED(&log, OX_LOG_WARN, OX_LOG_WARN, files[i], NULL);
    ASSERT_NOT_LOGGED(&log, OX_LOG_WARN, OX_LOG_OFF, "libox-fake.so", NULL);
    ox_context_free(ctx);
}

OX_TEST(duplicate_backend_name_first_wins)
{
    unsetenv("OX_BACKEND_PATH");
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    char path[PATH_CAP];
    ox_context *ctx = context_with(fixtures(path, "fake", "dup", NULL), 0, &log, OX_LOG_DEBUG);
    ASSERT_EQ(backend_count(ctx), 2);
    ox_backend_info info = backend_info(ctx, 1);
    ASSERT_STR_EQ(info.name, "fake");
    ASSERT_MSG(ends_with(info.path, "/libox-fake.so"), "path \"%s\"", info.path);
    int devices = 0;
    ASSERT_OK(ctx, ox_device_count(ctx, &devices));
    ASSERT_EQ(devices, 3);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_WARN, "libox-fake2.so", NULL);
    ox_context_free(ctx);

    ctx = context_with(fixtures(path, "dup", "fake", NULL), 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 2);
    info = backend_info(ctx, 1);
    ASSERT_MSG(ends_with(info.path, "/libox-fake2.so"), "path \"%s\"", info.path);
    ox_context_free(ctx);

    /* The same folder twice loads its plugin once. */
    ctx = context_with(fixtures(path, "fake", "fake", NULL), 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 2);
    ox_context_free(ctx);
}

OX_TEST(plugin_file_in_path)
{
    unsetenv("OX_BACKEND_PATH");
    char path[PATH_CAP];
    ox_context *ctx =
        context_with(fixtures(path, "fake/libox-fake.so", NULL), 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 2);
    ASSERT_STR_EQ(backend_info(ctx, 1).name, "fake");
    ox_context_free(ctx);
}

OX_TEST(env_backend_path)
{
    char path[PATH_CAP];
    unsetenv("OX_LOG");
    setenv("OX_BACKEND_PATH", fixtures(path, "fake", NULL), 1);
    ox_context *ctx = context_with(NULL, 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 2);
    ox_backend_info info = backend_info(ctx, 1);
    ASSERT_STR_EQ(info.name, "fake");
    ASSERT_MSG(ends_with(info.path, "/fake/libox-fake.so"), "path \"%s\"", info.path);
    ox_context_free(ctx);

    /* The option is searched before the variable; both are used. */
    static test_log log;
    test_log_init(&log);
    setenv("OX_BACKEND_PATH", fixtures(path, "fake", NULL), 1);
    char option[PATH_CAP];
    ctx = context_with(fixtures(option, "badabi", "dup", NULL), 0, &log, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 2);
    info = backend_info(ctx, 1);
    ASSERT_MSG(ends_with(info.path, "/libox-fake2.so"), "path \"%s\"", info.path);
    ASSERT_LOGGED(&log, OX_LOG_WARN, OX_LOG_WARN, "libox-badabi.so", NULL);
    ox_context_free(ctx);
}

OX_TEST(nonexistent_directory_ignored)
{
    unsetenv("OX_BACKEND_PATH");
    unsetenv("OX_LOG");
    static test_log log;
    test_log_init(&log);
    char path[PATH_CAP];
    fixtures(path, "/nonexistent-openxpu-dir", "fake", "no-such-fixture", NULL);
    char padded[PATH_CAP + 8];
    snprintf(padded, sizeof padded, ":%s::", path);
    ox_context *ctx = context_with(padded, 0, &log, OX_LOG_DEBUG);
    ASSERT_EQ(backend_count(ctx), 2);
    ASSERT_STR_EQ(backend_info(ctx, 1).name, "fake");
    ASSERT_NOT_LOGGED(&log, OX_LOG_INFO, OX_LOG_OFF, "nonexistent-openxpu-dir", NULL);
    ASSERT_NOT_LOGGED(&log, OX_LOG_INFO, OX_LOG_OFF, "no-such-fixture", NULL);
    ox_context_free(ctx);

    setenv("OX_BACKEND_PATH", "/nonexistent-openxpu-dir", 1);
    ctx = context_with(NULL, 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 1);
    ox_context_free(ctx);
}

OX_TEST(no_plugins_flag_ignores_every_path)
{
    char path[PATH_CAP];
    setenv("OX_BACKEND_PATH", fixtures(path, "fake", NULL), 1);
    ox_context *ctx = context_with(path, OX_CONTEXT_NO_PLUGINS, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 1);
    ox_context_free(ctx);
}

OX_TEST(no_default_dirs_searches_only_the_given_path)
{
    unsetenv("OX_BACKEND_PATH");
    ox_context *ctx = context_with(NULL, 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 1);
    ox_context_free(ctx);

    char path[PATH_CAP];
    ctx = context_with(fixtures(path, "fake", NULL), 0, NULL, OX_LOG_DEFAULT);
    int n = backend_count(ctx);
    ASSERT_EQ(n, 2);
    ox_context_free(ctx);
}

/* OX_BACKENDS names the plugins to load; the others are never opened. */
OX_TEST(env_backends_allow_list)
{
    char path[PATH_CAP];
    unsetenv("OX_BACKEND_PATH");
    setenv("OX_BACKENDS", "opencl,fake2", 1);
    test_log log;
    test_log_init(&log);
    ox_context *ctx = context_with(fixtures(path, "fake", "dup", NULL), 0, &log, OX_LOG_DEBUG);
    ASSERT_EQ(backend_count(ctx), 2); /* cpu (built in) and fake2 */
    ASSERT_STR_EQ(backend_info(ctx, 1).name, "fake");
    ASSERT_MSG(ends_with(backend_info(ctx, 1).path, "/libox-fake2.so"), "path \"%s\"",
               backend_info(ctx, 1).path);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "libox-fake.so skipped: OX_BACKENDS", NULL);
    ox_context_free(ctx);
    setenv("OX_BACKENDS", "cpu", 1); /* the CPU alone */
    ctx = context_with(fixtures(path, "fake", "dup", NULL), 0, NULL, OX_LOG_DEFAULT);
    ASSERT_EQ(backend_count(ctx), 1);
    ox_context_free(ctx);
    unsetenv("OX_BACKENDS");
}

OX_TEST(allocator_fault_injection_with_plugin)
{
    unsetenv("OX_BACKEND_PATH");
    unsetenv("OX_FAKE_FAIL_ALLOC");
    char path[PATH_CAP];
    fixtures(path, "fake", NULL);
    for (long n = 0;; n++) {
        ASSERT_MSG(n < 100000, "never succeeded");
        test_alloc counter;
        test_alloc_init(&counter, n);
        ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
        options.backend_path = path;
        options.log_level = OX_LOG_OFF;
        test_alloc_attach(&counter, &options);
        ox_context *ctx = (ox_context *)&counter;
        ox_status status = ox_context_create(&options, &ctx);
        if (status != OX_OK) {
            ASSERT_MSG(status == OX_ERR_OUT_OF_MEMORY, "fail_from %ld: %s (%s)", n,
                       ox_status_name(status), ox_errmsg(NULL));
            ASSERT(ctx == NULL);
            ASSERT_ALLOC_BALANCED(&counter);
            continue;
        }
        /* A plugin that could not start for lack of memory may be skipped. */
        int backends = backend_count(ctx);
        ASSERT(backends == 1 || backends == 2);
        if (backends == 2) {
            status = test_exercise_device(ctx, 1);
            if (status != OX_OK)
                ASSERT_MSG(status == OX_ERR_OUT_OF_MEMORY || status == OX_ERR_DEVICE_MEMORY,
                           "fail_from %ld: %s (%s)", n, ox_status_name(status), ox_errmsg(ctx));
        }
        long failures = atomic_load(&counter.failures);
        ox_context_free(ctx);
        ASSERT_ALLOC_BALANCED(&counter);
        if (failures == 0) {
            ASSERT_EQ(backends, 2);
            ASSERT_OK(NULL, status);
            break;
        }
    }
}

OX_TEST_MAIN(env_backends_allow_list, fake_backend_is_loaded, select_fake_devices, default_device_from_env_with_fake,
             fake_buffers, cross_device_copy, fake_queues_and_cross_backend_events,
             fake_alloc_failure, broken_abi_version, broken_missing_slot, broken_null_entry,
             broken_no_entry_symbol, broken_not_a_shared_object, every_broken_fixture_at_once,
             duplicate_backend_name_first_wins, plugin_file_in_path, env_backend_path,
             nonexistent_directory_ignored, no_plugins_flag_ignores_every_path,
             no_default_dirs_searches_only_the_given_path, allocator_fault_injection_with_plugin)
