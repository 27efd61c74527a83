/* Kernel parameter lists read from user source (kernel_sig.h). The source
 * is first copied with comments, string literals and preprocessor lines
 * blanked out (newlines kept, so offsets and lines stay those of the
 * source); kernels are then found at file scope by their keyword. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/kernel_sig.h"

static bool ident_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Blank comments in place (and, with all, string and character literals
 * and preprocessor lines); newlines stay. Returns where a comment that is
 * never closed opens, or SIZE_MAX. */
static size_t blank(char *s, bool all)
{
    bool line_start = true;
    size_t open_comment = SIZE_MAX;
    for (size_t i = 0; s[i];) {
        char c = s[i];
        if (c == '/' && s[i + 1] == '/') {
            while (s[i] && s[i] != '\n') s[i++] = ' ';
        } else if (c == '/' && s[i + 1] == '*') {
            size_t at = i;
            s[i++] = ' ';
            s[i++] = ' ';
            while (s[i] && !(s[i] == '*' && s[i + 1] == '/')) {
                if (s[i] != '\n') s[i] = ' ';
                i++;
            }
            if (s[i]) s[i++] = ' ', s[i++] = ' ';
            else open_comment = at;
        } else if (c == '"' || c == '\'') {
            line_start = false;
            for (i++; s[i] && s[i] != c && s[i] != '\n'; i++) {
                if (s[i] == '\\' && s[i + 1] && s[i + 1] != '\n') {
                    if (all) s[i] = ' ';
                    i++;
                }
                if (all) s[i] = ' ';
            }
            if (s[i] == c) i++;
        } else if (all && c == '#' && line_start) {
            while (s[i] && s[i] != '\n') {
                if (s[i] == '\\' && s[i + 1] == '\n') { /* continued: keep the newline */
                    s[i] = ' ';
                    i += 2;
                    continue;
                }
                s[i++] = ' ';
            }
        } else {
            if (c == '\n') line_start = true;
            else if (!isspace((unsigned char)c)) line_start = false;
            i++;
        }
    }
    return open_comment;
}

/* True if the identifier `word` occurs as a whole word in s. */
static bool has_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word))
        if ((p == s || !ident_char(p[-1])) && !ident_char(p[n])) return true;
    return false;
}

static size_t skip_space(const char *s, size_t i)
{
    while (s[i] && isspace((unsigned char)s[i])) i++;
    return i;
}

/* [start, end) without surrounding blanks */
static void trim(const char *s, size_t *start, size_t *end)
{
    while (*start < *end && isspace((unsigned char)s[*start])) (*start)++;
    while (*end > *start && isspace((unsigned char)s[*end - 1])) (*end)--;
}

/* Copy [start, end) into dst, blanks folded to one space. False if it does
 * not fit. */
static bool copy_folded(char *dst, size_t cap, const char *s, size_t start, size_t end)
{
    size_t n = 0;
    bool space = false;
    for (size_t i = start; i < end; i++) {
        if (isspace((unsigned char)s[i])) {
            space = n > 0;
            continue;
        }
        if (space && n + 1 < cap) dst[n++] = ' ';
        space = false;
        if (n + 1 >= cap) return false;
        dst[n++] = s[i];
    }
    dst[n] = '\0';
    return true;
}

/* The closing bracket matching s[open] ('(' only), or 0. */
static size_t matching_paren(const char *s, size_t open)
{
    int depth = 0;
    for (size_t i = open; s[i]; i++) {
        if (s[i] == '(') depth++;
        else if (s[i] == ')' && --depth == 0) return i;
    }
    return 0;
}

static const struct {
    const char *name;
    size_t size;
} scalar_types[] = {
    {"char", 1},   {"signed char", 1},    {"uchar", 1},         {"unsigned char", 1},
    {"short", 2},  {"ushort", 2},         {"unsigned short", 2}, {"int", 4},
    {"uint", 4},   {"unsigned", 4},       {"unsigned int", 4},  {"float", 4},
    {"long", 8},   {"ulong", 8},          {"unsigned long", 8}, {"i64", 8},
    {"u64", 8},    {"double", 8},
};

static size_t scalar_size(const char *type)
{
    for (size_t i = 0; i < OX__ARRAY_SIZE(scalar_types); i++)
        if (strcmp(type, scalar_types[i].name) == 0) return scalar_types[i].size;
    return 0;
}

