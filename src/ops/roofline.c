/* Device limits (ox_device_measure_limits, openxpu/device.h): the API, the
 * on-disk cache, and the measurement on devices with portable kernels
 * (kernels/roofline.oxc). The CPU is measured natively (roofline_cpu.c): its
 * ops run native code, not portable kernels, and its limits must be those
 * of the code its ops run.
 *
 * The cache is a text file, one line per device:
 *   KEY copy=GBPS triad=GBPS f32=GFLOPS f16=GFLOPS
 * KEY = backend|name|driver version|compute units, blanks written as '_'.
 * Values have 17 significant digits, so a reread gives the same doubles. A
 * new line replaces the file atomically (a temporary file renamed over it),
 * keeping the other devices' readable lines. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/ops_internal.h"
#include "ops/roofline.h"

#define STREAM_MAX_BYTES ((size_t)256 << 20) /* per array */
#define PER_ITEM 8          /* elements per work-item of the streaming kernels */
#define FMA_PER_ITEM (8 * 64) /* FMAs per work-item of fma_peak */
#define RATE_RUNS 5
#define RUN_SECONDS 0.02    /* a rate's runs last at least this long */
#define CACHE_LINE 1024

/* ---- timing ---------------------------------------------------------------- */

ox_status ox__roofline_best(ox__roofline_run run, void *arg, int64_t rounds, int runs,
                            double *best)
{
    ox_status s = run(arg, rounds); /* warm-up: builds, page mapping, clocks */
    *best = HUGE_VAL;
    for (int i = 0; s == OX_OK && i < runs; i++) {
        double t0 = ox__seconds();
        s = run(arg, rounds);
        double t = ox__seconds() - t0;
        if (t < *best) *best = t;
    }
    return s;
}

ox_status ox__roofline_rate(ox__roofline_run run, void *arg, double work, int64_t max_rounds,
                            double *rate)
{
    int64_t rounds = 4;
    ox_status s = run(arg, rounds);
    for (;;) {
        double t0 = ox__seconds();
        if (s == OX_OK) s = run(arg, rounds);
        double t = ox__seconds() - t0;
        if (s != OX_OK) return s;
        if (t >= RUN_SECONDS || rounds >= max_rounds) break;
        /* aim at twice the minimum, growing at most 64x per step */
        double grow = t > 0 ? 2 * RUN_SECONDS / t : 64;
        grow = grow < 2 ? 2 : grow > 64 ? 64 : grow;
        rounds = (int64_t)((double)rounds * grow);
        if (rounds > max_rounds) rounds = max_rounds;
    }
    double best;
    if ((s = ox__roofline_best(run, arg, rounds, RATE_RUNS, &best)) != OX_OK) return s;
    *rate = work * (double)rounds / best / 1e9;
    return OX_OK;
}

/* ---- portable kernels ---------------------------------------------------------- */

/* One kernel launch, waited for. */
typedef struct launch {
    ox_device *device;
    ox_queue *queue;
    ox__kernel *kernel;
    size_t groups[3], local[3];
    ox__kernel_arg args[4];
    int n_args;
    float s, m, q; /* the scalar arguments */
} launch;

static ox_status launch_run(void *arg, int64_t rounds)
{
    launch *l = arg;
    (void)rounds;
    ox_status s = ox__kernel_launch(l->device, l->queue->impl, l->kernel, l->groups, l->local,
                                    l->n_args, l->args, NULL);
    return s == OX_OK ? ox_queue_finish(l->queue) : s;
}

/* fma_peak: a round is a work-group. */
static ox_status fma_run(void *arg, int64_t rounds)
{
    launch *l = arg;
    l->groups[0] = (size_t)rounds;
    return launch_run(l, rounds);
}

static ox__kernel_arg buffer_arg(const ox_buffer *b)
{
    return (ox__kernel_arg){.kind = OX__ARG_BUFFER, .buffer = b->memory->impl,
                            .offset = b->offset};
}

static ox__kernel_arg scalar_arg(const void *value, size_t size)
{
    return (ox__kernel_arg){.kind = OX__ARG_SCALAR, .value = value, .size = size};
}

static ox_status roofline_kernel(ox_device *device, const char *options, const char *name,
                                 ox__kernel **out)
{
    const char *source = ox__kernel_source("roofline");
    if (!source)
        return ox__fail(device->ctx, OX_ERR_INTERNAL, "kernel source 'roofline' is not embedded");
    ox__program *program;
    ox_status s = ox__device_program(device, "roofline", source, options, &program);
    return s == OX_OK ? ox__program_kernel(program, name, out) : s;
}

