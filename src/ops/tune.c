/* Tunable kernel parameters: the families, their defaults per device class,
 * and each device's tuned entries, kept in memory and in a tuning file
 * beside the kernel cache (format in tune.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/program.h"
#include "ops/tune.h"

#define MAX_ENTRIES 64
#define CLASS_MAX 32

static const ox__tune_family_desc families[OX__TUNE_FAMILIES] = {
    [OX__TUNE_MATMUL] = {"matmul", "matmul", 11,
                         {"TK", "WG_M", "WG_N", "RM", "RN", "VW", "STRM", "STRN", "PAD", "KWI",
                          "MFIRST"},
                         {5, 6, 6, 7, 6, 4, 2, 2, 2, 4, 2},
                         {{8, 16, 32, 64, 128},
                          {1, 2, 4, 8, 16, 32},
                          {1, 2, 4, 8, 16, 32},
                          {1, 2, 4, 6, 8, 12, 16},
                          {1, 2, 4, 8, 16, 32},
                          {1, 2, 4, 8},
                          {0, 1},
                          {0, 1},
                          {0, 1},
                          {1, 2, 4, 8},
                          {0, 1}}},
    [OX__TUNE_MATVEC] = {"matvec", "matmul", 3, {"LANES", "ROWS", "CHUNK"}, {7, 6, 6},
                         {{1, 2, 4, 8, 16, 32, 64}, {1, 2, 4, 8, 16, 32}, {1, 2, 4, 8, 16, 32}}},
    [OX__TUNE_QMATVEC] = {"qmatvec", "quant", 4, {"VARIANT", "LANES", "ROWS", "DOT4"}, {2, 7, 6, 2},
                          {{0, 1}, {1, 2, 4, 8, 16, 32, 64}, {1, 2, 4, 8, 16, 32}, {0, 1}}},
    [OX__TUNE_QMATMUL] = {"qmatmul", "quant", 5, {"VARIANT", "LANES", "ROWS", "MT", "DOT4"},
                          {2, 6, 5, 5, 2},
                          {{0, 1}, {1, 2, 4, 8, 16, 32}, {1, 2, 4, 8, 16}, {1, 2, 4, 8, 16}, {0, 1}}},
    [OX__TUNE_ELEMENTWISE] = {"elementwise", "elementwise", 2, {"VEC", "WG"}, {5, 6},
                              {{1, 2, 4, 8, 16}, {32, 64, 128, 256, 512, 1024}}},
    [OX__TUNE_ROWS] = {"rows", "rows", 3, {"LANES", "ROWS", "CHUNK"}, {8, 6, 5},
                       {{1, 4, 16, 32, 64, 128, 256, 512}, {1, 2, 4, 8, 16, 32}, {1, 2, 4, 8, 16}}},
    [OX__TUNE_ATTENTION] = {"attention", "attention", 5, {"WG", "SPLIT", "LANES", "BQ", "BK"},
                            {7, 8, 6, 5, 5},
                            {{4, 8, 16, 32, 64, 128, 256},
                             {0, 1, 2, 4, 8, 16, 32, 64},
                             {1, 2, 4, 8, 16, 32},
                             {4, 8, 16, 32, 64},
                             {8, 16, 32, 64, 128}}},
};

const ox__tune_family_desc *ox__tune_family_get(ox__tune_family family)
{
    return family >= 0 && family < OX__TUNE_FAMILIES ? &families[family] : NULL;
}

int ox__tune_family_find(const char *name)
{
    for (int f = 0; f < OX__TUNE_FAMILIES; f++)
        if (strcmp(families[f].name, name) == 0) return f;
    return -1;
}

static bool is_candidate(const ox__tune_family_desc *d, int i, int value)
{
    for (int c = 0; c < d->n_candidates[i]; c++)
        if (d->candidates[i][c] == value) return true;
    return false;
}

bool ox__tune_valid(const ox_device_info *info, ox__tune_family family, const ox__tune_params *p)
{
    const ox__tune_family_desc *d = ox__tune_family_get(family);
    if (!d) return false;
    for (int i = 0; i < d->n_params; i++)
        if (!is_candidate(d, i, p->v[i])) return false;
    uint64_t max_wg = info->max_work_group_size ? info->max_work_group_size : 64;
    uint64_t local = info->local_memory_bytes ? info->local_memory_bytes : 16384;
    const int *v = p->v;
    switch (family) {
    case OX__TUNE_MATMUL: {
        /* TK VW WG_M... as in kernels/matmul.oxc: the staging steps and the
         * inner loop divide TK; at most 256 accumulators a work-item; the
         * two slices within local memory and CUDA's 48 KiB of static
         * shared memory */
        uint64_t slices = 4u * (uint64_t)v[0] * (uint64_t)(v[1] * v[3] + v[2] * v[4] + 2 * v[8]);
        return (uint64_t)v[1] * (uint64_t)v[2] <= max_wg && v[3] * v[4] <= 256 &&
               v[0] % v[5] == 0 && v[0] % v[9] == 0 && slices <= local && slices <= 49152;
    }
    case OX__TUNE_MATVEC:
    case OX__TUNE_ROWS: return (uint64_t)v[0] * (uint64_t)v[1] <= max_wg;
    case OX__TUNE_QMATVEC:
        return (uint64_t)v[1] * (uint64_t)v[2] <= max_wg && 4u * (uint64_t)(v[1] * v[2]) <= local;
    case OX__TUNE_QMATMUL:
        return (uint64_t)v[1] * (uint64_t)v[2] <= max_wg &&
               4u * (uint64_t)(v[1] * v[2] * v[3]) <= local;
    case OX__TUNE_ELEMENTWISE: return (uint64_t)v[1] <= max_wg;
    case OX__TUNE_ATTENTION: {
        /* both kernels at the usual head size (the op halves blocks that a
         * larger head does not fit) */
        int64_t key_rows = v[0] / v[2], kstep = v[4] > key_rows ? v[4] : key_rows;
        return (uint64_t)v[0] <= max_wg && v[2] <= v[0] &&
               ox__tune_attention_decode_bytes(128, v[2], v[0], 8, kstep) <= local &&
               ox__tune_attention_tiled_bytes(128, 128, v[2], v[3], v[4]) <= local;
    }
    case OX__TUNE_FAMILIES: break;
    }
    return false;
}

