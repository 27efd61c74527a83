/* Tests of the ox command-line tool: run the binary that OX_BIN names and
 * check its exit status, standard output and standard error. */
#include <cjson/cJSON.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"
#include "run_ox.h"

/* Parse JSON output, failing the test with the text if it does not parse. */
static cJSON *parse_json(const char *text)
{
    cJSON *root = cJSON_Parse(text);
    ASSERT_MSG(root != NULL, "not JSON: %s", text);
    return root;
}

static const char *json_string(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static double json_number(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    ASSERT_MSG(cJSON_IsNumber(item), "\"%s\" is not a number", name);
    return item->valuedouble;
}

/* ---- global options --------------------------------------------------------- */

OX_TEST(version)
{
    ox_run *run = RUN_OX("--version");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "ox (OpenXPU) ");
    ASSERT_CONTAINS(run->out, OX_VERSION_STRING);
    ASSERT_STR_EQ(run->err, "");
    free(run);
}

OX_TEST(help_lists_commands)
{
    static const char *const spellings[] = {"--help", "-h", "help"};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        ox_run *run = RUN_OX(spellings[i]);
        ASSERT_EQ(run->status, 0);
        ASSERT_CONTAINS(run->out, "Usage: ox");
        ASSERT_CONTAINS(run->out, "devices");
        ASSERT_CONTAINS(run->out, "check");
        ASSERT_CONTAINS(run->out, "bench");
        ASSERT_STR_EQ(run->err, "");
        free(run);
    }
}

OX_TEST(help_for_a_command)
{
    ox_run *help = RUN_OX("help", "check");
    ox_run *option = RUN_OX("check", "--help");
    ASSERT_EQ(help->status, 0);
    ASSERT_EQ(option->status, 0);
    ASSERT_CONTAINS(help->out, "--quick");
    ASSERT_CONTAINS(help->out, "--json FILE");
    ASSERT_STR_EQ(help->out, option->out);
    free(help);
    free(option);

    ox_run *devices = RUN_OX("devices", "-h");
    ASSERT_EQ(devices->status, 0);
    ASSERT_CONTAINS(devices->out, "--device SEL");
    free(devices);

    ox_run *unknown = RUN_OX("help", "nosuch");
    ASSERT_EQ(unknown->status, 2);
    ASSERT_CONTAINS(unknown->err, "unknown command 'nosuch'");
    free(unknown);
}

OX_TEST(unknown_command)
{
    ox_run *run = RUN_OX("frobnicate");
    ASSERT_EQ(run->status, 2);
    ASSERT_STR_EQ(run->out, "");
    ASSERT_CONTAINS(run->err, "ox: unknown command 'frobnicate'");
    ASSERT_CONTAINS(run->err, "Try 'ox --help'.");
    free(run);
}

OX_TEST(no_command)
{
    ox_run *run = run_ox((const char *const[]){NULL});
    ASSERT_EQ(run->status, 2);
    ASSERT_STR_EQ(run->out, "");
    ASSERT_CONTAINS(run->err, "Try 'ox --help'.");
    free(run);
}

OX_TEST(unknown_option)
{
    ox_run *global = RUN_OX("--frobnicate");
    ASSERT_EQ(global->status, 2);
    ASSERT_STR_EQ(global->out, "");
    ASSERT_CONTAINS(global->err, "ox: unknown option '--frobnicate'");
    free(global);

    ox_run *command = RUN_OX("devices", "--foo=1");
    ASSERT_EQ(command->status, 2);
    ASSERT_STR_EQ(command->out, "");
    ASSERT_CONTAINS(command->err, "ox devices: unknown option '--foo'");
    ASSERT_CONTAINS(command->err, "Try 'ox devices --help'.");
    free(command);

    ox_run *positional = RUN_OX("check", "extra");
    ASSERT_EQ(positional->status, 2);
    ASSERT_CONTAINS(positional->err, "unexpected argument 'extra'");
    free(positional);
}

OX_TEST(missing_option_argument)
{
    ox_run *run = RUN_OX("devices", "--device");
    ASSERT_EQ(run->status, 2);
    ASSERT_STR_EQ(run->out, "");
    ASSERT_CONTAINS(run->err, "ox devices: option '--device' needs an argument");
    free(run);

    ox_run *flag = RUN_OX("check", "--quick=yes");
    ASSERT_EQ(flag->status, 2);
    ASSERT_CONTAINS(flag->err, "takes no argument");
    free(flag);
}

/* ---- ox devices -------------------------------------------------------------- */

OX_TEST(devices_table)
{
    ox_run *run = RUN_OX("devices");
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "ID");
    ASSERT_CONTAINS(run->out, "MEMORY");
    ASSERT_CONTAINS(run->out, "cpu:0");
    ASSERT_CONTAINS(run->out, "iB"); /* a human-readable size */
    ASSERT_CONTAINS(run->out, "Backends:");
    ASSERT_CONTAINS(run->out, "(built in)");
    free(run);
}

