/* 'ox check': on each selected device, run the runtime checks
 * (check_runtime.c), then every op case of the conformance grid
 * (check_ops.c); print one row per check and a summary; optionally write a
 * JSON and a self-contained HTML report. The exit status is 0 only if every
 * check passed (or did not apply) and something ran. See docs/CHECK.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "certificate.h"
#include "check.h"
#include "cli.h"

enum {
    OPTION_DEVICE,
    OPTION_OP,
    OPTION_QUICK,
    OPTION_JSON,
    OPTION_HTML,
    OPTION_REPRODUCIBLE,
    OPTION_CERTIFICATE,
    OPTION_AGAINST
};

static const cli_option check_options[] = {
    [OPTION_DEVICE] = {"device", "SEL", "check the devices SEL selects (default: all)", 0},
    [OPTION_OP] = {"op", "NAME",
                   "check only NAME: an op (matmul, gelu, ...), a family (binary,\n"
                   "unary, reduce, norm) or 'runtime'; a comma-separated list", 0},
    [OPTION_QUICK] = {"quick", NULL,
                      "a smaller grid of op cases, and skip the largest (64 MiB)\n"
                      "transfers", 0},
    [OPTION_JSON] = {"json", "FILE",
                     "also write a JSON report to FILE; '-' writes it to standard\n"
                     "output and the table to standard error", 0},
    [OPTION_HTML] = {"html", "FILE", "also write a self-contained HTML report to FILE", 0},
    [OPTION_REPRODUCIBLE] = {"reproducible", NULL,
                             "reproducible mode: every device must give the CPU's\n"
                             "bits exactly (max error 0), the CPU its reference's tolerance", 0},
    [OPTION_CERTIFICATE] = {"certificate", "FILE",
                            "write the device's certificate to FILE: a hash of each op\n"
                            "case's output bits (implies --reproducible; one device)", 0},
    [OPTION_AGAINST] = {"against", "FILE",
                        "compare each op case's bits with the certificate FILE made\n"
                        "elsewhere (implies --reproducible)", 0},
    {NULL, NULL, NULL, 0},
};

static const char *const result_names[] = {
    [CHECK_PASS] = "PASS",
    [CHECK_FAIL] = "FAIL",
    [CHECK_SKIP] = "SKIP",
};

/* What runs: the runtime checks or not, and which op cases. */
typedef struct plan {
    int runtime;
    op_case_list cases;
    int quick;
    ox_device *cpu; /* the reference device; NULL if there is none */
    const certificate *against; /* --against: the certificate read */
    cJSON *certificate; /* --certificate: the "cases" object being written */
} plan;

/* Where the results go, and what they add up to. */
typedef struct report {
    FILE *out;        /* the table */
    int device_width; /* column widths */
    int check_width;
    int op_width, dtype_width, shape_width;
    int counts[3];    /* by check_result, runtime checks and op cases together */
    cJSON *devices;   /* the JSON report's array; NULL without --json or --html */
    cJSON *failures;  /* the failed rows' lines, listed again at the end */
} report;

/* ---- choosing what runs ----------------------------------------------------- */

/* Append `name` to the comma-separated `list` unless it is there already. */
static void add_name(char *list, size_t size, const char *name)
{
    size_t length = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += length) {
        int starts = p == list || (p - list >= 2 && p[-2] == ',');
        if (starts && (p[length] == ',' || p[length] == '\0')) return;
    }
    size_t used = strlen(list);
    snprintf(list + used, size - used, "%s%s", used ? ", " : "", name);
}

/* Every name --op accepts, for the usage error. */
static void known_names(const op_case_list *all, char *list, size_t size)
{
    list[0] = '\0';
    add_name(list, size, "runtime");
    for (int i = 0; i < all->count; i++)
        if (strcmp(all->cases[i].family, all->cases[i].op) != 0)
            add_name(list, size, all->cases[i].family);
    for (int i = 0; i < all->count; i++) add_name(list, size, all->cases[i].op);
}

#define MAX_OP_NAMES 64

