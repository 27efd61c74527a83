/* Byte-level BPE (tokenizer.ggml.model "gpt2"): the pre-tokenizers that
 * split text into words the way each model family's regular expressions
 * do, and the merges by rank within each word. The expressions are
 * implemented by hand over the character classes of unicode.h; each
 * family's list is applied in order, every expression splitting the pieces
 * the previous ones left (matches and the text between them both stay). */
#include <string.h>

#include "llm/tokenizer_internal.h"
#include "llm/unicode.h"

/* The text as code points: cpt[i], class[i] and its bytes
 * text[offset[i] .. offset[i + 1]). */
typedef struct decoded_text {
    uint32_t *cpt;
    uint8_t *cls;
    size_t *offset;
    size_t n;
} decoded_text;

/* Piece boundaries: ends[k] is the code point index where piece k ends. */
typedef struct piece_list {
    size_t *ends;
    size_t count;
} piece_list;

/* ---- simple expressions: [prefix]? class{min,max} ----------------------------- */

typedef enum char_class {
    CLASS_NONE,
    CLASS_LETTER,        /* \p{L} */
    CLASS_NUMBER,        /* \p{N} */
    CLASS_PUNCTUATION,   /* \p{P} */
    CLASS_PUNCT_DEFAULT, /* [\p{P}\$\+<=>\^~\|] */
    CLASS_PUNCT_FALCON,  /* [\p{P}\$\+<=>\^~\|`] */
    CLASS_ASCII_DIGIT,   /* [0-9] */
    CLASS_NEWLINE,       /* [\r\n] */
    CLASS_SPACE,         /* \s */
    CLASS_CJK            /* [一-龥ࠀ-一가-퟿] */
} char_class;

static bool in_class(char_class c, uint32_t cpt, unsigned cls)
{
    switch (c) {
    case CLASS_LETTER: return (cls & OX__UCAT_MASK) == OX__UCAT_LETTER;
    case CLASS_NUMBER: return (cls & OX__UCAT_MASK) == OX__UCAT_NUMBER;
    case CLASS_PUNCTUATION: return (cls & OX__UCAT_MASK) == OX__UCAT_PUNCTUATION;
    case CLASS_PUNCT_DEFAULT:
        return (cls & OX__UCAT_MASK) == OX__UCAT_PUNCTUATION || (cpt && strchr("$+<=>^~|", (int)cpt) && cpt < 128);
    case CLASS_PUNCT_FALCON:
        return (cls & OX__UCAT_MASK) == OX__UCAT_PUNCTUATION || (cpt && strchr("$+<=>^~|`", (int)cpt) && cpt < 128);
    case CLASS_ASCII_DIGIT: return cpt >= '0' && cpt <= '9';
    case CLASS_NEWLINE: return cpt == '\r' || cpt == '\n';
    case CLASS_SPACE: return (cls & OX__UCAT_SPACE) != 0;
    case CLASS_CJK:
        return (cpt >= 0x0800 && cpt <= 0x9FA5) || (cpt >= 0xAC00 && cpt <= 0xD7FF);
    case CLASS_NONE: break;
    }
    return false;
}

typedef struct simple_expression {
    char_class prefix; /* optional single character before the run */
    char_class run;
    size_t min, max;   /* max 0: unbounded */
} simple_expression;

static size_t count_run(const decoded_text *t, const simple_expression *e, size_t at, size_t end)
{
    size_t m = 0;
    while (at + m < end && (!e->max || m < e->max) && in_class(e->run, t->cpt[at + m], t->cls[at + m]))
        m++;
    return m;
}

/* Length of the match at `at` (0: none), the regex way: with the prefix
 * when that leads to a match, else without. */
static size_t match_simple(const decoded_text *t, const simple_expression *e, size_t at, size_t end)
{
    if (e->prefix != CLASS_NONE && in_class(e->prefix, t->cpt[at], t->cls[at])) {
        size_t m = count_run(t, e, at + 1, end);
        if (m >= e->min && m > 0) return 1 + m;
    }
    size_t m = count_run(t, e, at, end);
    return m >= e->min && m > 0 ? m : 0;
}

/* ---- GPT-2 and Llama 3 expressions -------------------------------------------------- */

static bool is_letter(const decoded_text *t, size_t i, size_t end)
{
    return i < end && (t->cls[i] & OX__UCAT_MASK) == OX__UCAT_LETTER;
}
static bool is_number(const decoded_text *t, size_t i, size_t end)
{
    return i < end && (t->cls[i] & OX__UCAT_MASK) == OX__UCAT_NUMBER;
}
static bool is_space(const decoded_text *t, size_t i, size_t end)
{
    return i < end && (t->cls[i] & OX__UCAT_SPACE);
}
/* [^\s\p{L}\p{N}] */
static bool is_other(const decoded_text *t, size_t i, size_t end)
{
    return i < end && !is_space(t, i, end) && !is_letter(t, i, end) && !is_number(t, i, end);
}

