/* Tests of the GGUF reader and writer: round trips of every metadata type
 * and several tensor types, and refusal of broken files with a message that
 * names the problem and its byte offset. */
#include <fcntl.h>
#include <sys/stat.h>

#include "gguf_sample.h"
#include "ox_test.h"

static ox_context *new_context(void)
{
    ox_context_options options = {.struct_size = sizeof options, .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    return ctx;
}

static size_t find_bytes(const unsigned char *file, size_t size, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(file + i, needle, n) == 0) return i;
    OX_TEST_FAIL_AT("'%s' not found in the file", needle);
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Positions of the fields of tensor `name`'s info in the sample. */
typedef struct tensor_fields {
    size_t n_dims, dims, type, offset;
} tensor_fields;

static tensor_fields locate_tensor(const unsigned char *file, size_t size, const char *name)
{
    /* The name's first occurrence after its length field is its tensor info. */
    size_t at = find_bytes(file, size, name) + strlen(name);
    uint32_t n_dims = (uint32_t)file[at] | (uint32_t)file[at + 1] << 8;
    tensor_fields f = {.n_dims = at, .dims = at + 4};
    f.type = f.dims + 8 * n_dims;
    f.offset = f.type + 4;
    return f;
}

/* Open `file` from memory expecting OX_ERR_FORMAT with `needle` and "at byte"
 * in the message. */
static void expect_format_error(ox_context *ctx, const unsigned char *file, size_t size,
                                const char *needle)
{
    ox_gguf *g = (ox_gguf *)1;
    ox_status s = ox_gguf_open_memory(ctx, file, size, &g);
    ASSERT_MSG(s == OX_ERR_FORMAT, "expected OX_ERR_FORMAT with '%s', got %s (%s)", needle,
               ox_status_name(s), ox_errmsg(ctx));
    ASSERT(g == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), needle);
    ASSERT_CONTAINS(ox_errmsg(ctx), " at byte ");
    ASSERT_CONTAINS(ox_errmsg(ctx), "gguf: <memory>: ");
}

static unsigned char *sample(ox_context *ctx, size_t *size)
{
    unsigned char *file = NULL;
    ASSERT_OK(ctx, sample_build(ctx, 3, 0, &file, size));
    return file;
}

