/* Version and status-code strings. */
#include "core/core.h"

void ox_version(int *major, int *minor, int *patch)
{
    if (major) *major = OX_VERSION_MAJOR;
    if (minor) *minor = OX_VERSION_MINOR;
    if (patch) *patch = OX_VERSION_PATCH;
}

const char *ox_version_string(void)
{
    return OX_VERSION_STRING;
}

const char *ox_status_str(ox_status status)
{
    switch (status) {
#define OX__STATUS_CASE(name, value, text) \
    case OX_##name:                        \
        return text;
        OX_STATUS_LIST(OX__STATUS_CASE)
#undef OX__STATUS_CASE
    }
    return "unknown status";
}

const char *ox_status_name(ox_status status)
{
    switch (status) {
#define OX__STATUS_CASE(name, value, text) \
    case OX_##name:                        \
        return "OX_" #name;
        OX_STATUS_LIST(OX__STATUS_CASE)
#undef OX__STATUS_CASE
    }
    return "OX_UNKNOWN_STATUS";
}

const char *ox_log_level_str(ox_log_level level)
{
    switch (level) {
    case OX_LOG_DEFAULT: return "default";
    case OX_LOG_DEBUG: return "debug";
    case OX_LOG_INFO: return "info";
    case OX_LOG_WARN: return "warning";
    case OX_LOG_ERROR: return "error";
    case OX_LOG_OFF: return "off";
    }
    return "unknown";
}

const char *ox_device_type_str(ox_device_type type)
{
    switch (type) {
    case OX_DEVICE_CPU: return "cpu";
    case OX_DEVICE_GPU: return "gpu";
    case OX_DEVICE_ACCELERATOR: return "accelerator";
    case OX_DEVICE_OTHER: return "other";
    }
    return "unknown";
}

const char *ox_feature_str(int feature)
{
    switch (feature) {
#define OX__FEATURE_CASE(name, bit, text) \
    case bit:                             \
        return text;
        OX_FEATURE_LIST(OX__FEATURE_CASE)
#undef OX__FEATURE_CASE
    }
    return NULL;
}
