/* 'ox plan MODEL --device SEL': where the layers of a model would go on the
 * chosen devices (split by each device's measured speed, as ox run and ox
 * bench-model do it) and the memory each device would need, without loading
 * the model. A model that does not fit is an error saying how much is
 * missing where. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPTION_DEVICE, OPTION_SPLIT, OPTION_CTX, OPTION_CACHE_TYPE, OPTION_JSON };

static const cli_option plan_options[] = {
    [OPTION_DEVICE] = {"device", "SEL", "devices: a list (cpu,opencl:0) or all (default: the "
                       "default device)", 0},
    [OPTION_SPLIT] = {"split", "HOW", "layer (ranges of layers, default) or tensor (every matrix "
                      "by rows)", 0},
    [OPTION_CTX] = {"ctx", "N", "context size in tokens (default: min(model, 4096))", 'c'},
    [OPTION_CACHE_TYPE] = {"cache-type", "TYPE", "KV cache: f16 (default) or f32", 0},
    [OPTION_JSON] = {"json", NULL, "print one JSON object", 0},
    {NULL, NULL, NULL, 0},
};

static double mib(uint64_t bytes)
{
    return (double)bytes / 1048576.0;
}

static int run_plan(const cli_command *command, int argc, char **argv)
{
    const char *model = NULL, *device_sel = NULL, *value;
    ox_pipeline_options po = {.struct_size = sizeof po};
    int json = 0, index, status = CLI_EXIT_OK;
    bool tensor = false, f32 = false;
    cli_parser p;
    cli_parser_init(&p, command, argc, argv);
    while ((index = cli_parse_next(&p, &value)) != CLI_PARSE_END) {
        switch (index) {
        case CLI_PARSE_OPERAND:
            if (model) return cli_usage_error(command, "one model only");
            model = value;
            break;
        case OPTION_DEVICE: device_sel = value; break;
        case OPTION_SPLIT:
            status = cli_parse_choice(command, "split", value, "layer", "tensor", &tensor);
            break;
        case OPTION_CTX: {
            char *end;
            long v = strtol(value, &end, 10);
            if (!*value || *end || v < 1 || v > 10000000)
                return cli_usage_error(command, "--ctx: '%s' is not a context size", value);
            po.n_ctx = (int)v;
            break;
        }
        case OPTION_CACHE_TYPE:
            status = cli_parse_choice(command, "cache-type", value, "f16", "f32", &f32);
            break;
        case OPTION_JSON: json = 1; break;
        default: return cli_parse_stop(command, index);
        }
        if (status != CLI_EXIT_OK) return status;
    }
    po.tensor_parallel = tensor;
    po.kv_f32 = f32;
    if (!model) return cli_usage_error(command, "which model? (ox plan MODEL --device SEL)");
    ox_context *ctx;
    if ((status = cli_context_open(command, &ctx)) != CLI_EXIT_OK) return status;
    ox_device *devices[CLI_MAX_DEVICES];
    ox_stage_info stages[CLI_MAX_DEVICES];
    int n = 0;
    status = cli_select_devices(command, ctx, device_sel, devices, &n);
    ox_status s = OX_OK;
    if (status == CLI_EXIT_OK) s = ox_pipeline_plan(ctx, model, devices, n, &po, stages);
    if (status == CLI_EXIT_OK && s != OX_OK) status = cli_library_error(command, ctx, s);
    if (status == CLI_EXIT_OK && json) {
        cJSON *doc = cli_json_document(), *arr = doc ? cJSON_AddArrayToObject(doc, "stages") : NULL;
        if (doc) cJSON_AddStringToObject(doc, "model", model);
        for (int i = 0; arr && i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "device", stages[i].device);
            cJSON_AddNumberToObject(o, "first_layer", stages[i].first_layer);
            cJSON_AddNumberToObject(o, "last_layer", stages[i].last_layer - 1);
            cJSON_AddNumberToObject(o, "speed_share", stages[i].speed);
            cli_json_add_u64(o, "weight_bytes", stages[i].weight_bytes);
            cli_json_add_u64(o, "kv_bytes", stages[i].kv_bytes);
            cli_json_add_u64(o, "device_bytes_needed", stages[i].need_bytes);
            cJSON_AddItemToArray(arr, o);
        }
        char *text = doc ? cJSON_Print(doc) : NULL;
        if (text) puts(text);
        free(text);
        cJSON_Delete(doc);
    } else if (status == CLI_EXIT_OK) {
        printf("%-12s %-9s %7s %12s %12s %14s\n", "device", "layers", "share", "weights MiB",
               "KV MiB", "device MiB");
        for (int i = 0; i < n; i++) {
            char layers[32];
            snprintf(layers, sizeof layers, "%d-%d", stages[i].first_layer,
                     stages[i].last_layer - 1);
            printf("%-12s %-9s %6.1f%% %12.1f %12.1f %14.1f\n", stages[i].device, layers,
                   100.0 * stages[i].speed, mib(stages[i].weight_bytes), mib(stages[i].kv_bytes),
                   mib(stages[i].need_bytes));
        }
    }
    ox_context_free(ctx);
    return status;
}

const cli_command cmd_plan = {
    .name = "plan",
    .summary = "where a model's layers would go on several devices, and their memory",
    .description =
        "Plan MODEL over the devices of --device (a list such as cpu,opencl:0, or all):\n"
        "contiguous layer ranges in proportion to each device's speed (measured once\n"
        "and cached), with the weights, KV cache and device memory each would need.\n"
        "The CPU maps the weights from the file, so they need no device memory there.\n"
        "Nothing is loaded. ox run and ox bench-model place the layers the same way.",
    .options = plan_options,
    .run = run_plan,
    .operands = "MODEL",
};
