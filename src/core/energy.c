/* Energy meters (openxpu/energy.h): Linux RAPL powercap for CPUs, NVML for
 * NVIDIA GPUs, ROCm SMI for AMD GPUs. Every sensor is a counter: a meter
 * keeps its last raw value and adds up the differences, unwrapping RAPL's
 * counters at max_energy_range_uj.
 *
 * NVML and ROCm SMI are opened with dlopen and their few functions are
 * declared here, from the public documentation of nvml.h and rocm_smi.h,
 * so the build needs no SDK. Each meter initializes the library (both
 * count nested init/shutdown pairs); like the GPU drivers in the backends,
 * the libraries are never unloaded. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/dl_load.h"
#include "core/core.h"

#define POWERCAP_ROOT "/sys/class/powercap"
#define MAX_PACKAGES 16
#define WHY_MAX 512
#define PATH_MAX_LEN 4096
#define RAPL_HINT                                                                             \
    "Linux powercap, kernel module intel_rapl_msr: Intel, and AMD Zen from Linux 5.8"

/* ---- NVML and ROCm SMI, as declared in nvml.h and rocm_smi.h ------------------------ */

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
enum { NVML_SUCCESS = 0, NVML_ERROR_NOT_SUPPORTED = 3 };

/* X(name, (parameters)), all returning nvmlReturn_t. The energy is in
 * millijoules since the driver was loaded. */
#define NVML_FUNCTIONS(X)                                                                     \
    X(nvmlInit_v2, (void))                                                                    \
    X(nvmlShutdown, (void))                                                                   \
    X(nvmlDeviceGetCount_v2, (unsigned int *))                                                \
    X(nvmlDeviceGetHandleByIndex_v2, (unsigned int, nvmlDevice_t *))                          \
    X(nvmlDeviceGetHandleByPciBusId_v2, (const char *, nvmlDevice_t *))                       \
    X(nvmlDeviceGetName, (nvmlDevice_t, char *, unsigned int))                                \
    X(nvmlDeviceGetTotalEnergyConsumption, (nvmlDevice_t, unsigned long long *))

typedef struct nvml_api {
#define NVML_POINTER(name, params) nvmlReturn_t(*name) params;
    NVML_FUNCTIONS(NVML_POINTER)
#undef NVML_POINTER
    const char *(*nvmlErrorString)(nvmlReturn_t);
} nvml_api;

typedef int rsmi_status_t;
enum { RSMI_STATUS_SUCCESS = 0, RSMI_STATUS_NOT_SUPPORTED = 2 };

/* X(name, (parameters)), all returning rsmi_status_t. The energy counter
 * counts units of counter_resolution microjoules; a PCI id is
 * domain << 32 | bus << 8 | device << 3 | function. */
#define RSMI_FUNCTIONS(X)                                                                     \
    X(rsmi_init, (uint64_t))                                                                  \
    X(rsmi_shut_down, (void))                                                                 \
    X(rsmi_num_monitor_devices, (uint32_t *))                                                 \
    X(rsmi_dev_pci_id_get, (uint32_t, uint64_t *))                                            \
    X(rsmi_dev_energy_count_get, (uint32_t, uint64_t *, float *, uint64_t *))                 \
    X(rsmi_status_string, (rsmi_status_t, const char **))

typedef struct rsmi_api {
#define RSMI_POINTER(name, params) rsmi_status_t(*name) params;
    RSMI_FUNCTIONS(RSMI_POINTER)
#undef RSMI_POINTER
} rsmi_api;

/* ---- the meter ----------------------------------------------------------------------- */

typedef enum sensor_kind { SENSOR_RAPL = 1, SENSOR_NVML, SENSOR_ROCM_SMI } sensor_kind;

typedef struct rapl_zone {
    int zone;          /* N of intel-rapl:N */
    int package;       /* N of its name, package-N */
    uint64_t range_uj; /* max_energy_range_uj: the counter wraps to 0 past it */
    uint64_t last_uj;  /* energy_uj at the last reading */
} rapl_zone;

