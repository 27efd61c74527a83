/* Pipelines: one model over several devices of any backends (a
 * "super-node"). The model's layers are cut into contiguous ranges, one per
 * device, in proportion to each device's measured speed; each stage is a
 * model loaded with that layer range (ox_model_load_ex) and its session.
 * The layers are shared so that each device reads a share of the weights
 * per token in proportion to its speed, the output projection counting for
 * the last stage, which goes to the fastest device. An evaluation runs the
 * stages in order, passing the hidden states [n,
 * n_embd] from one device to the next through host memory; the last stage
 * gives the logits. Every stage computes exactly what the whole model
 * computes for its layers, so the result is the one-device result, up to
 * the devices' own rounding.
 *
 * Speeds: a short calibration per device (a quantized matrix-vector product,
 * the decode step's shape), cached by backend and device name in
 * $XDG_CACHE_HOME/openxpu/calibration (OX_CALIBRATION_FILE overrides).
 *
 * Failure: when a stage fails with a device error (the backend, the device
 * or its memory), the pipeline drops that device, plans again on the others,
 * and replays the tokens evaluated so far to rebuild the KV state; the call
 * then returns what it would have, and generation goes on without a lost or
 * repeated token. One warning is logged. For tests, OX_FAULT_DEVICE=ID makes
 * device ID fail from the OX_FAULT_AFTER-th evaluation on (default 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "openxpu/llm.h"

#define MAX_STAGES 16

typedef struct stage {
    ox_device *device;
    ox_model *model;
    ox_session *session;
    ox_stage_info info;
} stage;

struct ox_pipeline {
    ox_context *ctx;
    char *path;
    ox_pipeline_options options;
    ox_device *devices[MAX_STAGES];
    double speeds[MAX_STAGES];
    int n_devices;
    stage stages[MAX_STAGES];
    int n_stages;
    /* what each device does: one entry per stage, or with tensor
     * parallelism one per device sharing the single stage */
    ox_stage_info infos[MAX_STAGES];
    ox_device *info_device[MAX_STAGES];
    int n_infos;
    bool tp;
    int n_embd, n_vocab, n_ctx;
    int n_layer;       /* the model's */
    int first, last;   /* the layers this pipeline covers */
    /* what was evaluated, for replay after a failure: tokens (first == 0)
     * or hidden states (n_embd floats a token) */
    int32_t *history;
    float *history_hidden;
    int n_history, cap_history;
    float *hidden[2];
    int hidden_tokens; /* capacity of each hidden buffer in tokens */
    long evals;
};

/* ---- calibration ------------------------------------------------------------ */

static void calibration_path(char *path, size_t cap)
{
    const char *env = getenv("OX_CALIBRATION_FILE"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    if (env && *env) snprintf(path, cap, "%s", env);
    else if (xdg && *xdg) snprintf(path, cap, "%s/openxpu/calibration", xdg);
    else snprintf(path, cap, "%s/.cache/openxpu/calibration", home ? home : "/tmp");
}

static void calibration_key(const ox_device_info *info, char *key, size_t cap)
{
    snprintf(key, cap, "%s|%s|%s", info->backend, info->name, info->driver_version);
    for (char *c = key; *c; c++)
        if (*c == ' ' || *c == '\n' || *c == '\t') *c = '_';
}

static bool cached_speed(const char *key, double *speed)
{
    char path[4096], line[512];
    calibration_path(path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool found = false;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ' ') found = sscanf(line + n, "%lf", speed) == 1;
    fclose(f);
    return found && *speed > 0;
}

static void store_speed(const char *key, double speed)
{
    char path[4096];
    calibration_path(path, sizeof path);
    char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        *slash = '\0';
        ox__make_dirs(path);
        *slash = '/';
    }
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%s %.6g\n", key, speed);
    fclose(f);
}

/* Bytes of Q8_0 weights a device reads per second in a matrix-vector
 * product of 2048 x 2048 (4.25 MiB), best of 5 after a warm-up. */
