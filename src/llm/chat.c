/* Chat templates. A GGUF model carries its chat format as a Jinja template
 * (tokenizer.chat_template); running Jinja would need an interpreter, so,
 * like llama.cpp, we recognise the template's family by the markers it
 * contains and apply that family's format, written here. Without a
 * template (base models) the family follows from the architecture and the
 * vocabulary's special tokens.
 *
 * Formats (c = a message's content, sent as given, not trimmed):
 *   chatml  <|im_start|>ROLE\nc<|im_end|>\n ...      prompt <|im_start|>assistant\n
 *   gemma   <start_of_turn>ROLE\nc<end_of_turn>\n    ROLE user or model; a system
 *           message is put before the first user message, then "\n\n";
 *                                                    prompt <start_of_turn>model\n
 *   llama3  <|start_header_id|>ROLE<|end_header_id|>\n\nc<|eot_id|>
 *                                                    prompt ...assistant<|end_header_id|>\n\n
 *   llama2  [INST] <<SYS>>\ns\n<</SYS>>\n\nc [/INST] reply </s><s>[INST] c [/INST] ...
 *           (Meta's reference code; the first BOS is the tokenizer's)
 *   zephyr  <|ROLE|>\nc</s>\n                         prompt <|assistant|>\n
 * The BOS token is the tokenizer's to add (first turn only), not the
 * template's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "openxpu/llm.h"

typedef struct family {
    const char *name;
    const char *marker;       /* in the Jinja text */
    const char *end_of_turn;  /* what closes the assistant's turn */
} family;

static const family FAMILIES[] = {
    {"chatml", "<|im_start|>", "<|im_end|>"},
    {"gemma", "<start_of_turn>", "<end_of_turn>"},
    {"llama3", "<|start_header_id|>", "<|eot_id|>"},
    {"zephyr", "<|assistant|>", "</s>"},
    {"llama2", "[INST]", "</s>"},
};
#define N_FAMILIES (sizeof FAMILIES / sizeof FAMILIES[0])

static const family *find_family(const char *name)
{
    for (size_t i = 0; name && i < N_FAMILIES; i++)
        if (strcmp(FAMILIES[i].name, name) == 0) return &FAMILIES[i];
    return NULL;
}

const char *ox_chat_template_detect(const char *jinja, size_t len)
{
    for (size_t i = 0; jinja && i < N_FAMILIES; i++) {
        size_t m = strlen(FAMILIES[i].marker);
        for (size_t j = 0; j + m <= len; j++)
            if (memcmp(jinja + j, FAMILIES[i].marker, m) == 0) return FAMILIES[i].name;
    }
    return NULL;
}

/* Whether the vocabulary has a token spelled `text`. */
static bool has_token(const ox_gguf *g, const char *text)
{
    int64_t i = ox_gguf_find(g, "tokenizer.ggml.tokens");
    ox_gguf_type type;
    uint64_t n;
    if (i < 0 || ox_gguf_get_array(g, i, &type, &n) != OX_OK || type != OX_GGUF_STRING) return false;
    size_t want = strlen(text);
    for (uint64_t j = 0; j < n; j++) {
        const char *s;
        size_t len;
        if (ox_gguf_get_array_string(g, i, j, &s, &len) == OX_OK && len == want &&
            memcmp(s, text, len) == 0)
            return true;
    }
    return false;
}

const char *ox_chat_template_name(const ox_model *model)
{
    const ox_gguf *g = ox_model_gguf(model);
    if (!g) return NULL;
    int64_t i = ox_gguf_find(g, "tokenizer.chat_template");
    const char *text;
    size_t len;
    if (i >= 0 && ox_gguf_get_string(g, i, &text, &len) == OX_OK) {
        const char *name = ox_chat_template_detect(text, len);
        if (name) return name;
    }
    ox_model_info info = {.struct_size = sizeof info};
    if (ox_model_get_info(model, &info) != OX_OK) return NULL;
    if (strcmp(info.arch, "gemma3") == 0) return "gemma";
    if (strncmp(info.arch, "qwen", 4) == 0 || has_token(g, "<|im_start|>")) return "chatml";
    if (has_token(g, "<|start_header_id|>")) return "llama3";
    return "llama2";
}

