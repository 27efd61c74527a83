/* The HIP runtime and hiprtc entry points the HIP backend uses, loaded at
 * run time with dlopen (libamdhip64.so.*, libhiprtc.so.*), so the plugin
 * links neither and loads on machines without ROCm or a Hygon DTK. Types
 * and constants follow hip_runtime_api.h and hiprtc.h; the attribute
 * numbers were checked to be the same from HIP 5.0 to 6.x.
 *
 * Also the interface between the backend and its rocBLAS fast path
 * (hip_blas.c). */
#ifndef OX_BACKENDS_HIP_API_H
#define OX_BACKENDS_HIP_API_H

#include <stddef.h>

#include "core/backend.h"

typedef int hipError_t;
typedef struct ihipStream_t *hipStream_t;
typedef struct ihipEvent_t *hipEvent_t;
typedef struct ihipModule_t *hipModule_t;
typedef struct ihipModuleSymbol_t *hipFunction_t;

enum {
    hipSuccess = 0,
    hipErrorOutOfMemory = 2,
    hipErrorInvalidImage = 200,
    hipErrorNoBinaryForGpu = 209,
    hipErrorInvalidKernelFile = 218,
    hipErrorNotFound = 500,
    hipErrorNotReady = 600,
    hipStreamNonBlocking = 0x1,
    hipEventDisableTiming = 0x2,
    /* hipDeviceAttribute_t */
    hipDeviceAttributeClockRate = 5, /* kHz */
    hipDeviceAttributeIntegrated = 16,
    hipDeviceAttributeMaxThreadsPerBlock = 56,
    hipDeviceAttributeMultiprocessorCount = 63,
    hipDeviceAttributeMaxSharedMemoryPerBlock = 74
};

typedef int hiprtcResult;
typedef struct _hiprtcProgram *hiprtcProgram;
enum { HIPRTC_SUCCESS = 0, HIPRTC_ERROR_INVALID_OPTION = 5, HIPRTC_ERROR_COMPILATION = 6 };

/* X(name, (parameters)): runtime functions, all returning hipError_t. */
#define OX__HIP_FUNCTIONS(X)                                                                  \
    X(hipInit, (unsigned int))                                                                \
    X(hipDriverGetVersion, (int *))                                                           \
    X(hipGetDeviceCount, (int *))                                                             \
    X(hipDeviceGet, (int *, int))                                                             \
    X(hipDeviceGetName, (char *, int, int))                                                   \
    X(hipDeviceGetAttribute, (int *, int, int))                                               \
    X(hipDeviceTotalMem, (size_t *, int))                                                     \
    X(hipSetDevice, (int))                                                                    \
    X(hipMalloc, (void **, size_t))                                                           \
    X(hipFree, (void *))                                                                      \
    X(hipMemcpyHtoDAsync, (void *, const void *, size_t, hipStream_t))                        \
    X(hipMemcpyDtoHAsync, (void *, void *, size_t, hipStream_t))                              \
    X(hipMemcpyDtoDAsync, (void *, void *, size_t, hipStream_t))                              \
    X(hipMemsetD8Async, (void *, unsigned char, size_t, hipStream_t))                         \
    X(hipMemsetD16Async, (void *, unsigned short, size_t, hipStream_t))                       \
    X(hipMemsetD32Async, (void *, int, size_t, hipStream_t))                                  \
    X(hipStreamCreateWithFlags, (hipStream_t *, unsigned int))                                \
    X(hipStreamDestroy, (hipStream_t))                                                        \
    X(hipStreamSynchronize, (hipStream_t))                                                    \
    X(hipStreamWaitEvent, (hipStream_t, hipEvent_t, unsigned int))                            \
    X(hipEventCreateWithFlags, (hipEvent_t *, unsigned int))                                  \
    X(hipEventRecord, (hipEvent_t, hipStream_t))                                              \
    X(hipEventQuery, (hipEvent_t))                                                            \
    X(hipEventSynchronize, (hipEvent_t))                                                      \
    X(hipEventDestroy, (hipEvent_t))                                                          \
    X(hipModuleLoadData, (hipModule_t *, const void *))                                       \
    X(hipModuleUnload, (hipModule_t))                                                         \
    X(hipModuleGetFunction, (hipFunction_t *, hipModule_t, const char *))                     \
    X(hipModuleLaunchKernel, (hipFunction_t, unsigned int, unsigned int, unsigned int,        \
                              unsigned int, unsigned int, unsigned int, unsigned int,         \
                              hipStream_t, void **, void **))

