/* Fused attention on the CPU (src/ops/attention.c) against the double
 * reference: K and V in F32, F16 and BF16, grouped-query heads, causal and
 * masked, prefill and decode shapes, more keys than one block, head sizes
 * over a tile, strided views, and cases worked out by hand; both the
 * CPU's SIMD inner loops and the portable ones. The output is
 * F32 and the reference sees the same (rounded) K and V, so the F32 bound
 * applies whatever K and V are stored as. */
#include "ops/cpu_tile.h"
#include "ops/tune.h"
#include "ops_test.h"

typedef struct att_case {
    int64_t d, dv, n_q, n_kv, heads, kv_heads, batch;
} att_case;

static void check_attention_kv(const att_case *c, ox_dtype kv_dt, int causal, int use_mask,
                               int layout, int k_layout, int v_layout)
{
    int64_t qne[4] = {c->d, c->n_q, c->heads, c->batch};
    int64_t kne[4] = {c->d, c->n_kv, c->kv_heads, c->batch};
    int64_t vne[4] = {c->dv, c->n_kv, c->kv_heads, c->batch};
    int64_t mne[4] = {c->n_kv, c->n_q, 1, 1}, dne[4] = {c->dv, c->n_q, c->heads, c->batch};
    test_tensor q = tt_random(OX_DTYPE_F32, qne, layout, -1, 1);
    test_tensor k = tt_random(kv_dt, kne, k_layout, -1, 1);
    test_tensor v = tt_random(kv_dt, vne, v_layout, -1, 1);
    test_tensor m = tt_random(OX_DTYPE_F32, mne, TT_CONTIGUOUS, -1, 1);
    for (int64_t e = 0; e < tt_count(mne); e += 5) tt_set(&m, e, -INFINITY);
    test_tensor d = tt_new(OX_DTYPE_F32, dne, layout == TT_PADDED ? TT_PADDED : TT_CONTIGUOUS);
    ox_attention_params p = {.scale = 1.0f / sqrtf((float)c->d), .causal = causal};
    ox_ref_tensor rq = tt_ref(&q), rk = tt_ref(&k), rv = tt_ref(&v), rm = tt_ref(&m);
    ox_ref_tensor rd = tt_ref_new(dne, 0);
    ox_ref_attention(&rd, &rq, &rk, &rv, use_mask ? &rm : NULL, &p);
    /* the CPU's own inner loops (AVX2 + FMA where it has them), then the
     * portable ones */
    for (int portable = 0; portable < 2; portable++) {
        ox__cpu_exec x = *tt_exec();
        if (portable) x.features = 0;
        ASSERT_EQ(ox__cpu_attention(&x, &d.v, &q.v, &k.v, &v.v, use_mask ? &m.v : NULL, &p, NULL),
                  OX_OK);
        ASSERT_NMSE(&d, &rd, tt_tol(OX_DTYPE_F32),
                    "attention D %lld Dv %lld n_q %lld n_kv %lld H %lld/%lld B %lld kv %s causal %d "
                    "mask %d layouts %d %d %d portable %d\n",
                    (long long)c->d, (long long)c->dv, (long long)c->n_q, (long long)c->n_kv,
                    (long long)c->heads, (long long)c->kv_heads, (long long)c->batch,
                    ox_dtype_str(kv_dt), causal, use_mask, layout, k_layout, v_layout, portable);
    }
}

/* q, k and v each in a different layout of the three */
static void check_attention(const att_case *c, ox_dtype kv_dt, int causal, int use_mask,
                            int layout)
{
    check_attention_kv(c, kv_dt, causal, use_mask, layout, (layout + 1) % 3, (layout + 2) % 3);
}

OX_TEST(attention_shapes)
{
    static const att_case cases[] = {
        {1, 1, 1, 1, 1, 1, 1},      {8, 8, 3, 5, 2, 2, 1},      {64, 64, 7, 13, 4, 2, 2},
        {64, 48, 1, 150, 8, 2, 1},  /* decode, more keys than one block, Dv != D */
        {37, 29, 70, 70, 3, 1, 1},  /* prefill, odd sizes, one kv head for all */
        {64, 32, 8, 100, 4, 2, 1},  /* over the threading threshold */
        {16, 16, 3, 20, 12, 2, 2},  /* 6 query heads per kv head: blocks of 4 and 2 */
        {32, 24, 2, 70, 9, 1, 1},   /* one kv head for 9 query heads */
    };
    static const ox_dtype kv_types[] = {OX_DTYPE_F32, OX_DTYPE_F16, OX_DTYPE_BF16};
    tt_seed(51);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int kv = 0; kv < 3; kv++)
            for (int causal = 0; causal < 2; causal++)
                for (int mask = 0; mask < 2; mask++)
                    check_attention(&cases[c], kv_types[kv], causal, mask,
                                    (int)(c + (size_t)causal + (size_t)mask) % 3);
}

