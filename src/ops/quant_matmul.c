/* CPU matmul with quantized weights: dst = op(a) . bᵀ, b a quantized
 * matrix stored as N rows of K (TRANS_B), a F32. The LLM decode path.
 *
 *   a:   ne = {K, M, A2, A3} (or {M, K, ...} with TRANS_A), F32
 *   b:   ne = {K, N, B2, B3}, quantized, rows of K / block whole blocks
 *   dst: ne = {N, M, B2, B3}, F32
 *
 * Every row of a is first quantized to 8-bit blocks of 32, rounded as ggml
 * rounds its activations for the weights' type (ox__quantize_q8a: one
 * scale per 256 for the K types, a half-precision scale per 32 otherwise);
 * then each output is one integer dot
 * product per block of the weight row, scaled in float (quant.c scalar,
 * quant_avx2.c or quant_neon.c SIMD, chosen from the CPU's features). The
 * weight rows are shared out over the threads in big contiguous chunks;
 * each output is computed by one call in a fixed order, so the bits do not
 * depend on the number of threads.
 *
 * Error: against the F32 product with the dequantized weights, only the
 * activation's rounding counts: a step of max|a| / 127 per block, an
 * error of about step^2 / 12 per element: an NMSE near 2.5e-5 on the
 * result for normal activations in blocks of 32 (max about 2.1 sigma),
 * about twice that in blocks of 256 (max about 2.9 sigma). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "openxpu/device.h"
#include "ops/quant.h"

#define TASKS_PER_THREAD 4
/* Packed groups a pass over the chunks (quant.h): their carried
 * accumulators (16 floats a token and group) stay in the cache. */
#define PANEL_GROUPS 32
#define PANEL_FLOATS (PANEL_GROUPS * 16 * OX_QTILE_TOKENS)
#define SMALL_WORK ((int64_t)64 * 64 * 64) /* below this, one task */

static bool have_avx2(uint64_t features)
{
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    return (features & avx2) == avx2;
}

static bool have_vnni(uint64_t features)
{
    const uint64_t vnni = OX_FEATURE_BIT(OX_FEATURE_AVX512F) | OX_FEATURE_BIT(OX_FEATURE_AVX512BW) |
                          OX_FEATURE_BIT(OX_FEATURE_AVX512VL) |
                          OX_FEATURE_BIT(OX_FEATURE_AVX512VNNI);
    return have_avx2(features) && (features & vnni) == vnni;
}

#ifdef __aarch64__
/* quant_neon.c: NULL for a dtype it lacks; dotprod needs OX_FEATURE_ARM_DOTPROD. */
#define HAVE_NEON(features) ((features) & OX_FEATURE_BIT(OX_FEATURE_NEON))
#define HAVE_DOTPROD(features) ((features) & OX_FEATURE_BIT(OX_FEATURE_ARM_DOTPROD))
#endif

/* The kernels for one weight type: the x86 tile kernel, or else the
 * one-row kernel (NEON, scalar). */
typedef struct qkernels {
    ox__qtile_fn tile; /* eight weight rows by up to eight tokens */
    ox__qtile_packed_fn packed; /* the same on packed rows, or NULL */
    ox__qdot_fn dot;
} qkernels;

static qkernels choose_kernels(ox_dtype dtype, uint64_t features)
{
#ifdef OX_QUANT_HAVE_X86
    if (have_vnni(features) && ox__qtile_vnni(dtype))
        return (qkernels){ox__qtile_vnni(dtype), ox__qtile_packed_vnni(dtype), NULL};
    if (have_avx2(features) && ox__qtile_avx2(dtype))
        return (qkernels){ox__qtile_avx2(dtype), ox__qtile_packed_avx2(dtype), NULL};
#else
    (void)have_avx2;
    (void)have_vnni;
#endif
#ifdef __aarch64__
    if (HAVE_NEON(features) && ox__qdot_neon(dtype, HAVE_DOTPROD(features)))
        return (qkernels){NULL, NULL, ox__qdot_neon(dtype, HAVE_DOTPROD(features))};
#endif
    (void)features;
    return (qkernels){NULL, NULL, ox__qdot_scalar(dtype)};
}

bool ox__cpu_quant_packed(ox_dtype dtype, uint64_t features)
{
    return choose_kernels(dtype, features).packed != NULL;
}

const char *ox__cpu_quant_kernels(uint64_t features)
{
#ifdef OX_QUANT_HAVE_X86
    if (have_vnni(features)) return "avx512vnni";
    if (have_avx2(features)) return "avx2";
#else
    (void)have_avx2;
    (void)have_vnni;
#endif
#ifdef __aarch64__
    if (HAVE_NEON(features)) return HAVE_DOTPROD(features) ? "neon-dotprod" : "neon";
#endif
    (void)features;
    return "scalar";
}