/* Fill p from --op (NULL: everything). Returns an exit status. */
static int plan_build(const cli_command *command, const char *names, int quick, plan *p)
{
    op_case_list all = {0};
    char *copy = NULL, *name[MAX_OP_NAMES];
    int n_names = 0, code = CLI_EXIT_OK;

    p->quick = quick;
    p->runtime = names == NULL;
    if (op_cases_build(&all, quick) != 0) {
        code = cli_error(command, "out of memory");
        goto out_free;
    }
    if (!names) {
        p->cases = all;
        return CLI_EXIT_OK;
    }

    /* Split the list and check every name, then keep the cases any matches. */
    copy = strdup(names);
    if (!copy) {
        code = cli_error(command, "out of memory");
        goto out_free;
    }
    for (char *next = copy; next; n_names++) {
        if (n_names == MAX_OP_NAMES) {
            code = cli_usage_error(command, "--op names more than %d ops", MAX_OP_NAMES);
            goto out_free;
        }
        name[n_names] = next;
        next = strchr(next, ',');
        if (next) *next++ = '\0';
    }
    for (int n = 0; n < n_names; n++) {
        int known = strcmp(name[n], "runtime") == 0;
        p->runtime |= known;
        for (int i = 0; !known && i < all.count; i++)
            known = op_case_matches(&all.cases[i], name[n]);
        if (!known) {
            char list[2048];
            known_names(&all, list, sizeof list);
            code = cli_usage_error(command, "unknown op '%s'; the names are: %s", name[n], list);
            goto out_free;
        }
    }
    for (int i = 0; i < all.count; i++) {
        int wanted = 0;
        for (int n = 0; n < n_names && !wanted; n++)
            wanted = op_case_matches(&all.cases[i], name[n]);
        if (wanted && op_case_list_add(&p->cases, &all.cases[i]) != 0) {
            code = cli_error(command, "out of memory");
            goto out_free;
        }
    }
out_free:
    free(copy);
    op_case_list_free(&all);
    return code;
}

/* ---- the table ------------------------------------------------------------------ */

#define SHAPE_WIDTH_MAX 48

/* Size the columns to the device ids, check names and cases. */
static void report_layout(report *r, ox_device **devices, int count, const plan *p)
{
    r->device_width = (int)strlen("DEVICE");
    r->check_width = (int)strlen("CHECK");
    r->op_width = (int)strlen("OP");
    r->dtype_width = (int)strlen("DTYPE");
    r->shape_width = (int)strlen("SHAPE");
    for (int i = 0; i < count; i++) {
        ox_device_info info = {.struct_size = sizeof info};
        if (ox_device_get_info(devices[i], &info) != OX_OK) continue;
        int w = (int)strlen(info.id);
        if (w > r->device_width) r->device_width = w;
    }
    for (const check_def *def = check_runtime_table; def->name; def++) {
        int w = (int)strlen(def->name);
        if (w > r->check_width) r->check_width = w;
    }
    for (int i = 0; i < p->cases.count; i++) {
        const op_case *c = &p->cases.cases[i];
        int w = (int)strlen(c->op);
        if (w > r->op_width) r->op_width = w;
        w = (int)strlen(c->dtype);
        if (w > r->dtype_width) r->dtype_width = w;
        w = (int)strlen(c->shape);
        if (w > r->shape_width) r->shape_width = w < SHAPE_WIDTH_MAX ? w : SHAPE_WIDTH_MAX;
    }
}

static void runtime_header(const report *r)
{
    fprintf(r->out, "%-*s  %-*s  %-6s  %s\n", r->device_width, "DEVICE", r->check_width, "CHECK",
            "RESULT", "DETAIL");
}

static void runtime_row(report *r, const char *device, const char *check, check_result result,
                        const char *detail)
{
    char line[512];
    snprintf(line, sizeof line, "%-*s  %-*s  %-6s  %s", r->device_width, device, r->check_width,
             check, result_names[result], detail);
    fprintf(r->out, "%s\n", line);
    fflush(r->out); /* one row at a time: some checks take a while */
    r->counts[result]++;
    if (result == CHECK_FAIL) cJSON_AddItemToArray(r->failures, cJSON_CreateString(line));
}