/* Every value of the sample, read back. */
static void check_sample(ox_context *ctx, const ox_gguf *g)
{
    ASSERT_EQ(ox_gguf_kv_count(g), 20);
    int64_t i = ox_gguf_find(g, "general.architecture");
    ASSERT(i >= 0);
    ASSERT_STR_EQ(ox_gguf_kv_key(g, i), "general.architecture");
    ASSERT_EQ(ox_gguf_kv_type(g, i), OX_GGUF_STRING);
    const char *str;
    size_t len;
    ASSERT_OK(ctx, ox_gguf_get_string(g, i, &str, &len));
    ASSERT(len == 8 && memcmp(str, "testarch", 8) == 0);
    ASSERT_EQ(ox_gguf_find(g, "missing.key"), -1);
    ASSERT_EQ(ox_gguf_find(g, "general"), -1);

    int64_t v;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "test.u8"), &v));
    ASSERT_EQ(v, 200);
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "test.i8"), &v));
    ASSERT_EQ(v, -100);
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "test.u16"), &v));
    ASSERT_EQ(v, 60000);
    ASSERT_OK(ctx, ox_gguf_get_int(g, ox_gguf_find(g, "test.i16"), &v));
    ASSERT_EQ(v, -30000);
    ASSERT_OK(ctx, ox_gguf_get_u32(g, ox_gguf_find(g, "test.u32"), &u32));
    ASSERT(u32 == 4000000000u);
    ASSERT_OK(ctx, ox_gguf_get_i32(g, ox_gguf_find(g, "test.i32"), &i32));
    ASSERT_EQ(i32, -2000000000);
    ASSERT_OK(ctx, ox_gguf_get_f32(g, ox_gguf_find(g, "test.f32"), &f32));
    ASSERT(f32 == 1.5f);
    ASSERT_OK(ctx, ox_gguf_get_bool(g, ox_gguf_find(g, "test.bool"), &b));
    ASSERT(b);
    ASSERT_OK(ctx, ox_gguf_get_u64(g, ox_gguf_find(g, "test.u64"), &u64));
    ASSERT(u64 == UINT64_C(18000000000000000000));
    ASSERT_OK(ctx, ox_gguf_get_i64(g, ox_gguf_find(g, "test.i64"), &i64));
    ASSERT(i64 == INT64_C(-9000000000000000000));
    ASSERT_OK(ctx, ox_gguf_get_f64(g, ox_gguf_find(g, "test.f64"), &f64));
    ASSERT(f64 == -2.25);
    ASSERT_OK(ctx, ox_gguf_get_float(g, ox_gguf_find(g, "test.f32"), &f64));
    ASSERT(f64 == 1.5);

    ox_gguf_type elem;
    uint64_t count;
    i = ox_gguf_find(g, "test.ints");
    ASSERT_OK(ctx, ox_gguf_get_array(g, i, &elem, &count));
    ASSERT(elem == OX_GGUF_INT32 && count == 3);
    ASSERT_OK(ctx, ox_gguf_get_array_int(g, i, 1, &v));
    ASSERT_EQ(v, -2);
    const void *raw;
    ASSERT_OK(ctx, ox_gguf_get_array_data(g, i, &raw));
    int32_t third;
    memcpy(&third, (const char *)raw + 8, 4);
    ASSERT_EQ(third, 3);
    ASSERT(ox_gguf_get_array_int(g, i, 3, &v) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "out of range");
    i = ox_gguf_find(g, "test.floats");
    ASSERT_OK(ctx, ox_gguf_get_array_float(g, i, 1, &f64));
    ASSERT(f64 == -0.5);
    i = ox_gguf_find(g, "test.bools");
    ASSERT_OK(ctx, ox_gguf_get_array(g, i, &elem, &count));
    ASSERT(elem == OX_GGUF_BOOL && count == 3);
    i = ox_gguf_find(g, "test.big");
    ASSERT_OK(ctx, ox_gguf_get_array_int(g, i, 0, &v));
    ASSERT_EQ(v, 1);
    ASSERT(ox_gguf_get_array_int(g, i, 1, &v) == OX_ERR_OUT_OF_RANGE);
    i = ox_gguf_find(g, "test.empty");
    ASSERT_OK(ctx, ox_gguf_get_array(g, i, &elem, &count));
    ASSERT(elem == OX_GGUF_UINT8 && count == 0);
    i = ox_gguf_find(g, "tokenizer.ggml.tokens");
    ASSERT_OK(ctx, ox_gguf_get_array(g, i, &elem, &count));
    ASSERT(elem == OX_GGUF_STRING && count == 5);
    for (uint64_t j = 0; j < count; j++) {
        ASSERT_OK(ctx, ox_gguf_get_array_string(g, i, j, &str, &len));
        ASSERT(len == strlen(sample_tokens[j]) && memcmp(str, sample_tokens[j], len) == 0);
    }
    ASSERT(ox_gguf_get_array_data(g, i, &raw) == OX_ERR_INVALID);

    ASSERT_EQ(ox_gguf_tensor_count(g), (int64_t)SAMPLE_TENSOR_COUNT);
    size_t file_size;
    const unsigned char *base = ox_gguf_file_data(g, &file_size);
    for (size_t t = 0; t < SAMPLE_TENSOR_COUNT; t++) {
        const sample_tensor *want = &sample_tensors[t];
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        ASSERT_EQ(ox_gguf_find_tensor(g, want->name), (int64_t)t);
        ASSERT_OK(ctx, ox_gguf_tensor_info_get(g, (int64_t)t, &info));
        ASSERT_STR_EQ(info.name, want->name);
        ASSERT_EQ(info.ggml_type, want->ggml_type);
        ASSERT_STR_EQ(info.type_name, ox_ggml_type_str(want->ggml_type));
        ASSERT_EQ(info.n_dims, want->n_dims);
        for (int d = 0; d < 4; d++) ASSERT_EQ(info.ne[d], want->ne[d]);
        ASSERT_EQ(info.nbytes, sample_tensor_bytes(want));
        ASSERT_EQ(info.offset % ox_gguf_alignment(g), 0);
        ASSERT_EQ(info.file_offset, ox_gguf_data_offset(g) + info.offset);
        ASSERT((const unsigned char *)info.data == base + info.file_offset);
        ASSERT(info.file_offset + info.nbytes <= file_size);
        ASSERT(memcmp(info.data, sample_tensor_data(t), info.nbytes) == 0);
    }
    ASSERT_EQ(ox_gguf_find_tensor(g, "nope"), -1);
}

OX_TEST(roundtrip_memory_v3)
{
    ox_context *ctx = new_context();
    size_t size;
    unsigned char *file = sample(ctx, &size);
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, file, size, &g));
    ASSERT_EQ(ox_gguf_version(g), 3);
    ASSERT_EQ(ox_gguf_alignment(g), 32);
    ASSERT_EQ(ox_gguf_data_offset(g) % 32, 0);
    check_sample(ctx, g);
    ox_gguf_close(g);
    free(file);
    ox_context_free(ctx);
}

OX_TEST(roundtrip_file_v2_alignment_64)
{
    ox_context *ctx = new_context();
    unsigned char *file;
    size_t size;
    ASSERT_OK(ctx, sample_build(ctx, 2, 64, &file, &size));
    char path[] = "/tmp/ox_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, file, size) == (ssize_t)size);
    close(fd);
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open(ctx, path, &g));
    unlink(path);
    ASSERT_EQ(ox_gguf_version(g), 2);
    ASSERT_EQ(ox_gguf_alignment(g), 64);
    ASSERT_EQ(ox_gguf_kv_count(g), 21);
    ox_gguf_close(g);

    /* The writer's own file output gives the same bytes. */
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    ASSERT_OK(ctx, ox_gguf_writer_add_string(w, "general.architecture", "x", 1));
    ASSERT_OK(ctx, ox_gguf_writer_write_file(w, path));
    ASSERT_OK(ctx, ox_gguf_open(ctx, path, &g));
    unlink(path);
    ASSERT_EQ(ox_gguf_kv_count(g), 1);
    ASSERT_EQ(ox_gguf_tensor_count(g), 0);
    ox_gguf_close(g);
    ASSERT(ox_gguf_writer_write_file(w, "/nonexistent-dir/x.gguf") == OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "/nonexistent-dir/x.gguf");
    ox_gguf_writer_free(w);
    free(file);
    ox_context_free(ctx);
}

