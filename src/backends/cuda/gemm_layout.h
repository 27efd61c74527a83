/* How one ox_matmul maps onto one strided-batched GEMM call of a
 * column-major vendor BLAS (cuBLAS here, rocBLAS in the HIP backend, which
 * includes this header).
 *
 * ox_matmul is row-major: dst[M x N] = op(a)[M x K] . op(b)[K x N]. A
 * row-major matrix read column-major is its transpose, so the BLAS computes
 * dst^T[N x M] = op(b)^T . op(a)^T, that is with BLAS A = b (m = N) and
 * BLAS B = a (n = M):
 *   b ne {N, K} (rows of N): column-major N x K, no transpose;
 *   b ne {K, N} (TRANS_B):   column-major K x N, transposed;
 *   a ne {K, M}:             column-major K x M, no transpose;
 *   a ne {M, K} (TRANS_A):   column-major M x K, transposed;
 *   dst ne {N, M}:           column-major N x M, ldc = row stride.
 * Only what one call can express is planned: unit stride along ne[0],
 * leading dimensions at least ne[0], one stride per batch (dims 2 and 3
 * flattened), and a's batch either matching b's or a single matrix for
 * every batch (stride 0). Anything else goes to the portable kernel. */
#ifndef OX_BACKENDS_GEMM_LAYOUT_H
#define OX_BACKENDS_GEMM_LAYOUT_H

#include <limits.h>
#include <stdint.h>

#include "core/backend.h"
#include "openxpu/ops.h"

typedef struct ox__gemm_layout {
    int trans_a, trans_b;  /* BLAS transposes of A (= b) and B (= a) */
    int m, n, k;           /* N, M, K */
    int lda, ldb, ldc;     /* elements */
    long long stride_a, stride_b, stride_c; /* elements between batches */
    int batch;
    uint64_t a_offset, b_offset, c_offset; /* bytes: b's, a's and dst's */
} ox__gemm_layout;

/* Leading dimension of a 2-D view in elements, or 0 if the BLAS cannot take
 * it (not unit stride along ne[0], a row stride below ne[0], misaligned). */
static inline int64_t ox__gemm_ld(const ox__native_tensor *t, int64_t esize)
{
    if (t->ne[0] > 1 && t->nb[0] != esize) return 0;
    if ((int64_t)(t->offset % (uint64_t)esize) != 0) return 0;
    if (t->ne[1] == 1) return t->ne[0]; /* one column: its stride is never used */
    if (t->nb[1] <= 0 || t->nb[1] % esize || t->nb[1] / esize < t->ne[0]) return 0;
    return t->nb[1] / esize;
}

/* The one stride, in elements, between consecutive matrices of t's batch
 * (dims 2 and 3 flattened, dim 2 fastest); -1 if there is none. */
static inline int64_t ox__gemm_batch_stride(const ox__native_tensor *t, int64_t esize)
{
    int64_t stride;
    if (t->ne[2] * t->ne[3] == 1) return 0;
    if (t->ne[3] == 1) stride = t->nb[2];
    else if (t->ne[2] == 1) stride = t->nb[3];
    else if (t->nb[3] == t->nb[2] * t->ne[2]) stride = t->nb[2];
    else return -1;
    return stride >= 0 && stride % esize == 0 ? stride / esize : -1;
}

/* Plan the call for dst = op(a) . op(b) (shapes already checked by the
 * core). Returns 1 and fills *g, or 0 if one call cannot express it. The
 * caller checks dtypes. */
static inline int ox__gemm_plan(const ox__native_tensor *dst, const ox__native_tensor *a,
                                const ox__native_tensor *b, unsigned flags, int64_t esize,
                                ox__gemm_layout *g)
{
    int64_t M = dst->ne[1], N = dst->ne[0];
    int64_t K = flags & OX_MATMUL_TRANS_A ? a->ne[1] : a->ne[0];
    int64_t batch = dst->ne[2] * dst->ne[3];
    int64_t lda = ox__gemm_ld(b, esize), ldb = ox__gemm_ld(a, esize), ldc = ox__gemm_ld(dst, 4);
    int64_t stride_a = ox__gemm_batch_stride(b, esize), stride_c = ox__gemm_batch_stride(dst, 4);
    int64_t stride_b = a->ne[2] * a->ne[3] == 1 ? 0
                       : a->ne[2] == b->ne[2] && a->ne[3] == b->ne[3]
                           ? ox__gemm_batch_stride(a, esize)
                           : -1;
    if (M < 1 || N < 1 || K < 1 || M > INT_MAX || N > INT_MAX || K > INT_MAX ||
        batch > INT_MAX || !lda || !ldb || !ldc || lda > INT_MAX || ldb > INT_MAX ||
        ldc > INT_MAX || stride_a < 0 || stride_b < 0 || stride_c < 0)
        return 0;
    *g = (ox__gemm_layout){
        .trans_a = (flags & OX_MATMUL_TRANS_B) != 0, .trans_b = (flags & OX_MATMUL_TRANS_A) != 0,
        .m = (int)N, .n = (int)M, .k = (int)K,
        .lda = (int)lda, .ldb = (int)ldb, .ldc = (int)ldc,
        .stride_a = stride_a, .stride_b = stride_b, .stride_c = stride_c, .batch = (int)batch,
        .a_offset = b->offset, .b_offset = a->offset, .c_offset = dst->offset};
    return 1;
}

#endif /* OX_BACKENDS_GEMM_LAYOUT_H */
