/* The sampler: greedy picks the first maximum, filters keep what they
 * promise, draws are reproducible from the seed and follow the
 * distribution, the repetition penalty acts as defined. */
#include <openxpu/openxpu.h>

#include "ox_test.h"

static ox_context *new_context(void)
{
    ox_context *ctx;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS};
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    return ctx;
}

static ox_sampler *new_sampler(ox_context *ctx, ox_sampler_params p)
{
    ox_sampler *s;
    p.struct_size = sizeof p;
    ASSERT_OK(ctx, ox_sampler_create(ctx, &p, &s));
    return s;
}

OX_TEST(greedy_takes_the_first_maximum)
{
    ox_context *ctx = new_context();
    ox_sampler *s = new_sampler(ctx, (ox_sampler_params){.temperature = 0.0f});
    const float logits[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    int32_t t = -1;
    ASSERT_OK(ctx, ox_sampler_sample(s, logits, 6, &t));
    ASSERT_EQ(t, 1);
    ox_sampler_free(s);
    ox_context_free(ctx);
}

OX_TEST(top_k_one_is_greedy_at_any_temperature)
{
    ox_context *ctx = new_context();
    ox_sampler *s = new_sampler(ctx, (ox_sampler_params){.temperature = 5.0f, .top_k = 1, .seed = 7});
    const float logits[5] = {0.1f, 0.2f, 4.0f, 0.3f, 0.0f};
    for (int i = 0; i < 100; i++) {
        int32_t t;
        ASSERT_OK(ctx, ox_sampler_sample(s, logits, 5, &t));
        ASSERT_EQ(t, 2);
    }
    ox_sampler_free(s);
    ox_context_free(ctx);
}

OX_TEST(same_seed_same_tokens)
{
    ox_context *ctx = new_context();
    float logits[50];
    for (int i = 0; i < 50; i++) logits[i] = (float)((i * 37) % 11) * 0.3f;
    ox_sampler_params p = {.temperature = 1.0f, .top_p = 0.95f, .seed = 1234};
    ox_sampler *a = new_sampler(ctx, p), *b = new_sampler(ctx, p);
    p.seed = 99;
    ox_sampler *c = new_sampler(ctx, p);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int32_t ta, tb, tc;
        ASSERT_OK(ctx, ox_sampler_sample(a, logits, 50, &ta));
        ASSERT_OK(ctx, ox_sampler_sample(b, logits, 50, &tb));
        ASSERT_OK(ctx, ox_sampler_sample(c, logits, 50, &tc));
        ASSERT_EQ(ta, tb);
        differ += ta != tc;
    }
    ASSERT_MSG(differ > 0, "a different seed gave the same 200 tokens");
    ox_sampler_free(a);
    ox_sampler_free(b);
    ox_sampler_free(c);
    ox_context_free(ctx);
}

OX_TEST(draws_follow_the_softmax)
{
    /* logits ln(1), ln(2), ln(7): probabilities 0.1, 0.2, 0.7 */
    ox_context *ctx = new_context();
    ox_sampler *s = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .seed = 42});
    const float logits[3] = {0.0f, 0.69314718f, 1.9459101f};
    int counts[3] = {0};
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        int32_t t;
        ASSERT_OK(ctx, ox_sampler_sample(s, logits, 3, &t));
        counts[t]++;
    }
    /* 5 standard deviations of a binomial with n = 20000 */
    ASSERT_NEAR(counts[0] / (double)n, 0.1, 5 * sqrt(0.1 * 0.9 / n));
    ASSERT_NEAR(counts[1] / (double)n, 0.2, 5 * sqrt(0.2 * 0.8 / n));
    ASSERT_NEAR(counts[2] / (double)n, 0.7, 5 * sqrt(0.7 * 0.3 / n));
    ox_sampler_free(s);
    ox_context_free(ctx);
}

OX_TEST(top_p_and_min_p_cut_the_tail)
{
    /* probabilities 0.5, 0.3, 0.15, 0.05 */
    ox_context *ctx = new_context();
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    ox_sampler *top_p = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .top_p = 0.75f, .seed = 3});
    ox_sampler *min_p = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .min_p = 0.35f, .seed = 3});
    for (int i = 0; i < 2000; i++) {
        int32_t a, b;
        ASSERT_OK(ctx, ox_sampler_sample(top_p, logits, 4, &a));
        ASSERT_OK(ctx, ox_sampler_sample(min_p, logits, 4, &b));
        ASSERT_MSG(a <= 1, "top_p 0.75 kept token %d (0.5 + 0.3 suffice)", a);
        ASSERT_MSG(b <= 1, "min_p 0.35 kept token %d (p < 0.35 * 0.5)", b);
    }
    ox_sampler_free(top_p);
    ox_sampler_free(min_p);
    ox_context_free(ctx);
}

/* A vocabulary of 4096 where rank r (0 = best) goes to a token chosen by
 * a fixed shuffle and has logit -r step, so probability proportional to
 * exp(-r step): draws must reach far past the first candidates the sampler
 * sorts, and follow the softmax there; top-p and min-p must cut exactly
 * where the double-precision sums say. */