static void runtime_json(cJSON *checks, const char *name, check_result result,
                         const char *detail, double seconds)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "name", name);
    cJSON_AddBoolToObject(object, "passed", result != CHECK_FAIL);
    cJSON_AddBoolToObject(object, "skipped", result == CHECK_SKIP);
    cJSON_AddStringToObject(object, "detail", detail);
    cJSON_AddNumberToObject(object, "seconds", seconds);
    cJSON_AddItemToArray(checks, object);
}

static void op_header(const report *r)
{
    fprintf(r->out, "%-*s  %-*s  %-*s  %-*s  %9s  %9s  %7s  %9s  %14s  %s\n", r->device_width,
            "DEVICE", r->op_width, "OP", r->dtype_width, "DTYPE", r->shape_width, "SHAPE",
            "MAX ERR", "NMSE", "LIMIT", "TIME", "RATE", "RESULT");
}

static void format_error(double value, char *buffer, size_t size)
{
    if (isnan(value)) snprintf(buffer, size, "-");
    else snprintf(buffer, size, "%.2e", value);
}

static void format_rate(const op_result *result, char *buffer, size_t size)
{
    if (result->gflops > 0) snprintf(buffer, size, "%.2f GFLOP/s", result->gflops);
    else if (result->gbps > 0) snprintf(buffer, size, "%.2f GB/s", result->gbps);
    else snprintf(buffer, size, "-");
}

/* One line of an op case: the table row, also kept for the failure list. */
static void op_line(const report *r, const char *device, const op_case *c,
                    const op_result *result, char *line, size_t size)
{
    char max_err[16], nmse[16], limit[16], time[16] = "-", rate[24];
    format_error(result->max_abs_err, max_err, sizeof max_err);
    format_error(result->nmse, nmse, sizeof nmse);
    if (result->bitwise) snprintf(limit, sizeof limit, "bits");
    else if (c->threshold > 0) snprintf(limit, sizeof limit, "%.0e", c->threshold);
    else snprintf(limit, sizeof limit, "exact");
    if (result->seconds > 0) cli_format_seconds(result->seconds, time, sizeof time);
    format_rate(result, rate, sizeof rate);
    int n = snprintf(line, size, "%-*s  %-*s  %-*s  %-*s  %9s  %9s  %7s  %9s  %14s  %s",
                     r->device_width, device, r->op_width, c->op, r->dtype_width, c->dtype,
                     r->shape_width, c->shape, max_err, nmse, limit, time, rate,
                     result->passed ? "PASS" : "FAIL");
    /* The detail's first line; the reports keep all of it. */
    if (!result->passed && n > 0 && (size_t)n < size)
        snprintf(line + n, size - (size_t)n, "  %.*s", (int)strcspn(result->detail, "\n"),
                 result->detail);
}

static void add_number_or_null(cJSON *object, const char *name, double value, int present)
{
    if (present && isfinite(value)) cJSON_AddNumberToObject(object, name, value);
    else cJSON_AddNullToObject(object, name);
}

static void op_json(cJSON *ops, const op_case *c, const op_result *result)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "op", c->op);
    cJSON_AddStringToObject(object, "dtype", c->dtype);
    cJSON_AddStringToObject(object, "shape", c->shape);
    add_number_or_null(object, "nmse", result->nmse, 1);
    add_number_or_null(object, "max_abs_err", result->max_abs_err, 1);
    cJSON_AddNumberToObject(object, "threshold", c->threshold);
    cJSON_AddNumberToObject(object, "seconds", result->seconds);
    add_number_or_null(object, "gbps", result->gbps, result->gbps > 0);
    add_number_or_null(object, "gflops", result->gflops, result->gflops > 0);
    cJSON_AddBoolToObject(object, "passed", result->passed);
    cJSON_AddStringToObject(object, "detail", result->detail);
    if (result->bits[0]) cJSON_AddStringToObject(object, "bits", result->bits);
    cJSON_AddItemToArray(ops, object);
}

/* ---- one device ----------------------------------------------------------------- */

