/* Helpers shared by the commands of the ox tool: option parsing, messages,
 * context and device selection, formatting and JSON output. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- option parsing ------------------------------------------------------ */

void cli_parser_init(cli_parser *parser, const cli_command *command, int argc, char **argv)
{
    parser->command = command;
    parser->argc = argc;
    parser->argv = argv;
    parser->next = 1;
    parser->operands_only = 0;
}

static int find_option(const cli_command *command, const char *name, size_t length)
{
    for (int i = 0; command->options[i].name; i++) {
        const char *candidate = command->options[i].name;
        if (strlen(candidate) == length && strncmp(candidate, name, length) == 0) return i;
    }
    return -1;
}

/* The option whose short name is c, or -1. */
static int find_short(const cli_command *command, char c)
{
    for (int i = 0; command->options[i].name; i++)
        if (command->options[i].short_name == c) return i;
    return -1;
}

int cli_parse_next(cli_parser *parser, const char **value)
{
    *value = NULL;
    if (parser->next >= parser->argc) return CLI_PARSE_END;

    const char *arg = parser->argv[parser->next++];
    int takes_operands = parser->command->operands != NULL;
    if (parser->operands_only) {
        *value = arg;
        return CLI_PARSE_OPERAND;
    }
    if (strcmp(arg, "--") == 0) {
        if (takes_operands) {
            parser->operands_only = 1;
            return cli_parse_next(parser, value);
        }
        if (parser->next < parser->argc) {
            cli_usage_error(parser->command, "unexpected argument '%s'",
                            parser->argv[parser->next]);
            return CLI_PARSE_ERROR;
        }
        return CLI_PARSE_END;
    }
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) return CLI_PARSE_HELP;
    if (arg[0] != '-' || arg[1] == '\0') {
        if (takes_operands) {
            *value = arg;
            return CLI_PARSE_OPERAND;
        }
        cli_usage_error(parser->command, "unexpected argument '%s'", arg);
        return CLI_PARSE_ERROR;
    }
    const char *equals = NULL;
    int index = -1;
    if (arg[1] != '-') { /* -x: a short name, its value in the next argument */
        for (int i = 0; arg[2] == '\0' && parser->command->options[i].name; i++)
            if (parser->command->options[i].short_name == arg[1]) index = i;
        if (index < 0) {
            cli_usage_error(parser->command, "unknown option '%s'", arg);
            return CLI_PARSE_ERROR;
        }
    } else {
        const char *name = arg + 2;
        equals = strchr(name, '=');
        size_t length = equals ? (size_t)(equals - name) : strlen(name);
        index = find_option(parser->command, name, length);
        if (index < 0) {
            cli_usage_error(parser->command, "unknown option '--%.*s'", (int)length, name);
            return CLI_PARSE_ERROR;
        }
    }

    const cli_option *option = &parser->command->options[index];
    if (!option->argument) {
        if (equals) {
            cli_usage_error(parser->command, "option '--%s' takes no argument", option->name);
            return CLI_PARSE_ERROR;
        }
        return index;
    }
    if (equals) {
        *value = equals + 1;
        return index;
    }
    if (parser->next >= parser->argc) {
        cli_usage_error(parser->command, "option '--%s' needs an argument (%s)", option->name,
                        option->argument);
        return CLI_PARSE_ERROR;
    }
    /* a separate value that is itself one of the command's options ("-p -n
     * 2") is a forgotten value, not a prompt that starts with a dash; the
     * --name=VALUE form takes such a value on purpose */
    const char *next = parser->argv[parser->next];
    if (next[0] == '-' && next[1] != '\0' && strcmp(next, "--") != 0 &&
        (strcmp(next, "-h") == 0 || strcmp(next, "--help") == 0 ||
         (next[1] != '-' && next[2] == '\0' &&
          (next[1] == 'h' || find_short(parser->command, next[1]) >= 0)) ||
         (next[1] == '-' && find_option(parser->command, next + 2, strcspn(next + 2, "=")) >= 0))) {
        cli_usage_error(parser->command, "option '--%s' needs an argument (%s), but '%s' is an "
                        "option; to give it as the value, write --%s=%s", option->name,
                        option->argument, next, option->name, next);
        return CLI_PARSE_ERROR;
    }
    *value = parser->argv[parser->next++];
    return index;
}

int cli_parse_stop(const cli_command *command, int parse_result)
{
    if (parse_result == CLI_PARSE_HELP) {
        cli_print_usage(command, stdout);
        return CLI_EXIT_OK;
    }
    return CLI_EXIT_USAGE;
}

