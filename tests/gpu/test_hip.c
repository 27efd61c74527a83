/* The HIP backend plugin (AMD GPUs, Hygon DCUs). Everywhere: it loads, and
 * without a HIP runtime reports zero devices with the reason (note, debug
 * log, selection error). On a machine with a HIP device also the cases of
 * the CUDA test (gpu_cases.h), with rocBLAS as the vendor BLAS; none has
 * run on hardware yet. Cases that need a device are skipped, saying why,
 * when there is none. */
#ifndef OX_TEST_GPU_PLUGIN
#define OX_TEST_GPU_PLUGIN ""
#endif

#define GPU_BACKEND "hip"
#define GPU_PLUGIN OX_TEST_GPU_PLUGIN
#define GPU_RUNTIME "libamdhip64.so"
#define GPU_RUNTIME_LIBRARIES "libamdhip64.so.7", "libamdhip64.so.6", "libamdhip64.so.5", "libamdhip64.so"
#define GPU_BLAS "rocBLAS"
#define GPU_BLAS_LIBRARIES                                                                    \
    "librocblas.so.5", "librocblas.so.4", "librocblas.so.3", "librocblas.so.0", "librocblas.so"

#include "gpu/gpu_cases.h"

OX_TEST_MAIN(plugin_loads_and_explains, selection_without_device_names_the_reason,
             device_info_is_sane, buffer_round_trips_and_views, fill_patterns,
             copies_within_and_across_devices, queues_events_and_waits,
             kernel_build_launch_and_disk_cache, build_errors_and_missing_kernels,
             concurrent_launches_of_one_kernel, matmul_vendor_blas_matches_cpu,
             matmul_kernel_alone_matches_cpu, host_allocation_failures)