struct ox_energy_meter {
    ox_context *ctx;
    sensor_kind kind;
    char source[256];
    double joules; /* since open */
    union {
        struct {
            char *root; /* the powercap folder, ox__strdup'ed */
            int count;
            rapl_zone zones[MAX_PACKAGES]; /* by package number */
        } rapl;
        struct {
            nvml_api api;
            nvmlDevice_t device;
            unsigned long long last_mj;
        } nvml;
        struct {
            rsmi_api api;
            uint32_t index;
            float resolution_uj;
            uint64_t last_count;
        } rsmi;
    } u;
};

/* ---- small helpers ---------------------------------------------------------------------- */

/* The first line of a small file into text[cap], trailing whitespace
 * removed. 0, or the errno of the failure. */
static int read_line(const char *path, char *text, size_t cap)
{
    FILE *file = fopen(path, "r");
    if (!file) return errno ? errno : EIO;
    size_t n = fread(text, 1, cap - 1, file);
    int failed = ferror(file);
    fclose(file);
    if (failed) return EIO;
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    for (n = strlen(text); n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\r'); n--)
        text[n - 1] = '\0';
    return 0;
}

/* A decimal number without sign or spaces that fits 64 bits. */
static bool parse_u64(const char *text, uint64_t *value)
{
    uint64_t v = 0;
    if (!*text) return false;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    *value = v;
    return true;
}

/* Read a powercap counter file into *value; else why[] says what failed,
 * naming the path, and the status is returned. */
static ox_status read_counter(const char *path, uint64_t *value, char *why, size_t cap)
{
    char text[64];
    int err = read_line(path, text, sizeof text);
    if (err == ENOENT) {
        snprintf(why, cap, "RAPL powercap: %s not found", path);
        return OX_ERR_UNSUPPORTED;
    }
    if (err == EACCES || err == EPERM) {
        snprintf(why, cap, "RAPL powercap: %s is not readable (permission denied: since Linux "
                           "5.10 only root may read it)", path);
        return OX_ERR_IO;
    }
    if (err) {
        snprintf(why, cap, "RAPL powercap: %s cannot be read: %s", path, strerror(err));
        return OX_ERR_IO;
    }
    if (!parse_u64(text, value)) {
        snprintf(why, cap, "RAPL powercap: %s holds \"%.40s\", not a count of microjoules", path,
                 text);
        return OX_ERR_FORMAT;
    }
    return OX_OK;
}

/* ---- RAPL powercap ------------------------------------------------------------------------ */

static const char *powercap_root(void)
{
    const char *root = getenv("OX_POWERCAP_ROOT");
    return root && *root ? root : POWERCAP_ROOT;
}

static ox_status zone_path(const char *root, int zone, const char *file, char *path, size_t cap,
                           char *why, size_t why_cap)
{
    int n = snprintf(path, cap, "%s/intel-rapl:%d/%s", root, zone, file);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(why, why_cap, "RAPL powercap: the path under %.200s is too long", root);
        return OX_ERR_INVALID;
    }
    return OX_OK;
}

/* The package zones under root (intel-rapl:N named package-M; not the
 * psys zone some laptops have, which holds the packages, nor the core and
 * dram subzones intel-rapl:N:M), sorted by package. */
static ox_status rapl_find_zones(const char *root, rapl_zone *zones, int *count, char *why,
                                 size_t cap)
{
    char path[PATH_MAX_LEN], name[64];
    ox_status s;
    *count = 0;
    DIR *dir = opendir(root);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            int zone, end = 0;
            if (sscanf(entry->d_name, "intel-rapl:%d%n", &zone, &end) != 1 ||
                entry->d_name[end] != '\0' || zone < 0)
                continue;
            int package, tail = 0;
            if (zone_path(root, zone, "name", path, sizeof path, why, cap) != OX_OK ||
                read_line(path, name, sizeof name) != 0 ||
                sscanf(name, "package-%d%n", &package, &tail) != 1 || name[tail] != '\0')
                continue;
            if (*count == MAX_PACKAGES) {
                closedir(dir);
                snprintf(why, cap, "RAPL powercap: more than %d packages under %.200s",
                         MAX_PACKAGES, root);
                return OX_ERR_UNSUPPORTED;
            }
            int i = (*count)++;
            for (; i > 0 && zones[i - 1].package > package; i--) zones[i] = zones[i - 1];
            zones[i] = (rapl_zone){.zone = zone, .package = package};
        }
        closedir(dir);
    }
    if (*count > 0) return OX_OK;
    if ((s = zone_path(root, 0, "energy_uj", path, sizeof path, why, cap)) != OX_OK) return s;
    struct stat st;
    if (stat(path, &st) == 0) {
        snprintf(why, cap, "RAPL powercap: no zone named package-N under %.200s", root);
    } else {
        snprintf(why, cap, "RAPL powercap: %.300s not found (" RAPL_HINT ")", path);
    }
    return OX_ERR_UNSUPPORTED;
}

