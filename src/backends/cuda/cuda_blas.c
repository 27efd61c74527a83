/* The cuBLAS fast path for matmul: libcublas opened with dlopen on first
 * use, one handle per queue, one cublasGemmStridedBatchedEx call per
 * ox_matmul with F32, F16 or BF16 inputs, F32 output and F32 accumulation
 * (CUBLAS_COMPUTE_32F: no TF32 shortcut for F32 inputs, so results stay
 * within the tolerance of the portable kernel). Layouts one call cannot
 * express, mixed input dtypes and a missing library give OX_ERR_UNSUPPORTED,
 * and the core runs the portable kernel instead. */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "backends/dl_load.h"
#include "backends/cuda/cuda_api.h"
#include "backends/cuda/gemm_layout.h"

/* From cublas_api.h and library_types.h (CUDA 11 to 13). */
typedef int cublasStatus_t;
typedef struct cublasContext *cublasHandle_t;
enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CUDA_R_32F = 0,
    CUDA_R_16F = 2,
    CUDA_R_16BF = 14,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_GEMM_DEFAULT = -1
};

struct ox__cublas {
    int usable; /* 0: no cuBLAS on this device (the reason was logged once) */
    cublasStatus_t (*create)(cublasHandle_t *);
    cublasStatus_t (*destroy)(cublasHandle_t);
    cublasStatus_t (*set_stream)(cublasHandle_t, CUstream);
    cublasStatus_t (*gemm)(cublasHandle_t, int, int, int, int, int, const void *, const void *,
                           int, int, long long, const void *, int, int, long long, const void *,
                           void *, int, int, long long, int, int, int);
};

/* Open cuBLAS, and create a first handle to see that it works on the
 * device. The library is never closed: like every vendor runtime, it may
 * leave threads behind. */
static ox__cublas *open_cublas(const ox__host *host, const char *device, cublasHandle_t *handle)
{
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"};
    ox__cublas *c = host->alloc(host->core, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    size_t which = 0;
    void *library = ox__dl_open_first(names, sizeof names / sizeof names[0], &which);
    const char *why = NULL;
    if (!library)
        why = "libcublas.so.13, .12 or .11 not found";
    else if (!ox__dl_resolve(library, "cublasCreate_v2", &c->create, sizeof c->create) ||
             !ox__dl_resolve(library, "cublasDestroy_v2", &c->destroy, sizeof c->destroy) ||
             !ox__dl_resolve(library, "cublasSetStream_v2", &c->set_stream, sizeof c->set_stream) ||
             !ox__dl_resolve(library, "cublasGemmStridedBatchedEx", &c->gemm, sizeof c->gemm))
        why = "libcublas lacks cublasGemmStridedBatchedEx";
    else if (c->create(handle) != CUBLAS_STATUS_SUCCESS)
        why = "cublasCreate_v2 failed";
    c->usable = why == NULL;
    if (why)
        host->log(host->core, OX_LOG_DEBUG, "cuda: no cuBLAS on %s (%s): matmul runs the portable "
                  "kernel", device, why);
    else
        host->log(host->core, OX_LOG_DEBUG, "cuda: matmul through cuBLAS (%s) on %s",
                  names[which], device);
    return c;
}

static int data_type(int dtype)
{
    return dtype == OX_DTYPE_F32 ? CUDA_R_32F : dtype == OX_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

ox_status ox__cublas_matmul(ox__cublas **blas, void **handle, const ox__host *host,
                            const char *device, CUstream stream, const ox__native_tensor *dst,
                            const ox__native_tensor *a, const ox__native_tensor *b,
                            unsigned flags)
{
    ox__gemm_layout g;
    int64_t esize = a->dtype == OX_DTYPE_F32 ? 4 : 2;
    if (a->dtype != b->dtype || dst->dtype != OX_DTYPE_F32 ||
        (a->dtype != OX_DTYPE_F32 && a->dtype != OX_DTYPE_F16 && a->dtype != OX_DTYPE_BF16) ||
        !ox__gemm_plan(dst, a, b, flags, esize, &g))
        return OX_ERR_UNSUPPORTED;
    cublasHandle_t h = *handle;
    cublasStatus_t r = CUBLAS_STATUS_SUCCESS;
    if (!*blas) *blas = open_cublas(host, device, &h);
    ox__cublas *c = *blas;
    if (!c || !c->usable) return OX_ERR_UNSUPPORTED;
    if (!h) r = c->create(&h);
    if (r == CUBLAS_STATUS_SUCCESS && !*handle) {
        r = c->set_stream(h, stream);
        if (r == CUBLAS_STATUS_SUCCESS) *handle = h;
        else c->destroy(h);
    }

    const float alpha = 1.0f, beta = 0.0f;
    const void *A = (const void *)((uintptr_t)b->buffer + g.a_offset);
    const void *B = (const void *)((uintptr_t)a->buffer + g.b_offset);
    void *C = (void *)((uintptr_t)dst->buffer + g.c_offset);
    int type = data_type(a->dtype);
    if (r == CUBLAS_STATUS_SUCCESS)
        r = c->gemm(*handle, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                    g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &alpha, A, type, g.lda,
                    g.stride_a, B, type, g.ldb, g.stride_b, &beta, C, CUDA_R_32F, g.ldc,
                    g.stride_c, g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (r == CUBLAS_STATUS_SUCCESS) return OX_OK;
    if (r == CUBLAS_STATUS_NOT_SUPPORTED) return OX_ERR_UNSUPPORTED; /* nothing ran */
    return host->fail(host->core, OX_ERR_BACKEND,
                      "cuda: cuBLAS failed: status %d on %s (gemm m %d, n %d, k %d, batch %d)", r,
                      device, g.m, g.n, g.k, g.batch);
}

void ox__cublas_release(ox__cublas *blas, void *handle)
{
    if (blas && handle) blas->destroy(handle);
}

void ox__cublas_free(ox__cublas *blas, const ox__host *host)
{
    if (blas) host->free(host->core, blas, sizeof *blas);
}