static cJSON *device_json(report *r, const ox_device_info *info)
{
    if (!r->devices) return NULL;
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "id", info->id);
    cJSON_AddStringToObject(object, "name", info->name);
    cJSON_AddStringToObject(object, "backend", info->backend);
    cJSON_AddStringToObject(object, "type", ox_device_type_str(info->type));
    cJSON_AddStringToObject(object, "vendor", info->vendor);
    cJSON_AddStringToObject(object, "driver_version", info->driver_version);
    cli_json_add_u64(object, "memory_bytes", info->memory_bytes);
    cli_json_add_u64(object, "compute_units", info->compute_units);
    cJSON_AddArrayToObject(object, "checks");
    cJSON_AddArrayToObject(object, "ops");
    cJSON_AddItemToArray(r->devices, object);
    return object;
}

/* The kernel parameters the op cases ran with: the device's tuned entries
 * (ox tune), the class defaults elsewhere. Devices that run native code (the
 * CPU backend) have none and print nothing. */
static void report_tuning(report *r, ox_device *device, const ox_device_info *info,
                          cJSON *object)
{
    if (strcmp(info->backend, "cpu") == 0) return;
    cJSON *list = object ? cJSON_AddArrayToObject(object, "tuned") : NULL;
    const char *op;
    char cls[64], params[256];
    int n = 0;
    for (; ox_device_tuned(device, n, &op, cls, sizeof cls, params, sizeof params) == OX_OK; n++) {
        if (n == 0)
            fprintf(r->out, "\n%s: kernels ran with tuned parameters (ox tune) for these classes, "
                            "the device's defaults for the others:\n", info->id);
        fprintf(r->out, "  %-12s %-12s %s\n", op, cls, params);
        if (list) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "op", op);
            cJSON_AddStringToObject(e, "class", cls);
            cJSON_AddStringToObject(e, "params", params);
            cJSON_AddItemToArray(list, e);
        }
    }
    if (n == 0)
        fprintf(r->out, "\n%s: kernels ran with the device's default parameters (no tuning; "
                        "'ox tune' measures better ones)\n", info->id);
}

/* Returns the number of failures on this device. */
static int check_runtime(report *r, ox_device *device, const ox_device_info *info, const plan *p,
                         cJSON *checks)
{
    int failed = 0;
    runtime_header(r);
    for (const check_def *def = check_runtime_table; def->name; def++) {
        check_env env = {.ctx = ox_device_context(device), .device = device, .info = info,
                         .cpu = p->cpu, .quick = p->quick};
        double start = cli_seconds();
        check_result result = def->run(&env);
        double seconds = cli_seconds() - start;
        runtime_row(r, info->id, def->name, result, env.detail);
        if (checks) runtime_json(checks, def->name, result, env.detail, seconds);
        failed += result == CHECK_FAIL;
    }
    return failed;
}

/* ---- certificates ---------------------------------------------------------------- */

/* A case's key in a certificate: op, dtype and shape (unique in the grid). */
static void case_key(const op_case *c, char *key, size_t cap)
{
    snprintf(key, cap, "%s %s %s", c->op, c->dtype, c->shape);
}

/* --certificate: record the case's bits; --against: compare them. */
static void certify(const plan *p, const op_case *c, op_result *result)
{
    char key[160];
    case_key(c, key, sizeof key);
    if (p->certificate && result->passed && result->bits[0])
        cJSON_AddStringToObject(p->certificate, key, result->bits);
    if (!p->against || !result->passed) return;
    const char *want = certificate_case(p->against, key);
    if (!want)
        snprintf(result->detail, sizeof result->detail,
                 "not in the certificate (made on %s): the grids differ", p->against->device);
    else if (strcmp(want, result->bits) != 0)
        snprintf(result->detail, sizeof result->detail,
                 "the output's bits (hash %s) differ from the certificate's (%s, made on %s)",
                 result->bits, want, p->against->device);
    else
        return;
    result->passed = 0;
}