/* Read every zone's counter into now[] (nothing changes on failure). */
static ox_status rapl_sample(const ox_energy_meter *m, uint64_t *now, char *why, size_t cap)
{
    char path[PATH_MAX_LEN];
    for (int i = 0; i < m->u.rapl.count; i++) {
        ox_status s = zone_path(m->u.rapl.root, m->u.rapl.zones[i].zone, "energy_uj", path,
                                sizeof path, why, cap);
        if (s == OX_OK) s = read_counter(path, &now[i], why, cap);
        if (s != OX_OK) return s;
        if (now[i] > m->u.rapl.zones[i].range_uj) {
            snprintf(why, cap, "RAPL powercap: %.300s holds %llu, beyond its "
                     "max_energy_range_uj %llu", path, (unsigned long long)now[i],
                     (unsigned long long)m->u.rapl.zones[i].range_uj);
            return OX_ERR_IO;
        }
    }
    return OX_OK;
}

static ox_status rapl_open(ox_energy_meter *m, char *why, size_t cap)
{
    char path[PATH_MAX_LEN];
    const char *root = powercap_root();
    ox_status s = rapl_find_zones(root, m->u.rapl.zones, &m->u.rapl.count, why, cap);
    if (s != OX_OK) return s;
    m->u.rapl.root = ox__strdup(m->ctx, root);
    if (!m->u.rapl.root) {
        snprintf(why, cap, "out of host memory");
        return OX_ERR_OUT_OF_MEMORY;
    }
    size_t used = 0;
    for (int i = 0; i < m->u.rapl.count; i++) {
        rapl_zone *z = &m->u.rapl.zones[i];
        if ((s = zone_path(root, z->zone, "max_energy_range_uj", path, sizeof path, why, cap)) !=
            OX_OK)
            return s;
        if ((s = read_counter(path, &z->range_uj, why, cap)) != OX_OK) return s;
        int n = i == 0 ? snprintf(m->source, sizeof m->source, "RAPL package-%d", z->package)
                       : snprintf(m->source + used, sizeof m->source - used, "%s+package-%d",
                                  i == 1 ? " (" : " ", z->package);
        if (n > 0 && (size_t)n < sizeof m->source - used) used += (size_t)n;
    }
    if (m->u.rapl.count > 1 && used + 1 < sizeof m->source) strcat(m->source, ")");
    uint64_t now[MAX_PACKAGES];
    if ((s = rapl_sample(m, now, why, cap)) != OX_OK) return s;
    for (int i = 0; i < m->u.rapl.count; i++) m->u.rapl.zones[i].last_uj = now[i];
    return OX_OK;
}

static ox_status rapl_read(ox_energy_meter *m, char *why, size_t cap)
{
    uint64_t now[MAX_PACKAGES], delta_uj[MAX_PACKAGES];
    ox_status s = rapl_sample(m, now, why, cap);
    if (s != OX_OK) return s;
    for (int i = 0; i < m->u.rapl.count; i++) { /* both within the range (rapl_sample) */
        const rapl_zone *z = &m->u.rapl.zones[i];
        delta_uj[i] = now[i] >= z->last_uj ? now[i] - z->last_uj /* else it wrapped */
                                           : z->range_uj - z->last_uj + now[i];
    }
    for (int i = 0; i < m->u.rapl.count; i++) {
        m->u.rapl.zones[i].last_uj = now[i];
        m->joules += (double)delta_uj[i] * 1e-6;
    }
    return OX_OK;
}

