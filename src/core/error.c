/* Error messages: the reason for the last failure, kept per context and per
 * thread (a few thread-local slots keyed by the context's serial number,
 * which is never reused), plus one slot for failures with no valid context. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

#define ERR_SLOTS 6

typedef struct err_slot {
    uint64_t serial; /* 0: the context-less slot or unused */
    uint64_t last_use;
    ox_status status;
    char message[OX__ERRMSG_MAX];
} err_slot;

static _Thread_local err_slot tls_slots[ERR_SLOTS];
static _Thread_local err_slot tls_no_context;
static _Thread_local uint64_t tls_clock;

static err_slot *find_slot(uint64_t serial, int create)
{
    err_slot *oldest = &tls_slots[0];
    for (int i = 0; i < ERR_SLOTS; i++) {
        if (tls_slots[i].serial == serial) {
            tls_slots[i].last_use = ++tls_clock;
            return &tls_slots[i];
        }
        if (tls_slots[i].last_use < oldest->last_use) oldest = &tls_slots[i];
    }
    if (!create) return NULL;
    memset(oldest, 0, sizeof *oldest);
    oldest->serial = serial;
    oldest->last_use = ++tls_clock;
    return oldest;
}

ox_status ox__vfail(ox_context *ctx, ox_status status, const char *fmt, va_list ap)
{
    err_slot *slot = ctx ? find_slot(ctx->serial, 1) : &tls_no_context;
    slot->status = status;
    vsnprintf(slot->message, sizeof slot->message, fmt, ap);
    if (ctx) ox__log(ctx, OX_LOG_DEBUG, "%s: %s", ox_status_name(status), slot->message);
    return status;
}

ox_status ox__fail(ox_context *ctx, ox_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ox__vfail(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

void ox__error_forget(const ox_context *ctx)
{
    err_slot *slot = find_slot(ctx->serial, 0);
    if (slot) memset(slot, 0, sizeof *slot);
}

static const err_slot *slot_for(const ox_context *ctx)
{
    if (!ctx || !ox__handle_is_live(ctx, OX__HANDLE_CONTEXT)) return &tls_no_context;
    return find_slot(ctx->serial, 0);
}

const char *ox_errmsg(const ox_context *ctx)
{
    const err_slot *slot = slot_for(ctx);
    return slot ? slot->message : "";
}

ox_status ox_errcode(const ox_context *ctx)
{
    const err_slot *slot = slot_for(ctx);
    return slot ? slot->status : OX_OK;
}
