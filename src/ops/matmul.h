/* The contract between the CPU matmul driver (matmul.c) and its SIMD
 * kernels (matmul_avx2.c, matmul_avx512.c), which are compiled for their
 * instruction sets and called only when the CPU has them.
 *
 * Packed operands, as the driver lays them out for one kc-deep slice of K:
 *   A micro-panel: kc x MR floats, k-major: a[k * MR + i] = A[row i][k]
 *   B micro-panel: kc x NR floats, k-major: b[k * NR + j] = B[k][column j]
 * both 64-byte aligned and zero-padded past the matrix edge. */
#ifndef OX_OPS_MATMUL_H
#define OX_OPS_MATMUL_H

#include <math.h>
#include <stdint.h>

#include "openxpu/tensor.h"

/* c[MR x NR] (rows ldc floats apart) = (accumulate ? c : 0) + a . b over kc,
 * each element summed from zero in order of k (with fused multiply-adds in
 * the SIMD kernels), then added to c. */
typedef void (*ox__mm_tile_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                               int accumulate);

/* Pack r <= R rows of kc floats (rows ld floats apart) transposed into a
 * kc x R panel: panel[k * R + i] = src[i * ld + k], zero for r <= i < R. */
typedef void (*ox__mm_pack_t_fn)(const float *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                                 float *panel);

/* y[r] = sum_k x[k] * w[r * row_stride + k] for r < rows: rows of k
 * contiguous elements of dtype `wtype` (F32, F16, BF16), row_stride in bytes;
 * x of dtype `xtype`: F32, or F16 with F16 or BF16 weights (kernels with a
 * halves function only). */
typedef void (*ox__mm_dot_fn)(const void *x, ox_dtype xtype, const void *w, int64_t row_stride,
                              ox_dtype wtype, int64_t k, int64_t rows, float *y);

/* A matrix-vector product with 16-bit weights reads its vector as halves:
 * in F32 a vector of 5632 elements (22 KiB) shares the 32 KiB first-level
 * cache with the weight stream, which evicts it, and one thread read F16
 * rows at 17 GB/s instead of 27 (as ggml does, for the same reason). To keep
 * the halves' range whatever the vector's, it is scaled by 2^e first, e =
 * 15 - the binary exponent of max |x| (frexp), so the largest element lands
 * in [2^14, 2^15); the sums are multiplied by 2^-e, exactly. Returns 2^e, or
 * 0 where the vector has a NaN or an infinity, or e would pass 100 (nothing
 * is converted then: the product keeps the F32 vector). */
static inline float ox__mm_half_scale(float max_abs)
{
    if (!(max_abs <= 3.4e38f)) return 0.0f; /* NaN or infinite */
    if (max_abs == 0.0f) return 1.0f;
    int e = 0;
    (void)frexpf(max_abs, &e);
    e = 15 - e;
    return e > 100 ? 0.0f : ldexpf(1.0f, e);
}

/* out[i] = x[i] * 2^e rounded to the nearest half (ties to even) for i < n,
 * 2^e = ox__mm_half_scale(max |x|); returns 2^e (0: nothing written). */
typedef float (*ox__mm_halves_fn)(const float *x, int64_t n, uint16_t *out);

/* y[j] += alpha * w[j] for j < n, w contiguous of dtype `wtype`. */
typedef void (*ox__mm_axpy_fn)(float alpha, const void *w, ox_dtype wtype, int64_t n, float *y);

/* The body of an ox__mm_dot_fn over a kernel file's always-inline
 * dot_rows(x, xtype, row, row_stride, wtype, k, 1, y): each row in turn,
 * with both dtypes constant in every instantiation. */
#define OX_MM_DOT_ROWS(dot_rows)                                                                  \
    do {                                                                                          \
        const char *wb_ = w;                                                                      \
        for (int64_t r_ = 0; r_ < rows; r_++) {                                                   \
            const char *row_ = wb_ + r_ * row_stride;                                             \
            if (xtype == OX_DTYPE_F16 && wtype == OX_DTYPE_F16)                                   \
                dot_rows(x, OX_DTYPE_F16, row_, row_stride, OX_DTYPE_F16, k, 1, y + r_);          \
            else if (xtype == OX_DTYPE_F16)                                                       \
                dot_rows(x, OX_DTYPE_F16, row_, row_stride, OX_DTYPE_BF16, k, 1, y + r_);         \
            else if (wtype == OX_DTYPE_F32)                                                       \
                dot_rows(x, OX_DTYPE_F32, row_, row_stride, OX_DTYPE_F32, k, 1, y + r_);          \
            else if (wtype == OX_DTYPE_F16)                                                       \
                dot_rows(x, OX_DTYPE_F32, row_, row_stride, OX_DTYPE_F16, k, 1, y + r_);          \
            else                                                                                  \
                dot_rows(x, OX_DTYPE_F32, row_, row_stride, OX_DTYPE_BF16, k, 1, y + r_);         \
        }                                                                                         \
    } while (0)

/* Name of the kernels ox__cpu_matmul uses with these CPU feature bits:
 * "avx512", "avx2" or "generic". Static string. */
const char *ox__cpu_matmul_kernels(uint64_t features);

#define OX_MM_AVX512_MR 14
#define OX_MM_AVX512_NR 32
#define OX_MM_AVX2_MR 6
#define OX_MM_AVX2_NR 16

#if defined(__x86_64__) || defined(_M_X64)
#define OX_MM_HAVE_X86 1
/* matmul_avx512.c: needs AVX-512 F, BW, VL (DQ with them) */
void ox__mm_tile_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                        int accumulate);
void ox__mm_dot_avx512(const void *x, ox_dtype xtype, const void *w, int64_t row_stride,
                       ox_dtype wtype, int64_t k, int64_t rows, float *y);
float ox__mm_halves_avx512(const float *x, int64_t n, uint16_t *out);
void ox__mm_axpy_avx512(float alpha, const void *w, ox_dtype wtype, int64_t n, float *y);
/* pack_t of F16 rows (ld in elements), converting as it loads. */
void ox__mm_pack_t_f16_avx512(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                              float *panel);
void ox__mm_pack_t_avx512(const float *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                          float *panel);

/* matmul_avx2.c: needs AVX2, FMA, F16C */
void ox__mm_tile_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                      int accumulate);
void ox__mm_dot_avx2(const void *x, ox_dtype xtype, const void *w, int64_t row_stride,
                     ox_dtype wtype, int64_t k, int64_t rows, float *y);
float ox__mm_halves_avx2(const float *x, int64_t n, uint16_t *out);
void ox__mm_axpy_avx2(float alpha, const void *w, ox_dtype wtype, int64_t n, float *y);
void ox__mm_pack_t_avx2(const float *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                        float *panel);
/* B panels of halves (F16 weights packed as stored) and the tile that
 * converts them as it loads them: the F32 tile's products, in its order. */
void ox__mm_tile_h_avx2(int64_t kc, const float *a, const uint16_t *b, float *c, int64_t ldc,
                        int accumulate);
void ox__mm_pack_t_h16_avx2(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                            uint16_t *panel);
void ox__mm_pack_t_f16_avx2(const uint16_t *src, int64_t ld, int64_t kc, int64_t r, int64_t R,
                            float *panel);
#endif

#endif /* OX_OPS_MATMUL_H */