static ox_status measure_speed(ox_device *device, double *speed)
{
    enum { K = 2048, N = 2048 };
    ox_tensor w = {0}, x = {0}, y = {0};
    ox_queue *q = NULL;
    ox_status s = ox_tensor_alloc(device, OX_DTYPE_Q8_0, K, N, 1, 1, &w);
    if (s == OX_OK) s = ox_tensor_alloc(device, OX_DTYPE_F32, K, 1, 1, 1, &x);
    if (s == OX_OK) s = ox_tensor_alloc(device, OX_DTYPE_F32, N, 1, 1, 1, &y);
    if (s == OX_OK) s = ox_queue_create(device, &q);
    size_t wbytes = ox_dtype_row_size(OX_DTYPE_Q8_0, K) * N;
    unsigned char *host = s == OX_OK ? calloc(1, wbytes) : NULL;
    if (s == OX_OK && !host) s = OX_ERR_OUT_OF_MEMORY;
    if (s == OX_OK) s = ox_tensor_write(&w, host, wbytes);
    float ones[K];
    for (int i = 0; i < K; i++) ones[i] = 1.0f;
    if (s == OX_OK) s = ox_tensor_write(&x, ones, sizeof ones);
    double best = 1e30;
    for (int rep = 0; s == OX_OK && rep < 6; rep++) {
        double t0 = ox__seconds();
        s = ox_matmul(q, &y, &x, &w, OX_MATMUL_TRANS_B);
        if (s == OX_OK) s = ox_queue_finish(q);
        double t = ox__seconds() - t0;
        if (rep > 0 && t < best) best = t;
    }
    if (s == OX_OK) *speed = (double)wbytes / best;
    free(host);
    ox_queue_free(q);
    ox_buffer_free(w.buffer);
    ox_buffer_free(x.buffer);
    ox_buffer_free(y.buffer);
    return s;
}

static ox_status device_speed(ox_device *device, double *speed)
{
    ox_device_info info = {.struct_size = sizeof info};
    ox_status s = ox_device_get_info(device, &info);
    if (s != OX_OK) return s;
    char key[512];
    calibration_key(&info, key, sizeof key);
    if (cached_speed(key, speed)) return OX_OK;
    if ((s = measure_speed(device, speed)) != OX_OK) return s;
    store_speed(key, *speed);
    return OX_OK;
}

/* ---- planning ---------------------------------------------------------------- */

/* Bytes of one tensor of the file, 0 if absent. */
static uint64_t tensor_size(const ox_gguf *g, const char *name)
{
    int64_t i = ox_gguf_find_tensor(g, name);
    ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
    return i >= 0 && ox_gguf_tensor_info_get(g, i, &ti) == OX_OK ? ti.nbytes : 0;
}

static uint64_t layer_bytes(const ox_gguf *g, int il)
{
    uint64_t sum = 0;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "blk.%d.", il);
    size_t n = strlen(prefix);
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info ti = {.struct_size = sizeof ti};
        if (ox_gguf_tensor_info_get(g, i, &ti) == OX_OK && strncmp(ti.name, prefix, n) == 0)
            sum += ti.nbytes;
    }
    return sum;
}

static int64_t meta(const ox_gguf *g, const char *arch, const char *key, int64_t fallback)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int64_t i = ox_gguf_find(g, full), v;
    return i >= 0 && ox_gguf_get_int(g, i, &v) == OX_OK ? v : fallback;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / 1048576.0;
}

/* A stage's device, layers and share; its device's description in *di. */
static ox_status stage_start(ox_device *device, int first, int last, double share,
                             ox_stage_info *st, ox_device_info *di)
{
    memset(st, 0, sizeof *st);
    st->struct_size = sizeof *st;
    *di = (ox_device_info){.struct_size = sizeof *di};
    ox_status s = ox_device_get_info(device, di);
    if (s != OX_OK) return s;
    snprintf(st->device, sizeof st->device, "%s", di->id);
    st->first_layer = first;
    st->last_layer = last;
    st->speed = share;
    return OX_OK;
}

/* Device memory a stage needs: its weights (none on the CPU backend, which
 * maps the file), its KV cache, and scratch for a 512-token batch of about
 * 16 activations of n_embd. */