/* ---- messages ------------------------------------------------------------- */

void cli_print_usage(const cli_command *command, FILE *out)
{
    const cli_option *options = command->options;
    int width = (int)strlen("-h, --help");
    for (int i = 0; options[i].name; i++) {
        int w = 8 + (int)strlen(options[i].name);
        if (options[i].argument) w += 1 + (int)strlen(options[i].argument);
        if (w > width) width = w;
    }

    fprintf(out, "Usage: ox %s [OPTIONS]%s%s\n\n", command->name, command->operands ? " " : "",
            command->operands ? command->operands : "");
    fprintf(out, "%s\n\nOptions:\n", command->description);
    for (int i = 0; options[i].name; i++) {
        char spelling[128];
        char short_form[8] = "";
        if (options[i].short_name) snprintf(short_form, sizeof short_form, "-%c, ", options[i].short_name);
        snprintf(spelling, sizeof spelling, "  %4s--%s%s%s", short_form, options[i].name,
                 options[i].argument ? " " : "", options[i].argument ? options[i].argument : "");
        /* Help text may hold '\n': continue under the first line. */
        const char *help = options[i].help;
        int length = (int)strcspn(help, "\n");
        fprintf(out, "  %-*s  %.*s\n", width, spelling, length, help);
        while (help[length] == '\n') {
            help += length + 1;
            length = (int)strcspn(help, "\n");
            fprintf(out, "  %-*s  %.*s\n", width, "", length, help);
        }
    }
    fprintf(out, "  %-*s  %s\n", width, "-h, --help", "show this help and exit");
}

static void print_message(const cli_command *command, const char *format, va_list args)
    CLI_PRINTF(2, 0);

static void print_message(const cli_command *command, const char *format, va_list args)
{
    if (command) fprintf(stderr, "ox %s: ", command->name);
    else fputs("ox: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
}

int cli_usage_error(const cli_command *command, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    print_message(command, format, args);
    va_end(args);
    if (command) fprintf(stderr, "Try 'ox %s --help'.\n", command->name);
    else fputs("Try 'ox --help'.\n", stderr);
    return CLI_EXIT_USAGE;
}

int cli_error(const cli_command *command, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    print_message(command, format, args);
    va_end(args);
    return CLI_EXIT_FAILURE;
}

int cli_library_error(const cli_command *command, const ox_context *ctx, ox_status status)
{
    const char *message = ox_errmsg(ctx);
    if (!message || !message[0]) message = ox_status_str(status);
    return cli_error(command, "%s", message);
}

/* ---- the runtime ------------------------------------------------------------ */

int cli_context_open_mode(const cli_command *command, int reproducible, ox_context **ctx)
{
    ox_context_options options = {.struct_size = sizeof options,
                                  .flags = reproducible ? OX_CONTEXT_REPRODUCIBLE : 0};
    ox_status status = ox_context_create(&options, ctx);
    if (status != OX_OK) return cli_library_error(command, NULL, status);
    return CLI_EXIT_OK;
}

int cli_context_open(const cli_command *command, ox_context **ctx)
{
    return cli_context_open_mode(command, 0, ctx);
}

bool cli_name_known(const char *(*name)(int), const char *value, bool nocase)
{
    for (int i = 0; name(i); i++)
        if ((nocase ? strcasecmp(name(i), value) : strcmp(name(i), value)) == 0) return true;
    return false;
}

void cli_name_list(const char *(*name)(int), char *list, size_t cap)
{
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; name(i) && used < cap; i++) {
        int n = snprintf(list + used, cap - used, "%s%s", i ? ", " : "", name(i));
        if (n < 0) break;
        used += (size_t)n;
    }
}

int cli_parse_choice(const cli_command *command, const char *option, const char *value,
                     const char *first, const char *second, bool *is_second)
{
    if (strcmp(value, first) != 0 && strcmp(value, second) != 0)
        return cli_usage_error(command, "--%s: '%s' is not %s or %s", option, value, first, second);
    *is_second = strcmp(value, second) == 0;
    return CLI_EXIT_OK;
}

int cli_select_devices(const cli_command *command, ox_context *ctx, const char *selection,
                       ox_device **devices, int *n)
{
    ox_status s = selection ? ox_device_select(ctx, selection, devices, CLI_MAX_DEVICES, n)
                            : ox_device_default(ctx, &devices[0]);
    if (s != OX_OK) return cli_library_error(command, ctx, s);
    if (!selection) *n = 1;
    if (*n > CLI_MAX_DEVICES)
        return cli_error(command, "--device %s names %d devices; at most %d", selection, *n,
                         CLI_MAX_DEVICES);
    return CLI_EXIT_OK;
}

