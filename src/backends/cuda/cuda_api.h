/* The CUDA driver API and NVRTC entry points the CUDA backend uses, loaded at
 * run time with dlopen (libcuda.so.1, libnvrtc.so.*), so the plugin links
 * neither and loads on machines without any NVIDIA software. The few types
 * and constants come from the public CUDA documentation (checked against
 * cuda.h and nvrtc.h of CUDA 13.0); no CUDA header is needed to build.
 *
 * Also the interface between the backend and its cuBLAS fast path
 * (cuda_blas.c). */
#ifndef OX_BACKENDS_CUDA_API_H
#define OX_BACKENDS_CUDA_API_H

#include <stddef.h>

#include "core/backend.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    CUDA_ERROR_INVALID_PTX = 218,
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CU_STREAM_NON_BLOCKING = 0x1,
    CU_EVENT_DISABLE_TIMING = 0x2,
    /* CUdevice_attribute */
    CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13, /* kHz */
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_INTEGRATED = 18,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
};

typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;
enum { NVRTC_SUCCESS = 0, NVRTC_ERROR_INVALID_OPTION = 5, NVRTC_ERROR_COMPILATION = 6 };

/* X(name, (parameters)): driver API functions, all returning CUresult, by
 * the symbol names cuda.h maps them to (the _v2 ones where it does). */
#define OX__CU_FUNCTIONS(X)                                                                   \
    X(cuGetErrorName, (CUresult, const char **))                                              \
    X(cuInit, (unsigned int))                                                                 \
    X(cuDriverGetVersion, (int *))                                                            \
    X(cuDeviceGetCount, (int *))                                                              \
    X(cuDeviceGet, (CUdevice *, int))                                                         \
    X(cuDeviceGetName, (char *, int, CUdevice))                                               \
    X(cuDeviceGetAttribute, (int *, int, CUdevice))                                           \
    X(cuDeviceTotalMem_v2, (size_t *, CUdevice))                                              \
    X(cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))                                      \
    X(cuDevicePrimaryCtxRelease_v2, (CUdevice))                                               \
    X(cuCtxPushCurrent_v2, (CUcontext))                                                       \
    X(cuCtxPopCurrent_v2, (CUcontext *))                                                      \
    X(cuMemAlloc_v2, (CUdeviceptr *, size_t))                                                 \
    X(cuMemFree_v2, (CUdeviceptr))                                                            \
    X(cuMemcpyHtoDAsync_v2, (CUdeviceptr, const void *, size_t, CUstream))                    \
    X(cuMemcpyDtoHAsync_v2, (void *, CUdeviceptr, size_t, CUstream))                          \
    X(cuMemcpyDtoDAsync_v2, (CUdeviceptr, CUdeviceptr, size_t, CUstream))                     \
    X(cuMemsetD8Async, (CUdeviceptr, unsigned char, size_t, CUstream))                        \
    X(cuMemsetD16Async, (CUdeviceptr, unsigned short, size_t, CUstream))                      \
    X(cuMemsetD32Async, (CUdeviceptr, unsigned int, size_t, CUstream))                        \
    X(cuStreamCreate, (CUstream *, unsigned int))                                             \
    X(cuStreamDestroy_v2, (CUstream))                                                         \
    X(cuStreamSynchronize, (CUstream))                                                        \
    X(cuStreamWaitEvent, (CUstream, CUevent, unsigned int))                                   \
    X(cuEventCreate, (CUevent *, unsigned int))                                               \
    X(cuEventRecord, (CUevent, CUstream))                                                     \
    X(cuEventQuery, (CUevent))                                                                \
    X(cuEventSynchronize, (CUevent))                                                          \
    X(cuEventDestroy_v2, (CUevent))                                                           \
    X(cuModuleLoadData, (CUmodule *, const void *))                                           \
    X(cuModuleUnload, (CUmodule))                                                             \
    X(cuModuleGetFunction, (CUfunction *, CUmodule, const char *))                            \
    X(cuLaunchKernel, (CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,    \
                       unsigned int, unsigned int, unsigned int, CUstream, void **, void **))