/* Defaults: GPUs and accelerators get the shapes GPUs like (a row's work
 * spread over a warp's lanes, coalesced); CPU-like devices (an OpenCL CPU
 * runtime) get work-items that each own whole rows, which their compilers
 * vectorise across work-items. Values too large for the device shrink. */
void ox__tune_defaults(const ox_device_info *info, ox__tune_family family, const char *cls,
                       ox__tune_params *out)
{
    bool gpu = info->type == OX_DEVICE_GPU || info->type == OX_DEVICE_ACCELERATOR;
    bool dot4 = (info->features & OX_FEATURE_BIT(OX_FEATURE_INT8_DOT)) != 0;
    memset(out, 0, sizeof *out);
    int *v = out->v;
    switch (family) {
    case OX__TUNE_MATMUL:
        if (gpu) {
            /* 16 x 16 work-items of 4 x 4 strided outputs: coalesced loads
             * and stores, conflict-free local reads (padded rows for the
             * staging stores) */
            v[0] = 16, v[1] = 16, v[2] = 16, v[3] = 4, v[4] = 4, v[5] = 1, v[6] = 1, v[7] = 1;
            v[8] = 1, v[9] = 1, v[10] = 0;
        } else {
            /* two work-items a group, one above the other (a CPU runtime
             * then keeps little across barriers but the accumulators, in
             * registers), each with a tile its compiler vectorises along n:
             * 6 x 32 when b's rows run along n; 12 x 16 when b is read
             * along K, whose slices are transposed element by element on
             * the way to local memory. Consecutive groups share b's slices,
             * which stay in cache. For b along n at 2048^3 that is 1.5x one
             * work-item a group with TK = 64 (PoCL 3.1, Zen 4; as fast for b
             * along K) */
            bool bt = cls && strstr(cls, ".bt") != NULL;
            v[0] = 16, v[1] = 2, v[2] = 1, v[3] = bt ? 12 : 6, v[4] = bt ? 16 : 32, v[5] = 8;
            v[6] = 0, v[7] = 0, v[8] = 0, v[9] = 1, v[10] = 1;
        }
        break;
    case OX__TUNE_MATVEC:
        if (gpu) v[0] = 32, v[1] = 4, v[2] = 4;
        else v[0] = 1, v[1] = 16, v[2] = 16;
        break;
    case OX__TUNE_QMATVEC:
        if (gpu) v[0] = 0, v[1] = 32, v[2] = 4, v[3] = dot4;
        else v[0] = 1, v[1] = 1, v[2] = 16, v[3] = 0;
        break;
    case OX__TUNE_QMATMUL:
        if (gpu) v[0] = 0, v[1] = 32, v[2] = 2, v[3] = 8, v[4] = dot4;
        else v[0] = 1, v[1] = 1, v[2] = 16, v[3] = 8, v[4] = 0; /* tiles: 4x the rows on PoCL */
        break;
    case OX__TUNE_ELEMENTWISE:
        /* 16-bit types on CPU-like devices: eight per work-item, which their
         * compilers vectorise within the work-item (PoCL: 2.3 -> 12.8 GB/s
         * for an F16 add) */
        v[0] = !gpu && cls && (strcmp(cls, "f16") == 0 || strcmp(cls, "bf16") == 0) ? 8 : 1;
        v[1] = 256;
        break;
    case OX__TUNE_ROWS:
        if (gpu) v[0] = 256, v[1] = 1, v[2] = 1;
        else v[0] = 1, v[1] = 16, v[2] = 16;
        break;
    case OX__TUNE_ATTENTION:
        if (gpu) v[0] = 128, v[1] = 0, v[2] = 16, v[3] = 32, v[4] = 16;
        else v[0] = 8, v[1] = 0, v[2] = 1, v[3] = 64, v[4] = 16;
        break;
    case OX__TUNE_FAMILIES: return;
    }
    /* shrink to what the device allows: halve the largest power-of-two
     * work-group dimension until valid */
    for (int tries = 0; tries < 16 && !ox__tune_valid(info, family, out); tries++) {
        int widest = -1;
        for (int i = 0; i < families[family].n_params; i++) {
            const char *name = families[family].param[i];
            bool geometry = strcmp(name, "LANES") == 0 || strcmp(name, "ROWS") == 0 ||
                            strcmp(name, "WG") == 0 || strcmp(name, "WG_M") == 0 ||
                            strcmp(name, "WG_N") == 0 || strcmp(name, "RM") == 0 ||
                            strcmp(name, "RN") == 0 || strcmp(name, "TK") == 0 ||
                            strcmp(name, "BQ") == 0 || strcmp(name, "BK") == 0;
            if (geometry && v[i] > 1 && is_candidate(&families[family], i, v[i] / 2) &&
                (widest < 0 || v[i] > v[widest]))
                widest = i;
        }
        if (widest < 0) break;
        v[widest] /= 2;
    }
}