/* The largest power of two <= 256 that the device's work-groups allow. */
static size_t group_size(const ox_device *device)
{
    size_t limit = device->info.max_work_group_size ? device->info.max_work_group_size : 64;
    size_t g = 1;
    while (g * 2 <= 256 && g * 2 <= limit) g *= 2;
    return g;
}

/* FMA throughput of fma_peak built with `half`, in GFLOP/s. The grid grows
 * until a launch takes tens of milliseconds, up to 2^31 work-items (the
 * most every API takes in one dimension). */
static ox_status portable_fma(ox_device *device, ox_queue *queue, size_t wg, int half,
                              double *gflops)
{
    char options[64];
    snprintf(options, sizeof options, "-DPER_ITEM=%d -DHALF=%d", PER_ITEM, half);
    launch l = {.device = device, .queue = queue, .groups = {1, 1, 1}, .local = {wg, 1, 1},
                .m = 0.999f, .q = 0.001f};
    ox_buffer *out = NULL;
    ox_status s = roofline_kernel(device, options, "fma_peak", &l.kernel);
    if (s == OX_OK) s = ox_buffer_alloc(device, wg * sizeof(float), &out);
    if (s != OX_OK) return s;
    l.args[0] = buffer_arg(out);
    l.args[1] = scalar_arg(&l.m, sizeof l.m);
    l.args[2] = scalar_arg(&l.q, sizeof l.q);
    l.n_args = 3;
    double flop = 2.0 * FMA_PER_ITEM * (double)wg * (half ? 2 : 1);
    s = ox__roofline_rate(fma_run, &l, flop, (int64_t)(((size_t)1 << 31) / wg), gflops);
    ox_buffer_free(out);
    return s;
}

static ox_status measure_portable(ox_device *device, ox_queue *queue, size_t wg,
                                  const ox__roofline_arrays *arrays, ox_device_limits *out)
{
    char options[64];
    snprintf(options, sizeof options, "-DPER_ITEM=%d -DHALF=0", PER_ITEM);
    double bytes = (double)arrays->n * sizeof(float), best;
    launch l = {.device = device, .queue = queue, .local = {wg, 1, 1}, .s = 3.0f};
    l.groups[0] = arrays->n / PER_ITEM / wg;
    l.groups[1] = l.groups[2] = 1;
    l.args[0] = buffer_arg(arrays->a);
    l.args[1] = buffer_arg(arrays->b);
    l.args[2] = buffer_arg(arrays->c);
    l.args[3] = scalar_arg(&l.s, sizeof l.s);

    ox_status s = roofline_kernel(device, options, "stream_copy", &l.kernel);
    l.n_args = 2;
    if (s == OX_OK) s = ox__roofline_best(launch_run, &l, 0, OX__ROOFLINE_STREAM_RUNS, &best);
    if (s != OX_OK) return s;
    out->copy_gbps = 2 * bytes / best / 1e9;

    s = roofline_kernel(device, options, "stream_triad", &l.kernel);
    l.n_args = 4;
    if (s == OX_OK) s = ox__roofline_best(launch_run, &l, 0, OX__ROOFLINE_STREAM_RUNS, &best);
    if (s != OX_OK) return s;
    out->triad_gbps = 3 * bytes / best / 1e9;

    if ((s = portable_fma(device, queue, wg, 0, &out->f32_gflops)) != OX_OK) return s;
    if (device->info.features & OX_FEATURE_BIT(OX_FEATURE_HALF_ARITH)) {
        /* A device that says it computes in half but cannot build or run the
         * kernel still has its other limits. */
        if (portable_fma(device, queue, wg, 1, &out->f16_gflops) != OX_OK) {
            ox__log(device->ctx, OX_LOG_WARN, "device limits: F16 FMA not measured on %s: %s",
                    device->info.id, ox_errmsg(device->ctx));
            out->f16_gflops = 0;
        }
    }
    return OX_OK;
}

/* ---- the arrays ------------------------------------------------------------------ */

/* Three arrays of min(256 MiB, max_alloc / 4, memory / 8) bytes, a multiple
 * of `granule` floats, filled (which also maps their pages). */