/* ---- NVML ---------------------------------------------------------------------------------- */

static const char *nvml_error(const nvml_api *api, nvmlReturn_t r)
{
    const char *text = api->nvmlErrorString ? api->nvmlErrorString(r) : NULL;
    return text ? text : "unknown NVML error";
}

/* The NVML handle of `device`: by PCI address when its backend gives one,
 * else by name when exactly one GPU has it. source[] names the GPU. */
static ox_status nvml_find(ox_energy_meter *m, ox_device *device, char *source, size_t source_cap,
                           char *why, size_t cap)
{
    const nvml_api *api = &m->u.nvml.api;
    const ox__backend_iface *be = device->backend->iface;
    char bus_id[32];
    if (be->device_pci_bus_id &&
        be->device_pci_bus_id(device->backend->state, device->backend_index, bus_id,
                              sizeof bus_id) == OX_OK) {
        for (char *p = bus_id; *p; p++)
            if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
        nvmlReturn_t r = api->nvmlDeviceGetHandleByPciBusId_v2(bus_id, &m->u.nvml.device);
        if (r != NVML_SUCCESS) {
            snprintf(why, cap, "NVML: no GPU at PCI address %s: %s", bus_id, nvml_error(api, r));
            return OX_ERR_UNSUPPORTED;
        }
        snprintf(source, source_cap, "GPU %s", bus_id);
        return OX_OK;
    }
    unsigned int count = 0, matches = 0;
    nvmlReturn_t r = api->nvmlDeviceGetCount_v2(&count);
    if (r != NVML_SUCCESS) {
        snprintf(why, cap, "NVML: nvmlDeviceGetCount_v2 failed: %s", nvml_error(api, r));
        return OX_ERR_BACKEND;
    }
    for (unsigned int i = 0; i < count; i++) {
        nvmlDevice_t handle;
        char name[128] = "";
        if (api->nvmlDeviceGetHandleByIndex_v2(i, &handle) != NVML_SUCCESS ||
            api->nvmlDeviceGetName(handle, name, (unsigned int)sizeof name) != NVML_SUCCESS ||
            strcmp(name, device->info.name) != 0)
            continue;
        if (matches++ == 0) {
            m->u.nvml.device = handle;
            snprintf(source, source_cap, "GPU %u, %.100s", i, name);
        }
    }
    if (matches == 1) return OX_OK;
    if (matches == 0)
        snprintf(why, cap, "NVML: none of its %u GPUs is named \"%s\"", count, device->info.name);
    else
        snprintf(why, cap, "NVML: %u GPUs are named \"%s\", and the %s backend gives no PCI "
                 "address to tell which one is %s", matches, device->info.name,
                 device->info.backend, device->info.id);
    return OX_ERR_UNSUPPORTED;
}

