/* Tests of 'ox tokenize': run the binary OX_BIN names on the gpt-2 and
 * llama-spm vocabularies of tests/data/tokenizer. */

#include <cjson/cJSON.h>

#include "ox_test.h"
#include "run_ox.h"


#define GPT2 OX_TOKENIZER_DATA "/ggml-vocab-gpt-2.gguf"
#define SPM OX_TOKENIZER_DATA "/ggml-vocab-llama-spm.gguf"

OX_TEST(tokenize_text)
{
    ox_run *r = RUN_OX("tokenize", GPT2, "-p", "Hello world");
    ASSERT_MSG(r->status == 0, "%s", r->err);
    ASSERT_STR_EQ(r->out, "15496\t'Hello'\n995\t'\xc4\xa0world'\n");
    free(r);
}

OX_TEST(tokenize_ids_bos)
{
    ox_run *r = RUN_OX("tokenize", SPM, "--ids", "-p", "Hello world");
    ASSERT_MSG(r->status == 0, "%s", r->err);
    ASSERT_STR_EQ(r->out, "1 15043 3186\n");
    free(r);
    r = RUN_OX("tokenize", SPM, "--ids", "--no-bos", "-p", "Hello world");
    ASSERT_STR_EQ(r->out, "15043 3186\n");
    free(r);
}

OX_TEST(tokenize_file_json)
{
    char path[] = "/tmp/ox-tokenize-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, "Hello world", 11) == 11);
    close(fd);
    ox_run *r = RUN_OX("tokenize", GPT2, "-f", path, "--json");
    unlink(path);
    ASSERT_MSG(r->status == 0, "%s", r->err);
    cJSON *root = cJSON_Parse(r->out);
    ASSERT_MSG(root, "not JSON: %s", r->out);
    cJSON *ids = cJSON_GetObjectItem(root, "ids"), *pieces = cJSON_GetObjectItem(root, "pieces");
    ASSERT(cJSON_GetArraySize(ids) == 2 && cJSON_GetArraySize(pieces) == 2);
    ASSERT_EQ(cJSON_GetArrayItem(ids, 1)->valueint, 995);
    ASSERT_STR_EQ(cJSON_GetArrayItem(pieces, 0)->valuestring, "Hello");
    cJSON_Delete(root);
    free(r);
}

OX_TEST(tokenize_errors)
{
    ox_run *r = RUN_OX("tokenize", "--help");
    ASSERT_EQ(r->status, 0);
    ASSERT(strstr(r->out, "--no-bos"));
    free(r);
    r = RUN_OX("tokenize", GPT2);
    ASSERT_EQ(r->status, 2);
    free(r);
    r = RUN_OX("tokenize", GPT2, "-p", "x", "-f", "y");
    ASSERT_EQ(r->status, 2);
    free(r);
    r = RUN_OX("tokenize", "/nonexistent.gguf", "-p", "x");
    ASSERT_EQ(r->status, 1);
    ASSERT(strstr(r->err, "nonexistent"));
    free(r);
    r = RUN_OX("tokenize", OX_TOKENIZER_DATA "/ggml-vocab-bert-bge.gguf", "-p", "x");
    ASSERT_EQ(r->status, 1);
    ASSERT(strstr(r->err, "bert"));
    free(r);
}

OX_TEST_MAIN(tokenize_text, tokenize_ids_bos, tokenize_file_json, tokenize_errors)
