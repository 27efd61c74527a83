/* 'ox kernel-check FILE': does a user's kernel file (the portable dialect)
 * compile for every kernel API this machine can compile for? The CPU (the
 * system's C compiler), OpenCL (each platform's compiler, on its device),
 * CUDA (NVRTC, no GPU needed) and HIP (hiprtc, no GPU needed); per API the
 * answer and the compiler's messages. A kernel that fails one API will not
 * port there: better learned here than on the customer's machine.
 *
 * Each API is checked in a child process that loads only its backend
 * (OX_BACKENDS): vendor compilers bring their own LLVM, and two LLVMs in
 * one process abort it (PoCL's and ROCm's comgr do, measured). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

enum { OPTION_DEFINE, OPTION_API, OPTION_JSON };

static const cli_option kernel_check_options[] = {
    [OPTION_DEFINE] = {"define", "NAME[=VALUE]", "a build define, as -DNAME=VALUE (also -D)", 'D'},
    [OPTION_API] = {"api", "LIST", "the APIs to check, comma-separated (default: cpu,opencl,cuda,"
                                   "hip)", 0},
    [OPTION_JSON] = {"json", NULL, "print the results as JSON", 0},
    {NULL, NULL, NULL, 0},
};

#define MAX_OPTIONS_TEXT 4096

static const char *const all_apis[] = {"cpu", "opencl", "cuda", "hip"};
#define API_COUNT (sizeof all_apis / sizeof all_apis[0])

typedef enum { RESULT_COMPILES, RESULT_FAILS, RESULT_NOT_CHECKED } result_kind;

static const char *result_word(result_kind kind)
{
    return kind == RESULT_COMPILES ? "compiles" : kind == RESULT_FAILS ? "FAILS" : "not checked";
}

/* Print a block of messages indented under its API. */
static void print_indented(const char *text)
{
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        printf("      %.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

typedef struct check_result {
    result_kind kind;
    char target[256];
    char *messages; /* malloc'ed */
} check_result;

/* In a child: check the source for one API and write the result to fd as
 * "KIND\nTARGET\nMESSAGES". */
static void check_child(int fd, const char *api, const char *source, const char *options)
{
    setenv("OX_BACKENDS", api, 1); /* "cpu": no plugin at all */
    ox_context *ctx;
    char head[300];
    if (ox_context_create(NULL, &ctx) != OX_OK) {
        int n = snprintf(head, sizeof head, "%d\n\n", RESULT_NOT_CHECKED);
        if (write(fd, head, (size_t)n) < 0 || write(fd, ox_errmsg(NULL), strlen(ox_errmsg(NULL))) < 0)
            _exit(1);
        _exit(0);
    }
    char target[256] = "";
    char *warnings = NULL;
    ox_status s = ox_program_check(ctx, api, source, options, target, sizeof target, &warnings);
    result_kind kind = s == OX_OK          ? RESULT_COMPILES
                       : s == OX_ERR_BUILD ? RESULT_FAILS
                                           : RESULT_NOT_CHECKED;
    const char *messages = s == OX_OK ? (warnings ? warnings : "") : ox_errmsg(ctx);
    int n = snprintf(head, sizeof head, "%d\n%s\n", kind, target);
    int ok = write(fd, head, (size_t)n) == n;
    for (size_t done = 0, len = strlen(messages); ok && done < len;) {
        ssize_t w = write(fd, messages + done, len - done);
        if (w <= 0) ok = 0;
        else done += (size_t)w;
    }
    _exit(ok ? 0 : 1);
}

/* Check one API in a child process; a child that dies says how. */
static int check_api(const cli_command *command, const char *api, const char *source,
                     const char *options, check_result *out)
{
    memset(out, 0, sizeof *out);
    int fds[2];
    if (pipe(fds) != 0) return cli_error(command, "pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return cli_error(command, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        check_child(fds[1], api, source, options);
    }
    close(fds[1]);
    size_t cap = 4096, n = 0;
    char *text = malloc(cap);
    for (ssize_t r = 1; text && r > 0;) {
        if (n + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger) free(text);
            text = bigger;
            if (!text) break;
        }
        r = read(fds[0], text + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) r = 1;
        else if (r > 0) n += (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!text) return cli_error(command, "out of memory");
    text[n] = '\0';
    char *line1 = strchr(text, '\n'), *line2 = line1 ? strchr(line1 + 1, '\n') : NULL;
    if (!WIFEXITED(status) || !line2) {
        out->kind = RESULT_NOT_CHECKED;
        char why[160];
        if (WIFSIGNALED(status))
            snprintf(why, sizeof why, "the check of %s stopped: killed by signal %d (%s); its "
                     "compiler's messages are above", api, WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        else
            snprintf(why, sizeof why, "the check of %s gave no result (exit status %d)", api,
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        free(text);
        out->messages = strdup(why);
        return out->messages ? CLI_EXIT_OK : cli_error(command, "out of memory");
    }
    *line1 = *line2 = '\0';
    out->kind = (result_kind)atoi(text);
    snprintf(out->target, sizeof out->target, "%s", line1 + 1);
    memmove(text, line2 + 1, strlen(line2 + 1) + 1);
    out->messages = text;
    return CLI_EXIT_OK;
}

static bool api_wanted(const char *list, const char *api)
{
    if (!list) return true;
    size_t n = strlen(api);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, api, n) == 0) return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static int check_file(const cli_command *command, int argc, char **argv);

static int run_kernel_check(const cli_command *command, int argc, char **argv)
{
    /* -DNAME=VALUE, glued as compilers take it, is --define=NAME=VALUE */
    char **glued = calloc((size_t)argc + 1, sizeof *glued);
    if (!glued) return cli_error(command, "out of memory");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strncmp(argv[i], "-D", 2) == 0 && argv[i][2]) {
            size_t n = strlen(argv[i]) + 8;
            if (!(glued[i] = malloc(n))) break;
            snprintf(glued[i], n, "--define=%s", argv[i] + 2);
            argv[i] = glued[i];
        }
    }
    int status = check_file(command, argc, argv);
    for (int i = 0; i < argc; i++) free(glued[i]);
    free(glued);
    return status;
}

static int check_file(const cli_command *command, int argc, char **argv)
{
    cli_parser parser;
    cli_parser_init(&parser, command, argc, argv);
    const char *file = NULL, *apis = NULL, *value;
    char options[MAX_OPTIONS_TEXT] = "";
    size_t options_len = 0;
    int json = 0, r, status = CLI_EXIT_OK;
    while ((r = cli_parse_next(&parser, &value)) != CLI_PARSE_END) {
        switch (r) {
        case OPTION_DEFINE: {
            if (!*value || strchr(value, ' '))
                return cli_usage_error(command, "--define '%s': NAME or NAME=VALUE, no blanks",
                                       value);
            int n = snprintf(options + options_len, sizeof options - options_len, "%s-D%s",
                             options_len ? " " : "", value);
            if (n < 0 || (size_t)n >= sizeof options - options_len)
                return cli_usage_error(command, "the defines exceed %d bytes", MAX_OPTIONS_TEXT);
            options_len += (size_t)n;
            break;
        }
        case OPTION_API: apis = value; break;
        case OPTION_JSON: json = 1; break;
        case CLI_PARSE_OPERAND:
            if (file) return cli_usage_error(command, "one kernel file, please");
            file = value;
            break;
        default: return cli_parse_stop(command, r);
        }
    }
    if (!file) return cli_usage_error(command, "which kernel file?");
    /* the file's folder is on the include path, as for a compiler given
     * the file itself: #include "helpers.h" beside it works */
    {
        const char *slash = strrchr(file, '/');
        int n = slash ? snprintf(options + options_len, sizeof options - options_len,
                                 "%s-I%.*s", options_len ? " " : "", (int)(slash - file + 1), file)
                      : snprintf(options + options_len, sizeof options - options_len,
                                 "%s-I.", options_len ? " " : "");
        if (strchr(file, ' '))
            return cli_usage_error(command, "'%s': a path without blanks, please (it becomes -I)",
                                   file);
        if (n < 0 || (size_t)n >= sizeof options - options_len)
            return cli_usage_error(command, "the options exceed %d bytes", MAX_OPTIONS_TEXT);
        options_len += (size_t)n;
    }
    if (apis) {
        for (const char *p = apis; *p;) {
            size_t len = strcspn(p, ",");
            bool known = false;
            for (size_t i = 0; i < API_COUNT; i++)
                known |= strlen(all_apis[i]) == len && strncmp(p, all_apis[i], len) == 0;
            if (!known)
                return cli_usage_error(command, "--api: '%.*s' is none of cpu, opencl, cuda, hip",
                                       (int)len, p);
            p += len + (p[len] == ',');
        }
    }
    size_t size;
    char *source = cli_read_file(command, file, &size);
    if (!source) return CLI_EXIT_FAILURE;
    if (strlen(source) != size) {
        free(source);
        return cli_error(command, "%s holds a NUL byte: not a kernel source", file);
    }
    cJSON *root = json ? cli_json_document() : NULL, *results = NULL;
    if (root) {
        cJSON_AddStringToObject(root, "file", file);
        cJSON_AddStringToObject(root, "options", options);
        results = cJSON_AddArrayToObject(root, "apis");
    }
    if (!json) printf("%s%s%s\n", file, options_len ? " with " : "", options);
    int checked = 0, failed = 0;
    for (size_t i = 0; i < API_COUNT; i++) {
        const char *api = all_apis[i];
        if (!api_wanted(apis, api)) continue;
        check_result res;
        if ((status = check_api(command, api, source, options, &res)) != CLI_EXIT_OK) break;
        result_kind kind = res.kind;
        const char *target = res.target, *messages = res.messages;
        checked += kind != RESULT_NOT_CHECKED;
        failed += kind == RESULT_FAILS;
        if (root) {
            cJSON *item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "api", api);
            cJSON_AddStringToObject(item, "result", kind == RESULT_COMPILES ? "compiles"
                                                    : kind == RESULT_FAILS  ? "fails"
                                                                            : "not checked");
            cJSON_AddStringToObject(item, "target", target);
            cJSON_AddStringToObject(item, "messages", messages);
            cJSON_AddItemToArray(results, item);
        } else {
            printf("  %-7s %-11s %s\n", api, result_word(kind), target);
            if (*messages) print_indented(messages);
        }
        free(res.messages);
    }
    if (status != CLI_EXIT_OK) {
        cJSON_Delete(root);
    } else if (root) {
        cJSON_AddBoolToObject(root, "portable", checked > 0 && failed == 0);
        status = cli_json_write(command, root, "-");
        cJSON_Delete(root);
    } else if (checked == 0) {
        printf("no API could be checked here\n");
    } else {
        printf("%s\n", failed ? "does not compile everywhere it was checked"
                              : "compiles everywhere it was checked");
    }
    free(source);
    if (status != CLI_EXIT_OK) return status;
    return checked > 0 && failed == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

const cli_command cmd_kernel_check = {
    .name = "kernel-check",
    .summary = "check that a kernel file compiles for every kernel API here",
    .description =
        "Compile FILE, a kernel source in the portable dialect (docs/KERNELS.md), for each\n"
        "kernel API this machine can compile for, and report per API whether it compiles,\n"
        "with the compiler's messages: cpu (the system's C compiler), opencl (on the first\n"
        "OpenCL device), cuda (NVRTC, PTX for compute_80; no GPU needed) and hip (hiprtc,\n"
        "gfx90a; no GPU needed). The file's folder is on the include path. An API whose\n"
        "compiler or plugin is missing is 'not\n"
        "checked', with the reason. Exit status 0 when every checked API compiles, 1 when\n"
        "one fails or none could be checked.",
    .options = kernel_check_options,
    .run = run_kernel_check,
    .operands = "FILE",
};
