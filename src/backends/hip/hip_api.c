/* Loading the HIP runtime and hiprtc with dlopen, the GPU architecture of a
 * device, and the names of HIP status codes. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "backends/dl_load.h"
#include "backends/hip/hip_api.h"

int ox__hip_api_load_runtime(ox__hip_api *api, char *why, size_t cap)
{
    /* ROCm 7, 6, 5; the unversioned name for a Hygon DTK or a custom build */
    static const char *const names[] = {"libamdhip64.so.7", "libamdhip64.so.6",
                                        "libamdhip64.so.5", "libamdhip64.so"};
    api->runtime = ox__dl_open_first(names, sizeof names / sizeof names[0], NULL);
    if (!api->runtime) {
        snprintf(why, cap, "libamdhip64.so not found (no ROCm or DTK runtime)");
        return 0;
    }
#define OX__HIP_RESOLVE(name, params)                                                         \
    if (!ox__dl_resolve(api->runtime, #name, &api->name, sizeof api->name)) {                        \
        snprintf(why, cap, "libamdhip64 lacks %s (a runtime older than HIP 5)", #name);       \
        goto err_close;                                                                       \
    }
    OX__HIP_FUNCTIONS(OX__HIP_RESOLVE)
    OX__HIP_RESOLVE(hipGetErrorName, ())
#undef OX__HIP_RESOLVE
    if (!ox__dl_resolve(api->runtime, "hipDeviceGetPCIBusId", &api->hipDeviceGetPCIBusId,
                        sizeof api->hipDeviceGetPCIBusId))
        api->hipDeviceGetPCIBusId = NULL;
    return 1;

err_close:
    dlclose(api->runtime);
    api->runtime = NULL;
    return 0;
}

int ox__hip_api_load_hiprtc(ox__hip_api *api, char *why, size_t cap)
{
    /* libhiprtc is its own library from ROCm 5.3; before, the runtime holds it */
    static const char *const names[] = {"libhiprtc.so.7", "libhiprtc.so.6", "libhiprtc.so.5",
                                        "libhiprtc.so"};
    api->hiprtc = ox__dl_open_first(names, sizeof names / sizeof names[0], NULL);
    void *library = api->hiprtc ? api->hiprtc : api->runtime;
#define OX__HIPRTC_RESOLVE(name, params)                                                      \
    if (!ox__dl_resolve(library, #name, &api->name, sizeof api->name)) {                             \
        snprintf(why, cap, "hiprtc not found (libhiprtc.so, or %s in libamdhip64)", #name);   \
        return 0;                                                                             \
    }
    OX__HIPRTC_FUNCTIONS(OX__HIPRTC_RESOLVE)
    OX__HIPRTC_RESOLVE(hiprtcGetErrorString, ())
#undef OX__HIPRTC_RESOLVE
    return 1;
}

/* hipDeviceProp_t has no stable layout: HIP 6 changed it and versioned the
 * query (hipGetDevicePropertiesR0600), keeping hipGetDeviceProperties with
 * the HIP 5 layout for old binaries. hiprtc itself finds the architecture
 * the same way: the R0600 symbol if present, else the old one. The offsets
 * of gcnArchName (char[256]) were computed from hip_runtime_api.h: 396 in
 * every HIP 5.x layout (hipDeviceProp_tR0000), 1160 in R0600 (HIP 6.0 to
 * 7). The properties go to a buffer larger than either struct (792 and 1472
 * bytes), and a result that does not start with "gfx" counts as unknown. */
int ox__hip_device_arch(const ox__hip_api *api, int ordinal, char *arch, size_t cap)
{
    union {
        char bytes[4096];
        long double align;
    } props;
    hipError_t (*query)(void *, int) = NULL;
    size_t offset = 1160;
    if (!ox__dl_resolve(api->runtime, "hipGetDevicePropertiesR0600", &query, sizeof query)) {
        offset = 396;
        if (!ox__dl_resolve(api->runtime, "hipGetDeviceProperties", &query, sizeof query)) return 0;
    }
    memset(props.bytes, 0, sizeof props.bytes);
    if (query(props.bytes, ordinal) != hipSuccess) return 0;
    const char *name = props.bytes + offset;
    if (strncmp(name, "gfx", 3) != 0 || !memchr(name, '\0', 256)) return 0;
    snprintf(arch, cap, "%s", name);
    return 1;
}

const char *ox__hip_error_name(const ox__hip_api *api, hipError_t code)
{
    const char *name = api->hipGetErrorName ? api->hipGetErrorName(code) : NULL;
    return name ? name : "unknown HIP error";
}