OX_TEST(devices_json)
{
    ox_run *run = RUN_OX("devices", "--json");
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    cJSON *root = parse_json(run->out);
    ASSERT_STR_EQ(json_string(root, "version"), OX_VERSION_STRING);

    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(root, "devices");
    ASSERT(cJSON_IsArray(devices));
    const cJSON *cpu = NULL, *device;
    cJSON_ArrayForEach(device, devices) {
        const char *id = json_string(device, "id");
        if (id && strcmp(id, "cpu:0") == 0) cpu = device;
    }
    ASSERT_MSG(cpu != NULL, "no device with id cpu:0 in %s", run->out);
    ASSERT_STR_EQ(json_string(cpu, "type"), "cpu");
    ASSERT_STR_EQ(json_string(cpu, "backend"), "cpu");
    ASSERT(json_number(cpu, "memory_bytes") > 0);
    ASSERT(json_number(cpu, "compute_units") >= 1);
    ASSERT(json_number(cpu, "index") == 0);
    ASSERT(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(cpu, "features")));

    const cJSON *backends = cJSON_GetObjectItemCaseSensitive(root, "backends");
    ASSERT(cJSON_IsArray(backends));
    const cJSON *first = cJSON_GetArrayItem(backends, 0);
    ASSERT_STR_EQ(json_string(first, "name"), "cpu");
    ASSERT(json_number(first, "device_count") >= 1);
    cJSON_Delete(root);
    free(run);
}

OX_TEST(devices_selected)
{
    ox_run *run = RUN_OX("devices", "--json", "--device", "cpu");
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    cJSON *root = parse_json(run->out);
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(root, "devices");
    ASSERT_EQ(cJSON_GetArraySize(devices), 1);
    ASSERT_STR_EQ(json_string(cJSON_GetArrayItem(devices, 0), "id"), "cpu:0");
    cJSON_Delete(root);
    free(run);
}

OX_TEST(devices_bad_selection)
{
    ox_run *run = RUN_OX("devices", "--device", "nosuch:3");
    ASSERT_EQ(run->status, 1);
    ASSERT_STR_EQ(run->out, "");
    ASSERT_CONTAINS(run->err, "ox devices: ");
    ASSERT_CONTAINS(run->err, "nosuch");
    free(run);
}

/* ---- ox check ----------------------------------------------------------------- */

OX_TEST(check_cpu_quick)
{
    ox_run *run = RUN_OX("check", "--quick", "--device", "cpu");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s%s", run->status, run->out, run->err);
    ASSERT_CONTAINS(run->out, "cpu:0");
    ASSERT_CONTAINS(run->out, "roundtrip");
    ASSERT_CONTAINS(run->out, "GB/s");
    ASSERT_CONTAINS(run->out, "PASSED");
    ASSERT(strstr(run->out, "FAIL") == NULL);
    /* The op rows: every op family, with errors and rates. */
    static const char *const ops[] = {"add", "gelu", "argmax", "softmax", "rms_norm",
                                      "layer_norm", "rope", "matmul", "get_rows", "copy",
                                      "concat", "attention"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) ASSERT_CONTAINS(run->out, ops[i]);
    ASSERT_CONTAINS(run->out, "NMSE");
    ASSERT_CONTAINS(run->out, "GFLOP/s");
    free(run);
}

/* The OP column of every op row that `device` starts in `out`; fails
 * unless each is one of `allowed` (NULL-terminated). Returns the count. */
static int count_op_rows(const char *out, const char *device, const char *const *allowed)
{
    int rows = 0;
    size_t length = strlen(device);
    for (const char *line = out, *end; *line; line = end + (*end == '\n')) {
        end = line + strcspn(line, "\n");
        if (strncmp(line, device, length) != 0 || line[length] != ' ') continue;
        char op[64] = "";
        ASSERT(sscanf(line + length, " %63s", op) == 1);
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) ok |= strcmp(op, *a) == 0;
        ASSERT_MSG(ok, "unexpected row: %.*s", (int)(end - line), line);
        rows++;
    }
    return rows;
}

OX_TEST(check_op_filter)
{
    ox_run *run = RUN_OX("check", "--quick", "--device", "cpu", "--op", "softmax");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s%s", run->status, run->out, run->err);
    static const char *const softmax[] = {"softmax", NULL};
    ASSERT(count_op_rows(run->out, "cpu:0", softmax) >= 3);
    ASSERT(strstr(run->out, "roundtrip") == NULL); /* no runtime group unless asked */
    ASSERT_CONTAINS(run->out, "PASSED");
    free(run);

    /* A family, an exact unary name and the runtime group, as a list. */
    run = RUN_OX("check", "--quick", "--device", "cpu", "--op", "reduce,gelu,runtime");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s%s", run->status, run->out, run->err);
    static const char *const mixed[] = {"sum",  "mean", "max",  "argmax", "gelu",
                                        "roundtrip", "sub-buffer", "copy-fill", "queue",
                                        "cross-device", "bad-input", NULL};
    ASSERT(count_op_rows(run->out, "cpu:0", mixed) >= 12);
    ASSERT_CONTAINS(run->out, "argmax");
    ASSERT_CONTAINS(run->out, "roundtrip");
    free(run);
}

