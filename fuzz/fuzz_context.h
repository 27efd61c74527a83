/* What every fuzz target shares: one quiet context without plugins, made
 * on first use and kept for the process (libFuzzer calls the target
 * millions of times). */
#ifndef OX_FUZZ_CONTEXT_H
#define OX_FUZZ_CONTEXT_H

#include <stdlib.h>

#include "openxpu/openxpu.h"

static ox_context *fuzz_context(void)
{
    static ox_context *ctx;
    if (!ctx) {
        ox_context_options options = {.struct_size = sizeof options,
                                      .flags = OX_CONTEXT_NO_PLUGINS,
                                      .log_level = OX_LOG_OFF,
                                      .num_threads = 1};
        if (ox_context_create(&options, &ctx) != OX_OK) abort();
    }
    return ctx;
}

#endif /* OX_FUZZ_CONTEXT_H */
