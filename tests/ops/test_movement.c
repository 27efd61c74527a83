/* Data movement on the CPU (src/ops/movement.c): get_rows with batches and
 * converting dsts, ids out of range refused before anything is written;
 * copy between every pair of dtypes and layouts (bit-exact for equal
 * dtypes); concat along each dimension. Movement does no arithmetic, so
 * results are compared exactly. */
#include "ops_test.h"

/* Every element of dst equals the reference after rounding to dst's dtype. */
static void assert_exact(const test_tensor *dst, const ox_ref_tensor *ref, const char *what)
{
    for (int64_t e = 0; e < tt_count(dst->v.ne); e++) {
        double want = ref->data[e];
        if (dst->v.dtype != OX_DTYPE_F32 && dst->v.dtype != OX_DTYPE_I32) {
            unsigned char tmp[4];
            ox__store_f(dst->v.dtype, tmp, (float)want);
            want = ox__load_f(dst->v.dtype, tmp);
        }
        ASSERT_MSG(tt_get(dst, e) == want, "%s: element %lld is %.9g, want %.9g", what,
                   (long long)e, tt_get(dst, e), want);
    }
}

/* ---- get_rows --------------------------------------------------------------- */

static void check_get_rows(ox_dtype table_dt, ox_dtype dst_dt, const int64_t tne[4],
                           const int64_t ine[4], int layout)
{
    int64_t dne[4] = {tne[0], ine[0], ine[1], ine[2]};
    test_tensor table = tt_random(table_dt, tne, layout, -100, 100);
    test_tensor ids = tt_random(OX_DTYPE_I32, ine, layout == TT_PADDED ? TT_PADDED : 0, 0,
                                (double)tne[1]);
    test_tensor d = tt_new(dst_dt, dne, (layout + 1) % 3);
    ASSERT_EQ(ox__cpu_get_rows(tt_exec(), &d.v, &table.v, &ids.v), OX_OK);
    ox_ref_tensor rt = tt_ref(&table), ri = tt_ref(&ids), rd = tt_ref_new(dne, 0);
    ox_ref_get_rows(&rd, &rt, &ri);
    assert_exact(&d, &rd, "get_rows");
}

OX_TEST(get_rows_all_types)
{
    static const struct {
        int64_t table[4], ids[4];
    } cases[] = {
        {{1, 1, 1, 1}, {1, 1, 1, 1}},    {{37, 11, 1, 1}, {5, 1, 1, 1}},
        {{64, 50, 2, 1}, {7, 2, 1, 1}},  /* table batch = ids batch */
        {{33, 9, 1, 1}, {4, 3, 2, 1}},   /* one table for every batch */
        {{4096, 40, 1, 1}, {24, 1, 1, 1}}, /* long rows, over the threading threshold */
    };
    tt_seed(41);
    for (int t = 0; t < 3; t++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int to_f32 = 0; to_f32 < 2; to_f32++)
                check_get_rows(tt_float_types[t], to_f32 ? OX_DTYPE_F32 : tt_float_types[t],
                               cases[c].table, cases[c].ids, (int)(c + (size_t)to_f32) % 3);
}

OX_TEST(get_rows_bad_ids_write_nothing)
{
    int64_t tne[4] = {8, 5, 1, 1}, ine[4] = {4, 1, 1, 1}, dne[4] = {8, 4, 1, 1};
    static const int32_t bad[] = {-1, 5, INT32_MIN, INT32_MAX};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
        for (int pos = 0; pos < 4; pos += 3) {
            test_tensor table = tt_random(OX_DTYPE_F32, tne, TT_CONTIGUOUS, -1, 1);
            test_tensor ids = tt_new(OX_DTYPE_I32, ine, TT_CONTIGUOUS);
            test_tensor d = tt_new(OX_DTYPE_F32, dne, TT_CONTIGUOUS);
            for (int i = 0; i < 4; i++) tt_set(&ids, i, i == pos ? bad[b] : 4 - i);
            unsigned char *before = tt_alloc(d.bytes);
            memcpy(before, d.v.data, d.bytes);
            ASSERT_EQ(ox__cpu_get_rows(tt_exec(), &d.v, &table.v, &ids.v), OX_ERR_OUT_OF_RANGE);
            ASSERT_MSG(memcmp(before, d.v.data, d.bytes) == 0, "dst written for id %d at %d",
                       bad[b], pos);
        }
}

/* ---- copy ---------------------------------------------------------------------- */

static void check_copy(ox_dtype src_dt, ox_dtype dst_dt, const int64_t ne[4], int src_layout,
                       int dst_layout)
{
    test_tensor s = tt_random(src_dt, ne, src_layout, -1000, 1000);
    test_tensor d = tt_new(dst_dt, ne, dst_layout);
    ASSERT_EQ(ox__cpu_copy(tt_exec(), &d.v, &s.v), OX_OK);
    if (src_dt == dst_dt) { /* bit for bit */
        size_t size = ox_dtype_size(src_dt);
        for (int64_t e = 0; e < tt_count(ne); e++)
            ASSERT_MSG(memcmp(tt_at(&d, e), tt_at(&s, e), size) == 0, "copy %s element %lld",
                       ox_dtype_str(src_dt), (long long)e);
        return;
    }
    ox_ref_tensor rs = tt_ref(&s);
    assert_exact(&d, &rs, "copy");
}

