/* Loading a vendor library with dlopen: what every GPU backend plugin does
 * for its runtime and its optional libraries. Header-only, because plugins
 * never link the core library. */
#ifndef OX_BACKENDS_DL_LOAD_H
#define OX_BACKENDS_DL_LOAD_H

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

/* The first of `n` library names that opens (RTLD_NOW | RTLD_LOCAL), or
 * NULL. *which (may be NULL) receives its index. */
static inline void *ox__dl_open_first(const char *const *names, size_t n, size_t *which)
{
    for (size_t i = 0; i < n; i++) {
        void *library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (library) {
            if (which) *which = i;
            return library;
        }
    }
    return NULL;
}

/* Store symbol `name` of `library` into the function pointer at `slot` of
 * `size` bytes (object to function pointer through memcpy, as POSIX
 * allows). 1 if found, 0 if not. */
static inline int ox__dl_resolve(void *library, const char *name, void *slot, size_t size)
{
    void *symbol = dlsym(library, name);
    if (symbol) memcpy(slot, &symbol, size);
    return symbol != NULL;
}

#endif /* OX_BACKENDS_DL_LOAD_H */
