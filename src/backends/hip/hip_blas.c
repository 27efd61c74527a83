/* The rocBLAS fast path for matmul on HIP devices: librocblas opened with
 * dlopen on first use, one handle per queue, one
 * rocblas_gemm_strided_batched_ex call per ox_matmul with F32, F16 or BF16
 * inputs, F32 output and F32 compute, planned exactly as the cuBLAS path
 * (backends/cuda/gemm_layout.h). Untested on hardware like the rest of the
 * HIP backend; OX_NATIVE_LIBS=0 turns it off. Whatever it cannot take gives
 * OX_ERR_UNSUPPORTED and the portable kernel runs. */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "backends/dl_load.h"
#include "backends/cuda/gemm_layout.h"
#include "backends/hip/hip_api.h"

/* From rocblas-types.h (rocBLAS 2 to 5, ROCm 5 to 7); rocblas_int is the
 * default 32-bit build's. */
typedef int rocblas_status;
typedef struct _rocblas_handle *rocblas_handle;
enum {
    rocblas_status_success = 0,
    rocblas_status_not_implemented = 2,
    rocblas_operation_none = 111,
    rocblas_operation_transpose = 112,
    rocblas_datatype_f16_r = 150,
    rocblas_datatype_f32_r = 151,
    rocblas_datatype_bf16_r = 168,
    rocblas_gemm_algo_standard = 0
};

struct ox__rocblas {
    int usable; /* 0: no rocBLAS on this device (the reason was logged once) */
    rocblas_status (*create)(rocblas_handle *);
    rocblas_status (*destroy)(rocblas_handle);
    rocblas_status (*set_stream)(rocblas_handle, hipStream_t);
    rocblas_status (*gemm)(rocblas_handle, int, int, int, int, int, const void *, const void *,
                           int, int, int64_t, const void *, int, int, int64_t, const void *,
                           const void *, int, int, int64_t, void *, int, int, int64_t, int, int,
                           int, int32_t, uint32_t);
};

/* Open rocBLAS, and create a first handle to see that it works on the
 * current device; the library is never closed. */
static ox__rocblas *open_rocblas(const ox__host *host, const char *device, rocblas_handle *handle)
{
    static const char *const names[] = {"librocblas.so.5", "librocblas.so.4", "librocblas.so.3",
                                        "librocblas.so.0", "librocblas.so"};
    ox__rocblas *c = host->alloc(host->core, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    size_t which = 0;
    void *library = ox__dl_open_first(names, sizeof names / sizeof names[0], &which);
    const char *why = NULL;
    if (!library)
        why = "librocblas.so not found";
    else if (!ox__dl_resolve(library, "rocblas_create_handle", &c->create, sizeof c->create) ||
             !ox__dl_resolve(library, "rocblas_destroy_handle", &c->destroy, sizeof c->destroy) ||
             !ox__dl_resolve(library, "rocblas_set_stream", &c->set_stream, sizeof c->set_stream) ||
             !ox__dl_resolve(library, "rocblas_gemm_strided_batched_ex", &c->gemm, sizeof c->gemm))
        why = "librocblas lacks rocblas_gemm_strided_batched_ex";
    else if (c->create(handle) != rocblas_status_success)
        why = "rocblas_create_handle failed";
    c->usable = why == NULL;
    if (why)
        host->log(host->core, OX_LOG_DEBUG, "hip: no rocBLAS on %s (%s): matmul runs the portable "
                  "kernel", device, why);
    else
        host->log(host->core, OX_LOG_DEBUG, "hip: matmul through rocBLAS (%s) on %s",
                  names[which], device);
    return c;
}

ox_status ox__rocblas_matmul(ox__rocblas **blas, void **handle, const ox__host *host,
                             const char *device, hipStream_t stream,
                             const ox__native_tensor *dst, const ox__native_tensor *a,
                             const ox__native_tensor *b, unsigned flags)
{
    ox__gemm_layout g;
    int64_t esize = a->dtype == OX_DTYPE_F32 ? 4 : 2;
    if (a->dtype != b->dtype || dst->dtype != OX_DTYPE_F32 ||
        (a->dtype != OX_DTYPE_F32 && a->dtype != OX_DTYPE_F16 && a->dtype != OX_DTYPE_BF16) ||
        !ox__gemm_plan(dst, a, b, flags, esize, &g))
        return OX_ERR_UNSUPPORTED;
    rocblas_handle h = *handle;
    rocblas_status r = rocblas_status_success;
    if (!*blas) *blas = open_rocblas(host, device, &h);
    ox__rocblas *c = *blas;
    if (!c || !c->usable) return OX_ERR_UNSUPPORTED;
    if (!h) r = c->create(&h);
    if (r == rocblas_status_success && !*handle) {
        r = c->set_stream(h, stream);
        if (r == rocblas_status_success) *handle = h;
        else c->destroy(h);
    }

    const float alpha = 1.0f, beta = 0.0f;
    const void *A = (const void *)((uintptr_t)b->buffer + g.a_offset);
    const void *B = (const void *)((uintptr_t)a->buffer + g.b_offset);
    void *C = (void *)((uintptr_t)dst->buffer + g.c_offset);
    int type = a->dtype == OX_DTYPE_F32   ? rocblas_datatype_f32_r
               : a->dtype == OX_DTYPE_F16 ? rocblas_datatype_f16_r
                                          : rocblas_datatype_bf16_r;
    if (r == rocblas_status_success)
        r = c->gemm(*handle, g.trans_a ? rocblas_operation_transpose : rocblas_operation_none,
                    g.trans_b ? rocblas_operation_transpose : rocblas_operation_none, g.m, g.n,
                    g.k, &alpha, A, type, g.lda, g.stride_a, B, type, g.ldb, g.stride_b, &beta, C,
                    rocblas_datatype_f32_r, g.ldc, g.stride_c, C, rocblas_datatype_f32_r, g.ldc,
                    g.stride_c, g.batch, rocblas_datatype_f32_r, rocblas_gemm_algo_standard, 0,
                    0);
    if (r == rocblas_status_success) return OX_OK;
    if (r == rocblas_status_not_implemented) return OX_ERR_UNSUPPORTED; /* nothing ran */
    return host->fail(host->core, OX_ERR_BACKEND,
                      "hip: rocBLAS failed: status %d on %s (gemm m %d, n %d, k %d, batch %d)", r,
                      device, g.m, g.n, g.k, g.batch);
}

void ox__rocblas_release(ox__rocblas *blas, void *handle)
{
    if (blas && handle) blas->destroy(handle);
}

void ox__rocblas_free(ox__rocblas *blas, const ox__host *host)
{
    if (blas) host->free(host->core, blas, sizeof *blas);
}