OX_TEST(check_op_unknown)
{
    ox_run *run = RUN_OX("check", "--op", "nosuch");
    ASSERT_EQ(run->status, 2);
    ASSERT_STR_EQ(run->out, "");
    ASSERT_CONTAINS(run->err, "ox check: unknown op 'nosuch'");
    ASSERT_CONTAINS(run->err, "matmul"); /* lists the names */
    ASSERT_CONTAINS(run->err, "unary");
    ASSERT_CONTAINS(run->err, "Try 'ox check --help'.");
    free(run);

    run = RUN_OX("check", "--op", "softmax,");
    ASSERT_EQ(run->status, 2);
    free(run);
}

static char *temp_path(void)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/ox_test_cli_XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    return path;
}

static char *read_file(const char *path)
{
    FILE *file = fopen(path, "r");
    ASSERT_MSG(file != NULL, "cannot open %s", path);
    return read_all(file);
}

OX_TEST(check_html_report)
{
    char *path = temp_path();
    ox_run *run = RUN_OX("check", "--quick", "--device", "cpu", "--html", path);
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    char *html = read_file(path);
    unlink(path);
    ASSERT_MSG(strncmp(html, "<!DOCTYPE html>", 15) == 0, "starts with: %.40s", html);
    ASSERT_CONTAINS(html, "<svg");
    ASSERT_CONTAINS(html, "GFLOP/s");
    ASSERT_CONTAINS(html, "matmul");
    ASSERT_CONTAINS(html, "cpu:0");
    ASSERT_CONTAINS(html, "</html>");
    /* Self-contained: nothing to fetch. */
    ASSERT(strstr(html, "http://") == NULL);
    ASSERT(strstr(html, "https://") == NULL);
    ASSERT(strstr(html, "<script") == NULL);
    free(html);
    free(run);
}

OX_TEST(check_json_ops)
{
    ox_run *run = RUN_OX("check", "--quick", "--device", "cpu", "--op", "matmul,add", "--json",
                        "-");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    cJSON *root = parse_json(run->out);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "passed")));
    const cJSON *device = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "devices"), 0);
    ASSERT_STR_EQ(json_string(device, "id"), "cpu:0");
    ASSERT_STR_EQ(json_string(device, "backend"), "cpu");
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(device, "checks")), 0);
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(device, "ops"), *op;
    int matmul = 0, add = 0;
    cJSON_ArrayForEach(op, ops) {
        const char *name = json_string(op, "op");
        ASSERT(name != NULL);
        matmul += strcmp(name, "matmul") == 0;
        add += strcmp(name, "add") == 0;
        ASSERT(json_string(op, "dtype") != NULL && json_string(op, "shape") != NULL);
        ASSERT(json_number(op, "nmse") <= json_number(op, "threshold"));
        ASSERT(json_number(op, "max_abs_err") >= 0);
        ASSERT(json_number(op, "seconds") > 0);
        const cJSON *rate = cJSON_GetObjectItemCaseSensitive(op, strcmp(name, "matmul") == 0
                                                                     ? "gflops" : "gbps");
        ASSERT(cJSON_IsNumber(rate) && rate->valuedouble > 0);
        ASSERT_MSG(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(op, "passed")), "%s %s %s: %s",
                   name, json_string(op, "dtype"), json_string(op, "shape"),
                   json_string(op, "detail"));
    }
    ASSERT(matmul >= 5 && add >= 3);
    ASSERT_EQ(json_number(device, "passed"), matmul + add);
    ASSERT_EQ(json_number(device, "failed"), 0);
    cJSON_Delete(root);
    free(run);
}

/* The report's structure; every check of every device must have passed. */
static void assert_report_passed(const char *text)
{
    cJSON *root = parse_json(text);
    ASSERT_STR_EQ(json_string(root, "version"), OX_VERSION_STRING);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "passed")));
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(root, "devices");
    ASSERT(cJSON_GetArraySize(devices) >= 1);
    const cJSON *device;
    cJSON_ArrayForEach(device, devices) {
        ASSERT(json_string(device, "id") != NULL);
        const cJSON *checks = cJSON_GetObjectItemCaseSensitive(device, "checks");
        ASSERT(cJSON_GetArraySize(checks) >= 6);
        ASSERT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(device, "ops")) >= 100);
        ASSERT_EQ(json_number(device, "failed"), 0);
        const cJSON *check;
        cJSON_ArrayForEach(check, checks) {
            ASSERT(json_string(check, "name") != NULL);
            ASSERT(json_string(check, "detail") != NULL);
            ASSERT(json_number(check, "seconds") >= 0);
            ASSERT_MSG(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(check, "passed")),
                       "%s failed: %s", json_string(check, "name"), json_string(check, "detail"));
        }
    }
    cJSON_Delete(root);
}

OX_TEST(check_json_stdout)
{
    ox_run *run = RUN_OX("check", "--quick", "--device", "cpu", "--json", "-");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    assert_report_passed(run->out);
    ASSERT_CONTAINS(run->err, "PASSED"); /* the table moved to stderr */
    free(run);
}