/* A buffer's element may also be one of the dialect's storage types. */
static size_t element_size(const char *type)
{
    static const struct {
        const char *name;
        size_t size;
    } storage_types[] = {{"i8", 1}, {"ox_half", 2}, {"ox_bf16", 2}};
    for (size_t i = 0; i < OX__ARRAY_SIZE(storage_types); i++)
        if (strcmp(type, storage_types[i].name) == 0) return storage_types[i].size;
    return scalar_size(type);
}

/* type without its const and volatile words, into plain */
static void unqualified(const char *type, char *plain, size_t cap)
{
    size_t n = 0;
    plain[0] = '\0';
    for (const char *t = type; *t;) {
        size_t len = strcspn(t, " ");
        bool qualifier = (len == 5 && strncmp(t, "const", 5) == 0) ||
                         (len == 8 && strncmp(t, "volatile", 8) == 0);
        if (!qualifier && n + len + 2 < cap) {
            if (n) plain[n++] = ' ';
            memcpy(plain + n, t, len);
            n += len;
            plain[n] = '\0';
        }
        t += len;
        while (*t == ' ') t++;
    }
}

/* The value of -DNAME=VALUE in options, into out; false if absent. */
static bool option_define(const char *options, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = options ? strstr(options, "-D") : NULL; p; p = strstr(p + 2, "-D")) {
        if ((p == options || isspace((unsigned char)p[-1])) && strncmp(p + 2, name, n) == 0 &&
            p[2 + n] == '=') {
            const char *v = p + 3 + n;
            size_t len = 0;
            while (v[len] && !isspace((unsigned char)v[len])) len++;
            if (len == 0 || len >= cap) return false;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

typedef struct parser {
    ox_context *ctx;
    const char *what;
    const char *s; /* blanked source */
    const char *options;
    const char *kernel;
} parser;

static unsigned line_of(const char *s, size_t at)
{
    unsigned line = 1;
    for (size_t i = 0; i < at && s[i]; i++) line += s[i] == '\n';
    return line;
}

#define PARAM_RULE "a parameter is ARG_BUF(type, name), LOCAL type *name or a scalar 'type name'"

/* One parameter, s[start, end) trimmed, into p. */
static ox_status parse_param(parser *ps, size_t start, size_t end, int index, ox__sig_param *p)
{
    const char *s = ps->s;
    char text[160];
    if (!copy_folded(text, sizeof text, s, start, end)) snprintf(text, sizeof text, "(too long)");
    memset(p, 0, sizeof *p);
    unsigned line = line_of(s, start);
    if (strncmp(s + start, "ARG_BUF", 7) == 0 && skip_space(s, start + 7) < end &&
        s[skip_space(s, start + 7)] == '(') {
        size_t open = skip_space(s, start + 7), close = matching_paren(s, open);
        if (close + 1 != end)
            return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': "
                            "ARG_BUF(type, name) expected", ps->what, line, ps->kernel, index, text);
        size_t comma = 0;
        int depth = 0;
        for (size_t i = open + 1; i < close; i++) {
            if (s[i] == '(') depth++;
            else if (s[i] == ')') depth--;
            else if (s[i] == ',' && depth == 0) comma = i;
        }
        size_t ts = open + 1, te = comma, ns = comma + 1, ne = close;
        if (comma) trim(s, &ts, &te), trim(s, &ns, &ne);
        bool name_ok = comma && ns < ne && ident_start(s[ns]);
        for (size_t i = ns; name_ok && i < ne; i++) name_ok = ident_char(s[i]);
        if (!name_ok || ts == te || ne - ns >= sizeof p->name ||
            !copy_folded(p->type, sizeof p->type, s, ts, te))
            return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': "
                            "ARG_BUF(type, name) expected", ps->what, line, ps->kernel, index, text);
        memcpy(p->name, s + ns, ne - ns);
        char plain[128];
        unqualified(p->type, plain, sizeof plain);
        p->size = element_size(plain); /* 0 for a type named otherwise */
        p->kind = OX__ARG_BUFFER;
        return OX_OK;
    }
    /* "type name": the name is the last identifier */
    size_t ns = end;
    while (ns > start && ident_char(s[ns - 1])) ns--;
    if (ns == end || !ident_start(s[ns]))
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': %s",
                        ps->what, line, ps->kernel, index, text, PARAM_RULE);
    size_t ts = start, te = ns;
    trim(s, &ts, &te);
    if (ts == te || end - ns >= sizeof p->name ||
        !copy_folded(p->type, sizeof p->type, s, ts, te))
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': %s",
                        ps->what, line, ps->kernel, index, text, PARAM_RULE);
    memcpy(p->name, s + ns, end - ns);
    if (strpbrk(p->type, "()[]")) /* a macro or an array */
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': %s",
                        ps->what, line, ps->kernel, index, text, PARAM_RULE);
    if (strchr(p->type, '*')) {
        if (!has_word(p->type, "LOCAL"))
            return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': a "
                            "pointer; buffers are ARG_BUF(type, name), local memory LOCAL type "
                            "*name", ps->what, line, ps->kernel, index, text);
        p->kind = OX__ARG_LOCAL;
        return OX_OK;
    }
    /* a scalar: its type without qualifiers */
    char plain[128], defined[64];
    unqualified(p->type, plain, sizeof plain);
    p->size = scalar_size(plain);
    if (!p->size && option_define(ps->options, plain, defined, sizeof defined))
        p->size = scalar_size(defined);
    if (!p->size)
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s', parameter %d '%s': scalar "
                        "type '%s' is not one every device sizes alike (char, uchar, short, "
                        "ushort, int, uint, float, double, i64, u64)", ps->what, line, ps->kernel,
                        index, text, plain);
    p->kind = OX__ARG_SCALAR;
    return OX_OK;
}