OX_TEST(getter_errors)
{
    ox_context *ctx = new_context();
    size_t size;
    unsigned char *file = sample(ctx, &size);
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, file, size, &g));
    uint32_t u32;
    const char *str;
    ASSERT(ox_gguf_get_u32(g, ox_gguf_find(g, "general.name"), &u32) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "key 'general.name'");
    ASSERT_CONTAINS(ox_errmsg(ctx), "is a string, not a u32");
    ASSERT(ox_gguf_get_string(g, ox_gguf_find(g, "tokenizer.ggml.tokens"), &str, NULL) ==
           OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "array of string");
    ASSERT(ox_gguf_get_u32(g, -1, &u32) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "out of range");
    ASSERT(ox_gguf_get_u32(g, 1000, &u32) == OX_ERR_INVALID);
    ASSERT(ox_gguf_get_u32(NULL, 0, &u32) == OX_ERR_INVALID);
    ASSERT(ox_gguf_kv_key(g, 99) == NULL);
    ASSERT(ox_gguf_kv_type(g, -5) == OX_GGUF_TYPE_COUNT);

    /* q2_k: listed, but not viewable as an OpenXPU dtype. */
    int64_t t = ox_gguf_find_tensor(g, "blk.0.ffn_gate.weight");
    ox_gguf_tensor_info info = {.struct_size = sizeof info};
    ASSERT_OK(ctx, ox_gguf_tensor_info_get(g, t, &info));
    ASSERT_STR_EQ(info.type_name, "q2_k");
    ASSERT(info.dtype == OX_DTYPE_COUNT);
    ox_dtype dtype;
    const void *data;
    ASSERT(ox_gguf_tensor_data(g, t, &dtype, &data, NULL) == OX_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(ox_errmsg(ctx), "unsupported tensor type q2_k");
    ASSERT_CONTAINS(ox_errmsg(ctx), "blk.0.ffn_gate.weight");
    size_t nbytes;
    ASSERT_OK(ctx, ox_gguf_tensor_data(g, ox_gguf_find_tensor(g, "blk.0.ffn_up.weight"), &dtype,
                                       &data, &nbytes));
    ASSERT(dtype == OX_DTYPE_Q4_K && nbytes == 144);
    info.struct_size = 8;
    ASSERT(ox_gguf_tensor_info_get(g, t, &info) == OX_ERR_INVALID);
    ASSERT(ox_gguf_tensor_info_get(g, 99, &info) == OX_ERR_INVALID);
    ox_gguf_close(g);
    ox_gguf_close(NULL);
    free(file);
    ox_context_free(ctx);
}

/* The ggml table agrees with OpenXPU's dtypes wherever it maps to one. */
OX_TEST(ggml_types_match_dtypes)
{
    static const struct {
        uint32_t id;
        int64_t block;
        size_t bytes;
        ox_dtype dtype;
    } types[] = {
#define ROW(name, id, text, block, bytes, dtype) {id, block, bytes, dtype},
        OX_GGML_TYPE_LIST(ROW)
#undef ROW
    };
    int mapped = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (types[i].dtype == OX_DTYPE_COUNT) continue;
        mapped++;
        ASSERT_EQ(ox_dtype_block(types[i].dtype), types[i].block);
        ASSERT_EQ(ox_dtype_size(types[i].dtype), types[i].bytes);
        ASSERT_STR_EQ(ox_dtype_str(types[i].dtype), ox_ggml_type_str(types[i].id));
        uint32_t id;
        ASSERT_OK(NULL, ox_ggml_type_from_dtype(types[i].dtype, &id));
        ASSERT_EQ(id, types[i].id);
    }
    ASSERT_EQ(mapped, OX_DTYPE_COUNT); /* every dtype has a ggml type */
    ASSERT_STR_EQ(ox_ggml_type_str(4), "unknown");
    ASSERT_STR_EQ(ox_ggml_type_str(31), "unknown");
    ASSERT_STR_EQ(ox_ggml_type_str(12), "q4_k");
    ASSERT_STR_EQ(ox_ggml_type_str(30), "bf16");
}

