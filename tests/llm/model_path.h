/* The real test model's path, from scripts/fetch-model.sh (OX_FETCH_MODEL,
 * set by ctest), or a loud skip saying why it cannot be had. */
#ifndef OX_TEST_MODEL_PATH_H
#define OX_TEST_MODEL_PATH_H

#include <stdio.h>
#include <stdlib.h>

#include "ox_test.h"

static inline const char *test_real_model(void)
{
    static char path[4096];
    const char *script = getenv("OX_FETCH_MODEL");
    if (!script) OX_SKIP("OX_FETCH_MODEL is not set (run through ctest)");
    char command[4200];
    snprintf(command, sizeof command, "%s 2>&1", script);
    FILE *p = popen(command, "r");
    if (!p) OX_SKIP("cannot run %s", script);
    char line[4096] = "";
    while (fgets(line, sizeof line, p)) snprintf(path, sizeof path, "%s", line);
    int status = pclose(p);
    path[strcspn(path, "\n")] = '\0';
    if (status != 0) OX_SKIP("real model unavailable: %s", path);
    return path;
}

#endif /* OX_TEST_MODEL_PATH_H */