static ox_status nvml_open(ox_energy_meter *m, ox_device *device, char *why, size_t cap)
{
    static const char *const names[] = {"libnvidia-ml.so.1"};
    nvml_api *api = &m->u.nvml.api;
    char gpu[160] = "";
    void *library = ox__dl_open_first(names, 1, NULL);
    if (!library) {
        snprintf(why, cap, "NVML: libnvidia-ml.so.1 not found (it comes with the NVIDIA driver)");
        return OX_ERR_UNSUPPORTED;
    }
#define NVML_RESOLVE(name, params)                                                            \
    if (!ox__dl_resolve(library, #name, &api->name, sizeof api->name)) {                      \
        snprintf(why, cap, "NVML: libnvidia-ml.so.1 lacks %s (the driver is too old)", #name); \
        return OX_ERR_UNSUPPORTED;                                                            \
    }
    NVML_FUNCTIONS(NVML_RESOLVE)
#undef NVML_RESOLVE
    if (!ox__dl_resolve(library, "nvmlErrorString", &api->nvmlErrorString,
                        sizeof api->nvmlErrorString))
        api->nvmlErrorString = NULL;
    nvmlReturn_t r = api->nvmlInit_v2();
    if (r != NVML_SUCCESS) {
        snprintf(why, cap, "NVML: nvmlInit_v2 failed: %s", nvml_error(api, r));
        return OX_ERR_BACKEND;
    }
    ox_status s = nvml_find(m, device, gpu, sizeof gpu, why, cap);
    if (s != OX_OK) goto err_shutdown;
    r = api->nvmlDeviceGetTotalEnergyConsumption(m->u.nvml.device, &m->u.nvml.last_mj);
    if (r == NVML_ERROR_NOT_SUPPORTED) {
        snprintf(why, cap, "NVML: nvmlDeviceGetTotalEnergyConsumption is not supported on %s "
                 "(it needs a Volta or newer GPU; power samples are not integrated instead)", gpu);
        s = OX_ERR_UNSUPPORTED;
        goto err_shutdown;
    }
    if (r != NVML_SUCCESS) {
        snprintf(why, cap, "NVML: nvmlDeviceGetTotalEnergyConsumption failed on %s: %s", gpu,
                 nvml_error(api, r));
        s = OX_ERR_BACKEND;
        goto err_shutdown;
    }
    snprintf(m->source, sizeof m->source, "NVML (%s)", gpu);
    return OX_OK;

err_shutdown:
    api->nvmlShutdown();
    return s;
}

static ox_status nvml_read(ox_energy_meter *m, char *why, size_t cap)
{
    const nvml_api *api = &m->u.nvml.api;
    unsigned long long now = 0;
    nvmlReturn_t r = api->nvmlDeviceGetTotalEnergyConsumption(m->u.nvml.device, &now);
    if (r != NVML_SUCCESS) {
        snprintf(why, cap, "%s: nvmlDeviceGetTotalEnergyConsumption failed: %s", m->source,
                 nvml_error(api, r));
        return OX_ERR_BACKEND;
    }
    if (now < m->u.nvml.last_mj) { /* 64 bits of millijoules never wrap: the driver reloaded */
        snprintf(why, cap, "%s: the energy counter went back from %llu to %llu mJ (driver "
                 "reloaded?)", m->source, m->u.nvml.last_mj, now);
        return OX_ERR_BACKEND;
    }
    m->joules += (double)(now - m->u.nvml.last_mj) * 1e-3;
    m->u.nvml.last_mj = now;
    return OX_OK;
}

/* ---- ROCm SMI ------------------------------------------------------------------------------ */

static const char *rsmi_error(const rsmi_api *api, rsmi_status_t r)
{
    const char *text = NULL;
    if (api->rsmi_status_string(r, &text) != RSMI_STATUS_SUCCESS || !text)
        return "unknown ROCm SMI error";
    return text;
}

/* The ROCm SMI index of `device`: by PCI address (domain, bus, device;
 * the function bits may hold a partition id) when its backend gives one,
 * else the only GPU ROCm SMI sees. */
static ox_status rsmi_find(ox_energy_meter *m, ox_device *device, char *gpu, size_t gpu_cap,
                           char *why, size_t cap)
{
    const rsmi_api *api = &m->u.rsmi.api;
    const ox__backend_iface *be = device->backend->iface;
    uint32_t count = 0;
    rsmi_status_t r = api->rsmi_num_monitor_devices(&count);
    if (r != RSMI_STATUS_SUCCESS) {
        snprintf(why, cap, "ROCm SMI: rsmi_num_monitor_devices failed: %s", rsmi_error(api, r));
        return OX_ERR_BACKEND;
    }
    char bus_id[32];
    unsigned domain, bus, slot, function;
    if (be->device_pci_bus_id &&
        be->device_pci_bus_id(device->backend->state, device->backend_index, bus_id,
                              sizeof bus_id) == OX_OK &&
        sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &slot, &function) == 4) {
        for (uint32_t i = 0; i < count; i++) {
            uint64_t id = 0;
            if (api->rsmi_dev_pci_id_get(i, &id) != RSMI_STATUS_SUCCESS) continue;
            if ((id >> 32) == domain && ((id >> 8) & 0xff) == bus && ((id >> 3) & 0x1f) == slot) {
                m->u.rsmi.index = i;
                snprintf(gpu, gpu_cap, "GPU %04x:%02x:%02x.%x", domain, bus, slot, function);
                return OX_OK;
            }
        }
        snprintf(why, cap, "ROCm SMI: none of its %u GPUs is at PCI address %s", count, bus_id);
        return OX_ERR_UNSUPPORTED;
    }
    if (count == 1) {
        m->u.rsmi.index = 0;
        snprintf(gpu, gpu_cap, "GPU 0");
        return OX_OK;
    }
    snprintf(why, cap, "ROCm SMI: it sees %u GPUs, and the %s backend gives no PCI address to "
             "tell which one is %s", count, device->info.backend, device->info.id);
    return OX_ERR_UNSUPPORTED;
}

static ox_status rsmi_open(ox_energy_meter *m, ox_device *device, char *why, size_t cap)
{
    /* ROCm 7 back to 1, then the unversioned name of a custom build */
    static const char *const names[] = {
        "librocm_smi64.so.7", "librocm_smi64.so.6", "librocm_smi64.so.5", "librocm_smi64.so.4",
        "librocm_smi64.so.3", "librocm_smi64.so.2", "librocm_smi64.so.1", "librocm_smi64.so"};
    rsmi_api *api = &m->u.rsmi.api;
    char gpu[64] = "";
    uint64_t timestamp = 0;
    void *library = ox__dl_open_first(names, OX__ARRAY_SIZE(names), NULL);
    if (!library) {
        snprintf(why, cap, "ROCm SMI: librocm_smi64.so not found (it comes with ROCm, package "
                 "rocm-smi-lib)");
        return OX_ERR_UNSUPPORTED;
    }
#define RSMI_RESOLVE(name, params)                                                            \
    if (!ox__dl_resolve(library, #name, &api->name, sizeof api->name)) {                      \
        snprintf(why, cap, "ROCm SMI: librocm_smi64.so lacks %s (ROCm is too old)", #name);   \
        return OX_ERR_UNSUPPORTED;                                                            \
    }
    RSMI_FUNCTIONS(RSMI_RESOLVE)
#undef RSMI_RESOLVE
    rsmi_status_t r = api->rsmi_init(0);
    if (r != RSMI_STATUS_SUCCESS) {
        snprintf(why, cap, "ROCm SMI: rsmi_init failed: %s", rsmi_error(api, r));
        return OX_ERR_BACKEND;
    }
    ox_status s = rsmi_find(m, device, gpu, sizeof gpu, why, cap);
    if (s != OX_OK) goto err_shut_down;
    r = api->rsmi_dev_energy_count_get(m->u.rsmi.index, &m->u.rsmi.last_count,
                                       &m->u.rsmi.resolution_uj, &timestamp);
    if (r == RSMI_STATUS_NOT_SUPPORTED) {
        snprintf(why, cap, "ROCm SMI: rsmi_dev_energy_count_get is not supported on %s", gpu);
        s = OX_ERR_UNSUPPORTED;
        goto err_shut_down;
    }
    if (r != RSMI_STATUS_SUCCESS || !(m->u.rsmi.resolution_uj > 0.0f)) {
        snprintf(why, cap, "ROCm SMI: rsmi_dev_energy_count_get failed on %s: %s", gpu,
                 r != RSMI_STATUS_SUCCESS ? rsmi_error(api, r) : "no counter resolution");
        s = OX_ERR_BACKEND;
        goto err_shut_down;
    }
    snprintf(m->source, sizeof m->source, "ROCm SMI (%s)", gpu);
    return OX_OK;

err_shut_down:
    api->rsmi_shut_down();
    return s;
}

static ox_status rsmi_read(ox_energy_meter *m, char *why, size_t cap)
{
    const rsmi_api *api = &m->u.rsmi.api;
    uint64_t now = 0, timestamp = 0;
    float resolution = 0.0f;
    rsmi_status_t r = api->rsmi_dev_energy_count_get(m->u.rsmi.index, &now, &resolution,
                                                     &timestamp);
    if (r != RSMI_STATUS_SUCCESS) {
        snprintf(why, cap, "%s: rsmi_dev_energy_count_get failed: %s", m->source,
                 rsmi_error(api, r));
        return OX_ERR_BACKEND;
    }
    if (now < m->u.rsmi.last_count) {
        snprintf(why, cap, "%s: the energy counter went back from %llu to %llu (driver "
                 "reset?)", m->source, (unsigned long long)m->u.rsmi.last_count,
                 (unsigned long long)now);
        return OX_ERR_BACKEND;
    }
    m->joules += (double)(now - m->u.rsmi.last_count) * (double)m->u.rsmi.resolution_uj * 1e-6;
    m->u.rsmi.last_count = now;
    return OX_OK;
}

/* ---- public calls ---------------------------------------------------------------------------- */

ox_status ox_energy_meter_open(ox_device *device, ox_energy_meter **out)
{
    ox_context *ctx;
    char why[WHY_MAX] = "";
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    ox_energy_meter *m = ox__calloc(ctx, 1, sizeof *m);
    if (!m) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    m->ctx = ctx;
    const ox_device_info *info = &device->info;
    if (strcmp(info->backend, "cuda") == 0) {
        m->kind = SENSOR_NVML;
        s = nvml_open(m, device, why, sizeof why);
    } else if (strcmp(info->backend, "hip") == 0) {
        m->kind = SENSOR_ROCM_SMI;
        s = rsmi_open(m, device, why, sizeof why);
    } else if (strcmp(info->backend, "cpu") == 0 || info->type == OX_DEVICE_CPU) {
        m->kind = SENSOR_RAPL;
        s = rapl_open(m, why, sizeof why);
    } else if (info->type == OX_DEVICE_GPU && ox__strncasecmp(info->vendor, "NVIDIA", 6) == 0) {
        m->kind = SENSOR_NVML;
        s = nvml_open(m, device, why, sizeof why);
    } else {
        snprintf(why, sizeof why, "OpenXPU reads GPU energy through NVML (NVIDIA) and ROCm SMI "
                 "(hip devices), and CPU energy through RAPL; none serves a %s device of vendor "
                 "\"%s\" on the %s backend", ox_device_type_str(info->type), info->vendor,
                 info->backend);
        s = OX_ERR_UNSUPPORTED;
    }
    if (s != OX_OK) goto err_free_meter;
    *out = m;
    return OX_OK;

err_free_meter:
    if (m->kind == SENSOR_RAPL && m->u.rapl.root)
        ox__free(ctx, m->u.rapl.root, strlen(m->u.rapl.root) + 1);
    ox__free(ctx, m, sizeof *m);
    return ox__fail(ctx, s, "%s %s (%s): %s",
                    s == OX_ERR_UNSUPPORTED ? "no energy sensor for" : "energy sensor of",
                    info->id, info->name, why);
}

ox_status ox_energy_meter_read(ox_energy_meter *meter, double *joules)
{
    char why[WHY_MAX] = "";
    if (!meter) return ox__fail(NULL, OX_ERR_INVALID_HANDLE, "%s: meter is NULL", __func__);
    if (!joules) return ox__fail(meter->ctx, OX_ERR_INVALID, "%s: joules is NULL", __func__);
    ox_status s = OX_ERR_INTERNAL;
    switch (meter->kind) {
    case SENSOR_RAPL: s = rapl_read(meter, why, sizeof why); break;
    case SENSOR_NVML: s = nvml_read(meter, why, sizeof why); break;
    case SENSOR_ROCM_SMI: s = rsmi_read(meter, why, sizeof why); break;
    }
    if (s != OX_OK) return ox__fail(meter->ctx, s, "%s: %s", __func__, why);
    *joules = meter->joules;
    return OX_OK;
}

const char *ox_energy_meter_source(const ox_energy_meter *meter)
{
    return meter ? meter->source : "";
}

void ox_energy_meter_free(ox_energy_meter *meter)
{
    if (!meter) return;
    ox_context *ctx = meter->ctx;
    switch (meter->kind) {
    case SENSOR_RAPL: ox__free(ctx, meter->u.rapl.root, strlen(meter->u.rapl.root) + 1); break;
    case SENSOR_NVML: meter->u.nvml.api.nvmlShutdown(); break;
    case SENSOR_ROCM_SMI: meter->u.rsmi.api.rsmi_shut_down(); break;
    }
    ox__free(ctx, meter, sizeof *meter);
}