static uint64_t device_need(const ox_device_info *di, const ox_stage_info *st, int n_embd)
{
    bool mapped = strcmp(di->backend, "cpu") == 0;
    return (mapped ? 0 : st->weight_bytes) + st->kv_bytes + 512ull * 16u * (uint64_t)n_embd * 4u;
}

/* A stage that needs more than its device's memory: an error saying how
 * much is missing where. */
static ox_status check_fits(ox_context *ctx, const ox_device_info *di, const ox_stage_info *st)
{
    if (!di->memory_bytes || st->need_bytes <= di->memory_bytes) return OX_OK;
    return ox__fail(ctx, OX_ERR_DEVICE_MEMORY, "ox_pipeline: the model does not fit: %s needs "
                    "%.1f MiB for layers %d-%d (weights %.1f, KV cache %.1f), has %.1f MiB: "
                    "%.1f MiB missing", di->id, mib(st->need_bytes), st->first_layer,
                    st->last_layer - 1, mib(st->weight_bytes), mib(st->kv_bytes),
                    mib(di->memory_bytes), mib(st->need_bytes - di->memory_bytes));
}

/* Cut the layers in proportion to the speeds and size each stage. */
static ox_status plan(ox_context *ctx, const char *path, ox_device *const *devices,
                      const double *speeds, int n, const ox_pipeline_options *o,
                      ox_stage_info *out)
{
    ox_gguf *g;
    uint64_t *cum = NULL;
    int L0 = 0, L1 = 0;
    ox_status s = ox_gguf_open(ctx, path, &g);
    if (s != OX_OK) return s;
    const char *text;
    size_t len;
    char arch[32] = "";
    int64_t key = ox_gguf_find(g, "general.architecture");
    if (key >= 0 && ox_gguf_get_string(g, key, &text, &len) == OX_OK)
        snprintf(arch, sizeof arch, "%.*s", (int)len, text);
    if (!arch[0]) {
        s = ox__fail(ctx, OX_ERR_FORMAT, "ox_pipeline: %s has no general.architecture (a string): "
                     "not a language model this runtime can run", path);
        goto out;
    }
    int n_layer = (int)meta(g, arch, "block_count", 0);
    int n_head = (int)meta(g, arch, "attention.head_count", 1);
    int n_embd = (int)meta(g, arch, "embedding_length", 0);
    int n_head_kv = (int)meta(g, arch, "attention.head_count_kv", n_head);
    int head_dim = (int)meta(g, arch, "attention.key_length", n_head > 0 ? n_embd / n_head : 0);
    int n_ctx_train = (int)meta(g, arch, "context_length", 0);
    int n_ctx = o && o->n_ctx > 0 ? o->n_ctx : (n_ctx_train < 4096 ? n_ctx_train : 4096);
    if (n_layer <= 0) {
        s = ox__fail(ctx, OX_ERR_FORMAT, "ox_pipeline: %s has no %s.block_count", path, arch);
        goto out;
    }
    L0 = o ? o->first_layer : 0;
    L1 = o && o->last_layer ? o->last_layer : n_layer;
    if (L0 < 0 || L0 >= L1 || L1 > n_layer) {
        s = ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline: layers [%d, %d) are not a range of the "
                     "model's %d", L0, L1, n_layer);
        goto out;
    }
    if (n > L1 - L0) {
        s = ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline: %d devices for %d layers; at most one "
                     "device per layer", n, L1 - L0);
        goto out;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += speeds[i];
    uint64_t kv_per_layer = (uint64_t)n_ctx * (uint64_t)n_head_kv * (uint64_t)head_dim * 2u *
                            (o && o->kv_f32 ? 4u : 2u);
    uint64_t embd = tensor_size(g, "token_embd.weight"), output = tensor_size(g, "output.weight");
    uint64_t out_norm = tensor_size(g, "output_norm.weight");
    /* Each stage reads its weights once per token: share the bytes (the
     * output projection on the last stage included) in proportion to the
     * speeds, cutting between layers. */
    uint64_t tail = L1 == n_layer ? out_norm + (output ? output : embd) : 0, all_bytes = tail;
    cum = ox__alloc(ctx, (size_t)(L1 - L0 + 1) * sizeof *cum);
    if (!cum) {
        s = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_pipeline: out of memory");
        goto out;
    }
    cum[0] = 0;
    for (int il = L0; il < L1; il++) cum[il - L0 + 1] = cum[il - L0] + layer_bytes(g, il);
    all_bytes += cum[L1 - L0];
    if (o && o->tensor_parallel && n > 1) {
        /* every device runs every layer's matrices on its share of the
         * rows; the last (fastest) device holds the rest of the model, the
         * KV cache and the output */
        for (int i = 0; i < n; i++) {
            ox_stage_info *st = &out[i];
            ox_device_info di;
            if ((s = stage_start(devices[i], L0, L1, speeds[i] / total, st, &di))) goto out;
            bool main_device = i == n - 1;
            /* a tied output is the embeddings: count them once */
            bool tied_in_tail = L1 == n_layer && !output;
            st->weight_bytes = main_device ? cum[L1 - L0] + tail +
                                                 (L0 == 0 && !tied_in_tail ? embd : 0)
                                           : (uint64_t)((double)cum[L1 - L0] * st->speed);
            st->kv_bytes = main_device ? kv_per_layer * (uint64_t)(L1 - L0) : 0;
            st->need_bytes = device_need(&di, st, n_embd);
            if ((s = check_fits(ctx, &di, st)) != OX_OK) goto out;
        }
        goto out;
    }
    double acc = 0;
    int first = L0;
    for (int i = 0; i < n; i++) {
        acc += speeds[i];
        double want = (double)all_bytes * acc / total;
        int last = L0;
        while (last < L1 && (double)cum[last - L0 + 1] <= want + 0.5 * (double)(cum[last - L0 + 1] -
                                                                            cum[last - L0]))
            last++;
        if (i == n - 1) last = L1;
        if (last < first + 1) last = first + 1;          /* at least one layer each */
        if (last > L1 - (n - 1 - i)) last = L1 - (n - 1 - i); /* and for the rest */
        ox_stage_info *st = &out[i];
        ox_device_info di;
        if ((s = stage_start(devices[i], first, last, speeds[i] / total, st, &di))) goto out;
        st->weight_bytes = cum[last - L0] - cum[first - L0]; /* its layers, summed once above */
        /* a device that copies looks embeddings up in the mapped file,
         * unless they are also its output projection */
        bool mapped = strcmp(di.backend, "cpu") == 0;
        if (first == 0 && (mapped || (last == n_layer && !output))) st->weight_bytes += embd;
        if (last == n_layer) st->weight_bytes += out_norm + (output ? output : (first ? embd : 0));
        st->kv_bytes = kv_per_layer * (uint64_t)(last - first);
        st->need_bytes = device_need(&di, st, n_embd);
        if ((s = check_fits(ctx, &di, st)) != OX_OK) goto out;
        first = last;
    }
