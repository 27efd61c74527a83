/* The OpenCL tests' context: the CPU and OpenCL backends (the plugin from
 * OX_BACKEND_PATH, else the one CMake built), or a skip saying why there is
 * no OpenCL device. */
#ifndef OX_TEST_OPENCL_TEST_H
#define OX_TEST_OPENCL_TEST_H

#include <stdlib.h>

#include "ox_test.h"
#include "test_helpers.h"

#ifndef OX_TEST_OPENCL_PLUGIN
#define OX_TEST_OPENCL_PLUGIN ""
#endif

static inline ox_context *opencl_context(void)
{
    const char *env = getenv("OX_BACKEND_PATH");
    const char *plugin = env && *env ? env : OX_TEST_OPENCL_PLUGIN;
    ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    if (!(env && *env)) options.backend_path = plugin;
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    int count = 0;
    if (ox_device_select(ctx, "opencl:*", NULL, 0, &count) != OX_OK || count == 0)
        OX_SKIP("no OpenCL device (opencl plugin '%s')", plugin);
    return ctx;
}

#endif
