/* Bad input to the operators: every refusal happens before anything runs,
 * names the op and the shapes, and leaves dst untouched. */
#include <math.h>
#include <openxpu/openxpu.h>
#include <openxpu/ops.h>

#include "ox_test.h"

typedef struct fixture {
    ox_context *ctx;
    ox_device *cpu;
    ox_queue *q;
} fixture;

static fixture setup(void)
{
    fixture f;
    int n;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS,
                            .log_level = OX_LOG_OFF};
    ASSERT_OK(NULL, ox_context_create(&o, &f.ctx));
    ASSERT_OK(f.ctx, ox_device_select(f.ctx, "cpu", &f.cpu, 1, &n));
    ASSERT_OK(f.ctx, ox_queue_create(f.cpu, &f.q));
    return f;
}

static ox_tensor alloc_filled(fixture *f, ox_dtype dt, int64_t ne0, int64_t ne1, float value)
{
    ox_tensor t;
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->cpu, dt, ne0, ne1, 1, 1, &t));
    size_t n = (size_t)(ne0 * ne1);
    if (dt == OX_DTYPE_F32) {
        float *h = malloc(n * sizeof *h);
        for (size_t i = 0; i < n; i++) h[i] = value;
        ASSERT_OK(f->ctx, ox_tensor_write(&t, h, n * sizeof *h));
        free(h);
    }
    return t;
}

/* dst still holds `value` everywhere. */
static void assert_untouched(fixture *f, const ox_tensor *dst, float value)
{
    size_t n = (size_t)ox_tensor_nelements(dst);
    float *h = malloc(n * sizeof *h);
    ASSERT_OK(f->ctx, ox_tensor_read(dst, h, n * sizeof *h));
    for (size_t i = 0; i < n; i++) ASSERT_MSG(h[i] == value, "dst[%zu] changed to %g", i, h[i]);
    free(h);
}

OX_TEST(shape_mismatch_names_op_and_shapes)
{
    fixture f = setup();
    ox_tensor a = alloc_filled(&f, OX_DTYPE_F32, 5, 3, 1.0f);
    ox_tensor b = alloc_filled(&f, OX_DTYPE_F32, 4, 3, 2.0f);
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 5, 3, 7.0f);
    ASSERT_EQ(ox_add(f.q, &dst, &a, &b), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "ox_binary");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "f32[4,3,1,1]");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "f32[5,3,1,1]");
    assert_untouched(&f, &dst, 7.0f);
    ox_tensor wrong = alloc_filled(&f, OX_DTYPE_F32, 5, 2, 7.0f);
    ASSERT_EQ(ox_unary(f.q, OX_UNARY_EXP, &wrong, &a), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "same shape");
    assert_untouched(&f, &wrong, 7.0f);
    ox_context_free(f.ctx);
}

OX_TEST(dtype_mismatch_is_refused)
{
    fixture f = setup();
    ox_tensor a = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 1.0f);
    ox_tensor h;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F16, 8, 2, 1, 1, &h));
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 7.0f);
    ASSERT_EQ(ox_add(f.q, &dst, &a, &h), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "f16");
    assert_untouched(&f, &dst, 7.0f);
    ox_tensor ids;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_I32, 8, 2, 1, 1, &ids));
    ASSERT_EQ(ox_unary(f.q, OX_UNARY_EXP, &ids, &ids), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "i32");
    ASSERT_EQ(ox_copy(f.q, &ids, &a), OX_ERR_INVALID); /* no float -> int copies */
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "ox_copy");
    ox_context_free(f.ctx);
}