out:
    if (cum) ox__free(ctx, cum, (size_t)(L1 - L0 + 1) * sizeof *cum);
    ox_gguf_close(g);
    return s;
}

static ox_status get_speeds(ox_context *ctx, ox_device *const *devices, int n,
                            const ox_pipeline_options *o, double *speeds)
{
    if (n <= 0 || n > MAX_STAGES)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline: %d devices (1 to %d)", n, MAX_STAGES);
    for (int i = 0; i < n; i++) {
        if (!devices[i]) return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline: device %d is NULL", i);
        for (int j = 0; j < i; j++)
            if (devices[j] == devices[i])
                return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline: a device is listed twice");
        if (o && o->speeds) {
            speeds[i] = o->speeds[i];
            if (!(speeds[i] > 0))
                return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline: speed %d is not positive", i);
        } else {
            ox_status s = n == 1 ? (speeds[i] = 1.0, OX_OK) : device_speed(devices[i], &speeds[i]);
            if (s != OX_OK) return s;
        }
    }
    return OX_OK;
}

/* The fastest device takes the last stage, which computes the output
 * projection (often the largest matrix); the others keep their order. */
static void fastest_last(ox_device **devices, double *speeds, int n)
{
    int best = n - 1;
    for (int i = 0; i < n; i++)
        if (speeds[i] > speeds[best]) best = i;
    ox_device *d = devices[best];
    double sp = speeds[best];
    for (int i = best; i < n - 1; i++) {
        devices[i] = devices[i + 1];
        speeds[i] = speeds[i + 1];
    }
    devices[n - 1] = d;
    speeds[n - 1] = sp;
}

