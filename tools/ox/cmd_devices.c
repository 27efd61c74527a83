/* 'ox devices': list the devices and the loaded backends, as an aligned
 * table or as JSON. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPTION_JSON, OPTION_DEVICE };

static const cli_option devices_options[] = {
    [OPTION_JSON] = {"json", NULL, "print one JSON object instead of tables", 0},
    [OPTION_DEVICE] = {"device", "SEL",
                       "list only the devices SEL selects: cpu, opencl:0, cuda:*,\n"
                       "all, default, or a comma-separated list of these", 0},
    {NULL, NULL, NULL, 0},
};

/* ---- a small text table: columns padded to their widest cell ---------------- */

#define TABLE_MAX_COLUMNS 8
#define TABLE_CELL_SIZE 512

typedef char table_cell[TABLE_CELL_SIZE];

typedef struct table {
    int columns;
    int rows;
    int capacity;      /* rows allocated */
    table_cell *cells; /* rows * columns */
} table;

static void table_free(table *t)
{
    free(t->cells);
    t->cells = NULL;
}

/* Append a row of `t->columns` strings; returns 0, or -1 out of memory. */
static int table_add(table *t, const char *const *cells)
{
    if (t->rows == t->capacity) {
        int capacity = t->capacity ? 2 * t->capacity : 8;
        table_cell *grown = realloc(t->cells, (size_t)capacity * (size_t)t->columns * sizeof *grown);
        if (!grown) return -1;
        t->cells = grown;
        t->capacity = capacity;
    }
    for (int c = 0; c < t->columns; c++)
        snprintf(t->cells[t->rows * t->columns + c], TABLE_CELL_SIZE, "%s", cells[c]);
    t->rows++;
    return 0;
}

/* Print every row after `indent` spaces; the last column is not padded. */
static void table_print(const table *t, int indent, FILE *out)
{
    int widths[TABLE_MAX_COLUMNS] = {0};
    for (int r = 0; r < t->rows; r++)
        for (int c = 0; c < t->columns; c++) {
            int w = (int)strlen(t->cells[r * t->columns + c]);
            if (w > widths[c]) widths[c] = w;
        }
    for (int r = 0; r < t->rows; r++) {
        table_cell *row = &t->cells[r * t->columns];
        int last = t->columns - 1;
        while (last > 0 && !row[last][0]) last--; /* no trailing blanks */
        fprintf(out, "%*s", indent, "");
        for (int c = 0; c < last; c++) fprintf(out, "%-*s  ", widths[c], row[c]);
        fprintf(out, "%s\n", row[last]);
    }
}

/* ---- text output ----------------------------------------------------------- */

static int print_device_table(const cli_command *command, ox_device **devices, int count)
{
    static const char *const header[] = {"ID",  "TYPE", "VENDOR",  "NAME",
                                         "MEMORY", "CUs", "FEATURES"};
    table t = {.columns = 7};
    table notes = {.columns = 2}; /* backend remarks go below, not in a column */
    int code = CLI_EXIT_FAILURE;

    if (table_add(&t, header) != 0) goto err_memory;
    for (int i = 0; i < count; i++) {
        ox_device_info info;
        char memory[32], units[16], features[TABLE_CELL_SIZE];
        if (cli_device_info(command, devices[i], &info) != CLI_EXIT_OK) goto out_free_tables;
        cli_format_bytes(info.memory_bytes, memory, sizeof memory);
        snprintf(units, sizeof units, "%u", (unsigned)info.compute_units);
        cli_format_features(info.features, features, sizeof features);
        char vendor[128], name[256]; /* from drivers: their control characters escaped */
        cli_printable(info.vendor, vendor, sizeof vendor);
        cli_printable(info.name, name, sizeof name);
        const char *row[] = {info.id,  ox_device_type_str(info.type), vendor, name,
                             memory, units, features[0] ? features : "-"};
        if (table_add(&t, row) != 0) goto err_memory;
        const char *note[] = {info.id, info.note};
        if (info.note[0] && table_add(&notes, note) != 0) goto err_memory;
    }
    if (count == 0) puts("(no devices)");
    else table_print(&t, 0, stdout);
    if (notes.rows) {
        puts("\nNotes:");
        table_print(&notes, 2, stdout);
    }
    code = CLI_EXIT_OK;
    goto out_free_tables;

err_memory:
    code = cli_error(command, "out of memory");
out_free_tables:
    table_free(&notes);
    table_free(&t);
    return code;
}

static int get_backend_info(const cli_command *command, ox_context *ctx, int index,
                            ox_backend_info *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    ox_status status = ox_backend_get_info(ctx, index, info);
    if (status != OX_OK) return cli_library_error(command, ctx, status);
    return CLI_EXIT_OK;
}

