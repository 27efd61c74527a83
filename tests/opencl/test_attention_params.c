/* The attention kernels (kernels/attention.oxc) on an OpenCL device (PoCL
 * in CI) with corner values of their tunable parameters (the attention
 * family of src/ops/tune.c): the tuner may pick any combination that
 * ox__tune_valid accepts, so each must compute what the CPU computes. The
 * problems take both kernels, split and unsplit keys, masks, causal limits,
 * head sizes that no lane count divides, Dv != D, grouped-query heads,
 * F16, BF16 and strided caches. Without an OpenCL device every case is
 * skipped, saying why. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ops/tune.h"
#include "opencl_test.h"

typedef struct problem {
    int64_t D, Dv, n_q, n_kv, H, H_kv;
    int causal, mask, strided;
    ox_dtype kv;
} problem;

/* A tensor of `dtype` and shape ne on `device` holding `values` (ne0 x ne1
 * x ne2 floats); strided: stored with dimensions 0 and 1 swapped and
 * viewed back, so that its elements are n1 apart along dimension 0. */
static ox_tensor upload(ox_context *ctx, ox_device *device, ox_dtype dtype, const int64_t ne[3],
                        const float *values, int strided)
{
    int64_t n = ne[0] * ne[1] * ne[2];
    size_t esize = ox_dtype_size(dtype);
    float *order = malloc((size_t)n * sizeof(float));
    void *raw = malloc((size_t)n * esize);
    ASSERT(order && raw);
    for (int64_t c = 0; c < ne[2]; c++)
        for (int64_t b = 0; b < ne[1]; b++)
            for (int64_t a = 0; a < ne[0]; a++) {
                int64_t at = strided ? (c * ne[0] + a) * ne[1] + b : (c * ne[1] + b) * ne[0] + a;
                order[at] = values[(c * ne[1] + b) * ne[0] + a];
            }
    ASSERT_OK(ctx, ox_row_from_f32(dtype, order, raw, n));
    ox_tensor t;
    if (strided) {
        ASSERT_OK(ctx, ox_tensor_alloc(device, dtype, ne[1], ne[0], ne[2], 1, &t));
        ASSERT_OK(ctx, ox_tensor_write(&t, raw, (size_t)n * esize));
        t = ox_tensor_transpose(&t);
    } else {
        ASSERT_OK(ctx, ox_tensor_alloc(device, dtype, ne[0], ne[1], ne[2], 1, &t));
        ASSERT_OK(ctx, ox_tensor_write(&t, raw, (size_t)n * esize));
    }
    free(order);
    free(raw);
    return t;
}

/* out [Dv, n_q, H] of the problem on `device`, from the same inputs. */
static void attend(ox_context *ctx, ox_device *device, const problem *p, float *const in[4],
                   float *out)
{
    ox_queue *queue = NULL;
    ASSERT_OK(ctx, ox_queue_create(device, &queue));
    const int64_t q_ne[3] = {p->D, p->n_q, p->H}, k_ne[3] = {p->D, p->n_kv, p->H_kv};
    const int64_t v_ne[3] = {p->Dv, p->n_kv, p->H_kv}, m_ne[3] = {p->n_kv, p->n_q, 1};
    ox_tensor q = upload(ctx, device, OX_DTYPE_F32, q_ne, in[0], 0);
    ox_tensor k = upload(ctx, device, p->kv, k_ne, in[1], p->strided);
    ox_tensor v = upload(ctx, device, p->kv, v_ne, in[2], p->strided);
    ox_tensor m = upload(ctx, device, OX_DTYPE_F32, m_ne, in[3], 0);
    ox_tensor d;
    ASSERT_OK(ctx, ox_tensor_alloc(device, OX_DTYPE_F32, p->Dv, p->n_q, p->H, 1, &d));
    ox_attention_params ap = {.scale = 1.0f / sqrtf((float)p->D), .causal = p->causal};
    ASSERT_OK(ctx, ox_attention(queue, &d, &q, &k, &v, p->mask ? &m : NULL, &ap));
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ASSERT_OK(ctx, ox_tensor_read(&d, out, (size_t)(p->Dv * p->n_q * p->H) * sizeof(float)));
    ox_buffer_free(q.buffer);
    ox_buffer_free(k.buffer);
    ox_buffer_free(v.buffer);
    ox_buffer_free(m.buffer);
    ox_buffer_free(d.buffer);
    ox_queue_free(queue);
}

