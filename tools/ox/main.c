/* ox: the OpenXPU command-line tool. This file holds the command table, the
 * global options (--help, --version) and the dispatch to each command. */
#include <errno.h>
#include <string.h>

#include "cli.h"

static const cli_command *const commands[] = {
    &cmd_devices,
    &cmd_check,
    &cmd_bench,
    &cmd_inspect,
    &cmd_tokenize,
    &cmd_quantize,
    &cmd_serve,
    &cmd_run,
    &cmd_bench_model,
    &cmd_plan,
    &cmd_kernel_check,
    &cmd_tune,
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(commands[i]->name, name) == 0) return commands[i];
    return NULL;
}

static void print_usage(FILE *out)
{
    fputs("Usage: ox [--help] [--version] COMMAND [OPTIONS]\n"
          "\n"
          "The OpenXPU command-line tool: list, check and benchmark the compute\n"
          "devices OpenXPU finds on this machine, and run GGUF models on them.\n"
          "\n"
          "Commands:\n",
          out);
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "  %-12s %s\n", "help", "show this help, or a command's with 'ox help COMMAND'");
    fputs("\n"
          "Options:\n"
          "  -h, --help     show this help and exit\n"
          "      --version  print the version and exit\n"
          "\n"
          "Environment:\n"
          "  OX_DEVICE        the device that the selection \"default\" names\n"
          "  OX_BACKEND_PATH  more directories (':'-separated) to load backend plugins from\n"
          "  OX_LOG           log level: debug, info, warn, error, off\n"
          "  OX_NUM_THREADS   worker threads of the CPU backend\n"
          "  OX_CACHE_DIR     compiled-kernel cache (default ~/.cache/openxpu; off: none)\n"
          "  OX_NATIVE_LIBS   0: no vendor libraries (cuBLAS...), portable kernels only\n"
          "\n"
          "Exit status: 0 on success, 1 on failure, 2 on a bad command line.\n"
          "Run 'ox COMMAND --help' for the options of a command.\n",
          out);
}

/* 'ox help [COMMAND]'; argv[0] is "help". */
static int run_help(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (argc > 2) return cli_usage_error(NULL, "help takes one command name, got %d", argc - 1);
    const cli_command *command = find_command(argv[1]);
    if (!command) return cli_usage_error(NULL, "unknown command '%s'", argv[1]);
    cli_print_usage(command, stdout);
    return CLI_EXIT_OK;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) return cli_usage_error(NULL, "no command given");

    const char *arg = argv[1];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0) {
        printf("ox (OpenXPU) %s\n", ox_version_string());
        return CLI_EXIT_OK;
    }
    if (strcmp(arg, "help") == 0) return run_help(argc - 1, argv + 1);
    if (arg[0] == '-') return cli_usage_error(NULL, "unknown option '%s'", arg);

    const cli_command *command = find_command(arg);
    if (!command) return cli_usage_error(NULL, "unknown command '%s'", arg);
    return command->run(command, argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
    int code = dispatch(argc, argv);
    /* A full disk or a closed pipe must not pass for success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ox: cannot write to standard output: %s\n", strerror(errno));
        if (code == CLI_EXIT_OK) code = CLI_EXIT_FAILURE;
    }
    return code;
}
