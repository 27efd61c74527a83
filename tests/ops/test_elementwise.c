/* Elementwise CPU operators (src/ops/elementwise.c) against the double
 * reference: binary ops with b repeating over a, scale, clamp and every
 * unary function, for F32, F16 and BF16, odd shapes, strided inputs, rows
 * longer than a tile, and tensors large enough to be split over threads. */
#include "ops_test.h"

/* Shapes: tiny, odd, not multiples of 8/16/32, over a tile (1024) per row,
 * and over the threading threshold (32768 elements) both as many rows and
 * as one long row. */
static const int64_t shapes[][4] = {
    {1, 1, 1, 1}, {37, 3, 2, 1}, {5, 7, 3, 2}, {67, 1, 1, 3}, {1031, 3, 1, 1}, {129, 300, 1, 1},
    {70001, 1, 1, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* b shapes derived from a's: same, a row, a column, a scalar, and a part
 * of each dimension that divides it. */
static void b_shape(const int64_t ne[4], int kind, int64_t out[4])
{
    for (int d = 0; d < 4; d++) {
        switch (kind) {
        case 0: out[d] = ne[d]; break;
        case 1: out[d] = d == 0 ? ne[0] : 1; break;
        case 2: out[d] = d == 0 ? 1 : ne[d]; break;
        case 3: out[d] = 1; break;
        default: out[d] = ne[d] % 3 == 0 ? ne[d] / 3 : ne[d] % 7 == 0 ? ne[d] / 7 : 1; break;
        }
    }
}

static void check_binary(ox_binary_op op, ox_dtype dt, const int64_t ne[4], int b_kind,
                         int layout)
{
    int64_t bne[4];
    b_shape(ne, b_kind, bne);
    test_tensor a = tt_random(dt, ne, layout, -2, 2);
    test_tensor b = tt_random(dt, bne, layout == TT_PADDED ? TT_PADDED : TT_CONTIGUOUS, 0.5, 2);
    test_tensor d = tt_new(dt, ne, TT_CONTIGUOUS);
    ASSERT_EQ(ox__cpu_binary(tt_exec(), op, &d.v, &a.v, &b.v), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rb = tt_ref(&b), rd = tt_ref_new(ne, 0);
    ox_ref_binary(op, &rd, &ra, &rb);
    ASSERT_NMSE(&d, &rd, tt_tol(dt), "binary op %d, a [%lld,%lld,%lld,%lld] b kind %d layout %d\n",
                (int)op, (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3],
                b_kind, layout);
}

OX_TEST(binary_all_shapes_and_types)
{
    tt_seed(11);
    for (int op = OX_BINARY_ADD; op <= OX_BINARY_DIV; op++)
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < N_SHAPES; s++)
                for (int b_kind = 0; b_kind < 5; b_kind++)
                    check_binary((ox_binary_op)op, tt_float_types[t], shapes[s], b_kind,
                                 (int)(s + (size_t)b_kind) % 3);
}

/* Contiguous F16 rows take the fused F16C loop (ox__binary_f16_avx2); it
 * must give the bits of the tile path, which the CPU's features hidden
 * select: every op, a tail of 3, b one row repeated over a's and b whole,
 * and in place. */
OX_TEST(binary_f16_rows_same_bits_as_tiles)
{
    const uint64_t need = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_F16C);
    if ((tt_exec()->features & need) != need) OX_SKIP("this CPU has no AVX2 + F16C");
    ox__cpu_exec tiles = *tt_exec();
    tiles.features = 0;
    tt_seed(12);
    const int64_t ne[4] = {1003, 5, 2, 1}, one_row[4] = {1003, 1, 1, 1};
    for (int op = OX_BINARY_ADD; op <= OX_BINARY_DIV; op++)
        for (int whole = 0; whole < 2; whole++) {
            test_tensor a = tt_random(OX_DTYPE_F16, ne, TT_CONTIGUOUS, -3, 3);
            test_tensor b = tt_random(OX_DTYPE_F16, whole ? ne : one_row, TT_CONTIGUOUS, 0.25, 4);
            test_tensor fused = tt_new(OX_DTYPE_F16, ne, TT_CONTIGUOUS);
            test_tensor tiled = tt_new(OX_DTYPE_F16, ne, TT_CONTIGUOUS);
            ASSERT_EQ(ox__cpu_binary(tt_exec(), (ox_binary_op)op, &fused.v, &a.v, &b.v), OX_OK);
            ASSERT_EQ(ox__cpu_binary(&tiles, (ox_binary_op)op, &tiled.v, &a.v, &b.v), OX_OK);
            ASSERT(memcmp(fused.v.data, tiled.v.data, fused.bytes) == 0);
            /* in place: a = a op b */
            ASSERT_EQ(ox__cpu_binary(tt_exec(), (ox_binary_op)op, &a.v, &a.v, &b.v), OX_OK);
            ASSERT(memcmp(a.v.data, tiled.v.data, (size_t)tt_count(ne) * 2) == 0);
        }
}

/* b's row repeats within a row of a and within a tile: b ne[0] = 700
 * over a ne[0] = 2100, and b ne[0] = 3 over a tiny row. */
OX_TEST(binary_partial_row_repeat)
{
    tt_seed(12);
    static const int64_t a_shapes[][4] = {{2100, 2, 1, 1}, {6, 4, 2, 1}};
    static const int64_t b_shapes[][4] = {{700, 1, 1, 1}, {3, 2, 1, 1}};
    for (int t = 0; t < 3; t++)
        for (int s = 0; s < 2; s++)
            for (int layout = 0; layout < 3; layout++) {
                ox_dtype dt = tt_float_types[t];
                test_tensor a = tt_random(dt, a_shapes[s], TT_CONTIGUOUS, -2, 2);
                test_tensor b = tt_random(dt, b_shapes[s], layout, -2, 2);
                test_tensor d = tt_new(dt, a_shapes[s], TT_CONTIGUOUS);
                ASSERT_EQ(ox__cpu_binary(tt_exec(), OX_BINARY_MUL, &d.v, &a.v, &b.v), OX_OK);
                ox_ref_tensor ra = tt_ref(&a), rb = tt_ref(&b), rd = tt_ref_new(a_shapes[s], 0);
                ox_ref_binary(OX_BINARY_MUL, &rd, &ra, &rb);
                ASSERT_NMSE(&d, &rd, tt_tol(dt), "partial repeat %d layout %d\n", s, layout);
            }
}

OX_TEST(binary_exact_and_in_place)
{
    int64_t ne[4] = {4, 2, 1, 1}, bne[4] = {4, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), b = tt_new(OX_DTYPE_F32, bne, 0);
    for (int i = 0; i < 8; i++) tt_set(&a, i, i);
    for (int i = 0; i < 4; i++) tt_set(&b, i, 10 * (i + 1));
    ASSERT_EQ(ox__cpu_binary(tt_exec(), OX_BINARY_ADD, &a.v, &a.v, &b.v), OX_OK); /* in place */
    static const double want[8] = {10, 21, 32, 43, 14, 25, 36, 47};
    for (int i = 0; i < 8; i++) ASSERT(tt_get(&a, i) == want[i]);
    ASSERT_EQ(ox__cpu_binary(tt_exec(), OX_BINARY_DIV, &a.v, &a.v, &b.v), OX_OK);
    ASSERT(tt_get(&a, 0) == 1.0 && tt_get(&a, 7) == (double)(47.0f / 40.0f));
    /* an F16 in-place op over the threading threshold */
    int64_t big[4] = {40000, 1, 1, 1}, one[4] = {1, 1, 1, 1};
    test_tensor h = tt_new(OX_DTYPE_F16, big, TT_CONTIGUOUS), s = tt_new(OX_DTYPE_F16, one, 0);
    for (int64_t i = 0; i < 40000; i++) tt_set(&h, i, (double)(i % 100));
    tt_set(&s, 0, 0.5);
    ASSERT_EQ(ox__cpu_binary(tt_exec(), OX_BINARY_MUL, &h.v, &h.v, &s.v), OX_OK);
    for (int64_t i = 0; i < 40000; i++) ASSERT(tt_get(&h, i) == (double)(i % 100) / 2);
}

OX_TEST(scale_and_clamp)
{
    tt_seed(13);
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < N_SHAPES; s++) {
            ox_dtype dt = tt_float_types[t];
            test_tensor a = tt_random(dt, shapes[s], (int)s % 3, -3, 3);
            test_tensor d = tt_new(dt, shapes[s], (int)(s + 1) % 3);
            ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(shapes[s], 0);
            ASSERT_EQ(ox__cpu_scale(tt_exec(), &d.v, &a.v, 0.75f, -0.5f), OX_OK);
            ox_ref_scale(&rd, &ra, 0.75, -0.5);
            ASSERT_NMSE(&d, &rd, tt_tol(dt), "scale shape %zu\n", s);
            ASSERT_EQ(ox__cpu_clamp(tt_exec(), &d.v, &a.v, -1.25f, 2.0f), OX_OK);
            ox_ref_clamp(&rd, &ra, -1.25, 2.0);
            ASSERT_NMSE(&d, &rd, tt_tol(dt), "clamp shape %zu\n", s);
        }
    int64_t ne[4] = {3, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS);
    tt_set(&a, 0, -5);
    tt_set(&a, 1, 0.5);
    tt_set(&a, 2, 5);
    ASSERT_EQ(ox__cpu_clamp(tt_exec(), &a.v, &a.v, -1, 1), OX_OK);
    ASSERT(tt_get(&a, 0) == -1 && tt_get(&a, 1) == 0.5 && tt_get(&a, 2) == 1);
    ASSERT_EQ(ox__cpu_scale(tt_exec(), &a.v, &a.v, 2, 1), OX_OK);
    ASSERT(tt_get(&a, 0) == -1 && tt_get(&a, 1) == 2 && tt_get(&a, 2) == 3);
}