/* hiprtc functions, all returning hiprtcResult (hiprtcGetErrorString aside). */
#define OX__HIPRTC_FUNCTIONS(X)                                                               \
    X(hiprtcVersion, (int *, int *))                                                          \
    X(hiprtcCreateProgram, (hiprtcProgram *, const char *, const char *, int,                 \
                            const char *const *, const char *const *))                        \
    X(hiprtcDestroyProgram, (hiprtcProgram *))                                                \
    X(hiprtcCompileProgram, (hiprtcProgram, int, const char *const *))                        \
    X(hiprtcGetProgramLogSize, (hiprtcProgram, size_t *))                                     \
    X(hiprtcGetProgramLog, (hiprtcProgram, char *))                                           \
    X(hiprtcGetCodeSize, (hiprtcProgram, size_t *))                                           \
    X(hiprtcGetCode, (hiprtcProgram, char *))

typedef struct ox__hip_api {
    void *runtime; /* dlopen handles; hiprtc may be the runtime itself (HIP 5.2 and older) */
    void *hiprtc;
#define OX__HIP_POINTER(name, params) hipError_t(*name) params;
    OX__HIP_FUNCTIONS(OX__HIP_POINTER)
#undef OX__HIP_POINTER
#define OX__HIPRTC_POINTER(name, params) hiprtcResult(*name) params;
    OX__HIPRTC_FUNCTIONS(OX__HIPRTC_POINTER)
#undef OX__HIPRTC_POINTER
    const char *(*hipGetErrorName)(hipError_t);
    const char *(*hiprtcGetErrorString)(hiprtcResult);
    /* optional (NULL if the runtime lacks it): the PCI address
     * "dddd:bb:dd.f", for the energy meter's ROCm SMI lookup */
    hipError_t (*hipDeviceGetPCIBusId)(char *, int, int);
} ox__hip_api;

/* Load the HIP runtime (libamdhip64) and every runtime function. Returns 0
 * and writes why into `why` on failure. */
int ox__hip_api_load_runtime(ox__hip_api *api, char *why, size_t cap);

/* Load hiprtc. Returns 0 with `why` on failure. */
int ox__hip_api_load_hiprtc(ox__hip_api *api, char *why, size_t cap);

/* The target ID of device `ordinal` for hiprtc ("gfx90a:sramecc+:xnack-"),
 * from hipDeviceProp_t.gcnArchName, into arch. Returns 0 if unknown. */
int ox__hip_device_arch(const ox__hip_api *api, int ordinal, char *arch, size_t cap);

/* Static name of a runtime status ("hipErrorOutOfMemory"). */
const char *ox__hip_error_name(const ox__hip_api *api, hipError_t code);

/* ---- the rocBLAS fast path (hip_blas.c) ---- */

typedef struct ox__rocblas ox__rocblas;

/* dst = op(a) . op(b) as native_matmul defines it (core/backend.h), with
 * rocBLAS on `stream`. *blas (the library, once per device) and *handle (a
 * rocBLAS handle bound to `stream`, once per queue: rocBLAS must not switch
 * a handle between streams without synchronizing) are created on first
 * use. The device must be current and calls for one device serialized.
 * Returns OX_ERR_UNSUPPORTED, touching nothing, for what rocBLAS cannot take
 * or when librocblas is absent. */
ox_status ox__rocblas_matmul(ox__rocblas **blas, void **handle, const ox__host *host,
                             const char *device, hipStream_t stream,
                             const ox__native_tensor *dst, const ox__native_tensor *a,
                             const ox__native_tensor *b, unsigned flags);

/* Destroy a queue's handle (NULL is fine); the device current. */
void ox__rocblas_release(ox__rocblas *blas, void *handle);

/* Free the device's library table (NULL is fine). */
void ox__rocblas_free(ox__rocblas *blas, const ox__host *host);

#endif /* OX_BACKENDS_HIP_API_H */
