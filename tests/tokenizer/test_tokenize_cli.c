/* Tests of 'ox tokenize': run the binary OX_BIN names on the gpt-2 and
 * llama-spm vocabularies of tests/data/tokenizer. */
#include <spawn.h>

#include <cjson/cJSON.h>

#include "ox_test.h"

extern char **environ;

typedef struct ox_run {
    int status;
    char out[65536];
    char err[8192];
} ox_run;

static void read_into(FILE *file, char *buf, size_t cap)
{
    rewind(file);
    size_t n = fread(buf, 1, cap - 1, file);
    buf[n] = '\0';
    fclose(file);
}

/* Run "ox ARGS..." (args ends with NULL). */
static ox_run *run_ox(const char *const *args)
{
    const char *bin = getenv("OX_BIN");
    ASSERT_MSG(bin && bin[0], "OX_BIN must name the ox binary (ctest sets it)");
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)bin;
    while (args[argc - 1]) {
        ASSERT(argc < 15);
        argv[argc] = (char *)args[argc - 1];
        argc++;
    }
    argv[argc] = NULL;
    FILE *out = tmpfile(), *err = tmpfile();
    ASSERT(out && err);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fileno(out), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fileno(err), STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &actions, NULL, argv, environ);
    ASSERT_MSG(rc == 0, "cannot run %s: %s", bin, strerror(rc));
    posix_spawn_file_actions_destroy(&actions);
    int wstatus = 0;
    ASSERT(waitpid(pid, &wstatus, 0) == pid);
    ox_run *run = calloc(1, sizeof *run);
    ASSERT(run != NULL);
    run->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    read_into(out, run->out, sizeof run->out);
    read_into(err, run->err, sizeof run->err);
    return run;
}

#define RUN_OX(...) run_ox((const char *const[]){__VA_ARGS__, NULL})
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
