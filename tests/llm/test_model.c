/* Models: bad input is refused before any work, with a message naming the
 * problem; and the real Gemma 3 270M (fetched by scripts/fetch-model.sh)
 * runs, greedy decoding is deterministic, and its first greedy tokens
 * match llama.cpp's (tests/data/gemma3/, when recorded). */
#include <openxpu/openxpu.h>
#include <stdlib.h>
#include <unistd.h>

#include "ox_test.h"
#include "llm/model_path.h"

static ox_context *cpu_context(ox_device **cpu)
{
    ox_context *ctx;
    int n;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS,
                            .log_level = OX_LOG_OFF};
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", cpu, 1, &n));
    return ctx;
}

/* A small GGUF file with the given architecture and no tensors. */
static void write_stub(ox_context *ctx, const char *path, const char *arch)
{
    ox_gguf_writer *w;
    ASSERT_OK(ctx, ox_gguf_writer_create(ctx, &w));
    ASSERT_OK(ctx, ox_gguf_writer_add_string(w, "general.architecture", arch, strlen(arch)));
    char key[64];
    const uint32_t values[5] = {640, 2, 4, 2048, 1024};
    const char *names[5] = {"embedding_length", "block_count", "attention.head_count",
                            "feed_forward_length", "context_length"};
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, names[i]);
        ASSERT_OK(ctx, ox_gguf_writer_add_scalar(w, key, OX_GGUF_UINT32, &values[i]));
    }
    ASSERT_OK(ctx, ox_gguf_writer_write_file(w, path));
    ox_gguf_writer_free(w);
}

OX_TEST(unsupported_architecture_is_named)
{
    ox_device *cpu;
    ox_context *ctx = cpu_context(&cpu);
    char path[] = "/tmp/ox-model-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    close(fd);
    write_stub(ctx, path, "mamba9");
    ox_model *m = NULL;
    ASSERT_EQ(ox_model_load(cpu, path, &m), OX_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(ox_errmsg(ctx), "architecture 'mamba9'");
    ASSERT(m == NULL);
    write_stub(ctx, path, "gemma3");
    ASSERT_EQ(ox_model_load(cpu, path, &m), OX_ERR_FORMAT);
    ASSERT_CONTAINS(ox_errmsg(ctx), "token_embd.weight is missing");
    unlink(path);
    ASSERT(ox_model_load(cpu, "/nonexistent/model.gguf", &m) != OX_OK);
    ASSERT_CONTAINS(ox_errmsg(ctx), "/nonexistent/model.gguf");
    ox_model_load_options old = {.struct_size = 4};
    ASSERT_EQ(ox_model_load_ex(cpu, "/nonexistent/model.gguf", &old, &m), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "struct_size");
    ox_context_free(ctx);
}

static void greedy(ox_session *s, int n_vocab, const int32_t *prompt, int n_prompt, int32_t *out,
                   int n_out)
{
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    ASSERT(logits);
    ASSERT_EQ(ox_session_eval(s, prompt, n_prompt, logits), OX_OK);
    for (int i = 0; i < n_out; i++) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        out[i] = best;
        ASSERT_EQ(ox_session_eval(s, &out[i], 1, logits), OX_OK);
    }
    free(logits);
}

typedef struct progress_rec {
    float *fractions;
    int *calls;
} progress_rec;

static void record_progress(float fraction, void *user)
{
    progress_rec *r = user;
    if (*r->calls < 4) r->fractions[*r->calls] = fraction;
    (*r->calls)++;
}