/* Prompts with K and V rows as a cache holds them (unit-stride F32 or F16
 * rows): the register-tiled path, its key blocks converted and transposed
 * once a unit. Head sizes not a multiple of 8 or 16 (the tiles' scalar
 * ends), entries (rows x heads) not a multiple of 4 and below the tiles'
 * threshold, key blocks cut short by n_kv and by the causal limit, and a
 * wide Gemma-like head (256: its dot products are summed in runs). */
OX_TEST(attention_prompt_tiles)
{
    static const att_case cases[] = {
        {64, 64, 40, 40, 8, 2, 1},   /* 4 heads x 8 rows: whole tiles */
        {37, 29, 70, 70, 3, 1, 1},   /* 24 entries, odd head sizes */
        {24, 40, 9, 130, 3, 1, 2},   /* 9 rows: a unit of 3 x 1 below the threshold */
        {16, 16, 5, 21, 6, 2, 1},    /* 3 heads x 5 rows: 15 entries */
        {256, 256, 20, 20, 4, 1, 1}, /* Gemma 3 270M's head */
    };
    static const ox_dtype kv_types[] = {OX_DTYPE_F32, OX_DTYPE_F16};
    tt_seed(53);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int kv = 0; kv < 2; kv++)
            for (int causal = 0; causal < 2; causal++)
                for (int mask = 0; mask < 2; mask++)
                    check_attention_kv(&cases[c], kv_types[kv], causal, mask,
                                       (int)(c + (size_t)mask) % 3, TT_CONTIGUOUS, TT_CONTIGUOUS);
}

/* Head sizes over one tile (1024): the query and value are done in chunks. */
OX_TEST(attention_wide_heads)
{
    static const att_case c = {1100, 1030, 2, 5, 2, 1, 1};
    tt_seed(52);
    check_attention(&c, OX_DTYPE_F32, 1, 1, TT_CONTIGUOUS);
    check_attention(&c, OX_DTYPE_F16, 0, 0, TT_TRANSPOSED);
}

OX_TEST(attention_exact_values)
{
    /* one query, keys with scores {0, ln 3}: weights {1/4, 3/4}, so the
     * output is 1/4 v0 + 3/4 v1 = {4, -1} for v0 = {1, 2}, v1 = {5, -2} */
    int64_t qne[4] = {1, 1, 1, 1}, kne[4] = {1, 2, 1, 1}, vne[4] = {2, 2, 1, 1};
    int64_t dne[4] = {2, 1, 1, 1}, mne[4] = {2, 1, 1, 1};
    test_tensor q = tt_new(OX_DTYPE_F32, qne, 0), k = tt_new(OX_DTYPE_F32, kne, 0);
    test_tensor v = tt_new(OX_DTYPE_F32, vne, 0), d = tt_new(OX_DTYPE_F32, dne, 0);
    test_tensor m = tt_new(OX_DTYPE_F32, mne, 0);
    tt_set(&q, 0, 1);
    tt_set(&k, 0, 0);
    tt_set(&k, 1, log(3.0));
    static const double vv[4] = {1, 2, 5, -2};
    for (int i = 0; i < 4; i++) tt_set(&v, i, vv[i]);
    ox_attention_params p = {.scale = 1.0f, .causal = 0};
    ASSERT_EQ(ox__cpu_attention(tt_exec(), &d.v, &q.v, &k.v, &v.v, NULL, &p, NULL), OX_OK);
    ASSERT_NEAR(tt_get(&d, 0), 4, 1e-6);
    ASSERT_NEAR(tt_get(&d, 1), -1, 1e-6);
    /* masking key 1 leaves v0; masking both gives zeros */
    tt_set(&m, 0, 0);
    tt_set(&m, 1, -INFINITY);
    ASSERT_EQ(ox__cpu_attention(tt_exec(), &d.v, &q.v, &k.v, &v.v, &m.v, &p, NULL), OX_OK);
    ASSERT(tt_get(&d, 0) == 1 && tt_get(&d, 1) == 2);
    tt_set(&m, 0, -INFINITY);
    ASSERT_EQ(ox__cpu_attention(tt_exec(), &d.v, &q.v, &k.v, &v.v, &m.v, &p, NULL), OX_OK);
    ASSERT(tt_get(&d, 0) == 0 && tt_get(&d, 1) == 0);
    /* causal with n_q == n_kv == 2: query 0 sees key 0 only */
    int64_t q2[4] = {1, 2, 1, 1}, d2[4] = {2, 2, 1, 1};
    test_tensor qq = tt_new(OX_DTYPE_F32, q2, 0), dd = tt_new(OX_DTYPE_F32, d2, 0);
    tt_set(&qq, 0, 1);
    tt_set(&qq, 1, 1);
    p.causal = 1;
    ASSERT_EQ(ox__cpu_attention(tt_exec(), &dd.v, &qq.v, &k.v, &v.v, NULL, &p, NULL), OX_OK);
    ASSERT(tt_get(&dd, 0) == 1 && tt_get(&dd, 1) == 2);
    ASSERT_NEAR(tt_get(&dd, 2), 4, 1e-6);
    ASSERT_NEAR(tt_get(&dd, 3), -1, 1e-6);
}

