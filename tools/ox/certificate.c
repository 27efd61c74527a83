/* Reading reproducible-mode certificates (certificate.h). */
#include <stdio.h>
#include <string.h>

#include "certificate.h"

static const char *string_field(const cJSON *object, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static int is_hash(const char *s)
{
    if (strlen(s) != 16) return 0;
    for (int i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int certificate_parse(const char *text, size_t size, certificate *out, char *why, size_t cap)
{
    memset(out, 0, sizeof *out);
    cJSON *doc = cJSON_ParseWithLength(text, size);
    const cJSON *device = cJSON_GetObjectItemCaseSensitive(doc, "device");
    const char *format = string_field(doc, "format");
    out->doc = doc;
    out->cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");
    out->device = string_field(device, "name");
    out->version = string_field(doc, "openxpu");
    out->hash = string_field(doc, "hash");
    out->grid = string_field(doc, "grid");
    const char *problem = NULL;
    if (!doc) problem = "not JSON";
    else if (!format || strcmp(format, CERTIFICATE_FORMAT) != 0)
        problem = "no \"format\": \"" CERTIFICATE_FORMAT "\"";
    else if (!out->device || !out->version || !out->hash || !out->grid)
        problem = "\"device\".\"name\", \"openxpu\", \"hash\" or \"grid\" missing or not a string";
    else if (strcmp(out->grid, "quick") != 0 && strcmp(out->grid, "full") != 0)
        problem = "\"grid\" is neither \"quick\" nor \"full\"";
    else if (!cJSON_IsObject(out->cases))
        problem = "\"cases\" missing or not an object";
    if (!problem) {
        const cJSON *c;
        cJSON_ArrayForEach(c, out->cases) {
            if (!c->string || !cJSON_IsString(c) || !c->valuestring || !is_hash(c->valuestring)) {
                snprintf(why, cap, "case '%.80s': its hash is not 16 lowercase hexadecimal digits",
                         c->string ? c->string : "?");
                certificate_free(out);
                return -1;
            }
        }
        return 0;
    }
    snprintf(why, cap, "%s", problem);
    certificate_free(out);
    return -1;
}

const char *certificate_case(const certificate *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->cases, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void certificate_free(certificate *c)
{
    cJSON_Delete(c->doc);
    memset(c, 0, sizeof *c);
}