OX_TEST(check_json_file)
{
    char path[] = "/tmp/ox_test_cli_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ox_run *run = RUN_OX("check", "--quick", "--device", "cpu", "--json", path);
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "PASSED");
    FILE *file = fopen(path, "r");
    ASSERT(file != NULL);
    char *text = read_all(file);
    unlink(path);
    assert_report_passed(text);
    free(text);
    free(run);
}

OX_TEST(check_nothing_selected_fails)
{
    static const char *const selections[] = {"", "nosuch", "cpu:99"};
    for (size_t i = 0; i < sizeof selections / sizeof selections[0]; i++) {
        ox_run *run = RUN_OX("check", "--quick", "--device", selections[i]);
        ASSERT_MSG(run->status == 1, "selection '%s': exit %d", selections[i], run->status);
        ASSERT(strstr(run->out, "PASSED") == NULL);
        ASSERT_CONTAINS(run->err, "ox check: ");
        free(run);
    }
}

/* A device that runs no kernel (the loader tests' fake backend): every op
 * case fails, and the check must say that nothing ran. */
OX_TEST(check_nothing_ran_fails)
{
    const char *fixtures = getenv("OX_TEST_PLUGIN_DIR");
    if (!fixtures || !fixtures[0]) OX_SKIP("OX_TEST_PLUGIN_DIR is not set (ctest sets it)");
    char path[512];
    snprintf(path, sizeof path, "%s/fake", fixtures);
    ASSERT_EQ(setenv("OX_BACKEND_PATH", path, 1), 0); /* this case's process only */

    ox_run *run = RUN_OX("check", "--quick", "--device", "fake:0", "--op", "add");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->out, "fake:0: no op case ran");
    ASSERT_CONTAINS(run->out, "FAILED");
    free(run);

    ox_run *bench = RUN_OX("bench", "add", "--quick", "--device", "fake:0");
    ASSERT_EQ(bench->status, 1);
    ASSERT_CONTAINS(bench->out, "ERROR");
    ASSERT_CONTAINS(bench->err, "nothing ran on fake:0");
    free(bench);
}

/* ---- an OpenCL device, when there is one ---------------------------------------- */

/* The id of the first OpenCL device, or NULL when there is none. */
static char *find_opencl_device(void)
{
    static char id[64];
    ox_run *run = RUN_OX("devices", "--json");
    ASSERT_MSG(run->status == 0, "exit %d: %s", run->status, run->err);
    cJSON *root = parse_json(run->out);
    const cJSON *device;
    char *found = NULL;
    cJSON_ArrayForEach(device, cJSON_GetObjectItemCaseSensitive(root, "devices")) {
        const char *backend = json_string(device, "backend");
        if (!found && backend && strcmp(backend, "opencl") == 0) {
            snprintf(id, sizeof id, "%s", json_string(device, "id"));
            found = id;
        }
    }
    cJSON_Delete(root);
    free(run);
    return found;
}

OX_TEST(check_opencl_quick)
{
    char *id = find_opencl_device();
    if (!id) OX_SKIP("no OpenCL device ('ox devices' lists none): conformance not checked");
    /* Under AddressSanitizer: PoCL's LLVM leaks when it compiles a kernel,
     * which would fail the run; ox's own leaks are checked by the CPU cases. */
    const char *asan = getenv("ASAN_OPTIONS");
    char options[512];
    snprintf(options, sizeof options, "%s%sdetect_leaks=0", asan ? asan : "",
             asan && asan[0] ? ":" : "");
    ASSERT_EQ(setenv("ASAN_OPTIONS", options, 1), 0); /* this case's process only */
    ox_run *run = RUN_OX("check", "--quick", "--device", id);
    ASSERT_MSG(run->status == 0, "exit %d:\n%s%s", run->status, run->out, run->err);
    ASSERT_CONTAINS(run->out, "matmul");
    ASSERT_CONTAINS(run->out, "attention");
    ASSERT_CONTAINS(run->out, "PASSED");
    free(run);
}

/* ---- ox bench ----------------------------------------------------------------------- */

/* The device limits ox bench measures go to a file of the test's own. */
static void private_limits_cache(char *path, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/ox-cli-limits-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT(setenv("OX_LIMITS_FILE", path, 1) == 0);
}

OX_TEST(bench_matmul_cpu)
{
    char cache[512];
    private_limits_cache(cache, sizeof cache);
    ox_run *run = RUN_OX("bench", "matmul", "--quick", "--device", "cpu");
    unlink(cache);
    ASSERT_MSG(run->status == 0, "exit %d:\n%s%s", run->status, run->out, run->err);
    ASSERT_CONTAINS(run->out, "Device limits");
    ASSERT_CONTAINS(run->out, "F32 FMA");
    ASSERT_CONTAINS(run->out, "cpu:0");
    ASSERT_CONTAINS(run->out, "matmul");
    ASSERT_CONTAINS(run->out, "GFLOP/s");
    ASSERT_CONTAINS(run->out, "OF LIMIT");
    ASSERT_CONTAINS(run->out, "% of fma"); /* the square products */
    ASSERT_CONTAINS(run->out, "% of bw");  /* the matrix-vector products */
    ASSERT(strstr(run->out, "softmax") == NULL);
    ASSERT(strstr(run->out, "ERROR") == NULL);
    free(run);
}

