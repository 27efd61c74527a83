/* The OpenCL entry points the backend uses, loaded at run time with dlopen
 * from the ICD loader (libOpenCL.so.1), so the plugin has no link-time
 * OpenCL dependency and loads on machines without any OpenCL software. The
 * Khronos headers supply types and constants only. */
#ifndef OX_BACKENDS_OPENCL_API_H
#define OX_BACKENDS_OPENCL_API_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

/* What the ICD loader returns when it finds no platform (cl_khr_icd). */
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

/* X(return type, name, (parameters)): every function the backend calls,
 * all of them OpenCL 1.2 core API. */
#define OX__CL_FUNCTIONS(X)                                                                     \
    X(cl_int, clGetPlatformIDs, (cl_uint, cl_platform_id *, cl_uint *))                         \
    X(cl_int, clGetPlatformInfo, (cl_platform_id, cl_platform_info, size_t, void *, size_t *))  \
    X(cl_int, clGetDeviceIDs, (cl_platform_id, cl_device_type, cl_uint, cl_device_id *,         \
                               cl_uint *))                                                      \
    X(cl_int, clGetDeviceInfo, (cl_device_id, cl_device_info, size_t, void *, size_t *))        \
    X(cl_context, clCreateContext, (const cl_context_properties *, cl_uint,                     \
                                    const cl_device_id *,                                       \
                                    void(CL_CALLBACK *)(const char *, const void *, size_t,     \
                                                        void *),                                \
                                    void *, cl_int *))                                          \
    X(cl_int, clReleaseContext, (cl_context))                                                   \
    X(cl_command_queue, clCreateCommandQueue, (cl_context, cl_device_id,                        \
                                               cl_command_queue_properties, cl_int *))          \
    X(cl_int, clReleaseCommandQueue, (cl_command_queue))                                        \
    X(cl_int, clFlush, (cl_command_queue))                                                      \
    X(cl_int, clFinish, (cl_command_queue))                                                     \
    X(cl_mem, clCreateBuffer, (cl_context, cl_mem_flags, size_t, void *, cl_int *))             \
    X(cl_int, clReleaseMemObject, (cl_mem))                                                     \
    X(cl_int, clEnqueueWriteBuffer, (cl_command_queue, cl_mem, cl_bool, size_t, size_t,         \
                                     const void *, cl_uint, const cl_event *, cl_event *))      \
    X(cl_int, clEnqueueReadBuffer, (cl_command_queue, cl_mem, cl_bool, size_t, size_t, void *,  \
                                    cl_uint, const cl_event *, cl_event *))                     \
    X(cl_int, clEnqueueCopyBuffer, (cl_command_queue, cl_mem, cl_mem, size_t, size_t, size_t,   \
                                    cl_uint, const cl_event *, cl_event *))                     \
    X(cl_int, clEnqueueFillBuffer, (cl_command_queue, cl_mem, const void *, size_t, size_t,     \
                                    size_t, cl_uint, const cl_event *, cl_event *))             \
    X(cl_int, clEnqueueMarkerWithWaitList, (cl_command_queue, cl_uint, const cl_event *,        \
                                            cl_event *))                                        \
    X(cl_int, clEnqueueBarrierWithWaitList, (cl_command_queue, cl_uint, const cl_event *,       \
                                             cl_event *))                                       \
    X(cl_int, clWaitForEvents, (cl_uint, const cl_event *))                                     \
    X(cl_int, clGetEventInfo, (cl_event, cl_event_info, size_t, void *, size_t *))              \
    X(cl_int, clReleaseEvent, (cl_event))                                                       \
    X(cl_program, clCreateProgramWithSource, (cl_context, cl_uint, const char **,               \
                                              const size_t *, cl_int *))                        \
    X(cl_program, clCreateProgramWithBinary, (cl_context, cl_uint, const cl_device_id *,        \
                                              const size_t *, const unsigned char **, cl_int *, \
                                              cl_int *))                                        \
    X(cl_int, clBuildProgram, (cl_program, cl_uint, const cl_device_id *, const char *,         \
                               void(CL_CALLBACK *)(cl_program, void *), void *))                \
    X(cl_int, clGetProgramInfo, (cl_program, cl_program_info, size_t, void *, size_t *))        \
    X(cl_int, clGetProgramBuildInfo, (cl_program, cl_device_id, cl_program_build_info, size_t,  \
                                      void *, size_t *))                                        \
    X(cl_int, clReleaseProgram, (cl_program))                                                   \
    X(cl_kernel, clCreateKernel, (cl_program, const char *, cl_int *))                          \
    X(cl_int, clGetKernelInfo, (cl_kernel, cl_kernel_info, size_t, void *, size_t *))           \
    X(cl_int, clReleaseKernel, (cl_kernel))                                                     \
    X(cl_int, clSetKernelArg, (cl_kernel, cl_uint, size_t, const void *))                       \
    X(cl_int, clEnqueueNDRangeKernel, (cl_command_queue, cl_kernel, cl_uint, const size_t *,    \
                                       const size_t *, const size_t *, cl_uint,                 \
                                       const cl_event *, cl_event *))

/* The loaded library and one pointer per function above. */
typedef struct ox__cl_api {
    void *library; /* dlopen handle */
#define OX__CL_POINTER(ret, name, params) ret(CL_API_CALL *name) params;
    OX__CL_FUNCTIONS(OX__CL_POINTER)
#undef OX__CL_POINTER
} ox__cl_api;

/* Load the ICD loader and every function. On failure returns 0 and writes
 * why into `why` ("libOpenCL.so.1 not found", "libOpenCL.so.1 lacks
 * clEnqueueFillBuffer"); *api is then unusable and holds no library. */
int ox__cl_api_load(ox__cl_api *api, char *why, size_t cap);

/* Static name of an OpenCL status code ("CL_OUT_OF_RESOURCES"), or
 * "unknown OpenCL error" for codes outside the table. */
const char *ox__cl_error_name(cl_int code);

#endif /* OX_BACKENDS_OPENCL_API_H */
