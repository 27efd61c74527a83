/* RMS norm, layer norm (src/ops/reduce.c) and rotary position embedding
 * (src/ops/rope.c) on the CPU against the double reference, for F32, F16
 * and BF16, with weights and biases that repeat, strided inputs, long rows,
 * both rope layouts, partial rotation and large positions; plus cases
 * worked out by hand. */
#include "ops_test.h"

static const int64_t shapes[][4] = {
    {1, 1, 1, 1},     {37, 3, 2, 1},     {5, 7, 3, 2}, {67, 1, 1, 3}, {1031, 3, 1, 1},
    {129, 300, 1, 1}, {100000, 1, 1, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* weight/bias shapes: a single row, or one row per i1 */
static void param_shape(const int64_t ne[4], int per_row, int64_t out[4])
{
    out[0] = ne[0];
    out[1] = per_row ? ne[1] : 1;
    out[2] = out[3] = 1;
}

static void check_norm(int layer, ox_dtype dt, const int64_t ne[4], int layout, int params)
{
    int64_t pne[4];
    param_shape(ne, params == 2, pne);
    test_tensor a = tt_random(dt, ne, layout, -3, 5), d = tt_new(dt, ne, (layout + 1) % 3);
    test_tensor w = tt_random(dt, pne, layout, 0.5, 1.5), b = tt_random(dt, pne, 0, -1, 1);
    const ox__view *wv = params ? &w.v : NULL, *bv = params ? &b.v : NULL;
    ox_ref_tensor ra = tt_ref(&a), rw = tt_ref(&w), rb = tt_ref(&b), rd = tt_ref_new(ne, 0);
    const ox_ref_tensor *rwp = params ? &rw : NULL, *rbp = params ? &rb : NULL;
    if (layer) {
        ASSERT_EQ(ox__cpu_layer_norm(tt_exec(), &d.v, &a.v, wv, bv, 1e-5f), OX_OK);
        ox_ref_layer_norm(&rd, &ra, rwp, rbp, (double)1e-5f);
    } else {
        ASSERT_EQ(ox__cpu_rms_norm(tt_exec(), &d.v, &a.v, wv, 1e-5f), OX_OK);
        ox_ref_rms_norm(&rd, &ra, rwp, (double)1e-5f);
    }
    ASSERT_NMSE(&d, &rd, tt_tol(dt), "%s shape [%lld,%lld,%lld,%lld] layout %d params %d\n",
                layer ? "layer_norm" : "rms_norm", (long long)ne[0], (long long)ne[1],
                (long long)ne[2], (long long)ne[3], layout, params);
}

OX_TEST(norms_all_shapes_and_types)
{
    tt_seed(31);
    for (int layer = 0; layer < 2; layer++)
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < N_SHAPES; s++)
                for (int params = 0; params < 3; params++)
                    check_norm(layer, tt_float_types[t], shapes[s], (int)(s + (size_t)params) % 3,
                               params);
}

OX_TEST(norms_exact_values)
{
    /* rms of {3, 4} is sqrt(12.5); layer norm of {1, 3} is {-1, 1} */
    int64_t ne[4] = {2, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), w = tt_new(OX_DTYPE_F32, ne, 0);
    test_tensor b = tt_new(OX_DTYPE_F32, ne, 0);
    tt_set(&a, 0, 3);
    tt_set(&a, 1, 4);
    ASSERT_EQ(ox__cpu_rms_norm(tt_exec(), &a.v, &a.v, NULL, 0.0f), OX_OK);
    ASSERT_NEAR(tt_get(&a, 0), 3 / sqrt(12.5), 1e-7);
    ASSERT_NEAR(tt_get(&a, 1), 4 / sqrt(12.5), 1e-7);
    tt_set(&a, 0, 1);
    tt_set(&a, 1, 3);
    tt_set(&w, 0, 2);
    tt_set(&w, 1, 3);
    tt_set(&b, 0, 10);
    tt_set(&b, 1, 20);
    ASSERT_EQ(ox__cpu_layer_norm(tt_exec(), &a.v, &a.v, &w.v, &b.v, 0.0f), OX_OK);
    ASSERT_NEAR(tt_get(&a, 0), 8, 1e-6);
    ASSERT_NEAR(tt_get(&a, 1), 23, 1e-6);
    /* a constant row: variance 0, so eps alone sets the scale */
    tt_set(&a, 0, 5);
    tt_set(&a, 1, 5);
    ASSERT_EQ(ox__cpu_layer_norm(tt_exec(), &a.v, &a.v, NULL, NULL, 1e-5f), OX_OK);
    ASSERT(tt_get(&a, 0) == 0 && tt_get(&a, 1) == 0);
}

/* ---- rope ------------------------------------------------------------------ */

static void check_rope(ox_dtype dt, const int64_t ne[4], int n_dims, ox_rope_mode mode,
                       int layout, float base, float freq_scale, int max_pos)
{
    int64_t pne[4] = {ne[2], 1, 1, 1};
    test_tensor a = tt_random(dt, ne, layout, -2, 2), d = tt_new(dt, ne, (layout + 1) % 3);
    int pos_layout = layout == TT_PADDED ? TT_PADDED : TT_CONTIGUOUS;
    test_tensor pos = tt_random(OX_DTYPE_I32, pne, pos_layout, 0, max_pos);
    ox_rope_params p = {.mode = mode, .n_dims = n_dims, .freq_base = base,
                        .freq_scale = freq_scale};
    ASSERT_EQ(ox__cpu_rope(tt_exec(), &d.v, &a.v, &pos.v, &p), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rp = tt_ref(&pos), rd = tt_ref_new(ne, 0);
    ox_ref_rope(&rd, &ra, &rp, &p);
    ASSERT_NMSE(&d, &rd, tt_tol(dt),
                "rope %s shape [%lld,%lld,%lld,%lld] n_dims %d layout %d base %g pos < %d\n",
                mode == OX_ROPE_NEOX ? "neox" : "normal", (long long)ne[0], (long long)ne[1],
                (long long)ne[2], (long long)ne[3], n_dims, layout, (double)base, max_pos);
}

OX_TEST(rope_all_shapes_and_types)
{
    static const struct {
        int64_t ne[4];
        int n_dims;
    } cases[] = {
        {{2, 1, 1, 1}, 2},     {{8, 1, 1, 1}, 8},      {{64, 4, 5, 2}, 64},  {{96, 3, 7, 1}, 64},
        {{38, 5, 3, 2}, 30},   {{128, 32, 9, 1}, 128}, /* over the threading threshold */
        {{2100, 2, 3, 1}, 2050}, /* more pairs than one chunk, and a pass-through tail */
    };
    tt_seed(32);
    for (int t = 0; t < 3; t++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int mode = 0; mode < 2; mode++) {
                int layout = (int)(c + (size_t)mode) % 3;
                check_rope(tt_float_types[t], cases[c].ne, cases[c].n_dims, (ox_rope_mode)mode,
                           layout, 10000.0f, 1.0f, 64);
                check_rope(tt_float_types[t], cases[c].ne, cases[c].n_dims, (ox_rope_mode)mode,
                           (layout + 1) % 3, 1e6f, 0.25f, 40000); /* angles of thousands */
            }
}

OX_TEST(rope_in_place)
{
    int64_t ne[4] = {80, 3, 4, 2}, pne[4] = {4, 1, 1, 1};
    tt_seed(33);
    for (int t = 0; t < 3; t++)
        for (int mode = 0; mode < 2; mode++) {
            ox_dtype dt = tt_float_types[t];
            test_tensor a = tt_random(dt, ne, TT_CONTIGUOUS, -2, 2);
            test_tensor pos = tt_random(OX_DTYPE_I32, pne, TT_CONTIGUOUS, 0, 500);
            ox_rope_params p = {.mode = (ox_rope_mode)mode, .n_dims = 48, .freq_base = 10000,
                                .freq_scale = 1};
            ox_ref_tensor ra = tt_ref(&a), rp = tt_ref(&pos), rd = tt_ref_new(ne, 0);
            ASSERT_EQ(ox__cpu_rope(tt_exec(), &a.v, &a.v, &pos.v, &p), OX_OK);
            ox_ref_rope(&rd, &ra, &rp, &p);
            ASSERT_NMSE(&a, &rd, tt_tol(dt), "in-place rope mode %d\n", mode);
        }
}

/* x = {1, 2, 3, 4, 5} at position 1, base 10000, n_dims 4: pair 0 turns by
 * 1 radian, pair 1 by 10000^(-1/2) = 0.01; element 4 passes through.
 * NORMAL pairs (x0, x1), (x2, x3); NEOX pairs (x0, x2), (x1, x3). */
OX_TEST(rope_exact_values)
{
    static const double normal[5] = {-1.1426396637476532, 1.922075596544176, 2.9598506679133294,
                                     4.029799501669161, 5};
    static const double neox[5] = {-1.9841106485555495, 1.959900667496664, 2.4623779024123156,
                                   4.019799668334994, 5};
    int64_t ne[4] = {5, 1, 1, 1}, pne[4] = {1, 1, 1, 1};
    test_tensor pos = tt_new(OX_DTYPE_I32, pne, TT_CONTIGUOUS);
    tt_set(&pos, 0, 1);
    for (int mode = 0; mode < 2; mode++) {
        test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), d = tt_new(OX_DTYPE_F32, ne, 0);
        for (int i = 0; i < 5; i++) tt_set(&a, i, i + 1);
        ox_rope_params p = {.mode = (ox_rope_mode)mode, .n_dims = 4, .freq_base = 10000,
                            .freq_scale = 1};
        ASSERT_EQ(ox__cpu_rope(tt_exec(), &d.v, &a.v, &pos.v, &p), OX_OK);
        for (int i = 0; i < 5; i++)
            ASSERT_NEAR(tt_get(&d, i), mode == OX_ROPE_NEOX ? neox[i] : normal[i], 1e-6);
    }
    /* position 0 is the identity; freq_scale 0.5 at position 2 is position 1 */
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), d = tt_new(OX_DTYPE_F32, ne, 0);
    for (int i = 0; i < 5; i++) tt_set(&a, i, i + 1);
    ox_rope_params p = {.mode = OX_ROPE_NORMAL, .n_dims = 4, .freq_base = 10000, .freq_scale = 1};
    tt_set(&pos, 0, 0);
    ASSERT_EQ(ox__cpu_rope(tt_exec(), &d.v, &a.v, &pos.v, &p), OX_OK);
    for (int i = 0; i < 5; i++) ASSERT(tt_get(&d, i) == i + 1);
    tt_set(&pos, 0, 2);
    p.freq_scale = 0.5f;
    ASSERT_EQ(ox__cpu_rope(tt_exec(), &d.v, &a.v, &pos.v, &p), OX_OK);
    for (int i = 0; i < 5; i++) ASSERT_NEAR(tt_get(&d, i), normal[i], 1e-6);
}

OX_TEST_MAIN(norms_all_shapes_and_types, norms_exact_values, rope_all_shapes_and_types,
             rope_in_place, rope_exact_values)
