/* Tokenizer from GGUF metadata: loading the vocabulary, the special-token
 * split, SentencePiece-style BPE with byte fallback, decoding and the
 * getters. Byte-level BPE and its pre-tokenizers are in tokenizer_bpe.c.
 * The behaviour follows llama.cpp's llama-vocab (the reference the tests
 * compare with); the code is our own. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/tokenizer_internal.h"
#include "llm/unicode.h"

#define SPM_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's space */

/* ---- hashing ------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

int32_t ox__tokenizer_find(const ox_tokenizer *tok, const char *text, size_t len)
{
    size_t mask = tok->token_index_capacity - 1;
    for (size_t i = hash_bytes(text, len) & mask;; i = (i + 1) & mask) {
        int32_t id = tok->token_index[i];
        if (id < 0) return -1;
        const ox__token *t = &tok->tokens[id];
        if (t->length == len && memcmp(tok->text + t->offset, text, len) == 0) return id;
    }
}

int32_t ox__tokenizer_merge_rank(const ox_tokenizer *tok, int32_t left, int32_t right)
{
    if (!tok->merge_capacity || left < 0 || right < 0) return -1;
    uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
    size_t mask = tok->merge_capacity - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (tok->merge_keys[i] == 0) return -1;
        if (tok->merge_keys[i] == key) return tok->merge_ranks[i];
    }
}

static size_t power_of_two_above(size_t n)
{
    size_t c = 16;
    while (c < 2 * n) c *= 2;
    return c;
}

/* ---- the merge heap -------------------------------------------------------- */

static bool candidate_before(const ox__merge_candidate *a, const ox__merge_candidate *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

ox_status ox__heap_push(ox__merge_heap *heap, ox__merge_candidate item)
{
    if (heap->count == heap->capacity) {
        size_t capacity = heap->capacity ? heap->capacity * 2 : 64;
        ox__merge_candidate *items = ox__alloc(heap->ctx, capacity * sizeof *items);
        if (!items) return ox__fail(heap->ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        if (heap->count) memcpy(items, heap->items, heap->count * sizeof *items);
        if (heap->items) ox__free(heap->ctx, heap->items, heap->capacity * sizeof *items);
        heap->items = items;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!candidate_before(&item, &heap->items[parent])) break;
        heap->items[i] = heap->items[parent];
        i = parent;
    }
    heap->items[i] = item;
    return OX_OK;
}

bool ox__heap_pop(ox__merge_heap *heap, ox__merge_candidate *item)
{
    if (!heap->count) return false;
    *item = heap->items[0];
    ox__merge_candidate last = heap->items[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count) break;
        if (child + 1 < heap->count && candidate_before(&heap->items[child + 1], &heap->items[child]))
            child++;
        if (!candidate_before(&heap->items[child], &last)) break;
        heap->items[i] = heap->items[child];
        i = child;
    }
    if (heap->count) heap->items[i] = last;
    return true;
}

void ox__heap_free(ox__merge_heap *heap)
{
    if (heap->items) ox__free(heap->ctx, heap->items, heap->capacity * sizeof *heap->items);
    heap->items = NULL;
    heap->count = heap->capacity = 0;
}

/* ---- loading ----------------------------------------------------------------- */

static ox_status key_int(ox_context *ctx, const ox_gguf *g, const char *key, int32_t *value)
{
    int64_t i = ox_gguf_find(g, key), v;
    if (i < 0) return OX_OK;
    if (ox_gguf_get_int(g, i, &v) != OX_OK || v < -1 || v > INT32_MAX)
        return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer: %s is not a token id", key);
    *value = (int32_t)v;
    return OX_OK;
}

static void key_bool(const ox_gguf *g, const char *key, bool *value)
{
    int64_t i = ox_gguf_find(g, key);
    bool v;
    if (i >= 0 && ox_gguf_get_bool(g, i, &v) == OX_OK) *value = v;
}

/* The array under `key` with `count` elements: its index, or -1 when it is
 * absent (an error when `required`). */
static ox_status key_array(ox_context *ctx, const ox_gguf *g, const char *key, bool required,
                           int64_t count, int64_t *index)
{
    ox_gguf_type type;
    uint64_t n;
    *index = ox_gguf_find(g, key);
    if (*index < 0)
        return required ? ox__fail(ctx, OX_ERR_FORMAT, "%s missing", key) : OX_OK;
    if (ox_gguf_get_array(g, *index, &type, &n) != OX_OK)
        return ox__fail(ctx, OX_ERR_FORMAT, "%s is not an array", key);
    if (count >= 0 && n != (uint64_t)count)
        return ox__fail(ctx, OX_ERR_FORMAT, "%s has %llu entries, tokenizer.ggml.tokens %lld", key,
                        (unsigned long long)n, (long long)count);
    return OX_OK;
}