/* KERNEL_WG's three sizes: integers or -D defined integers. */
static ox_status parse_wg(parser *ps, size_t open, size_t close, int wg[3])
{
    const char *s = ps->s;
    int n = 0;
    for (size_t i = open + 1; i <= close && n <= 3;) {
        size_t end = i;
        while (end < close && s[end] != ',') end++;
        size_t a = i, b = end;
        trim(s, &a, &b);
        char word[64] = "", value[64];
        if (b > a && b - a < sizeof word) memcpy(word, s + a, b - a), word[b - a] = '\0';
        const char *digits = option_define(ps->options, word, value, sizeof value) ? value : word;
        char *stop;
        long v = strtol(digits, &stop, 0);
        if (n == 3 || !*digits || *stop || v < 1 || v > 65536)
            return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: KERNEL_WG takes three positive integer "
                            "sizes", ps->what, line_of(s, open));
        wg[n++] = (int)v;
        i = end + 1;
    }
    if (n != 3)
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: KERNEL_WG takes three sizes", ps->what,
                        line_of(s, open));
    return OX_OK;
}

/* Whether s[start, end) is ARG_SHAPE(name). */
static bool is_shape(const char *s, size_t start, size_t end)
{
    return end - start > 10 && strncmp(s + start, "ARG_SHAPE", 9) == 0 &&
           s[skip_space(s, start + 9)] == '(' && s[end - 1] == ')';
}

/* ARG_SHAPE(t) as the eight i64 parameters it declares (common.h). */
static ox_status shape_params(parser *ps, ox__sig_kernel *k, size_t start, size_t end)
{
    const char *s = ps->s;
    size_t ns = skip_space(s, start + 9) + 1, ne = end - 1;
    trim(s, &ns, &ne);
    bool name_ok = ns < ne && ident_start(s[ns]) && ne - ns + 4 < OX__SIG_NAME_MAX;
    for (size_t i = ns; name_ok && i < ne; i++) name_ok = ident_char(s[i]);
    if (!name_ok)
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s': ARG_SHAPE(name) expected",
                        ps->what, line_of(s, start), ps->kernel);
    if (k->n_params + 8 > OX__SIG_MAX_PARAMS)
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s: kernel '%s': more than %d parameters",
                        ps->what, k->name, OX__SIG_MAX_PARAMS);
    for (int i = 0; i < 8; i++) {
        ox__sig_param *p = &k->params[k->n_params++];
        memset(p, 0, sizeof *p);
        p->kind = OX__ARG_SCALAR;
        p->size = 8;
        snprintf(p->type, sizeof p->type, "i64");
        snprintf(p->name, sizeof p->name, "%.*s_%s%d", (int)(ne - ns), s + ns,
                 i < 4 ? "ne" : "nb", i % 4);
    }
    return OX_OK;
}

