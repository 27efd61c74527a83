/* Buffers on the CPU device: transfers, views, fill, copy, and the range
 * and argument checks, with the buffer's content compared against a host
 * copy kept by the test. */
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"

/* A buffer of `size` random bytes and its host model. */
typedef struct modelled {
    ox_buffer *buffer;
    unsigned char *model;
    size_t size;
} modelled;

static modelled modelled_buffer(ox_device *device, size_t size, uint64_t seed)
{
    modelled m = {NULL, malloc(size), size};
    ASSERT(m.model != NULL);
    test_fill_random(m.model, size, seed);
    ASSERT_OK(ox_device_context(device), ox_buffer_alloc(device, size, &m.buffer));
    ASSERT_OK(ox_device_context(device), ox_buffer_write(m.buffer, 0, m.model, size));
    return m;
}

/* The whole buffer read back equals the model. */
static void check_model(const modelled *m)
{
    unsigned char *back = malloc(m->size);
    ASSERT(back != NULL);
    memset(back, 0xee, m->size);
    ASSERT_OK(NULL, ox_buffer_read(m->buffer, 0, back, m->size));
    for (size_t i = 0; i < m->size; i++)
        ASSERT_MSG(back[i] == m->model[i], "byte %zu: 0x%02x, expected 0x%02x", i, back[i],
                   m->model[i]);
    free(back);
}

static void free_modelled(modelled *m)
{
    ox_buffer_free(m->buffer);
    free(m->model);
}

OX_TEST(round_trip_sizes)
{
    static const size_t sizes[] = {1, 63, 64, 4096, (size_t)1 << 20};
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        modelled m = modelled_buffer(device, sizes[i], i + 1);
        size_t size = 0;
        ASSERT_OK(ctx, ox_buffer_size(m.buffer, &size));
        ASSERT_EQ(size, sizes[i]);
        ox_device *owner = NULL;
        ASSERT_OK(ctx, ox_buffer_device(m.buffer, &owner));
        ASSERT(owner == device);
        check_model(&m);
        free_modelled(&m);
    }
    ox_context_free(ctx);
}

OX_TEST(partial_writes_and_reads)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 1000, 11);
    unsigned char data[333];
    test_fill_random(data, sizeof data, 12);
    static const size_t offsets[] = {0, 1, 7, 500, 667};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        size_t n = sizeof data - i * 10;
        ASSERT_OK(ctx, ox_buffer_write(m.buffer, offsets[i], data, n));
        memcpy(m.model + offsets[i], data, n);
        check_model(&m);
        unsigned char part[333];
        ASSERT_OK(ctx, ox_buffer_read(m.buffer, offsets[i] + 3, part, 100));
        ASSERT(memcmp(part, m.model + offsets[i] + 3, 100) == 0);
    }
    /* The last byte, exactly at the end. */
    unsigned char last = 0x42;
    ASSERT_OK(ctx, ox_buffer_write(m.buffer, 999, &last, 1));
    m.model[999] = last;
    check_model(&m);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(sub_buffer_shares_memory)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 256, 21);
    ox_buffer *view = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 64, 96, &view));
    size_t size = 0;
    ASSERT_OK(ctx, ox_buffer_size(view, &size));
    ASSERT_EQ(size, 96);
    ox_device *device = NULL;
    ASSERT_OK(ctx, ox_buffer_device(view, &device));
    ASSERT(device == test_cpu_device(ctx));

    unsigned char data[32], back[96];
    test_fill_random(data, sizeof data, 22);
    ASSERT_OK(ctx, ox_buffer_write(view, 8, data, sizeof data));
    memcpy(m.model + 64 + 8, data, sizeof data);
    check_model(&m);

    /* Writes to the parent show through the view. */
    ASSERT_OK(ctx, ox_buffer_write(m.buffer, 100, data, 16));
    memcpy(m.model + 100, data, 16);
    ASSERT_OK(ctx, ox_buffer_read(view, 0, back, 96));
    ASSERT(memcmp(back, m.model + 64, 96) == 0);

    /* A view of the view: offsets add up (64 + 16 = 80). */
    ox_buffer *inner = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(view, 16, 32, &inner));
    ASSERT_OK(ctx, ox_buffer_size(inner, &size));
    ASSERT_EQ(size, 32);
    ASSERT_OK(ctx, ox_buffer_read(inner, 0, back, 32));
    ASSERT(memcmp(back, m.model + 80, 32) == 0);
    test_fill_random(data, sizeof data, 23);
    ASSERT_OK(ctx, ox_buffer_write(inner, 0, data, 32));
    memcpy(m.model + 80, data, 32);
    check_model(&m);

    ox_buffer_free(inner);
    ox_buffer_free(view);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(sub_buffer_outlives_parent)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 4096, 31);
    ox_buffer *view = NULL, *inner = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 1024, 2048, &view));
    ASSERT_OK(ctx, ox_buffer_sub(view, 1000, 48, &inner));
    ox_buffer_free(m.buffer);

    unsigned char back[2048];
    ASSERT_OK(ctx, ox_buffer_read(view, 0, back, sizeof back));
    ASSERT(memcmp(back, m.model + 1024, sizeof back) == 0);
    unsigned char data[48];
    test_fill_random(data, sizeof data, 32);
    ASSERT_OK(ctx, ox_buffer_write(view, 1000, data, sizeof data));
    ox_buffer_free(view);
    ASSERT_OK(ctx, ox_buffer_read(inner, 0, back, sizeof data));
    ASSERT(memcmp(back, data, sizeof data) == 0);
    ox_buffer_free(inner);
    free(m.model);
    ox_context_free(ctx);
}

