/* A stand-in for libnvidia-ml.so.1, built as that file name in its own
 * folder, which test_energy's NVML cases put on LD_LIBRARY_PATH: the
 * functions the energy meter calls, over GPUs named like the fake
 * backend's ("Fake GPU 0", "Fake GPU 1").
 *
 *   GPU 0  its energy counter starts at 5000 mJ and gains 250 mJ per query
 *   GPU 1  has no energy counter (NVML_ERROR_NOT_SUPPORTED, as before Volta)
 *   GPU 2  only with OX_FAKE_NVML_DUPLICATE=1: a second "Fake GPU 0" */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st {
    const char *name;
    unsigned long long energy_mj;
    int has_energy;
} *nvmlDevice_t;

enum { NVML_SUCCESS = 0, NVML_ERROR_INVALID_ARGUMENT = 2, NVML_ERROR_NOT_SUPPORTED = 3,
       NVML_ERROR_NOT_FOUND = 6 };

#define EXPORT __attribute__((visibility("default")))

EXPORT nvmlReturn_t nvmlInit_v2(void);
EXPORT nvmlReturn_t nvmlShutdown(void);
EXPORT const char *nvmlErrorString(nvmlReturn_t result);
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count);
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device);
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device);
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length);
EXPORT nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device,
                                                        unsigned long long *energy);

/* Tells the tests this library, not NVIDIA's, was found. */
EXPORT extern const int ox_fake_nvml;
const int ox_fake_nvml = 1;

static struct nvmlDevice_st gpus[] = {
    {"Fake GPU 0", 5000, 1},
    {"Fake GPU 1", 0, 0},
    {"Fake GPU 0", 7000, 1},
};

static unsigned int gpu_count(void)
{
    const char *duplicate = getenv("OX_FAKE_NVML_DUPLICATE");
    return duplicate && strcmp(duplicate, "1") == 0 ? 3 : 2;
}

nvmlReturn_t nvmlInit_v2(void)
{
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void)
{
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result)
{
    return result == NVML_ERROR_NOT_FOUND ? "Not Found (fake NVML)" : "Error (fake NVML)";
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count();
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!device || index >= gpu_count()) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device)
{
    (void)bus_id;
    (void)device;
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    if (!device || !name || length <= strlen(device->name)) return NVML_ERROR_INVALID_ARGUMENT;
    strcpy(name, device->name);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy)
{
    if (!device || !energy) return NVML_ERROR_INVALID_ARGUMENT;
    if (!device->has_energy) return NVML_ERROR_NOT_SUPPORTED;
    *energy = device->energy_mj;
    device->energy_mj += 250;
    return NVML_SUCCESS;
}
