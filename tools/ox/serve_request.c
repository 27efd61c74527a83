/* ox serve's request bodies (see serve_request.h). */
#include "serve_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

bool serve_fail(serve_error *e, const char *param, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    vsnprintf(e->message, sizeof e->message, format, ap);
    va_end(ap);
    e->status = 400;
    e->param = param;
    return false;
}

/* A number in [lo, hi] into *v; absent or null leaves *v. */
static bool number(const cJSON *root, const char *name, double lo, double hi, double *v,
                   serve_error *e)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!x || cJSON_IsNull(x)) return true;
    if (!cJSON_IsNumber(x)) return serve_fail(e, name, "'%s' must be a number", name);
    if (!(x->valuedouble >= lo && x->valuedouble <= hi))
        return serve_fail(e, name, "'%s' is %g, outside [%g, %g]", name, x->valuedouble, lo, hi);
    *v = x->valuedouble;
    return true;
}

static bool boolean(const cJSON *root, const char *name, bool *v, serve_error *e)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!x || cJSON_IsNull(x)) return true;
    if (!cJSON_IsBool(x)) return serve_fail(e, name, "'%s' must be true or false", name);
    *v = cJSON_IsTrue(x);
    return true;
}

/* A message's content: a string, or text parts joined. */
static char *content_text(const cJSON *content, bool assistant, int i, serve_error *e)
{
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (cJSON_IsNull(content) && assistant) return strdup("");
    if (!cJSON_IsArray(content)) {
        serve_fail(e, "messages", "messages[%d] needs 'content': a string or text parts", i);
        return NULL;
    }
    size_t total = 1;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(t)) {
            serve_fail(e, "messages", "messages[%d]: only text content parts are supported", i);
            return NULL;
        }
        total += strlen(t->valuestring);
    }
    char *text = malloc(total);
    if (!text) return NULL;
    size_t at = 0;
    cJSON_ArrayForEach(part, content) {
        const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t n = strlen(t);
        memcpy(text + at, t, n);
        at += n;
    }
    text[at] = '\0';
    return text;
}

static bool messages(const cJSON *list, serve_request *r, serve_error *e)
{
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return serve_fail(e, "messages", "'messages' must be a non-empty array");
    int n = cJSON_GetArraySize(list);
    r->messages = calloc((size_t)n, sizeof *r->messages);
    if (!r->messages) return serve_fail(e, NULL, "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, list) {
        int i = r->n_messages;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return serve_fail(e, "messages", "messages[%d] needs a string 'role'", i);
        static const char *const roles[][2] = {{"system", "system"}, {"developer", "system"},
                                               {"user", "user"}, {"assistant", "assistant"}};
        const char *as = NULL;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            if (strcmp(role->valuestring, roles[k][0]) == 0) as = roles[k][1];
        if (!as)
            return serve_fail(e, "messages", "messages[%d]: role '%.40s' is not system, developer, user "
                        "or assistant", i, role->valuestring);
        char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"),
                                  strcmp(as, "assistant") == 0, i, e);
        if (!text) return e->status ? false : serve_fail(e, NULL, "out of memory");
        r->messages[r->n_messages++] = (ox_chat_message){as, text};
    }
    return true;
}

static bool stops(const cJSON *root, serve_request *r, serve_error *e)
{
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop"), *s;
    if (!stop || cJSON_IsNull(stop)) return true;
    if (cJSON_IsString(stop)) {
        if (stop->valuestring[0] && !(r->stop[r->n_stop++] = strdup(stop->valuestring)))
            return serve_fail(e, NULL, "out of memory");
        return true;
    }
    if (!cJSON_IsArray(stop) || cJSON_GetArraySize(stop) > SERVE_MAX_STOPS)
        return serve_fail(e, "stop", "'stop' must be a string or an array of at most %d strings",
                    SERVE_MAX_STOPS);
    cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s)) return serve_fail(e, "stop", "'stop' must hold strings");
        if (s->valuestring[0] && !(r->stop[r->n_stop++] = strdup(s->valuestring)))
            return serve_fail(e, NULL, "out of memory");
    }
    return true;
}