OX_TEST(sub_buffer_range_checks)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 256, 41);
    ox_buffer *view = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 64, 64, &view));
    ox_buffer *out = NULL;
    struct {
        ox_buffer *parent;
        size_t offset, size;
    } bad[] = {
        {m.buffer, 200, 100},     {m.buffer, 256, 1},        {m.buffer, 257, 1},
        {m.buffer, SIZE_MAX, 2},  {m.buffer, 1, SIZE_MAX},   {m.buffer, SIZE_MAX, SIZE_MAX},
        {m.buffer, 0, 257},       {view, 32, 64},            {view, 0, 65},
        {view, SIZE_MAX - 63, 64},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ox_status status = ox_buffer_sub(bad[i].parent, bad[i].offset, bad[i].size, &out);
        ASSERT_MSG(status == OX_ERR_OUT_OF_RANGE, "sub(%zu, %zu): %s", bad[i].offset,
                   bad[i].size, ox_status_name(status));
        ASSERT(ox_errmsg(ctx)[0] != '\0');
    }
    ASSERT(ox_buffer_sub(m.buffer, 0, 16, NULL) != OX_OK);
    /* The whole buffer is a valid view. */
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 0, 256, &out));
    ox_buffer_free(out);
    ox_buffer_free(view);
    check_model(&m);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(fill_patterns)
{
    static const size_t pattern_sizes[] = {1, 2, 4, 8, 16};
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 512, 51);
    for (size_t i = 0; i < sizeof pattern_sizes / sizeof pattern_sizes[0]; i++) {
        size_t ps = pattern_sizes[i];
        unsigned char pattern[16];
        test_fill_random(pattern, sizeof pattern, 52 + i);
        size_t offset = 16 * (i + 1), size = 16 * (i + 3) + ps; /* multiples of ps */
        ASSERT_OK(ctx, ox_buffer_fill(m.buffer, offset, size, pattern, ps));
        for (size_t b = 0; b < size; b++) m.model[offset + b] = pattern[b % ps];
        check_model(&m);
    }
    /* Through a view, at its very end. */
    ox_buffer *view = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 128, 256, &view));
    const uint32_t word = 0xa1b2c3d4u;
    ASSERT_OK(ctx, ox_buffer_fill(view, 240, 16, &word, sizeof word));
    for (size_t b = 0; b < 16; b++) m.model[128 + 240 + b] = ((const unsigned char *)&word)[b % 4];
    check_model(&m);
    ox_buffer_free(view);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(fill_argument_checks)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 256, 61);
    unsigned char pattern[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct {
        size_t offset, size, pattern_size;
        ox_status expected; /* OX_OK: any error */
    } bad[] = {
        {2, 8, 4, OX_OK},    /* misaligned offset */
        {4, 6, 4, OX_OK},    /* size not a multiple */
        {0, 9, 3, OX_OK},    /* pattern size 3 */
        {0, 10, 5, OX_OK},   /* pattern size 5 */
        {0, 32, 32, OX_OK},  /* pattern size 32 */
        {0, 8, 0, OX_OK},    /* pattern size 0 */
        {8, 16, 16, OX_OK},  /* offset not a multiple of 16 */
        {248, 16, 8, OX_ERR_OUT_OF_RANGE},
        {256, 4, 4, OX_ERR_OUT_OF_RANGE},
        {SIZE_MAX - 3, 8, 4, OX_ERR_OUT_OF_RANGE},
        {0, SIZE_MAX - 3, 4, OX_ERR_OUT_OF_RANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ox_status status =
            ox_buffer_fill(m.buffer, bad[i].offset, bad[i].size, pattern, bad[i].pattern_size);
        ASSERT_MSG(status != OX_OK, "fill(%zu, %zu, pattern %zu) accepted", bad[i].offset,
                   bad[i].size, bad[i].pattern_size);
        if (bad[i].expected != OX_OK)
            ASSERT_MSG(status == bad[i].expected, "fill(%zu, %zu): %s", bad[i].offset,
                       bad[i].size, ox_status_name(status));
        ASSERT(ox_errmsg(ctx)[0] != '\0');
        check_model(&m);
    }
    ASSERT_EQ(ox_buffer_fill(m.buffer, 0, 4, NULL, 4), OX_ERR_INVALID);
    check_model(&m);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(copy_within_one_buffer)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 512, 71);
    ASSERT_OK(ctx, ox_buffer_copy(m.buffer, 256, m.buffer, 0, 128));
    memmove(m.model + 256, m.model, 128);
    check_model(&m);
    /* Adjacent ranges do not overlap. */
    ASSERT_OK(ctx, ox_buffer_copy(m.buffer, 100, m.buffer, 0, 100));
    memmove(m.model + 100, m.model, 100);
    check_model(&m);
    ASSERT_OK(ctx, ox_buffer_copy(m.buffer, 0, m.buffer, 100, 100));
    memmove(m.model, m.model + 100, 100);
    check_model(&m);

    /* Overlapping ranges are an error, and nothing is written. */
    static const size_t overlapping[][3] = {{32, 0, 64}, {0, 32, 64}, {0, 0, 1}, {10, 10, 100},
                                            {0, 99, 100}};
    for (size_t i = 0; i < sizeof overlapping / sizeof overlapping[0]; i++) {
        ox_status status = ox_buffer_copy(m.buffer, overlapping[i][0], m.buffer,
                                          overlapping[i][1], overlapping[i][2]);
        ASSERT_MSG(status != OX_OK, "overlapping copy %zu <- %zu (%zu) accepted",
                   overlapping[i][0], overlapping[i][1], overlapping[i][2]);
        check_model(&m);
    }
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(copy_between_views_of_one_buffer)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 512, 81);
    ox_buffer *low = NULL, *high = NULL, *middle = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 0, 128, &low));
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 128, 128, &high));
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 64, 128, &middle));

    ASSERT_OK(ctx, ox_buffer_copy(high, 0, low, 0, 128));
    memmove(m.model + 128, m.model, 128);
    check_model(&m);

    /* middle [64, 192) overlaps both low and high in the shared memory. */
    ASSERT(ox_buffer_copy(middle, 0, low, 0, 128) != OX_OK);
    check_model(&m);
    ASSERT(ox_buffer_copy(high, 0, middle, 0, 128) != OX_OK);
    check_model(&m);
    ASSERT(ox_buffer_copy(middle, 64, high, 0, 64) != OX_OK);
    check_model(&m);
    /* ...but not in these sub-ranges: middle [64, 96) and high [64, 128) = [192, 256). */
    ASSERT_OK(ctx, ox_buffer_copy(high, 64, middle, 0, 32));
    memmove(m.model + 192, m.model + 64, 32);
    check_model(&m);

    ox_buffer_free(middle);
    ox_buffer_free(high);
    ox_buffer_free(low);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(copy_between_buffers)
{
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    modelled a = modelled_buffer(device, 300, 91);
    modelled b = modelled_buffer(device, 200, 92);
    ASSERT_OK(ctx, ox_buffer_copy(b.buffer, 10, a.buffer, 250, 50));
    memcpy(b.model + 10, a.model + 250, 50);
    ASSERT_OK(ctx, ox_buffer_copy(a.buffer, 0, b.buffer, 0, 200));
    memcpy(a.model, b.model, 200);
    check_model(&a);
    check_model(&b);

    static const size_t bad[][3] = {{0, 250, 51}, {151, 0, 50}, {SIZE_MAX, 0, 2},
                                    {0, SIZE_MAX, 2}, {0, 0, SIZE_MAX}, {0, 0, 201}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ox_status status = ox_buffer_copy(b.buffer, bad[i][0], a.buffer, bad[i][1], bad[i][2]);
        ASSERT_MSG(status == OX_ERR_OUT_OF_RANGE, "copy %zu <- %zu (%zu): %s", bad[i][0],
                   bad[i][1], bad[i][2], ox_status_name(status));
        check_model(&a);
        check_model(&b);
    }
    free_modelled(&a);
    free_modelled(&b);
    ox_context_free(ctx);
}

