/* Tensor descriptors: layout helpers, checks, and host transfers of
 * contiguous and strided (transposed) tensors. */
#include <openxpu/openxpu.h>
#include <openxpu/tensor.h>

#include "ox_test.h"

OX_TEST(make_gives_row_major_strides)
{
    ox_tensor t = ox_tensor_make(NULL, 0, OX_DTYPE_F32, 5, 3, 2, 1);
    ASSERT_EQ(t.nb[0], 4);
    ASSERT_EQ(t.nb[1], 20);
    ASSERT_EQ(t.nb[2], 60);
    ASSERT_EQ(t.nb[3], 120);
    ASSERT_EQ(ox_tensor_nelements(&t), 30);
    ASSERT(ox_tensor_is_contiguous(&t));
    ox_tensor tt = ox_tensor_transpose(&t);
    ASSERT_EQ(tt.ne[0], 3);
    ASSERT_EQ(tt.ne[1], 5);
    ASSERT_EQ(tt.nb[0], 20);
    ASSERT_EQ(tt.nb[1], 4);
    ASSERT(!ox_tensor_is_contiguous(&tt));
    static const int axes[4] = {2, 0, 1, 3};
    ox_tensor p = ox_tensor_permute(&t, axes);
    ASSERT_EQ(p.ne[0], 2);
    ASSERT_EQ(p.nb[0], 60);
    ASSERT_EQ(p.ne[2], 3);
}

OX_TEST(dtype_names_and_sizes)
{
    ASSERT_STR_EQ(ox_dtype_str(OX_DTYPE_BF16), "bf16");
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_F16), 2);
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_I32), 4);
    ASSERT_EQ(ox_dtype_size((ox_dtype)77), 0);
    ox_dtype dt;
    ASSERT_EQ(ox_dtype_from_str("F16", &dt), OX_OK);
    ASSERT_EQ(dt, OX_DTYPE_F16);
    ASSERT_EQ(ox_dtype_from_str("q3_k", &dt), OX_ERR_NOT_FOUND);
}

OX_TEST(strided_tensor_round_trip)
{
    ox_context *ctx;
    ox_device *cpu;
    int n;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &n));
    ox_tensor m;
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F32, 4, 3, 1, 1, &m)); /* 3 rows of 4 */
    float rows[12];
    for (int i = 0; i < 12; i++) rows[i] = (float)i;
    ASSERT_OK(ctx, ox_tensor_write(&m, rows, sizeof rows));
    /* Reading the transpose gives column-major order: element (r, c) of the
     * 4x3 transpose is rows[c * 4 + r]. */
    ox_tensor t = ox_tensor_transpose(&m);
    float back[12];
    ASSERT_OK(ctx, ox_tensor_read(&t, back, sizeof back));
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 3; c++) ASSERT_EQ(back[r * 3 + c], rows[c * 4 + r]);
    /* Writing through the transpose scatters back. */
    for (int i = 0; i < 12; i++) back[i] = (float)(100 + i);
    ASSERT_OK(ctx, ox_tensor_write(&t, back, sizeof back));
    ASSERT_OK(ctx, ox_tensor_read(&m, rows, sizeof rows));
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 3; c++) ASSERT_EQ(rows[c * 4 + r], 100 + r * 3 + c);
    ASSERT_EQ(ox_tensor_read(&m, rows, sizeof rows - 4), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "holds 48");
    ox_context_free(ctx);
}

OX_TEST(alloc_refuses_bad_shapes)
{
    ox_context *ctx;
    ox_device *cpu;
    int n;
    ox_tensor t;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &n));
    ASSERT_EQ(ox_tensor_alloc(cpu, OX_DTYPE_F32, 0, 1, 1, 1, &t), OX_ERR_INVALID);
    ASSERT_EQ(ox_tensor_alloc(cpu, OX_DTYPE_F32, -3, 1, 1, 1, &t), OX_ERR_INVALID);
    ASSERT(ox_tensor_alloc(cpu, OX_DTYPE_F32, (int64_t)1 << 40, (int64_t)1 << 40, 1, 1, &t) != OX_OK);
    ASSERT_EQ(ox_tensor_alloc(cpu, (ox_dtype)9, 1, 1, 1, 1, &t), OX_ERR_INVALID);
    ox_context_free(ctx);
}

OX_TEST_MAIN(make_gives_row_major_strides, dtype_names_and_sizes, strided_tensor_round_trip,
             alloc_refuses_bad_shapes)
