/* CPU matrix multiplication: ox__cpu_matmul, for every batch
 *   dst[M x N] = op(a)[M x K] . op(b)[K x N]     (see openxpu/ops.h)
 *
 * Large products follow the GotoBLAS/BLIS structure. K is cut into slices of
 * kc, N into blocks of nc columns; a B block (all of K x nc) is packed into
 * kc x NR micro-panels, converting F16/BF16 to F32 and resolving strides and
 * transposes, so the kernels only ever see packed F32. Rows of A are packed
 * mc at a time into kc x MR micro-panels, and an MR x NR register-blocked
 * micro-kernel (matmul_avx512.c, matmul_avx2.c, or the portable one here)
 * multiplies a pair of micro-panels into a tile of dst.
 *
 * Threads: for one big product the B block is packed by all threads, then
 * the rows (and, when rows are few, column ranges) of the block are shared
 * out as tasks, each packing its own A rows. Many batches or small products
 * run as independent tasks with private buffers; tiny ones on the calling
 * thread. Matrix-vector products (M == 1 or N == 1, LLM decoding) skip
 * packing: one dot product per output over contiguous weight rows, or a
 * scaled row sum (axpy) when the weight is stored the other way.
 *
 * Scratch (packed blocks) is kept by the calling thread between calls, so
 * repeated products do not fault in fresh pages each time.
 *
 * Determinism: every element of dst is summed in order of k within each kc
 * slice, slice after slice, with kc depending only on K and the kernel, so
 * the bits do not depend on the thread count or on how tasks fall; the
 * matrix-vector loops likewise sum each output the same way in any task. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "openxpu/device.h"
#include "ops/cpu_ops.h"
#include "ops/matmul.h"
#include "ops/quant.h"

/* ---- kernels ---------------------------------------------------------------- */

#define MAX_MR 16
#define MAX_NR 32

typedef struct kernel_set {
    const char *name;
    int64_t mr, nr;        /* micro-tile */
    int64_t kc, mc;        /* most K per slice, most rows per A block */
    ox__mm_tile_fn tile;
    ox__mm_dot_fn dot;
    ox__mm_axpy_fn axpy;
    ox__mm_pack_t_fn pack_t;
    ox__mm_halves_fn halves; /* NULL: dot reads F32 vectors only */
    /* pack_t straight from F16 rows, or NULL: converted into tmp first */
    void (*pack_t_f16)(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R, float *panel);
    /* or NULL: F16 rows of B packed as halves, and the tile that reads them */
    void (*pack_t_h16)(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                       uint16_t *panel);
    void (*tile_h)(int64_t kc, const float *a, const uint16_t *b, float *c, int64_t ldc,
                   int accumulate);
} kernel_set;

/* Floats per packed B block (K x nc): nc is chosen to keep it near this,
 * a few MB that stay in the last-level cache. */
#define B_BLOCK_FLOATS ((int64_t)1 << 21)
/* Below this many multiply-adds a product runs on the calling thread. */
#define SMALL_WORK ((int64_t)64 * 64 * 64)
/* Work is cut into about this many tasks a thread, so that threads that
 * progress unevenly (a busy machine) still finish together. */
#define TASKS_PER_THREAD 4
/* Most row tasks one shared block is cut into (guided_cuts). */
#define MAX_ROW_TASKS 128