static ox_status load_tokens(ox_tokenizer *tok, const ox_gguf *g)
{
    ox_context *ctx = tok->ctx;
    int64_t tokens, scores, types;
    ox_status status = key_array(ctx, g, "tokenizer.ggml.tokens", true, -1, &tokens);
    if (status != OX_OK) return status;
    uint64_t n;
    ox_gguf_type type;
    ox_gguf_get_array(g, tokens, &type, &n);
    if (type != OX_GGUF_STRING || n == 0 || n > INT32_MAX)
        return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.tokens must be 1 to 2^31-1 strings");
    if ((status = key_array(ctx, g, "tokenizer.ggml.scores", false, (int64_t)n, &scores)) ||
        (status = key_array(ctx, g, "tokenizer.ggml.token_type", false, (int64_t)n, &types)))
        return status;
    tok->n_tokens = (int32_t)n;
    tok->tokens = ox__calloc(ctx, n, sizeof *tok->tokens);
    if (!tok->tokens) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t total = 0;
    for (uint64_t j = 0; j < n; j++) {
        const char *data;
        size_t size;
        ox_gguf_get_array_string(g, tokens, j, &data, &size);
        if (size > UINT32_MAX / 2 || total > UINT32_MAX / 2)
            return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.tokens: texts too long");
        total += size + 1;
    }
    tok->text = ox__alloc(ctx, total);
    if (!tok->text) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    tok->text_size = total;
    size_t at = 0;
    for (uint64_t j = 0; j < n; j++) {
        const char *data;
        size_t size;
        ox_gguf_get_array_string(g, tokens, j, &data, &size);
        ox__token *t = &tok->tokens[j];
        memcpy(tok->text + at, data, size);
        tok->text[at + size] = '\0';
        t->offset = (uint32_t)at;
        t->length = (uint32_t)size;
        at += size + 1;
        double score = 0;
        int64_t kind = OX_TOKEN_NORMAL;
        if (scores >= 0 && ox_gguf_get_array_float(g, scores, j, &score) != OX_OK)
            return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.scores must hold floats");
        if (types >= 0 && ox_gguf_get_array_int(g, types, j, &kind) != OX_OK)
            return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.token_type must hold integers");
        t->score = (float)score;
        t->type = (int32_t)kind;
    }
    /* Index by text; a text listed twice resolves to its last id. */
    tok->token_index_capacity = power_of_two_above(n);
    tok->token_index = ox__alloc(ctx, tok->token_index_capacity * sizeof *tok->token_index);
    if (!tok->token_index) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    memset(tok->token_index, 0xFF, tok->token_index_capacity * sizeof *tok->token_index);
    size_t mask = tok->token_index_capacity - 1;
    for (int32_t id = 0; id < tok->n_tokens; id++) {
        const ox__token *t = &tok->tokens[id];
        const char *s = tok->text + t->offset;
        for (size_t i = hash_bytes(s, t->length) & mask;; i = (i + 1) & mask) {
            int32_t other = tok->token_index[i];
            if (other < 0 || (tok->tokens[other].length == t->length &&
                              memcmp(tok->text + tok->tokens[other].offset, s, t->length) == 0)) {
                tok->token_index[i] = id;
                break;
            }
        }
    }
    return OX_OK;
}

