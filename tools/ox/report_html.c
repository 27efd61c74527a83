/* The HTML report of 'ox check': one self-contained page (inline CSS and
 * SVG, no script, nothing fetched from the network) rendered from the
 * JSON document of the run: a summary per device, bar charts of the
 * achieved throughput per op and device, the failures, and every row. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "cli.h"

static const char style[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;"
    "max-width:1280px;padding:0 1em;color:#1d1d1f;line-height:1.4}\n"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;"
    "border-bottom:1px solid #ccc}h3{font-size:1.05em}\n"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}\n"
    "th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left;"
    "vertical-align:top}\n"
    "th{background:#f3f3f5;position:sticky;top:0}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    "td.d{max-width:40em;word-break:break-word}\n"
    "tr.fail td{background:#fde4e4}tr.skip td{color:#777}\n"
    ".badge{display:inline-block;padding:1px 8px;border-radius:4px;color:#fff;"
    "font-weight:600;font-size:12px}\n"
    ".ok{background:#2e7d32}.bad{background:#c62828}\n"
    ".muted{color:#666}summary{cursor:pointer;font-weight:600;margin:.6em 0}\n"
    "svg text{font-size:11px;font-family:inherit}\n";

/* Distinct colours for the devices of a chart. */
static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define PALETTE_SIZE (sizeof palette / sizeof palette[0])

/* ---- small helpers -------------------------------------------------------------- */

static void put_text(FILE *out, const char *text)
{
    for (const char *p = text ? text : ""; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default: fputc(*p, out); break;
        }
    }
}

static const char *string_of(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : "";
}

/* The number `name` of object; NAN when it is null or missing. */
static double number_of(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

static int is_true(const cJSON *object, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(object, name));
}

static void put_badge(FILE *out, int passed, const char *yes, const char *no)
{
    fprintf(out, "<span class=\"badge %s\">%s</span>", passed ? "ok" : "bad", passed ? yes : no);
}

/* A numeric cell: "%.2e" for errors, "%.0f" for counts, "%.0e" for limits. */
typedef enum number_style { NUMBER_ERROR, NUMBER_COUNT, NUMBER_LIMIT } number_style;

static void put_number(FILE *out, number_style number, double value)
{
    if (isnan(value)) fputs("<td class=\"n\">-</td>", out);
    else if (isinf(value)) fputs("<td class=\"n\">inf</td>", out);
    else if (number == NUMBER_ERROR) fprintf(out, "<td class=\"n\">%.2e</td>", value);
    else if (number == NUMBER_COUNT) fprintf(out, "<td class=\"n\">%.0f</td>", value);
    else fprintf(out, "<td class=\"n\">%.0e</td>", value);
}

static void put_seconds(FILE *out, double seconds)
{
    char text[32] = "-";
    if (seconds > 0) cli_format_seconds(seconds, text, sizeof text);
    fprintf(out, "<td class=\"n\">%s</td>", text);
}

/* Count the op rows of a device that passed. */
static int count_passed(const cJSON *rows)
{
    int n = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) n += is_true(row, "passed");
    return n;
}

/* ---- summary ------------------------------------------------------------------------- */

static void put_summary(FILE *out, const cJSON *devices)
{
    const cJSON *device;
    fputs("<h2>Devices</h2>\n<table>\n<tr><th>Device</th><th>Name</th><th>Backend</th>"
          "<th>Type</th><th>Vendor</th><th>Driver</th><th>Memory</th><th>Units</th>"
          "<th>Runtime checks</th><th>Op cases</th><th>Failed</th><th>Time</th>"
          "<th>Result</th></tr>\n",
          out);
    cJSON_ArrayForEach(device, devices) {
        const cJSON *checks = cJSON_GetObjectItemCaseSensitive(device, "checks");
        const cJSON *ops = cJSON_GetObjectItemCaseSensitive(device, "ops");
        double failed = number_of(device, "failed");
        char memory[32];
        cli_format_bytes((uint64_t)number_of(device, "memory_bytes"), memory, sizeof memory);
        fprintf(out, "<tr class=\"%s\"><td>", failed > 0 ? "fail" : "");
        put_text(out, string_of(device, "id"));
        fputs("</td><td>", out);
        put_text(out, string_of(device, "name"));
        fputs("</td><td>", out);
        put_text(out, string_of(device, "backend"));
        fputs("</td><td>", out);
        put_text(out, string_of(device, "type"));
        fputs("</td><td>", out);
        put_text(out, string_of(device, "vendor"));
        fputs("</td><td>", out);
        put_text(out, string_of(device, "driver_version"));
        fprintf(out, "</td><td class=\"n\">%s</td>", memory);
        put_number(out, NUMBER_COUNT, number_of(device, "compute_units"));
        fprintf(out, "<td class=\"n\">%d / %d</td><td class=\"n\">%d / %d</td>",
                count_passed(checks), cJSON_GetArraySize(checks), count_passed(ops),
                cJSON_GetArraySize(ops));
        put_number(out, NUMBER_COUNT, failed);
        put_seconds(out, number_of(device, "seconds"));
        fputs("<td>", out);
        put_badge(out, !(failed > 0), "PASS", "FAIL");
        fputs("</td></tr>\n", out);
    }
    fputs("</table>\n", out);
}