void cli_describe_stages(const ox_pipeline *pipe, char *text, size_t cap)
{
    size_t used = 0;
    text[0] = '\0';
    for (int i = 0; i < ox_pipeline_stage_count(pipe) && used < cap; i++) {
        ox_stage_info si = {.struct_size = sizeof si};
        if (ox_pipeline_stage_get(pipe, i, &si) != OX_OK) continue;
        int k = snprintf(text + used, cap - used, "%s%s layers %d-%d", i ? ", " : "", si.device,
                         si.first_layer, si.last_layer - 1);
        if (k < 0) break;
        used += (size_t)k;
    }
}

static ox_status list_all_devices(ox_context *ctx, ox_device **devices, int capacity, int *count)
{
    ox_status status = ox_device_count(ctx, count);
    for (int i = 0; status == OX_OK && i < *count && i < capacity; i++)
        status = ox_device_get(ctx, i, &devices[i]);
    return status;
}

int cli_devices_select(const cli_command *command, ox_context *ctx, const char *selection,
                       ox_device ***devices, int *count)
{
    ox_device **list = NULL;
    int total = 0, filled = 0;
    ox_status status;

    *devices = NULL;
    *count = 0;
    /* First size the list, then fill it. */
    if (selection) status = ox_device_select(ctx, selection, NULL, 0, &total);
    else status = ox_device_count(ctx, &total);
    if (status != OX_OK) return cli_library_error(command, ctx, status);
    if (total <= 0) return CLI_EXIT_OK;

    list = malloc((size_t)total * sizeof *list);
    if (!list) return cli_error(command, "out of memory listing %d devices", total);
    if (selection) status = ox_device_select(ctx, selection, list, total, &filled);
    else status = list_all_devices(ctx, list, total, &filled);
    if (status != OX_OK) {
        free(list);
        return cli_library_error(command, ctx, status);
    }
    *devices = list;
    *count = filled < total ? filled : total;
    return CLI_EXIT_OK;
}

int cli_device_info(const cli_command *command, const ox_device *device, ox_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    ox_status status = ox_device_get_info(device, info);
    if (status != OX_OK) return cli_library_error(command, ox_device_context(device), status);
    return CLI_EXIT_OK;
}

/* ---- formatting -------------------------------------------------------------- */

void cli_format_bytes(uint64_t bytes, char *buffer, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buffer, size, "%u B", (unsigned)bytes);
        return;
    }
    double value = (double)bytes;
    size_t unit = 0;
    while (value >= 1024.0 && unit + 1 < sizeof units / sizeof units[0]) {
        value /= 1024.0;
        unit++;
    }
    snprintf(buffer, size, "%.1f %s", value, units[unit]);
}

const char *cli_feature_name(int bit, char *buffer, size_t size)
{
    const char *name = ox_feature_str(bit);
    if (name) return name;
    snprintf(buffer, size, "bit%d", bit);
    return buffer;
}

void cli_format_features(uint64_t features, char *buffer, size_t size)
{
    size_t used = 0;
    if (size == 0) return;
    buffer[0] = '\0';
    for (int bit = 0; bit < 64; bit++) {
        if (!(features & (UINT64_C(1) << bit))) continue;
        char unknown[16];
        const char *name = cli_feature_name(bit, unknown, sizeof unknown);
        int n = snprintf(buffer + used, size - used, "%s%s", used ? " " : "", name);
        if (n < 0 || (size_t)n >= size - used) break; /* truncated: keep what fits */
        used += (size_t)n;
    }
}

void cli_format_seconds(double seconds, char *buffer, size_t size)
{
    if (seconds < 1e-6) snprintf(buffer, size, "%.0f ns", seconds * 1e9);
    else if (seconds < 1e-3) snprintf(buffer, size, "%.1f us", seconds * 1e6);
    else if (seconds < 1.0) snprintf(buffer, size, "%.2f ms", seconds * 1e3);
    else snprintf(buffer, size, "%.2f s", seconds);
}

double cli_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* ---- JSON ---------------------------------------------------------------------- */

