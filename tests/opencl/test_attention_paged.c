/* ox_attention_paged (a KV cache in pools of fixed-size pages shared by
 * sequences) on the CPU and on OpenCL (PoCL in CI) against a naive
 * double-precision loop over the rows the page table names, and bit for
 * bit against ox_attention on the same rows gathered into a dense cache on
 * the same device. The pools' rows that no table names hold large values,
 * so a read through a wrong page shows. Without an OpenCL device the
 * OpenCL test is skipped, saying why. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "opencl_test.h"

typedef struct problem {
    int64_t D, Dv, n_q, n_kv, H, H_kv;
    int page, causal, mask;
    ox_dtype kv;
} problem;

static float *random_values(int64_t n, uint64_t *state)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ASSERT(x != NULL);
    for (int64_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)((double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return x;
}

/* values as the cache's dtype stores them */
static void round_to(ox_dtype dtype, float *x, int64_t n)
{
    void *raw = malloc((size_t)n * ox_dtype_size(dtype));
    ASSERT(raw != NULL);
    ASSERT_OK(NULL, ox_row_from_f32(dtype, x, raw, n));
    ASSERT_OK(NULL, ox_row_to_f32(dtype, raw, x, n));
    free(raw);
}

static ox_tensor upload(ox_context *ctx, ox_device *device, ox_dtype dtype, int64_t ne0,
                        int64_t ne1, int64_t ne2, const float *values)
{
    int64_t n = ne0 * ne1 * ne2;
    void *raw = malloc((size_t)n * ox_dtype_size(dtype));
    ASSERT(raw != NULL);
    ASSERT_OK(ctx, ox_row_from_f32(dtype, values, raw, n));
    ox_tensor t;
    ASSERT_OK(ctx, ox_tensor_alloc(device, dtype, ne0, ne1, ne2, 1, &t));
    ASSERT_OK(ctx, ox_tensor_write(&t, raw, (size_t)n * ox_dtype_size(dtype)));
    free(raw);
    return t;
}

/* dst[c, i, h] = softmax_j(q_i . k_j * scale + mask[i, j]) v_j[c] in double,
 * over logical keys (k, v: [D or Dv, n_kv, H_kv] dense). */
static void naive(const problem *p, const float *q, const float *k, const float *v,
                  const float *mask, double *out)
{
    int64_t G = p->H / p->H_kv;
    double scale = 1.0 / sqrt((double)p->D);
    double *s = malloc((size_t)p->n_kv * sizeof(double));
    ASSERT(s != NULL);
    for (int64_t h = 0; h < p->H; h++)
        for (int64_t i = 0; i < p->n_q; i++) {
            int64_t hk = h / G, seen = p->causal ? p->n_kv - p->n_q + i + 1 : p->n_kv;
            double top = -INFINITY, sum = 0;
            for (int64_t j = 0; j < p->n_kv; j++) {
                double dot = 0;
                for (int64_t d = 0; d < p->D; d++)
                    dot += (double)q[(h * p->n_q + i) * p->D + d] *
                           (double)k[(hk * p->n_kv + j) * p->D + d];
                s[j] = j < seen ? dot * scale + (p->mask ? mask[i * p->n_kv + j] : 0.0) : -INFINITY;
                top = s[j] > top ? s[j] : top;
            }
            for (int64_t j = 0; j < p->n_kv; j++) {
                s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - top);
                sum += s[j];
            }
            for (int64_t c = 0; c < p->Dv; c++) {
                double acc = 0;
                for (int64_t j = 0; j < p->n_kv; j++)
                    acc += s[j] * (double)v[(hk * p->n_kv + j) * p->Dv + c];
                out[(h * p->n_q + i) * p->Dv + c] = sum > 0 ? acc / sum : 0.0;
            }
        }
    free(s);
}

/* The problem on `device`: paged against the double loop and against the
 * dense op on the same device. */