static int print_backend_table(const cli_command *command, ox_context *ctx)
{
    table t = {.columns = 4};
    int count = 0, code = CLI_EXIT_FAILURE;

    ox_status status = ox_backend_count(ctx, &count);
    if (status != OX_OK) return cli_library_error(command, ctx, status);
    for (int i = 0; i < count; i++) {
        ox_backend_info info;
        char devices[32];
        if (get_backend_info(command, ctx, i, &info) != CLI_EXIT_OK) goto out_free_table;
        snprintf(devices, sizeof devices, "%d device%s", info.device_count,
                 info.device_count == 1 ? "" : "s");
        const char *row[] = {info.name, devices, info.path,
                             info.device_count == 0 && info.note[0] ? info.note : ""};
        if (table_add(&t, row) != 0) {
            code = cli_error(command, "out of memory");
            goto out_free_table;
        }
    }
    puts("\nBackends:");
    table_print(&t, 2, stdout);
    code = CLI_EXIT_OK;
out_free_table:
    table_free(&t);
    return code;
}

/* ---- JSON output ------------------------------------------------------------ */

static cJSON *device_json(const ox_device_info *info)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "id", info->id);
    cJSON_AddStringToObject(object, "backend", info->backend);
    cJSON_AddNumberToObject(object, "index", info->index);
    cJSON_AddStringToObject(object, "type", ox_device_type_str(info->type));
    cJSON_AddStringToObject(object, "name", info->name);
    cJSON_AddStringToObject(object, "vendor", info->vendor);
    cJSON_AddStringToObject(object, "driver_version", info->driver_version);
    cli_json_add_u64(object, "memory_bytes", info->memory_bytes);
    cli_json_add_u64(object, "max_alloc_bytes", info->max_alloc_bytes);
    cli_json_add_u64(object, "local_memory_bytes", info->local_memory_bytes);
    cli_json_add_u64(object, "compute_units", info->compute_units);
    cli_json_add_u64(object, "max_work_group_size", info->max_work_group_size);
    cli_json_add_u64(object, "clock_mhz", info->clock_mhz);
    cJSON *features = cJSON_AddArrayToObject(object, "features");
    for (int bit = 0; bit < 64; bit++) {
        if (!(info->features & (UINT64_C(1) << bit))) continue;
        char unknown[16];
        cJSON_AddItemToArray(features,
                             cJSON_CreateString(cli_feature_name(bit, unknown, sizeof unknown)));
    }
    cJSON_AddStringToObject(object, "note", info->note);
    return object;
}

static cJSON *backend_json(const ox_backend_info *info)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "name", info->name);
    cJSON_AddStringToObject(object, "path", info->path);
    cJSON_AddNumberToObject(object, "abi_version", info->abi_version);
    cJSON_AddNumberToObject(object, "device_count", info->device_count);
    cJSON_AddStringToObject(object, "note", info->note);
    return object;
}

static int print_json(const cli_command *command, ox_context *ctx, ox_device **devices,
                      int count)
{
    int backends = 0, code = CLI_EXIT_FAILURE;
    cJSON *root = cli_json_document();
    cJSON *device_array = cJSON_AddArrayToObject(root, "devices");
    cJSON *backend_array = cJSON_AddArrayToObject(root, "backends");
    if (!device_array || !backend_array) {
        code = cli_error(command, "out of memory");
        goto out_free_root;
    }

    for (int i = 0; i < count; i++) {
        ox_device_info info;
        if (cli_device_info(command, devices[i], &info) != CLI_EXIT_OK) goto out_free_root;
        cJSON_AddItemToArray(device_array, device_json(&info));
    }
    ox_status status = ox_backend_count(ctx, &backends);
    if (status != OX_OK) {
        code = cli_library_error(command, ctx, status);
        goto out_free_root;
    }
    for (int i = 0; i < backends; i++) {
        ox_backend_info info;
        if (get_backend_info(command, ctx, i, &info) != CLI_EXIT_OK) goto out_free_root;
        cJSON_AddItemToArray(backend_array, backend_json(&info));
    }
    code = cli_json_write(command, root, "-");
out_free_root:
    cJSON_Delete(root);
    return code;
}

/* ---- the command ------------------------------------------------------------ */

static int run_devices(const cli_command *command, int argc, char **argv)
{
    const char *selection = NULL, *value;
    int json = 0, option;
    cli_parser parser;

    cli_parser_init(&parser, command, argc, argv);
    while ((option = cli_parse_next(&parser, &value)) >= 0) {
        if (option == OPTION_JSON) json = 1;
        else if (option == OPTION_DEVICE) selection = value;
    }
    if (option != CLI_PARSE_END) return cli_parse_stop(command, option);

    ox_context *ctx = NULL;
    ox_device **devices = NULL;
    int count = 0;
    int code = cli_context_open(command, &ctx);
    if (code != CLI_EXIT_OK) return code;
    code = cli_devices_select(command, ctx, selection, &devices, &count);
    if (code != CLI_EXIT_OK) goto out_free_context;

    if (json) {
        code = print_json(command, ctx, devices, count);
    } else {
        code = print_device_table(command, devices, count);
        if (code == CLI_EXIT_OK) code = print_backend_table(command, ctx);
    }
    free(devices);
out_free_context:
    ox_context_free(ctx);
    return code;
}

const cli_command cmd_devices = {
    .name = "devices",
    .summary = "list the devices and backends OpenXPU finds",
    .description = "List every device OpenXPU finds (or those --device selects) with its type,\n"
                   "vendor, memory, compute units and features, then the loaded backends.",
    .options = devices_options,
    .run = run_devices,
};