OX_TEST(writer_errors)
{
    ox_context *ctx = new_context();
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    uint32_t x = 3;
    ASSERT_OK(ctx, ox_gguf_writer_add_scalar(w, "a", OX_GGUF_UINT32, &x));
    ASSERT(ox_gguf_writer_add_scalar(w, "a", OX_GGUF_UINT32, &x) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "already added");
    ASSERT(ox_gguf_writer_add_scalar(w, "", OX_GGUF_UINT32, &x) == OX_ERR_INVALID);
    ASSERT(ox_gguf_writer_add_scalar(w, "b", OX_GGUF_STRING, &x) == OX_ERR_INVALID);
    ASSERT(ox_gguf_writer_add_scalar(w, "general.alignment", OX_GGUF_UINT32, &x) ==
           OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "power of two");
    ASSERT(ox_gguf_writer_set_version(w, 1) == OX_ERR_INVALID);
    float data[8] = {0};
    int64_t ne[2] = {8, 1};
    ASSERT(ox_gguf_writer_add_tensor(w, "t", OX_GGML_TYPE_F32, 2, ne, data, 16) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "the shape needs");
    ASSERT(ox_gguf_writer_add_tensor(w, "t", 4, 2, ne, data, 32) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "unknown ggml type 4");
    ASSERT(ox_gguf_writer_add_tensor(w, "t", OX_GGML_TYPE_Q4_0, 2, ne, data, 18) ==
           OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "not a multiple");
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(w, "t", OX_GGML_TYPE_F32, 2, ne, data, 32));
    ASSERT(ox_gguf_writer_add_tensor(w, "t", OX_GGML_TYPE_F32, 2, ne, data, 32) == OX_ERR_INVALID);
    size_t size;
    ASSERT_OK(ctx, ox_gguf_writer_size(w, &size));
    unsigned char small[16];
    ASSERT(ox_gguf_writer_write_memory(w, small, sizeof small) == OX_ERR_OUT_OF_RANGE);
    ox_gguf_writer_free(w);
    ox_gguf_writer_free(NULL);
    ox_context_free(ctx);
}

/* A fill that writes byte i of tensor `name` as name[0] + i, and records the
 * order of its calls; one named "fail" fails. */
typedef struct fill_log {
    char order[8];
    int calls;
} fill_log;

static ox_status fill_pattern(void *user, const char *name, void *buffer, size_t nbytes)
{
    fill_log *log = user;
    if (log->calls < (int)sizeof log->order - 1) log->order[log->calls] = name[0];
    log->calls++;
    if (strcmp(name, "fail") == 0) return OX_ERR_IO;
    for (size_t i = 0; i < nbytes; i++) ((unsigned char *)buffer)[i] = (unsigned char)(name[0] + i);
    return OX_OK;
}

/* Tensors whose data a fill produces give the same file as the same bytes
 * given up front, in memory and on disk; the fills run in the order the
 * tensors were added; a failing fill fails the write and is named. */
OX_TEST(writer_fill)
{
    ox_context *ctx = new_context();
    unsigned char q[3 * 34], c[16];
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < sizeof q; i++) q[i] = (unsigned char)('q' + i);
    for (size_t i = 0; i < sizeof c; i++) c[i] = (unsigned char)('c' + i);
    const int64_t ne_a[1] = {8}, ne_q[2] = {32, 3}, ne_c[1] = {4};

    ox_gguf_writer *given, *filled;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &given));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(given, "a", OX_GGML_TYPE_F32, 1, ne_a, a, sizeof a));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(given, "q", OX_GGML_TYPE_Q8_0, 2, ne_q, q, sizeof q));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(given, "c", OX_GGML_TYPE_F32, 1, ne_c, c, sizeof c));
    fill_log log = {.calls = 0};
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &filled));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(filled, "a", OX_GGML_TYPE_F32, 1, ne_a, a, sizeof a));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor_fill(filled, "q", OX_GGML_TYPE_Q8_0, 2, ne_q,
                                                  sizeof q, fill_pattern, &log));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor_fill(filled, "c", OX_GGML_TYPE_F32, 1, ne_c,
                                                  sizeof c, fill_pattern, &log));
    /* the checks of ox_gguf_writer_add_tensor apply */
    ASSERT(ox_gguf_writer_add_tensor_fill(filled, "d", OX_GGML_TYPE_F32, 1, ne_c, 15,
                                          fill_pattern, &log) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "the shape needs");
    ASSERT(ox_gguf_writer_add_tensor_fill(filled, "d", OX_GGML_TYPE_F32, 1, ne_c, sizeof c, NULL,
                                          NULL) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "fill is NULL");

    size_t size, size_filled;
    ASSERT_OK(ctx, ox_gguf_writer_size(given, &size));
    ASSERT_OK(ctx, ox_gguf_writer_size(filled, &size_filled));
    ASSERT_EQ(size, size_filled);
    unsigned char *expected = malloc(size), *memory = malloc(size + 256), *disk = malloc(size + 1);
    ASSERT(expected && memory && disk);
    ASSERT_OK(ctx, ox_gguf_writer_write_memory(given, expected, size));
    ASSERT_OK(ctx, ox_gguf_writer_write_memory(filled, memory, size));
    ASSERT(memcmp(expected, memory, size) == 0);
    ASSERT_STR_EQ(log.order, "qc");

    char path[] = "/tmp/ox_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT_OK(ctx, ox_gguf_writer_write_file(filled, path));
    FILE *file = fopen(path, "rb");
    ASSERT(file != NULL);
    ASSERT_EQ(fread(disk, 1, size + 1, file), size);
    fclose(file);
    ASSERT(memcmp(expected, disk, size) == 0);
    ASSERT_EQ(log.calls, 4);

    ASSERT_OK(ctx, ox_gguf_writer_add_tensor_fill(filled, "fail", OX_GGML_TYPE_F32, 1, ne_c,
                                                  sizeof c, fill_pattern, &log));
    ASSERT(ox_gguf_writer_write_file(filled, path) == OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "tensor 'fail': its fill function failed");
    ASSERT_CONTAINS(ox_errmsg(ctx), path);
    ASSERT(ox_gguf_writer_write_memory(filled, memory, size + 256) == OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "<memory>: tensor 'fail'");
    unlink(path);
    free(expected);
    free(memory);
    free(disk);
    ox_gguf_writer_free(given);
    ox_gguf_writer_free(filled);
    ox_context_free(ctx);
}