static ox_status arrays_alloc(ox_device *device, size_t granule, ox__roofline_arrays *arrays)
{
    const ox_device_info *info = &device->info;
    uint64_t bytes = STREAM_MAX_BYTES;
    if (info->max_alloc_bytes && info->max_alloc_bytes / 4 < bytes) bytes = info->max_alloc_bytes / 4;
    if (info->memory_bytes && info->memory_bytes / 8 < bytes) bytes = info->memory_bytes / 8;
    bytes -= bytes % (granule * sizeof(float));
    if (bytes == 0)
        return ox__fail(device->ctx, OX_ERR_OUT_OF_MEMORY,
                        "%s has too little memory for the streaming arrays", info->id);
    arrays->n = (size_t)bytes / sizeof(float);
    ox_buffer **all[3] = {&arrays->a, &arrays->b, &arrays->c};
    const float value = 1.0f;
    ox_status s = OX_OK;
    for (int i = 0; i < 3 && s == OX_OK; i++) {
        s = ox_buffer_alloc(device, (size_t)bytes, all[i]);
        if (s == OX_OK) s = ox_buffer_fill(*all[i], 0, (size_t)bytes, &value, sizeof value);
    }
    return s;
}

static ox_status measure(ox_device *device, ox_device_limits *out)
{
    bool cpu = device->backend->iface == ox__cpu_backend();
    size_t wg = cpu ? 1 : group_size(device);
    ox__roofline_arrays arrays = {0};
    ox_queue *queue = NULL;
    ox_status s = ox_queue_create(device, &queue); /* opens the device */
    if (s != OX_OK) return s;
    s = arrays_alloc(device, cpu ? 4096 : PER_ITEM * wg, &arrays);
    if (s == OX_OK)
        s = cpu ? ox__roofline_cpu(device, &arrays, out)
                : measure_portable(device, queue, wg, &arrays, out);
    ox_buffer_free(arrays.a);
    ox_buffer_free(arrays.b);
    ox_buffer_free(arrays.c);
    ox_queue_free(queue);
    return s;
}

/* ---- the cache --------------------------------------------------------------------- */

/* The cache file into path; false when caching is off or there is no home. */
static bool cache_path(char *path, size_t cap)
{
    const char *env = getenv("OX_LIMITS_FILE");
    int n;
    if (env && *env) {
        if (strcmp(env, "off") == 0) return false;
        n = snprintf(path, cap, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        n = snprintf(path, cap, "%s/openxpu/limits", env);
    } else if ((env = getenv("HOME")) && *env) {
        n = snprintf(path, cap, "%s/.cache/openxpu/limits", env);
    } else {
        return false;
    }
    return n > 0 && (size_t)n < cap;
}

static void cache_key(const ox_device_info *info, char *key, size_t cap)
{
    snprintf(key, cap, "%s|%s|%s|%u", info->backend, info->name, info->driver_version,
             (unsigned)info->compute_units);
    for (char *c = key; *c; c++)
        if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r') *c = '_';
}

/* The next line of f into buf, with its newline; false at the end. A line
 * longer than buf is read whole and returned empty (unreadable). */
static bool read_line(FILE *f, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, f)) return false;
    size_t n = strlen(buf);
    if (n + 1 == cap && buf[n - 1] != '\n') {
        int c;
        while ((c = fgetc(f)) != EOF && c != '\n') {
        }
        buf[0] = '\0';
    }
    return true;
}

/* " NAME=VALUE" at *p: a finite value >= 0, *p moved past it. */
static bool parse_field(const char **p, const char *name, double *value)
{
    size_t n = strlen(name);
    if (**p != ' ' || strncmp(*p + 1, name, n) != 0 || (*p)[n + 1] != '=') return false;
    const char *start = *p + n + 2;
    char *end;
    errno = 0;
    *value = strtod(start, &end);
    if (end == start || errno || !isfinite(*value) || *value < 0) return false;
    *p = end;
    return true;
}

/* A cache line's values; false if it is not exactly "KEY copy=.. triad=..
 * f32=.. f16=..", with positive bandwidths and F32 rate. */
static bool parse_line(const char *line, ox_device_limits *l)
{
    const char *p = strchr(line, ' ');
    if (!p || p == line) return false;
    if (!parse_field(&p, "copy", &l->copy_gbps) || !parse_field(&p, "triad", &l->triad_gbps) ||
        !parse_field(&p, "f32", &l->f32_gflops) || !parse_field(&p, "f16", &l->f16_gflops))
        return false;
    if (*p == '\n') p++;
    return *p == '\0' && l->copy_gbps > 0 && l->triad_gbps > 0 && l->f32_gflops > 0;
}

