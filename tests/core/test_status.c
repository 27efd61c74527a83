/* Status codes, their names and descriptions, the other static string
 * tables, and the library version. */
#include <stdio.h>
#include <string.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"

typedef struct expected_status {
    ox_status code;
    const char *name;
    const char *text;
} expected_status;

/* The expectations come straight from the list in status.h. */
static const expected_status all_statuses[] = {
#define EXPECTED_STATUS(name, value, text) {(ox_status)(value), "OX_" #name, text},
    OX_STATUS_LIST(EXPECTED_STATUS)
#undef EXPECTED_STATUS
};
#define STATUS_COUNT (sizeof all_statuses / sizeof all_statuses[0])

OX_TEST(status_names_and_strings_match_the_list)
{
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        ASSERT_STR_EQ(ox_status_name(all_statuses[i].code), all_statuses[i].name);
        ASSERT_STR_EQ(ox_status_str(all_statuses[i].code), all_statuses[i].text);
    }
}

OX_TEST(status_names_and_strings_are_distinct)
{
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        for (size_t j = i + 1; j < STATUS_COUNT; j++) {
            ASSERT(all_statuses[i].code != all_statuses[j].code);
            ASSERT(strcmp(ox_status_name(all_statuses[i].code),
                          ox_status_name(all_statuses[j].code)) != 0);
            ASSERT(strcmp(ox_status_str(all_statuses[i].code),
                          ox_status_str(all_statuses[j].code)) != 0);
        }
    }
}

OX_TEST(status_codes_ok_is_zero_errors_negative)
{
    ASSERT_EQ(OX_OK, 0);
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (all_statuses[i].code == OX_OK) continue;
        ASSERT(all_statuses[i].code < 0);
        ASSERT(strncmp(all_statuses[i].name, "OX_ERR_", 7) == 0);
    }
}

OX_TEST(status_unknown_code)
{
    static const int unknown[] = {1, 42, -15, -999, -2147483647};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ox_status code = (ox_status)unknown[i];
        ASSERT_STR_EQ(ox_status_str(code), "unknown status");
        const char *name = ox_status_name(code);
        ASSERT(name != NULL);
        for (size_t j = 0; j < STATUS_COUNT; j++) ASSERT(strcmp(name, all_statuses[j].name) != 0);
    }
}

OX_TEST(version_matches_macros)
{
    int major = -1, minor = -1, patch = -1;
    ox_version(&major, &minor, &patch);
    ASSERT_EQ(major, OX_VERSION_MAJOR);
    ASSERT_EQ(minor, OX_VERSION_MINOR);
    ASSERT_EQ(patch, OX_VERSION_PATCH);
    ASSERT_STR_EQ(ox_version_string(), OX_VERSION_STRING);

    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", OX_VERSION_MAJOR, OX_VERSION_MINOR,
             OX_VERSION_PATCH);
    ASSERT_STR_EQ(ox_version_string(), expected);
    ASSERT_EQ(OX_VERSION_NUMBER, major * 10000 + minor * 100 + patch);
}

OX_TEST(version_accepts_null_out_pointers)
{
    int minor = -1;
    ox_version(NULL, NULL, NULL);
    ox_version(NULL, &minor, NULL);
    ASSERT_EQ(minor, OX_VERSION_MINOR);
}

OX_TEST(log_level_strings)
{
    ASSERT_STR_EQ(ox_log_level_str(OX_LOG_DEFAULT), "default");
    ASSERT_STR_EQ(ox_log_level_str(OX_LOG_DEBUG), "debug");
    ASSERT_STR_EQ(ox_log_level_str(OX_LOG_INFO), "info");
    ASSERT_STR_EQ(ox_log_level_str(OX_LOG_WARN), "warning");
    ASSERT_STR_EQ(ox_log_level_str(OX_LOG_ERROR), "error");
    ASSERT_STR_EQ(ox_log_level_str(OX_LOG_OFF), "off");
    ASSERT_STR_EQ(ox_log_level_str((ox_log_level)6), "unknown");
    ASSERT_STR_EQ(ox_log_level_str((ox_log_level)-1), "unknown");
}

OX_TEST(device_type_strings)
{
    ASSERT_STR_EQ(ox_device_type_str(OX_DEVICE_CPU), "cpu");
    ASSERT_STR_EQ(ox_device_type_str(OX_DEVICE_GPU), "gpu");
    ASSERT_STR_EQ(ox_device_type_str(OX_DEVICE_ACCELERATOR), "accelerator");
    ASSERT_STR_EQ(ox_device_type_str(OX_DEVICE_OTHER), "other");
}

typedef struct expected_feature {
    int bit;
    const char *text;
} expected_feature;

static const expected_feature all_features[] = {
#define EXPECTED_FEATURE(name, bit, text) {bit, text},
    OX_FEATURE_LIST(EXPECTED_FEATURE)
#undef EXPECTED_FEATURE
};
#define FEATURE_COUNT (sizeof all_features / sizeof all_features[0])

OX_TEST(feature_strings_match_the_list)
{
    for (size_t i = 0; i < FEATURE_COUNT; i++) {
        ASSERT_STR_EQ(ox_feature_str(all_features[i].bit), all_features[i].text);
        ASSERT(all_features[i].bit >= 0 && all_features[i].bit < 64);
        for (size_t j = i + 1; j < FEATURE_COUNT; j++) {
            ASSERT(all_features[i].bit != all_features[j].bit);
            ASSERT(strcmp(all_features[i].text, all_features[j].text) != 0);
        }
    }
    ASSERT_EQ(OX_FEATURE_BIT(OX_FEATURE_AVX2), 4);
    ASSERT(OX_FEATURE_BIT(OX_FEATURE_UNIFIED_MEMORY) == (UINT64_C(1) << 37));
}

OX_TEST(feature_unknown_bits_are_null)
{
    static const int unknown[] = {-1, 11, 15, 21, 31, 38, 63, 64, 1000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ASSERT(ox_feature_str(unknown[i]) == NULL);
}

OX_TEST_MAIN(status_names_and_strings_match_the_list, status_names_and_strings_are_distinct,
             status_codes_ok_is_zero_errors_negative, status_unknown_code, version_matches_macros,
             version_accepts_null_out_pointers, log_level_strings, device_type_strings,
             feature_strings_match_the_list, feature_unknown_bits_are_null)