/* Every prefix of a valid file that cuts into the header or the tensor data
 * is refused with a message; none crashes. */
OX_TEST(truncated_everywhere)
{
    ox_context *ctx = new_context();
    size_t size;
    unsigned char *file = sample(ctx, &size);
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, file, size, &g));
    size_t data_end = 0;
    for (int64_t t = 0; t < ox_gguf_tensor_count(g); t++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        ASSERT_OK(ctx, ox_gguf_tensor_info_get(g, t, &info));
        if (info.file_offset + info.nbytes > data_end) data_end = info.file_offset + info.nbytes;
    }
    ox_gguf_close(g);
    for (size_t n = 0; n < data_end; n++) {
        /* A copy of exactly n bytes, so that ASan sees any read past it. */
        unsigned char *prefix = malloc(n ? n : 1);
        memcpy(prefix, file, n);
        ox_status s = ox_gguf_open_memory(ctx, prefix, n, &g);
        ASSERT_MSG(s == OX_ERR_FORMAT, "prefix of %zu bytes: %s", n, ox_status_name(s));
        ASSERT_CONTAINS(ox_errmsg(ctx), " at byte ");
        free(prefix);
    }
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, file, data_end, &g));
    ox_gguf_close(g);
    free(file);
    ox_context_free(ctx);
}

OX_TEST(bad_header)
{
    ox_context *ctx = new_context();
    size_t size;
    unsigned char *file = sample(ctx, &size);
    unsigned char *bad = malloc(size);

    expect_format_error(ctx, file, 0, "empty file");
    memcpy(bad, file, size);
    memcpy(bad, "GGML", 4);
    expect_format_error(ctx, bad, size, "not a GGUF file: magic 'GGML'");
    memcpy(bad, "\x7f" "EL", 3);
    expect_format_error(ctx, bad, 3, "not a GGUF file");
    expect_format_error(ctx, file, 10, "the GGUF header alone takes 24");

    memcpy(bad, file, size);
    put_u32(bad + 4, 1);
    expect_format_error(ctx, bad, size, "version 1 is not supported");
    put_u32(bad + 4, 0x03000000u);
    expect_format_error(ctx, bad, size, "big-endian");
    put_u32(bad + 4, 7);
    expect_format_error(ctx, bad, size, "unknown GGUF version 7");

    memcpy(bad, file, size);
    put_u64(bad + 8, UINT64_C(1) << 60);
    expect_format_error(ctx, bad, size, "tensor count 1152921504606846976");
    memcpy(bad, file, size);
    put_u64(bad + 16, UINT64_MAX);
    expect_format_error(ctx, bad, size, "metadata count");
    /* A count that fits the bytes left but runs into the tensor infos. */
    memcpy(bad, file, size);
    put_u64(bad + 16, 40);
    ASSERT(ox_gguf_open_memory(ctx, bad, size, &(ox_gguf *){NULL}) == OX_ERR_FORMAT);
    ASSERT_CONTAINS(ox_errmsg(ctx), " at byte ");
    free(bad);
    free(file);
    ox_context_free(ctx);
}