OX_TEST(zero_size_transfers_are_no_ops)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 64, 101);
    modelled other = modelled_buffer(test_cpu_device(ctx), 64, 102);
    unsigned char host[4] = {9, 9, 9, 9};
    const uint32_t pattern = 0xffffffffu;
    ASSERT_OK(ctx, ox_buffer_write(m.buffer, 0, host, 0));
    ASSERT_OK(ctx, ox_buffer_write(m.buffer, 64, host, 0));
    ASSERT_OK(ctx, ox_buffer_read(m.buffer, 10, host, 0));
    ASSERT_OK(ctx, ox_buffer_read(m.buffer, 64, host, 0));
    ASSERT_OK(ctx, ox_buffer_fill(m.buffer, 0, 0, &pattern, 4));
    ASSERT_OK(ctx, ox_buffer_copy(other.buffer, 0, m.buffer, 0, 0));
    ASSERT_OK(ctx, ox_buffer_copy(m.buffer, 5, m.buffer, 5, 0));
    ASSERT(host[0] == 9 && host[3] == 9);
    check_model(&m);
    check_model(&other);
    free_modelled(&m);
    free_modelled(&other);
    ox_context_free(ctx);
}

OX_TEST(alloc_size_zero_is_an_error)
{
    ox_context *ctx = test_cpu_context();
    ox_buffer *buffer = NULL;
    ox_status status = ox_buffer_alloc(test_cpu_device(ctx), 0, &buffer);
    ASSERT(status != OX_OK);
    ASSERT(buffer == NULL);
    ASSERT_EQ(ox_errcode(ctx), status);
    ASSERT_CONTAINS(ox_errmsg(ctx), "size");
    ASSERT(ox_buffer_alloc(test_cpu_device(ctx), 16, NULL) != OX_OK);
    ox_context_free(ctx);
}

