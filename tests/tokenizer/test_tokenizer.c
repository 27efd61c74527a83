/* Tokenizer tests: for every vocabulary in tests/data/tokenizer, each test
 * string encodes (no BOS, special tokens not parsed) to exactly the ids
 * llama.cpp's tokenizer gave; then decoding, special tokens, sizing calls,
 * malformed UTF-8 and load errors. */
#include <openxpu/openxpu.h>

#include "ox_test.h"

typedef struct loaded {
    ox_context *ctx;
    ox_gguf *gguf;
    ox_tokenizer *tok;
} loaded;

static loaded load(const char *vocab)
{
    loaded l = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", OX_TOKENIZER_DATA, vocab);
    ox_context_options options = {.struct_size = sizeof options, .flags = OX_CONTEXT_NO_PLUGINS};
    ASSERT_OK(NULL, ox_context_create(&options, &l.ctx));
    ASSERT_OK(l.ctx, ox_gguf_open(l.ctx, path, &l.gguf));
    ASSERT_OK(l.ctx, ox_tokenizer_load(l.ctx, l.gguf, &l.tok));
    return l;
}

static void unload(loaded *l)
{
    ox_tokenizer_free(l->tok);
    ox_gguf_close(l->gguf);
    ox_context_free(l->ctx);
}

static char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ASSERT_MSG(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *data = malloc((size_t)n + 1);
    ASSERT(data && fread(data, 1, (size_t)n, f) == (size_t)n);
    data[n] = '\0';
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* Encode every string of <vocab>.inp and compare with <vocab>.out. */
static void check_vocab(const char *vocab)
{
    loaded l = load(vocab);
    char path[512];
    size_t inp_size, out_size;
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.inp", OX_TOKENIZER_DATA, vocab);
    char *inp = read_all(path, &inp_size);
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.out", OX_TOKENIZER_DATA, vocab);
    char *out = read_all(path, &out_size);
    static const char separator[] = "\n__ggml_vocab_test__\n";
    char *text = inp, *line = out;
    int total = 0, passed = 0;
    for (;;) {
        char *end = strstr(text, separator);
        if (!end) break;
        char *eol = strchr(line, '\n');
        ASSERT_MSG(eol, "%s: fewer lines in .out than strings in .inp", vocab);
        *eol = '\0';
        int32_t want[1024];
        size_t n_want = 0;
        for (char *p = line, *q; n_want < 1024; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p) break;
            want[n_want++] = (int32_t)v;
        }
        size_t len = (size_t)(end - text), n = 0;
        ASSERT_OK(l.ctx, ox_tokenizer_encode(l.tok, text, len, 0, NULL, 0, &n));
        int32_t *got = malloc((n + 1) * sizeof *got);
        ASSERT(got != NULL);
        if (n) ASSERT_OK(l.ctx, ox_tokenizer_encode(l.tok, text, len, 0, got, n, &n));
        bool same = n == n_want && (n == 0 || memcmp(got, want, n * sizeof *got) == 0);
        total++;
        if (same) {
            passed++;
        } else {
            printf("  %s: string %d '%.*s'\n    want:", vocab, total, (int)len, text);
            for (size_t i = 0; i < n_want; i++) printf(" %d", want[i]);
            printf("\n    got: ");
            for (size_t i = 0; i < n; i++) printf(" %d", got[i]);
            printf("\n");
        }
        free(got);
        text = end + sizeof separator - 1;
        line = eol + 1;
    }
    printf("  %s: %d of %d strings match llama.cpp\n", vocab, passed, total);
    ASSERT(total > 0);
    ASSERT_EQ(passed, total);
    free(inp);
    free(out);
    unload(&l);
}

OX_TEST(vocab_llama_spm) { check_vocab("llama-spm"); }
OX_TEST(vocab_phi_3) { check_vocab("phi-3"); }
OX_TEST(vocab_gpt_2) { check_vocab("gpt-2"); }
OX_TEST(vocab_falcon) { check_vocab("falcon"); }
OX_TEST(vocab_starcoder) { check_vocab("starcoder"); }
OX_TEST(vocab_deepseek_coder) { check_vocab("deepseek-coder"); }

OX_TEST(vocab_bert_bge)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ggml-vocab-bert-bge.gguf", OX_TOKENIZER_DATA);
    ox_context *ctx;
    ox_gguf *g;
    ox_tokenizer *tok = NULL;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    ASSERT_OK(ctx, ox_gguf_open(ctx, path, &g));
    ASSERT_EQ(ox_tokenizer_load(ctx, g, &tok), OX_ERR_UNSUPPORTED);
    ASSERT(tok == NULL && strstr(ox_errmsg(ctx), "'bert'"));
    ox_gguf_close(g);
    ox_context_free(ctx);
    OX_SKIP("bert-bge: WordPiece (tokenizer.ggml.model 'bert') is NOT implemented; "
            "its 46 strings are not checked");
}