OX_TEST(bad_metadata)
{
    ox_context *ctx = new_context();
    size_t size;
    unsigned char *file = sample(ctx, &size);
    unsigned char *bad = malloc(size);
    size_t name_key = find_bytes(file, size, "general.name");
    size_t name_type = name_key + strlen("general.name");

    memcpy(bad, file, size);
    put_u64(bad + name_key - 8, UINT64_C(1) << 62); /* key length */
    expect_format_error(ctx, bad, size, "string length 4611686018427387904 exceeds");
    memcpy(bad, file, size);
    put_u64(bad + name_key - 8, 0);
    expect_format_error(ctx, bad, size, "key is empty");
    memcpy(bad, file, size);
    bad[name_key + 3] = 0;
    expect_format_error(ctx, bad, size, "contains a NUL byte");
    memcpy(bad, file, size);
    put_u32(bad + name_type, 13);
    expect_format_error(ctx, bad, size, "key 'general.name': unknown value type 13");
    memcpy(bad, file, size);
    put_u64(bad + name_type + 4, UINT64_MAX); /* string value length */
    expect_format_error(ctx, bad, size, "exceeds the");

    size_t ints = find_bytes(file, size, "test.ints") + strlen("test.ints");
    memcpy(bad, file, size);
    put_u32(bad + ints + 4, OX_GGUF_ARRAY);
    expect_format_error(ctx, bad, size, "key 'test.ints': nested arrays are not supported");
    memcpy(bad, file, size);
    put_u32(bad + ints + 4, 99);
    expect_format_error(ctx, bad, size, "unknown array element type 99");
    memcpy(bad, file, size);
    put_u64(bad + ints + 8, UINT64_C(1) << 62);
    expect_format_error(ctx, bad, size, "array of 4611686018427387904 i32 values does not fit");
    size_t tokens = find_bytes(file, size, "tokenizer.ggml.tokens") + strlen("tokenizer.ggml.tokens");
    memcpy(bad, file, size);
    put_u64(bad + tokens + 8, UINT64_C(1) << 40);
    expect_format_error(ctx, bad, size, "array of 1099511627776 strings does not fit");
    memcpy(bad, file, size);
    put_u64(bad + tokens + 16, 1000000); /* first token's length */
    expect_format_error(ctx, bad, size, "array string: string length 1000000 exceeds");

    size_t flag = find_bytes(file, size, "test.bool") + strlen("test.bool");
    memcpy(bad, file, size);
    bad[flag + 4] = 2;
    expect_format_error(ctx, bad, size, "bool value 2 is neither 0 nor 1");

    /* A key written twice: rename test.i8 to test.u8. */
    memcpy(bad, file, size);
    memcpy(bad + find_bytes(file, size, "test.i8"), "test.u8", 7);
    expect_format_error(ctx, bad, size, "key 'test.u8' appears twice");
    free(bad);
    free(file);
    ox_context_free(ctx);
}

OX_TEST(bad_alignment)
{
    ox_context *ctx = new_context();
    unsigned char *file;
    size_t size;
    ASSERT_OK(ctx, sample_build(ctx, 3, 64, &file, &size));
    size_t value = find_bytes(file, size, "general.alignment") + strlen("general.alignment") + 4;
    put_u32(file + value, 48);
    expect_format_error(ctx, file, size, "general.alignment 48 is not a power of two");
    put_u32(file + value, 0);
    expect_format_error(ctx, file, size, "general.alignment 0 is not a power of two");
    put_u32(file + value - 4, OX_GGUF_INT32);
    expect_format_error(ctx, file, size, "general.alignment is a i32, not a u32");
    free(file);
    ox_context_free(ctx);
}

OX_TEST(bad_tensors)
{
    ox_context *ctx = new_context();
    size_t size;
    unsigned char *file = sample(ctx, &size);
    unsigned char *bad = malloc(size);
    tensor_fields q4k = locate_tensor(file, size, "blk.0.ffn_up.weight");
    tensor_fields f32 = locate_tensor(file, size, "token_embd.weight");

    memcpy(bad, file, size);
    put_u32(bad + q4k.type, 77);
    expect_format_error(ctx, bad, size, "tensor 'blk.0.ffn_up.weight': unknown tensor type id 77");
    char where[64];
    snprintf(where, sizeof where, "at byte %zu", q4k.type);
    ASSERT_CONTAINS(ox_errmsg(ctx), where);
    memcpy(bad, file, size);
    put_u32(bad + q4k.type, 5); /* removed Q4_3 */
    expect_format_error(ctx, bad, size, "unknown tensor type id 5");
    memcpy(bad, file, size);
    put_u32(bad + q4k.n_dims, 5);
    expect_format_error(ctx, bad, size, "5 dimensions (1 to 4 allowed)");
    memcpy(bad, file, size);
    put_u32(bad + q4k.n_dims, 0);
    expect_format_error(ctx, bad, size, "0 dimensions");
    memcpy(bad, file, size);
    put_u64(bad + q4k.dims + 8, 0);
    expect_format_error(ctx, bad, size, "dimension 1 is 0");
    memcpy(bad, file, size);
    put_u64(bad + q4k.dims, 100);
    expect_format_error(ctx, bad, size, "a row of 100 elements is not a multiple of the q4_k block");
    memcpy(bad, file, size);
    put_u64(bad + f32.dims, UINT64_C(1) << 40);
    put_u64(bad + f32.dims + 8, UINT64_C(1) << 40);
    expect_format_error(ctx, bad, size, "element count overflows");
    memcpy(bad, file, size);
    put_u64(bad + f32.dims, UINT64_C(1) << 61);
    expect_format_error(ctx, bad, size, "data size overflows");
    memcpy(bad, file, size);
    put_u64(bad + f32.dims, UINT64_C(1) << 20);
    expect_format_error(ctx, bad, size, "run past the end of the file");
    memcpy(bad, file, size);
    put_u64(bad + q4k.offset, UINT64_C(1) << 40);
    expect_format_error(ctx, bad, size, "run past the end of the file");
    memcpy(bad, file, size);
    put_u64(bad + q4k.offset, UINT64_MAX - 31);
    expect_format_error(ctx, bad, size, "run past the end of the file");
    memcpy(bad, file, size);
    put_u64(bad + q4k.offset, 33);
    expect_format_error(ctx, bad, size, "data offset 33 is not a multiple of the alignment 32");
    memcpy(bad, file, size);
    put_u64(bad + q4k.offset, 0); /* on top of token_embd.weight */
    expect_format_error(ctx, bad, size, "overlaps that of tensor 'token_embd.weight'");
    memcpy(bad, file, size);
    size_t k = find_bytes(file, size, "blk.0.attn_k.weight");
    memcpy(bad + k, "blk.0.attn_q.weight", 19);
    expect_format_error(ctx, bad, size, "tensor name 'blk.0.attn_q.weight' appears twice");
    memcpy(bad, file, size);
    put_u64(bad + f32.n_dims - strlen("token_embd.weight") - 8, 0);
    expect_format_error(ctx, bad, size, "tensor name is empty");
    free(bad);
    free(file);
    ox_context_free(ctx);
}