static void check_unary(ox_unary_op op, ox_dtype dt, const int64_t ne[4], int layout)
{
    /* log, sqrt and rsqrt want positive inputs */
    int positive = op == OX_UNARY_LOG || op == OX_UNARY_SQRT || op == OX_UNARY_RSQRT;
    test_tensor a = tt_random(dt, ne, layout, positive ? 0.05 : -4, 4);
    test_tensor d = tt_new(dt, ne, layout == TT_TRANSPOSED ? TT_PADDED : TT_CONTIGUOUS);
    ASSERT_EQ(ox__cpu_unary(tt_exec(), op, &d.v, &a.v), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(ne, 0);
    ox_ref_unary(op, &rd, &ra);
    /* gelu_tanh_f16's results are halves: one may round the other way
     * where the float tanh and the reference's double differ by an ulp */
    double tol = op == OX_UNARY_GELU_TANH_F16 && dt == OX_DTYPE_F32 ? tt_tol(OX_DTYPE_F16) : tt_tol(dt);
    ASSERT_NMSE(&d, &rd, tol, "unary %s shape [%lld,%lld,%lld,%lld] layout %d\n",
                ox_unary_str(op), (long long)ne[0], (long long)ne[1], (long long)ne[2],
                (long long)ne[3], layout);
}

OX_TEST(unary_all_ops)
{
    tt_seed(14);
    for (int op = 0; op < OX_UNARY_COUNT; op++)
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < N_SHAPES; s++)
                check_unary((ox_unary_op)op, tt_float_types[t], shapes[s],
                            (int)(s + (size_t)op) % 3);
}