static bool fields(const cJSON *root, bool chat, serve_request *r, serve_error *e)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) return serve_fail(e, "model", "'model' must be a string");
        if (!(r->model = strdup(model->valuestring))) return serve_fail(e, NULL, "out of memory");
    }
    double v = -1;
    if (!number(root, "max_tokens", 0, 1e9, &v, e)) return false;
    if (chat && !number(root, "max_completion_tokens", 0, 1e9, &v, e)) return false;
    r->max_tokens = (int)v;
    ox_sampler_params *sp = &r->sampling;
    double t = sp->temperature, p = sp->top_p, k = 0, mp = 0, seed = 0, pres = 0, freq = 0, n = 1;
    if (!number(root, "temperature", 0, 2, &t, e) || !number(root, "top_p", 0, 1, &p, e) ||
        !number(root, "top_k", 0, 1e6, &k, e) || !number(root, "min_p", 0, 1, &mp, e) ||
        !number(root, "seed", -9.2e18, 9.2e18, &seed, e) ||
        !number(root, "presence_penalty", -2, 2, &pres, e) ||
        !number(root, "frequency_penalty", -2, 2, &freq, e))
        return false;
    if (!number(root, "n", 1, 1, &n, e))
        return serve_fail(e, "n", "'n' must be 1: this server returns one choice");
    sp->temperature = (float)t;
    sp->top_p = (float)p;
    sp->top_k = (int)k;
    sp->min_p = (float)mp;
    r->seed_given = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "seed"));
    if (r->seed_given) sp->seed = (uint64_t)(int64_t)seed;
    r->presence = (float)pres;
    r->frequency = (float)freq;
    if (!boolean(root, "stream", &r->stream, e)) return false;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return serve_fail(e, "stream_options", "'stream_options' must be an object");
        if (!boolean(so, "include_usage", &r->include_usage, e)) return false;
    }
    /* logprobs: chat, a boolean and top_logprobs 0..20; completions, the
     * number of alternatives 0..5 (OpenAI's ranges) */
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    double top = 0;
    r->logprobs = -1;
    if (chat) {
        bool on = false;
        if (!boolean(root, "logprobs", &on, e) || !number(root, "top_logprobs", 0, 20, &top, e))
            return false;
        if (!on && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "top_logprobs")))
            return serve_fail(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        if (on) r->logprobs = (int)top;
    } else if (lp && !cJSON_IsNull(lp)) {
        if (!number(root, "logprobs", 0, 5, &top, e)) return false;
        r->logprobs = (int)top;
    }
    bool echo = false;
    if (!boolean(root, "echo", &echo, e)) return false;
    if (echo) return serve_fail(e, "echo", "'echo' is not supported by this server yet");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0)
            return serve_fail(e, "response_format", "response_format other than {\"type\": \"text\"} is "
                        "not supported by this server yet");
    }
    if (!stops(root, r, e)) return false;
    if (chat) return messages(cJSON_GetObjectItemCaseSensitive(root, "messages"), r, e);
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) == 1) prompt = cJSON_GetArrayItem(prompt, 0);
    if (!cJSON_IsString(prompt)) return serve_fail(e, "prompt", "'prompt' must be a string");
    if (!(r->prompt = strdup(prompt->valuestring))) return serve_fail(e, NULL, "out of memory");
    return true;
}

bool serve_request_parse(const char *body, size_t len, bool chat, serve_request *r, serve_error *e)
{
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->chat = chat;
    r->logprobs = -1;
    r->sampling = (ox_sampler_params){.struct_size = sizeof r->sampling, .temperature = 1.0f,
                                      .top_p = 1.0f};
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return serve_fail(e, NULL, "the body is not a JSON object");
    }
    bool ok = fields(root, chat, r, e);
    cJSON_Delete(root);
    if (!ok) serve_request_free(r);
    return ok;
}

void serve_request_free(serve_request *r)
{
    free(r->model);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    for (int i = 0; i < r->n_messages; i++) free((char *)r->messages[i].content);
    free(r->messages);
    free(r->prompt);
    memset(r, 0, sizeof *r);
}

bool serve_tokenize_parse(const char *body, size_t len, char **content, bool *add_special,
                          serve_error *e)
{
    memset(e, 0, sizeof *e);
    *content = NULL;
    *add_special = false;
    cJSON *root = cJSON_ParseWithLength(body, len);
    bool ok = cJSON_IsObject(root) ? true : serve_fail(e, NULL, "the body is not a JSON object");
    const cJSON *c = ok ? cJSON_GetObjectItemCaseSensitive(root, "content") : NULL;
    if (ok && !cJSON_IsString(c)) ok = serve_fail(e, "content", "'content' must be a string");
    if (ok) ok = boolean(root, "add_special", add_special, e);
    if (ok && !(*content = strdup(c->valuestring))) ok = serve_fail(e, NULL, "out of memory");
    cJSON_Delete(root);
    return ok;
}

bool serve_detokenize_parse(const char *body, size_t len, int32_t n_vocab, int32_t **ids, int *n,
                            serve_error *e)
{
    memset(e, 0, sizeof *e);
    *ids = NULL;
    *n = 0;
    cJSON *root = cJSON_ParseWithLength(body, len);
    bool ok = cJSON_IsObject(root) ? true : serve_fail(e, NULL, "the body is not a JSON object");
    const cJSON *tokens = ok ? cJSON_GetObjectItemCaseSensitive(root, "tokens") : NULL, *t;
    if (ok && !cJSON_IsArray(tokens)) ok = serve_fail(e, "tokens", "'tokens' must be an array of ids");
    if (ok && !(*ids = malloc(((size_t)cJSON_GetArraySize(tokens) + 1) * sizeof **ids)))
        ok = serve_fail(e, NULL, "out of memory");
    if (ok) cJSON_ArrayForEach(t, tokens) {
        if (!cJSON_IsNumber(t) || !(t->valuedouble >= 0 && t->valuedouble < n_vocab) ||
            t->valuedouble != floor(t->valuedouble)) {
            ok = serve_fail(e, "tokens", "tokens[%d] is not an id in [0, %d)", *n, (int)n_vocab);
            break;
        }
        (*ids)[(*n)++] = (int32_t)t->valuedouble;
    }
    if (!ok) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    cJSON_Delete(root);
    return ok;
}