/* The defaults of the device kernels' parameters (src/ops/tune.c) are valid
 * as they are on devices of each class, so the kernels the defaults promise
 * are the ones that run: GPUs with 48 KiB and 64 KiB of local memory and
 * 1024- or 256-item groups, OpenCL CPU runtimes. */
OX_TEST(attention_defaults_fit_each_device_class)
{
    static const struct {
        ox_device_type type;
        uint64_t local;
        uint32_t max_wg;
        int want[5]; /* WG SPLIT LANES BQ BK */
    } devices[] = {
        {OX_DEVICE_GPU, 49152, 1024, {128, 0, 16, 32, 16}},
        {OX_DEVICE_GPU, 65536, 256, {128, 0, 16, 32, 16}},
        {OX_DEVICE_ACCELERATOR, 49152, 1024, {128, 0, 16, 32, 16}},
        {OX_DEVICE_CPU, 1048576, 4096, {8, 0, 1, 64, 16}},
        {OX_DEVICE_CPU, 65536, 8192, {8, 0, 1, 64, 16}},
    };
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        ox_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        info.type = devices[i].type;
        info.local_memory_bytes = devices[i].local;
        info.max_work_group_size = devices[i].max_wg;
        info.compute_units = 8;
        ox__tune_params p;
        ox__tune_defaults(&info, OX__TUNE_ATTENTION, "f16", &p);
        ASSERT(ox__tune_valid(&info, OX__TUNE_ATTENTION, &p));
        for (int k = 0; k < 5; k++) ASSERT_EQ(p.v[k], devices[i].want[k]);
    }
    /* a small device gets smaller blocks, still valid */
    ox_device_info small;
    memset(&small, 0, sizeof small);
    small.struct_size = sizeof small;
    small.type = OX_DEVICE_GPU;
    small.local_memory_bytes = 16384;
    small.max_work_group_size = 64;
    ox__tune_params p;
    ox__tune_defaults(&small, OX__TUNE_ATTENTION, "f16", &p);
    ASSERT(ox__tune_valid(&small, OX__TUNE_ATTENTION, &p));
}

/* The softmax's exponentials eight at a time (AVX2) have the scalar
 * ox__exp_f32's bits for every input class: the range both sides of the
 * cut-offs (-150, 89), zeros, infinities, NaN, subnormal results, lengths
 * that leave a scalar tail; and the sum returned is theirs within a
 * double's rounding. */
OX_TEST(attention_exp_avx2_is_the_scalar_exp)
{
#if defined(__x86_64__) || defined(_M_X64)
    const uint64_t need = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA);
    if ((tt_exec()->features & need) != need) OX_SKIP("this CPU has no AVX2 + FMA");
    enum { N = 4099 };
    static float x[N], s[N];
    for (int i = 0; i < N - 8; i++) x[i] = -160.0f + 260.0f * (float)i / (float)(N - 8);
    const float special[8] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -103.5f, 88.72f, -87.3f};
    memcpy(x + N - 8, special, sizeof special);
    const int lengths[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 1000, N - 8, N - 5, N};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        const int n = lengths[li];
        memcpy(s, x, (size_t)n * sizeof *s);
        const float max = 1.5f;
        double sum = ox__att_exp_avx2(s, n, max), want_sum = 0.0;
        for (int i = 0; i < n; i++) {
            float want = ox__exp_f32(x[i] - max);
            uint32_t a, b;
            memcpy(&a, &s[i], 4);
            memcpy(&b, &want, 4);
            ASSERT_MSG(a == b || (isnan(s[i]) && isnan(want)), "n %d x %.9g: %.9g != %.9g", n,
                       (double)x[i], (double)s[i], (double)want);
            if (!isnan(want)) want_sum += want;
        }
        bool has_nan = n > N - 4;
        if (!has_nan && isfinite(want_sum))
            ASSERT_MSG(fabs(sum - want_sum) <= 1e-12 * fabs(want_sum), "n %d sum %.17g vs %.17g", n,
                       sum, want_sum);
    }
#else
    OX_SKIP("not an x86-64 build: no AVX2 kernels");
#endif
}

OX_TEST_MAIN(attention_shapes, attention_prompt_tiles, attention_wide_heads, attention_exact_values,
             attention_defaults_fit_each_device_class, attention_exp_avx2_is_the_scalar_exp)
