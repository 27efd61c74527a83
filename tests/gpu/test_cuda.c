/* The CUDA backend plugin. Everywhere: it loads, and without an NVIDIA
 * driver reports zero devices with the reason (note, debug log, selection
 * error). On a machine with an NVIDIA GPU also: device info, memory,
 * transfers, fills, queues and events, kernel builds through NVRTC and
 * the disk cache, launches, cuBLAS and the portable kernel for matmul
 * against the CPU, and host allocation failures. Cases that need a GPU are
 * skipped, saying why, when there is none. */
#ifndef OX_TEST_GPU_PLUGIN
#define OX_TEST_GPU_PLUGIN ""
#endif

#define GPU_BACKEND "cuda"
#define GPU_PLUGIN OX_TEST_GPU_PLUGIN
#define GPU_RUNTIME "libcuda.so.1"
#define GPU_RUNTIME_LIBRARIES "libcuda.so.1"
#define GPU_BLAS "cuBLAS"
#define GPU_BLAS_LIBRARIES "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"
#define GPU_PARAMETER_SYMBOL "cuFuncGetParamInfo"

#include "gpu/gpu_cases.h"

OX_TEST_MAIN(plugin_loads_and_explains, selection_without_device_names_the_reason,
             device_info_is_sane, buffer_round_trips_and_views, fill_patterns,
             copies_within_and_across_devices, queues_events_and_waits,
             kernel_build_launch_and_disk_cache, build_errors_and_missing_kernels,
             concurrent_launches_of_one_kernel, matmul_vendor_blas_matches_cpu,
             matmul_kernel_alone_matches_cpu, host_allocation_failures)
