/* OpenXPU energy meters: the energy a device has used, from the sensor the
 * platform offers for it, so that a benchmark can report joules per token.
 *
 * Which sensor serves which device:
 *   cuda devices, and OpenCL GPUs of vendor NVIDIA
 *                 NVML (libnvidia-ml.so.1, from the NVIDIA driver):
 *                 the GPU's total energy counter, Volta and newer
 *   hip devices   ROCm SMI (librocm_smi64.so): the GPU's energy counter
 *   cpu devices, and OpenCL devices of type CPU
 *                 Linux RAPL powercap (/sys/class/powercap/intel-rapl:N,
 *                 the "package-N" zones; OX_POWERCAP_ROOT overrides the
 *                 folder): the energy of every processor package, summed.
 *                 Intel, and AMD Zen from Linux 5.8.
 * Vendor libraries are opened at run time; none is needed to build.
 *
 * A meter reads a counter of the whole device (the whole package for a
 * CPU): work of other processes on it counts too. Power samples are never
 * integrated in place of a missing energy counter: a device without a
 * counter has no meter. */
#ifndef OPENXPU_ENERGY_H
#define OPENXPU_ENERGY_H

#include "openxpu/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_energy_meter ox_energy_meter;

/* Open a meter on the sensor that serves `device`, and take its first
 * reading: ox_energy_meter_read counts from here.
 * When no sensor serves the device this fails with OX_ERR_UNSUPPORTED and
 * ox_errmsg says what is missing for it ("no energy sensor for cpu:0
 * (...): RAPL powercap: /sys/class/powercap/intel-rapl:0/energy_uj not
 * found (...)", "... NVML: libnvidia-ml.so.1 not found (...)"). A sensor
 * that is there but fails (a file only root may read, a file that does not
 * parse, a library call) gives OX_ERR_IO, OX_ERR_FORMAT or OX_ERR_BACKEND,
 * the message naming the path or the call. On success *out is owned by the caller: free it with
 * ox_energy_meter_free before the device's context goes. On failure *out
 * is NULL. */
OX_API ox_status ox_energy_meter_open(ox_device *device, ox_energy_meter **out);

/* Joules used by the device since ox_energy_meter_open, into *joules
 * (>= 0, never decreasing). A counter that wrapped around since the last
 * reading is unwrapped (RAPL: by its max_energy_range_uj), so read at
 * least once per wrap period: minutes at full power for RAPL, never in
 * practice for the 64-bit GPU counters. Sensors update every few
 * milliseconds (RAPL) to every ~100 ms (GPUs): measure spans much longer
 * than that. A failed read (the sensor went away, a file no longer parses)
 * leaves the meter as it was (same errors as ox_energy_meter_open; a NULL
 * meter gives OX_ERR_INVALID_HANDLE, its message in ox_errmsg(NULL)). One
 * thread at a time per meter. */
OX_API ox_status ox_energy_meter_read(ox_energy_meter *meter, double *joules);

/* What the meter reads, for reports: "NVML (GPU 0000:3b:00.0)", "RAPL
 * package-0 (+package-1)", "ROCm SMI (GPU 0000:c1:00.0)". Owned by the
 * meter, valid until ox_energy_meter_free; "" for a NULL meter. */
OX_API const char *ox_energy_meter_source(const ox_energy_meter *meter);

/* Close the meter and the sensor's library. NULL is accepted. */
OX_API void ox_energy_meter_free(ox_energy_meter *meter);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_ENERGY_H */