OX_TEST(copy_all_type_pairs_and_layouts)
{
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1},     {37, 3, 2, 1},    {5, 7, 3, 2},     {1031, 3, 1, 1},
        {300, 130, 1, 1}, {70, 65, 3, 2}, /* transposed: copied in 64 x 64 squares */
        {70001, 1, 1, 1},
    };
    tt_seed(42);
    for (int st = 0; st < 3; st++)
        for (int dt = 0; dt < 3; dt++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int layout = 0; layout < 3; layout++)
                    check_copy(tt_float_types[st], tt_float_types[dt], shapes[s], layout,
                               (layout + (int)s) % 3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_copy(OX_DTYPE_I32, OX_DTYPE_I32, shapes[s], (int)s % 3, (int)(s + 1) % 3);
}

/* Equal dtypes copy bits: F16 and BF16 NaN payloads and signed zeros survive. */
OX_TEST(copy_keeps_bits)
{
    int64_t ne[4] = {300, 200, 1, 1};
    for (int t = 1; t < 3; t++) {
        test_tensor s = tt_new(tt_float_types[t], ne, TT_TRANSPOSED);
        test_tensor d = tt_new(tt_float_types[t], ne, TT_CONTIGUOUS);
        for (int64_t e = 0; e < tt_count(ne); e++) {
            uint16_t bits = (uint16_t)(e * 40503u);
            memcpy(tt_at(&s, e), &bits, 2);
        }
        ASSERT_EQ(ox__cpu_copy(tt_exec(), &d.v, &s.v), OX_OK);
        for (int64_t e = 0; e < tt_count(ne); e++)
            ASSERT(memcmp(tt_at(&d, e), tt_at(&s, e), 2) == 0);
    }
}

/* A 3-D permutation view: dst[i0, i1, i2] = src[i2, i0, i1]. */
OX_TEST(copy_permuted_view)
{
    int64_t sne[4] = {4, 5, 6, 1};
    test_tensor s = tt_new(OX_DTYPE_F32, sne, TT_CONTIGUOUS);
    for (int64_t e = 0; e < 120; e++) tt_set(&s, e, (double)e);
    ox__view perm = s.v; /* dimension i of the view is dimension axes[i] of s */
    static const int axes[3] = {1, 2, 0};
    for (int i = 0; i < 3; i++) {
        perm.ne[i] = s.v.ne[axes[i]];
        perm.nb[i] = s.v.nb[axes[i]];
    }
    test_tensor d = tt_new(OX_DTYPE_BF16, perm.ne, TT_CONTIGUOUS);
    ASSERT_EQ(ox__cpu_copy(tt_exec(), &d.v, &perm), OX_OK);
    for (int64_t i2 = 0; i2 < 4; i2++)
        for (int64_t i1 = 0; i1 < 6; i1++)
            for (int64_t i0 = 0; i0 < 5; i0++)
                ASSERT(tt_get(&d, i0 + 5 * (i1 + 6 * i2)) == (double)(i2 + 4 * (i0 + 5 * i1)));
}

/* ---- concat ---------------------------------------------------------------------- */

static void check_concat(ox_dtype dt, const int64_t ne[4], int dim, int64_t a_len, int layout)
{
    int64_t ane[4], bne[4], dne[4];
    memcpy(ane, ne, sizeof ane);
    memcpy(bne, ne, sizeof bne);
    memcpy(dne, ne, sizeof dne);
    ane[dim] = a_len;
    bne[dim] = ne[dim] - a_len;
    test_tensor a = tt_random(dt, ane, layout, -50, 50);
    test_tensor b = tt_random(dt, bne, (layout + 1) % 3, -50, 50);
    test_tensor d = tt_new(dt, dne, (layout + 2) % 3);
    ASSERT_EQ(ox__cpu_concat(tt_exec(), &d.v, &a.v, &b.v, dim), OX_OK);
    ox_ref_tensor ra = tt_ref(&a), rb = tt_ref(&b), rd = tt_ref_new(dne, 0);
    ox_ref_concat(&rd, &ra, &rb, dim);
    assert_exact(&d, &rd, "concat");
}

OX_TEST(concat_every_dim)
{
    static const int64_t shapes[][4] = {{2, 2, 2, 2}, {37, 3, 4, 2}, {2100, 20, 2, 1}};
    tt_seed(43);
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < 3; s++)
            for (int dim = 0; dim < 4; dim++) {
                int64_t n = shapes[s][dim];
                if (n < 2) continue;
                check_concat(tt_float_types[t], shapes[s], dim, 1, (int)s % 3);
                check_concat(tt_float_types[t], shapes[s], dim, n / 2 + 1, (int)(s + 1) % 3);
            }
    /* {1, 2} ++ {3} along dim 0 and {1, 2} over {3, 4} along dim 1 */
    int64_t a_ne[4] = {2, 1, 1, 1}, b_ne[4] = {1, 1, 1, 1}, d_ne[4] = {3, 1, 1, 1};
    test_tensor a = tt_new(OX_DTYPE_F32, a_ne, 0), b = tt_new(OX_DTYPE_F32, b_ne, 0);
    test_tensor d = tt_new(OX_DTYPE_F32, d_ne, 0);
    tt_set(&a, 0, 1);
    tt_set(&a, 1, 2);
    tt_set(&b, 0, 3);
    ASSERT_EQ(ox__cpu_concat(tt_exec(), &d.v, &a.v, &b.v, 0), OX_OK);
    ASSERT(tt_get(&d, 0) == 1 && tt_get(&d, 1) == 2 && tt_get(&d, 2) == 3);
}

OX_TEST_MAIN(get_rows_all_types, get_rows_bad_ids_write_nothing, copy_all_type_pairs_and_layouts,
             copy_keeps_bits, copy_permuted_view, concat_every_dim)