/* dst[i] = src[i * stride] as float for i < n (src of a float dtype). */
static void load_run(ox_dtype type, const char *src, int64_t stride, int64_t n, float *dst)
{
    if (stride == (int64_t)ox_dtype_size(type)) {
        if (type == OX_DTYPE_F32) memcpy(dst, src, (size_t)n * sizeof(float));
        else ox__row_to_f32(type, src, dst, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) dst[i] = ox__load_f(type, src + i * stride);
}

#define GENERIC_MR 4
#define GENERIC_NR 16
#define GENERIC_RUN 256

static void tile_generic(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                         int accumulate)
{
    float acc[GENERIC_MR][GENERIC_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += GENERIC_MR, b += GENERIC_NR)
        for (int i = 0; i < GENERIC_MR; i++)
            for (int j = 0; j < GENERIC_NR; j++) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < GENERIC_MR; i++)
        for (int j = 0; j < GENERIC_NR; j++)
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

static void dot_generic(const void *xv, ox_dtype xtype, const void *w, int64_t row_stride,
                        ox_dtype wtype, int64_t k, int64_t rows, float *y)
{
    const float *x = xv; /* F32: this set has no halves function */
    (void)xtype;
    size_t size = ox_dtype_size(wtype);
    float run[GENERIC_RUN];
    for (int64_t r = 0; r < rows; r++) {
        const char *row = (const char *)w + r * row_stride;
        float sum = 0;
        for (int64_t i = 0; i < k; i += GENERIC_RUN) {
            int64_t n = k - i < GENERIC_RUN ? k - i : GENERIC_RUN;
            load_run(wtype, row + i * (int64_t)size, (int64_t)size, n, run);
            for (int64_t j = 0; j < n; j++) sum += x[i + j] * run[j];
        }
        y[r] = sum;
    }
}

static void axpy_generic(float alpha, const void *w, ox_dtype wtype, int64_t n, float *y)
{
    size_t size = ox_dtype_size(wtype);
    float run[GENERIC_RUN];
    for (int64_t i = 0; i < n; i += GENERIC_RUN) {
        int64_t len = n - i < GENERIC_RUN ? n - i : GENERIC_RUN;
        load_run(wtype, (const char *)w + i * (int64_t)size, (int64_t)size, len, run);
        for (int64_t j = 0; j < len; j++) y[i + j] += alpha * run[j];
    }
}

static void pack_t_generic(const float *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                           float *panel)
{
    for (int64_t k = 0; k < kc; k++) {
        float *d = panel + k * R;
        for (int64_t i = 0; i < r; i++) d[i] = src[i * ld + k];
        for (int64_t i = r; i < R; i++) d[i] = 0;
    }
}

static const kernel_set generic_kernels = {
    .name = "generic", .mr = GENERIC_MR, .nr = GENERIC_NR, .kc = 256, .mc = 64,
    .tile = tile_generic, .dot = dot_generic, .axpy = axpy_generic, .pack_t = pack_t_generic,
};

#ifdef OX_MM_HAVE_X86
static const kernel_set avx512_kernels = {
    .name = "avx512", .mr = OX_MM_AVX512_MR, .nr = OX_MM_AVX512_NR, .kc = 1024, .mc = 14 * 16,
    .tile = ox__mm_tile_avx512, .dot = ox__mm_dot_avx512, .axpy = ox__mm_axpy_avx512,
    .pack_t = ox__mm_pack_t_avx512, .pack_t_f16 = ox__mm_pack_t_f16_avx512,
    .halves = ox__mm_halves_avx512,
};
static const kernel_set avx2_kernels = {
    .name = "avx2", .mr = OX_MM_AVX2_MR, .nr = OX_MM_AVX2_NR, .kc = 512, .mc = 6 * 12,
    .tile = ox__mm_tile_avx2, .dot = ox__mm_dot_avx2, .axpy = ox__mm_axpy_avx2,
    .pack_t = ox__mm_pack_t_avx2, .pack_t_f16 = ox__mm_pack_t_f16_avx2,
    .halves = ox__mm_halves_avx2, .pack_t_h16 = ox__mm_pack_t_h16_avx2,
    .tile_h = ox__mm_tile_h_avx2,
};
#endif

static const kernel_set *choose_kernels(uint64_t features)
{
#ifdef OX_MM_HAVE_X86
    const uint64_t avx512 = OX_FEATURE_BIT(OX_FEATURE_AVX512F) |
                            OX_FEATURE_BIT(OX_FEATURE_AVX512BW) |
                            OX_FEATURE_BIT(OX_FEATURE_AVX512VL) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                            OX_FEATURE_BIT(OX_FEATURE_F16C);
    const uint64_t avx2 = OX_FEATURE_BIT(OX_FEATURE_AVX2) | OX_FEATURE_BIT(OX_FEATURE_FMA) |
                          OX_FEATURE_BIT(OX_FEATURE_F16C);
    if ((features & avx512) == avx512) return &avx512_kernels;
    if ((features & avx2) == avx2) return &avx2_kernels;
#else
    (void)features;
#endif
    return &generic_kernels;
}

const char *ox__cpu_matmul_kernels(uint64_t features)
{
    return choose_kernels(features)->name;
}

/* ---- packing ------------------------------------------------------------------ */

/* Pack n columns (of panels R wide) of a kc-deep slice: element (k, i) of
 * the source is at src + k * sk + i * si (bytes), and lands in panel i / R
 * at [k * R + i % R]; columns past n are zero. tmp holds R x kc floats. */
static void pack_panels(const kernel_set *ks, float *dst, const char *src, ox_dtype type,
                        int64_t sk, int64_t si, int64_t kc, int64_t n, int64_t R, float *tmp)
{
    int64_t size = (int64_t)ox_dtype_size(type);
    if (si == size) {
        /* source rows of k, read once in order and dealt out to the panels */
        for (int64_t k = 0; k < kc; k++) {
            const char *row = src + k * sk;
            for (int64_t p = 0; p * R < n; p++) {
                float *d = dst + (p * kc + k) * R;
                int64_t r = n - p * R < R ? n - p * R : R;
                if (type == OX_DTYPE_F32) {
                    const float *s = (const float *)(const void *)(row + p * R * size);
                    for (int64_t i = 0; i < r; i++) d[i] = s[i];
                } else {
                    load_run(type, row + p * R * size, size, r, d);
                }
                for (int64_t i = r; i < R; i++) d[i] = 0;
            }
        }
        return;
    }
    for (int64_t p = 0; p * R < n; p++) {
        float *panel = dst + p * kc * R;
        const char *base = src + p * R * si;
        int64_t r = n - p * R < R ? n - p * R : R;
        /* transpose r rows of kc elements, F32 rows in place, others
         * converted into tmp first */
        if (type == OX_DTYPE_F32 && sk == size && si % size == 0) {
            ks->pack_t((const float *)(const void *)base, si / size, kc, r, R, panel);
            continue;
        }
        if (type == OX_DTYPE_F16 && ks->pack_t_f16 && sk == size && si % size == 0 &&
            ((uintptr_t)base & 1u) == 0) {
            ks->pack_t_f16((const uint16_t *)(const void *)base, si / size, kc, r, R, panel);
            continue;
        }
        for (int64_t i = 0; i < r; i++) load_run(type, base + i * si, sk, kc, tmp + i * kc);
        ks->pack_t(tmp, kc, kc, r, R, panel);
    }
}

/* ---- the blocked product ------------------------------------------------------ */

/* One product, with op(a) (m, k) at a + m * am + k * ak and op(b) (k, n) at
 * b + k * bk + n * bn (bytes), dst (m, n) at d + m * dm + n * dn. */
typedef struct gemm_job {
    const kernel_set *ks;
    const ox__view *dst, *a, *b;
    int64_t M, N, K;
    int64_t am, ak, bk, bn, dm, dn;
    int64_t kc;            /* K slice (the last may be shorter) */
    int64_t nc, ncr;       /* columns per B block, and rounded up to NR */
    int64_t mc;            /* rows per A block / task */
    int64_t n_blocks;      /* B blocks per batch */
    bool b_half;           /* B's panels are halves (ks->pack_t_h16, ks->tile_h) */
    /* shared mode: the current batch and block */
    int64_t batch, jc, nc_cur;
    int64_t pack_tasks;       /* tasks packing the block */
    int64_t tasks_m, tasks_n; /* rows x columns split of the block into tasks */
    int64_t row_cut[MAX_ROW_TASKS + 1]; /* task tm's row tiles: [row_cut[tm], row_cut[tm+1]) */
    float *shared_b;
    /* per-thread scratch */
    float *scratch;
    size_t thread_floats, a_floats, tmp_floats;
} gemm_job;

static void batch_pointers(const gemm_job *job, int64_t batch, const char **a, const char **b,
                           char **d)
{
    const ox__view *dst = job->dst, *va = job->a, *vb = job->b;
    int64_t i2 = batch % dst->ne[2], i3 = batch / dst->ne[2];
    *a = va->data + (i2 % va->ne[2]) * va->nb[2] + (i3 % va->ne[3]) * va->nb[3];
    *b = vb->data + i2 * vb->nb[2] + i3 * vb->nb[3];
    *d = dst->data + i2 * dst->nb[2] + i3 * dst->nb[3];
}

/* Pack panels [p0, p1) of the B block at column jc: for every K slice,
 * slice s starting at k = pc lives at block + pc * ncr. */
static void pack_b_block(const gemm_job *job, const char *b, int64_t jc, int64_t nc, float *block,
                         int64_t p0, int64_t p1, float *tmp)
{
    int64_t NR = job->ks->nr;
    if (job->b_half) { /* F16 rows of K: each panel's halves as they are */
        uint16_t *hblock = (uint16_t *)(void *)block;
        for (int64_t pc = 0; pc < job->K; pc += job->kc) {
            int64_t kc = job->K - pc < job->kc ? job->K - pc : job->kc;
            for (int64_t p = p0; p < p1; p++) {
                int64_t col = p * NR, r = nc - col < NR ? nc - col : NR;
                const char *src = b + pc * job->bk + (jc + col) * job->bn;
                job->ks->pack_t_h16((const uint16_t *)(const void *)src, job->bn / 2, kc, r, NR,
                                    hblock + pc * job->ncr + p * kc * NR);
            }
        }
        return;
    }
    for (int64_t pc = 0; pc < job->K; pc += job->kc) {
        int64_t kc = job->K - pc < job->kc ? job->K - pc : job->kc;
        int64_t col = p0 * NR, cols = (p1 * NR < nc ? p1 * NR : nc) - col;
        pack_panels(job->ks, block + pc * job->ncr + p0 * kc * NR,
                    b + pc * job->bk + (jc + col) * job->bn, job->b->dtype, job->bk, job->bn, kc,
                    cols, NR, tmp);
    }
}

/* One tile: the kernel writes straight into dst when the tile is whole and
 * rows are unit-stride floats, else into a local tile that is then added. */
static void tile_call(const gemm_job *job, int64_t kc, const float *ap, const void *bp, float *c,
                      int64_t ldc, int accumulate)
{
    if (job->b_half) job->ks->tile_h(kc, ap, bp, c, ldc, accumulate);
    else job->ks->tile(kc, ap, bp, c, ldc, accumulate);
}

static void run_tile(const gemm_job *job, int64_t kc, const float *ap, const void *bp, char *d,
                     int64_t mr, int64_t nr, int accumulate)
{
    const kernel_set *ks = job->ks;
    if (mr == ks->mr && nr == ks->nr && job->dn == (int64_t)sizeof(float) &&
        job->dm % (int64_t)sizeof(float) == 0) {
        tile_call(job, kc, ap, bp, (float *)(void *)d, job->dm / (int64_t)sizeof(float), accumulate);
        return;
    }
    _Alignas(64) float tile[MAX_MR * MAX_NR];
    tile_call(job, kc, ap, bp, tile, ks->nr, 0);
    for (int64_t i = 0; i < mr; i++) {
        for (int64_t j = 0; j < nr; j++) {
            char *p = d + i * job->dm + j * job->dn;
            float v = tile[i * ks->nr + j];
            if (accumulate) {
                float old;
                memcpy(&old, p, sizeof old);
                v = old + v;
            }
            memcpy(p, &v, sizeof v);
        }
    }
}

/* dst rows [m0, m1) x block columns [j0, j1) (j0 a multiple of NR, relative
 * to jc) from a packed B block, packing the rows of A slice by slice. */
static void multiply_rows(const gemm_job *job, const char *a, char *d, const float *block,
                          int64_t jc, int64_t nc, int64_t m0, int64_t m1, int64_t j0, int64_t j1,
                          float *apack, float *tmp)
{
    const kernel_set *ks = job->ks;
    int64_t MR = ks->mr, NR = ks->nr;
    if (j1 > nc) j1 = nc;
    for (int64_t pc = 0; pc < job->K; pc += job->kc) {
        int64_t kc = job->K - pc < job->kc ? job->K - pc : job->kc;
        pack_panels(ks, apack, a + m0 * job->am + pc * job->ak, job->a->dtype, job->ak, job->am,
                    kc, m1 - m0, MR, tmp);
        /* element pc * ncr + (j / NR) kc NR of the block, floats or halves */
        for (int64_t j = j0; j < j1; j += NR) {
            int64_t at = pc * job->ncr + (j / NR) * kc * NR;
            const void *bp = job->b_half ? (const void *)((const uint16_t *)(const void *)block + at)
                                         : (const void *)(block + at);
            int64_t nr = j1 - j < NR ? j1 - j : NR;
            for (int64_t i = m0; i < m1; i += MR) {
                const float *ap = apack + ((i - m0) / MR) * kc * MR;
                int64_t mr = m1 - i < MR ? m1 - i : MR;
                run_tile(job, kc, ap, bp, d + i * job->dm + (jc + j) * job->dn, mr, nr, pc > 0);
            }
        }
    }
}

static float *thread_scratch(const gemm_job *job, int thread)
{
    return job->scratch + (size_t)thread * job->thread_floats;
}

/* Independent mode: task = (batch, B block), private buffers. */
static void independent_task(void *arg, size_t task, int thread)
{
    const gemm_job *job = arg;
    int64_t batch = (int64_t)task / job->n_blocks, jc = ((int64_t)task % job->n_blocks) * job->nc;
    int64_t nc = job->N - jc < job->nc ? job->N - jc : job->nc;
    float *apack = thread_scratch(job, thread), *tmp = apack + job->a_floats;
    float *block = tmp + job->tmp_floats;
    const char *a, *b;
    char *d;
    batch_pointers(job, batch, &a, &b, &d);
    pack_b_block(job, b, jc, nc, block, 0, (nc + job->ks->nr - 1) / job->ks->nr, tmp);
    for (int64_t m0 = 0; m0 < job->M; m0 += job->mc) {
        int64_t m1 = job->M - m0 < job->mc ? job->M : m0 + job->mc;
        multiply_rows(job, a, d, block, jc, nc, m0, m1, 0, nc, apack, tmp);
    }
}

/* Shared mode, step 1: task = a group of B panels of the current block,
 * dealt out evenly over pack_tasks tasks. */
static void pack_task(void *arg, size_t task, int thread)
{
    const gemm_job *job = arg;
    int64_t panels = (job->nc_cur + job->ks->nr - 1) / job->ks->nr;
    int64_t p0 = (int64_t)task * panels / job->pack_tasks;
    int64_t p1 = ((int64_t)task + 1) * panels / job->pack_tasks;
    float *tmp = thread_scratch(job, thread) + job->a_floats;
    const char *a, *b;
    char *d;
    batch_pointers(job, job->batch, &a, &b, &d);
    pack_b_block(job, b, job->jc, job->nc_cur, job->shared_b, p0, p1, tmp);
}

/* Shared mode, step 2: task = (rows, columns) of the current block: row
 * tiles as guided_cuts set them, column panels dealt out evenly. */
static void multiply_task(void *arg, size_t task, int thread)
{
    const gemm_job *job = arg;
    int64_t MR = job->ks->mr, NR = job->ks->nr;
    int64_t panels = (job->nc_cur + NR - 1) / NR;
    int64_t tm = (int64_t)task / job->tasks_n, tn = (int64_t)task % job->tasks_n;
    int64_t m0 = job->row_cut[tm] * MR, m_end = job->row_cut[tm + 1] * MR;
    int64_t j0 = tn * panels / job->tasks_n * NR, j1 = (tn + 1) * panels / job->tasks_n * NR;
    if (m_end > job->M) m_end = job->M;
    float *apack = thread_scratch(job, thread), *tmp = apack + job->a_floats;
    const char *a, *b;
    char *d;
    batch_pointers(job, job->batch, &a, &b, &d);
    for (; m0 < m_end; m0 += job->mc) {
        int64_t m1 = m_end - m0 < job->mc ? m_end : m0 + job->mc;
        multiply_rows(job, a, d, job->shared_b, job->jc, job->nc_cur, m0, m1, j0, j1, apack, tmp);
    }
}

static int64_t round_up(int64_t x, int64_t to)
{
    return (x + to - 1) / to * to;
}

/* n cut into pieces of at most `most`, evened out and rounded up to `align`. */
static int64_t even_piece(int64_t n, int64_t most, int64_t align)
{
    int64_t pieces = (n + most - 1) / most;
    return round_up((n + pieces - 1) / pieces, align);
}

/* Cut `tiles` row tiles into tasks for `threads` threads, setting
 * job->row_cut and job->tasks_m. With at least TASKS_PER_THREAD tiles a
 * thread the cut is guided: each task takes 1/(2 x threads) of the tiles
 * still left, so tasks shrink towards the end and the last one to finish
 * ends about one small task after the others, not a quarter of a thread's
 * share (every block ends at a barrier). The big early tasks keep each
 * packed B panel in cache over many tiles. Fewer tiles: one task each. */
static void guided_cuts(gemm_job *job, int64_t tiles, int threads)
{
    int64_t n = 0, at = 0;
    int64_t least = (tiles + MAX_ROW_TASKS - 1) / MAX_ROW_TASKS;
    bool guided = tiles >= (int64_t)TASKS_PER_THREAD * threads;
    job->row_cut[0] = 0;
    while (at < tiles) {
        int64_t take = guided ? (tiles - at + 2 * threads - 1) / (2 * threads) : 1;
        if (take < least) take = least;
        if (n == MAX_ROW_TASKS - 1 || take > tiles - at) take = tiles - at;
        at += take;
        job->row_cut[++n] = at;
    }
    job->tasks_m = n;
}

static void run_tasks(ox__pool *pool, bool parallel, size_t n, ox__pool_fn fn, void *arg)
{
    if (parallel && pool) {
        ox__pool_run(pool, n, fn, arg);
        return;
    }
    for (size_t t = 0; t < n; t++) fn(arg, t, 0);
}

static ox_status gemm(const ox__cpu_exec *x, gemm_job *job, int threads)
{
    const kernel_set *ks = job->ks;
    int64_t n_batch = job->dst->ne[2] * job->dst->ne[3];
    int64_t M = job->M, N = job->N, K = job->K;
    job->kc = even_piece(K, ks->kc, 1);
    int64_t nc_most = B_BLOCK_FLOATS / K / ks->nr * ks->nr;
    if (nc_most < 4 * ks->nr) nc_most = 4 * ks->nr;
    job->nc = even_piece(N, nc_most, ks->nr);
    job->ncr = round_up(job->nc, ks->nr);
    job->n_blocks = (N + job->nc - 1) / job->nc;
    job->mc = even_piece(M, ks->mc, ks->mr);
    /* F16 weights stored as rows of K: panels of halves, converted in the
     * tile (the same values and steps; the packer writes half the bytes) */
    job->b_half = ks->pack_t_h16 && job->b->dtype == OX_DTYPE_F16 && job->bk == 2 &&
                  job->bn % 2 == 0 && ((uintptr_t)job->b->data & 1u) == 0;

    int64_t work = M * N * K * n_batch;
    bool parallel = threads > 1 && work >= SMALL_WORK;
    /* Many products, or ones too small to share: one task each. */
    bool independent = !parallel || n_batch >= 2 * threads || M * N * K < 4 * SMALL_WORK;
    job->a_floats = (size_t)round_up(job->mc * job->kc, 16);
    job->tmp_floats = (size_t)round_up((ks->nr > ks->mr ? ks->nr : ks->mr) * job->kc, 16);
    size_t block_floats = (size_t)(K * job->ncr);
    job->thread_floats = job->a_floats + job->tmp_floats + (independent ? block_floats : 0);
    size_t total = job->thread_floats * (size_t)threads + (independent ? 0 : block_floats);
    job->scratch = ox__scratch_acquire(total);
    if (!job->scratch) return OX_ERR_OUT_OF_MEMORY;

    if (independent) {
        run_tasks(x->pool, parallel, (size_t)(n_batch * job->n_blocks), independent_task, job);
    } else {
        job->shared_b = job->scratch + job->thread_floats * (size_t)threads;
        /* Rows first (no packing is repeated), then columns when rows
         * are too few for TASKS_PER_THREAD tasks a thread. */
        int64_t tiles = (M + ks->mr - 1) / ks->mr, want = TASKS_PER_THREAD * threads;
        guided_cuts(job, tiles, threads);
        for (job->batch = 0; job->batch < n_batch; job->batch++) {
            for (job->jc = 0; job->jc < N; job->jc += job->nc) {
                job->nc_cur = N - job->jc < job->nc ? N - job->jc : job->nc;
                int64_t panels = (job->nc_cur + ks->nr - 1) / ks->nr;
                job->tasks_n = (want + job->tasks_m - 1) / job->tasks_m;
                if (job->tasks_n > panels) job->tasks_n = panels;
                job->pack_tasks = panels < want ? panels : want;
                ox__pool_run(x->pool, (size_t)job->pack_tasks, pack_task, job);
                ox__pool_run(x->pool, (size_t)(job->tasks_m * job->tasks_n), multiply_task, job);
            }
        }
    }
    ox__scratch_release(job->scratch);
    return OX_OK;
}

/* ---- matrix-vector ------------------------------------------------------------ */

/* y[r] = sum_k W[r][k] x[k] for every batch: W (r, k) at w + r * wr + k * wk
 * (bytes), its batch (i2 % W2, i3 % W3); x is converted, one vector per
 * (i2 % X2, i3 % X3); y[r] at y + r * yr. */
typedef struct gemv_job {
    const kernel_set *ks;
    const char *w;
    ox_dtype wtype;
    int64_t wr, wk, w_nb2, w_nb3, w_ne2, w_ne3;
    const float *x;
    const uint16_t *xh;  /* the vectors as scaled halves, or NULL */
    const float *xh_div; /* per vector, what the halves' sums are divided by (0: read x) */
    int64_t x_ne2, x_ne3;
    char *y;
    int64_t yr, y_nb2, y_nb3, y_ne2;
    int64_t rows, K;
    int64_t chunk, chunks; /* rows per task, tasks per batch */
} gemv_job;

#define GEMV_OUT 256 /* rows computed at a time */

static void gemv_task(void *arg, size_t task, int thread)
{
    const gemv_job *job = arg;
    (void)thread;
    int64_t batch = (int64_t)task / job->chunks, r0 = ((int64_t)task % job->chunks) * job->chunk;
    int64_t r_end = job->rows - r0 < job->chunk ? job->rows : r0 + job->chunk;
    int64_t i2 = batch % job->y_ne2, i3 = batch / job->y_ne2;
    const char *wb = job->w + (i2 % job->w_ne2) * job->w_nb2 + (i3 % job->w_ne3) * job->w_nb3;
    int64_t vec = (i3 % job->x_ne3) * job->x_ne2 + i2 % job->x_ne2;
    const float *x = job->x + vec * job->K;
    char *yb = job->y + i2 * job->y_nb2 + i3 * job->y_nb3;
    int64_t size = (int64_t)ox_dtype_size(job->wtype);
    float out[GEMV_OUT];
    for (; r0 < r_end; r0 += GEMV_OUT) {
        int64_t n = r_end - r0 < GEMV_OUT ? r_end - r0 : GEMV_OUT;
        const char *w = wb + r0 * job->wr;
        char *y = yb + r0 * job->yr;
        if (job->xh && job->xh_div[vec] != 0.0f) { /* xh: rows contiguous (gemv) */
            job->ks->dot(job->xh + vec * job->K, OX_DTYPE_F16, w, job->wr, job->wtype, job->K, n,
                         out);
            for (int64_t r = 0; r < n; r++) out[r] /= job->xh_div[vec];
        } else if (job->wk == size) {
            job->ks->dot(x, OX_DTYPE_F32, w, job->wr, job->wtype, job->K, n, out);
        } else if (job->wr == size) {
            memset(out, 0, (size_t)n * sizeof(float));
            for (int64_t k = 0; k < job->K; k++)
                job->ks->axpy(x[k], w + k * job->wk, job->wtype, n, out);
        } else {
            for (int64_t r = 0; r < n; r++) {
                float sum = 0;
                for (int64_t k = 0; k < job->K; k++)
                    sum += x[k] * ox__load_f(job->wtype, w + r * job->wr + k * job->wk);
                out[r] = sum;
            }
        }
        if (job->yr == (int64_t)sizeof(float)) memcpy(y, out, (size_t)n * sizeof(float));
        else
            for (int64_t r = 0; r < n; r++) memcpy(y + r * job->yr, &out[r], sizeof(float));
    }
}

/* xv: the vector operand, element k at data + k * stride, batch dims ne2/3. */
static ox_status gemv(const ox__cpu_exec *x, gemv_job *job, const ox__view *xv, int64_t x_stride,
                      int64_t n_batch, int threads)
{
    job->x_ne2 = xv->ne[2];
    job->x_ne3 = xv->ne[3];
    int64_t vecs = job->x_ne2 * job->x_ne3;
    /* halves (ox__mm_half_scale) for 16-bit weight rows: vecs * K floats,
     * then vecs * K halves, then vecs divisors */
    bool halves = job->ks->halves && job->wk == (int64_t)ox_dtype_size(job->wtype) &&
                  (job->wtype == OX_DTYPE_F16 || job->wtype == OX_DTYPE_BF16);
    int64_t floats = vecs * job->K + (halves ? (vecs * job->K + 1) / 2 + vecs : 0);
    float *xs = ox__scratch_acquire((size_t)floats);
    if (!xs) return OX_ERR_OUT_OF_MEMORY;
    for (int64_t i3 = 0; i3 < job->x_ne3; i3++)
        for (int64_t i2 = 0; i2 < job->x_ne2; i2++)
            load_run(xv->dtype, xv->data + i2 * xv->nb[2] + i3 * xv->nb[3], x_stride, job->K,
                     xs + (i3 * job->x_ne2 + i2) * job->K);
    job->x = xs;
    job->xh = NULL;
    if (halves) { /* per vector: one with a NaN or an infinity stays F32 (div 0) */
        uint16_t *xh = (uint16_t *)(xs + vecs * job->K);
        float *div = xs + vecs * job->K + (vecs * job->K + 1) / 2;
        for (int64_t v = 0; v < vecs; v++)
            div[v] = job->ks->halves(xs + v * job->K, job->K, xh + v * job->K);
        job->xh = xh;
        job->xh_div = div;
    }
    /* About TASKS_PER_THREAD big tasks a thread: threads streaming weights
     * from far-apart places draw more memory bandwidth than threads
     * taking turns over small neighbouring pieces (2x on the bench machine). */
    int64_t tasks = (TASKS_PER_THREAD * threads + n_batch - 1) / n_batch;
    int64_t chunk = round_up((job->rows + tasks - 1) / tasks, 16);
    job->chunk = chunk;
    job->chunks = (job->rows + chunk - 1) / chunk;
    bool parallel = threads > 1 && job->rows * job->K * n_batch >= SMALL_WORK;
    run_tasks(x->pool, parallel, (size_t)(n_batch * job->chunks), gemv_task, job);
    ox__scratch_release(xs);
    return OX_OK;
}

/* ---- entry -------------------------------------------------------------------- */

ox_status ox__cpu_matmul(const ox__cpu_exec *x, const ox__view *dst, const ox__view *a,
                         const ox__view *b, unsigned flags)
{
    if (ox_dtype_is_quantized(b->dtype)) return ox__cpu_matmul_quant(x, dst, a, b, flags);
    const kernel_set *ks = choose_kernels(x->features);
    int threads = x->pool ? ox__pool_size(x->pool) : 1;
    bool ta = flags & OX_MATMUL_TRANS_A, tb = flags & OX_MATMUL_TRANS_B;
    int64_t M = dst->ne[1], N = dst->ne[0], K = ta ? a->ne[1] : a->ne[0];
    int64_t am = ta ? a->nb[0] : a->nb[1], ak = ta ? a->nb[1] : a->nb[0];
    int64_t bk = tb ? b->nb[0] : b->nb[1], bn = tb ? b->nb[1] : b->nb[0];
    int64_t n_batch = dst->ne[2] * dst->ne[3];

    if (M == 1 || N == 1) {
        gemv_job job = {.ks = ks, .K = K, .y = dst->data, .y_nb2 = dst->nb[2],
                        .y_nb3 = dst->nb[3], .y_ne2 = dst->ne[2]};
        if (M == 1) { /* y[n] = x . column n of op(b); x = row 0 of op(a) */
            job.w = b->data;
            job.wtype = b->dtype;
            job.wr = bn;
            job.wk = bk;
            job.w_nb2 = b->nb[2];
            job.w_nb3 = b->nb[3];
            job.w_ne2 = b->ne[2];
            job.w_ne3 = b->ne[3];
            job.rows = N;
            job.yr = dst->nb[0];
            return gemv(x, &job, a, ak, n_batch, threads);
        }
        /* y[m] = row m of op(a) . x; x = column 0 of op(b) */
        job.w = a->data;
        job.wtype = a->dtype;
        job.wr = am;
        job.wk = ak;
        job.w_nb2 = a->nb[2];
        job.w_nb3 = a->nb[3];
        job.w_ne2 = a->ne[2];
        job.w_ne3 = a->ne[3];
        job.rows = M;
        job.yr = dst->nb[1];
        return gemv(x, &job, b, bk, n_batch, threads);
    }

    gemm_job job = {.ks = ks, .dst = dst, .a = a, .b = b, .M = M, .N = N, .K = K,
                    .am = am, .ak = ak, .bk = bk, .bn = bn, .dm = dst->nb[1], .dn = dst->nb[0]};
    return gemm(x, &job, threads);
}