/* Tensor names: 63 bytes at most, as ggml's reader (GGML_MAX_NAME 64 with
 * its NUL); the writer refuses 64 and the reader a file that has them. */
OX_TEST(tensor_names_of_64_bytes_are_refused)
{
    ox_context *ctx = new_context();
    char name[70];
    memset(name, 'a', sizeof name);
    name[63] = '\0';
    float data[8] = {0};
    int64_t ne[1] = {8};
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(w, name, OX_GGML_TYPE_F32, 1, ne, data, sizeof data));
    name[63] = 'b';
    name[64] = '\0';
    ASSERT(ox_gguf_writer_add_tensor(w, name, OX_GGML_TYPE_F32, 1, ne, data, sizeof data) ==
           OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "is 64 bytes; GGUF allows at most 63");
    size_t size;
    ASSERT_OK(ctx, ox_gguf_writer_size(w, &size));
    unsigned char *file = malloc(size);
    ASSERT(file != NULL);
    ASSERT_OK(ctx, ox_gguf_writer_write_memory(w, file, size));
    ox_gguf_writer_free(w);
    ox_gguf *g = NULL;
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, file, size, &g)); /* 63: read */
    ox_gguf_close(g);
    /* the name's length made 64: its 64th byte is the dimension count's
     * first (1, not a NUL) */
    name[63] = '\0';
    size_t at = find_bytes(file, size, name);
    put_u64(file + at - 8, 64);
    expect_format_error(ctx, file, size, "is 64 bytes; GGUF allows at most 63");
    free(file);
    ox_context_free(ctx);
}

OX_TEST(bad_paths)
{
    ox_context *ctx = new_context();
    ox_gguf *g = (ox_gguf *)1;
    ASSERT(ox_gguf_open(ctx, "/nonexistent/model.gguf", &g) == OX_ERR_IO);
    ASSERT(g == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "gguf: /nonexistent/model.gguf: cannot open");
    ASSERT(ox_gguf_open(ctx, "/tmp", &g) == OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "is a directory");
    char path[] = "/tmp/ox_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT(ox_gguf_open(ctx, path, &g) == OX_ERR_FORMAT);
    unlink(path);
    ASSERT_CONTAINS(ox_errmsg(ctx), "empty file");
    ASSERT_CONTAINS(ox_errmsg(ctx), "at byte 0");
    ASSERT(ox_gguf_open(ctx, NULL, &g) == OX_ERR_INVALID);
    ASSERT(ox_gguf_open(NULL, "/tmp", &g) == OX_ERR_INVALID_HANDLE);
    ASSERT(ox_gguf_open_memory(ctx, NULL, 10, &g) == OX_ERR_INVALID);
    ox_context_free(ctx);
}

/* ---- fault injection: an allocator that fails after N allocations ---------- */

static long allocations_left = -1; /* -1: never fail */

static void *failing_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (allocations_left == 0) return NULL;
    if (allocations_left > 0) allocations_left--;
    return realloc(ptr, new_size);
}

OX_TEST(out_of_memory_at_every_allocation)
{
    ox_context_options options = {.struct_size = sizeof options, .alloc = failing_alloc,
                                  .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    size_t size;
    unsigned char *file = sample(ctx, &size);
    for (long n = 0;; n++) {
        ox_gguf *g;
        allocations_left = n;
        ox_status s = ox_gguf_open_memory(ctx, file, size, &g);
        allocations_left = -1;
        if (s == OX_OK) {
            check_sample(ctx, g);
            ox_gguf_close(g);
            ASSERT(n > 3);
            break;
        }
        ASSERT_MSG(s == OX_ERR_OUT_OF_MEMORY, "after %ld allocations: %s (%s)", n,
                   ox_status_name(s), ox_errmsg(ctx));
        ASSERT(n < 1000);
    }
    free(file);
    ox_context_free(ctx);
}

/* The writer's one buffer for filled tensors comes from the context's
 * allocator; without it the write fails and says so, creating no file. */
OX_TEST(writer_fill_out_of_memory)
{
    ox_context_options options = {.struct_size = sizeof options, .alloc = failing_alloc,
                                  .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    fill_log log = {.calls = 0};
    const int64_t ne[1] = {64};
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor_fill(w, "t", OX_GGML_TYPE_F32, 1, ne, 256,
                                                  fill_pattern, &log));
    char path[] = "/tmp/ox_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    unlink(path);
    allocations_left = 0;
    ox_status s = ox_gguf_writer_write_file(w, path);
    allocations_left = -1;
    ASSERT_EQ(s, OX_ERR_OUT_OF_MEMORY);
    ASSERT_CONTAINS(ox_errmsg(ctx), "out of memory for a tensor of 256 bytes");
    ASSERT_EQ(log.calls, 0);
    ASSERT(access(path, F_OK) != 0);
    ox_gguf_writer_free(w);
    ox_context_free(ctx);
}

/* A model file as a decode step sees it: ox_tune_model_matrices lists the
 * 2-D weights with their counts, leaves out norms, biases and the token
 * embedding, except where the output projection is tied to it. */
static void add_tensor(ox_context *ctx, ox_gguf_writer *w, const char *name, uint32_t type,
                       uint32_t dims, const int64_t *ne, size_t bytes)
{
    static unsigned char data[8192];
    ASSERT(bytes <= sizeof data);
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(w, name, type, dims, ne, data, bytes));
}