static ox_status load_merges(ox_tokenizer *tok, const ox_gguf *g)
{
    ox_context *ctx = tok->ctx;
    int64_t merges;
    ox_status status = key_array(ctx, g, "tokenizer.ggml.merges", true, -1, &merges);
    if (status != OX_OK) return status;
    uint64_t n;
    ox_gguf_type type;
    ox_gguf_get_array(g, merges, &type, &n);
    if (type != OX_GGUF_STRING || n > INT32_MAX)
        return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.merges must be strings");
    tok->merge_capacity = power_of_two_above(n);
    tok->merge_keys = ox__calloc(ctx, tok->merge_capacity, sizeof *tok->merge_keys);
    tok->merge_ranks = ox__alloc(ctx, tok->merge_capacity * sizeof *tok->merge_ranks);
    if (!tok->merge_keys || !tok->merge_ranks)
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    size_t mask = tok->merge_capacity - 1;
    for (uint64_t j = 0; j < n; j++) {
        const char *data;
        size_t size;
        ox_gguf_get_array_string(g, merges, j, &data, &size);
        /* "left right": the separator is the first space after byte 0. */
        const char *space = size > 1 ? memchr(data + 1, ' ', size - 1) : NULL;
        if (!space)
            return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.merges[%llu] is not 'a b'",
                            (unsigned long long)j);
        int32_t left = ox__tokenizer_find(tok, data, (size_t)(space - data));
        int32_t right = ox__tokenizer_find(tok, space + 1, size - (size_t)(space - data) - 1);
        if (left < 0 || right < 0) continue; /* no symbol can ever hold such a part */
        uint64_t key = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1;
        for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
            if (tok->merge_keys[i] == key) break; /* the first rank wins */
            if (tok->merge_keys[i] == 0) {
                tok->merge_keys[i] = key;
                tok->merge_ranks[i] = (int32_t)j;
                break;
            }
        }
    }
    return OX_OK;
}

/* Specials sort longest text first, then by id: (length, id) pairs
 * packed into 64-bit keys. */
static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static ox_status load_specials(ox_tokenizer *tok)
{
    int32_t n = 0;
    for (int32_t id = 0; id < tok->n_tokens; id++) {
        int32_t type = tok->tokens[id].type;
        if ((type == OX_TOKEN_CONTROL || type == OX_TOKEN_USER_DEFINED ||
             type == OX_TOKEN_UNKNOWN) && tok->tokens[id].length > 0)
            n++;
    }
    if (!n) return OX_OK;
    uint64_t *keys = ox__alloc(tok->ctx, (size_t)n * sizeof *keys);
    tok->specials = ox__alloc(tok->ctx, (size_t)n * sizeof *tok->specials);
    if (!keys || !tok->specials) {
        if (keys) ox__free(tok->ctx, keys, (size_t)n * sizeof *keys);
        return ox__fail(tok->ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    n = 0;
    for (int32_t id = 0; id < tok->n_tokens; id++) {
        int32_t type = tok->tokens[id].type;
        if ((type == OX_TOKEN_CONTROL || type == OX_TOKEN_USER_DEFINED ||
             type == OX_TOKEN_UNKNOWN) && tok->tokens[id].length > 0)
            keys[n++] = (uint64_t)(UINT32_MAX - tok->tokens[id].length) << 32 | (uint32_t)id;
    }
    qsort(keys, (size_t)n, sizeof *keys, compare_u64);
    for (int32_t i = 0; i < n; i++) tok->specials[i] = (int32_t)(keys[i] & 0xFFFFFFFFu);
    tok->n_specials = n;
    ox__free(tok->ctx, keys, (size_t)n * sizeof *keys);
    return OX_OK;
}

/* Token types as llama.cpp uses them (its vocabulary loader overrides what
 * some files say): tokens whose text marks the end of a turn or of
 * generation, and fill-in-the-middle tokens of a kind the file names no id
 * for, are control tokens whatever their type (phi-3 stores "</s>" as
 * user-defined: without this, "</s>" written in text became the end of
 * sequence token); gpt-oss's channel tokens are user-defined, so always
 * matched. Control tokens are matched in text only when asked
 * (OX_TOKENIZE_PARSE_SPECIAL); user-defined ones always. */
static void override_types(ox_tokenizer *tok, const ox_gguf *g)
{
    static const char *const end_of_generation[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>",
        "<|tool_response>", "<｜end▁of▁sentence｜>",
        "[e~["};
    static const struct {
        const char *key;
        const char *names[9];
    } fim[] = {
        {"tokenizer.ggml.fim_pre_token_id",
         {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
          "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
          "<|code_prefix|>", "<|prefix|>", NULL}},
        {"tokenizer.ggml.fim_suf_token_id",
         {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
          "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
          "<|code_suffix|>", "<|suffix|>", NULL}},
        {"tokenizer.ggml.fim_mid_token_id",
         {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
          "<｜fim▁end｜>", "<MID>", "▁<MID>",
          "<|code_middle|>", "<|middle|>", NULL}},
        {"tokenizer.ggml.fim_pad_token_id",
         {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL}},
        {"tokenizer.ggml.fim_rep_token_id",
         {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL}},
        {"tokenizer.ggml.fim_sep_token_id", {"<|file_sep|>", NULL}},
    };
    static const char *const always_text[] = {"<|channel|>", "<|message|>", "<|start|>",
                                              "<|constrain|>"};
    for (size_t k = 0; k < sizeof end_of_generation / sizeof end_of_generation[0]; k++) {
        int32_t id = ox__tokenizer_find(tok, end_of_generation[k], strlen(end_of_generation[k]));
        if (id >= 0) tok->tokens[id].type = OX_TOKEN_CONTROL;
    }
    for (size_t f = 0; f < sizeof fim / sizeof fim[0]; f++) {
        if (ox_gguf_find(g, fim[f].key) >= 0) continue; /* the file names its token */
        for (size_t k = 0; fim[f].names[k]; k++) {
            int32_t id = ox__tokenizer_find(tok, fim[f].names[k], strlen(fim[f].names[k]));
            if (id >= 0) {
                tok->tokens[id].type = OX_TOKEN_CONTROL;
                break; /* llama.cpp takes one token per kind */
            }
        }
    }
    for (size_t k = 0; k < sizeof always_text / sizeof always_text[0]; k++) {
        int32_t id = ox__tokenizer_find(tok, always_text[k], strlen(always_text[k]));
        if (id >= 0) tok->tokens[id].type = OX_TOKEN_USER_DEFINED;
    }
    /* Phi-3 (by general.name, as llama.cpp decides it): its special tokens
     * take the whitespace after them, but for <unk>, <s> and <|endoftext|> */
    const char *name = NULL;
    size_t name_len = 0;
    int64_t key = ox_gguf_find(g, "general.name");
    if (key < 0 || ox_gguf_get_string(g, key, &name, &name_len) != OX_OK) return;
    char lower[256];
    size_t n = name_len < sizeof lower - 1 ? name_len : sizeof lower - 1;
    for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)name[i]);
    lower[n] = '\0';
    if (!strstr(lower, "phi-3") && !strstr(lower, "phi3")) return;
    for (int32_t id = 0; id < tok->n_tokens; id++) {
        int32_t type = tok->tokens[id].type;
        if (type == OX_TOKEN_CONTROL || type == OX_TOKEN_USER_DEFINED || type == OX_TOKEN_UNKNOWN)
            tok->tokens[id].strip |= OX__STRIP_RIGHT;
    }
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
        int32_t id = ox__tokenizer_find(tok, keep[k], strlen(keep[k]));
        if (id >= 0) tok->tokens[id].strip &= (uint8_t)~OX__STRIP_RIGHT;
    }
}