static ox_status parse_kernel(parser *ps, size_t at, bool wg, ox__sig_kernel *k, size_t *next,
                              bool *definition)
{
    const char *s = ps->s;
    memset(k, 0, sizeof *k);
    k->keyword_at = at;
    size_t i = at + (wg ? 9 : 6);
    ps->kernel = "?";
    if (wg) {
        size_t open = skip_space(s, i), close;
        if (s[open] != '(' || !(close = matching_paren(s, open)))
            return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: KERNEL_WG(x, y, z) expected", ps->what,
                            line_of(s, at));
        ox_status st = parse_wg(ps, open, close, k->reqd_wg);
        if (st != OX_OK) return st;
        i = close + 1;
    }
    k->keyword_len = i - at;
    i = skip_space(s, i);
    size_t name_end = i;
    while (ident_char(s[name_end])) name_end++;
    if ((unsigned char)s[name_end] >= 0x80 || (name_end == i && (unsigned char)s[i] >= 0x80))
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel name '%.*s': a non-ASCII character "
                        "at byte %zu; kernel names are C identifiers ([A-Za-z_][A-Za-z0-9_]*) in "
                        "every API", ps->what, line_of(s, at), (int)(name_end - i < 40 ? name_end - i : 40),
                        s + i, name_end - i + 1);
    if (name_end - i >= sizeof k->name)
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel name '%.32s...' is %zu characters; "
                        "at most %zu", ps->what, line_of(s, at), s + i, name_end - i,
                        sizeof k->name - 1);
    if (name_end == i || !ident_start(s[i]))
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: a kernel name must follow KERNEL",
                        ps->what, line_of(s, at));
    memcpy(k->name, s + i, name_end - i);
    k->name_at = i;
    ps->kernel = k->name;
    size_t open = skip_space(s, name_end), close;
    if (s[open] != '(' || !(close = matching_paren(s, open)))
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s': a parameter list must follow "
                        "its name", ps->what, line_of(s, at), k->name);
    k->params_at = open;
    k->params_end = close;
    size_t after = skip_space(s, close + 1);
    *definition = s[after] == '{';
    *next = after;
    if (!*definition && s[after] != ';')
        return ox__fail(ps->ctx, OX_ERR_BUILD, "%s:%u: kernel '%s': its body must follow the "
                        "parameter list", ps->what, line_of(s, at), k->name);
    size_t a = open + 1, b = close;
    trim(s, &a, &b);
    if (a == b || (b - a == 4 && strncmp(s + a, "void", 4) == 0)) return OX_OK;
    int depth = 0;
    size_t start = a;
    for (size_t j = a; j <= b; j++) {
        if (j < b && s[j] == '(') depth++;
        else if (j < b && s[j] == ')') depth--;
        if (j == b || (s[j] == ',' && depth == 0)) {
            size_t ps_ = start, pe = j;
            trim(s, &ps_, &pe);
            if (k->n_params == OX__SIG_MAX_PARAMS)
                return ox__fail(ps->ctx, OX_ERR_BUILD, "%s: kernel '%s': more than %d parameters",
                                ps->what, k->name, OX__SIG_MAX_PARAMS);
            if (is_shape(s, ps_, pe)) { /* ARG_SHAPE(t): eight i64, t_ne0..3, t_nb0..3 */
                ox_status st = shape_params(ps, k, ps_, pe);
                if (st != OX_OK) return st;
                start = j + 1;
                continue;
            }
            ox__sig_param *p = &k->params[k->n_params];
            ox_status st = parse_param(ps, ps_, pe, k->n_params, p);
            if (st != OX_OK) return st;
            for (int q = 0; q < k->n_params; q++)
                if (strcmp(k->params[q].name, p->name) == 0)
                    return ox__fail(ps->ctx, OX_ERR_BUILD, "%s: kernel '%s': two parameters named "
                                    "'%s'", ps->what, k->name, p->name);
            k->n_params++;
            start = j + 1;
        }
    }
    return OX_OK;
}