OX_TEST(view_out_of_bounds_is_refused)
{
    fixture f = setup();
    ox_tensor a = alloc_filled(&f, OX_DTYPE_F32, 16, 4, 1.0f); /* 256 bytes */
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 16, 4, 7.0f);
    ox_tensor past = a;
    past.offset = 8; /* the last row now reaches 8 bytes past the end */
    ASSERT_EQ(ox_scale(f.q, &dst, &past, 2.0f, 0.0f), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "ox_scale");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "256-byte buffer");
    assert_untouched(&f, &dst, 7.0f);
    ox_tensor strided = a;
    strided.nb[1] = 1 << 20; /* a stride far beyond the buffer */
    ASSERT_EQ(ox_scale(f.q, &dst, &strided, 2.0f, 0.0f), OX_ERR_OUT_OF_RANGE);
    ox_tensor huge = a;
    huge.ne[3] = (int64_t)1 << 40;
    huge.nb[3] = (int64_t)1 << 50; /* spans overflow 64 bits */
    ASSERT(ox_scale(f.q, &dst, &huge, 2.0f, 0.0f) != OX_OK);
    ox_tensor zero = a;
    zero.ne[0] = 0;
    ASSERT_EQ(ox_scale(f.q, &dst, &zero, 2.0f, 0.0f), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "dimension 0 is 0");
    ox_tensor misaligned = a;
    misaligned.offset = 2;
    misaligned.ne[1] = 1;
    ASSERT_EQ(ox_scale(f.q, &dst, &misaligned, 2.0f, 0.0f), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "multiple");
    assert_untouched(&f, &dst, 7.0f);
    ox_context_free(f.ctx);
}

OX_TEST(tensors_of_two_devices_are_refused)
{
    const char *dir = getenv("OX_TEST_PLUGIN_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/fake", dir ? dir : ".");
    ox_context_options o = {.struct_size = sizeof o, .backend_path = path,
                            .flags = OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS, .log_level = OX_LOG_OFF};
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    ox_device *devs[2];
    int n = 0;
    if (ox_device_select(ctx, "cpu,fake:0", devs, 2, &n) != OX_OK)
        OX_SKIP("the fake test backend is not built (%s)", ox_errmsg(ctx));
    ox_tensor a, b, dst;
    ASSERT_OK(ctx, ox_tensor_alloc(devs[0], OX_DTYPE_F32, 4, 4, 1, 1, &a));
    ASSERT_OK(ctx, ox_tensor_alloc(devs[1], OX_DTYPE_F32, 4, 4, 1, 1, &b));
    ASSERT_OK(ctx, ox_tensor_alloc(devs[0], OX_DTYPE_F32, 4, 4, 1, 1, &dst));
    ox_queue *q;
    ASSERT_OK(ctx, ox_queue_create(devs[0], &q));
    ASSERT_EQ(ox_add(q, &dst, &a, &b), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "ox_binary: b is on fake:0 but the queue is on cpu:0");
    ox_context_free(ctx);
}

OX_TEST(matmul_shapes_are_checked)
{
    fixture f = setup();
    ox_tensor a = alloc_filled(&f, OX_DTYPE_F32, 5, 3, 1.0f); /* M=3, K=5 */
    ox_tensor b = alloc_filled(&f, OX_DTYPE_F32, 4, 6, 1.0f); /* K=6: mismatch */
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 4, 3, 7.0f);
    ASSERT_EQ(ox_matmul(f.q, &dst, &a, &b, 0), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "ox_matmul: shapes do not fit");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "K of a 5 == K of b 6");
    assert_untouched(&f, &dst, 7.0f);
    ASSERT_EQ(ox_matmul(f.q, &dst, &a, &b, 0x80), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "unknown flags");
    ox_context_free(f.ctx);
}

OX_TEST(op_parameters_are_checked)
{
    fixture f = setup();
    ox_tensor a = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 1.0f);
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 7.0f);
    ASSERT_EQ(ox_clamp(f.q, &dst, &a, 1.0f, -1.0f), OX_ERR_INVALID);
    ASSERT_EQ(ox_unary(f.q, (ox_unary_op)99, &dst, &a), OX_ERR_INVALID);
    ASSERT_EQ(ox_rms_norm(f.q, &dst, &a, NULL, -1.0f), OX_ERR_INVALID);
    ox_tensor pos;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_I32, 2, 1, 1, 1, &pos));
    ox_rope_params odd = {.mode = OX_ROPE_NORMAL, .n_dims = 3, .freq_base = 10000, .freq_scale = 1};
    ASSERT_EQ(ox_rope(f.q, &dst, &a, &pos, &odd), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "n_dims 3");
    ASSERT_EQ(ox_concat(f.q, &dst, &a, &a, 7), OX_ERR_INVALID);
    ASSERT_EQ(ox_softmax(f.q, &dst, &a, &pos, 1.0f), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "mask is i32");
    /* positions as an angle table: F32 [n_dims, tokens], nothing else */
    ox_rope_params four = {.mode = OX_ROPE_NEOX, .n_dims = 4, .freq_base = 10000, .freq_scale = 1};
    ox_tensor table = alloc_filled(&f, OX_DTYPE_F32, 4, 2, 0.5f), half_pos;
    ASSERT_EQ(ox_rope(f.q, &dst, &a, &table, &four), OX_ERR_INVALID); /* a has 1 token */
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "the angle table (F32 positions) is [4, 2, 1, 1]");
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_F16, 1, 1, 1, 1, &half_pos));
    ASSERT_EQ(ox_rope(f.q, &dst, &a, &half_pos, &four), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "positions is f16");
    ASSERT_EQ(ox_rope_qk(f.q, &a, &a, NULL, NULL, NULL, NULL, &table, &four, 0.0f), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "angle table");
    assert_untouched(&f, &dst, 7.0f);
    float t[2 * 4];
    int32_t at[2] = {0, 3};
    ASSERT_EQ(ox_rope_table(&odd, at, 2, t), OX_ERR_INVALID);
    ASSERT_EQ(ox_rope_table(&four, NULL, 2, t), OX_ERR_INVALID);
    ASSERT_EQ(ox_rope_table(NULL, at, 2, t), OX_ERR_INVALID);
    ox_context_free(f.ctx);
}