/* Every result's share of its limit: a number, positive and below 500%, of
 * the limit that bounds it, which is the device's figure for that limit.
 * Not a speed check: the measured bandwidth of a shared VM swings by 2x
 * between runs (an add once read 223% of it in CI), while a unit slip
 * (bits for bytes, a missing 1e9) is off by 8x or more. */
static void check_percent(const cJSON *result, const cJSON *limits)
{
    const char *op = json_string(result, "op"), *limit = json_string(result, "limit");
    double percent = json_number(result, "percent_of_limit");
    double attainable = json_number(result, "attainable");
    ASSERT_MSG(percent > 0 && percent < 500, "%s %s: %g%% of %s", op,
               json_string(result, "dtype"), percent, limit);
    ASSERT(attainable > 0);
    /* square products (tens of FLOP a byte) are bound by the FMA peak; the
     * ops without FLOP by the bandwidth; matrix-vector products (2 to 4
     * FLOP a byte) by the bandwidth, unless the FMA peak was measured below
     * their intensity x bandwidth (a busy machine): then by that peak */
    int vector = strncmp(json_string(result, "shape"), "M1 ", 3) == 0;
    if (strcmp(op, "matmul") == 0 && !vector) ASSERT_STR_EQ(limit, "f32_fma");
    else if (strcmp(op, "matmul") != 0 && strcmp(op, "attention") != 0)
        ASSERT_STR_EQ(limit, "bandwidth");
    /* the attainable rate: the bandwidth itself (GB/s rows), intensity x
     * bandwidth (GFLOP/s rows bound by it), or the FMA peak */
    int flops = strcmp(op, "matmul") == 0 || strcmp(op, "attention") == 0;
    if (strcmp(limit, "bandwidth") == 0 && !flops)
        ASSERT_NEAR(attainable / json_number(limits, "bandwidth_gbps"), 1.0, 1e-9);
    else if (strcmp(limit, "f32_fma") == 0)
        ASSERT_NEAR(attainable / json_number(limits, "f32_gflops"), 1.0, 1e-9);
    else
        ASSERT(attainable <= json_number(limits, "f32_gflops") * (1 + 1e-9));
    /* a matrix-vector product does 2 FLOP per weight: 0.5 FLOP a byte with
     * F32 weights, 3.6 with Q4_0's 4.5 bits (blocks counted as bytes per
     * block, not per element) */
    if (strcmp(op, "matmul") == 0 && vector && strcmp(limit, "bandwidth") == 0) {
        double intensity = attainable / json_number(limits, "bandwidth_gbps");
        ASSERT_MSG(intensity > 0.45 && intensity < 4.0, "%s %s: %g FLOP a byte",
                   json_string(result, "dtype"), json_string(result, "shape"), intensity);
    }
}

OX_TEST(bench_json)
{
    char cache[512];
    private_limits_cache(cache, sizeof cache);
    ox_run *run = RUN_OX("bench", "--quick", "--device", "cpu", "--json");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    cJSON *root = parse_json(run->out);
    const cJSON *device = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "devices"), 0);
    ASSERT_STR_EQ(json_string(device, "id"), "cpu:0");
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(device, "limits");
    ASSERT(json_number(limits, "bandwidth_gbps") > 0.1);
    ASSERT(json_number(limits, "copy_gbps") > 0.1 && json_number(limits, "triad_gbps") > 0.1);
    ASSERT(json_number(limits, "f32_gflops") > 0);
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(limits, "cached")));
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(device, "results"), *result;
    ASSERT(cJSON_GetArraySize(results) >= 12);
    cJSON_ArrayForEach(result, results) {
        const char *op = json_string(result, "op");
        if (strcmp(op, "matmul") == 0 || strcmp(op, "attention") == 0)
            ASSERT(json_number(result, "gflops") > 0);
        else ASSERT(json_number(result, "gbps") > 0);
        ASSERT(json_number(result, "seconds") > 0);
        check_percent(result, limits);
    }
    cJSON_Delete(root);
    free(run);

    /* The second run reads the cache; --remeasure measures again. */
    run = RUN_OX("bench", "--quick", "--device", "cpu", "--json", "--", "add");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "\"cached\":\ttrue");
    free(run);
    run = RUN_OX("bench", "--quick", "--device", "cpu", "--remeasure", "--", "add");
    unlink(cache);
    ASSERT_MSG(run->status == 0, "exit %d:\n%s", run->status, run->err);
    ASSERT_CONTAINS(run->out, "measured in");
    free(run);
}

OX_TEST(bench_usage)
{
    ox_run *run = RUN_OX("bench", "nosuch");
    ASSERT_EQ(run->status, 2);
    ASSERT_CONTAINS(run->err, "unknown op 'nosuch'");
    ASSERT_CONTAINS(run->err, "matmul");
    free(run);

    ox_run *help = RUN_OX("bench", "--help");
    ASSERT_EQ(help->status, 0);
    ASSERT_CONTAINS(help->out, "Usage: ox bench [OPTIONS] [OP...]");
    free(help);

    /* Nothing to run on: a failure that says so. */
    ox_run *none = RUN_OX("bench", "add", "--quick", "--device", "");
    ASSERT_EQ(none->status, 1);
    ASSERT_CONTAINS(none->err, "ox bench: ");
    free(none);
}

