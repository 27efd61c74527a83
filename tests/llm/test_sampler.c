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
             repetition_penalty_demotes_recent_tokens, bad_parameters_are_refused)
