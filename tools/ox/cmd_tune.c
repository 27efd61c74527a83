/* 'ox tune': search the portable kernels' parameters on each selected
 * device (ox_device_tune) and keep the winners in the device's tuning
 * file, so every later run uses them. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPTION_DEVICE, OPTION_OP, OPTION_MODEL, OPTION_BUDGET, OPTION_JSON, OPTION_DRY_RUN };

#define MAX_SHAPES 256

static const cli_option tune_options[] = {
    [OPTION_DEVICE] = {"device", "SEL", "tune the devices SEL selects (default: every device "
                       "with portable kernels)", 0},
    [OPTION_OP] = {"op", "NAME", "tune one family only (matmul, matvec, qmatvec, qmatmul, "
                   "elementwise, rows, attention)", 0},
    [OPTION_MODEL] = {"model", "FILE", "time the matrix-vector kernels (matvec, qmatvec) on a "
                      "decode step of this GGUF model's matrices instead of built-in shapes, and "
                      "only the classes it uses", 0},
    [OPTION_BUDGET] = {"budget", "SECONDS", "wall time for each device (default 300)", 0},
    [OPTION_JSON] = {"json", NULL, "print one JSON object instead of the table", 0},
    [OPTION_DRY_RUN] = {"dry-run", NULL, "search and report, but keep nothing", 0},
    {NULL, NULL, NULL, 0},
};

typedef struct tune_state {
    const char *device_id;
    cJSON *results; /* JSON array, or NULL for the table */
    int classes, improved;
} tune_state;

static void on_result(const ox_tune_result *r, void *user)
{
    tune_state *st = user;
    st->classes++;
    double speedup = r->default_seconds > 0 && r->best_seconds > 0
                         ? r->default_seconds / r->best_seconds : 0;
    if (speedup > 1.0) st->improved++;
    if (st->results) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", r->op);
        cJSON_AddStringToObject(o, "class", r->cls);
        cJSON_AddStringToObject(o, "shape", r->shape);
        cJSON_AddStringToObject(o, "default", r->default_params);
        cJSON_AddStringToObject(o, "best", r->best_params);
        cJSON_AddNumberToObject(o, "default_seconds", r->default_seconds);
        cJSON_AddNumberToObject(o, "best_seconds", r->best_seconds);
        if (speedup > 0) cJSON_AddNumberToObject(o, "speedup", speedup);
        else cJSON_AddNullToObject(o, "speedup");
        cJSON_AddNumberToObject(o, "tried", r->tried);
        cJSON_AddNumberToObject(o, "rejected", r->rejected);
        cJSON_AddNumberToObject(o, "failed", r->failed);
        cJSON_AddBoolToObject(o, "budget_ended_search", r->stopped);
        cJSON_AddItemToArray(st->results, o);
        return;
    }
    char t_default[32], t_best[32];
    cli_format_seconds(r->default_seconds, t_default, sizeof t_default);
    cli_format_seconds(r->best_seconds, t_best, sizeof t_best);
    printf("%-9s %-11s %-6s %-22s %10s %10s %6.2fx  %3d/%d/%d%s  %s\n", st->device_id, r->op,
           r->cls, r->shape, r->default_seconds > 0 ? t_default : "-",
           r->best_seconds > 0 ? t_best : "-", speedup, r->tried, r->rejected, r->failed,
           r->stopped ? "+" : " ", r->best_params[0] ? r->best_params : "(none ran)");
    fflush(stdout);
}