static ox_status load_settings(ox_tokenizer *tok, const ox_gguf *g, const char *model,
                               size_t model_len)
{
    ox_context *ctx = tok->ctx;
    ox_status status;
    if (model_len == 5 && memcmp(model, "llama", 5) == 0) {
        tok->model = OX__TOKENIZER_SPM;
        tok->bos = 1, tok->eos = 2, tok->unk = 0;
        tok->add_bos = true, tok->add_space_prefix = true;
    } else if (model_len == 4 && memcmp(model, "gpt2", 4) == 0) {
        tok->model = OX__TOKENIZER_BPE;
        tok->bos = 11, tok->eos = 11, tok->unk = -1;
        const char *pre = "default";
        size_t pre_len = 7;
        int64_t i = ox_gguf_find(g, "tokenizer.ggml.pre");
        if (i >= 0 && ox_gguf_get_string(g, i, &pre, &pre_len) != OX_OK)
            return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.pre is not a string");
        if (!ox__bpe_pre_from_name(pre, pre_len, &tok->pre))
            return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                            "tokenizer.ggml.pre '%.*s': unknown pre-tokenizer", (int)pre_len, pre);
        tok->ignore_merges = tok->pre == OX__PRE_LLAMA3;
        if ((status = load_merges(tok, g)) != OX_OK) return status;
    } else {
        return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                        "tokenizer.ggml.model '%.*s' is not supported (only 'llama' and 'gpt2')",
                        (int)model_len, model);
    }
    if ((status = key_int(ctx, g, "tokenizer.ggml.bos_token_id", &tok->bos)) ||
        (status = key_int(ctx, g, "tokenizer.ggml.eos_token_id", &tok->eos)) ||
        (status = key_int(ctx, g, "tokenizer.ggml.unknown_token_id", &tok->unk)) ||
        (status = key_int(ctx, g, "tokenizer.ggml.eot_token_id", &tok->eot)))
        return status;
    key_bool(g, "tokenizer.ggml.add_bos_token", &tok->add_bos);
    key_bool(g, "tokenizer.ggml.add_eos_token", &tok->add_eos);
    key_bool(g, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix);
    int32_t *ids[] = {&tok->bos, &tok->eos, &tok->unk, &tok->eot};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if (*ids[k] >= tok->n_tokens) *ids[k] = -1;
    if (tok->eot < 0) {
        static const char *const names[] = {"<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>",
                                            "<|endoftext|>"};
        for (size_t k = 0; k < sizeof names / sizeof names[0] && tok->eot < 0; k++) {
            int32_t id = ox__tokenizer_find(tok, names[k], strlen(names[k]));
            if (id >= 0 && tok->tokens[id].type == OX_TOKEN_CONTROL) tok->eot = id;
        }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_tokens[b] = tok->model == OX__TOKENIZER_SPM ? ox__tokenizer_find(tok, name, 6) : -1;
    }
    return OX_OK;
}