ox_status ox_pipeline_plan(ox_context *ctx, const char *path, ox_device *const *devices, int n,
                           const ox_pipeline_options *options, ox_stage_info *stages)
{
    if (!path || !devices || !stages)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline_plan: path, devices or stages is NULL");
    double speeds[MAX_STAGES];
    ox_device *order[MAX_STAGES];
    ox_status s = get_speeds(ctx, devices, n, options, speeds);
    if (s != OX_OK) return s;
    memcpy(order, devices, (size_t)n * sizeof *order);
    fastest_last(order, speeds, n);
    return plan(ctx, path, order, speeds, n, options, stages);
}

/* ---- the pipeline ------------------------------------------------------------ */

static void free_stages(ox_pipeline *p)
{
    for (int i = 0; i < p->n_stages; i++) {
        ox_session_free(p->stages[i].session);
        ox_model_free(p->stages[i].model);
    }
    memset(p->stages, 0, sizeof p->stages);
    p->n_stages = 0;
}

/* Plan over p->devices and load every stage. */
static ox_status build(ox_pipeline *p)
{
    ox_stage_info infos[MAX_STAGES];
    ox_status s = plan(p->ctx, p->path, p->devices, p->speeds, p->n_devices, &p->options, infos);
    if (s != OX_OK) return s;
    p->tp = p->options.tensor_parallel && p->n_devices > 1;
    memcpy(p->infos, infos, (size_t)p->n_devices * sizeof *infos);
    memcpy(p->info_device, p->devices, (size_t)p->n_devices * sizeof *p->devices);
    p->n_infos = p->n_devices;
    int n_stages = p->tp ? 1 : p->n_devices;
    /* tensor parallel: the main (last, fastest) device first, then helpers */
    ox_device *tp_devices[MAX_STAGES];
    double tp_shares[MAX_STAGES];
    if (p->tp) {
        tp_devices[0] = p->devices[p->n_devices - 1];
        tp_shares[0] = p->speeds[p->n_devices - 1];
        for (int i = 0; i + 1 < p->n_devices; i++) {
            tp_devices[i + 1] = p->devices[i];
            tp_shares[i + 1] = p->speeds[i];
        }
    }
    for (int i = 0; i < n_stages && s == OX_OK; i++) {
        stage *st = &p->stages[i];
        int k = p->tp ? p->n_devices - 1 : i;
        st->device = p->devices[k];
        st->info = infos[k];
        ox_model_load_options lo = {.struct_size = sizeof lo,
                                    .progress = p->options.progress,
                                    .progress_user = p->options.progress_user,
                                    .first_layer = infos[k].first_layer,
                                    .last_layer = infos[k].last_layer};
        if (p->tp) {
            lo.tp_devices = tp_devices;
            lo.tp_shares = tp_shares;
            lo.tp_count = p->n_devices;
        }
        ox_session_options so = {.struct_size = sizeof so, .n_ctx = p->options.n_ctx,
                                 .kv_f32 = p->options.kv_f32};
        s = ox_model_load_ex(st->device, p->path, &lo, &st->model);
        if (s == OX_OK) s = ox_session_create_ex(st->model, &so, &st->session);
        p->n_stages = i + 1;
    }
    if (s != OX_OK) {
        free_stages(p);
        return s;
    }
    ox_model_info mi = {.struct_size = sizeof mi};
    ox_model_get_info(p->stages[0].model, &mi);
    p->n_embd = mi.n_embd;
    p->n_vocab = mi.n_vocab;
    p->n_layer = mi.n_layer;
    p->first = p->stages[0].info.first_layer;
    p->last = p->stages[p->n_stages - 1].info.last_layer;
    p->n_ctx = ox_session_capacity(p->stages[0].session);
    return OX_OK;
}