/* Encode `text` with `flags` into ids (at most 64). */
static size_t encode(loaded *l, const char *text, size_t len, unsigned flags, int32_t *ids)
{
    size_t n = 0;
    ASSERT_OK(l->ctx, ox_tokenizer_encode(l->tok, text, len, flags, ids, 64, &n));
    return n;
}

static void check_round_trip(const char *vocab)
{
    loaded l = load(vocab);
    static const char *const texts[] = {"Hello world", "  two  spaces\n\nand lines\t",
                                        "emoji 🦙 and 中文 ½", "x\x80\x81 y \xc3"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t ids[64];
        size_t n = encode(&l, texts[i], strlen(texts[i]), OX_TOKENIZE_ADD_BOS, ids);
        char out[256];
        size_t len = 0;
        ASSERT_OK(l.ctx, ox_tokenizer_decode(l.tok, ids, n, out, sizeof out, &len));
        ASSERT_MSG(len == strlen(texts[i]) && memcmp(out, texts[i], len) == 0,
                   "%s: '%s' decodes to '%.*s'", vocab, texts[i], (int)len, out);
    }
    unload(&l);
}

/* Malformed UTF-8 (stray continuation bytes, a cut sequence) encodes and
 * decodes back byte for byte. A bad lead byte in a "llama" vocabulary
 * swallows the next bytes as llama.cpp does, so "\xfe " decodes to "\xfe▁". */
OX_TEST(round_trip_spm) { check_round_trip("llama-spm"); }
OX_TEST(round_trip_bpe) { check_round_trip("gpt-2"); }

OX_TEST(bos_and_special_tokens)
{
    loaded l = load("llama-spm");
    int32_t ids[64];
    ASSERT_EQ(ox_tokenizer_bos(l.tok), 1);
    ASSERT_EQ(ox_tokenizer_eos(l.tok), 2);
    ASSERT_EQ(ox_tokenizer_vocab_size(l.tok), 32000);
    size_t n = encode(&l, "Hello", 5, OX_TOKENIZE_ADD_BOS, ids);
    ASSERT_EQ(n, 2u);
    ASSERT_EQ(ids[0], 1);
    ASSERT_EQ(ids[1], 15043); /* "▁Hello" */
    ASSERT_STR_EQ(ox_tokenizer_token_text(l.tok, 15043), "\xe2\x96\x81Hello");
    /* "</s>" is text unless special tokens are parsed. */
    n = encode(&l, "a</s>", 5, 0, ids);
    ASSERT(n > 2);
    n = encode(&l, "a</s>", 5, OX_TOKENIZE_PARSE_SPECIAL, ids);
    ASSERT_EQ(n, 2u);
    ASSERT_EQ(ids[1], 2);
    char out[64];
    size_t len;
    ASSERT_OK(l.ctx, ox_tokenizer_decode(l.tok, ids, n, out, sizeof out, &len));
    ASSERT_STR_EQ(out, "a");
    ASSERT_OK(l.ctx, ox_tokenizer_decode_flags(l.tok, ids, n, OX_DECODE_SPECIAL, out, sizeof out,
                                               &len));
    ASSERT_STR_EQ(out, "a</s>");
    unload(&l);

    l = load("starcoder");
    const char *text = "<fim_prefix>x";
    n = encode(&l, text, strlen(text), OX_TOKENIZE_PARSE_SPECIAL, ids);
    ASSERT_EQ(n, 2u);
    ASSERT_EQ(ids[0], 1);
    ASSERT_EQ(ox_tokenizer_eot(l.tok), 0); /* <|endoftext|> */
    unload(&l);
}

