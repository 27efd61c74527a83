/* Logging: messages go to the context's callback, or to stderr as
 * "openxpu: <level>: <text>", filtered by the context's level. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

ox_log_level ox__log_level_from_env(void)
{
    static const struct {
        const char *name;
        ox_log_level level;
    } names[] = {
        {"debug", OX_LOG_DEBUG}, {"info", OX_LOG_INFO},   {"warn", OX_LOG_WARN},
        {"warning", OX_LOG_WARN}, {"error", OX_LOG_ERROR}, {"off", OX_LOG_OFF},
        {"none", OX_LOG_OFF},
    };
    const char *env = getenv("OX_LOG");
    if (!env || !*env) return OX_LOG_DEFAULT;
    for (size_t i = 0; i < OX__ARRAY_SIZE(names); i++)
        if (ox__strncasecmp(env, names[i].name, 16) == 0) return names[i].level;
    static atomic_flag warned = ATOMIC_FLAG_INIT; /* said once a process */
    if (!atomic_flag_test_and_set(&warned))
        fprintf(stderr, "openxpu: warning: OX_LOG=%.40s is not debug, info, warn, error or off; "
                        "using warn\n", env);
    return OX_LOG_DEFAULT;
}

static void log_to_stderr(ox_log_level level, const char *message)
{
    fprintf(stderr, "openxpu: %s: %s\n", ox_log_level_str(level), message);
}

void ox__vlog(const ox_context *ctx, ox_log_level level, const char *fmt, va_list ap)
{
    ox_log_level threshold = ctx ? ctx->log_level : ox__log_level_from_env();
    if (threshold == OX_LOG_DEFAULT) threshold = OX_LOG_WARN;
    if (level < threshold || level >= OX_LOG_OFF) return;
    char message[OX__ERRMSG_MAX + 256];
    vsnprintf(message, sizeof message, fmt, ap);
    if (ctx && ctx->log) ctx->log(ctx->log_user, level, message);
    else log_to_stderr(level, message);
}

void ox__log(const ox_context *ctx, ox_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ox__vlog(ctx, level, fmt, ap);
    va_end(ap);
}

void ox__log_default(ox_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ox__vlog(NULL, level, fmt, ap);
    va_end(ap);
}