ox_status ox_pipeline_create(ox_context *ctx, const char *path, ox_device *const *devices, int n,
                             const ox_pipeline_options *options, ox_pipeline **out)
{
    if (!out || !path || !devices)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline_create: path, devices or out is NULL");
    *out = NULL;
    if (options && options->struct_size < sizeof *options)
        return ox__fail(ctx, OX_ERR_INVALID, "ox_pipeline_create: options->struct_size is %zu; "
                        "set it to sizeof(ox_pipeline_options)", options->struct_size);
    ox_pipeline *p = ox__calloc(ctx, 1, sizeof *p);
    if (!p) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_pipeline_create: out of memory");
    p->ctx = ctx;
    if (options) p->options = *options;
    p->options.struct_size = sizeof p->options;
    p->options.speeds = NULL;
    size_t len = strlen(path) + 1;
    p->path = ox__alloc(ctx, len);
    ox_status s = p->path ? get_speeds(ctx, devices, n, options, p->speeds)
                          : ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_pipeline_create: out of memory");
    if (s == OX_OK) {
        memcpy(p->path, path, len);
        memcpy(p->devices, devices, (size_t)n * sizeof *devices);
        p->n_devices = n;
        fastest_last(p->devices, p->speeds, n);
        s = build(p);
    }
    if (s != OX_OK) {
        ox_pipeline_free(p);
        return s;
    }
    *out = p;
    return OX_OK;
}

void ox_pipeline_free(ox_pipeline *p)
{
    if (!p) return;
    ox_context *ctx = p->ctx;
    free_stages(p);
    for (int i = 0; i < 2; i++)
        ox__free(ctx, p->hidden[i], (size_t)p->hidden_tokens * (size_t)p->n_embd * sizeof(float));
    ox__free(ctx, p->history, (size_t)p->cap_history * sizeof *p->history);
    ox__free(ctx, p->history_hidden, (size_t)p->cap_history * (size_t)p->n_embd * sizeof(float));
    if (p->path) ox__free(ctx, p->path, strlen(p->path) + 1);
    ox__free(ctx, p, sizeof *p);
}

static bool device_failure(ox_status s)
{
    return s == OX_ERR_BACKEND || s == OX_ERR_DEVICE_LOST || s == OX_ERR_DEVICE_MEMORY;
}

/* OX_FAULT_DEVICE / OX_FAULT_AFTER: the device (index in p->infos) that
 * fails now, or -1. With tensor parallelism every device takes part in
 * the one stage; else only stage `i`'s. */
static int fault_injected(const ox_pipeline *p, int i)
{
    const char *id = getenv("OX_FAULT_DEVICE"), *after = getenv("OX_FAULT_AFTER");
    if (!id || p->evals < (after && *after ? atol(after) : 1)) return -1;
    for (int k = 0; k < p->n_infos; k++)
        if ((p->tp || k == i) && strcmp(id, p->infos[k].device) == 0) return k;
    return -1;
}

static ox_status grow_hidden(ox_pipeline *p, int n)
{
    if (n <= p->hidden_tokens) return OX_OK;
    size_t old = (size_t)p->hidden_tokens * (size_t)p->n_embd * sizeof(float),
           want = (size_t)n * (size_t)p->n_embd * sizeof(float);
    for (int i = 0; i < 2; i++) {
        ox__free(p->ctx, p->hidden[i], old);
        p->hidden[i] = NULL;
    }
    p->hidden_tokens = 0;
    for (int i = 0; i < 2; i++)
        if (!(p->hidden[i] = ox__alloc(p->ctx, want))) {
            ox__free(p->ctx, p->hidden[0], want);
            p->hidden[0] = NULL;
            return ox__fail(p->ctx, OX_ERR_OUT_OF_MEMORY, "ox_pipeline_eval: out of memory");
        }
    p->hidden_tokens = n;
    return OX_OK;
}

/* With tensor parallelism, which device a failure of the one stage came
 * from: the one the error message names, else the last helper. */
static int culprit(const ox_pipeline *p)
{
    const char *message = ox_errmsg(p->ctx);
    for (int k = 0; k < p->n_infos; k++)
        if (strstr(message, p->infos[k].device)) return k;
    return 0;
}

