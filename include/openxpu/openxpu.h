/* OpenXPU: one C API for compute on CPUs and GPUs of any vendor.
 *
 * Include this header to get the whole public API:
 *
 *     #include <openxpu/openxpu.h>
 *
 *     ox_context *ctx;
 *     if (ox_context_create(NULL, &ctx) != OX_OK) { puts(ox_errmsg(NULL)); ... }
 *     ox_device *dev;
 *     ox_device_select(ctx, "cpu", &dev, 1, &n);
 *     ox_buffer *buf;
 *     ox_buffer_alloc(dev, 4096, &buf);
 *     ...
 *     ox_context_free(ctx);
 *
 * Conventions: every fallible call returns ox_status (OX_OK == 0, errors are
 * negative) and writes its results through out-pointers; ox_errmsg(ctx)
 * explains the last failure. Each header states who owns what a call
 * returns. Every *_free function accepts NULL. */
#ifndef OPENXPU_OPENXPU_H
#define OPENXPU_OPENXPU_H

#include "openxpu/export.h"
#include "openxpu/version.h"
#include "openxpu/status.h"
#include "openxpu/context.h"
#include "openxpu/device.h"
#include "openxpu/buffer.h"
#include "openxpu/queue.h"
#include "openxpu/kernel.h"
#include "openxpu/gguf.h"
#include "openxpu/tokenizer.h"
#include "openxpu/llm.h"
#include "openxpu/energy.h"
#include "openxpu/tune.h"

#endif /* OPENXPU_OPENXPU_H */