static ox_gguf *model_file(ox_context *ctx, bool with_output, unsigned char **file)
{
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    const int64_t q[2] = {64, 32}, wide[2] = {32, 64}, norm[1] = {64}, embd[2] = {64, 100};
    const size_t q4 = 64 / 32 * 18 * 32, f16 = 32 * 64 * 2, q8 = 64 / 32 * 34 * 100;
    add_tensor(ctx, w, "token_embd.weight", OX_GGML_TYPE_Q8_0, 2, embd, q8);
    add_tensor(ctx, w, "blk.0.attn_q.weight", OX_GGML_TYPE_Q4_0, 2, q, q4);
    add_tensor(ctx, w, "blk.1.attn_q.weight", OX_GGML_TYPE_Q4_0, 2, q, q4);
    add_tensor(ctx, w, "blk.0.ffn_down.weight", OX_GGML_TYPE_F16, 2, wide, f16);
    add_tensor(ctx, w, "blk.0.attn_norm.weight", OX_GGML_TYPE_F32, 1, norm, 256);
    add_tensor(ctx, w, "blk.0.attn_q.bias", OX_GGML_TYPE_F16, 2, wide, f16);
    if (with_output)
        add_tensor(ctx, w, "output.weight", OX_GGML_TYPE_Q8_0, 2, embd, q8);
    size_t size;
    ASSERT_OK(ctx, ox_gguf_writer_size(w, &size));
    *file = malloc(size);
    ASSERT(*file);
    ASSERT_OK(ctx, ox_gguf_writer_write_memory(w, *file, size));
    ox_gguf_writer_free(w);
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, *file, size, &g));
    return g;
}

OX_TEST(tune_model_matrices)
{
    ox_context *ctx = new_context();
    for (int with_output = 0; with_output < 2; with_output++) {
        unsigned char *file;
        ox_gguf *g = model_file(ctx, with_output, &file);
        ox_tune_matrix m[8];
        int n = -1;
        ASSERT_OK(ctx, ox_tune_model_matrices(g, m, 8, &n));
        /* file order: the (tied) embedding or the output projection last */
        ASSERT_EQ(n, 3);
        int at = with_output ? 2 : 0;
        ASSERT_EQ(m[at].dtype, OX_DTYPE_Q8_0);
        ASSERT_EQ(m[at].rows, 100);
        ASSERT_EQ(m[at].cols, 64);
        ASSERT_EQ(m[at].count, 1);
        const ox_tune_matrix *a = &m[with_output ? 0 : 1], *b = &m[with_output ? 1 : 2];
        ASSERT_EQ(a->dtype, OX_DTYPE_Q4_0);
        ASSERT_EQ(a->rows, 32);
        ASSERT_EQ(a->cols, 64);
        ASSERT_EQ(a->count, 2); /* two layers' attn_q merged */
        ASSERT_EQ(b->dtype, OX_DTYPE_F16);
        ASSERT_EQ(b->rows, 64);
        ASSERT_EQ(b->count, 1);
        /* fewer slots than shapes: refused, naming the limit */
        ASSERT(ox_tune_model_matrices(g, m, 2, &n) == OX_ERR_OUT_OF_RANGE);
        ASSERT_CONTAINS(ox_errmsg(ctx), "more than 2");
        ASSERT(ox_tune_model_matrices(g, NULL, 4, &n) == OX_ERR_INVALID);
        ASSERT(ox_tune_model_matrices(NULL, m, 4, &n) == OX_ERR_INVALID);
        ox_gguf_close(g);
        free(file);
    }
    ox_context_free(ctx);
}

OX_TEST_MAIN(roundtrip_memory_v3, roundtrip_file_v2_alignment_64, getter_errors,
             ggml_types_match_dtypes, writer_errors, writer_fill, truncated_everywhere,
             bad_header, bad_metadata, bad_alignment, bad_tensors,
             tensor_names_of_64_bytes_are_refused, bad_paths,
             out_of_memory_at_every_allocation, writer_fill_out_of_memory, tune_model_matrices)