OX_TEST(sizing_and_errors)
{
    loaded l = load("gpt-2");
    size_t n = 0;
    ASSERT_OK(l.ctx, ox_tokenizer_encode(l.tok, "Hello world", 11, 0, NULL, 0, &n));
    ASSERT_EQ(n, 2u);
    int32_t one[1];
    ASSERT_EQ(ox_tokenizer_encode(l.tok, "Hello world", 11, 0, one, 1, &n), OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(n, 2u);
    ASSERT_EQ(one[0], 15496); /* "Hello" */
    ASSERT_OK(l.ctx, ox_tokenizer_encode(l.tok, "", 0, OX_TOKENIZE_ADD_BOS, NULL, 0, &n));
    ASSERT_EQ(n, 0u); /* gpt-2 adds no BOS */
    int32_t bad = 50257;
    char out[8];
    ASSERT_EQ(ox_tokenizer_decode(l.tok, &bad, 1, out, sizeof out, &n), OX_ERR_INVALID);
    int32_t ids[2] = {15496, 15496};
    ASSERT_OK(l.ctx, ox_tokenizer_decode(l.tok, ids, 2, NULL, 0, &n));
    ASSERT_EQ(n, 10u);
    ASSERT_EQ(ox_tokenizer_decode(l.tok, ids, 2, out, sizeof out, &n), OX_ERR_OUT_OF_RANGE);
    ASSERT(ox_tokenizer_token_text(l.tok, -1) == NULL);
    ox_tokenizer_free(NULL);
    unload(&l);
}

OX_TEST(missing_keys)
{
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    ASSERT_OK(ctx, ox_gguf_writer_add_string(w, "tokenizer.ggml.model", "llama", 5));
    size_t size;
    ASSERT_OK(ctx, ox_gguf_writer_size(w, &size));
    void *file = malloc(size);
    ASSERT_OK(ctx, ox_gguf_writer_write_memory(w, file, size));
    ox_gguf *g;
    ASSERT_OK(ctx, ox_gguf_open_memory(ctx, file, size, &g));
    ox_tokenizer *tok = (ox_tokenizer *)1;
    ASSERT_EQ(ox_tokenizer_load(ctx, g, &tok), OX_ERR_FORMAT);
    ASSERT(tok == NULL);
    ASSERT_STR_EQ(ox_errmsg(ctx), "tokenizer.ggml.tokens missing");
    ox_gguf_close(g);
    free(file);
    ox_gguf_writer_free(w);
    ox_context_free(ctx);
}

/* A JSON string (as Python's json.dumps writes it, quotes included) decoded
 * into out; the length. */
static size_t json_string(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    ASSERT(*in == '"');
    for (in++; *in && *in != '"' && n + 4 < cap; in++) {
        if (*in != '\\') {
            out[n++] = *in;
            continue;
        }
        in++;
        switch (*in) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'u': {
            unsigned c = (unsigned)strtoul((char[5]){in[1], in[2], in[3], in[4], 0}, NULL, 16);
            in += 4;
            if (c < 0x80) {
                out[n++] = (char)c;
            } else if (c < 0x800) {
                out[n++] = (char)(0xc0 | c >> 6);
                out[n++] = (char)(0x80 | (c & 0x3f));
            } else {
                out[n++] = (char)(0xe0 | c >> 12);
                out[n++] = (char)(0x80 | (c >> 6 & 0x3f));
                out[n++] = (char)(0x80 | (c & 0x3f));
            }
            break;
        }
        default: out[n++] = *in; break; /* \" \\ \/ */
        }
    }
    out[n] = '\0';
    return n;
}

/* Text holding each vocabulary's control, user-defined and unknown tokens
 * (and the texts llama.cpp makes control whatever their type, as phi-3's
 * user-defined "</s>"), tokenized with and without parsing specials,
 * against llama.cpp's llama-tokenize (tests/data/tokenizer/specials.txt,
 * scripts/peer-tokenize-specials.py): control tokens in text are text
 * unless parsed, user-defined ones always tokens (issue 16). */
OX_TEST(specials_as_llama_cpp)
{
    char path[512];
    snprintf(path, sizeof path, "%s/specials.txt", OX_TOKENIZER_DATA);
    size_t size;
    char *data = read_all(path, &size);
    char current[64] = "";
    loaded l = {0};
    int checked = 0, per_mode[2] = {0, 0};
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *f[4];
        f[0] = line;
        for (int i = 1; i < 4; i++) {
            f[i] = strchr(f[i - 1], '\t');
            ASSERT_MSG(f[i], "malformed line: %s", line);
            *f[i]++ = '\0';
        }
        if (strcmp(current, f[0]) != 0) {
            if (l.tok) unload(&l);
            l = load(f[0]);
            snprintf(current, sizeof current, "%s", f[0]);
        }
        int parse = atoi(f[1]);
        char text[8192];
        size_t len = json_string(f[2], text, sizeof text);
        int32_t want[2048], got[2048];
        size_t n_want = 0, n_got = 0;
        for (char *p = f[3], *end; *p; p = end) {
            want[n_want++] = (int32_t)strtol(p, &end, 10);
            if (end == p) break;
        }
        unsigned flags = parse ? OX_TOKENIZE_PARSE_SPECIAL : 0;
        ASSERT_OK(l.ctx, ox_tokenizer_encode(l.tok, text, len, flags, got, 2048, &n_got));
        bool same = n_got == n_want && memcmp(got, want, n_want * sizeof *got) == 0;
        ASSERT_MSG(same, "%s, %s specials: \"%s\": %zu ids, llama.cpp %zu (first %d vs %d)", f[0],
                   parse ? "parsing" : "not parsing", text, n_got, n_want, n_got ? got[0] : -1,
                   n_want ? want[0] : -1);
        checked++;
        per_mode[parse]++;
    }
    if (l.tok) unload(&l);
    free(data);
    ASSERT(checked > 200 && per_mode[0] == per_mode[1]);
    printf("  %d texts with special tokens, each way, equal to llama.cpp's ids\n", per_mode[0]);
}

OX_TEST_MAIN(vocab_llama_spm, vocab_phi_3, vocab_gpt_2, vocab_falcon, vocab_starcoder,
             vocab_deepseek_coder, vocab_bert_bge, round_trip_spm, round_trip_bpe,
             bos_and_special_tokens, specials_as_llama_cpp, sizing_and_errors, missing_keys)