/* ---- ox kernel-check --------------------------------------------------------- */

/* A kernel file in a fresh temporary folder; its path in `path`. */
static void write_kernel(char *path, size_t cap, const char *text)
{
    char dir[] = "/tmp/ox-kernel-check-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, cap, "%s/k.oxc", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    ASSERT_EQ(fclose(f), 0);
}

static const char TILE_KERNEL[] =
    "KERNEL tile_sum(ARG_BUF(float, out), ARG_BUF(const float, x))\n"
    "{\n"
    "    BUF(float, out);\n"
    "    BUF(const float, x);\n"
    "    LOCAL_ARRAY(float, t, WG);\n"
    "    t[ox_local_id(0)] = x[ox_global_id(0)];\n"
    "    BARRIER();\n"
    "    if (ox_local_id(0) == 0) out[ox_group_id(0)] = t[0] + t[WG - 1];\n"
    "}\n";

OX_TEST(kernel_check_compiles_with_defines)
{
    char path[256];
    write_kernel(path, sizeof path, TILE_KERNEL);
    ox_run *run = RUN_OX("kernel-check", path, "-DWG=64", "--api", "cpu", "--json");
    if (run->status == 1 && strstr(run->out, "no C compiler"))
        OX_SKIP("no C compiler here: %s", run->out);
    ASSERT_MSG(run->status == 0, "%s%s", run->out, run->err);
    cJSON *root = parse_json(run->out);
    ASSERT(strncmp(json_string(root, "options"), "-DWG=64 -I/tmp/ox-kernel-check-", 31) == 0);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "portable")));
    const cJSON *apis = cJSON_GetObjectItemCaseSensitive(root, "apis");
    ASSERT_EQ(cJSON_GetArraySize(apis), 1);
    ASSERT_STR_EQ(json_string(cJSON_GetArrayItem(apis, 0), "api"), "cpu");
    ASSERT_STR_EQ(json_string(cJSON_GetArrayItem(apis, 0), "result"), "compiles");
    cJSON_Delete(root);
    free(run);
    /* without the define, WG is undeclared: it fails, with the compiler's words */
    run = RUN_OX("kernel-check", path, "--api", "cpu");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->out, "cpu     FAILS");
    ASSERT_CONTAINS(run->out, "user program:5:");
    ASSERT_CONTAINS(run->out, "WG");
    ASSERT_CONTAINS(run->out, "does not compile everywhere it was checked");
    free(run);
    remove(path);
}

OX_TEST(kernel_check_names_what_does_not_port)
{
    char path[256];
    /* an OpenCL vector type: OpenCL takes it, C and CUDA do not */
    write_kernel(path, sizeof path,
                 "KERNEL k(ARG_BUF(float, y))\n"
                 "{\n"
                 "    BUF(float, y);\n"
                 "    float4 v = (float4)(1.0f);\n"
                 "    y[ox_global_id(0)] = v.x;\n"
                 "}\n");
    ox_run *run = RUN_OX("kernel-check", path, "--json");
    ASSERT_EQ(run->status, 1);
    cJSON *root = parse_json(run->out);
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root, "portable")));
    const cJSON *api;
    int fails = 0, compiles = 0;
    cJSON_ArrayForEach(api, cJSON_GetObjectItemCaseSensitive(root, "apis")) {
        const char *name = json_string(api, "api"), *result = json_string(api, "result");
        printf("  %s: %s\n", name, result);
        if (strcmp(result, "fails") == 0) {
            fails++;
            ASSERT_CONTAINS(json_string(api, "messages"), "float4");
        }
        compiles += strcmp(result, "compiles") == 0;
        if (strcmp(name, "opencl") == 0 && strcmp(result, "not checked") != 0)
            ASSERT_STR_EQ(result, "compiles");
        if (strcmp(name, "cpu") == 0 && strcmp(result, "not checked") != 0)
            ASSERT_STR_EQ(result, "fails");
    }
    ASSERT(fails >= 1);
    printf("  %d API(s) compile it, %d do not\n", compiles, fails);
    cJSON_Delete(root);
    free(run);
    /* a parameter no device can take: refused before any compiler, named */
    remove(path);
    write_kernel(path, sizeof path, "KERNEL k(size_t n) { }\n");
    run = RUN_OX("kernel-check", path, "--api", "cpu,opencl");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->out, "scalar type 'size_t'");
    free(run);
    remove(path);
}