/* The certificate document of one device (docs/CHECK.md). */
static cJSON *certificate_document(const ox_device_info *info, int quick, cJSON **cases)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *device = cJSON_CreateObject();
    if (!root || !device) {
        cJSON_Delete(root);
        cJSON_Delete(device);
        return NULL;
    }
    cJSON_AddStringToObject(root, "format", CERTIFICATE_FORMAT);
    cJSON_AddNumberToObject(root, "format_version", 1);
    cJSON_AddStringToObject(root, "openxpu", ox_version_string());
    cJSON_AddStringToObject(root, "hash", cli_bytes_hash_name());
    cJSON_AddStringToObject(root, "grid", quick ? "quick" : "full");
    cJSON_AddStringToObject(device, "id", info->id);
    cJSON_AddStringToObject(device, "name", info->name);
    cJSON_AddStringToObject(device, "backend", info->backend);
    cJSON_AddStringToObject(device, "vendor", info->vendor);
    cJSON_AddStringToObject(device, "driver_version", info->driver_version);
    cJSON_AddItemToObject(root, "device", device);
    *cases = cJSON_AddObjectToObject(root, "cases");
    if (!*cases) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* Read --against's file into *c. Returns an exit status. */
static int certificate_load(const cli_command *command, const char *path, int quick,
                            certificate *c)
{
    size_t size;
    char why[256];
    char *text = cli_read_file(command, path, &size);
    if (!text) return CLI_EXIT_FAILURE;
    int bad = certificate_parse(text, size, c, why, sizeof why);
    free(text);
    if (bad)
        return cli_error(command, "%s is not an OpenXPU certificate: %s (ox check --certificate "
                         "writes them; docs/CHECK.md)", path, why);
    if (strcmp(c->hash, cli_bytes_hash_name()) != 0)
        return cli_error(command, "%s hashes with %s; this build of ox with %s", path, c->hash,
                         cli_bytes_hash_name());
    if (strcmp(c->grid, quick ? "quick" : "full") != 0)
        return cli_error(command, "%s was made on the %s grid; run with%s --quick", path, c->grid,
                         quick ? "out" : "");
    if (strcmp(c->version, ox_version_string()) != 0)
        fprintf(stderr, "ox check: note: %s was made by OpenXPU %s, this is %s; its kernels may "
                "differ\n", path, c->version, ox_version_string());
    return CLI_EXIT_OK;
}

/* Returns the number of failures; *ran counts the cases that ran. */
static int check_ops(report *r, ox_device *device, const ox_device_info *info, const plan *p,
                     cJSON *ops, int *ran)
{
    int failed = 0;
    op_header(r);
    for (int i = 0; i < p->cases.count; i++) {
        const op_case *c = &p->cases.cases[i];
        op_result result;
        char line[1536];
        op_case_check(c, device, p->cpu, &result);
        certify(p, c, &result);
        op_line(r, info->id, c, &result, line, sizeof line);
        fprintf(r->out, "%s\n", line);
        fflush(r->out);
        if (ops) op_json(ops, c, &result);
        r->counts[result.passed ? CHECK_PASS : CHECK_FAIL]++;
        if (!result.passed) {
            failed++;
            cJSON_AddItemToArray(r->failures, cJSON_CreateString(line));
        }
        *ran += result.seconds > 0;
    }
    return failed;
}

static void check_device(report *r, ox_device *device, const plan *p)
{
    ox_context *ctx = ox_device_context(device);
    ox_device_info info;
    int failed = 0, ran = 0;
    double start = cli_seconds();

    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ox_status status = ox_device_get_info(device, &info);
    if (status != OX_OK) snprintf(info.id, sizeof info.id, "?");
    cJSON *object = device_json(r, &info);
    cJSON *checks = cJSON_GetObjectItemCaseSensitive(object, "checks");
    cJSON *ops = cJSON_GetObjectItemCaseSensitive(object, "ops");
    if (status != OX_OK) {
        /* Still a row, so that the device cannot pass unnoticed. */
        runtime_header(r);
        runtime_row(r, info.id, "info", CHECK_FAIL, ox_errmsg(ctx));
        if (checks) runtime_json(checks, "info", CHECK_FAIL, ox_errmsg(ctx), 0.0);
        failed++;
    } else {
        if (p->runtime) failed += check_runtime(r, device, &info, p, checks);
        if (p->runtime && p->cases.count) fputc('\n', r->out);
        if (p->cases.count) {
            failed += check_ops(r, device, &info, p, ops, &ran);
            report_tuning(r, device, &info, object);
        }
    }

    double seconds = cli_seconds() - start;
    char time[32];
    cli_format_seconds(seconds, time, sizeof time);
    fprintf(r->out, "\n%s: %d op case%s of %d ran, %d check%s failed, in %s\n\n", info.id, ran,
            ran == 1 ? "" : "s", p->cases.count, failed, failed == 1 ? "" : "s", time);
    int failed_rows = failed;
    if (status == OX_OK && p->cases.count && ran == 0) {
        /* A check that ran nothing must not pass. */
        char line[160];
        snprintf(line, sizeof line, "%s: no op case ran: every one failed before it could run",
                 info.id);
        fprintf(r->out, "%s\n\n", line);
        cJSON_AddItemToArray(r->failures, cJSON_CreateString(line));
        r->counts[CHECK_FAIL]++;
        failed++;
    }
    if (object) {
        int rows = cJSON_GetArraySize(checks) + cJSON_GetArraySize(ops);
        cJSON_AddNumberToObject(object, "passed", rows - failed_rows);
        cJSON_AddNumberToObject(object, "failed", failed);
        cJSON_AddNumberToObject(object, "seconds", seconds);
    }
}