ox_status ox_tokenizer_load(ox_context *ctx, const ox_gguf *gguf, ox_tokenizer **out)
{
    ox_status status = ox__handle_check(ctx, OX__HANDLE_CONTEXT, "ox_tokenizer_load", "ctx", NULL);
    if (status != OX_OK) return status;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_load: out is NULL");
    *out = NULL;
    if (!gguf) return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_load: gguf is NULL");
    const char *model;
    size_t model_len;
    int64_t i = ox_gguf_find(gguf, "tokenizer.ggml.model");
    if (i < 0) return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.model missing");
    if (ox_gguf_get_string(gguf, i, &model, &model_len) != OX_OK)
        return ox__fail(ctx, OX_ERR_FORMAT, "tokenizer.ggml.model is not a string");
    ox_tokenizer *tok = ox__calloc(ctx, 1, sizeof *tok);
    if (!tok) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    tok->ctx = ctx;
    tok->eot = -1;
    if ((status = load_tokens(tok, gguf)) != OX_OK) goto err_free_tokenizer;
    override_types(tok, gguf);
    if ((status = load_settings(tok, gguf, model, model_len)) != OX_OK ||
        (status = load_specials(tok)) != OX_OK)
        goto err_free_tokenizer;
    *out = tok;
    return OX_OK;

err_free_tokenizer:
    ox_tokenizer_free(tok);
    return status;
}

void ox_tokenizer_free(ox_tokenizer *tok)
{
    if (!tok) return;
    ox_context *ctx = tok->ctx;
    size_t n = (size_t)tok->n_tokens;
    if (tok->tokens) ox__free(ctx, tok->tokens, n * sizeof *tok->tokens);
    if (tok->text) ox__free(ctx, tok->text, tok->text_size);
    if (tok->token_index)
        ox__free(ctx, tok->token_index, tok->token_index_capacity * sizeof *tok->token_index);
    if (tok->merge_keys) ox__free(ctx, tok->merge_keys, tok->merge_capacity * sizeof *tok->merge_keys);
    if (tok->merge_ranks)
        ox__free(ctx, tok->merge_ranks, tok->merge_capacity * sizeof *tok->merge_ranks);
    if (tok->specials) ox__free(ctx, tok->specials, (size_t)tok->n_specials * sizeof *tok->specials);
    ox__free(ctx, tok, sizeof *tok);
}

/* ---- special tokens ------------------------------------------------------------ */

/* A stretch of the input: plain text, or one special token. */
typedef struct fragment {
    size_t start, length;
    int32_t id; /* -1 for text */
} fragment;

typedef struct fragment_list {
    fragment *items;
    size_t count, capacity;
} fragment_list;

static ox_status fragment_push(ox_context *ctx, fragment_list *list, fragment f)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        fragment *items = ox__alloc(ctx, capacity * sizeof *items);
        if (!items) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        if (list->count) memcpy(items, list->items, list->count * sizeof *items);
        if (list->items) ox__free(ctx, list->items, list->capacity * sizeof *items);
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = f;
    return OX_OK;
}