/* ox_rope_table against angles computed here in long double: cos then sin
 * of pos * scale * base^(-2i / n_dims), each within a float's rounding */
OX_TEST(rope_table_values)
{
    ox_rope_params p = {.mode = OX_ROPE_NORMAL, .n_dims = 8, .freq_base = 500000,
                        .freq_scale = 0.5f};
    int32_t pos[3] = {0, 7, 131071};
    float t[3 * 8];
    ASSERT_EQ(ox_rope_table(&p, pos, 3, t), OX_OK);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++) {
            long double theta = (long double)pos[r] * 0.5L * powl(500000.0L, -2.0L * i / 8.0L);
            long double c = cosl(theta), s = sinl(theta);
            ASSERT_MSG(fabsl(t[r * 8 + i] - c) <= 6e-8L && fabsl(t[r * 8 + 4 + i] - s) <= 6e-8L,
                       "pos %d pair %d: %g %g vs %Lg %Lg", pos[r], i, (double)t[r * 8 + i],
                       (double)t[r * 8 + 4 + i], c, s);
        }
}

OX_TEST(null_and_freed_arguments_are_refused)
{
    fixture f = setup();
    ox_tensor a = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 1.0f);
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 7.0f);
    ASSERT_EQ(ox_add(NULL, &dst, &a, &a), OX_ERR_INVALID_HANDLE);
    ASSERT_EQ(ox_add(f.q, &dst, &a, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "b is NULL");
    ox_tensor gone = alloc_filled(&f, OX_DTYPE_F32, 8, 2, 1.0f);
    ox_buffer_free(gone.buffer);
    ASSERT_EQ(ox_add(f.q, &dst, &a, &gone), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "freed");
    assert_untouched(&f, &dst, 7.0f);
    ox_context_free(f.ctx);
}

OX_TEST(get_rows_bad_id_leaves_dst_untouched)
{
    fixture f = setup();
    ox_tensor table = alloc_filled(&f, OX_DTYPE_F32, 4, 3, 1.0f);
    ox_tensor ids;
    ASSERT_OK(f.ctx, ox_tensor_alloc(f.cpu, OX_DTYPE_I32, 2, 1, 1, 1, &ids));
    int32_t bad[2] = {1, 3};
    ASSERT_OK(f.ctx, ox_tensor_write(&ids, bad, sizeof bad));
    ox_tensor dst = alloc_filled(&f, OX_DTYPE_F32, 4, 2, 7.0f);
    ASSERT_EQ(ox_get_rows(f.q, &dst, &table, &ids), OX_ERR_OUT_OF_RANGE);
    assert_untouched(&f, &dst, 7.0f);
    ox_context_free(f.ctx);
}

OX_TEST_MAIN(shape_mismatch_names_op_and_shapes, dtype_mismatch_is_refused,
             view_out_of_bounds_is_refused, tensors_of_two_devices_are_refused,
             matmul_shapes_are_checked, op_parameters_are_checked,
             null_and_freed_arguments_are_refused, get_rows_bad_id_leaves_dst_untouched,
             rope_table_values)