/* The FFN's gate, act(gate) * up in one pass (ox__cpu_glu): against the
 * double reference for every activation, type and layout; and for F32
 * with SiLU (AVX2 lanes where the CPU has them, odd lengths for the
 * scalar ends), the same bits as the unary op then the product, also in
 * place (dst = gate), on the CPU's own loops and the portable ones. */
OX_TEST(glu_all_ops)
{
    tt_seed(15);
    for (int op = 0; op < OX_UNARY_COUNT; op++) {
        if (op == OX_UNARY_LOG || op == OX_UNARY_SQRT || op == OX_UNARY_RSQRT) continue;
        for (int t = 0; t < 3; t++)
            for (size_t s = 1; s < N_SHAPES; s += 2) {
                ox_dtype dt = tt_float_types[t];
                int layout = (int)(s + (size_t)op) % 3;
                test_tensor g = tt_random(dt, shapes[s], layout, -4, 4);
                test_tensor u = tt_random(dt, shapes[s], (layout + 1) % 3, -2, 2);
                test_tensor d = tt_new(dt, shapes[s], TT_CONTIGUOUS);
                ASSERT_EQ(ox__cpu_glu(tt_exec(), (ox_unary_op)op, &d.v, &g.v, &u.v), OX_OK);
                ox_ref_tensor rg = tt_ref(&g), ru = tt_ref(&u), rd = tt_ref_new(shapes[s], 0);
                ox_ref_unary((ox_unary_op)op, &rd, &rg);
                ox_ref_binary(OX_BINARY_MUL, &rd, &rd, &ru);
                double tol = op == OX_UNARY_GELU_TANH_F16 && dt == OX_DTYPE_F32
                                 ? tt_tol(OX_DTYPE_F16)
                                 : tt_tol(dt);
                ASSERT_NMSE(&d, &rd, tol, "glu %s %s shape %zu layout %d\n",
                            ox_unary_str((ox_unary_op)op), ox_dtype_str(dt), s, layout);
            }
    }
    const int64_t ne[4] = {1003, 5, 2, 1};
    for (int portable = 0; portable < 2; portable++) {
        ox__cpu_exec x = *tt_exec();
        if (portable) x.features = 0;
        test_tensor g = tt_random(OX_DTYPE_F32, ne, TT_CONTIGUOUS, -90, 90);
        test_tensor u = tt_random(OX_DTYPE_F32, ne, TT_CONTIGUOUS, -2, 2);
        test_tensor one = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS);
        test_tensor two = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS);
        ASSERT_EQ(ox__cpu_glu(&x, OX_UNARY_SILU, &one.v, &g.v, &u.v), OX_OK);
        ASSERT_EQ(ox__cpu_unary(&x, OX_UNARY_SILU, &two.v, &g.v), OX_OK);
        ASSERT_EQ(ox__cpu_binary(&x, OX_BINARY_MUL, &two.v, &two.v, &u.v), OX_OK);
        ASSERT(memcmp(one.v.data, two.v.data, one.bytes) == 0);
        ASSERT_EQ(ox__cpu_glu(&x, OX_UNARY_SILU, &g.v, &g.v, &u.v), OX_OK); /* in place */
        ASSERT(memcmp(g.v.data, two.v.data, one.bytes) == 0);
    }
}