static void fragment_list_free(ox_context *ctx, fragment_list *list)
{
    if (list->items) ox__free(ctx, list->items, list->capacity * sizeof *list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
}

/* The first occurrence of needle in haystack, or NULL. */
static const char *find_bytes(const char *haystack, size_t size, const char *needle, size_t n)
{
    if (n == 0 || n > size) return NULL;
    for (const char *p = haystack, *last = haystack + size - n; p <= last; p++) {
        p = memchr(p, needle[0], (size_t)(last - p) + 1);
        if (!p) return NULL;
        if (memcmp(p, needle, n) == 0) return p;
    }
    return NULL;
}

/* Split text into plain stretches and special tokens, longest token texts
 * first, each stretch searched left to right. User-defined tokens always
 * count; control and unknown ones only with parse_special. */
static ox_status split_specials(const ox_tokenizer *tok, const char *text, size_t len,
                                bool parse_special, fragment_list *out)
{
    ox_context *ctx = tok->ctx;
    fragment_list next = {0};
    ox_status status = fragment_push(ctx, out, (fragment){0, len, -1});
    for (int32_t s = 0; s < tok->n_specials && status == OX_OK; s++) {
        int32_t id = tok->specials[s];
        const ox__token *t = &tok->tokens[id];
        if (!parse_special && t->type != OX_TOKEN_USER_DEFINED) continue;
        const char *needle = tok->text + t->offset;
        next.count = 0;
        for (size_t f = 0; f < out->count && status == OX_OK; f++) {
            fragment frag = out->items[f];
            if (frag.id >= 0) {
                status = fragment_push(ctx, &next, frag);
                continue;
            }
            size_t at = frag.start, end = frag.start + frag.length;
            const char *hit;
            while (status == OX_OK && (hit = find_bytes(text + at, end - at, needle, t->length))) {
                size_t pos = (size_t)(hit - text), left_end = pos;
                if (t->strip & OX__STRIP_LEFT)
                    while (left_end > at && isspace((unsigned char)text[left_end - 1])) left_end--;
                if (left_end > at)
                    status = fragment_push(ctx, &next, (fragment){at, left_end - at, -1});
                if (status == OX_OK)
                    status = fragment_push(ctx, &next, (fragment){pos, t->length, id});
                at = pos + t->length;
                if (t->strip & OX__STRIP_RIGHT)
                    while (at < end && isspace((unsigned char)text[at])) at++;
            }
            if (status == OX_OK && at < end)
                status = fragment_push(ctx, &next, (fragment){at, end - at, -1});
        }
        fragment_list swap = *out;
        *out = next;
        next = swap;
    }
    fragment_list_free(ctx, &next);
    return status;
}

/* ---- SentencePiece-style BPE ---------------------------------------------------- */

static ox_status spm_add_candidate(const ox_tokenizer *tok, ox__merge_heap *heap, const char *buf,
                                   const ox__symbol *symbols, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return OX_OK;
    uint32_t start = symbols[left].start;
    uint32_t size = symbols[left].length + symbols[right].length;
    int32_t id = ox__tokenizer_find(tok, buf + start, size);
    if (id < 0) return OX_OK;
    ox__merge_candidate c = {-(double)tok->tokens[id].score, (uint32_t)left, (uint32_t)right, size};
    return ox__heap_push(heap, c);
}

static void spm_emit_bytes(const ox_tokenizer *tok, const char *s, size_t n, ox__token_sink *sink)
{
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_tokens[(unsigned char)s[i]];
        if (id < 0) id = ox__tokenizer_find(tok, s + i, 1);
        if (id < 0) id = tok->unk;
        if (id >= 0) ox__sink_push(sink, id);
    }
}