/* ---- charts ---------------------------------------------------------------------------- */

/* Best rate per op and device over the op's passing cases. */
typedef struct chart {
    const char *metric;  /* "gflops" or "gbps" */
    const char **ops;    /* op names, in first-seen order (borrowed) */
    double *best;        /* [op * n_devices + device]; 0: none */
    int n_ops, n_devices;
} chart;

static int chart_op_index(chart *c, const char *op)
{
    for (int i = 0; i < c->n_ops; i++)
        if (strcmp(c->ops[i], op) == 0) return i;
    c->ops[c->n_ops] = op;
    return c->n_ops++;
}

/* Returns 0, or -1 out of memory. */
static int chart_collect(chart *c, const cJSON *devices, const char *metric)
{
    const cJSON *device, *row;
    int rows = 0;
    memset(c, 0, sizeof *c);
    c->metric = metric;
    c->n_devices = cJSON_GetArraySize(devices);
    cJSON_ArrayForEach(device, devices)
        rows += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(device, "ops"));
    c->ops = calloc((size_t)rows + 1, sizeof *c->ops);
    c->best = calloc(((size_t)rows + 1) * (size_t)(c->n_devices ? c->n_devices : 1),
                     sizeof *c->best);
    if (!c->ops || !c->best) return -1;
    int d = 0;
    cJSON_ArrayForEach(device, devices) {
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(device, "ops")) {
            double value = number_of(row, metric);
            if (!is_true(row, "passed") || !(value > 0)) continue;
            int op = chart_op_index(c, string_of(row, "op"));
            double *best = &c->best[op * c->n_devices + d];
            if (value > *best) *best = value;
        }
        d++;
    }
    return 0;
}

static void chart_free(chart *c)
{
    free(c->ops);
    free(c->best);
}

#define CHART_LABEL 110 /* op names */
#define CHART_BARS 620  /* the longest bar */
#define CHART_VALUE 90  /* the number after a bar */
#define CHART_BAR 13
#define CHART_GAP 10    /* between ops */
#define CHART_TOP 36    /* legend and scale */

/* A round step (1, 2 or 5 x 10^k) for an axis of at most 4 steps to `max`. */
static double axis_step(double max)
{
    double magnitude = pow(10.0, floor(log10(max / 4)));
    static const double multiples[] = {1, 2, 5, 10};
    for (size_t i = 0; i < sizeof multiples / sizeof multiples[0]; i++)
        if (multiples[i] * magnitude * 4 >= max) return multiples[i] * magnitude;
    return 10 * magnitude;
}

/* Horizontal bars: one group per op, one bar per device. */
static void put_chart(FILE *out, const chart *c, const cJSON *devices, const char *unit)
{
    double max = 0;
    int bars = 0;
    for (int i = 0; i < c->n_ops * c->n_devices; i++) {
        if (c->best[i] > max) max = c->best[i];
        bars += c->best[i] > 0;
    }
    if (bars == 0) {
        fprintf(out, "<p class=\"muted\">No passing case reported %s.</p>\n", unit);
        return;
    }
    int width = CHART_LABEL + CHART_BARS + CHART_VALUE;
    int height = CHART_TOP + bars * (CHART_BAR + 2) + c->n_ops * CHART_GAP + 4;
    fprintf(out, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
            "aria-label=\"best %s per op and device\">\n",
            width, height, width, height, unit);

    /* Legend, then a scale of round steps with vertical grid lines. */
    int x = CHART_LABEL, d = 0;
    const cJSON *device;
    cJSON_ArrayForEach(device, devices) {
        fprintf(out, "<rect x=\"%d\" y=\"2\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                "<text x=\"%d\" y=\"11\">", x, palette[d % PALETTE_SIZE], x + 14);
        put_text(out, string_of(device, "id"));
        fputs("</text>\n", out);
        x += 24 + 7 * (int)strlen(string_of(device, "id"));
        d++;
    }
    double step = axis_step(max);
    int steps = (int)ceil(max / step - 1e-9);
    max = steps * step; /* the axis ends on a round number */
    for (int i = 0; i <= steps; i++) {
        int gx = CHART_LABEL + (int)(CHART_BARS * i / steps);
        fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#666\">%g</text>\n",
                gx, CHART_TOP - 6, gx, height, gx, CHART_TOP - 9, i * step);
    }

    int y = CHART_TOP;
    for (int op = 0; op < c->n_ops; op++) {
        int first = y;
        for (d = 0; d < c->n_devices; d++) {
            double value = c->best[op * c->n_devices + d];
            if (!(value > 0)) continue;
            double length = value / max * CHART_BARS;
            fprintf(out, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                    "<title>%.4g %s</title></rect>"
                    "<text x=\"%.1f\" y=\"%d\">%.3g</text>\n",
                    CHART_LABEL, y, length < 1 ? 1.0 : length, CHART_BAR,
                    palette[d % PALETTE_SIZE], value, unit, CHART_LABEL + length + 4,
                    y + CHART_BAR - 2, value);
            y += CHART_BAR + 2;
        }
        fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", CHART_LABEL - 6,
                (first + y) / 2 + 3);
        put_text(out, c->ops[op]);
        fputs("</text>\n", out);
        y += CHART_GAP;
    }
    fputs("</svg>\n", out);
}