static uint32_t lower_ascii(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d (any case when `any_case`): its length, or 0. */
static size_t match_contraction(const decoded_text *t, size_t at, size_t end, bool any_case)
{
    if (t->cpt[at] != '\'' || at + 1 >= end) return 0;
    uint32_t a = t->cpt[at + 1], b = at + 2 < end ? t->cpt[at + 2] : 0;
    if (any_case) a = lower_ascii(a), b = lower_ascii(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* White space from `at`: how much \s+(?!\S) or \s+ takes; for Llama 3,
 * \s*[\r\n]+ first. */
static size_t match_space(const decoded_text *t, size_t at, size_t end, bool newline_rule)
{
    size_t n = 0, last_newline = 0;
    while (is_space(t, at + n, end)) {
        if (t->cpt[at + n] == '\r' || t->cpt[at + n] == '\n') last_newline = n + 1;
        n++;
    }
    if (newline_rule && last_newline) return last_newline;
    if (n > 1 && at + n < end) return n - 1;
    return n;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const decoded_text *t, size_t at, size_t end)
{
    size_t m = match_contraction(t, at, end, false);
    if (m) return m;
    size_t s = t->cpt[at] == ' ' ? 1 : 0, i = at + s;
    if (is_letter(t, i, end)) {
        while (is_letter(t, i, end)) i++;
        return i - at;
    }
    if (is_number(t, i, end)) {
        while (is_number(t, i, end)) i++;
        return i - at;
    }
    if (is_other(t, i, end)) {
        while (is_other(t, i, end)) i++;
        return i - at;
    }
    m = match_space(t, at, end, false);
    return m ? m : 1;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const decoded_text *t, size_t at, size_t end, size_t digits)
{
    size_t m = match_contraction(t, at, end, true);
    if (m) return m;
    uint32_t c = t->cpt[at];
    if (!(c == '\r' || c == '\n' || is_number(t, at, end)) &&
        (is_letter(t, at, end) || is_letter(t, at + 1, end))) {
        size_t i = at + 1;
        while (is_letter(t, i, end)) i++;
        return i - at;
    }
    if (is_number(t, at, end)) {
        size_t i = at;
        while (is_number(t, i, end) && i - at < digits) i++;
        return i - at;
    }
    size_t i = at + (c == ' ' ? 1 : 0);
    if (is_other(t, i, end)) {
        while (is_other(t, i, end)) i++;
        while (i < end && (t->cpt[i] == '\r' || t->cpt[i] == '\n')) i++;
        return i - at;
    }
    m = match_space(t, at, end, true);
    return m ? m : 1;
}

/* ---- the pre-tokenizers ------------------------------------------------------------- */

typedef enum expression_kind { EXPR_SIMPLE, EXPR_GPT2, EXPR_LLAMA3, EXPR_QWEN2 } expression_kind;

typedef struct expression {
    expression_kind kind;
    simple_expression simple;
} expression;

#define SIMPLE(prefix, run, min, max) {EXPR_SIMPLE, {prefix, run, min, max}}
#define CUSTOM(kind) {kind, {CLASS_NONE, CLASS_NONE, 0, 0}}

typedef struct pre_tokenizer {
    const expression *expressions;
    size_t count;
} pre_tokenizer;

static const expression pre_default[] = {
    SIMPLE(CLASS_NONE, CLASS_PUNCT_DEFAULT, 1, 0), CUSTOM(EXPR_GPT2),
    SIMPLE(CLASS_NONE, CLASS_NUMBER, 1, 0), SIMPLE(CLASS_NONE, CLASS_ASCII_DIGIT, 3, 3)};
static const expression pre_gpt2[] = {CUSTOM(EXPR_GPT2)};
static const expression pre_llama3[] = {CUSTOM(EXPR_LLAMA3)};
static const expression pre_qwen2[] = {CUSTOM(EXPR_QWEN2)};
static const expression pre_falcon[] = {SIMPLE(CLASS_NONE, CLASS_PUNCT_FALCON, 1, 0),
                                        CUSTOM(EXPR_GPT2),
                                        SIMPLE(CLASS_NONE, CLASS_ASCII_DIGIT, 3, 3)};
static const expression pre_starcoder[] = {SIMPLE(CLASS_NONE, CLASS_NUMBER, 1, 1),
                                           CUSTOM(EXPR_GPT2)};
static const expression pre_deepseek_coder[] = {
    SIMPLE(CLASS_NONE, CLASS_NEWLINE, 1, 1), SIMPLE(CLASS_SPACE, CLASS_LETTER, 1, 0),
    SIMPLE(CLASS_SPACE, CLASS_PUNCTUATION, 1, 0), SIMPLE(CLASS_NONE, CLASS_CJK, 1, 0),
    SIMPLE(CLASS_NONE, CLASS_NUMBER, 1, 1)};

#define PRE(list) {list, sizeof list / sizeof list[0]}
static const pre_tokenizer pre_tokenizers[] = {
    [OX__PRE_DEFAULT] = PRE(pre_default),     [OX__PRE_GPT2] = PRE(pre_gpt2),
    [OX__PRE_LLAMA3] = PRE(pre_llama3),       [OX__PRE_QWEN2] = PRE(pre_qwen2),
    [OX__PRE_FALCON] = PRE(pre_falcon),       [OX__PRE_STARCODER] = PRE(pre_starcoder),
    [OX__PRE_DEEPSEEK_CODER] = PRE(pre_deepseek_coder),
};

static const struct {
    const char *name;
    ox__pre_type pre;
} pre_names[] = {
    {"default", OX__PRE_DEFAULT},          {"gpt-2", OX__PRE_GPT2},
    {"mpt", OX__PRE_GPT2},                 {"olmo", OX__PRE_GPT2},
    {"jais", OX__PRE_GPT2},                {"phi-2", OX__PRE_GPT2},
    {"llama3", OX__PRE_LLAMA3},            {"llama-v3", OX__PRE_LLAMA3},
    {"llama-bpe", OX__PRE_LLAMA3},         {"falcon3", OX__PRE_LLAMA3},
    {"qwen2", OX__PRE_QWEN2},              {"deepseek-r1-qwen", OX__PRE_QWEN2},
    {"stablelm2", OX__PRE_QWEN2},          {"falcon", OX__PRE_FALCON},
    {"starcoder", OX__PRE_STARCODER},      {"refact", OX__PRE_STARCODER},
    {"command-r", OX__PRE_STARCODER},      {"smollm", OX__PRE_STARCODER},
    {"codeshell", OX__PRE_STARCODER},      {"exaone", OX__PRE_STARCODER},
    {"deepseek-coder", OX__PRE_DEEPSEEK_CODER},
};

bool ox__bpe_pre_from_name(const char *name, size_t len, ox__pre_type *pre)
{
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (strlen(pre_names[i].name) == len && memcmp(pre_names[i].name, name, len) == 0) {
            *pre = pre_names[i].pre;
            return true;
        }
    return false;
}

/* Split every piece of `in` by expression e into `out` (room for t->n). */
static void apply_expression(const decoded_text *t, const expression *e, const piece_list *in,
                             piece_list *out)
{
    out->count = 0;
    size_t start = 0;
    for (size_t k = 0; k < in->count; k++) {
        size_t end = in->ends[k], gap = start;
        for (size_t at = start; at < end;) {
            size_t m = 0;
            switch (e->kind) {
            case EXPR_SIMPLE: m = match_simple(t, &e->simple, at, end); break;
            case EXPR_GPT2: m = match_gpt2(t, at, end); break;
            case EXPR_LLAMA3: m = match_llama3(t, at, end, 3); break;
            case EXPR_QWEN2: m = match_llama3(t, at, end, 1); break;
            }
            if (!m) {
                at++;
                continue;
            }
            if (at > gap) out->ends[out->count++] = at;
            at += m;
            out->ends[out->count++] = at;
            gap = at;
        }
        if (gap < end) out->ends[out->count++] = end;
        start = end;
    }
}

/* ---- merging one word ---------------------------------------------------------------- */

static ox_status add_candidate(const ox_tokenizer *tok, ox__merge_heap *heap,
                               const ox__symbol *symbols, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return OX_OK;
    int32_t rank = ox__tokenizer_merge_rank(tok, symbols[left].id, symbols[right].id);
    if (rank < 0) return OX_OK;
    ox__merge_candidate c = {(double)rank, (uint32_t)left, (uint32_t)right,
                             symbols[left].length + symbols[right].length};
    return ox__heap_push(heap, c);
}

/* Merge the mapped word buf[0..n) whose characters start at the symbols. */
static ox_status merge_word(const ox_tokenizer *tok, const char *buf, ox__symbol *symbols,
                            int32_t count, ox__merge_heap *heap, ox__token_sink *sink)
{
    ox_status status = OX_OK;
    heap->count = 0;
    for (int32_t i = 0; i + 1 < count && status == OX_OK; i++)
        status = add_candidate(tok, heap, symbols, i, i + 1);
    ox__merge_candidate c;
    while (status == OX_OK && ox__heap_pop(heap, &c)) {
        ox__symbol *left = &symbols[c.left], *right = &symbols[c.right];
        if (!left->length || !right->length || left->next != (int32_t)c.right ||
            left->length + right->length != c.size)
            continue;
        left->length += right->length;
        left->id = ox__tokenizer_find(tok, buf + left->start, left->length);
        right->length = 0;
        left->next = right->next;
        if (right->next >= 0) symbols[right->next].prev = (int32_t)c.left;
        status = add_candidate(tok, heap, symbols, left->prev, (int32_t)c.left);
        if (status == OX_OK) status = add_candidate(tok, heap, symbols, (int32_t)c.left, left->next);
    }
    for (int32_t i = 0; status == OX_OK && count && i >= 0; i = symbols[i].next) {
        if (symbols[i].id >= 0) {
            ox__sink_push(sink, symbols[i].id);
            continue;
        }
        for (uint32_t b = 0; b < symbols[i].length; b++) { /* single bytes, when listed */
            int32_t id = ox__tokenizer_find(tok, buf + symbols[i].start + b, 1);
            if (id >= 0) ox__sink_push(sink, id);
        }
    }
    return status;
}

ox_status ox__bpe_encode(const ox_tokenizer *tok, const char *text, size_t len,
                         ox__token_sink *sink)
{
    ox_context *ctx = tok->ctx;
    ox_status status = OX_OK;
    decoded_text t = {0};
    piece_list a = {0}, b = {0};
    ox__merge_heap heap = {.ctx = ctx};
    char *buf = NULL;
    ox__symbol *symbols = NULL;
    if (len > UINT32_MAX / 2)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "ox_tokenizer_encode: text too long");
    t.cpt = ox__alloc(ctx, len * sizeof *t.cpt);
    t.cls = ox__alloc(ctx, len);
    t.offset = ox__alloc(ctx, (len + 1) * sizeof *t.offset);
    a.ends = ox__alloc(ctx, (len + 1) * sizeof *a.ends);
    b.ends = ox__alloc(ctx, (len + 1) * sizeof *b.ends);
    buf = ox__alloc(ctx, 2 * len + 1);
    symbols = ox__alloc(ctx, (len + 1) * sizeof *symbols);
    if (!t.cpt || !t.cls || !t.offset || !a.ends || !b.ends || !buf || !symbols) {
        status = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        goto err_free;
    }
    for (size_t at = 0; at < len; t.n++) {
        t.offset[t.n] = at;
        at += ox__utf8_decode(text + at, len - at, &t.cpt[t.n]);
        t.cls[t.n] = (uint8_t)ox__unicode_class(t.cpt[t.n]);
    }
    t.offset[t.n] = len;
    a.ends[0] = t.n;
    a.count = t.n ? 1 : 0;
    const pre_tokenizer *pre = &pre_tokenizers[tok->pre];
    for (size_t e = 0; e < pre->count; e++) {
        apply_expression(&t, &pre->expressions[e], &a, &b);
        piece_list swap = a;
        a = b;
        b = swap;
    }
    size_t start = 0;
    for (size_t k = 0; k < a.count && status == OX_OK; k++) {
        size_t from = t.offset[start], to = t.offset[a.ends[k]];
        start = a.ends[k];
        /* Each byte becomes one printable character: one symbol. */
        size_t n = 0;
        int32_t count = 0;
        for (size_t i = from; i < to; i++, count++) {
            size_t length = ox__utf8_encode(ox__unicode_from_byte((unsigned char)text[i]), buf + n);
            symbols[count] = (ox__symbol){(uint32_t)n, (uint32_t)length, count - 1, count + 1,
                                          ox__tokenizer_find(tok, buf + n, length)};
            n += length;
        }
        if (!count) continue;
        symbols[count - 1].next = -1;
        int32_t whole = tok->ignore_merges ? ox__tokenizer_find(tok, buf, n) : -1;
        if (whole >= 0) ox__sink_push(sink, whole);
        else status = merge_word(tok, buf, symbols, count, &heap, sink);
    }

err_free:
    ox__heap_free(&heap);
    if (symbols) ox__free(ctx, symbols, (len + 1) * sizeof *symbols);
    if (buf) ox__free(ctx, buf, 2 * len + 1);
    if (b.ends) ox__free(ctx, b.ends, (len + 1) * sizeof *b.ends);
    if (a.ends) ox__free(ctx, a.ends, (len + 1) * sizeof *a.ends);
    if (t.offset) ox__free(ctx, t.offset, (len + 1) * sizeof *t.offset);
    if (t.cls) ox__free(ctx, t.cls, len);
    if (t.cpt) ox__free(ctx, t.cpt, len * sizeof *t.cpt);
    return status;
}