static bool line_has_key(const char *line, const char *key)
{
    size_t n = strlen(key);
    return strncmp(line, key, n) == 0 && line[n] == ' ';
}

/* The cached limits of `key` into *out; false if there are none (or only
 * unreadable ones). Every unreadable line is reported. */
static bool cache_read(ox_context *ctx, const char *path, const char *key, ox_device_limits *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[CACHE_LINE];
    bool found = false;
    for (int number = 1; read_line(f, line, sizeof line); number++) {
        ox_device_limits l = {0};
        bool mine = line_has_key(line, key);
        if (!parse_line(line, &l)) {
            ox__log(ctx, OX_LOG_WARN, "device limits cache %s, line %d is unreadable: ignored%s",
                    path, number, mine ? "; measuring again" : "");
            if (mine) found = false;
            continue;
        }
        if (!mine) continue;
        out->copy_gbps = l.copy_gbps;
        out->triad_gbps = l.triad_gbps;
        out->f32_gflops = l.f32_gflops;
        out->f16_gflops = l.f16_gflops;
        found = true;
    }
    fclose(f);
    return found;
}

/* Replace `key`'s line with `l`, keeping the other readable lines. */
static void cache_write(ox_context *ctx, const char *path, const char *key,
                        const ox_device_limits *l)
{
    char dir[4096], tmp[4200], line[CACHE_LINE];
    ox__copy_string(dir, sizeof dir, path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (!ox__make_dirs(dir)) {
            ox__log(ctx, OX_LOG_WARN, "device limits: cannot create %s: %s", dir, strerror(errno));
            return;
        }
    }
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out) {
        ox__log(ctx, OX_LOG_WARN, "device limits: cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    FILE *in = fopen(path, "r");
    ox_device_limits other = {0};
    while (in && read_line(in, line, sizeof line))
        if (parse_line(line, &other) && !line_has_key(line, key))
            fprintf(out, "%s%s", line, line[strlen(line) - 1] == '\n' ? "" : "\n");
    if (in) fclose(in);
    fprintf(out, "%s copy=%.17g triad=%.17g f32=%.17g f16=%.17g\n", key, l->copy_gbps,
            l->triad_gbps, l->f32_gflops, l->f16_gflops);
    bool ok = !ferror(out);
    if (fclose(out) != 0) ok = false;
    if (ok && rename(tmp, path) == 0) return;
    ox__log(ctx, OX_LOG_WARN, "device limits: cannot write %s: %s", path, strerror(errno));
    remove(tmp);
}

/* ---- the API --------------------------------------------------------------------- */

ox_status ox_device_measure_limits(ox_device *device, unsigned flags, ox_device_limits *out)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    if (out->struct_size < sizeof *out)
        return ox__fail(ctx, OX_ERR_INVALID,
                        "%s: out->struct_size is %zu; set it to sizeof(ox_device_limits) (%zu)",
                        __func__, out->struct_size, sizeof *out);
    if (flags & ~OX_LIMITS_REMEASURE)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: unknown flags 0x%x (known: OX_LIMITS_REMEASURE)",
                        __func__, flags & ~OX_LIMITS_REMEASURE);
    *out = (ox_device_limits){.struct_size = out->struct_size};

    char path[4096], key[512];
    bool cache = cache_path(path, sizeof path);
    cache_key(&device->info, key, sizeof key);
    if (cache && !(flags & OX_LIMITS_REMEASURE) && cache_read(ctx, path, key, out)) {
        out->bandwidth_gbps = fmax(out->copy_gbps, out->triad_gbps);
        out->cached = 1;
        return OX_OK;
    }
    double t0 = ox__seconds();
    if ((s = measure(device, out)) != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        *out = (ox_device_limits){.struct_size = out->struct_size};
        return ox__fail(ctx, s, "%s: %s: %s", __func__, device->info.id, message);
    }
    out->bandwidth_gbps = fmax(out->copy_gbps, out->triad_gbps);
    out->seconds = ox__seconds() - t0;
    ox__log(ctx, OX_LOG_DEBUG, "device limits of %s measured in %.2f s", device->info.id,
            out->seconds);
    if (cache) cache_write(ctx, path, key, out);
    return OX_OK;
}
