/* The lines of a tuning file (src/ops/tune.c): the valid seed lines of the
 * fuzz corpus are read, and read back the same after being written; every
 * broken one is refused with its reason; written lines carry a checksum
 * that any change breaks. */
#include <stdio.h>
#include <string.h>

#include "ops/tune.h"
#include "ox_test.h"

#ifndef OX_TUNE_CORPUS
#define OX_TUNE_CORPUS "fuzz/corpus/tune"
#endif

/* Every non-empty, non-comment line of a corpus file into lines[]. */
static int read_lines(const char *name, char lines[][1024], int cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", OX_TUNE_CORPUS, name);
    FILE *f = fopen(path, "r");
    ASSERT_MSG(f != NULL, "cannot open %s", path);
    int n = 0;
    while (n < cap && fgets(lines[n], 1024, f)) {
        lines[n][strcspn(lines[n], "\n")] = '\0';
        if (lines[n][0] && lines[n][0] != '#') n++;
    }
    fclose(f);
    return n;
}

OX_TEST(valid_lines_read_and_write_back)
{
    static char lines[16][1024];
    int n = read_lines("valid.txt", lines, 16);
    ASSERT(n >= 4);
    for (int i = 0; i < n; i++) {
        ox__tune_line e, again;
        const char *why = ox__tune_parse_line(lines[i], &e);
        ASSERT_MSG(why == NULL, "%s: %s", lines[i], why);
        char written[1024];
        ASSERT(ox__tune_format_line(written, sizeof written, &e) > 0);
        ASSERT(ox__tune_parse_line(written, &again) == NULL);
        ASSERT_EQ(again.family, e.family);
        ASSERT_STR_EQ(again.cls, e.cls);
        ASSERT(again.source == e.source && again.driver == e.driver);
        ASSERT(memcmp(&again.params, &e.params, sizeof e.params) == 0);
    }
    /* the first seed: qmatvec q4_k, hashes and parameters as written */
    ox__tune_line e;
    ASSERT(ox__tune_parse_line(lines[0], &e) == NULL);
    ASSERT_STR_EQ(ox__tune_family_get(e.family)->name, "qmatvec");
    ASSERT_STR_EQ(e.cls, "q4_k");
    ASSERT(e.source == 0x0123456789abcdefULL && e.driver == 0xfedcba9876543210ULL);
    ASSERT(e.params.v[0] == 1 && e.params.v[1] == 2 && e.params.v[2] == 16 && e.params.v[3] == 0);
}

OX_TEST(broken_lines_are_refused)
{
    static char lines[16][1024];
    int n = read_lines("broken.txt", lines, 16);
    ASSERT(n >= 6);
    for (int i = 0; i < n; i++) {
        ox__tune_line e;
        ASSERT_MSG(ox__tune_parse_line(lines[i], &e) != NULL, "accepted: %s", lines[i]);
    }
}

OX_TEST(any_change_breaks_the_checksum)
{
    ox__tune_line e = {.family = OX__TUNE_ELEMENTWISE, .source = 1, .driver = 2,
                       .params = {{4, 64}}, .seconds = 0.5};
    strcpy(e.cls, "f32");
    char line[1024];
    ASSERT(ox__tune_format_line(line, sizeof line, &e) > 0);
    ASSERT(ox__tune_parse_line(line, &e) == NULL);
    for (size_t i = 0; line[i]; i++) {
        char edited[1024];
        strcpy(edited, line);
        edited[i] = edited[i] == '4' ? '8' : '4';
        ox__tune_line x;
        ASSERT_MSG(ox__tune_parse_line(edited, &x) != NULL, "accepted: %s", edited);
    }
}

/* Every family's defaults are among its candidates and valid, on a GPU, on
 * an OpenCL CPU device and on a small device (64 work-items, 16 KiB). */
OX_TEST(defaults_are_valid_candidates)
{
    ox_device_info gpu = {.type = OX_DEVICE_GPU, .max_work_group_size = 1024,
                          .local_memory_bytes = 49152,
                          .features = OX_FEATURE_BIT(OX_FEATURE_INT8_DOT)};
    ox_device_info cpu = {.type = OX_DEVICE_CPU, .max_work_group_size = 4096,
                          .local_memory_bytes = 1 << 20};
    ox_device_info small = {.type = OX_DEVICE_GPU, .max_work_group_size = 64,
                            .local_memory_bytes = 16384};
    const ox_device_info *devices[] = {&gpu, &cpu, &small};
    const char *classes[] = {"f32", "f16", "q4_k", NULL};
    for (int d = 0; d < 3; d++)
        for (int f = 0; f < OX__TUNE_FAMILIES; f++)
            for (int c = 0; c < 4; c++) {
                ox__tune_params p;
                ox__tune_defaults(devices[d], f, classes[c], &p);
                char text[128];
                ASSERT_MSG(ox__tune_valid(devices[d], f, &p), "device %d: %s %s", d,
                           ox__tune_family_get(f)->name,
                           ox__tune_format(f, &p, text, sizeof text));
            }
}

OX_TEST_MAIN(valid_lines_read_and_write_back, broken_lines_are_refused,
             any_change_breaks_the_checksum, defaults_are_valid_candidates)