static ox_status spm_encode(const ox_tokenizer *tok, const char *text, size_t len, bool prefix,
                            ox__token_sink *sink)
{
    ox_context *ctx = tok->ctx;
    if (len > (UINT32_MAX - 3) / 3)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "ox_tokenizer_encode: text too long");
    size_t cap = 3 * (len + 1);
    char *buf = ox__alloc(ctx, cap);
    ox__symbol *symbols = ox__alloc(ctx, (len + 1) * sizeof *symbols);
    ox__merge_heap heap = {.ctx = ctx};
    ox_status status = OX_OK;
    if (!buf || !symbols) {
        status = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        goto err_free;
    }
    size_t n = 0;
    if (prefix) memcpy(buf + n, SPM_SPACE, 3), n += 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') memcpy(buf + n, SPM_SPACE, 3), n += 3;
        else buf[n++] = text[i];
    }
    int32_t count = 0;
    for (size_t at = 0; at < n; count++) {
        size_t length = ox__utf8_lead_length((unsigned char)buf[at]);
        if (length > n - at) length = n - at;
        symbols[count] = (ox__symbol){(uint32_t)at, (uint32_t)length, count - 1, count + 1, -1};
        at += length;
    }
    if (count) symbols[count - 1].next = -1;
    for (int32_t i = 0; i + 1 < count && status == OX_OK; i++)
        status = spm_add_candidate(tok, &heap, buf, symbols, i, i + 1);
    ox__merge_candidate c;
    while (status == OX_OK && ox__heap_pop(&heap, &c)) {
        ox__symbol *left = &symbols[c.left], *right = &symbols[c.right];
        if (!left->length || !right->length || left->next != (int32_t)c.right ||
            left->length + right->length != c.size)
            continue;
        left->length += right->length;
        right->length = 0;
        left->next = right->next;
        if (right->next >= 0) symbols[right->next].prev = (int32_t)c.left;
        status = spm_add_candidate(tok, &heap, buf, symbols, left->prev, (int32_t)c.left);
        if (status == OX_OK)
            status = spm_add_candidate(tok, &heap, buf, symbols, (int32_t)c.left, left->next);
    }
    for (int32_t i = 0; status == OX_OK && i >= 0 && count; i = symbols[i].next) {
        const char *s = buf + symbols[i].start;
        int32_t id = ox__tokenizer_find(tok, s, symbols[i].length);
        if (id >= 0) ox__sink_push(sink, id);
        else spm_emit_bytes(tok, s, symbols[i].length, sink);
    }

err_free:
    ox__heap_free(&heap);
    if (symbols) ox__free(ctx, symbols, (len + 1) * sizeof *symbols);
    if (buf) ox__free(ctx, buf, cap);
    return status;
}

/* ---- encoding -------------------------------------------------------------------- */

ox_status ox_tokenizer_encode(const ox_tokenizer *tok, const char *text, size_t len,
                              unsigned flags, int32_t *ids, size_t capacity, size_t *count)
{
    if (!tok) return ox__fail(NULL, OX_ERR_INVALID, "ox_tokenizer_encode: tok is NULL");
    ox_context *ctx = tok->ctx;
    if (!count) return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_encode: count is NULL");
    *count = 0;
    if (!text && len)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_encode: text is NULL but len is %zu", len);
    if (!ids && capacity)
        return ox__fail(ctx, OX_ERR_INVALID,
                        "ox_tokenizer_encode: ids is NULL but capacity is %zu", capacity);
    if (flags & ~(unsigned)(OX_TOKENIZE_ADD_BOS | OX_TOKENIZE_PARSE_SPECIAL))
        return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_encode: unknown flags 0x%x", flags);
    ox__token_sink sink = {ids, capacity, 0};
    bool add_special = flags & OX_TOKENIZE_ADD_BOS;
    if (add_special && tok->add_bos && tok->bos >= 0) ox__sink_push(&sink, tok->bos);
    fragment_list fragments = {0};
    ox_status status = OX_OK;
    if (len) status = split_specials(tok, text, len, flags & OX_TOKENIZE_PARSE_SPECIAL, &fragments);
    bool after_special = true; /* the start of the text counts as one */
    for (size_t f = 0; f < fragments.count && status == OX_OK; f++) {
        const fragment *frag = &fragments.items[f];
        if (frag->id >= 0) {
            ox__sink_push(&sink, frag->id);
            after_special = true;
        } else if (tok->model == OX__TOKENIZER_SPM) {
            status = spm_encode(tok, text + frag->start, frag->length,
                                tok->add_space_prefix && after_special, &sink);
            after_special = false;
        } else {
            status = ox__bpe_encode(tok, text + frag->start, frag->length, &sink);
            after_special = false;
        }
    }
    fragment_list_free(ctx, &fragments);
    if (status != OX_OK) return status;
    if (add_special && tok->add_eos && tok->eos >= 0) ox__sink_push(&sink, tok->eos);
    *count = sink.count;
    if (capacity && sink.count > capacity)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE,
                        "ox_tokenizer_encode: the text needs %zu tokens, capacity is %zu",
                        sink.count, capacity);
    return OX_OK;
}

/* ---- decoding -------------------------------------------------------------------- */

typedef struct byte_sink {
    char *out;
    size_t capacity, length;
} byte_sink;