/* One pass through the stages; *failed is the device (index in p->infos)
 * that failed, or -1.
 * The first stage takes tokens or hidden_in, the last gives logits or
 * hidden_out, as the range of layers says. */
static ox_status run_stages(ox_pipeline *p, const int32_t *tokens, const float *hidden_in, int n,
                            float *hidden_out, float *logits, int *failed)
{
    ox_status s = grow_hidden(p, n);
    *failed = -1;
    for (int i = 0; s == OX_OK && i < p->n_stages; i++) {
        stage *st = &p->stages[i];
        int broken = fault_injected(p, i);
        if (broken >= 0) {
            s = ox__fail(p->ctx, OX_ERR_DEVICE_LOST, "%s: fault injected (OX_FAULT_DEVICE)",
                         p->infos[broken].device);
            *failed = broken;
        } else {
            bool last = i == p->n_stages - 1;
            const float *in = i ? p->hidden[(i - 1) % 2] : hidden_in;
            float *out = last ? hidden_out : p->hidden[i % 2];
            s = ox_session_eval_range(st->session, i ? NULL : tokens, in, n, out,
                                      last ? logits : NULL);
        }
        if (s != OX_OK && *failed < 0) *failed = p->tp ? culprit(p) : i;
    }
    return s;
}

static ox_status remember(ox_pipeline *p, const int32_t *tokens, const float *hidden, int n)
{
    size_t row = (size_t)p->n_embd * sizeof(float);
    if (p->n_history + n > p->cap_history) {
        int cap = p->cap_history ? p->cap_history : 256;
        while (cap < p->n_history + n) cap *= 2;
        int32_t *ids = ox__alloc(p->ctx, (size_t)cap * sizeof *ids);
        float *rows = p->first > 0 ? ox__alloc(p->ctx, (size_t)cap * row) : NULL;
        if (!ids || (p->first > 0 && !rows)) {
            ox__free(p->ctx, ids, (size_t)cap * sizeof *ids);
            ox__free(p->ctx, rows, (size_t)cap * row);
            return ox__fail(p->ctx, OX_ERR_OUT_OF_MEMORY, "ox_pipeline_eval: out of memory");
        }
        if (p->n_history) {
            memcpy(ids, p->history, (size_t)p->n_history * sizeof *ids);
            if (rows) memcpy(rows, p->history_hidden, (size_t)p->n_history * row);
        }
        ox__free(p->ctx, p->history, (size_t)p->cap_history * sizeof *ids);
        ox__free(p->ctx, p->history_hidden, p->history_hidden ? (size_t)p->cap_history * row : 0);
        p->history = ids;
        p->history_hidden = rows;
        p->cap_history = cap;
    }
    if (tokens) memcpy(p->history + p->n_history, tokens, (size_t)n * sizeof *tokens);
    if (hidden && p->history_hidden)
        memcpy((char *)p->history_hidden + (size_t)p->n_history * row, hidden, (size_t)n * row);
    p->n_history += n;
    return OX_OK;
}

/* Drop the failed stage's device, plan again and replay the history. */
static ox_status recover(ox_pipeline *p, int failed, ox_status why)
{
    char dropped[64], message[OX__ERRMSG_MAX];
    snprintf(dropped, sizeof dropped, "%s", p->infos[failed].device);
    ox__copy_string(message, sizeof message, ox_errmsg(p->ctx));
    ox_device *gone = p->info_device[failed];
    int k = 0;
    for (int i = 0; i < p->n_devices; i++)
        if (p->devices[i] != gone) {
            p->devices[k] = p->devices[i];
            p->speeds[k++] = p->speeds[i];
        }
    p->n_devices = k;
    free_stages(p);
    ox_status s = build(p);
    if (s != OX_OK) return s;
    char rest[256] = "";
    for (int i = 0; i < p->n_infos; i++)
        snprintf(rest + strlen(rest), sizeof rest - strlen(rest), "%s%s", i ? "," : "",
                 p->infos[i].device);
    ox__log(p->ctx, OX_LOG_WARN, "device %s failed (%s: %s); continuing on %s, replaying %d "
            "tokens", dropped, ox_status_str(why), message, rest, p->n_history);
    int failed_again;
    size_t row = (size_t)p->n_embd;
    float *sink = NULL;
    if (p->last < p->n_layer) { /* the replay's hidden_out is not wanted */
        sink = ox__alloc(p->ctx, 512 * row * sizeof *sink);
        if (!sink) return ox__fail(p->ctx, OX_ERR_OUT_OF_MEMORY, "ox_pipeline: out of memory");
    }
    for (int done = 0; done < p->n_history && s == OX_OK;) {
        int n = p->n_history - done < 512 ? p->n_history - done : 512;
        s = run_stages(p, p->first == 0 ? p->history + done : NULL,
                       p->first > 0 ? p->history_hidden + (size_t)done * row : NULL, n, sink,
                       NULL, &failed_again);
        done += n;
    }
    ox__free(p->ctx, sink, sink ? 512 * row * sizeof *sink : 0);
    return s;
}