typedef struct qmm_job {
    qkernels k;
    const ox__view *dst, *b;
    const ox__block_q8a *act; /* rows (m, j2, j3) of a at ((j3 * A2 + j2) * M + m) * blocks */
    int64_t M, N, K, a_ne2, a_ne3, blocks;
    int64_t chunk, chunks; /* weight rows per task, tasks per batch */
    char *scratch;         /* a thread's: the tile kernels' OX_QTILE_SCRATCH(K) bytes, then a panel's
                              PANEL_FLOATS accumulators */
    size_t scratch_bytes;  /* a thread's */
} qmm_job;

/* Packed rows [n0, n1) (whole groups) by tokens a, into d: panel by panel,
 * and in a panel chunk by chunk over its groups (quant.h), the
 * accumulators carried in acc. */
static void qmm_packed(const qmm_job *job, const char *packed, int64_t n0, int64_t n1,
                       const ox__block_q8a *a, int tokens, char *d, int64_t m, float *acc)
{
    const ox__view *dst = job->dst, *b = job->b;
    const int64_t groups = b->ne[1] / OX_QTILE_ROWS, block = ox_dtype_block(b->dtype);
    const int64_t blocks = job->K / block, chunk = ox__qpack_chunk(b->dtype, job->K);
    for (int64_t p0 = n0 / OX_QTILE_ROWS; p0 < n1 / OX_QTILE_ROWS; p0 += PANEL_GROUPS) {
        int64_t p1 = n1 / OX_QTILE_ROWS - p0 < PANEL_GROUPS ? n1 / OX_QTILE_ROWS : p0 + PANEL_GROUPS;
        size_t state = (size_t)(16 * tokens);
        memset(acc, 0, (size_t)(p1 - p0) * state * sizeof *acc);
        for (int64_t c0 = 0; c0 < blocks; c0 += chunk) {
            int64_t len = blocks - c0 < chunk ? blocks - c0 : chunk;
            job->k.packed(len * block, packed + ox__qpack_at(b->dtype, job->K, groups, p0, c0),
                          p1 - p0, a + c0 * block / OX_QK, job->blocks, tokens, acc);
        }
        for (int64_t g = p0; g < p1; g++) {
            const float *s = acc + (size_t)(g - p0) * state;
            for (int r = 0; r < tokens; r++)
                for (int j = 0; j < OX_QTILE_ROWS; j++) {
                    float y = s[8 * r + j] + s[8 * tokens + 8 * r + j];
                    memcpy(d + (OX_QTILE_ROWS * g + j) * dst->nb[0] + (m + r) * dst->nb[1], &y, sizeof y);
                }
        }
    }
}

static void qmm_task(void *arg, size_t task, int thread)
{
    const qmm_job *job = arg;
    const ox__view *dst = job->dst, *b = job->b;
    int64_t batch = (int64_t)task / job->chunks, n0 = (int64_t)task % job->chunks * job->chunk;
    int64_t n1 = job->N - n0 < job->chunk ? job->N : n0 + job->chunk;
    int64_t i2 = batch % dst->ne[2], i3 = batch / dst->ne[2];
    const char *w = b->data + i2 * b->nb[2] + i3 * b->nb[3];
    const ox__block_q8a *act =
        job->act + ((i3 % job->a_ne3) * job->a_ne2 + i2 % job->a_ne2) * job->M * job->blocks;
    char *d = dst->data + i2 * dst->nb[2] + i3 * dst->nb[3];
    /* packed rows: a 2-D b (one batch) and the kernels for them */
    const char *packed = job->k.packed && b->ne[2] * b->ne[3] == 1 ? b->packed : NULL;
    /* rows [n0, split) from the packed copy: the task's whole groups (n0 is a multiple of 8) */
    int64_t whole = b->ne[1] / OX_QTILE_ROWS * OX_QTILE_ROWS;
    int64_t split = packed ? (n1 < whole ? n1 : whole) : n0;
    if (split < n0) split = n0;
    if (job->k.tile) {
        char *scratch = job->scratch + (size_t)thread * job->scratch_bytes;
        /* Tiles of eight tokens by eight weight rows, token groups outside:
         * a group's activation blocks stay in the core's first-level cache
         * while the chunk's weight rows stream past them. */
        for (int64_t m = 0; m < job->M; m += OX_QTILE_TOKENS) {
            int tokens = (int)(job->M - m < OX_QTILE_TOKENS ? job->M - m : OX_QTILE_TOKENS);
            if (split > n0)
                qmm_packed(job, packed, n0, split, act + m * job->blocks, tokens, d, m,
                           (float *)(scratch + OX_QTILE_SCRATCH(job->K)));
            for (int64_t n = split; n < n1; n += OX_QTILE_ROWS) {
                int rows = (int)(n1 - n < OX_QTILE_ROWS ? n1 - n : OX_QTILE_ROWS);
                float y[OX_QTILE_ROWS * OX_QTILE_TOKENS];
                job->k.tile(job->K, w + n * b->nb[1], (size_t)b->nb[1], rows,
                            act + m * job->blocks, job->blocks, tokens, y, scratch);
                for (int r = 0; r < tokens; r++)
                    for (int j = 0; j < rows; j++)
                        memcpy(d + (n + j) * dst->nb[0] + (m + r) * dst->nb[1],
                               &y[OX_QTILE_ROWS * r + j], sizeof y[0]);
            }
        }
        return;
    }
    for (int64_t n = n0; n < n1; n++)
        for (int64_t m = 0; m < job->M; m++) {
            float y = job->k.dot(job->K, w + n * b->nb[1], act + m * job->blocks);
            memcpy(d + n * dst->nb[0] + m * dst->nb[1], &y, sizeof y);
        }
}