int ox__tune_attention_run(int lanes)
{
    return lanes >= 16 ? 1 : 16 / lanes;
}

uint64_t ox__tune_attention_decode_bytes(int64_t D, int64_t lanes, int64_t wg, int64_t rows,
                                         int64_t kstep)
{
    int64_t run = ox__tune_attention_run((int)lanes), per_lane = (D + lanes - 1) / lanes;
    int64_t padded = (per_lane + run - 1) / run * run * lanes, pairs = rows * kstep;
    int64_t runs = pairs > wg ? wg : pairs;
    return 4u * (uint64_t)(rows * padded + run + lanes * (pairs + 1) + pairs + 2 * runs + 4 * rows);
}

uint64_t ox__tune_attention_tiled_bytes(int64_t D, int64_t Dv, int64_t lanes, int64_t bq,
                                        int64_t bk)
{
    int64_t keys = (bk + lanes - 1) / lanes * lanes, per_lane = (Dv + lanes - 1) / lanes;
    int64_t per_pass = per_lane < 16 ? per_lane : 16;
    int64_t columns = (per_lane + per_pass - 1) / per_pass * per_pass * lanes;
    return 4u * (uint64_t)(bq * D + D * (bk + 1) + keys + bk * columns + bq * keys + bq * lanes);
}

