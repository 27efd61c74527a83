/* Helpers shared by the commands of the ox tool: the command table entry,
 * option parsing, usage and error messages, opening a context, selecting
 * devices, sizes, timing and JSON output.
 *
 * Helpers that can fail print their own message to stderr ("ox CMD: ...")
 * and return an exit status, so a command only passes the status on. */
#ifndef OX_TOOLS_CLI_H
#define OX_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <openxpu/openxpu.h>

#if defined(__GNUC__) || defined(__clang__)
#  define CLI_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#  define CLI_PRINTF(fmt, args)
#endif

/* Exit statuses of ox and of every command. */
enum {
    CLI_EXIT_OK = 0,      /* success, every check passed */
    CLI_EXIT_FAILURE = 1, /* a library error, a write error or a failed check */
    CLI_EXIT_USAGE = 2    /* bad command line */
};

/* One option of a command, used both to parse and to print --help.
 * Every command also accepts -h/--help, which is not listed here. */
typedef struct cli_option {
    const char *name;     /* long name without dashes: "device" */
    const char *argument; /* placeholder for its value ("SEL"); NULL: a flag */
    const char *help;     /* one line for --help */
    char short_name;      /* 'p' for -p, or 0 */
} cli_option;

typedef struct cli_command cli_command;

/* Runs a command; argv[0] is the command's name. Returns an exit status. */
typedef int (*cli_run_fn)(const cli_command *command, int argc, char **argv);

struct cli_command {
    const char *name;          /* "devices" */
    const char *summary;       /* one line for 'ox --help' */
    const char *description;   /* paragraph for 'ox CMD --help' */
    const cli_option *options; /* ends with an entry whose name is NULL */
    cli_run_fn run;
    const char *operands;      /* "[OP...]" if it takes operands; NULL if none */
};

/* The commands, one per cmd_*.c file. */
extern const cli_command cmd_devices;
extern const cli_command cmd_check;
extern const cli_command cmd_bench;
extern const cli_command cmd_inspect;
extern const cli_command cmd_tokenize;
extern const cli_command cmd_run;
extern const cli_command cmd_bench_model;
extern const cli_command cmd_plan;
extern const cli_command cmd_kernel_check;
extern const cli_command cmd_tune;
extern const cli_command cmd_quantize;
extern const cli_command cmd_serve;

/* ---- option parsing ----------------------------------------------------- */

/* Walks argv[1..] of a command. Accepts --name, --name VALUE, --name=VALUE,
 * -x and -x VALUE for options with a short name, -h/--help and "--"; operands (arguments not starting with '-', and every
 * argument after "--") only if the command takes them; anything else is a
 * usage error. */
typedef struct cli_parser {
    const cli_command *command;
    int argc;
    char **argv;
    int next;          /* index of the next argument to read */
    int operands_only; /* after "--" */
} cli_parser;

enum {
    CLI_PARSE_END = -1,    /* no more arguments */
    CLI_PARSE_HELP = -2,   /* -h or --help */
    CLI_PARSE_ERROR = -3,  /* a usage error, already printed */
    CLI_PARSE_OPERAND = -4 /* an operand, in *value */
};

void cli_parser_init(cli_parser *parser, const cli_command *command, int argc, char **argv);

/* The next option: its index in command->options with *value set to its
 * argument (borrowed from argv) or NULL for a flag; or a CLI_PARSE_* code
 * (CLI_PARSE_OPERAND with *value the operand). */
int cli_parse_next(cli_parser *parser, const char **value);

/* The exit status for a CLI_PARSE_HELP or CLI_PARSE_ERROR result: prints
 * the command's usage to stdout for help (status 0), else returns 2. */
int cli_parse_stop(const cli_command *command, int parse_result);

/* ---- messages ------------------------------------------------------------ */

/* The usage of a command: synopsis, description and options. */
void cli_print_usage(const cli_command *command, FILE *out);

/* "ox CMD: <message>" and "Try 'ox CMD --help'." on stderr; with command
 * NULL, "ox: <message>" and "Try 'ox --help'.". Returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_command *command, const char *format, ...) CLI_PRINTF(2, 3);

/* "ox CMD: <message>" on stderr. Returns CLI_EXIT_FAILURE. */
int cli_error(const cli_command *command, const char *format, ...) CLI_PRINTF(2, 3);

/* "ox CMD: <ox_errmsg(ctx)>" on stderr (the status' description if the
 * library left no message). Returns CLI_EXIT_FAILURE. */
int cli_library_error(const cli_command *command, const ox_context *ctx, ox_status status);

/* ---- the runtime ---------------------------------------------------------- */

/* Create a context with default options; on failure print ox_errmsg(NULL)
 * and return CLI_EXIT_FAILURE. The caller frees *ctx with ox_context_free. */
int cli_context_open(const cli_command *command, ox_context **ctx);
/* The same, in reproducible mode when `reproducible` (OX_CONTEXT_REPRODUCIBLE). */
int cli_context_open_mode(const cli_command *command, int reproducible, ox_context **ctx);

/* An option taking one of two words ("f16" or "f32"): *second is whether
 * value is the second; anything else is a usage error naming the option. */
int cli_parse_choice(const cli_command *command, const char *option, const char *value,
                     const char *first, const char *second, bool *is_second);