OX_TEST(unary_exact_values)
{
    static const struct {
        ox_unary_op op;
        float x, y;
    } cases[] = {
        {OX_UNARY_NEG, 2, -2},           {OX_UNARY_ABS, -3, 3},        {OX_UNARY_EXP, 0, 1},
        {OX_UNARY_LOG, 1, 0},            {OX_UNARY_SQRT, 16, 4},       {OX_UNARY_RSQRT, 4, 0.5f},
        {OX_UNARY_TANH, 0, 0},           {OX_UNARY_RELU, -1, 0},       {OX_UNARY_RELU, 1.5f, 1.5f},
        {OX_UNARY_GELU, 0, 0},           {OX_UNARY_GELU, 1, 0.8413447f}, /* Phi(1) */
        {OX_UNARY_GELU_TANH, 0, 0},      {OX_UNARY_GELU_TANH, 1, 0.8411920f},
        {OX_UNARY_SILU, 0, 0},           {OX_UNARY_SILU, 1, 0.7310586f},
        {OX_UNARY_SIGMOID, 0, 0.5f},     {OX_UNARY_SIGMOID, -100, 0},
        {OX_UNARY_SOFTPLUS, 0, 0.6931472f}, /* ln 2 */
        {OX_UNARY_SOFTPLUS, 100, 100},   {OX_UNARY_SOFTPLUS, -20, 2.0611536e-9f},
        /* gelu_tanh(1) = 0.8411920 rounded to a half: 1723 / 2048 */
        {OX_UNARY_GELU_TANH_F16, 1, 0.84130859375f}, {OX_UNARY_GELU_TANH_F16, 0, 0},
        /* x = 1 + 2^-12 rounds to the half 1 first */
        {OX_UNARY_GELU_TANH_F16, 1.000244140625f, 0.84130859375f},
        {OX_UNARY_GELU_TANH_F16, 10, 10},  {OX_UNARY_GELU_TANH_F16, 10.001f, 10.001f},
        {OX_UNARY_GELU_TANH_F16, -10, 0},  {OX_UNARY_GELU_TANH_F16, -9.99f, -0.0f},
        {OX_UNARY_GELU_TANH_F16, 9.99f, 9.9921875f}, /* the half nearest 9.99 */
    };
    int64_t ne[4] = {1, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), d = tt_new(OX_DTYPE_F32, ne, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tt_set(&a, 0, cases[i].x);
        ASSERT_EQ(ox__cpu_unary(tt_exec(), cases[i].op, &d.v, &a.v), OX_OK);
        ASSERT_MSG(fabs(tt_get(&d, 0) - cases[i].y) <= 1e-6 * fabs(cases[i].y),
                   "%s(%g) = %.9g, want %.9g", ox_unary_str(cases[i].op), (double)cases[i].x,
                   tt_get(&d, 0), (double)cases[i].y);
    }
}

/* gelu_tanh_f16 on every half in (-10, 10): the CPU's table gives the
 * half nearest the double-precision GELU g of that half wherever g is
 * farther than the single-precision formula's error (below 2^-21 |x|:
 * 1 + tanh cancels for negative x) from a midpoint between two halves;
 * near a midpoint it may round either way. Floats between two halves give
 * the nearer half's result. */
