/* A fake Linux RAPL powercap tree for the energy tests: zone folders with
 * name, energy_uj and max_energy_range_uj files, as the kernel lays them
 * out under /sys/class/powercap, in a temporary folder that
 * OX_POWERCAP_ROOT points at. */
#ifndef OX_TESTS_FAKE_POWERCAP_H
#define OX_TESTS_FAKE_POWERCAP_H

#include <dirent.h>
#include <sys/stat.h>

#include "ox_test.h"

#define POWERCAP_PATH_CAP 4096
#define POWERCAP_RANGE_UJ "262143328850" /* a real package's max_energy_range_uj */

/* "a/b" into path[POWERCAP_PATH_CAP]. */
static inline void powercap_join(char *path, const char *a, const char *b)
{
    int n = snprintf(path, POWERCAP_PATH_CAP, "%s/%s", a, b);
    ASSERT(n > 0 && n < POWERCAP_PATH_CAP);
}

static inline void powercap_write(const char *dir, const char *file, const char *text)
{
    char path[POWERCAP_PATH_CAP];
    powercap_join(path, dir, file);
    FILE *f = fopen(path, "w");
    ASSERT_MSG(f != NULL, "cannot write %s", path);
    ASSERT(fputs(text, f) >= 0);
    ASSERT(fclose(f) == 0);
}

/* A new empty folder in TMPDIR (else /tmp) named ox-<what>-XXXXXX. */
static inline void powercap_temp_dir(char *dir, const char *what)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, POWERCAP_PATH_CAP, "%s/ox-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", what);
    ASSERT_MSG(mkdtemp(dir) != NULL, "mkdtemp %s failed", dir);
}

/* Zone folder `zone` ("intel-rapl:0") under root; range_uj NULL: no
 * max_energy_range_uj file. Each value gets a newline, as sysfs gives. */
static inline void powercap_zone(const char *root, const char *zone, const char *name,
                                 const char *energy_uj, const char *range_uj)
{
    char dir[POWERCAP_PATH_CAP], line[64];
    powercap_join(dir, root, zone);
    ASSERT_MSG(mkdir(dir, 0755) == 0, "cannot create %s", dir);
    snprintf(line, sizeof line, "%s\n", name);
    powercap_write(dir, "name", line);
    snprintf(line, sizeof line, "%s\n", energy_uj);
    powercap_write(dir, "energy_uj", line);
    if (range_uj) {
        snprintf(line, sizeof line, "%s\n", range_uj);
        powercap_write(dir, "max_energy_range_uj", line);
    }
}

/* Overwrite a zone's energy_uj with `text`, as given. */
static inline void powercap_set_energy(const char *root, const char *zone, const char *text)
{
    char dir[POWERCAP_PATH_CAP];
    powercap_join(dir, root, zone);
    powercap_write(dir, "energy_uj", text);
}

/* Remove a file or a folder and everything in it. */
static inline void powercap_remove(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir) {
        unlink(path);
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        char child[POWERCAP_PATH_CAP];
        powercap_join(child, path, entry->d_name);
        powercap_remove(child);
    }
    closedir(dir);
    rmdir(path);
}

#endif /* OX_TESTS_FAKE_POWERCAP_H */