static void sink_bytes(byte_sink *sink, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, sink->length++)
        if (sink->length < sink->capacity) sink->out[sink->length] = s[i];
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Token `id`'s bytes; strip_space drops one leading space. */
static void decode_token(const ox_tokenizer *tok, int32_t id, unsigned flags, bool strip_space,
                         byte_sink *sink)
{
    const ox__token *t = &tok->tokens[id];
    const char *s = tok->text + t->offset;
    size_t n = t->length;
    switch (t->type) {
    case OX_TOKEN_CONTROL:
        if (flags & OX_DECODE_SPECIAL) sink_bytes(sink, s, n);
        return;
    case OX_TOKEN_UNKNOWN:
        if (flags & OX_DECODE_SPECIAL) sink_bytes(sink, s, n);
        else sink_bytes(sink, "\xE2\x96\x85", 3); /* U+2585, as llama.cpp shows it */
        return;
    case OX_TOKEN_USER_DEFINED:
        sink_bytes(sink, s, n);
        return;
    case OX_TOKEN_BYTE:
        if (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
            hex_digit(s[3]) >= 0 && hex_digit(s[4]) >= 0) {
            char byte = (char)(hex_digit(s[3]) * 16 + hex_digit(s[4]));
            sink_bytes(sink, &byte, 1);
            return;
        }
        break;
    default:
        break;
    }
    if (tok->model == OX__TOKENIZER_SPM) {
        for (size_t i = 0; i < n;) {
            if (n - i >= 3 && memcmp(s + i, SPM_SPACE, 3) == 0) {
                if (!(strip_space && i == 0)) sink_bytes(sink, " ", 1);
                i += 3;
            } else {
                sink_bytes(sink, s + i, 1);
                i++;
            }
        }
        return;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cpt;
        size_t length = ox__utf8_decode(s + i, n - i, &cpt);
        int byte = ox__byte_from_unicode(cpt);
        if (byte >= 0) {
            char b = (char)byte;
            sink_bytes(sink, &b, 1);
        } else {
            sink_bytes(sink, s + i, length);
        }
        i += length;
    }
}

ox_status ox_tokenizer_decode_flags(const ox_tokenizer *tok, const int32_t *ids, size_t n,
                                    unsigned flags, char *out, size_t cap, size_t *len)
{
    if (!tok) return ox__fail(NULL, OX_ERR_INVALID, "ox_tokenizer_decode: tok is NULL");
    ox_context *ctx = tok->ctx;
    if (!len) return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_decode: len is NULL");
    *len = 0;
    if ((!ids && n) || (!out && cap))
        return ox__fail(ctx, OX_ERR_INVALID, "ox_tokenizer_decode: ids or out is NULL");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok->n_tokens)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "ox_tokenizer_decode: ids[%zu] = %d is outside the vocabulary of %d",
                            i, ids[i], tok->n_tokens);
    byte_sink sink = {out, cap, 0};
    bool strip = tok->model == OX__TOKENIZER_SPM && tok->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && ids[0] == tok->bos && n > 1) {
            decode_token(tok, ids[i], flags, false, &sink);
            continue;
        }
        decode_token(tok, ids[i], flags, strip, &sink);
        strip = false;
    }
    *len = sink.length;
    if (cap && sink.length >= cap)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE,
                        "ox_tokenizer_decode: the text needs %zu bytes and a NUL, cap is %zu",
                        sink.length, cap);
    if (cap) out[sink.length] = '\0';
    return OX_OK;
}

ox_status ox_tokenizer_decode(const ox_tokenizer *tok, const int32_t *ids, size_t n, char *out,
                              size_t cap, size_t *len)
{
    return ox_tokenizer_decode_flags(tok, ids, n, 0, out, cap, len);
}

/* ---- getters ----------------------------------------------------------------------- */

const char *ox_tokenizer_token_text(const ox_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || id >= tok->n_tokens) return NULL;
    return tok->text + tok->tokens[id].offset;
}

ox_token_type ox_tokenizer_token_type(const ox_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || id >= tok->n_tokens) return (ox_token_type)0;
    return (ox_token_type)tok->tokens[id].type;
}

int32_t ox_tokenizer_vocab_size(const ox_tokenizer *tok)
{
    return tok ? tok->n_tokens : 0;
}

int32_t ox_tokenizer_bos(const ox_tokenizer *tok)
{
    return tok ? tok->bos : -1;
}

int32_t ox_tokenizer_eos(const ox_tokenizer *tok)
{
    return tok ? tok->eos : -1;
}

int32_t ox_tokenizer_eot(const ox_tokenizer *tok)
{
    return tok ? tok->eot : -1;
}