/* Returns 0, or -1 out of memory. */
static int put_charts(FILE *out, const cJSON *devices)
{
    static const struct {
        const char *metric, *unit, *title;
    } charts[] = {
        {"gflops", "GFLOP/s", "Compute-bound ops: best GFLOP/s"},
        {"gbps", "GB/s", "Memory-bound ops: best GB/s (bytes read and written once)"},
    };
    fputs("<h2>Achieved throughput</h2>\n<p class=\"muted\">The best rate of each op over its "
          "passing cases, per device. Small cases measure launch overhead more than the "
          "device; see the rows below for each shape.</p>\n",
          out);
    for (size_t i = 0; i < sizeof charts / sizeof charts[0]; i++) {
        chart c;
        if (chart_collect(&c, devices, charts[i].metric) != 0) {
            chart_free(&c);
            return -1;
        }
        fprintf(out, "<h3>%s</h3>\n", charts[i].title);
        put_chart(out, &c, devices, charts[i].unit);
        chart_free(&c);
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------------------------- */

static void put_op_header(FILE *out, int with_device)
{
    fprintf(out, "<table>\n<tr>%s<th>Op</th><th>Dtype</th><th>Shape</th><th>Max abs err</th>"
            "<th>NMSE</th><th>Limit</th><th>Time</th><th>Rate</th><th>Result</th>"
            "<th>Detail</th></tr>\n",
            with_device ? "<th>Device</th>" : "");
}

static void put_op_row(FILE *out, const char *device, const cJSON *row)
{
    int passed = is_true(row, "passed");
    double threshold = number_of(row, "threshold");
    double gflops = number_of(row, "gflops"), gbps = number_of(row, "gbps");
    fprintf(out, "<tr class=\"%s\">", passed ? "" : "fail");
    if (device) {
        fputs("<td>", out);
        put_text(out, device);
        fputs("</td>", out);
    }
    fputs("<td>", out);
    put_text(out, string_of(row, "op"));
    fputs("</td><td>", out);
    put_text(out, string_of(row, "dtype"));
    fputs("</td><td>", out);
    put_text(out, string_of(row, "shape"));
    fputs("</td>", out);
    put_number(out, NUMBER_ERROR, number_of(row, "max_abs_err"));
    put_number(out, NUMBER_ERROR, number_of(row, "nmse"));
    if (threshold > 0) put_number(out, NUMBER_LIMIT, threshold);
    else fputs("<td class=\"n\">exact</td>", out);
    put_seconds(out, number_of(row, "seconds"));
    if (gflops > 0) fprintf(out, "<td class=\"n\">%.2f GFLOP/s</td>", gflops);
    else if (gbps > 0) fprintf(out, "<td class=\"n\">%.2f GB/s</td>", gbps);
    else fputs("<td class=\"n\">-</td>", out);
    fputs("<td>", out);
    put_badge(out, passed, "PASS", "FAIL");
    fputs("</td><td class=\"d\">", out);
    put_text(out, string_of(row, "detail"));
    fputs("</td></tr>\n", out);
}

static void put_failures(FILE *out, const cJSON *devices)
{
    const cJSON *device, *row;
    int failures = 0;
    cJSON_ArrayForEach(device, devices) {
        failures += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(device, "ops")) -
                    count_passed(cJSON_GetObjectItemCaseSensitive(device, "ops"));
        failures += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(device, "checks")) -
                    count_passed(cJSON_GetObjectItemCaseSensitive(device, "checks"));
    }
    if (failures == 0) return;
    fprintf(out, "<h2>Failures (%d)</h2>\n", failures);
    put_op_header(out, 1);
    cJSON_ArrayForEach(device, devices) {
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(device, "checks")) {
            if (is_true(row, "passed")) continue;
            fputs("<tr class=\"fail\"><td>", out);
            put_text(out, string_of(device, "id"));
            fputs("</td><td>runtime: ", out);
            put_text(out, string_of(row, "name"));
            fputs("</td><td colspan=\"8\"></td><td class=\"d\">", out);
            put_text(out, string_of(row, "detail"));
            fputs("</td></tr>\n", out);
        }
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(device, "ops"))
            if (!is_true(row, "passed")) put_op_row(out, string_of(device, "id"), row);
    }
    fputs("</table>\n", out);
}