/* NVRTC functions, all returning nvrtcResult (nvrtcGetErrorString aside).
 * nvrtcGetCUBIN and the supported-architecture list need NVRTC 11.2. */
#define OX__NVRTC_FUNCTIONS(X)                                                                \
    X(nvrtcVersion, (int *, int *))                                                           \
    X(nvrtcGetNumSupportedArchs, (int *))                                                     \
    X(nvrtcGetSupportedArchs, (int *))                                                        \
    X(nvrtcCreateProgram, (nvrtcProgram *, const char *, const char *, int,                   \
                           const char *const *, const char *const *))                         \
    X(nvrtcDestroyProgram, (nvrtcProgram *))                                                  \
    X(nvrtcCompileProgram, (nvrtcProgram, int, const char *const *))                          \
    X(nvrtcGetProgramLogSize, (nvrtcProgram, size_t *))                                       \
    X(nvrtcGetProgramLog, (nvrtcProgram, char *))                                             \
    X(nvrtcGetPTXSize, (nvrtcProgram, size_t *))                                              \
    X(nvrtcGetPTX, (nvrtcProgram, char *))                                                    \
    X(nvrtcGetCUBINSize, (nvrtcProgram, size_t *))                                            \
    X(nvrtcGetCUBIN, (nvrtcProgram, char *))

typedef struct ox__cuda_api {
    void *driver; /* dlopen handles */
    void *nvrtc;
#define OX__CU_POINTER(name, params) CUresult(*name) params;
    OX__CU_FUNCTIONS(OX__CU_POINTER)
#undef OX__CU_POINTER
#define OX__NVRTC_POINTER(name, params) nvrtcResult(*name) params;
    OX__NVRTC_FUNCTIONS(OX__NVRTC_POINTER)
#undef OX__NVRTC_POINTER
    const char *(*nvrtcGetErrorString)(nvrtcResult);
    /* optional (driver 12.4 and later; NULL before): parameter layout of a
     * kernel, to check launches against it */
    CUresult (*cuFuncGetParamInfo)(CUfunction, size_t, size_t *, size_t *);
    /* optional (every driver since CUDA 4.1 has it; NULL if not): the PCI
     * address "dddd:bb:dd.f", for the energy meter's NVML lookup */
    CUresult (*cuDeviceGetPCIBusId)(char *, int, CUdevice);
} ox__cuda_api;

/* Load the driver (libcuda.so.1) and every driver function. Returns 0 and
 * writes why into `why` ("libcuda.so.1 not found") on failure. */
int ox__cuda_api_load_driver(ox__cuda_api *api, char *why, size_t cap);

/* Load NVRTC (the newest soname first). Returns 0 with `why` on failure. */
int ox__cuda_api_load_nvrtc(ox__cuda_api *api, char *why, size_t cap);

/* Static name of a driver status ("CUDA_ERROR_OUT_OF_MEMORY"), or "unknown
 * CUDA error". */
const char *ox__cuda_error_name(const ox__cuda_api *api, CUresult code);

/* ---- the cuBLAS fast path (cuda_blas.c) ---- */

typedef struct ox__cublas ox__cublas;

/* dst = op(a) . op(b) as native_matmul defines it (core/backend.h), with
 * cuBLAS on `stream`. *blas (the library, once per device) and *handle
 * (a cuBLAS handle bound to `stream`, once per queue: a handle switching
 * streams would share its workspace between them) are created on first
 * use. The device's context must be current and calls for one device
 * serialized. Returns OX_ERR_UNSUPPORTED, touching nothing, for a layout or
 * dtype cuBLAS cannot take or when libcublas is absent. `device` names the
 * device in messages. */
ox_status ox__cublas_matmul(ox__cublas **blas, void **handle, const ox__host *host,
                            const char *device, CUstream stream, const ox__native_tensor *dst,
                            const ox__native_tensor *a, const ox__native_tensor *b,
                            unsigned flags);

/* Destroy a queue's handle (NULL is fine); the device's context current. */
void ox__cublas_release(ox__cublas *blas, void *handle);

/* Free the device's library table (NULL is fine). */
void ox__cublas_free(ox__cublas *blas, const ox__host *host);

#endif /* OX_BACKENDS_CUDA_API_H */
