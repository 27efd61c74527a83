/* Tests of 'ox inspect': run the binary that OX_BIN names on a generated
 * GGUF file and on broken ones. */

#include <cjson/cJSON.h>

#include "gguf_sample.h"
#include "ox_test.h"
#include "run_ox.h"



/* Write the sample (patched at `at` with `v` when at != 0) to a temp file. */
static void write_sample(char *path, size_t at, uint32_t v)
{
    ox_context_options options = {.struct_size = sizeof options, .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    unsigned char *file;
    size_t size;
    ASSERT_OK(ctx, sample_build(ctx, 3, 0, &file, &size));
    if (at) memcpy(file + at, &v, 4);
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, file, size) == (ssize_t)size);
    close(fd);
    free(file);
    ox_context_free(ctx);
}

OX_TEST(inspect_text)
{
    char path[] = "/tmp/ox_test_inspect_XXXXXX";
    write_sample(path, 0, 0);
    ox_run *run = RUN_OX("inspect", path);
    unlink(path);
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "Architecture:      testarch");
    ASSERT_CONTAINS(run->out, "Name:              Sample");
    ASSERT_CONTAINS(run->out, "Context length:    2048");
    ASSERT_CONTAINS(run->out, "Vocabulary:        5");
    ASSERT_CONTAINS(run->out, "GGUF v3");
    ASSERT_CONTAINS(run->out, "q4_k 1");
    ASSERT_CONTAINS(run->out, "q2_k 1");
    ASSERT(strstr(run->out, "blk.0.ffn_up.weight") == NULL);
    free(run);
}

OX_TEST(inspect_tensors)
{
    char path[] = "/tmp/ox_test_inspect_XXXXXX";
    write_sample(path, 0, 0);
    ox_run *run = RUN_OX("inspect", "--tensors", path);
    unlink(path);
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "NAME");
    ASSERT_CONTAINS(run->out, "blk.0.ffn_down.weight");
    ASSERT_CONTAINS(run->out, "256 x 1 x 1 x 2");
    ASSERT_CONTAINS(run->out, "q6_k");
    free(run);
}

OX_TEST(inspect_json)
{
    char path[] = "/tmp/ox_test_inspect_XXXXXX";
    write_sample(path, 0, 0);
    ox_run *run = RUN_OX("inspect", "--json", "--tensors", path);
    unlink(path);
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    cJSON *root = cJSON_Parse(run->out);
    ASSERT_MSG(root != NULL, "not JSON: %s", run->out);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(root, "architecture")), "testarch");
    ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "context_length")), 2048);
    ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "vocab_size")), 5);
    ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "tensor_count")), 9);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(root, "embedding_length")));
    cJSON *q4k = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "tensor_types"), "q4_k");
    ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(q4k, "bytes")), 144);
    cJSON *tensors = cJSON_GetObjectItem(root, "tensors");
    ASSERT_EQ(cJSON_GetArraySize(tensors), 9);
    cJSON *first = cJSON_GetArrayItem(tensors, 0);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(first, "name")), "token_embd.weight");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(first, "type")), "f32");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(first, "shape")), 2);
    cJSON_Delete(root);
    free(run);
}

OX_TEST(inspect_broken_files)
{
    char path[] = "/tmp/ox_test_inspect_XXXXXX";
    write_sample(path, 4, 1); /* version 1 */
    ox_run *run = RUN_OX("inspect", path);
    unlink(path);
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "ox inspect: gguf: ");
    ASSERT_CONTAINS(run->err, "version 1 is not supported");
    ASSERT_CONTAINS(run->err, "at byte 4");
    free(run);

    char empty[] = "/tmp/ox_test_inspect_XXXXXX";
    int fd = mkstemp(empty);
    ASSERT(fd >= 0);
    close(fd);
    run = RUN_OX("inspect", empty);
    unlink(empty);
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "empty file");
    ASSERT_CONTAINS(run->err, "byte 0");
    free(run);

    run = RUN_OX("inspect", "/tmp");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "is a directory");
    free(run);
}

/* Strings from the file reach the terminal with their control characters
 * escaped (an ESC sequence in the architecture, a BEL and a UTF-8 C1 CSI
 * in a tensor name); --json escapes them as JSON does. */
OX_TEST(inspect_escapes_control_characters)
{
    ox_context_options options = {.struct_size = sizeof options, .flags = OX_CONTEXT_NO_PLUGINS};
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    const char arch[] = "ab\x1b[2Jcd";
    ASSERT_OK(ctx, ox_gguf_writer_add_string(w, "general.architecture", arch, strlen(arch)));
    float data[4] = {0};
    int64_t ne[1] = {4};
    ASSERT_OK(ctx, ox_gguf_writer_add_tensor(w, "t\x07x\xc2\x9bz", OX_GGML_TYPE_F32, 1, ne, data,
                                             sizeof data));
    char path[] = "/tmp/ox_test_inspect_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT_OK(ctx, ox_gguf_writer_write_file(w, path));
    ox_gguf_writer_free(w);
    ox_context_free(ctx);
    ox_run *run = RUN_OX("inspect", "--tensors", path);
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "Architecture:      ab\\x1b[2Jcd");
    ASSERT_CONTAINS(run->out, "t\\x07x\\u009bz");
    ASSERT(strchr(run->out, 0x1b) == NULL && strchr(run->out, 0x07) == NULL);
    free(run);
    run = RUN_OX("inspect", "--json", path);
    unlink(path);
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "ab\\u001b[2Jcd");
    free(run);
}

OX_TEST(inspect_usage)
{
    ox_run *run = RUN_OX("inspect");
    ASSERT_EQ(run->status, 2);
    ASSERT_CONTAINS(run->err, "no FILE given");
    free(run);
    run = RUN_OX("inspect", "a.gguf", "b.gguf");
    ASSERT_EQ(run->status, 2);
    free(run);
    run = RUN_OX("inspect", "--bogus", "a.gguf");
    ASSERT_EQ(run->status, 2);
    free(run);
    run = RUN_OX("inspect", "--help");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "--tensors");
    free(run);
}

OX_TEST_MAIN(inspect_text, inspect_tensors, inspect_json, inspect_broken_files,
             inspect_escapes_control_characters, inspect_usage)