static void put_device_rows(FILE *out, const cJSON *device)
{
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(device, "checks");
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(device, "ops");
    const cJSON *row;
    fputs("<h2>", out);
    put_text(out, string_of(device, "id"));
    fputs(": every row</h2>\n", out);
    if (cJSON_GetArraySize(checks) > 0) {
        fprintf(out, "<details open><summary>Runtime checks (%d)</summary>\n<table>\n"
                "<tr><th>Check</th><th>Result</th><th>Time</th><th>Detail</th></tr>\n",
                cJSON_GetArraySize(checks));
        cJSON_ArrayForEach(row, checks) {
            int passed = is_true(row, "passed"), skipped = is_true(row, "skipped");
            fprintf(out, "<tr class=\"%s\"><td>", !passed ? "fail" : skipped ? "skip" : "");
            put_text(out, string_of(row, "name"));
            fputs("</td><td>", out);
            put_badge(out, passed, skipped ? "SKIP" : "PASS", "FAIL");
            fputs("</td>", out);
            put_seconds(out, number_of(row, "seconds"));
            fputs("<td class=\"d\">", out);
            put_text(out, string_of(row, "detail"));
            fputs("</td></tr>\n", out);
        }
        fputs("</table>\n</details>\n", out);
    }
    if (cJSON_GetArraySize(ops) > 0) {
        fprintf(out, "<details open><summary>Op cases (%d)</summary>\n",
                cJSON_GetArraySize(ops));
        put_op_header(out, 0);
        cJSON_ArrayForEach(row, ops) put_op_row(out, NULL, row);
        fputs("</table>\n</details>\n", out);
    }
}

/* ---- the page -------------------------------------------------------------------------- */

static int put_page(FILE *out, const cJSON *report)
{
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(report, "devices");
    const cJSON *device;
    char date[64] = "";
    time_t now = time(NULL);
    struct tm utc;
    if (gmtime_r(&now, &utc)) strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &utc);

    fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>OpenXPU check report</title>\n<style>\n%s</style>\n</head>\n<body>\n",
            style);
    fputs("<h1>OpenXPU check report</h1>\n<p>", out);
    put_badge(out, is_true(report, "passed"), "PASSED", "FAILED");
    fputs(" ox ", out);
    put_text(out, string_of(report, "version"));
    fprintf(out, " &middot; %s grid &middot; %d device%s &middot; %.1f s &middot; %s</p>\n",
            is_true(report, "quick") ? "quick" : "full", cJSON_GetArraySize(devices),
            cJSON_GetArraySize(devices) == 1 ? "" : "s", number_of(report, "seconds"), date);
    fputs("<p class=\"muted\">Each op case runs on the device with fixed-seed inputs and is "
          "compared by normalized mean squared error (NMSE) with a reference: naive "
          "double-precision loops for the CPU backend, the CPU for other devices. "
          "The limits per op and dtype are explained in docs/CHECK.md.</p>\n",
          out);
    put_summary(out, devices);
    if (put_charts(out, devices) != 0) return -1;
    put_failures(out, devices);
    cJSON_ArrayForEach(device, devices) put_device_rows(out, device);
    fputs("</body>\n</html>\n", out);
    return 0;
}

int report_html_write(const cli_command *command, const cJSON *report, const char *path)
{
    int to_stdout = strcmp(path, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(path, "w");
    if (!out) return cli_error(command, "cannot open '%s': %s", path, strerror(errno));
    int code = CLI_EXIT_OK;
    if (put_page(out, report) != 0) code = cli_error(command, "out of memory writing '%s'", path);
    int failed = ferror(out);
    if (to_stdout) failed |= fflush(out) != 0;
    else failed |= fclose(out) != 0;
    if (failed && code == CLI_EXIT_OK)
        code = cli_error(command, "cannot write '%s': %s", to_stdout ? "standard output" : path,
                         strerror(errno));
    return code;
}
