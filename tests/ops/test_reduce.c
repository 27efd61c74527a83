/* Row reductions, softmax and log-softmax on the CPU (src/ops/reduce.c)
 * against the double reference, for F32, F16 and BF16: odd shapes, strided
 * inputs, rows over a tile, one row of 100000, masks that repeat and mask
 * whole rows, and hand-computed cases. */
#include "ops_test.h"

static const int64_t shapes[][4] = {
    {1, 1, 1, 1},   {37, 3, 2, 1},  {5, 7, 3, 2},     {67, 1, 1, 3},
    {1031, 3, 1, 1}, {129, 300, 1, 1}, {100000, 1, 1, 1}, {65536, 2, 1, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void check_reduce(ox_reduce_op op, ox_dtype dt, const int64_t ne[4], int layout)
{
    int64_t dne[4] = {1, ne[1], ne[2], ne[3]};
    test_tensor a = tt_random(dt, ne, layout, -1, 1);
    test_tensor d = tt_new(op == OX_REDUCE_ARGMAX ? OX_DTYPE_I32 : dt, dne, (layout + 1) % 3);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), op, &d.v, &a.v), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(dne, op == OX_REDUCE_ARGMAX);
    ox_ref_reduce(op, &rd, &ra);
    if (op == OX_REDUCE_ARGMAX) {
        for (int64_t r = 0; r < tt_count(dne); r++)
            ASSERT_MSG(tt_get(&d, r) == rd.idata[r], "argmax row %lld: %g, want %d",
                       (long long)r, tt_get(&d, r), rd.idata[r]);
        return;
    }
    ASSERT_NMSE(&d, &rd, tt_tol(dt), "reduce %d shape [%lld,%lld,%lld,%lld] layout %d\n", (int)op,
                (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3], layout);
}

OX_TEST(reduce_all_shapes_and_types)
{
    tt_seed(21);
    for (int op = OX_REDUCE_SUM; op <= OX_REDUCE_ARGMAX; op++)
        for (int t = 0; t < 3; t++)
            for (size_t s = 0; s < N_SHAPES; s++)
                check_reduce((ox_reduce_op)op, tt_float_types[t], shapes[s],
                             (int)(s + (size_t)op) % 3);
}

/* A long F32 sum whose float partial sums would lose digits: 65536 values
 * of 1 + small noise plus one large value; double accumulation keeps the
 * result within 1e-10 NMSE. */
OX_TEST(reduce_sum_accuracy)
{
    int64_t ne[4] = {65536, 1, 1, 1}, dne[4] = {1, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), d = tt_new(OX_DTYPE_F32, dne, 0);
    tt_seed(22);
    for (int64_t i = 0; i < ne[0]; i++) tt_set(&a, i, 1.0 + tt_uniform(-1e-3, 1e-3));
    tt_set(&a, 0, 1e7);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_SUM, &d.v, &a.v), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(dne, 0);
    ox_ref_reduce(OX_REDUCE_SUM, &rd, &ra);
    ASSERT_NMSE(&d, &rd, 1e-14, "sum of 65536 with a large head\n");
}

OX_TEST(reduce_exact_values)
{
    int64_t ne[4] = {5, 2, 1, 1}, dne[4] = {1, 2, 1, 1};
    static const double x[10] = {1, 3, 2, 3, -1, -4, -2, -2, -3, -5};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS);
    for (int i = 0; i < 10; i++) tt_set(&a, i, x[i]);
    test_tensor f = tt_new(OX_DTYPE_F32, dne, 0), i32 = tt_new(OX_DTYPE_I32, dne, 0);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_SUM, &f.v, &a.v), OX_OK);
    ASSERT(tt_get(&f, 0) == 8 && tt_get(&f, 1) == -16);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_MEAN, &f.v, &a.v), OX_OK);
    ASSERT(tt_get(&f, 0) == 1.6f && tt_get(&f, 1) == -3.2f);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_MAX, &f.v, &a.v), OX_OK);
    ASSERT(tt_get(&f, 0) == 3 && tt_get(&f, 1) == -2);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_ARGMAX, &i32.v, &a.v), OX_OK);
    ASSERT_EQ(tt_get(&i32, 0), 1); /* ties: the first maximum */
    ASSERT_EQ(tt_get(&i32, 1), 1);
    /* a tie across tiles: the maximum at 5 and at 3000 of a 4000 row */
    int64_t big[4] = {4000, 1, 1, 1}, one[4] = {1, 1, 1, 1};
    test_tensor b = tt_new(OX_DTYPE_BF16, big, TT_PADDED), arg = tt_new(OX_DTYPE_I32, one, 0);
    for (int64_t i = 0; i < 4000; i++) tt_set(&b, i, -1);
    tt_set(&b, 3000, 7);
    tt_set(&b, 5, 7);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_ARGMAX, &arg.v, &b.v), OX_OK);
    ASSERT_EQ(tt_get(&arg, 0), 5);
    tt_set(&b, 5, -1);
    ASSERT_EQ(ox__cpu_reduce(tt_exec(), OX_REDUCE_ARGMAX, &arg.v, &b.v), OX_OK);
    ASSERT_EQ(tt_get(&arg, 0), 3000);
}

