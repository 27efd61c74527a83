/* Loading the CUDA driver and NVRTC with dlopen, and the names of driver
 * status codes for error messages. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "backends/dl_load.h"
#include "backends/cuda/cuda_api.h"

int ox__cuda_api_load_driver(ox__cuda_api *api, char *why, size_t cap)
{
    static const char *const names[] = {"libcuda.so.1"};
    api->driver = ox__dl_open_first(names, 1, NULL);
    if (!api->driver) {
        snprintf(why, cap, "libcuda.so.1 not found (no NVIDIA driver)");
        return 0;
    }
#define OX__CU_RESOLVE(name, params)                                                          \
    if (!ox__dl_resolve(api->driver, #name, &api->name, sizeof api->name)) {                         \
        snprintf(why, cap, "libcuda.so.1 lacks %s (a driver older than CUDA 11)", #name);     \
        goto err_close;                                                                       \
    }
    OX__CU_FUNCTIONS(OX__CU_RESOLVE)
#undef OX__CU_RESOLVE
    if (!ox__dl_resolve(api->driver, "cuFuncGetParamInfo", &api->cuFuncGetParamInfo,
                 sizeof api->cuFuncGetParamInfo))
        api->cuFuncGetParamInfo = NULL;
    if (!ox__dl_resolve(api->driver, "cuDeviceGetPCIBusId", &api->cuDeviceGetPCIBusId,
                        sizeof api->cuDeviceGetPCIBusId))
        api->cuDeviceGetPCIBusId = NULL;
    return 1;

err_close:
    dlclose(api->driver);
    api->driver = NULL;
    return 0;
}

int ox__cuda_api_load_nvrtc(ox__cuda_api *api, char *why, size_t cap)
{
    static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2",
                                        "libnvrtc.so"};
    api->nvrtc = ox__dl_open_first(names, sizeof names / sizeof names[0], NULL);
    if (!api->nvrtc) {
        snprintf(why, cap, "libnvrtc not found (libnvrtc.so.13, .12 or .11.2 from the CUDA "
                           "toolkit compiles the kernels)");
        return 0;
    }
#define OX__NVRTC_RESOLVE(name, params)                                                       \
    if (!ox__dl_resolve(api->nvrtc, #name, &api->name, sizeof api->name)) {                          \
        snprintf(why, cap, "libnvrtc lacks %s (NVRTC older than 11.2)", #name);               \
        goto err_close;                                                                       \
    }
    OX__NVRTC_FUNCTIONS(OX__NVRTC_RESOLVE)
    OX__NVRTC_RESOLVE(nvrtcGetErrorString, ())
#undef OX__NVRTC_RESOLVE
    return 1;

err_close:
    dlclose(api->nvrtc);
    api->nvrtc = NULL;
    return 0;
}

const char *ox__cuda_error_name(const ox__cuda_api *api, CUresult code)
{
    const char *name = NULL;
    if (api->cuGetErrorName && api->cuGetErrorName(code, &name) == CUDA_SUCCESS && name)
        return name;
    return "unknown CUDA error";
}
