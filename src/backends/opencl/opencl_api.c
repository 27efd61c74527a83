/* Loading the OpenCL ICD loader with dlopen, and the names of OpenCL status
 * codes for error messages. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "backends/dl_load.h"
#include "backends/opencl/opencl_api.h"

/* X(code, name): the OpenCL 1.2 to 3.0 core codes, then the extension codes
 * drivers are known to return. Numbers are spelled out because headers for
 * OpenCL 1.2 do not define the newer ones. */
#define CL_ERROR_LIST(X)                                                                    \
    X(0, CL_SUCCESS) X(-1, CL_DEVICE_NOT_FOUND) X(-2, CL_DEVICE_NOT_AVAILABLE)              \
    X(-3, CL_COMPILER_NOT_AVAILABLE) X(-4, CL_MEM_OBJECT_ALLOCATION_FAILURE)                \
    X(-5, CL_OUT_OF_RESOURCES) X(-6, CL_OUT_OF_HOST_MEMORY)                                 \
    X(-7, CL_PROFILING_INFO_NOT_AVAILABLE) X(-8, CL_MEM_COPY_OVERLAP)                       \
    X(-9, CL_IMAGE_FORMAT_MISMATCH) X(-10, CL_IMAGE_FORMAT_NOT_SUPPORTED)                   \
    X(-11, CL_BUILD_PROGRAM_FAILURE) X(-12, CL_MAP_FAILURE)                                 \
    X(-13, CL_MISALIGNED_SUB_BUFFER_OFFSET) X(-14, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) \
    X(-15, CL_COMPILE_PROGRAM_FAILURE) X(-16, CL_LINKER_NOT_AVAILABLE)                      \
    X(-17, CL_LINK_PROGRAM_FAILURE) X(-18, CL_DEVICE_PARTITION_FAILED)                      \
    X(-19, CL_KERNEL_ARG_INFO_NOT_AVAILABLE) X(-30, CL_INVALID_VALUE)                       \
    X(-31, CL_INVALID_DEVICE_TYPE) X(-32, CL_INVALID_PLATFORM) X(-33, CL_INVALID_DEVICE)    \
    X(-34, CL_INVALID_CONTEXT) X(-35, CL_INVALID_QUEUE_PROPERTIES)                          \
    X(-36, CL_INVALID_COMMAND_QUEUE) X(-37, CL_INVALID_HOST_PTR)                            \
    X(-38, CL_INVALID_MEM_OBJECT) X(-39, CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)                \
    X(-40, CL_INVALID_IMAGE_SIZE) X(-41, CL_INVALID_SAMPLER) X(-42, CL_INVALID_BINARY)      \
    X(-43, CL_INVALID_BUILD_OPTIONS) X(-44, CL_INVALID_PROGRAM)                             \
    X(-45, CL_INVALID_PROGRAM_EXECUTABLE) X(-46, CL_INVALID_KERNEL_NAME)                    \
    X(-47, CL_INVALID_KERNEL_DEFINITION) X(-48, CL_INVALID_KERNEL)                          \
    X(-49, CL_INVALID_ARG_INDEX) X(-50, CL_INVALID_ARG_VALUE) X(-51, CL_INVALID_ARG_SIZE)   \
    X(-52, CL_INVALID_KERNEL_ARGS) X(-53, CL_INVALID_WORK_DIMENSION)                        \
    X(-54, CL_INVALID_WORK_GROUP_SIZE) X(-55, CL_INVALID_WORK_ITEM_SIZE)                    \
    X(-56, CL_INVALID_GLOBAL_OFFSET) X(-57, CL_INVALID_EVENT_WAIT_LIST)                     \
    X(-58, CL_INVALID_EVENT) X(-59, CL_INVALID_OPERATION) X(-60, CL_INVALID_GL_OBJECT)      \
    X(-61, CL_INVALID_BUFFER_SIZE) X(-62, CL_INVALID_MIP_LEVEL)                             \
    X(-63, CL_INVALID_GLOBAL_WORK_SIZE) X(-64, CL_INVALID_PROPERTY)                         \
    X(-65, CL_INVALID_IMAGE_DESCRIPTOR) X(-66, CL_INVALID_COMPILER_OPTIONS)                 \
    X(-67, CL_INVALID_LINKER_OPTIONS) X(-68, CL_INVALID_DEVICE_PARTITION_COUNT)             \
    X(-69, CL_INVALID_PIPE_SIZE) X(-70, CL_INVALID_DEVICE_QUEUE) X(-71, CL_INVALID_SPEC_ID) \
    X(-72, CL_MAX_SIZE_RESTRICTION_EXCEEDED)                                                \
    X(-1000, CL_INVALID_GL_SHAREGROUP_REFERENCE_KHR) X(-1001, CL_PLATFORM_NOT_FOUND_KHR)    \
    X(-1057, CL_DEVICE_PARTITION_FAILED_EXT) X(-1058, CL_INVALID_PARTITION_COUNT_EXT)       \
    X(-1059, CL_INVALID_PARTITION_NAME_EXT) X(-1092, CL_EGL_RESOURCE_NOT_ACQUIRED_KHR)      \
    X(-1093, CL_INVALID_EGL_OBJECT_KHR) X(-1094, CL_INVALID_ACCELERATOR_INTEL)              \
    X(-1095, CL_INVALID_ACCELERATOR_TYPE_INTEL)                                             \
    X(-1096, CL_INVALID_ACCELERATOR_DESCRIPTOR_INTEL)                                       \
    X(-1097, CL_ACCELERATOR_TYPE_NOT_SUPPORTED_INTEL)                                       \
    X(-1098, CL_INVALID_VA_API_MEDIA_ADAPTER_INTEL)                                         \
    X(-1099, CL_INVALID_VA_API_MEDIA_SURFACE_INTEL)                                         \
    X(-1100, CL_VA_API_MEDIA_SURFACE_ALREADY_ACQUIRED_INTEL)                                \
    X(-1101, CL_VA_API_MEDIA_SURFACE_NOT_ACQUIRED_INTEL)                                    \
    X(-1143, CL_COMMAND_TERMINATED_ITSELF_WITH_FAILURE_ARM)

const char *ox__cl_error_name(cl_int code)
{
    switch (code) {
#define CL_ERROR_CASE(value, name) \
    case value:                    \
        return #name;
        CL_ERROR_LIST(CL_ERROR_CASE)
#undef CL_ERROR_CASE
    }
    return "unknown OpenCL error";
}

/* The ICD loader's soname, then the development symlink some systems have
 * instead. */
static const char *const library_names[] = {"libOpenCL.so.1", "libOpenCL.so"};

int ox__cl_api_load(ox__cl_api *api, char *why, size_t cap)
{
    memset(api, 0, sizeof *api);
    api->library = ox__dl_open_first(library_names,
                                     sizeof library_names / sizeof library_names[0], NULL);
    if (!api->library) {
        snprintf(why, cap, "%s not found", library_names[0]);
        return 0;
    }
#define OX__CL_RESOLVE(ret, name, params)                                                 \
    if (!ox__dl_resolve(api->library, #name, &api->name, sizeof api->name)) {           \
        snprintf(why, cap, "%s lacks %s (an OpenCL runtime older than 1.2)",            \
                 library_names[0], #name);                                              \
        goto err_close;                                                                 \
    }
    OX__CL_FUNCTIONS(OX__CL_RESOLVE)
#undef OX__CL_RESOLVE
    return 1;

err_close:
    dlclose(api->library);
    memset(api, 0, sizeof *api);
    return 0;
}