OX_TEST(alloc_huge_fails_cleanly)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 63, SIZE_MAX / 2 + 1,
                                   (size_t)1 << 62};
    ox_context *ctx = test_cpu_context();
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ox_buffer *buffer = NULL;
        ox_status status = ox_buffer_alloc(test_cpu_device(ctx), sizes[i], &buffer);
        ASSERT_MSG(status == OX_ERR_DEVICE_MEMORY || status == OX_ERR_OUT_OF_MEMORY,
                   "alloc %zu: %s (%s)", sizes[i], ox_status_name(status), ox_errmsg(ctx));
        ASSERT(buffer == NULL);
        ASSERT_CONTAINS(ox_errmsg(ctx), "cpu:0");
    }
    /* The device still works. */
    modelled m = modelled_buffer(test_cpu_device(ctx), 100, 111);
    check_model(&m);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(transfer_range_checks)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 128, 121);
    unsigned char host[256];
    memset(host, 0x77, sizeof host);

    ASSERT_EQ(ox_buffer_write(m.buffer, 96, host, 64), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "96");
    ASSERT_CONTAINS(ox_errmsg(ctx), "64");
    ASSERT_CONTAINS(ox_errmsg(ctx), "128");
    check_model(&m);

    memset(host, 0x77, sizeof host);
    ASSERT_EQ(ox_buffer_read(m.buffer, 100, host, 29), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "100");
    ASSERT_CONTAINS(ox_errmsg(ctx), "29");
    ASSERT_CONTAINS(ox_errmsg(ctx), "128");
    for (size_t i = 0; i < sizeof host; i++) ASSERT(host[i] == 0x77);

    static const size_t bad[][2] = {{0, 129},        {128, 1},         {129, 1},
                                    {SIZE_MAX, 2},   {2, SIZE_MAX},    {SIZE_MAX, SIZE_MAX},
                                    {SIZE_MAX - 1, 3}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ox_status status = ox_buffer_write(m.buffer, bad[i][0], host, bad[i][1]);
        ASSERT_MSG(status == OX_ERR_OUT_OF_RANGE, "write(%zu, %zu): %s", bad[i][0], bad[i][1],
                   ox_status_name(status));
        status = ox_buffer_read(m.buffer, bad[i][0], host, bad[i][1]);
        ASSERT_MSG(status == OX_ERR_OUT_OF_RANGE, "read(%zu, %zu): %s", bad[i][0], bad[i][1],
                   ox_status_name(status));
        check_model(&m);
    }
    /* A view's range is its own, not its parent's. */
    ox_buffer *view = NULL;
    ASSERT_OK(ctx, ox_buffer_sub(m.buffer, 32, 32, &view));
    ASSERT_EQ(ox_buffer_write(view, 16, host, 17), OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(ox_buffer_read(view, 0, host, 33), OX_ERR_OUT_OF_RANGE);
    check_model(&m);
    ox_buffer_free(view);
    free_modelled(&m);
    ox_context_free(ctx);
}