static int run_tune(const cli_command *command, int argc, char **argv)
{
    const char *selection = NULL, *op = NULL, *model = NULL, *value;
    double budget = 300;
    int json = 0, dry = 0, option;
    cli_parser parser;
    cli_parser_init(&parser, command, argc, argv);
    while ((option = cli_parse_next(&parser, &value)) >= 0) {
        if (option == OPTION_DEVICE) selection = value;
        else if (option == OPTION_OP) op = value;
        else if (option == OPTION_MODEL) model = value;
        else if (option == OPTION_JSON) json = 1;
        else if (option == OPTION_DRY_RUN) dry = 1;
        else if (option == OPTION_BUDGET) {
            char *end;
            budget = strtod(value, &end);
            if (!*value || *end || !(budget > 0) || budget > 1e6)
                return cli_usage_error(command, "--budget: '%s' is not a number of seconds > 0",
                                       value);
        }
    }
    if (option != CLI_PARSE_END) return cli_parse_stop(command, option);
    if (op && !cli_name_known(ox_tune_op_name, op, false)) {
        char list[256];
        cli_name_list(ox_tune_op_name, list, sizeof list);
        return cli_usage_error(command, "unknown op '%s'; the tunable ops are: %s", op, list);
    }

    ox_context *ctx = NULL;
    ox_device **devices = NULL;
    cJSON *root = NULL, *device_array = NULL;
    ox_tune_matrix *shapes = NULL;
    int count = 0, code = cli_context_open(command, &ctx), tuned = 0, failed = 0, n_shapes = 0;
    if (code != CLI_EXIT_OK) return code;
    if (model) {
        ox_gguf *gguf = NULL;
        shapes = calloc(MAX_SHAPES, sizeof *shapes);
        if (!shapes) {
            code = cli_error(command, "out of memory");
            goto out;
        }
        if (ox_gguf_open(ctx, model, &gguf) != OX_OK ||
            ox_tune_model_matrices(gguf, shapes, MAX_SHAPES, &n_shapes) != OX_OK) {
            code = cli_error(command, "%s", ox_errmsg(ctx));
            ox_gguf_close(gguf);
            goto out;
        }
        ox_gguf_close(gguf);
        if (n_shapes == 0) {
            code = cli_error(command, "%s: no weight matrices of a type OpenXPU computes with",
                             model);
            goto out;
        }
    }
    code = cli_devices_select(command, ctx, selection ? selection : "all", &devices, &count);
    if (code != CLI_EXIT_OK) goto out;
    if (json) {
        root = cli_json_document();
        if (root && model) cJSON_AddStringToObject(root, "model", model);
        device_array = root ? cJSON_AddArrayToObject(root, "devices") : NULL;
        if (!device_array) {
            code = cli_error(command, "out of memory");
            goto out;
        }
    } else {
        printf("%-9s %-11s %-6s %-22s %10s %10s %7s  %-7s  %s\n", "DEVICE", "OP", "CLASS", "SHAPE",
               "DEFAULT", "BEST", "SPEEDUP", "T/R/F", "BEST PARAMETERS");
    }
    for (int i = 0; i < count; i++) {
        ox_device_info info;
        if (cli_device_info(command, devices[i], &info) != CLI_EXIT_OK) {
            failed++;
            continue;
        }
        tune_state st = {.device_id = info.id};
        cJSON *dev = NULL;
        if (device_array) {
            dev = cJSON_CreateObject();
            cJSON_AddStringToObject(dev, "id", info.id);
            cJSON_AddStringToObject(dev, "name", info.name);
            st.results = cJSON_AddArrayToObject(dev, "results");
            cJSON_AddItemToArray(device_array, dev);
        }
        ox_tune_options o = {.struct_size = sizeof o, .op = op, .budget_seconds = budget,
                             .callback = on_result, .user = &st,
                             .flags = dry ? OX_TUNE_DRY_RUN : 0, .matrices = shapes,
                             .n_matrices = n_shapes};
        ox_status s = ox_device_tune(devices[i], &o);
        if (s == OX_ERR_UNSUPPORTED && !selection) {
            /* 'all' includes the CPU, which runs native code: not a failure */
            if (dev) cJSON_AddStringToObject(dev, "skipped", ox_errmsg(ctx));
            else fprintf(stderr, "ox tune: %s\n", ox_errmsg(ctx));
            continue;
        }
        if (s != OX_OK) {
            failed++;
            if (dev) cJSON_AddStringToObject(dev, "error", ox_errmsg(ctx));
            else fprintf(stderr, "ox tune: %s: %s\n", info.id, ox_errmsg(ctx));
            continue;
        }
        tuned++;
        if (!json)
            fprintf(stderr, "ox tune: %s: %d classes, %d faster than the defaults%s\n", info.id,
                    st.classes, st.improved, dry ? " (dry run: nothing kept)" : "");
    }
    if (tuned == 0 && failed == 0) {
        code = cli_error(command, "no selected device has portable kernels to tune");
    } else {
        code = failed ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    }
    if (root) {
        cJSON_AddBoolToObject(root, "passed", code == CLI_EXIT_OK);
        if (cli_json_write(command, root, "-") != CLI_EXIT_OK) code = CLI_EXIT_FAILURE;
    }
out:
    cJSON_Delete(root);
    free(shapes);
    free(devices);
    ox_context_free(ctx);
    return code;
}

const cli_command cmd_tune = {
    .name = "tune",
    .summary = "search the portable kernels' parameters on each device, keep the fastest",
    .description =
        "For every tunable kernel family (or --op NAME) and problem class, search\n"
        "the parameters (tiles, work-group shape, work per work-item, variant) on\n"
        "the device within the time budget: each candidate is first checked against\n"
        "the CPU's result for the same inputs (a wrong one is rejected, however\n"
        "fast), then timed. The winners go to the device's tuning file beside the\n"
        "kernel cache (keyed by device, driver and kernel source) and are used by\n"
        "every later run. Columns: the defaults' time, the best time, tried /\n"
        "rejected / failed candidates ('+': the budget ended the search).\n"
        "With --model the matrix-vector kernels are timed on one decode step of\n"
        "that model's matrices of each class's type (scaled to 256 MiB a class),\n"
        "so the winners are the model's; classes it does not use keep their entries.\n"
        "Exits 1 if a device could not be tuned.",
    .options = tune_options,
    .run = run_tune,
};