/* mask shapes: none, one row for all, one row per (i1), per (i1, i2) */
static void mask_shape(const int64_t ne[4], int kind, int64_t out[4])
{
    out[0] = ne[0];
    out[1] = kind >= 2 ? ne[1] : 1;
    out[2] = kind >= 3 ? ne[2] : 1;
    out[3] = 1;
}

static void check_softmax(ox_dtype dt, const int64_t ne[4], int layout, int mask_kind,
                          ox_dtype mask_dt)
{
    int64_t mne[4];
    mask_shape(ne, mask_kind, mne);
    test_tensor a = tt_random(dt, ne, layout, -4, 4), d = tt_new(dt, ne, (layout + 2) % 3);
    test_tensor m = tt_random(mask_dt, mne, layout, -2, 2);
    for (int64_t e = 0; e < tt_count(mne); e += 3) tt_set(&m, e, -INFINITY);
    ASSERT_EQ(ox__cpu_softmax(tt_exec(), &d.v, &a.v, mask_kind ? &m.v : NULL, 0.7f), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rm = tt_ref(&m), rd = tt_ref_new(ne, 0);
    ox_ref_softmax(&rd, &ra, mask_kind ? &rm : NULL, 0.7);
    ASSERT_NMSE(&d, &rd, tt_tol(dt), "softmax shape [%lld,%lld,%lld,%lld] layout %d mask %d %s\n",
                (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3], layout,
                mask_kind, ox_dtype_str(mask_dt));
}

OX_TEST(softmax_all_shapes_and_types)
{
    tt_seed(23);
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < N_SHAPES; s++)
            for (int mask_kind = 0; mask_kind < 4; mask_kind++)
                check_softmax(tt_float_types[t], shapes[s], (int)(s + (size_t)mask_kind) % 3,
                              mask_kind, mask_kind % 2 ? OX_DTYPE_F16 : OX_DTYPE_F32);
}

OX_TEST(softmax_exact_and_masked_rows)
{
    /* softmax of {0, ln 3} is {1/4, 3/4}; with a mask of {0, -inf} it is {1, 0} */
    int64_t ne[4] = {2, 3, 1, 1}, mne[4] = {2, 3, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS), m = tt_new(OX_DTYPE_F32, mne, 0);
    test_tensor d = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS);
    for (int r = 0; r < 3; r++) {
        tt_set(&a, 2 * r, 0);
        tt_set(&a, 2 * r + 1, log(3.0));
    }
    static const double mask[6] = {0, 0, 0, -INFINITY, -INFINITY, -INFINITY};
    for (int i = 0; i < 6; i++) tt_set(&m, i, mask[i]);
    ASSERT_EQ(ox__cpu_softmax(tt_exec(), &d.v, &a.v, &m.v, 1.0f), OX_OK);
    ASSERT_NEAR(tt_get(&d, 0), 0.25, 1e-7);
    ASSERT_NEAR(tt_get(&d, 1), 0.75, 1e-7);
    ASSERT(tt_get(&d, 2) == 1 && tt_get(&d, 3) == 0);
    ASSERT(tt_get(&d, 4) == 0 && tt_get(&d, 5) == 0); /* every entry masked: zeros */
    /* a fully masked long F16 row, in place */
    int64_t big[4] = {3000, 1, 1, 1};
    test_tensor h = tt_random(OX_DTYPE_F16, big, TT_CONTIGUOUS, -1, 1);
    test_tensor hm = tt_new(OX_DTYPE_F16, big, TT_CONTIGUOUS);
    for (int64_t i = 0; i < 3000; i++) tt_set(&hm, i, -INFINITY);
    ASSERT_EQ(ox__cpu_softmax(tt_exec(), &h.v, &h.v, &hm.v, 1.0f), OX_OK);
    for (int64_t i = 0; i < 3000; i++) ASSERT(tt_get(&h, i) == 0);
}