OX_TEST(real_model_runs_and_is_deterministic)
{
    const char *path = test_real_model();
    ox_device *cpu;
    ox_context *ctx = cpu_context(&cpu);
    ox_model *m;
    /* Mapped, not copied: one progress call, with 1. */
    float fractions[4];
    int calls = 0;
    ox_model_load_options lo = {.struct_size = sizeof lo, .progress = record_progress,
                                .progress_user = &(progress_rec){fractions, &calls}};
    ASSERT_OK(ctx, ox_model_load_ex(cpu, path, &lo, &m));
    ASSERT_EQ(calls, 1);
    ASSERT(fractions[0] == 1.0f);
    ox_model_info info = {.struct_size = sizeof info};
    ASSERT_OK(ctx, ox_model_get_info(m, &info));
    ASSERT_STR_EQ(info.arch, "gemma3");
    ASSERT_EQ(info.n_vocab, 262144);
    ASSERT_EQ(info.n_layer, 18);
    /* "<bos>The capital of France is" */
    const int32_t prompt[] = {2, 818, 5279, 529, 7001, 563};
    int32_t a[12], b[12];
    ox_session *s;
    ASSERT_OK(ctx, ox_session_create(m, 64, &s));
    greedy(s, info.n_vocab, prompt, 6, a, 12);
    ASSERT_OK(ctx, ox_session_rewind(s, 0));
    greedy(s, info.n_vocab, prompt, 6, b, 12);
    for (int i = 0; i < 12; i++) ASSERT_EQ(a[i], b[i]);
    /* Bad input to a session: past the context, outside the vocabulary. */
    int32_t many[64] = {0};
    ASSERT_EQ(ox_session_eval(s, many, 64, NULL), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "pass the context of 64");
    const int32_t bad = 262144;
    ASSERT_EQ(ox_session_eval(s, &bad, 1, NULL), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "outside the vocabulary");
    ox_session_free(s);
    ox_model_free(m);
    ox_context_free(ctx);
}

/* ox_session_eval_batch on Gemma 3, whose sliding-window layers mask keys
 * 512 or more positions back: one session past the window (its segment's
 * mask in use), one well inside it (none), in one pass; each must give
 * what its tokens give it alone. */
OX_TEST(real_model_batch_past_the_window)
{
    const char *path = test_real_model();
    ox_device *cpu;
    ox_context *ctx = cpu_context(&cpu);
    ox_model *m;
    ASSERT_OK(ctx, ox_model_load(cpu, path, &m));
    ox_model_info info = {.struct_size = sizeof info};
    ASSERT_OK(ctx, ox_model_get_info(m, &info));
    enum { LONG = 530 };
    int32_t *text = malloc(LONG * sizeof *text);
    float *batch = malloc(2 * (size_t)info.n_vocab * sizeof *batch);
    float *alone = malloc((size_t)info.n_vocab * sizeof *alone);
    ASSERT(text && batch && alone);
    text[0] = 2;
    for (int i = 1; i < LONG; i++) text[i] = 1000 + (i * 7919) % 20000; /* any ids */
    const int32_t prompt[] = {2, 818, 5279, 529, 7001, 563};
    ox_session *se[2], *ref[2];
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(ctx, ox_session_create(m, 1024, &se[i]));
        ASSERT_OK(ctx, ox_session_create(m, 1024, &ref[i]));
    }
    /* session 0 inside the window first, so that session 1's mask is a
     * block after session 0's */
    ASSERT_OK(ctx, ox_session_eval(se[0], prompt, 5, NULL));
    ASSERT_OK(ctx, ox_session_eval(ref[0], prompt, 5, NULL));
    ASSERT_OK(ctx, ox_session_eval(se[1], text, LONG - 2, NULL));
    ASSERT_OK(ctx, ox_session_eval(ref[1], text, LONG - 2, NULL));
    int32_t tokens[3] = {prompt[5], text[LONG - 2], text[LONG - 1]};
    int counts[2] = {1, 2};
    ASSERT_OK(ctx, ox_session_eval_batch(se, counts, 2, tokens, batch));
    double worst = 0;
    for (int s = 0; s < 2; s++) {
        ASSERT_OK(ctx, ox_session_eval(ref[s], tokens + s, counts[s], alone));
        int best = 0, best_alone = 0;
        for (int v = 0; v < info.n_vocab; v++) {
            float b = batch[(size_t)s * (size_t)info.n_vocab + (size_t)v];
            double d = b > alone[v] ? b - alone[v] : alone[v] - b;
            if (d > worst) worst = d;
            if (b > batch[(size_t)s * (size_t)info.n_vocab + (size_t)best]) best = v;
            if (alone[v] > alone[best_alone]) best_alone = v;
        }
        ASSERT_EQ(best, best_alone);
    }
    /* the products see 3 rows instead of 2 or 1: rounding, not a wrong key */
    ASSERT_MSG(worst < 1e-2, "batched logits differ from alone by %g", worst);
    printf("  Gemma 3 270M: a batch past the sliding window (n_kv %d) and inside it: logits "
           "within %.2g of each session alone\n", LONG, worst);
    for (int i = 0; i < 2; i++) {
        ox_session_free(se[i]);
        ox_session_free(ref[i]);
    }
    free(text);
    free(batch);
    free(alone);
    ox_model_free(m);
    ox_context_free(ctx);
}