/* A header beside the kernel file is found, as a compiler would find it. */
OX_TEST(kernel_check_includes_beside_the_file)
{
    char path[256];
    write_kernel(path, sizeof path,
                 "#include \"helpers.h\"\n"
                 "KERNEL twice(ARG_BUF(float, y)) { BUF(float, y); y[ox_global_id(0)] = "
                 "doubled(y[ox_global_id(0)]); }\n");
    char header[300];
    snprintf(header, sizeof header, "%.*s/helpers.h", (int)(strrchr(path, '/') - path), path);
    FILE *f = fopen(header, "w");
    ASSERT(f != NULL);
    fputs("FN float doubled(float v) { return 2.0f * v; }\n", f);
    ASSERT_EQ(fclose(f), 0);
    ox_run *run = RUN_OX("kernel-check", path, "--api", "cpu,opencl,cuda");
    printf("%s", run->out);
    ASSERT_MSG(run->status == 0 || strstr(run->out, "no C compiler"), "%s%s", run->out, run->err);
    ASSERT(strstr(run->out, "FAILS") == NULL);
    free(run);
    /* the header changes, the kernel file does not: no cache may answer
     * with the old build */
    f = fopen(header, "w");
    ASSERT(f != NULL);
    fputs("FN float doubled(float v) { return 2.0f * v }\n", f); /* no ';' */
    ASSERT_EQ(fclose(f), 0);
    run = RUN_OX("kernel-check", path, "--api", "cpu,opencl,cuda");
    printf("%s", run->out);
    ASSERT_EQ(run->status, 1);
    ASSERT(strstr(run->out, "compiles ") == NULL);
    free(run);
    remove(header);
    remove(path);
}

OX_TEST(kernel_check_usage)
{
    ox_run *run = RUN_OX("kernel-check");
    ASSERT_EQ(run->status, 2);
    ASSERT_CONTAINS(run->err, "which kernel file?");
    free(run);
    run = RUN_OX("kernel-check", "k.oxc", "--api", "metal");
    ASSERT_EQ(run->status, 2);
    ASSERT_CONTAINS(run->err, "'metal' is none of cpu, opencl, cuda, hip");
    free(run);
    run = RUN_OX("kernel-check", "/nonexistent/k.oxc");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "cannot open /nonexistent/k.oxc");
    free(run);
    run = RUN_OX("kernel-check", "--help");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "Usage: ox kernel-check");
    free(run);
}

/* ---- ox quantize --------------------------------------------------------------- */

/* A two-layer model of F32 weights, 256 wide, in a fresh folder: its path. */
static void write_small_model(char *path, size_t cap)
{
    char dir[] = "/tmp/ox-cli-quantize-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, cap, "%s/in.gguf", dir);
    ox_context *ctx = test_cpu_context();
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    static float data[256 * 8];
    for (int i = 0; i < 256 * 8; i++) data[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    const char *const names[] = {"token_embd.weight", "blk.0.attn_v.weight", "blk.0.ffn_down.weight",
                                 "blk.1.attn_v.weight", "blk.1.ffn_down.weight", "output.weight"};
    int64_t ne[2] = {256, 8};
    for (int i = 0; i < 6; i++)
        ASSERT_OK(ctx, ox_gguf_writer_add_tensor(w, names[i], OX_GGML_TYPE_F32, 2, ne, data,
                                                 sizeof data));
    ASSERT_OK(ctx, ox_gguf_writer_write_file(w, path));
    ox_gguf_writer_free(w);
    ox_context_free(ctx);
}

OX_TEST(quantize_writes_reports_and_refuses)
{
    char in[300], out[320];
    write_small_model(in, sizeof in);
    snprintf(out, sizeof out, "%.*s/out.gguf", (int)(strrchr(in, '/') - in), in);

    ox_run *run = RUN_OX("quantize", in, out, "q4_k_m");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "wrote ");
    ASSERT_CONTAINS(run->out, "6 tensors, 6 converted");
    ASSERT(strchr(run->err, '\r') == NULL); /* no progress bar off a terminal */
    free(run);

    run = RUN_OX("quantize", in, out, "q8_0", "--dry-run");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "blk.1.ffn_down.weight");
    ASSERT_CONTAINS(run->out, "would write");
    free(run);

    run = RUN_OX("quantize", "--json", "--threads", "2", in, out, "q4_0");
    ASSERT_EQ(run->status, 0);
    cJSON *root = cJSON_Parse(run->out);
    ASSERT(root != NULL);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(root, "tensors")), 6);
    ASSERT_EQ((int)cJSON_GetObjectItem(root, "file_type")->valuedouble, 2);
    /* output.weight goes to q6_k under q4_0, as llama.cpp does */
    cJSON *last = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "tensors"), 5);
    ASSERT_STR_EQ(cJSON_GetObjectItem(last, "to")->valuestring, "q6_k");
    cJSON_Delete(root);
    free(run);

    run = RUN_OX("quantize", in, out);
    ASSERT_EQ(run->status, 2);
    ASSERT_CONTAINS(run->err, "give IN.gguf OUT.gguf TYPE");
    free(run);
    run = RUN_OX("quantize", in, out, "q2_k");
    ASSERT_EQ(run->status, 2);
    ASSERT_CONTAINS(run->err, "unknown TYPE 'q2_k'");
    free(run);
    run = RUN_OX("quantize", in, out, "q8_0", "--threads", "0");
    ASSERT_EQ(run->status, 2);
    free(run);
    run = RUN_OX("quantize", "/nonexistent/model.gguf", out, "q8_0");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "/nonexistent/model.gguf");
    free(run);
    run = RUN_OX("quantize", "--help");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "q4_k_m");
    free(run);
}

