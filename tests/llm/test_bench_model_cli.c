/* Tests of 'ox bench-model' energy per token on the tiny qwen2 model:
 * without a sensor the table says J/token is n/a and names the missing
 * one, and the JSON has "joules_per_token": null with the same message;
 * with a fake RAPL powercap tree (OX_POWERCAP_ROOT) it reports a number
 * from the named packages. */
#include <cjson/cJSON.h>

#include "fake_powercap.h"
#include "llm/tiny_model.h"
#include "ox_test.h"
#include "run_ox.h"

#define PATH_CAP POWERCAP_PATH_CAP

typedef struct fixture {
    char dir[PATH_CAP];   /* a temporary folder: the model and the powercap tree */
    char model[PATH_CAP];
} fixture;

static void open_fixture(fixture *fx)
{
    const char *bin = getenv("OX_BIN");
    if (!bin || !*bin) OX_SKIP("the ox tool was not built (OX_BUILD_TOOLS=OFF)");
    powercap_temp_dir(fx->dir, "bench-energy");
    powercap_join(fx->model, fx->dir, "tiny-qwen2.gguf");
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS,
                            .log_level = OX_LOG_OFF};
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    char vocab[PATH_CAP];
    tiny_vocab_path("qwen2", vocab, sizeof vocab);
    ox_status s = tiny_model_write(ctx, "qwen2", vocab, fx->model);
    ASSERT_MSG(s == OX_OK, "tiny_model_write: %s", tiny_model_errmsg(ctx));
    ox_context_free(ctx);
}

static ox_run *bench(const fixture *fx, bool json)
{
    if (json)
        return RUN_OX("bench-model", fx->model, "--device", "cpu", "-p", "8", "-n", "4", "-r", "1",
                      "--json");
    return RUN_OX("bench-model", fx->model, "--device", "cpu", "-p", "8", "-n", "4", "-r", "1");
}

/* The two results ("pp8", "tg4") of --json output. */
static cJSON *parse_results(const ox_run *r, cJSON **doc)
{
    *doc = cJSON_Parse(r->out);
    ASSERT_MSG(*doc != NULL, "not JSON: %s", r->out);
    cJSON *results = cJSON_GetObjectItemCaseSensitive(*doc, "results");
    ASSERT(cJSON_IsArray(results));
    ASSERT_EQ(cJSON_GetArraySize(results), 2);
    return results;
}

OX_TEST(missing_sensor_is_named)
{
    fixture fx;
    open_fixture(&fx);
    char absent[PATH_CAP], expected[PATH_CAP + 64];
    powercap_join(absent, fx.dir, "no-powercap");
    ASSERT(setenv("OX_POWERCAP_ROOT", absent, 1) == 0);
    snprintf(expected, sizeof expected, "%s/intel-rapl:0/energy_uj not found", absent);

    ox_run *r = bench(&fx, false);
    ASSERT_MSG(r->status == 0, "ox bench-model: %s", r->err);
    ASSERT_CONTAINS(r->out, "| t/s | of limit | J/token |");
    ASSERT_CONTAINS(r->out, "| pp8 |");
    ASSERT_CONTAINS(r->out, " | n/a |\n");
    const char *line = strstr(r->out, "\nJ/token not measured: no energy sensor for cpu:0 (");
    ASSERT_MSG(line != NULL, "no missing-sensor line in:\n%s", r->out);
    ASSERT(strstr(line, "RAPL powercap: ") != NULL);
    ASSERT(strstr(line, expected) != NULL);
    ASSERT(strstr(line, "J/token from") == NULL);
    free(r);

    r = bench(&fx, true);
    ASSERT_MSG(r->status == 0, "ox bench-model --json: %s", r->err);
    cJSON *doc, *results = parse_results(r, &doc);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "energy_sensor")));
    for (int i = 0; i < 2; i++) {
        cJSON *o = cJSON_GetArrayItem(results, i);
        cJSON *joules = cJSON_GetObjectItemCaseSensitive(o, "joules_per_token");
        ASSERT_MSG(cJSON_IsNull(joules), "joules_per_token is not null in %s", r->out);
        const char *why = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(o, "energy_sensor_missing"));
        ASSERT_CONTAINS(why, "no energy sensor for cpu:0");
        ASSERT_CONTAINS(why, expected);
    }
    cJSON_Delete(doc);
    free(r);
    powercap_remove(fx.dir);
}

OX_TEST(fake_powercap_gives_a_number)
{
    fixture fx;
    open_fixture(&fx);
    /* two packages whose counters stand still: 0 J per token */
    char root[PATH_CAP];
    powercap_join(root, fx.dir, "powercap");
    ASSERT(mkdir(root, 0755) == 0);
    powercap_zone(root, "intel-rapl:0", "package-0", "123456789", POWERCAP_RANGE_UJ);
    powercap_zone(root, "intel-rapl:1", "package-1", "123456789", POWERCAP_RANGE_UJ);
    ASSERT(setenv("OX_POWERCAP_ROOT", root, 1) == 0);

    ox_run *r = bench(&fx, true);
    ASSERT_MSG(r->status == 0, "ox bench-model --json: %s", r->err);
    cJSON *doc, *results = parse_results(r, &doc);
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "energy_sensor")),
                  "RAPL package-0 (+package-1)");
    for (int i = 0; i < 2; i++) {
        cJSON *o = cJSON_GetArrayItem(results, i);
        cJSON *joules = cJSON_GetObjectItemCaseSensitive(o, "joules_per_token");
        ASSERT_MSG(cJSON_IsNumber(joules), "joules_per_token is not a number in %s", r->out);
        /* the fake counters stand still */
        ASSERT_NEAR(cJSON_GetNumberValue(joules), 0.0, 0.0);
        ASSERT(cJSON_GetObjectItemCaseSensitive(o, "energy_sensor_missing") == NULL);
    }
    cJSON_Delete(doc);
    free(r);

    r = bench(&fx, false);
    ASSERT_MSG(r->status == 0, "ox bench-model: %s", r->err);
    ASSERT_CONTAINS(r->out, " | 0 |\n");
    ASSERT(strstr(r->out, "n/a") == NULL);
    ASSERT_CONTAINS(r->out, "\nJ/token from RAPL package-0 (+package-1)\n");
    free(r);
    powercap_remove(fx.dir);
}

OX_TEST_MAIN(missing_sensor_is_named, fake_powercap_gives_a_number)