static void check(ox_context *ctx, ox_device *device, const problem *p)
{
    uint64_t state = (uint64_t)(p->D * 131 + p->n_kv * 7 + p->n_q + p->page);
    int64_t n_used = (p->n_kv + p->page - 1) / p->page, n_pages = n_used + 3;
    int64_t rows = n_pages * p->page, n_out = p->Dv * p->n_q * p->H;
    float *q = random_values(p->D * p->n_q * p->H, &state);
    float *k = random_values(p->D * p->n_kv * p->H_kv, &state);
    float *v = random_values(p->Dv * p->n_kv * p->H_kv, &state);
    float *mask = random_values(p->n_kv * p->n_q, &state);
    for (int64_t i = 0; i < p->n_kv * p->n_q; i++) mask[i] = mask[i] < -0.8f ? -INFINITY : mask[i];
    round_to(p->kv, k, p->D * p->n_kv * p->H_kv);
    round_to(p->kv, v, p->Dv * p->n_kv * p->H_kv);
    /* logical page i in pool page (n_pages - 1 - i) (backwards, past the
     * three spare pages' start); every other row holds 100 */
    int32_t *table = malloc((size_t)n_used * sizeof *table);
    float *kp = malloc((size_t)(p->D * rows * p->H_kv) * sizeof(float));
    float *vp = malloc((size_t)(p->Dv * rows * p->H_kv) * sizeof(float));
    ASSERT(table && kp && vp);
    for (int64_t i = 0; i < p->D * rows * p->H_kv; i++) kp[i] = 100.0f;
    for (int64_t i = 0; i < p->Dv * rows * p->H_kv; i++) vp[i] = 100.0f;
    for (int64_t i = 0; i < n_used; i++) table[i] = (int32_t)(n_pages - 1 - i);
    for (int64_t hk = 0; hk < p->H_kv; hk++)
        for (int64_t j = 0; j < p->n_kv; j++) {
            int64_t row = table[j / p->page] * p->page + j % p->page;
            memcpy(kp + (hk * rows + row) * p->D, k + (hk * p->n_kv + j) * p->D,
                   (size_t)p->D * sizeof(float));
            memcpy(vp + (hk * rows + row) * p->Dv, v + (hk * p->n_kv + j) * p->Dv,
                   (size_t)p->Dv * sizeof(float));
        }

    ox_queue *queue = NULL;
    ASSERT_OK(ctx, ox_queue_create(device, &queue));
    ox_tensor tq = upload(ctx, device, OX_DTYPE_F32, p->D, p->n_q, p->H, q);
    ox_tensor tk = upload(ctx, device, p->kv, p->D, p->n_kv, p->H_kv, k);
    ox_tensor tv = upload(ctx, device, p->kv, p->Dv, p->n_kv, p->H_kv, v);
    ox_tensor tkp = upload(ctx, device, p->kv, p->D, rows, p->H_kv, kp);
    ox_tensor tvp = upload(ctx, device, p->kv, p->Dv, rows, p->H_kv, vp);
    ox_tensor tm = upload(ctx, device, OX_DTYPE_F32, p->n_kv, p->n_q, 1, mask);
    ox_tensor tt, paged, dense;
    ASSERT_OK(ctx, ox_tensor_alloc(device, OX_DTYPE_I32, n_used, 1, 1, 1, &tt));
    ASSERT_OK(ctx, ox_tensor_write(&tt, table, (size_t)n_used * sizeof *table));
    ASSERT_OK(ctx, ox_tensor_alloc(device, OX_DTYPE_F32, p->Dv, p->n_q, p->H, 1, &paged));
    ASSERT_OK(ctx, ox_tensor_alloc(device, OX_DTYPE_F32, p->Dv, p->n_q, p->H, 1, &dense));
    ox_attention_params ap = {.scale = 1.0f / sqrtf((float)p->D), .causal = p->causal};
    const ox_tensor *m = p->mask ? &tm : NULL;
    ASSERT_OK(ctx, ox_attention_paged(queue, &paged, &tq, &tkp, &tvp, &tt, p->page, p->n_kv, m, &ap));
    ASSERT_OK(ctx, ox_attention(queue, &dense, &tq, &tk, &tv, m, &ap));
    ASSERT_OK(ctx, ox_queue_finish(queue));
    float *got = malloc((size_t)n_out * sizeof(float)), *ref = malloc((size_t)n_out * sizeof(float));
    double *want = malloc((size_t)n_out * sizeof(double));
    ASSERT(got && ref && want);
    ASSERT_OK(ctx, ox_tensor_read(&paged, got, (size_t)n_out * sizeof(float)));
    ASSERT_OK(ctx, ox_tensor_read(&dense, ref, (size_t)n_out * sizeof(float)));
    naive(p, q, k, v, mask, want);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n_out; i++) {
        err += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        norm += want[i] * want[i];
    }
    char id[64];
    ox_device_info info = {.struct_size = sizeof info};
    ASSERT_OK(ctx, ox_device_get_info(device, &info));
    snprintf(id, sizeof id, "%s", info.id);
    ASSERT_MSG(err <= 1e-9 * norm,
               "%s: D %lld Dv %lld n_q %lld n_kv %lld H %lld/%lld page %d %s%s%s: NMSE %.3g "
               "against the double loop",
               id, (long long)p->D, (long long)p->Dv, (long long)p->n_q, (long long)p->n_kv,
               (long long)p->H, (long long)p->H_kv, p->page, ox_dtype_str(p->kv),
               p->causal ? " causal" : "", p->mask ? " mask" : "", err / norm);
    ASSERT_MSG(memcmp(got, ref, (size_t)n_out * sizeof(float)) == 0,
               "%s: n_q %lld n_kv %lld page %d: paged and dense results differ", id,
               (long long)p->n_q, (long long)p->n_kv, p->page);
    ox_tensor *all[] = {&tq, &tk, &tv, &tkp, &tvp, &tm, &tt, &paged, &dense};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ox_buffer_free(all[i]->buffer);
    ox_queue_free(queue);
    free(q), free(k), free(v), free(mask), free(table), free(kp), free(vp);
    free(got), free(ref), free(want);
}