/* ox tune --model: the model's classes only (the small model is F32 then
 * Q8_0 after quantizing), and refusals that name what is wrong */
OX_TEST(tune_model)
{
    char in[300], q8[320];
    write_small_model(in, sizeof in);
    snprintf(q8, sizeof q8, "%.*s/q8.gguf", (int)(strrchr(in, '/') - in), in);
    ox_run *run = RUN_OX("tune", "--help");
    ASSERT_EQ(run->status, 0);
    ASSERT_CONTAINS(run->out, "--model FILE");
    free(run);
    run = RUN_OX("tune", "--model", "/nonexistent/model.gguf");
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "/nonexistent/model.gguf");
    free(run);
    char *id = find_opencl_device();
    if (!id) OX_SKIP("no OpenCL device ('ox devices' lists none): tuning on a model not run");
    const char *asan = getenv("ASAN_OPTIONS"); /* PoCL's LLVM leaks: as check_opencl_quick */
    char options[512];
    snprintf(options, sizeof options, "%s%sdetect_leaks=0", asan ? asan : "",
             asan && asan[0] ? ":" : "");
    ASSERT_EQ(setenv("ASAN_OPTIONS", options, 1), 0);
    run = RUN_OX("tune", "--device", id, "--op", "qmatvec", "--model", in);
    ASSERT_EQ(run->status, 1);
    ASSERT_CONTAINS(run->err, "uses no class of qmatvec");
    free(run);
    run = RUN_OX("quantize", in, q8, "q8_0");
    ASSERT_EQ(run->status, 0);
    free(run);
    run = RUN_OX("tune", "--device", id, "--op", "qmatvec", "--model", q8, "--budget", "5",
                 "--dry-run", "--json");
    ASSERT_MSG(run->status == 0, "exit %d:\n%s%s", run->status, run->out, run->err);
    cJSON *root = parse_json(run->out);
    ASSERT_STR_EQ(json_string(root, "model"), q8);
    cJSON *device = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "devices"), 0);
    cJSON *results = cJSON_GetObjectItem(device, "results");
    ASSERT_EQ(cJSON_GetArraySize(results), 1);
    cJSON *r = cJSON_GetArrayItem(results, 0);
    ASSERT_STR_EQ(json_string(r, "class"), "q8_0");
    /* 5 matrices of 8 x 256 (the embedding is not the output: left out),
     * repeated to 2048 launches at most */
    ASSERT_STR_EQ(json_string(r, "shape"), "step 2045 of 1, 4 MiB");
    ASSERT_EQ((int)json_number(r, "rejected"), 0);
    cJSON_Delete(root);
    free(run);
}

/* Environment variables with values the runtime cannot use are named once
 * with the value used instead (issue 16), and OX_NUM_THREADS is capped at 4
 * threads per usable core. */
OX_TEST(environment_mistakes_are_named)
{
    setenv("OX_NUM_THREADS", "abc", 1);
    ox_run *r = RUN_OX("devices", "--json");
    ASSERT_EQ(r->status, 0);
    ASSERT_CONTAINS(r->err, "OX_NUM_THREADS=abc is not a positive integer");
    free(r);
    setenv("OX_NUM_THREADS", "100000", 1);
    r = RUN_OX("devices", "--json");
    ASSERT_EQ(r->status, 0);
    ASSERT_CONTAINS(r->err, "OX_NUM_THREADS=100000 is more than 4 x the");
    cJSON *doc = cJSON_Parse(r->out);
    ASSERT_MSG(doc, "not JSON: %s", r->out);
    cJSON *cpu = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "devices"), 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int units = cJSON_GetObjectItem(cpu, "compute_units")->valueint;
    ASSERT_MSG(units >= 1 && units <= 4 * cores, "%d compute units for %ld cores", units, cores);
    cJSON_Delete(doc);
    free(r);
    unsetenv("OX_NUM_THREADS");
    setenv("OX_LOG", "garbage", 1);
    r = RUN_OX("devices");
    ASSERT_EQ(r->status, 0);
    ASSERT_CONTAINS(r->err, "OX_LOG=garbage is not debug, info, warn, error or off");
    free(r);
    unsetenv("OX_LOG");
    setenv("OX_BACKENDS", "cpu,opencll", 1);
    r = RUN_OX("devices");
    ASSERT_EQ(r->status, 0);
    ASSERT_CONTAINS(r->err, "no backend named 'opencll' was found");
    free(r);
    unsetenv("OX_BACKENDS");
}

OX_TEST_MAIN(version, environment_mistakes_are_named, help_lists_commands, help_for_a_command, unknown_command, no_command,
             unknown_option, missing_option_argument, devices_table, devices_json,
             devices_selected, devices_bad_selection, check_cpu_quick, check_op_filter,
             check_op_unknown, check_html_report, check_json_ops, check_json_stdout,
             check_json_file, check_nothing_selected_fails, check_nothing_ran_fails,
             check_opencl_quick,
             bench_matmul_cpu, bench_json, bench_usage, kernel_check_compiles_with_defines,
             kernel_check_names_what_does_not_port, kernel_check_includes_beside_the_file,
             kernel_check_usage, quantize_writes_reports_and_refuses, tune_model)