ox_status ox__sig_parse(ox_context *ctx, const char *what, const char *source,
                        const char *options, ox__sig_program *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = ctx;
    size_t len = strlen(source);
    char *s = ox__alloc(ctx, len + 1);
    if (!s) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    memcpy(s, source, len + 1);
    size_t open_comment = blank(s, false);
    if (open_comment != SIZE_MAX) { /* C refuses it; the CPU's wrappers after it would hide it */
        ox_status st = ox__fail(ctx, OX_ERR_BUILD, "%s:%u: unterminated comment: the '/*' here "
                                "is never closed", what, line_of(source, open_comment));
        ox__free(ctx, s, len + 1);
        return st;
    }
    out->barriers = has_word(s, "BARRIER") || has_word(s, "BARRIER_GLOBAL") ||
                    (options && strstr(options, "BARRIER"));
    blank(s, true);
    parser ps = {.ctx = ctx, .what = what, .s = s, .options = options};
    ox_status st = OX_OK;
    int depth = 0;
    for (size_t i = 0; s[i];) {
        char c = s[i];
        if (c == '{' || c == '(' || c == '[') {
            depth++, i++;
        } else if (c == '}' || c == ')' || c == ']') {
            depth--, i++;
        } else if (ident_start(c) && (i == 0 || !ident_char(s[i - 1]))) {
            size_t end = i;
            while (ident_char(s[end])) end++;
            bool kw = end - i == 6 && strncmp(s + i, "KERNEL", 6) == 0;
            bool kw_wg = end - i == 9 && strncmp(s + i, "KERNEL_WG", 9) == 0;
            if (depth == 0 && (kw || kw_wg)) {
                if (out->n_kernels == out->cap) {
                    int grown = out->cap ? 2 * out->cap : 8;
                    ox__sig_kernel *k = ox__alloc(ctx, (size_t)grown * sizeof *k);
                    if (!k) {
                        st = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
                        break;
                    }
                    if (out->n_kernels) memcpy(k, out->kernels, (size_t)out->n_kernels * sizeof *k);
                    ox__free(ctx, out->kernels, (size_t)out->cap * sizeof *k);
                    out->kernels = k, out->cap = grown;
                }
                bool definition = false;
                size_t next = i + 1;
                st = parse_kernel(&ps, i, kw_wg, &out->kernels[out->n_kernels], &next,
                                  &definition);
                if (st != OX_OK) break;
                const char *name = out->kernels[out->n_kernels].name;
                if (definition) {
                    if (ox__sig_find(out, name)) {
                        st = ox__fail(ctx, OX_ERR_BUILD, "%s:%u: kernel '%s' is defined twice",
                                      what, line_of(s, i), name);
                        break;
                    }
                    out->n_kernels++;
                }
                i = next;
            } else {
                i = end;
            }
        } else {
            i++;
        }
    }
    ox__free(ctx, s, len + 1);
    if (st != OX_OK) ox__sig_free(out);
    return st;
}

void ox__sig_free(ox__sig_program *sig)
{
    if (sig->kernels) ox__free(sig->ctx, sig->kernels, (size_t)sig->cap * sizeof *sig->kernels);
    memset(sig, 0, sizeof *sig);
}

const ox__sig_kernel *ox__sig_find(const ox__sig_program *sig, const char *name)
{
    for (int i = 0; i < sig->n_kernels; i++)
        if (strcmp(sig->kernels[i].name, name) == 0) return &sig->kernels[i];
    return NULL;
}

/* ---- entry points ----------------------------------------------------------- */

typedef struct text {
    ox_context *ctx;
    char *data;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n + 1) cap *= 2;
        char *d = ox__alloc(t->ctx, cap);
        if (!d) {
            t->failed = true;
            return;
        }
        if (t->len) memcpy(d, t->data, t->len);
        ox__free(t->ctx, t->data, t->cap);
        t->data = d, t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

static void putf(text *t, const char *fmt, ...) OX__PRINTF(2, 3);
static void putf(text *t, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) t->failed = true;
    else put(t, buf, (size_t)n);
}

/* The user function's arguments, as the entry point passes them on: for
 * C, locals ox__pN unpacked first (unpack_c), so the loop over work-items
 * keeps them in registers. */
static void call_args(text *t, const ox__sig_kernel *k, bool c)
{
    for (int i = 0; i < k->n_params; i++) {
        const ox__sig_param *p = &k->params[i];
        if (i) puts_(t, ", ");
        if (p->kind == OX__ARG_BUFFER) {
            if (c) putf(t, "ox__p%d, (u64)0", i);
            else putf(t, "%s_base, %s_off", p->name, p->name);
        } else if (p->kind == OX__ARG_LOCAL) {
            if (c) putf(t, "ox__p%d", i);
            else putf(t, "(%s)(ox__dl + ox__l_%s)", p->type, p->name);
        } else {
            if (c) putf(t, "ox__p%d", i);
            else puts_(t, p->name);
        }
    }
}