cJSON *cli_json_document(void)
{
    cJSON *root = cJSON_CreateObject();
    if (root && !cJSON_AddStringToObject(root, "version", ox_version_string())) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

void cli_json_add_u64(cJSON *object, const char *name, uint64_t value)
{
    cJSON_AddNumberToObject(object, name, (double)value);
}

int cli_json_write(const cli_command *command, const cJSON *root, const char *path)
{
    int code = CLI_EXIT_OK;
    char *text = root ? cJSON_Print(root) : NULL;
    if (!text) return cli_error(command, "out of memory while writing JSON");

    int to_stdout = strcmp(path, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(path, "w");
    if (!out) {
        code = cli_error(command, "cannot open '%s': %s", path, strerror(errno));
        goto out_free_text;
    }
    fputs(text, out);
    fputc('\n', out);
    int failed = ferror(out);
    if (to_stdout) failed |= fflush(out) != 0;
    else failed |= fclose(out) != 0;
    if (failed)
        code = cli_error(command, "cannot write '%s': %s", to_stdout ? "standard output" : path,
                         strerror(errno));
out_free_text:
    cJSON_free(text);
    return code;
}

char *cli_read_file_max(const cli_command *command, const char *path, size_t limit,
                        const char *what, size_t *size)
{
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error(command, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        cli_error(command, "%s is a directory, not a file", path);
        return NULL;
    }
    char limit_text[32];
    cli_format_bytes(limit, limit_text, sizeof limit_text);
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > limit) {
        fclose(f);
        cli_error(command, "%s is %lld bytes: %s are limited to %s", path,
                  (long long)st.st_size, what, limit_text);
        return NULL;
    }
    /* read up to limit + 1 bytes: a stream (a pipe, /dev/zero) that goes
     * past the limit is refused without holding more than it */
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    bool too_big = false;
    while (data) {
        n += fread(data + n, 1, cap - 1 - n, f);
        if (n > limit) {
            too_big = true;
            break;
        }
        if (n < cap - 1) break;
        char *bigger = realloc(data, cap * 2);
        if (!bigger) free(data);
        data = bigger;
        cap *= 2;
    }
    if (too_big) {
        cli_error(command, "%s is longer than %s: %s are limited to %s", path, limit_text, what,
                  limit_text);
        free(data);
        data = NULL;
    } else if (!data || ferror(f)) {
        cli_error(command, "cannot read %s: %s", path, data ? strerror(errno) : "out of memory");
        free(data);
        data = NULL;
    } else {
        data[n] = '\0';
        *size = n;
    }
    fclose(f);
    return data;
}

/* The message of a SIGBUS, written whole by the handler (write(2) is
 * async-signal-safe; printf is not). */
static char bus_message[PATH_MAX + 256];
static size_t bus_length;

static void on_sigbus(int sig)
{
    (void)sig;
    ssize_t unused = write(STDERR_FILENO, bus_message, bus_length);
    (void)unused;
    _exit(CLI_EXIT_FAILURE);
}

void cli_guard_mapping(const cli_command *command, const char *path)
{
    int n = snprintf(bus_message, sizeof bus_message,
                     "\nox %s: the model file %s changed while in use (truncated or rewritten "
                     "under its memory mapping): stopped. Replace model files by renaming a new "
                     "file over the old one.\n",
                     command->name, path);
    bus_length = n < 0 ? 0 : (size_t)n < sizeof bus_message ? (size_t)n : sizeof bus_message - 1;
    struct sigaction sa = {.sa_handler = on_sigbus};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

const char *cli_printable(const char *text, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0) return out;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char piece[12];
        size_t len;
        if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && *p < 0xa0)) {
            len = (size_t)snprintf(piece, sizeof piece, "\\x%02x", *p);
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0) { /* U+0080..U+009F */
            len = (size_t)snprintf(piece, sizeof piece, "\\u%04x", p[1]);
            p++;
        } else {
            piece[0] = (char)*p;
            len = 1;
        }
        if (n + len + 4 > cap) {
            if (cap >= 4) memcpy(out + (n < cap - 4 ? n : cap - 4), "...", 4);
            else out[0] = '\0';
            return out;
        }
        memcpy(out + n, piece, len);
        n += len;
    }
    out[n] = '\0';
    return out;
}

uint64_t cli_random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) == (ssize_t)sizeof seed) return seed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return seed * 0x9E3779B97F4A7C15u;
}

char *cli_read_file(const cli_command *command, const char *path, size_t *size)
{
    return cli_read_file_max(command, path, CLI_FILE_LIMIT, "files read by ox", size);
}