ox_status ox__cpu_matmul_quant(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                               const ox__view *b, unsigned flags)
{
    bool ta = flags & OX_MATMUL_TRANS_A;
    int64_t M = dst->ne[1], N = dst->ne[0], K = b->ne[0];
    int64_t am = ta ? a->nb[0] : a->nb[1], ak = ta ? a->nb[1] : a->nb[0];
    int64_t n_batch = dst->ne[2] * dst->ne[3], rows = M * a->ne[2] * a->ne[3];
    int threads = x->pool ? ox__pool_size(x->pool) : 1;
    qmm_job job = {.k = choose_kernels(b->dtype, x->features), .dst = dst, .b = b, .M = M, .N = N,
                   .K = K, .a_ne2 = a->ne[2], .a_ne3 = a->ne[3], .blocks = K / OX_QK};
    ox__block_q8a *act = malloc((size_t)(rows * job.blocks) * sizeof *act);
    float *row = malloc((size_t)K * sizeof *row);
    /* a thread's scratch: the tile kernels', then the panel's floats, 64-byte aligned */
    job.scratch_bytes = (OX_QTILE_SCRATCH(K) + PANEL_FLOATS * sizeof(float) + 63) / 64 * 64;
    if (job.k.tile) job.scratch = aligned_alloc(64, (size_t)threads * job.scratch_bytes);
    ox_status status = OX_ERR_OUT_OF_MEMORY;
    if (!act || !row || (job.k.tile && !job.scratch)) goto out_free;

    /* quantize every row of op(a), batch by batch */
    void (*quantize)(const float *, ox__block_q8a *, int64_t, ox_dtype) = ox__quantize_q8a;
#ifdef OX_QUANT_HAVE_X86
    if (have_avx2(x->features)) quantize = ox__quantize_q8a_avx2;
#endif
    for (int64_t r = 0; r < rows; r++) {
        int64_t m = r % M, j2 = r / M % a->ne[2], j3 = r / M / a->ne[2];
        const char *src = a->data + m * am + j2 * a->nb[2] + j3 * a->nb[3];
        if (ak == (int64_t)sizeof(float)) memcpy(row, src, (size_t)K * sizeof *row);
        else
            for (int64_t k = 0; k < K; k++) memcpy(&row[k], src + k * ak, sizeof *row);
        quantize(row, act + r * job.blocks, K, b->dtype);
    }
    job.act = act;

    /* About TASKS_PER_THREAD big chunks of weight rows a thread: threads
     * streaming far-apart rows draw the most memory bandwidth. */
    int64_t tasks = (TASKS_PER_THREAD * threads + n_batch - 1) / n_batch;
    job.chunk = (N + tasks - 1) / tasks;
    if (job.k.tile) /* whole tiles but the last */
        job.chunk = (job.chunk + OX_QTILE_ROWS - 1) / OX_QTILE_ROWS * OX_QTILE_ROWS;
    job.chunks = (N + job.chunk - 1) / job.chunk;
    size_t n_tasks = (size_t)(n_batch * job.chunks);
    if (threads > 1 && x->pool && M * N * K * n_batch >= SMALL_WORK)
        ox__pool_run(x->pool, n_tasks, qmm_task, &job);
    else
        for (size_t t = 0; t < n_tasks; t++) qmm_task(&job, t, 0);
    status = OX_OK;
out_free:
    free(job.scratch);
    free(row);
    free(act);
    return status;
}