/* C: each argument from the array of pointers to values into a local. */
static void unpack_c(text *t, const ox__sig_kernel *k)
{
    for (int i = 0; i < k->n_params; i++) {
        const ox__sig_param *p = &k->params[i];
        if (p->kind == OX__ARG_BUFFER)
            putf(t, "    GLOBAL %s *ox__p%d = (GLOBAL %s *)*(void *const *)ox__a[%d];\n", p->type, i,
                 p->type, i);
        else if (p->kind == OX__ARG_LOCAL)
            putf(t, "    %s ox__p%d = (%s)*(void *const *)ox__a[%d];\n", p->type, i, p->type, i);
        else
            putf(t, "    %s ox__p%d = *(%s *)ox__a[%d];\n", p->type, i, p->type, i);
    }
}

static void entry_c(text *t, const ox__sig_kernel *k)
{
    static const char *const kinds[2] = {"group", "item"};
    for (int e = 0; e < 2; e++) {
        putf(t, "OX__ENTRY void ox__%s_%s(void *const *ox__a, struct ox__item *ox__w)\n{\n",
             kinds[e], k->name);
        unpack_c(t, k);
        putf(t, "    (void)ox__a;\n    ox__set_item(ox__w);\n    %sox__user_%s(ox__w%s",
             e == 0 ? "OX__FOR_ITEMS(ox__w) " : "", k->name, k->n_params ? ", " : "");
        call_args(t, k, true);
        puts_(t, ");\n}\n");
    }
}

static void entry_gpu(text *t, const ox__sig_kernel *k)
{
    if (k->reqd_wg[0])
        putf(t, "KERNEL_WG(%d, %d, %d) %s(", k->reqd_wg[0], k->reqd_wg[1], k->reqd_wg[2],
             k->name);
    else
        putf(t, "KERNEL %s(", k->name);
    bool local = false;
    for (int i = 0; i < k->n_params; i++) {
        const ox__sig_param *p = &k->params[i];
        if (i) puts_(t, ", ");
        if (p->kind == OX__ARG_BUFFER) putf(t, "ARG_BUF(%s, %s)", p->type, p->name);
        else if (p->kind == OX__ARG_LOCAL) putf(t, "u64 ox__l_%s", p->name), local = true;
        else putf(t, "%s %s", p->type, p->name);
    }
    puts_(t, ")\n{\n");
    if (local) puts_(t, "    OX__DYNAMIC_LOCAL(ox__dl);\n");
    putf(t, "    ox__user_%s(", k->name);
    call_args(t, k, false);
    puts_(t, ");\n}\n");
}

char *ox__sig_wrap(const char *source, const ox__sig_program *sig, ox__kernel_language language,
                   size_t *size)
{
    text t = {.ctx = sig->ctx};
    size_t at = 0;
    for (int i = 0; i < sig->n_kernels; i++) {
        const ox__sig_kernel *k = &sig->kernels[i];
        put(&t, source + at, k->keyword_at - at);
        puts_(&t, "OX__KERNEL_FN");
        for (size_t j = k->keyword_at; j < k->keyword_at + k->keyword_len; j++)
            if (source[j] == '\n') puts_(&t, "\n"); /* keep the line count */
        put(&t, source + k->keyword_at + k->keyword_len,
            k->name_at - (k->keyword_at + k->keyword_len));
        putf(&t, "ox__user_%s", k->name);
        at = k->name_at + strlen(k->name);
        if (language == OX__KERNEL_C) {
            /* the work-item as a hidden first parameter, so the kernel's
             * geometry reads it directly, not through thread-local storage */
            put(&t, source + at, k->params_at + 1 - at);
            puts_(&t, k->n_params ? "struct ox__item *ox__wi, " : "struct ox__item *ox__wi");
            at = k->params_at + 1;
            if (!k->n_params) { /* "()" or "(void)": the parameter alone */
                for (size_t j = at; j < k->params_end; j++)
                    if (source[j] == '\n') puts_(&t, "\n");
                at = k->params_end;
            }
        }
    }
    puts_(&t, source + at);
    puts_(&t, "\n/* entry points, generated by OpenXPU */\n");
    if (language == OX__KERNEL_C)
        putf(&t, "OX__ENTRY const int ox__c_abi_version = OX__C_ABI_VERSION;\n"
                 "OX__ENTRY const int ox__c_barriers = %d;\n", sig->barriers);
    for (int i = 0; i < sig->n_kernels; i++) {
        if (language == OX__KERNEL_C) entry_c(&t, &sig->kernels[i]);
        else entry_gpu(&t, &sig->kernels[i]);
    }
    if (t.failed) {
        ox__free(t.ctx, t.data, t.cap);
        return NULL;
    }
    *size = t.cap;
    return t.data;
}