static int free_pages(ox_context *ctx, const ox_kv_pool *pool)
{
    ox_kv_pool_stats st = {.struct_size = sizeof st};
    ASSERT_OK(ctx, ox_kv_pool_get_stats(pool, &st));
    return st.free_pages;
}

/* Sessions whose K and V live in pages of one shared pool (pages of 16
 * positions, taken by two sessions in turn so that each one's pages are
 * scattered, a chunk starting and ending inside pages, a sequence past
 * Gemma's sliding window) give bit for bit the logits of sessions with
 * caches of their own, alone and in a batch; a pool too small for an
 * evaluation fails it with nothing changed; rewinding and freeing give
 * pages back; the pool outlives ox_kv_pool_free while sessions hold it. */
OX_TEST(real_model_pool_sessions_equal_own_caches)
{
    const char *path = test_real_model();
    ox_device *cpu;
    ox_context *ctx = cpu_context(&cpu);
    ox_model *m;
    ASSERT_OK(ctx, ox_model_load(cpu, path, &m));
    ox_model_info info = {.struct_size = sizeof info};
    ASSERT_OK(ctx, ox_model_get_info(m, &info));
    size_t V = (size_t)info.n_vocab;
    enum { LONG = 530 };
    int32_t *text = malloc(LONG * sizeof *text);
    float *got = malloc(2 * V * sizeof *got), *want = malloc(2 * V * sizeof *want);
    ASSERT(text && got && want);
    text[0] = 2;
    for (int i = 1; i < LONG; i++) text[i] = 1000 + (i * 7919) % 20000; /* any ids */
    ox_kv_pool *pool;
    ox_kv_pool_options po = {.struct_size = sizeof po, .n_tokens = 40 * 16, .page_size = 16};
    ASSERT_OK(ctx, ox_kv_pool_create(m, &po, &pool));
    ASSERT_EQ(free_pages(ctx, pool), 40);
    ox_session *se[2], *ref[2];
    ox_session_options so = {.struct_size = sizeof so, .n_ctx = 600, .pool = pool};
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(ctx, ox_session_create_ex(m, &so, &se[i]));
        ASSERT_OK(ctx, ox_session_create(m, 600, &ref[i]));
    }
    /* turns: 0 takes 21 (2 pages), 1 takes 5 (1), 0 takes 300 (19 more),
     * 1 takes 200 (12 more): each one's pages are scattered */
    static const struct { int who, n; } turns[] = {{0, 21}, {1, 5}, {0, 300}, {1, 200}};
    int at[2] = {0, 0};
    for (size_t t = 0; t < sizeof turns / sizeof turns[0]; t++) {
        int w = turns[t].who, n = turns[t].n;
        ASSERT_OK(ctx, ox_session_eval(se[w], text + at[w], n, got));
        ASSERT_OK(ctx, ox_session_eval(ref[w], text + at[w], n, want));
        ASSERT_MSG(memcmp(got, want, V * sizeof *got) == 0,
                   "turn %zu: pooled logits differ from an own cache's", t);
        at[w] += n;
    }
    ASSERT_EQ(free_pages(ctx, pool), 40 - 21 - 13);
    /* a batch of both: one decode token, one chunk of 9 crossing a page */
    int32_t tokens[10];
    tokens[0] = text[at[0]];
    memcpy(tokens + 1, text + at[1], 9 * sizeof *tokens);
    int counts[2] = {1, 9};
    ASSERT_OK(ctx, ox_session_eval_batch(se, counts, 2, tokens, got));
    ASSERT_OK(ctx, ox_session_eval_batch(ref, counts, 2, tokens, want));
    ASSERT_MSG(memcmp(got, want, 2 * V * sizeof *got) == 0, "pooled batch logits differ");
    ASSERT_EQ(ox_session_position(se[0]), 322);
    ASSERT_EQ(ox_session_position(se[1]), 214);
    /* 5 free pages: 200 more positions at 322 need 12 */
    int before = free_pages(ctx, pool);
    ASSERT_EQ(before, 40 - 21 - 14);
    ASSERT_EQ(ox_session_pages_needed(se[0], 200), 12);
    ASSERT_EQ(ox_session_eval(se[0], text, 200, got), OX_ERR_OUT_OF_MEMORY);
    ASSERT_MSG(strstr(ox_errmsg(ctx), "KV pool is full"), "%s", ox_errmsg(ctx));
    ASSERT_EQ(ox_session_position(se[0]), 322);
    ASSERT_EQ(free_pages(ctx, pool), before);
    int32_t pair[2] = {text[0], text[1]};
    int big[2] = {200, 1};
    int32_t *many = malloc(201 * sizeof *many);
    ASSERT(many != NULL);
    memcpy(many, text, 201 * sizeof *many);
    ASSERT_EQ(ox_session_eval_batch(se, big, 2, many, got), OX_ERR_OUT_OF_MEMORY);
    ASSERT_EQ(ox_session_position(se[1]), 214);
    ASSERT_EQ(free_pages(ctx, pool), before);
    /* rewinding gives back the pages past the position; the session goes
     * on from there as an own cache does */
    ASSERT_OK(ctx, ox_session_rewind(se[1], 30));
    ASSERT_OK(ctx, ox_session_rewind(ref[1], 30));
    ASSERT_EQ(free_pages(ctx, pool), before + 14 - 2);
    ASSERT_OK(ctx, ox_session_eval(se[1], pair, 2, got));
    ASSERT_OK(ctx, ox_session_eval(ref[1], pair, 2, want));
    ASSERT_MSG(memcmp(got, want, V * sizeof *got) == 0, "logits after a rewind differ");
    /* the pool lives while sessions hold it */
    ox_kv_pool_free(pool);
    ASSERT_OK(ctx, ox_session_eval(se[0], pair, 1, got));
    ox_kv_pool_stats st = {.struct_size = sizeof st};
    ASSERT_OK(ctx, ox_kv_pool_get_stats(pool, &st));
    ASSERT_EQ(st.sessions, 2);
    ox_session_free(se[0]);
    ASSERT_OK(ctx, ox_kv_pool_get_stats(pool, &st));
    ASSERT_EQ(st.sessions, 1);
    ASSERT_EQ(st.free_pages, 40 - 2);
    ox_session_free(se[1]);
    for (int i = 0; i < 2; i++) ox_session_free(ref[i]);
    /* bad options */
    po.page_size = 12;
    ASSERT_EQ(ox_kv_pool_create(m, &po, &pool), OX_ERR_INVALID);
    ASSERT_MSG(strstr(ox_errmsg(ctx), "page_size 12"), "%s", ox_errmsg(ctx));
    po.page_size = 16;
    po.n_tokens = 0;
    ASSERT_EQ(ox_kv_pool_create(m, &po, &pool), OX_ERR_INVALID);
    free(many);
    free(text);
    free(got);
    free(want);
    ox_model_free(m);
    ox_context_free(ctx);
}

OX_TEST_MAIN(unsupported_architecture_is_named, real_model_runs_and_is_deterministic,
             real_model_batch_past_the_window, real_model_pool_sessions_equal_own_caches)