/* decode, a chunk after a cache, a prompt (the tiled paths), pages of 1
 * row and of more than the keys, grouped-query heads, long caches (split
 * over work-groups on devices), every cache dtype */
static const problem problems[] = {
    {64, 64, 1, 100, 4, 2, 16, 0, 0, OX_DTYPE_F16},
    {64, 64, 5, 77, 8, 2, 8, 1, 1, OX_DTYPE_F32},
    {64, 64, 40, 40, 4, 1, 16, 1, 0, OX_DTYPE_F16},
    {128, 128, 33, 290, 4, 4, 64, 1, 1, OX_DTYPE_BF16},
    {64, 32, 3, 19, 4, 2, 1, 1, 0, OX_DTYPE_F32},
    {64, 64, 1, 10, 2, 1, 256, 0, 1, OX_DTYPE_F16},
    {256, 256, 1, 1100, 4, 1, 64, 0, 0, OX_DTYPE_F16},
};

static void check_all(ox_context *ctx, ox_device *device)
{
    for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++) check(ctx, device, &problems[i]);
}

OX_TEST(paged_attention_on_the_cpu)
{
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = NULL;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &count));
    check_all(ctx, cpu);
    ox_context_free(ctx);
}

OX_TEST(paged_attention_on_opencl)
{
    ox_context *ctx = opencl_context();
    ox_device *cl = NULL;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "opencl:0", &cl, 1, &count));
    check_all(ctx, cl);
    ox_context_free(ctx);
}

/* Bad arguments are refused with a message naming what is wrong. */
OX_TEST(paged_attention_refuses_bad_tables)
{
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = NULL;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &count));
    ox_queue *queue = NULL;
    ASSERT_OK(ctx, ox_queue_create(cpu, &queue));
    ox_tensor q, kp, vp, tt, tf, d;
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F32, 8, 1, 2, 1, &q));
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F16, 8, 64, 1, 1, &kp));
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F16, 8, 64, 1, 1, &vp));
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_I32, 2, 1, 1, 1, &tt));
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F32, 2, 1, 1, 1, &tf));
    ASSERT_OK(ctx, ox_tensor_alloc(cpu, OX_DTYPE_F32, 8, 1, 2, 1, &d));
    ox_attention_params ap = {.scale = 1.0f, .causal = 1};
    ASSERT_EQ(ox_attention_paged(queue, &d, &q, &kp, &vp, &tt, 24, 20, NULL, &ap), OX_ERR_INVALID);
    ASSERT_MSG(strstr(ox_errmsg(ctx), "page_size 24 is not a power of two"), "%s", ox_errmsg(ctx));
    ASSERT_EQ(ox_attention_paged(queue, &d, &q, &kp, &vp, &tt, 16, 40, NULL, &ap), OX_ERR_INVALID);
    ASSERT_MSG(strstr(ox_errmsg(ctx), "at least 3 pages"), "%s", ox_errmsg(ctx));
    ASSERT_EQ(ox_attention_paged(queue, &d, &q, &kp, &vp, &tt, 128, 20, NULL, &ap), OX_ERR_INVALID);
    ASSERT_EQ(ox_attention_paged(queue, &d, &q, &kp, &vp, &tf, 16, 20, NULL, &ap), OX_ERR_INVALID);
    ASSERT_MSG(strstr(ox_errmsg(ctx), "pages") && strstr(ox_errmsg(ctx), "i32"), "%s",
               ox_errmsg(ctx));
    /* a table entry out of the pool reads a page of it, never past it */
    int32_t bad[2] = {-5, 1000};
    ASSERT_OK(ctx, ox_tensor_write(&tt, bad, sizeof bad));
    ASSERT_OK(ctx, ox_attention_paged(queue, &d, &q, &kp, &vp, &tt, 16, 20, NULL, &ap));
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ox_tensor *all[] = {&q, &kp, &vp, &tt, &tf, &d};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ox_buffer_free(all[i]->buffer);
    ox_queue_free(queue);
    ox_context_free(ctx);
}

OX_TEST_MAIN(paged_attention_on_the_cpu, paged_attention_on_opencl,
             paged_attention_refuses_bad_tables)