ox_status ox_pipeline_eval(ox_pipeline *p, const int32_t *tokens, int n, float *logits)
{
    return ox_pipeline_eval_range(p, tokens, NULL, n, NULL, logits);
}

ox_status ox_pipeline_eval_range(ox_pipeline *p, const int32_t *tokens, const float *hidden_in,
                                 int n, float *hidden_out, float *logits)
{
    if (!p || n <= 0 || (p->first == 0 ? !tokens : !hidden_in))
        return ox__fail(p ? p->ctx : NULL, OX_ERR_INVALID, "ox_pipeline_eval: pipeline is NULL, "
                        "n <= 0, or its input (tokens or hidden_in) is NULL");
    int failed;
    int position = p->n_history;
    p->evals++;
    ox_status s = run_stages(p, tokens, hidden_in, n, hidden_out, logits, &failed);
    while (s != OX_OK && device_failure(s) && failed >= 0 && p->n_infos > 1) {
        /* the stages before the failed one moved on: rebuild from the history */
        if ((s = recover(p, failed, s)) != OX_OK) return s;
        s = run_stages(p, tokens, hidden_in, n, hidden_out, logits, &failed);
    }
    if (s != OX_OK) {
        /* leave every stage where it was */
        for (int i = 0; i < p->n_stages; i++)
            if (ox_session_position(p->stages[i].session) > position)
                ox_session_rewind(p->stages[i].session, position);
        return s;
    }
    return remember(p, p->first == 0 ? tokens : NULL, hidden_in, n);
}

ox_status ox_pipeline_rewind(ox_pipeline *p, int position)
{
    if (!p) return ox__fail(NULL, OX_ERR_INVALID, "ox_pipeline_rewind: pipeline is NULL");
    if (position < 0 || position > p->n_history)
        return ox__fail(p->ctx, OX_ERR_OUT_OF_RANGE, "ox_pipeline_rewind: position %d is outside "
                        "0..%d", position, p->n_history);
    for (int i = 0; i < p->n_stages; i++) {
        ox_status s = ox_session_rewind(p->stages[i].session, position);
        if (s != OX_OK) return s;
    }
    p->n_history = position;
    return OX_OK;
}

int ox_pipeline_position(const ox_pipeline *p)
{
    return p ? p->n_history : 0;
}

int ox_pipeline_capacity(const ox_pipeline *p)
{
    return p ? p->n_ctx : 0;
}

int ox_pipeline_stage_count(const ox_pipeline *p)
{
    return p ? p->n_infos : 0;
}

ox_status ox_pipeline_stage_get(const ox_pipeline *p, int i, ox_stage_info *info)
{
    if (!p || !info || info->struct_size < sizeof *info || i < 0 || i >= p->n_infos)
        return ox__fail(p ? p->ctx : NULL, OX_ERR_INVALID, "ox_pipeline_stage_get: bad "
                        "pipeline, info or stage index %d", i);
    *info = p->infos[i];
    return OX_OK;
}

ox_model *ox_pipeline_model(const ox_pipeline *p, int i)
{
    if (p && p->tp) i = 0; /* one model shared by every device */
    return p && i >= 0 && i < p->n_stages ? p->stages[i].model : NULL;
}