OX_TEST(transfer_null_host_pointer)
{
    ox_context *ctx = test_cpu_context();
    modelled m = modelled_buffer(test_cpu_device(ctx), 64, 131);
    ASSERT_EQ(ox_buffer_write(m.buffer, 0, NULL, 16), OX_ERR_INVALID);
    ASSERT(ox_errmsg(ctx)[0] != '\0');
    ASSERT_EQ(ox_buffer_read(m.buffer, 0, NULL, 16), OX_ERR_INVALID);
    ASSERT(ox_buffer_size(m.buffer, NULL) != OX_OK);
    ASSERT(ox_buffer_device(m.buffer, NULL) != OX_OK);
    check_model(&m);
    free_modelled(&m);
    ox_context_free(ctx);
}

/* Wrapped host memory: the buffer reads and writes the caller's array in
 * place, views work, and freeing the buffer leaves the array alone. */
OX_TEST(wrap_host_memory_in_place)
{
    ox_context *ctx = test_cpu_context();
    ox_device *cpu;
    ASSERT_OK(ctx, ox_device_get(ctx, 0, &cpu));
    unsigned char host[256];
    for (int i = 0; i < 256; i++) host[i] = (unsigned char)i;
    ox_buffer *b, *view;
    ASSERT_OK(ctx, ox_buffer_wrap_host(cpu, host, sizeof host, &b));
    unsigned char back[16];
    ASSERT_OK(ctx, ox_buffer_read(b, 100, back, sizeof back));
    for (int i = 0; i < 16; i++) ASSERT_EQ(back[i], 100 + i);
    const unsigned char seven[4] = {7, 7, 7, 7};
    ASSERT_OK(ctx, ox_buffer_sub(b, 200, 8, &view));
    ASSERT_OK(ctx, ox_buffer_write(view, 4, seven, sizeof seven));
    ASSERT_EQ(host[204], 7);
    ASSERT_EQ(host[207], 7);
    ASSERT_EQ(host[208], 208);
    ASSERT_EQ(ox_buffer_read(b, 250, back, 16), OX_ERR_OUT_OF_RANGE);
    ox_buffer_free(view);
    ox_buffer_free(b); /* must not free `host` (ASan would report it) */
    host[0] = 42;
    ASSERT_EQ(host[0], 42);
    ASSERT_EQ(ox_buffer_wrap_host(cpu, NULL, 16, &b), OX_ERR_INVALID);
    ASSERT_EQ(ox_buffer_wrap_host(cpu, host, 0, &b), OX_ERR_INVALID);
    ox_context_free(ctx);
}

OX_TEST_MAIN(wrap_host_memory_in_place, round_trip_sizes, partial_writes_and_reads, sub_buffer_shares_memory,
             sub_buffer_outlives_parent, sub_buffer_range_checks, fill_patterns,
             fill_argument_checks, copy_within_one_buffer, copy_between_views_of_one_buffer,
             copy_between_buffers, zero_size_transfers_are_no_ops, alloc_size_zero_is_an_error,
             alloc_huge_fails_cleanly, transfer_range_checks, transfer_null_host_pointer)