static float *random_values(int64_t n, uint64_t *state, int with_infinities)
{
    float *x = malloc((size_t)n * sizeof(float));
    ASSERT(x != NULL);
    for (int64_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)((double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        if (with_infinities && i % 7 == 3) x[i] = -INFINITY;
    }
    return x;
}

/* The problem with the parameters `params` on the OpenCL device against
 * the CPU: NMSE at most 1e-9, the F32 bound of ox check for attention. */
static void check(ox_context *ctx, ox_device *cl, ox_device *cpu, const problem *p,
                  const ox__tune_params *params)
{
    uint64_t state = (uint64_t)(p->D * 131 + p->n_kv * 7 + p->n_q);
    int64_t n_out = p->Dv * p->n_q * p->H;
    float *in[4] = {random_values(p->D * p->n_q * p->H, &state, 0),
                    random_values(p->D * p->n_kv * p->H_kv, &state, 0),
                    random_values(p->Dv * p->n_kv * p->H_kv, &state, 0),
                    random_values(p->n_kv * p->n_q, &state, 1)};
    float *got = malloc((size_t)n_out * sizeof(float));
    float *want = malloc((size_t)n_out * sizeof(float));
    ASSERT(got && want);
    ASSERT_OK(ctx, ox__tune_put(cl, OX__TUNE_ATTENTION, ox_dtype_str(p->kv), params, 0, false));
    attend(ctx, cl, p, in, got);
    attend(ctx, cpu, p, in, want);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n_out; i++) {
        ASSERT_MSG(isfinite(got[i]), "element %lld is %g", (long long)i, got[i]);
        err += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        norm += (double)want[i] * want[i];
    }
    char text[96];
    ASSERT_MSG(err <= 1e-9 * norm,
               "%s: D %lld Dv %lld n_q %lld n_kv %lld H %lld/%lld %s%s%s%s: NMSE %.3g",
               ox__tune_format(OX__TUNE_ATTENTION, params, text, sizeof text), (long long)p->D,
               (long long)p->Dv, (long long)p->n_q, (long long)p->n_kv, (long long)p->H,
               (long long)p->H_kv, ox_dtype_str(p->kv), p->causal ? " causal" : "",
               p->mask ? " mask" : "", p->strided ? " strided" : "", err / norm);
    for (int i = 0; i < 4; i++) free(in[i]);
    free(got);
    free(want);
}

/* WG SPLIT LANES BQ BK: each class's defaults; the smallest and largest
 * groups and blocks; one key row per pass (WG = LANES); fewer keys per step
 * than lanes; more row slots than BQ rows; runs of 4 and 2 */
static const ox__tune_params corners[] = {
    {{8, 0, 1, 64, 16}}, {{128, 0, 16, 32, 16}}, {{4, 64, 1, 4, 8}}, {{256, 2, 32, 64, 128}},
    {{32, 8, 32, 8, 8}}, {{16, 1, 4, 16, 32}},   {{64, 4, 2, 4, 64}}, {{128, 16, 8, 32, 16}},
};

/* Every valid corner on the problems. */
static void check_corners(const problem *problems, size_t n_problems)
{
    ox_context *ctx = opencl_context();
    ox_device *cl = NULL, *cpu = NULL;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "opencl:0", &cl, 1, &count));
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", &cpu, 1, &count));
    ox_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_OK(ctx, ox_device_get_info(cl, &info));
    int ran = 0;
    for (size_t c = 0; c < sizeof corners / sizeof corners[0]; c++) {
        if (!ox__tune_valid(&info, OX__TUNE_ATTENTION, &corners[c])) continue;
        for (size_t p = 0; p < n_problems; p++) check(ctx, cl, cpu, &problems[p], &corners[c]);
        ran++;
    }
    ASSERT_MSG(ran >= 2, "only %d of the corner parameter sets are valid on %s", ran, info.id);
    ox_context_free(ctx);
}

/* attention_decode, with and without splits (attention_combine) */
OX_TEST(decode_corners_compute_what_the_cpu_computes)
{
    static const problem problems[] = {
        /* 8 query heads on one kv head: a block of 8 rows, few work-groups
         * (so the keys are split by default), head sizes 80 and 72 */
        {80, 72, 1, 531, 8, 1, 0, 1, 0, OX_DTYPE_F16},
        /* two queries of 4 heads per kv head, causal: 8 rows; strided */
        {64, 64, 2, 300, 8, 2, 1, 0, 1, OX_DTYPE_F32},
    };
    check_corners(problems, sizeof problems / sizeof problems[0]);
}

/* attention_tiled */
OX_TEST(prompt_corners_compute_what_the_cpu_computes)
{
    static const problem problems[] = {
        /* 135 rows after a cache of 25, mask */
        {80, 72, 45, 70, 6, 2, 1, 1, 0, OX_DTYPE_BF16},
    };
    check_corners(problems, sizeof problems / sizeof problems[0]);
}

OX_TEST_MAIN(decode_corners_compute_what_the_cpu_computes,
             prompt_corners_compute_what_the_cpu_computes)