static void report_summary(const report *r, int device_count)
{
    int passed = r->counts[CHECK_PASS], failed = r->counts[CHECK_FAIL];
    int skipped = r->counts[CHECK_SKIP], total = passed + failed + skipped;
    const char *devices = device_count == 1 ? "device" : "devices";
    if (failed) {
        int n = cJSON_GetArraySize(r->failures);
        fprintf(r->out, "Failures:\n");
        for (int i = 0; i < n; i++)
            fprintf(r->out, "  %s\n", cJSON_GetArrayItem(r->failures, i)->valuestring);
        fprintf(r->out, "\nFAILED: %d of %d checks on %d %s failed (%d passed, %d skipped)\n",
                failed, total, device_count, devices, passed, skipped);
    } else {
        fprintf(r->out, "PASSED: %d checks on %d %s (%d passed, %d skipped)\n", total,
                device_count, devices, passed, skipped);
    }
}

/* The first CPU device, for the reference and the cross-device checks;
 * NULL if none. */
static ox_device *find_cpu(ox_context *ctx)
{
    ox_device *cpu = NULL;
    int count = 0;
    if (ox_device_select(ctx, "cpu", &cpu, 1, &count) != OX_OK || count < 1) return NULL;
    return cpu;
}

static int run_check(const cli_command *command, int argc, char **argv)
{
    const char *selection = "all", *json_path = NULL, *html_path = NULL, *op_names = NULL;
    const char *value, *certificate_path = NULL, *against_path = NULL;
    int quick = 0, reproducible = 0, option;
    cli_parser parser;

    cli_parser_init(&parser, command, argc, argv);
    while ((option = cli_parse_next(&parser, &value)) >= 0) {
        if (option == OPTION_DEVICE) selection = value;
        else if (option == OPTION_OP) op_names = value;
        else if (option == OPTION_QUICK) quick = 1;
        else if (option == OPTION_JSON) json_path = value;
        else if (option == OPTION_HTML) html_path = value;
        else if (option == OPTION_REPRODUCIBLE) reproducible = 1;
        else if (option == OPTION_CERTIFICATE) certificate_path = value;
        else if (option == OPTION_AGAINST) against_path = value;
    }
    if (certificate_path || against_path) reproducible = 1;
    if (option != CLI_PARSE_END) return cli_parse_stop(command, option);
    if (json_path && html_path && strcmp(json_path, "-") == 0 && strcmp(html_path, "-") == 0)
        return cli_usage_error(command, "--json and --html cannot both write to standard output");

    plan p = {0};
    ox_context *ctx = NULL;
    ox_device **devices = NULL;
    cJSON *root = NULL, *made = NULL;
    certificate against = {0};
    int stdout_report = (json_path && strcmp(json_path, "-") == 0) ||
                        (html_path && strcmp(html_path, "-") == 0);
    report r = {.out = stdout_report ? stderr : stdout};
    int count = 0;
    int code = plan_build(command, op_names, quick, &p);
    if (code != CLI_EXIT_OK) return code;
    if (against_path) {
        if ((code = certificate_load(command, against_path, quick, &against))) goto out_free_plan;
        p.against = &against;
    }
    code = cli_context_open_mode(command, reproducible, &ctx);
    if (code != CLI_EXIT_OK) goto out_free_plan;
    code = cli_devices_select(command, ctx, selection, &devices, &count);
    if (code != CLI_EXIT_OK) goto out_free_context;
    if (count == 0) {
        /* A check that ran nothing must not pass. */
        code = cli_error(command, "the selection '%s' names no device: nothing was checked",
                         selection);
        goto out_free_devices;
    }
    if (certificate_path) {
        ox_device_info info = {.struct_size = sizeof info};
        if (count != 1 || ox_device_get_info(devices[0], &info) != OX_OK) {
            code = cli_usage_error(command, "--certificate describes one device; '%s' selects %d",
                                   selection, count);
            goto out_free_devices;
        }
        if (!(made = certificate_document(&info, quick, &p.certificate))) {
            code = cli_error(command, "out of memory");
            goto out_free_devices;
        }
    }

    root = cli_json_document();
    r.failures = cJSON_CreateArray();
    if (root && (json_path || html_path)) {
        cJSON_AddBoolToObject(root, "quick", quick);
        r.devices = cJSON_AddArrayToObject(root, "devices");
    }
    if (!root || !r.failures || ((json_path || html_path) && !r.devices)) {
        code = cli_error(command, "out of memory");
        goto out_free_json;
    }
    p.cpu = find_cpu(ctx);
    report_layout(&r, devices, count, &p);
    double start = cli_seconds();
    for (int i = 0; i < count; i++) check_device(&r, devices[i], &p);
    report_summary(&r, count);

    code = r.counts[CHECK_FAIL] ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    cJSON_AddBoolToObject(root, "passed", code == CLI_EXIT_OK);
    cJSON_AddNumberToObject(root, "seconds", cli_seconds() - start);
    if (json_path && cli_json_write(command, root, json_path) != CLI_EXIT_OK)
        code = CLI_EXIT_FAILURE;
    if (html_path && report_html_write(command, root, html_path) != CLI_EXIT_OK)
        code = CLI_EXIT_FAILURE;
    if (made && code == CLI_EXIT_OK &&
        cli_json_write(command, made, certificate_path) != CLI_EXIT_OK)
        code = CLI_EXIT_FAILURE;
    else if (made && code != CLI_EXIT_OK)
        fprintf(stderr, "ox check: no certificate written: a check failed\n");
out_free_json:
    cJSON_Delete(r.failures);
    cJSON_Delete(root);
out_free_devices:
    free(devices);
    cJSON_Delete(made);
out_free_context:
    ox_context_free(ctx);
out_free_plan:
    certificate_free(&against);
    op_case_list_free(&p.cases);
    return code;
}

const cli_command cmd_check = {
    .name = "check",
    .summary = "check the runtime and every op on each device",
    .description =
        "Check each selected device. First the runtime: write/read round trips,\n"
        "views, copy and fill, queues and events, copies to and from the CPU, and\n"
        "the refusal of bad input. Then every op x dtype x a grid of shapes (odd,\n"
        "tiny, large, broadcast and strided): inputs from a fixed-seed generator,\n"
        "the result compared by normalized mean squared error (NMSE) with a\n"
        "reference: on the CPU, naive double-precision loops; on other devices,\n"
        "the same op on the CPU. Prints one row per case with its error, time and\n"
        "achieved GB/s or GFLOP/s, and a summary. Tolerances: docs/CHECK.md.\n"
        "Exits 0 only if every check passed; a selection that names no device,\n"
        "or a device on which no op case ran, fails.\n"
        "\n"
        "--reproducible checks reproducible mode (docs/ARCHITECTURE.md): every\n"
        "device must give the CPU's bits exactly. --certificate FILE writes a\n"
        "device's hashes of every case's output bits; --against FILE compares\n"
        "a device with a certificate made elsewhere (tests/data/certificates\n"
        "holds the CPU's for this version).",
    .options = check_options,
    .run = run_check,
};