OX_TEST(gelu_tanh_f16_every_half)
{
    int64_t ne[4] = {65536, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), d = tt_new(OX_DTYPE_F32, ne, 0);
    for (int64_t i = 0; i < ne[0]; i++) tt_set(&a, i, ox_f16_to_f32((uint16_t)i));
    ASSERT_EQ(ox__cpu_unary(tt_exec(), OX_UNARY_GELU_TANH_F16, &d.v, &a.v), OX_OK);
    int exact = 0, near_midpoint = 0;
    for (int64_t i = 0; i < ne[0]; i++) {
        double x = tt_get(&a, i), got = tt_get(&d, i);
        if (x != x || fabs(x) >= 10) continue;
        double g = x / 2 * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
        double want = ox_ref_round_half(g), err = 0x1p-21 * fabs(x), step = ox_ref_half_step(g);
        double to_midpoint = fabs(g / step - floor(g / step) - 0.5) * step;
        if (g != 0 && to_midpoint <= err) {
            near_midpoint++;
            ASSERT_MSG(fabs(got - g) <= step / 2 + err, "gelu_tanh_f16(%.9g) = %.9g, want %.9g",
                       x, got, g);
            continue;
        }
        ASSERT_MSG(got == want, "gelu_tanh_f16(%.9g) = %.9g, want %.9g", x, got, want);
        exact++;
    }
    printf("  %d halves exact, %d near a midpoint\n", exact, near_midpoint);
    ASSERT_MSG(exact > 30000 && near_midpoint < exact / 10, "%d exact, %d near a midpoint", exact,
               near_midpoint);
    tt_set(&a, 0, 0.30004f); /* the halves nearest: 0.2998046875 and 0.30004882812 */
    tt_set(&a, 1, 0.30004882812f);
    tt_set(&a, 2, 0.2998046875f);
    ASSERT_EQ(ox__cpu_unary(tt_exec(), OX_UNARY_GELU_TANH_F16, &d.v, &a.v), OX_OK);
    ASSERT(tt_get(&d, 0) == tt_get(&d, 1) && tt_get(&d, 0) != tt_get(&d, 2));
}

/* exp is computed without libm (so that it vectorizes): within 2 ulp over
 * the whole range, exact limits, subnormal results. */
OX_TEST(exp_accuracy_and_limits)
{
    int64_t ne[4] = {200000, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), d = tt_new(OX_DTYPE_F32, ne, 0);
    for (int64_t i = 0; i < ne[0]; i++) tt_set(&a, i, -87.0 + 175.7 * (double)i / (double)ne[0]);
    ASSERT_EQ(ox__cpu_unary(tt_exec(), OX_UNARY_EXP, &d.v, &a.v), OX_OK);
    for (int64_t i = 0; i < ne[0]; i++) {
        double want = exp(tt_get(&a, i)), got = tt_get(&d, i);
        ASSERT_MSG(fabs(got - want) <= 2 * 0x1p-24 * want, "exp(%.9g) = %.9g, want %.9g",
                   tt_get(&a, i), got, want);
    }
    static const float x[] = {-INFINITY, -1000, -150, -104, -103.9f, -90, 0, 88.7f, 88.8f, 1000,
                              INFINITY};
    int64_t ne1[4] = {11, 1, 1, 1};
    test_tensor b = tt_new(OX_DTYPE_F32, ne1, TT_CONTIGUOUS), e = tt_new(OX_DTYPE_F32, ne1, 0);
    for (int i = 0; i < 11; i++) tt_set(&b, i, x[i]);
    ASSERT_EQ(ox__cpu_unary(tt_exec(), OX_UNARY_EXP, &e.v, &b.v), OX_OK);
    for (int i = 0; i < 11; i++) {
        double want = (double)expf(x[i]), got = tt_get(&e, i);
        ASSERT_MSG(got == want || fabs(got - want) <= 2 * 0x1p-24 * want + 0x1p-149,
                   "exp(%g) = %g, want %g", (double)x[i], got, want);
    }
    tt_set(&b, 0, NAN);
    ASSERT_EQ(ox__cpu_unary(tt_exec(), OX_UNARY_EXP, &e.v, &b.v), OX_OK);
    ASSERT(isnan(tt_get(&e, 0)));
}

OX_TEST_MAIN(binary_all_shapes_and_types, binary_f16_rows_same_bits_as_tiles,
             binary_partial_row_repeat, binary_exact_and_in_place,
             scale_and_clamp, unary_all_ops, glu_all_ops, unary_exact_values,
             gelu_tanh_f16_every_half, exp_accuracy_and_limits)