const char *ox_chat_end_of_turn(const char *name)
{
    const family *f = find_family(name);
    return f ? f->end_of_turn : NULL;
}

/* Output as snprintf writes it: as much as fits, the length counting on. */
typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *s)
{
    size_t n = strlen(s);
    if (o->len < o->cap) memcpy(o->buf + o->len, s, o->cap - o->len > n ? n : o->cap - o->len);
    o->len += n;
}

static bool is_role(const ox_chat_message *m, const char *role)
{
    return strcmp(m->role, role) == 0;
}

ox_status ox_chat_apply(ox_context *ctx, const char *name, const ox_chat_message *messages,
                        size_t n, bool add_generation_prompt, char *buf, size_t cap, size_t *len)
{
    const family *f = find_family(name);
    if (!f) return ox__fail(ctx, OX_ERR_INVALID, "ox_chat_apply: unknown chat template '%s' "
                            "(known: chatml, gemma, llama3, llama2, zephyr)", name ? name : "");
    if (!len || (n && !messages) || (cap && !buf))
        return ox__fail(ctx, OX_ERR_INVALID, "ox_chat_apply: len, messages or buf is NULL");
    for (size_t i = 0; i < n; i++)
        if (!messages[i].role || !messages[i].content ||
            !(is_role(&messages[i], "system") || is_role(&messages[i], "user") ||
              is_role(&messages[i], "assistant")))
            return ox__fail(ctx, OX_ERR_INVALID, "ox_chat_apply: message %zu: role '%s' is not "
                            "system, user or assistant (or content is NULL)", i,
                            messages[i].role ? messages[i].role : "(null)");
    out o = {buf, cap, 0};
    const char *system = NULL;
    bool first_user = true;
    for (size_t i = 0; i < n; i++) {
        const ox_chat_message *m = &messages[i];
        const char *c = m->content;
        if (f == &FAMILIES[0]) { /* chatml */
            put(&o, "<|im_start|>"), put(&o, m->role), put(&o, "\n"), put(&o, c);
            put(&o, "<|im_end|>\n");
        } else if (f == &FAMILIES[1]) { /* gemma */
            if (is_role(m, "system")) {
                system = c;
                continue;
            }
            put(&o, "<start_of_turn>"), put(&o, is_role(m, "assistant") ? "model" : "user");
            put(&o, "\n");
            if (system && is_role(m, "user")) put(&o, system), put(&o, "\n\n"), system = NULL;
            put(&o, c), put(&o, "<end_of_turn>\n");
        } else if (f == &FAMILIES[2]) { /* llama3 */
            put(&o, "<|start_header_id|>"), put(&o, m->role), put(&o, "<|end_header_id|>\n\n");
            put(&o, c), put(&o, "<|eot_id|>");
        } else if (f == &FAMILIES[3]) { /* zephyr */
            put(&o, "<|"), put(&o, m->role), put(&o, "|>\n"), put(&o, c), put(&o, "</s>\n");
        } else { /* llama2 */
            if (is_role(m, "system")) {
                system = c;
                continue;
            }
            if (is_role(m, "assistant")) {
                put(&o, " "), put(&o, c), put(&o, " </s>");
                continue;
            }
            put(&o, first_user ? "[INST] " : "<s>[INST] ");
            if (system) put(&o, "<<SYS>>\n"), put(&o, system), put(&o, "\n<</SYS>>\n\n");
            system = NULL;
            first_user = false;
            put(&o, c), put(&o, " [/INST]");
        }
    }
    if (add_generation_prompt) {
        if (f == &FAMILIES[0]) put(&o, "<|im_start|>assistant\n");
        else if (f == &FAMILIES[1]) put(&o, "<start_of_turn>model\n");
        else if (f == &FAMILIES[2]) put(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        else if (f == &FAMILIES[3]) put(&o, "<|assistant|>\n");
    }
    *len = o.len;
    if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
    if (o.len >= cap)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "ox_chat_apply: the text needs %zu bytes and "
                        "a terminating NUL; the buffer has %zu", o.len, cap);
    return OX_OK;
}