OX_TEST(softmax_in_place_long_rows)
{
    tt_seed(24);
    for (int t = 0; t < 3; t++) {
        int64_t ne[4] = {5000, 9, 1, 1};
        ox_dtype dt = tt_float_types[t];
        test_tensor a = tt_random(dt, ne, TT_CONTIGUOUS, -8, 8);
        ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(ne, 0);
        ASSERT_EQ(ox__cpu_softmax(tt_exec(), &a.v, &a.v, NULL, 1.5f), OX_OK);
        ox_ref_softmax(&rd, &ra, NULL, 1.5);
        ASSERT_NMSE(&a, &rd, tt_tol(dt), "in-place softmax\n");
    }
}

/* The exponentials without AVX2 (the features hidden): the portable loop
 * that other CPUs run, rows longer and shorter than a tile, against the
 * same reference (the tests above take the AVX2 path on a CPU that has it). */
OX_TEST(softmax_without_avx2)
{
    tt_seed(26);
    ox__cpu_exec x = *tt_exec();
    x.features = 0;
    const int64_t shapes_[2][4] = {{4100, 3, 1, 1}, {300, 4, 1, 1}};
    for (int i = 0; i < 2; i++) {
        test_tensor a = tt_random(OX_DTYPE_F32, shapes_[i], TT_CONTIGUOUS, -8, 8);
        test_tensor d = tt_new(OX_DTYPE_F32, shapes_[i], TT_CONTIGUOUS);
        ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(shapes_[i], 0), rl = tt_ref_new(shapes_[i], 0);
        ASSERT_EQ(ox__cpu_softmax(&x, &d.v, &a.v, NULL, 0.9f), OX_OK);
        ox_ref_softmax(&rd, &ra, NULL, 0.9);
        ASSERT_NMSE(&d, &rd, tt_tol(OX_DTYPE_F32), "portable softmax, %lld wide\n",
                    (long long)shapes_[i][0]);
        ASSERT_EQ(ox__cpu_log_softmax(&x, &d.v, &a.v), OX_OK);
        ox_ref_log_softmax(&rl, &ra);
        ASSERT_NMSE(&d, &rl, tt_tol(OX_DTYPE_F32), "portable log_softmax, %lld wide\n",
                    (long long)shapes_[i][0]);
    }
}

static void check_log_softmax(ox_dtype dt, const int64_t ne[4], int layout, int in_place)
{
    test_tensor a = tt_random(dt, ne, layout, -6, 6);
    test_tensor d = in_place ? a : tt_new(dt, ne, (layout + 1) % 3);
    ox_ref_tensor ra = tt_ref(&a), rd = tt_ref_new(ne, 0);
    ASSERT_EQ(ox__cpu_log_softmax(tt_exec(), &d.v, &a.v), OX_OK);
    ox_ref_log_softmax(&rd, &ra);
    ASSERT_NMSE(&d, &rd, tt_tol(dt), "log_softmax shape [%lld,%lld,%lld,%lld] layout %d\n",
                (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3], layout);
}

OX_TEST(log_softmax_all_shapes_and_types)
{
    tt_seed(25);
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < N_SHAPES; s++)
            check_log_softmax(tt_float_types[t], shapes[s], (int)s % 3, s % 2 == 0);
    /* log softmax of {0, ln 3} is {ln 1/4, ln 3/4}, and of a large spread stays finite */
    int64_t ne[4] = {2, 2, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, ne, TT_CONTIGUOUS);
    tt_set(&a, 0, 0);
    tt_set(&a, 1, log(3.0));
    tt_set(&a, 2, 0);
    tt_set(&a, 3, 1000);
    ASSERT_EQ(ox__cpu_log_softmax(tt_exec(), &a.v, &a.v), OX_OK);
    ASSERT_NEAR(tt_get(&a, 0), log(0.25), 1e-6);
    ASSERT_NEAR(tt_get(&a, 1), log(0.75), 1e-6);
    ASSERT_NEAR(tt_get(&a, 2), -1000, 1e-3);
    ASSERT_NEAR(tt_get(&a, 3), 0, 1e-6);
}

OX_TEST_MAIN(reduce_all_shapes_and_types, reduce_sum_accuracy, reduce_exact_values,
             softmax_all_shapes_and_types, softmax_exact_and_masked_rows,
             softmax_in_place_long_rows, softmax_without_avx2,
             log_softmax_all_shapes_and_types)
