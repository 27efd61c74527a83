/* The on-disk cache of compiled kernels, shared by every backend.
 *
 * Location: $OX_CACHE_DIR, else $XDG_CACHE_HOME/openxpu, else
 * $HOME/.cache/openxpu; OX_CACHE_DIR=off disables it. One file per entry,
 * kernels/<hash of key>.bin:
 *
 *   "OXKCACH1" | u64 key length | u64 data length | u64 data hash | key | data
 *
 * The full key is stored and compared, so a hash collision is a miss; the
 * data hash catches truncation and corruption. Entries are written to a
 * temporary file and renamed, so readers never see half an entry. Nothing in
 * a cache file is trusted before it is checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

#define CACHE_MAGIC "OXKCACH1"
#define CACHE_HEADER (8 + 3 * 8)
#define CACHE_MAX_ENTRY ((uint64_t)1 << 30)

uint64_t ox__hash64(const void *data, size_t size)
{
    const unsigned char *p = data;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

/* The cache directory into dir; false if caching is off or no home. */
bool ox__cache_dir(char *dir, size_t cap)
{
    const char *env = getenv("OX_CACHE_DIR");
    int n;
    if (env && *env) {
        if (strcmp(env, "off") == 0) return false;
        n = snprintf(dir, cap, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        n = snprintf(dir, cap, "%s/openxpu", env);
    } else if ((env = getenv("HOME")) && *env) {
        n = snprintf(dir, cap, "%s/.cache/openxpu", env);
    } else {
        return false;
    }
    return n > 0 && (size_t)n < cap;
}

/* mkdir -p */
bool ox__make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        bool ok = mkdir(path, 0755) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok) return false;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

static bool entry_path(const char *key, char *path, size_t cap)
{
    char dir[1024];
    if (!ox__cache_dir(dir, sizeof dir)) return false;
    int n = snprintf(path, cap, "%s/kernels/%016llx.bin", dir,
                     (unsigned long long)ox__hash64(key, strlen(key)));
    return n > 0 && (size_t)n < cap;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Set while a build on this thread may read files the key does not name
 * (user -I folders): such builds neither read nor fill the cache. */
static _Thread_local bool bypass;

void ox__cache_bypass(bool on)
{
    bypass = on;
}

ox_status ox__cache_load(ox_context *ctx, const char *key, void **data, size_t *size)
{
    char path[1200];
    if (bypass) {
        ox__log(ctx, OX_LOG_DEBUG, "kernel cache: not used (the build includes files)");
        return OX_ERR_NOT_FOUND;
    }
    unsigned char header[CACHE_HEADER];
    size_t key_len = strlen(key);
    if (!entry_path(key, path, sizeof path)) return OX_ERR_NOT_FOUND;
    FILE *f = fopen(path, "rb");
    if (!f) return OX_ERR_NOT_FOUND;
    const char *why = NULL;
    char *stored_key = NULL;
    unsigned char *payload = NULL;
    uint64_t data_len = 0;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || fread(header, 1, sizeof header, f) != sizeof header ||
        memcmp(header, CACHE_MAGIC, 8) != 0) {
        why = "bad header";
        goto out;
    }
    uint64_t stored_key_len = get_u64(header + 8);
    data_len = get_u64(header + 16);
    uint64_t data_hash = get_u64(header + 24);
    if (stored_key_len != key_len || data_len == 0 || data_len > CACHE_MAX_ENTRY ||
        (uint64_t)st.st_size != CACHE_HEADER + stored_key_len + data_len) {
        why = "sizes do not match the file";
        goto out;
    }
    stored_key = ox__alloc(ctx, key_len + 1);
    payload = ox__alloc(ctx, (size_t)data_len);
    if (!stored_key || !payload) {
        why = "out of memory";
        goto out;
    }
    if (fread(stored_key, 1, key_len, f) != key_len || memcmp(stored_key, key, key_len) != 0) {
        why = "a different key (stale entry or hash collision)";
        goto out;
    }
    if (fread(payload, 1, (size_t)data_len, f) != data_len ||
        ox__hash64(payload, (size_t)data_len) != data_hash) {
        why = "checksum mismatch (corrupt entry)";
        goto out;
    }
out:
    fclose(f);
    ox__free(ctx, stored_key, key_len + 1);
    if (why) {
        ox__log(ctx, OX_LOG_DEBUG, "kernel cache: %s ignored: %s", path, why);
        ox__free(ctx, payload, (size_t)data_len);
        return OX_ERR_NOT_FOUND;
    }
    ox__log(ctx, OX_LOG_DEBUG, "kernel cache: hit %s", path);
    *data = payload;
    *size = (size_t)data_len;
    return OX_OK;
}

void ox__cache_store(ox_context *ctx, const char *key, const void *data, size_t size)
{
    char path[1200], tmp[1300];
    if (bypass) return;
    if (size == 0 || !entry_path(key, path, sizeof path)) return;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    bool dir_ok = ox__make_dirs(path);
    *slash = '/';
    if (!dir_ok) {
        ox__log(ctx, OX_LOG_WARN, "kernel cache: cannot create the directory of %s: %s", path,
                strerror(errno));
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%p", path, (long)getpid(), (const void *)&tmp);
    unsigned char header[CACHE_HEADER];
    size_t key_len = strlen(key);
    memcpy(header, CACHE_MAGIC, 8);
    put_u64(header + 8, key_len);
    put_u64(header + 16, size);
    put_u64(header + 24, ox__hash64(data, size));
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(header, 1, sizeof header, f) == sizeof header &&
              fwrite(key, 1, key_len, f) == key_len && fwrite(data, 1, size, f) == size;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) == 0) {
        ox__log(ctx, OX_LOG_DEBUG, "kernel cache: stored %s (%zu bytes)", path, size);
        return;
    }
    ox__log(ctx, OX_LOG_WARN, "kernel cache: cannot write %s: %s", path, strerror(errno));
    remove(tmp);
}
