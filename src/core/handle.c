/* The handle registry: every public handle is recorded while alive, so that
 * API calls can refuse NULL, freed, foreign or wrong-type pointers before
 * dereferencing them. Freed handles stay as "freed" entries (to name the
 * mistake) until their context goes or too many accumulate.
 *
 * One process-wide table behind a mutex: a lookup is a hash probe, far
 * cheaper than any device call it guards. It uses the C library's allocator
 * because it outlives every context. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

typedef struct entry {
    uintptr_t key; /* 0: empty */
    ox__handle_type type;
    bool freed;
    ox_context *owner; /* NULL for contexts themselves */
} entry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *table;
static size_t table_cap; /* power of two, or 0 */
static size_t table_used;
static size_t table_freed;

#define MAX_FREED_ENTRIES 65536

static size_t hash_ptr(uintptr_t p)
{
    uint64_t x = (uint64_t)p;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return (size_t)x;
}

static entry *probe(entry *t, size_t cap, uintptr_t key)
{
    size_t i = hash_ptr(key) & (cap - 1);
    while (t[i].key && t[i].key != key) i = (i + 1) & (cap - 1);
    return &t[i];
}

/* Rebuild into a table of `cap` slots, keeping the entries `keep` accepts. */
static bool rebuild(size_t cap, bool (*keep)(const entry *, const void *), const void *arg)
{
    entry *t = calloc(cap, sizeof *t);
    if (!t) return false;
    size_t used = 0, freed = 0;
    for (size_t i = 0; i < table_cap; i++) {
        if (!table[i].key || (keep && !keep(&table[i], arg))) continue;
        *probe(t, cap, table[i].key) = table[i];
        used++;
        freed += table[i].freed;
    }
    free(table);
    table = t;
    table_cap = cap;
    table_used = used;
    table_freed = freed;
    return true;
}

static bool keep_live(const entry *e, const void *arg)
{
    (void)arg;
    return !e->freed;
}

ox_status ox__handle_add(const void *handle, ox__handle_type type, ox_context *owner)
{
    ox_status status = OX_OK;
    pthread_mutex_lock(&registry_lock);
    if (table_freed > MAX_FREED_ENTRIES) rebuild(table_cap, keep_live, NULL);
    if ((table_used + 1) * 2 > table_cap) {
        if (!rebuild(table_cap ? table_cap * 2 : 256, NULL, NULL)) {
            status = OX_ERR_OUT_OF_MEMORY;
            goto out_unlock;
        }
    }
    entry *e = probe(table, table_cap, (uintptr_t)handle);
    if (!e->key) table_used++;
    else if (e->freed) table_freed--; /* the address was reused */
    *e = (entry){.key = (uintptr_t)handle, .type = type, .freed = false,
                 .owner = type == OX__HANDLE_CONTEXT ? NULL : owner};
out_unlock:
    pthread_mutex_unlock(&registry_lock);
    return status;
}

void ox__handle_remove(const void *handle)
{
    pthread_mutex_lock(&registry_lock);
    if (table_cap) {
        entry *e = probe(table, table_cap, (uintptr_t)handle);
        if (e->key && !e->freed) {
            e->freed = true;
            table_freed++;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

void ox__handle_forget_context(const ox_context *owner)
{
    /* In place, so it cannot fail: the context's handles (and the context
     * itself) become freed entries with no owner to report to. */
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < table_cap; i++) {
        entry *e = &table[i];
        if (!e->key || (e->owner != owner && e->key != (uintptr_t)owner)) continue;
        if (!e->freed) table_freed++;
        e->freed = true;
        e->owner = NULL;
    }
    pthread_mutex_unlock(&registry_lock);
}

bool ox__handle_is_live(const void *handle, ox__handle_type type)
{
    bool live = false;
    if (!handle) return false;
    pthread_mutex_lock(&registry_lock);
    if (table_cap) {
        const entry *e = probe(table, table_cap, (uintptr_t)handle);
        live = e->key && !e->freed && e->type == type;
    }
    pthread_mutex_unlock(&registry_lock);
    return live;
}

const char *ox__handle_type_name(ox__handle_type type)
{
    switch (type) {
    case OX__HANDLE_CONTEXT: return "context";
    case OX__HANDLE_DEVICE: return "device";
    case OX__HANDLE_BUFFER: return "buffer";
    case OX__HANDLE_QUEUE: return "queue";
    case OX__HANDLE_EVENT: return "event";
    case OX__HANDLE_PROGRAM: return "program";
    case OX__HANDLE_KERNEL: return "kernel";
    }
    return "handle";
}

static entry lookup(const void *handle)
{
    entry found = {0};
    pthread_mutex_lock(&registry_lock);
    if (table_cap) found = *probe(table, table_cap, (uintptr_t)handle);
    pthread_mutex_unlock(&registry_lock);
    return found;
}

/* Check `handle`; on failure record the reason in `report_to` if it is not
 * NULL, else in the handle's owner if it is known and alive, else in the
 * thread's context-less slot. */
static ox_status check(ox_context *report_to, const void *handle, ox__handle_type type,
                       const char *func, const char *what, ox_context **owner)
{
    const char *kind = ox__handle_type_name(type);
    if (!handle)
        return ox__fail(report_to, OX_ERR_INVALID_HANDLE, "%s: %s is NULL", func, what);
    entry found = lookup(handle);
    ox_context *to = report_to ? report_to : found.owner;
    if (!found.key)
        return ox__fail(report_to, OX_ERR_INVALID_HANDLE, "%s: %s (%p) is not a valid %s handle",
                        func, what, handle, kind);
    if (found.freed)
        return ox__fail(to, OX_ERR_INVALID_HANDLE, "%s: %s (%p) was already freed by ox_%s_free",
                        func, what, handle,
                        found.type == OX__HANDLE_DEVICE ? "context"
                                                        : ox__handle_type_name(found.type));
    if (found.type != type)
        return ox__fail(to, OX_ERR_INVALID_HANDLE, "%s: %s (%p) is a %s, not a %s", func, what,
                        handle, ox__handle_type_name(found.type), kind);
    if (owner) *owner = type == OX__HANDLE_CONTEXT ? (ox_context *)handle : found.owner;
    return OX_OK;
}

ox_status ox__handle_check(const void *handle, ox__handle_type type, const char *func,
                           const char *what, ox_context **owner)
{
    return check(NULL, handle, type, func, what, owner);
}

ox_status ox__handle_check_in(ox_context *ctx, const void *handle, ox__handle_type type,
                              const char *func, const char *what, ox_context **owner)
{
    return check(ctx, handle, type, func, what, owner);
}

bool ox__handle_check_free(const void *handle, ox__handle_type type, const char *func,
                           ox_context **owner)
{
    entry found = lookup(handle);
    if (found.key && !found.freed && found.type == type) {
        *owner = type == OX__HANDLE_CONTEXT ? (ox_context *)handle : found.owner;
        return true;
    }
    /* A double free or a stray pointer: refuse it, warn, and go on. */
    const char *why = !found.key ? "is not a live handle" : found.freed ? "was already freed"
                                                                       : "has the wrong type";
    ox__log(found.owner, OX_LOG_WARN, "%s: %s %p %s; ignored", func,
            ox__handle_type_name(type), handle, why);
    return false;
}