OX_TEST(large_vocabulary_draws_follow_the_softmax)
{
    enum { V = 4096, N = 20000 };
    const double step = 1.0 / 1024; /* p(rank 4095) / p(rank 0) = e^-4 */
    ox_context *ctx = new_context();
    static float logits[V];
    static int token_of[V], rank_of[V];
    for (int r = 0; r < V; r++) token_of[r] = r;
    uint64_t x = 12345;
    for (int r = V - 1; r > 0; r--) { /* Fisher-Yates with a fixed LCG */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((x >> 33) % (uint64_t)(r + 1)), t = token_of[r];
        token_of[r] = token_of[k];
        token_of[k] = t;
    }
    for (int r = 0; r < V; r++) {
        rank_of[token_of[r]] = r;
        logits[token_of[r]] = (float)(-(double)r * step);
    }
    double p[V], total = 0;
    for (int r = 0; r < V; r++) total += p[r] = exp((double)logits[token_of[r]]);
    for (int r = 0; r < V; r++) p[r] /= total;
    /* no cut: the share of the draws in each eighth of the ranks */
    ox_sampler *s = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .seed = 5});
    int bins[8] = {0};
    for (int i = 0; i < N; i++) {
        int32_t t;
        ASSERT_OK(ctx, ox_sampler_sample(s, logits, V, &t));
        bins[rank_of[t] / (V / 8)]++;
    }
    for (int b = 0; b < 8; b++) {
        double want = 0;
        for (int r = b * (V / 8); r < (b + 1) * (V / 8); r++) want += p[r];
        ASSERT_NEAR(bins[b] / (double)N, want, 5 * sqrt(want * (1 - want) / N));
    }
    ox_sampler_free(s);
    /* top_p 0.6 keeps the best ranks whose sum first reaches 0.6; min_p
     * 0.3 those with p >= 0.3 p(rank 0): both well past 256 */
    int nucleus = 0, floor_rank = 0;
    for (double acc = 0; acc < 0.6; nucleus++) acc += p[nucleus];
    while (floor_rank < V && p[floor_rank] >= 0.3 * p[0]) floor_rank++;
    ox_sampler *tp = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .top_p = 0.6f, .seed = 8});
    ox_sampler *mp = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .min_p = 0.3f, .seed = 8});
    int past_tp = 0, past_mp = 0;
    for (int i = 0; i < N / 4; i++) {
        int32_t a, b;
        ASSERT_OK(ctx, ox_sampler_sample(tp, logits, V, &a));
        ASSERT_OK(ctx, ox_sampler_sample(mp, logits, V, &b));
        ASSERT_MSG(rank_of[a] < nucleus + 1, "top_p 0.6 drew rank %d; the nucleus is %d", rank_of[a], nucleus);
        ASSERT_MSG(rank_of[b] < floor_rank + 1, "min_p 0.3 drew rank %d; the floor is at %d", rank_of[b], floor_rank);
        past_tp += rank_of[a] >= 512;
        past_mp += rank_of[b] >= 512;
    }
    ASSERT_MSG(nucleus > 512 && floor_rank > 512 && past_tp > 0 && past_mp > 0,
               "nucleus %d, floor %d, draws past rank 512: %d, %d", nucleus, floor_rank, past_tp, past_mp);
    /* a nucleus inside the first sorted candidates: exactly its ranks, each drawn */
    int small = 0;
    for (double acc = 0; acc < 0.02; small++) acc += p[small];
    static int seen[V];
    ox_sampler *tp2 = new_sampler(ctx, (ox_sampler_params){.temperature = 1.0f, .top_p = 0.02f, .seed = 9});
    for (int i = 0; i < N / 4; i++) {
        int32_t a;
        ASSERT_OK(ctx, ox_sampler_sample(tp2, logits, V, &a));
        ASSERT_MSG(rank_of[a] < small, "top_p 0.02 drew rank %d; the nucleus is %d", rank_of[a], small);
        seen[rank_of[a]]++;
    }
    for (int r = 0; r < small; r++) ASSERT_MSG(seen[r] > 0, "rank %d of the nucleus never drawn", r);
    ox_sampler_free(tp2);
    ox_sampler_free(tp);
    ox_sampler_free(mp);
    ox_context_free(ctx);
}

OX_TEST(repetition_penalty_demotes_recent_tokens)
{
    ox_context *ctx = new_context();
    ox_sampler *s = new_sampler(ctx, (ox_sampler_params){.temperature = 0.0f, .repeat_penalty = 2.0f});
    const float logits[3] = {3.0f, 2.0f, -1.0f};
    int32_t t;
    ASSERT_OK(ctx, ox_sampler_sample(s, logits, 3, &t));
    ASSERT_EQ(t, 0);
    ox_sampler_accept(s, 0); /* 3.0 / 2 = 1.5 < 2.0 */
    ASSERT_OK(ctx, ox_sampler_sample(s, logits, 3, &t));
    ASSERT_EQ(t, 1);
    ox_sampler_free(s);
    ox_context_free(ctx);
}

OX_TEST(bad_parameters_are_refused)
{
    ox_context *ctx = new_context();
    ox_sampler *s = NULL;
    ox_sampler_params p = {.struct_size = sizeof p, .top_p = 1.5f};
    ASSERT_EQ(ox_sampler_create(ctx, &p, &s), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "top_p 1.5");
    ASSERT(s == NULL);
    p = (ox_sampler_params){.struct_size = sizeof p, .top_k = -1};
    ASSERT_EQ(ox_sampler_create(ctx, &p, &s), OX_ERR_INVALID);
    ox_context_free(ctx);
}

OX_TEST_MAIN(greedy_takes_the_first_maximum, top_k_one_is_greedy_at_any_temperature,
             same_seed_same_tokens, draws_follow_the_softmax, top_p_and_min_p_cut_the_tail,
             large_vocabulary_draws_follow_the_softmax,
             repetition_penalty_demotes_recent_tokens, bad_parameters_are_refused)
