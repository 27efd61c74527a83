/* Running the ox binary from tests: "ox ARGS..." with stdout and stderr
 * captured and the exit status, for the tests of each command. The binary
 * is the one OX_BIN names (set by ctest). */
#ifndef OX_TEST_RUN_OX_H
#define OX_TEST_RUN_OX_H

#include <spawn.h>

#include "ox_test.h"

extern char **environ;

/* One allocation: free(run) releases the texts too. */
typedef struct ox_run {
    int status; /* exit status; 128 + signal if killed */
    char *out;  /* standard output, NUL-terminated, whole */
    char *err;  /* standard error */
} ox_run;

static inline size_t file_size(FILE *file)
{
    ASSERT(fseek(file, 0, SEEK_END) == 0);
    long n = ftell(file);
    ASSERT(n >= 0);
    rewind(file);
    return (size_t)n;
}

static inline void read_into(FILE *file, char *buf, size_t n)
{
    ASSERT(fread(buf, 1, n, file) == n);
    buf[n] = '\0';
    fclose(file);
}

/* The whole of a (regular) file, NUL-terminated; closes it. Free with
 * free(). */
static inline char *read_all(FILE *file)
{
    size_t n = file_size(file);
    char *text = malloc(n + 1);
    ASSERT(text != NULL);
    read_into(file, text, n);
    return text;
}

/* Start argv[0] (looked up in PATH) with argv (ends with NULL), its stdout
 * and stderr into two new temporary files (*out, *err); its pid. For tests
 * that signal or watch the process while it runs. */
static inline pid_t spawn_program(char *const *argv, FILE **out, FILE **err)
{
    *out = tmpfile();
    *err = tmpfile();
    ASSERT(*out && *err);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fileno(*out), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fileno(*err), STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &actions, NULL, argv, environ);
    ASSERT_MSG(rc == 0, "cannot run %s: %s", argv[0], strerror(rc));
    posix_spawn_file_actions_destroy(&actions);
    return pid;
}

/* Run argv[0] (looked up in PATH) with argv (ends with NULL), capturing
 * stdout, stderr and the exit status. Free the result with free(). */
static inline ox_run *run_program(char *const *argv)
{
    FILE *out, *err;
    pid_t pid = spawn_program(argv, &out, &err);
    int wstatus = 0;
    ASSERT(waitpid(pid, &wstatus, 0) == pid);
    size_t n_out = file_size(out), n_err = file_size(err);
    ox_run *run = malloc(sizeof *run + n_out + 1 + n_err + 1);
    ASSERT(run != NULL);
    run->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    run->out = (char *)(run + 1);
    run->err = run->out + n_out + 1;
    read_into(out, run->out, n_out);
    read_into(err, run->err, n_err);
    return run;
}

/* Run "ox ARGS..." (args ends with NULL). */
static inline ox_run *run_ox(const char *const *args)
{
    const char *bin = getenv("OX_BIN");
    ASSERT_MSG(bin && bin[0], "OX_BIN must name the ox binary (ctest sets it)");
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)bin;
    while (args[argc - 1]) {
        ASSERT(argc < 31);
        argv[argc] = (char *)args[argc - 1];
        argc++;
    }
    argv[argc] = NULL;
    return run_program(argv);
}

#define RUN_OX(...) run_ox((const char *const[]){__VA_ARGS__, NULL})
#define RUN_PROGRAM(...) run_program((char *const[]){__VA_ARGS__, NULL})

#endif /* OX_TEST_RUN_OX_H */