const char *ox__tune_format(ox__tune_family family, const ox__tune_params *p, char *buf, size_t cap)
{
    const ox__tune_family_desc *d = ox__tune_family_get(family);
    size_t used = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; d && i < d->n_params && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s%s=%d", i ? "," : "", d->param[i], p->v[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

/* ---- the device's table ------------------------------------------------------ */

typedef struct entry {
    int family;
    char cls[CLASS_MAX];
    ox__tune_params params;
    double seconds;
} entry;

typedef struct ox__tune_table {
    bool loaded;
    int count;
    entry entries[MAX_ENTRIES];
    uint64_t source_hash[OX__TUNE_FAMILIES];
    uint64_t driver_hash;
} tune_table;

/* The family's kernel source as the device compiles it (prelude, common
 * helpers, source): what a tuned entry was measured with. */
static uint64_t source_hash(const ox_device *device, ox__tune_family family)
{
    const char *parts[3] = {ox__kernel_prelude(device->backend->iface->kernel_language),
                            ox__kernel_common(), ox__kernel_source(families[family].kernel_file)};
    uint64_t h = 0;
    for (int i = 0; i < 3; i++) {
        const char *s = parts[i] ? parts[i] : "";
        h = ox__hash64(s, strlen(s)) ^ (h * UINT64_C(0x9e3779b97f4a7c15));
    }
    return h;
}

bool ox__tune_path(ox_device *device, char *path, size_t cap)
{
    char dir[3072], name[160];
    if (!ox__cache_dir(dir, sizeof dir)) return false;
    snprintf(name, sizeof name, "%s-%s", device->info.backend, device->info.name);
    for (char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.'))
            *c = '_';
    int n = snprintf(path, cap, "%s/tuning/%s.txt", dir, name);
    return n > 0 && (size_t)n < cap;
}

static bool class_ok(const char *cls)
{
    size_t n = strlen(cls);
    if (n == 0 || n >= CLASS_MAX) return false;
    for (const char *c = cls; *c; c++)
        if (*c <= ' ' || *c > '~' || *c == ',') return false;
    return true;
}

int ox__tune_format_line(char *buf, size_t cap, const ox__tune_line *e)
{
    char params[256];
    ox__tune_format(e->family, &e->params, params, sizeof params);
    int n = snprintf(buf, cap, "ox-tune 1 %s %s %016" PRIx64 " %016" PRIx64 " %s %.6g",
                     families[e->family].name, e->cls, e->source, e->driver, params, e->seconds);
    if (n < 0 || (size_t)n >= cap) return -1;
    int m = snprintf(buf + n, cap - (size_t)n, " %016" PRIx64, ox__hash64(buf, (size_t)n));
    return m < 0 ? -1 : n + m;
}

/* Parse "NAME=V,NAME=V" for family f into p; false if anything is off. */
static bool parse_params(int f, const char *text, ox__tune_params *p)
{
    const ox__tune_family_desc *d = &families[f];
    memset(p, 0, sizeof *p);
    const char *at = text;
    for (int i = 0; i < d->n_params; i++) {
        size_t len = strlen(d->param[i]);
        if (strncmp(at, d->param[i], len) != 0 || at[len] != '=') return false;
        at += len + 1;
        char *end;
        errno = 0;
        long v = strtol(at, &end, 10);
        if (end == at || errno || v < -1000000 || v > 1000000) return false;
        p->v[i] = (int)v;
        at = end;
        if (i + 1 < d->n_params) {
            if (*at != ',') return false;
            at++;
        }
    }
    return *at == '\0';
}

const char *ox__tune_parse_line(const char *line, ox__tune_line *out)
{
    char family[32], cls[64], params[512];
    uint64_t check;
    int version;
    memset(out, 0, sizeof *out);
    const char *last = strrchr(line, ' ');
    if (!last || sscanf(last + 1, "%" SCNx64, &check) != 1 ||
        check != ox__hash64(line, (size_t)(last - line)))
        return "its checksum does not match";
    if (sscanf(line, "ox-tune %d %31s %63s %" SCNx64 " %" SCNx64 " %511s %lf", &version, family,
               cls, &out->source, &out->driver, params, &out->seconds) != 7 ||
        version != 1)
        return "it does not parse";
    if ((out->family = ox__tune_family_find(family)) < 0) return "its family is unknown";
    if (!class_ok(cls)) return "its class is malformed";
    ox__copy_string(out->cls, sizeof out->cls, cls);
    if (!parse_params(out->family, params, &out->params)) return "its parameters do not parse";
    const ox__tune_family_desc *d = &families[out->family];
    for (int i = 0; i < d->n_params; i++)
        if (!is_candidate(d, i, out->params.v[i])) return "a parameter is not a candidate";
    if (!(out->seconds >= 0 && out->seconds < 1e6)) return "its time is not a time";
    return NULL;
}

static void load(ox_device *device, tune_table *t)
{
    t->loaded = true;
    char path[4096];
    if (!ox__tune_path(device, path, sizeof path)) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    int number = 0;
    while (fgets(line, sizeof line, f)) {
        number++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        ox__tune_line e;
        const char *why = ox__tune_parse_line(line, &e);
        if (!why && !ox__tune_valid(&device->info, e.family, &e.params))
            why = "its parameters are not valid for this device";
        if (why) {
            ox__log(device->ctx, OX_LOG_WARN,
                    "%s:%d: corrupt tuning entry for %s ignored (%s); 'ox tune' rebuilds it", path,
                    number, device->info.id, why);
            continue;
        }
        int fam = e.family;
        const char *family = families[fam].name, *cls = e.cls;
        uint64_t source = e.source, driver = e.driver;
        if (source != t->source_hash[fam] || driver != t->driver_hash) {
            ox__log(device->ctx, OX_LOG_WARN,
                    "%s:%d: stale tuning entry for %s %s %s ignored (%s changed since it was "
                    "measured); 'ox tune --op %s' measures it again",
                    path, number, device->info.id, family, cls,
                    source != t->source_hash[fam] ? "the kernel source" : "the driver", family);
            continue;
        }
        int slot = -1;
        for (int i = 0; i < t->count; i++)
            if (t->entries[i].family == fam && strcmp(t->entries[i].cls, cls) == 0) slot = i;
        if (slot < 0 && t->count < MAX_ENTRIES) slot = t->count++;
        if (slot >= 0) {
            t->entries[slot] = (entry){.family = fam, .params = e.params, .seconds = e.seconds};
            ox__copy_string(t->entries[slot].cls, CLASS_MAX, cls);
        }
    }
    fclose(f);
}

/* The device's table, created and loaded on first use; call with
 * device->lock held. NULL when out of memory. */
static tune_table *table(ox_device *device)
{
    tune_table *t = device->tuning;
    if (!t) {
        t = ox__calloc(device->ctx, 1, sizeof *t);
        if (!t) return NULL;
        for (int f = 0; f < OX__TUNE_FAMILIES; f++) t->source_hash[f] = source_hash(device, f);
        t->driver_hash = ox__hash64(device->info.driver_version, strlen(device->info.driver_version));
        device->tuning = t;
    }
    if (!t->loaded) load(device, t);
    return t;
}

void ox__tune_get(ox_device *device, ox__tune_family family, const char *cls,
                  ox__tune_params *out, bool *tuned)
{
    if (tuned) *tuned = false;
    pthread_mutex_lock(&device->lock);
    tune_table *t = table(device);
    for (int i = 0; t && i < t->count; i++) {
        if (t->entries[i].family == (int)family && strcmp(t->entries[i].cls, cls) == 0) {
            *out = t->entries[i].params;
            if (tuned) *tuned = true;
            pthread_mutex_unlock(&device->lock);
            return;
        }
    }
    pthread_mutex_unlock(&device->lock);
    ox__tune_defaults(&device->info, family, cls, out);
}

bool ox__tune_entry(ox_device *device, int i, ox__tune_family *family, char *cls, size_t cap,
                    ox__tune_params *out)
{
    pthread_mutex_lock(&device->lock);
    tune_table *t = table(device);
    bool found = t && i >= 0 && i < t->count;
    if (found) {
        *family = (ox__tune_family)t->entries[i].family;
        snprintf(cls, cap, "%s", t->entries[i].cls);
        *out = t->entries[i].params;
    }
    pthread_mutex_unlock(&device->lock);
    return found;
}

ox_status ox__tune_put(ox_device *device, ox__tune_family family, const char *cls,
                       const ox__tune_params *p, double seconds, bool remove)
{
    if (!class_ok(cls) || (!remove && !ox__tune_valid(&device->info, family, p)))
        return ox__fail(device->ctx, OX_ERR_INVALID, "tuning %s: class '%s' or parameters invalid",
                        families[family].name, cls);
    pthread_mutex_lock(&device->lock);
    tune_table *t = table(device);
    ox_status s = OX_OK;
    if (!t) {
        s = ox__fail(device->ctx, OX_ERR_OUT_OF_MEMORY, "tuning: out of host memory");
        goto out;
    }
    int slot = -1;
    for (int i = 0; i < t->count; i++)
        if (t->entries[i].family == (int)family && strcmp(t->entries[i].cls, cls) == 0) slot = i;
    if (remove) {
        if (slot >= 0) t->entries[slot] = t->entries[--t->count];
        goto out;
    }
    if (slot < 0) {
        if (t->count == MAX_ENTRIES) {
            s = ox__fail(device->ctx, OX_ERR_OUT_OF_RANGE, "tuning: more than %d entries",
                         MAX_ENTRIES);
            goto out;
        }
        slot = t->count++;
    }
    t->entries[slot] = (entry){.family = (int)family, .params = *p, .seconds = seconds};
    ox__copy_string(t->entries[slot].cls, CLASS_MAX, cls);
out:
    pthread_mutex_unlock(&device->lock);
    return s;
}

ox_status ox__tune_save(ox_device *device)
{
    char path[4096], tmp[4200];
    if (!ox__tune_path(device, path, sizeof path))
        return ox__fail(device->ctx, OX_ERR_UNSUPPORTED,
                        "tuning: no cache directory (OX_CACHE_DIR=off, or no HOME)");
    char *slash = strrchr(path, '/');
    *slash = '\0';
    bool made = ox__make_dirs(path);
    *slash = '/';
    if (!made) return ox__fail(device->ctx, OX_ERR_IO, "tuning: cannot create the folder of %s", path);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return ox__fail(device->ctx, OX_ERR_IO, "tuning: cannot write %s: %s", tmp, strerror(errno));
    pthread_mutex_lock(&device->lock);
    tune_table *t = table(device);
    fprintf(f, "# OpenXPU tuning for %s (%s, driver %s), written by ox tune\n", device->info.id,
            device->info.name, device->info.driver_version);
    for (int i = 0; t && i < t->count; i++) {
        const entry *en = &t->entries[i];
        ox__tune_line e = {.family = en->family, .source = t->source_hash[en->family],
                           .driver = t->driver_hash, .params = en->params,
                           .seconds = en->seconds};
        ox__copy_string(e.cls, sizeof e.cls, en->cls);
        char line[768];
        if (ox__tune_format_line(line, sizeof line, &e) > 0) fprintf(f, "%s\n", line);
    }
    pthread_mutex_unlock(&device->lock);
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return ox__fail(device->ctx, OX_ERR_IO, "tuning: cannot write %s: %s", path, strerror(err));
    }
    return OX_OK;
}

void ox__tune_free(ox_device *device)
{
    if (device->tuning) ox__free(device->ctx, device->tuning, sizeof(tune_table));
    device->tuning = NULL;
}