/* Whether `value` is one of name(0), name(1), ... up to the first NULL
 * (ignoring case when nocase), and those names as "a, b, c" into list (for
 * the message when it is not). */
bool cli_name_known(const char *(*name)(int), const char *value, bool nocase);
void cli_name_list(const char *(*name)(int), char *list, size_t cap);

#define CLI_MAX_DEVICES 16
/* The devices of a --device selection ("cpu", "cpu,opencl:0", "all"; NULL:
 * the default device), at most CLI_MAX_DEVICES, into devices[] and *n. */
int cli_select_devices(const cli_command *command, ox_context *ctx, const char *selection,
                       ox_device **devices, int *n);

/* "cpu:0 layers 0-15, opencl:0 layers 16-17" for a pipeline's stages. */
void cli_describe_stages(const ox_pipeline *pipe, char *text, size_t cap);

/* The devices `selection` names (see ox_device_select), or every device
 * when it is NULL. *devices is malloc'ed (NULL when *count is 0) and freed
 * by the caller; the device pointers are borrowed from the context.
 * Returns CLI_EXIT_OK, or prints the error and returns CLI_EXIT_FAILURE. */
int cli_devices_select(const cli_command *command, ox_context *ctx, const char *selection,
                       ox_device ***devices, int *count);

/* Describe a device; on failure print the error and return CLI_EXIT_FAILURE. */
int cli_device_info(const cli_command *command, const ox_device *device, ox_device_info *info);

/* The bytes of a file, malloc'ed, NUL-terminated past *size; NULL after
 * printing why (the errno reason, a directory, a file past `limit` bytes
 * with `what` naming the limit: "prompt files"). cli_read_file's limit is
 * CLI_FILE_LIMIT. */
#define CLI_FILE_LIMIT ((size_t)64 << 20)
#define CLI_PROMPT_LIMIT ((size_t)16 << 20)
char *cli_read_file(const cli_command *command, const char *path, size_t *size);
char *cli_read_file_max(const cli_command *command, const char *path, size_t limit,
                        const char *what, size_t *size);

/* While a command has the model file `path` mapped: a SIGBUS (the file
 * truncated or rewritten under the mapping) ends the process with exit
 * status 1 and "the model file PATH changed while in use" on stderr, not a
 * crash. The path is copied; call again for another file. */
void cli_guard_mapping(const cli_command *command, const char *path);

/* A hash of the whole file (XXH3-64 over 64 MiB pieces on all cores; the
 * same on every machine), cached by path, size, mtime, device and inode in
 * $XDG_CACHE_HOME/openxpu/file-hashes; *size its bytes. CLI_EXIT_OK, or
 * CLI_EXIT_FAILURE after printing why. */
int cli_file_hash(const cli_command *command, const char *path, uint64_t *hash, uint64_t *size);

/* A hash of `n` bytes (XXH3-64 where the build has libxxhash, else
 * FNV-1a 64), and its name ("xxh3-64", "fnv1a-64"): certificates record
 * it, so that two hashes are compared only when made alike. */
uint64_t cli_bytes_hash(const void *data, size_t n);
const char *cli_bytes_hash_name(void);

/* 64 random bits from the kernel (getrandom), for default seeds: two runs
 * started in the same second differ. Falls back to the clock's
 * nanoseconds mixed with the process id if the call fails. */
uint64_t cli_random_seed(void);

/* ---- formatting ----------------------------------------------------------- */

/* `text` for a terminal: control characters (C0, DEL and the C1 range, raw or
 * UTF-8-encoded) written as \xNN, so that no string from a file reaches the
 * terminal as an escape sequence; cut to fit `cap` (with "..."). Returns
 * `out`. */
const char *cli_printable(const char *text, char *out, size_t cap);

/* "512 B", "4.0 KiB", "23.4 GiB". */
void cli_format_bytes(uint64_t bytes, char *buffer, size_t size);

/* The name of feature bit `bit` (ox_feature_str), or "bitN" written into
 * `buffer` when the library does not know it. */
const char *cli_feature_name(int bit, char *buffer, size_t size);

/* Names of the feature bits set in `features`, space-separated ("avx avx2
 * fma"); unknown bits appear as "bit42". Truncated to fit. */
void cli_format_features(uint64_t features, char *buffer, size_t size);

/* "850 ns", "12.3 us", "4.56 ms", "1.23 s". */
void cli_format_seconds(double seconds, char *buffer, size_t size);

/* Seconds from a monotonic clock, for timing. */
double cli_seconds(void);

/* ---- JSON ------------------------------------------------------------------ */

/* A new object holding "version": ox_version_string(); NULL when out of
 * memory. The caller frees it with cJSON_Delete. */
cJSON *cli_json_document(void);

/* Add an unsigned integer (JSON numbers are doubles: exact below 2^53). */
void cli_json_add_u64(cJSON *object, const char *name, uint64_t value);

/* Print `root` as indented JSON to `path` ("-" = stdout). Returns
 * CLI_EXIT_OK, or prints the error and returns CLI_EXIT_FAILURE. */
int cli_json_write(const cli_command *command, const cJSON *root, const char *path);

#endif /* OX_TOOLS_CLI_H */
