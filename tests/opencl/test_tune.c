/* The tuner (openxpu/tune.h) on the OpenCL device (PoCL here): a wrong
 * candidate is rejected however fast it looks, the winners are stored and
 * used by the ops (the variant that ox check runs), corrupt and stale
 * tuning entries are ignored with a warning and defaults run, a dry run
 * keeps nothing, and a device without portable kernels or an unknown op is
 * refused with a message. Each case has its own cache folder. */
#include <openxpu/openxpu.h>
#include <openxpu/ops.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/program.h"
#include "ops/tune.h"
#include "ops/tune_internal.h"
#include "ox_test.h"
#include "test_helpers.h"

/* The tuner builds dozens of programs; PoCL's compiler (LLVM) keeps some of
 * what it allocates for good, which LeakSanitizer reports at exit. Those
 * are the runtime's, not ours (the library is C: operator new is only the
 * runtime's): suppressed by module name. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libLLVM\nleak:libpocl\nleak:libclang-cpp\nleak:libstdc++\n";
}

typedef struct fixture {
    ox_context *ctx;
    ox_device *dev;
    char dir[64];
    test_log log;
} fixture;

/* A context with the OpenCL plugin and a fresh cache folder, or a skip. */
static void open_fixture(fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ox-tune-XXXXXX");
    ASSERT(mkdtemp(f->dir) != NULL);
    setenv("OX_CACHE_DIR", f->dir, 1);
    test_log_init(&f->log);
    ox_context_options o = test_options(0);
    test_log_attach(&f->log, &o);
    ASSERT(ox_context_create(&o, &f->ctx) == OX_OK);
    int n = 0;
    if (ox_device_select(f->ctx, "opencl:0", &f->dev, 1, &n) != OX_OK || n != 1)
        OX_SKIP("no OpenCL device here (%s)", ox_errmsg(f->ctx));
}

/* The same folder, a new context: what a later process sees. */
static void reopen(fixture *f)
{
    ox_context_free(f->ctx);
    test_log_init(&f->log);
    ox_context_options o = test_options(0);
    test_log_attach(&f->log, &o);
    ASSERT(ox_context_create(&o, &f->ctx) == OX_OK);
    int n = 0;
    ASSERT(ox_device_select(f->ctx, "opencl:0", &f->dev, 1, &n) == OX_OK && n == 1);
}

static void close_fixture(fixture *f)
{
    ox_context_free(f->ctx);
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", f->dir);
    ASSERT(system(command) == 0);
}

/* ox_add of two 1000 x 300 F32 tensors on the device, checked against the
 * exact sums. */
static void add_is_right(fixture *f)
{
    enum { N = 300000 };
    static float a[N], b[N], out[N];
    for (int i = 0; i < N; i++) {
        a[i] = (float)(i % 977) * 0.25f;
        b[i] = (float)(i % 313) - 100.0f;
    }
    ox_tensor ta, tb, td;
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->dev, OX_DTYPE_F32, 1000, 300, 1, 1, &ta));
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->dev, OX_DTYPE_F32, 1000, 300, 1, 1, &tb));
    ASSERT_OK(f->ctx, ox_tensor_alloc(f->dev, OX_DTYPE_F32, 1000, 300, 1, 1, &td));
    ASSERT_OK(f->ctx, ox_tensor_write(&ta, a, sizeof a));
    ASSERT_OK(f->ctx, ox_tensor_write(&tb, b, sizeof b));
    ox_queue *q;
    ASSERT_OK(f->ctx, ox_queue_create(f->dev, &q));
    ASSERT_OK(f->ctx, ox_add(q, &td, &ta, &tb));
    ASSERT_OK(f->ctx, ox_queue_finish(q));
    ASSERT_OK(f->ctx, ox_tensor_read(&td, out, sizeof out));
    for (int i = 0; i < N; i++) ASSERT(out[i] == a[i] + b[i]);
    ox_queue_free(q);
}

typedef struct capture {
    ox_tune_result results[16];
    int count;
} capture;

static void on_result(const ox_tune_result *r, void *user)
{
    capture *c = user;
    if (c->count < 16) c->results[c->count++] = *r;
}

/* Tune one family of f's device without keeping anything, each class's
 * result into c. */
static void dry_run_tune(fixture *f, const char *op, double budget, capture *c)
{
    ox_tune_options o = {.struct_size = sizeof o, .op = op, .budget_seconds = budget,
                         .callback = on_result, .user = c, .flags = OX_TUNE_DRY_RUN};
    ASSERT_OK(f->ctx, ox_device_tune(f->dev, &o));
}

/* The sabotage: candidate VEC=2 of the elementwise family gives a wrong
 * element and would be timed at 1 ns. */
static bool sabotage(int family, const ox__tune_params *p, float *result, size_t n, void *user)
{
    int *hits = user;
    if (family != OX__TUNE_ELEMENTWISE || p->v[0] != 2 || n == 0) return false;
    result[n / 2] += 1.0f;
    ++*hits;
    return true;
}

OX_TEST(wrong_candidate_is_rejected_however_fast)
{
    fixture f;
    open_fixture(&f);
    int hits = 0;
    ox__tune_fault = sabotage;
    ox__tune_fault_user = &hits;
    capture c = {.count = 0};
    ox_tune_options o = {.struct_size = sizeof o, .op = "elementwise", .budget_seconds = 12,
                         .callback = on_result, .user = &c};
    ASSERT_OK(f.ctx, ox_device_tune(f.dev, &o));
    ASSERT(hits >= 1); /* the wrong candidate was tried... */
    ASSERT_EQ(c.count, 3);
    int rejected = 0;
    for (int i = 0; i < c.count; i++) {
        rejected += c.results[i].rejected;
        ASSERT(c.results[i].best_seconds > 1e-6); /* ...never timed as the winner */
        ASSERT(strncmp(c.results[i].best_params, "VEC=2,", 6) != 0);
        ASSERT(c.results[i].tried >= 1);
    }
    ASSERT(rejected >= hits);
    /* what the ops run now: the stored winner, not the sabotaged one */
    char params[96];
    int tuned = 0;
    ASSERT_OK(f.ctx, ox_device_tune_params(f.dev, "elementwise", "f32", params, sizeof params,
                                           &tuned));
    ASSERT_EQ(tuned, 1);
    ASSERT(strncmp(params, "VEC=2,", 6) != 0);
    ox__tune_fault = NULL;
    close_fixture(&f);
}

/* Products with 16-bit weights: the CPU's reference rounds the vector to
 * halves, so a candidate checked with the F32 products' bound failed, and
 * every F16 / BF16 matrix-vector candidate was rejected (none tuned). */
OX_TEST(half_weight_matvec_candidates_pass_the_check)
{
    fixture f;
    open_fixture(&f);
    capture c = {.count = 0};
    dry_run_tune(&f, "matvec", 9, &c);
    ASSERT_EQ(c.count, 3); /* f32, f16, bf16 */
    for (int i = 0; i < c.count; i++) {
        ASSERT(c.results[i].tried >= 1);
        ASSERT_EQ(c.results[i].rejected, 0);
        ASSERT(c.results[i].best_seconds > 0);
    }
    close_fixture(&f);
}

OX_TEST(tuned_entry_is_what_the_ops_run)
{
    fixture f;
    open_fixture(&f);
    ox__tune_params p = {{4, 64}};
    ASSERT_OK(f.ctx, ox__tune_put(f.dev, OX__TUNE_ELEMENTWISE, "f32", &p, 0.001, false));
    ASSERT_OK(f.ctx, ox__tune_save(f.dev));
    reopen(&f); /* a later process reads the file */
    char params[96];
    int tuned = 0;
    ASSERT_OK(f.ctx, ox_device_tune_params(f.dev, "elementwise", "f32", params, sizeof params,
                                           &tuned));
    ASSERT_EQ(tuned, 1);
    ASSERT_STR_EQ(params, "VEC=4,WG=64");
    /* the listing ox check prints has it, and ends */
    const char *op = NULL;
    char cls[64];
    int listed = 0, n = 0;
    for (; ox_device_tuned(f.dev, n, &op, cls, sizeof cls, params, sizeof params) == OX_OK; n++)
        listed += strcmp(op, "elementwise") == 0 && strcmp(cls, "f32") == 0 &&
                  strcmp(params, "VEC=4,WG=64") == 0;
    ASSERT_EQ(listed, 1);
    ASSERT_EQ(ox_device_tuned(f.dev, n, &op, cls, sizeof cls, params, sizeof params),
              OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(ox_device_tuned(f.dev, -1, &op, cls, sizeof cls, params, sizeof params),
              OX_ERR_OUT_OF_RANGE);
    add_is_right(&f); /* as ox check runs it */
    ASSERT(ox__device_program_built(f.dev, "elementwise", "-DVEC=4"));
    ASSERT(!ox__device_program_built(f.dev, "elementwise", "-DVEC=1"));
    ASSERT_NOT_LOGGED(&f.log, OX_LOG_WARN, OX_LOG_ERROR, "tuning", NULL);
    close_fixture(&f);
}

/* Rewrite the tuning file with `edit` applied to its entry line. */
static void edit_entry(fixture *f, const char *from, const char *to, const char *append)
{
    char path[4096], line[1024], text[8192] = "";
    ASSERT(ox__tune_path(f->dev, path, sizeof path));
    FILE *in = fopen(path, "r");
    ASSERT(in != NULL);
    while (fgets(line, sizeof line, in)) {
        char *at = from ? strstr(line, from) : NULL;
        if (at && line[0] != '#') {
            char edited[1024];
            snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - line), line, to,
                     at + strlen(from));
            strcat(text, edited);
        } else {
            strcat(text, line);
        }
    }
    fclose(in);
    if (append) strcat(text, append);
    FILE *out = fopen(path, "w");
    ASSERT(out != NULL);
    fputs(text, out);
    fclose(out);
}

static void entry_ignored(fixture *f, const char *warning)
{
    reopen(f);
    char params[96], defaults[96];
    int tuned = 1;
    ASSERT_OK(f->ctx, ox_device_tune_params(f->dev, "elementwise", "f32", params, sizeof params,
                                            &tuned));
    ASSERT_EQ(tuned, 0); /* the defaults run */
    ox__tune_params d;
    ox_device_info info = test_device_info(f->dev);
    ox__tune_defaults(&info, OX__TUNE_ELEMENTWISE, "f32", &d);
    ASSERT_STR_EQ(params, ox__tune_format(OX__TUNE_ELEMENTWISE, &d, defaults, sizeof defaults));
    ASSERT_LOGGED(&f->log, OX_LOG_WARN, OX_LOG_WARN, warning, "ox tune");
    add_is_right(f);
}

OX_TEST(corrupt_and_stale_entries_are_ignored_with_a_warning)
{
    fixture f;
    open_fixture(&f);
    ox__tune_params p = {{4, 64}};
    ASSERT_OK(f.ctx, ox__tune_put(f.dev, OX__TUNE_ELEMENTWISE, "f32", &p, 0.001, false));
    ASSERT_OK(f.ctx, ox__tune_save(f.dev));
    /* a changed value: the checksum no longer matches */
    edit_entry(&f, "VEC=4", "VEC=8", NULL);
    entry_ignored(&f, "corrupt tuning entry");
    /* garbage lines beside a good entry: the good one is used */
    ASSERT_OK(f.ctx, ox__tune_put(f.dev, OX__TUNE_ELEMENTWISE, "f32", &p, 0.001, false));
    ASSERT_OK(f.ctx, ox__tune_save(f.dev));
    edit_entry(&f, NULL, NULL, "ox-tune 1 \xff\xfe garbage\n\nox-tune\n12 34\n");
    reopen(&f);
    int tuned = 0;
    char params[96];
    ASSERT_OK(f.ctx, ox_device_tune_params(f.dev, "elementwise", "f32", params, sizeof params,
                                           &tuned));
    ASSERT_EQ(tuned, 1);
    ASSERT_LOGGED(&f.log, OX_LOG_WARN, OX_LOG_WARN, "corrupt tuning entry", "checksum");
    /* measured for another kernel source (a well-formed line, its checksum
     * right, but another source hash): stale */
    ASSERT_OK(f.ctx, ox__tune_put(f.dev, OX__TUNE_ELEMENTWISE, "f32", &p, 0.001, false));
    ASSERT_OK(f.ctx, ox__tune_save(f.dev));
    char path[4096], line[1024], kept[1024] = "", stale[1100];
    ASSERT(ox__tune_path(f.dev, path, sizeof path));
    FILE *in = fopen(path, "r");
    ASSERT(in != NULL);
    while (fgets(line, sizeof line, in))
        if (strncmp(line, "ox-tune 1 elementwise f32 ", 26) == 0)
            snprintf(kept, sizeof kept, "%s", line);
    fclose(in);
    ASSERT(kept[0]);
    memcpy(kept + 26, "0123456789abcdef", 16);
    *strrchr(kept, ' ') = '\0';
    snprintf(stale, sizeof stale, "%s %016llx\n", kept,
             (unsigned long long)ox__hash64(kept, strlen(kept)));
    FILE *out = fopen(path, "w");
    ASSERT(out != NULL);
    fputs(stale, out);
    fclose(out);
    entry_ignored(&f, "stale tuning entry");
    /* ox tune rebuilds the file: the stale line is gone, an entry is back */
    ox_tune_options o = {.struct_size = sizeof o, .op = "elementwise", .budget_seconds = 4};
    ASSERT_OK(f.ctx, ox_device_tune(f.dev, &o));
    reopen(&f);
    tuned = 0;
    ASSERT_OK(f.ctx, ox_device_tune_params(f.dev, "elementwise", "f32", params, sizeof params,
                                           &tuned));
    ASSERT_EQ(tuned, 1);
    ASSERT_NOT_LOGGED(&f.log, OX_LOG_WARN, OX_LOG_ERROR, "tuning entry", NULL);
    close_fixture(&f);
}

OX_TEST(dry_run_keeps_nothing)
{
    fixture f;
    open_fixture(&f);
    capture c = {.count = 0};
    dry_run_tune(&f, "elementwise", 6, &c);
    ASSERT_EQ(c.count, 3);
    ASSERT(c.results[0].tried >= 1);
    char path[4096];
    struct stat st;
    ASSERT(ox__tune_path(f.dev, path, sizeof path));
    ASSERT(stat(path, &st) != 0); /* no file */
    int tuned = 1;
    char params[96];
    ASSERT_OK(f.ctx, ox_device_tune_params(f.dev, "elementwise", "f32", params, sizeof params,
                                           &tuned));
    ASSERT_EQ(tuned, 0); /* nor in memory */
    close_fixture(&f);
}

OX_TEST(refusals_say_why)
{
    fixture f;
    open_fixture(&f);
    ox_device *cpu;
    int n;
    ASSERT_OK(f.ctx, ox_device_select(f.ctx, "cpu", &cpu, 1, &n));
    ASSERT(ox_device_tune(cpu, NULL) == OX_ERR_UNSUPPORTED);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "nothing to tune");
    ox_tune_options o = {.struct_size = sizeof o, .op = "gemm"};
    ASSERT(ox_device_tune(f.dev, &o) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "'gemm'");
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "qmatvec");
    o.struct_size = 8;
    ASSERT(ox_device_tune(f.dev, &o) == OX_ERR_INVALID);
    ASSERT(ox_device_tune(NULL, NULL) == OX_ERR_INVALID_HANDLE);
    char params[8];
    ASSERT(ox_device_tune_params(f.dev, "nope", "f32", params, sizeof params, NULL) ==
           OX_ERR_INVALID);
    for (int i = 0; ox_tune_op_name(i); i++) ASSERT(ox__tune_family_find(ox_tune_op_name(i)) == i);
    ASSERT(ox_tune_op_name(-1) == NULL);
    close_fixture(&f);
}

/* A model's decode step: only the classes of the model's dtypes are tuned
 * (q4_0 and q8_0 of qmatvec here), each on its own matrices with their
 * counts, checked like any candidate; the others keep what they had. Bad
 * lists are refused with a message. */
OX_TEST(model_step_tunes_the_model_classes)
{
    fixture f;
    open_fixture(&f);
    ox__tune_step_min_bytes = 1 << 20; /* a small step: this test's time */
    const ox_tune_matrix model[] = {
        {OX_DTYPE_Q4_0, 256, 512, 3},
        {OX_DTYPE_Q4_0, 512, 256, 2},
        {OX_DTYPE_Q8_0, 1000, 256, 1},
        {OX_DTYPE_Q4_K, 64, 100, 1}, /* 100 is no multiple of 256: ignored */
    };
    capture c = {.count = 0};
    ox_tune_options o = {.struct_size = sizeof o, .op = "qmatvec", .budget_seconds = 20,
                         .callback = on_result, .user = &c, .matrices = model, .n_matrices = 4};
    ASSERT_OK(f.ctx, ox_device_tune(f.dev, &o));
    ASSERT_EQ(c.count, 2);
    ASSERT_STR_EQ(c.results[0].cls, "q4_0");
    ASSERT_STR_EQ(c.results[1].cls, "q8_0");
    /* q4_0: 1 MiB / (3 x 73728 + 2 x 73728 bytes) rounds up to 3 steps */
    ASSERT_STR_EQ(c.results[0].shape, "step 15 of 2, 1 MiB");
    for (int i = 0; i < 2; i++) {
        ASSERT(c.results[i].tried >= 1);
        ASSERT_EQ(c.results[i].rejected, 0);
        ASSERT(c.results[i].best_seconds > 0);
    }
    int tuned = 0;
    char params[96];
    ASSERT_OK(f.ctx,
              ox_device_tune_params(f.dev, "qmatvec", "q4_0", params, sizeof params, &tuned));
    ASSERT_EQ(tuned, 1);
    ASSERT_OK(f.ctx,
              ox_device_tune_params(f.dev, "qmatvec", "q6_k", params, sizeof params, &tuned));
    ASSERT_EQ(tuned, 0); /* not in the model: untouched */
    o.n_matrices = 1, o.matrices = NULL;
    ASSERT(ox_device_tune(f.dev, &o) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "n_matrices");
    o.matrices = &model[3];
    ASSERT(ox_device_tune(f.dev, &o) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "valid shape");
    o.matrices = model, o.n_matrices = 4, o.op = "matvec"; /* no f32/f16/bf16 in the model */
    ASSERT(ox_device_tune(f.dev, &o) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "uses no class of matvec");
    /* a caller built before the model fields: its smaller options are taken,
     * and what lies past them is not read (a NULL list of 1 would be refused) */
    ox_tune_options o2 = {.struct_size = offsetof(ox_tune_options, matrices), .op = "gemm",
                          .matrices = NULL, .n_matrices = 1};
    ASSERT(ox_device_tune(f.dev, &o2) == OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(f.ctx), "no tunable op 'gemm'");
    ox__tune_step_min_bytes = 128 << 20;
    close_fixture(&f);
}

OX_TEST_MAIN(wrong_candidate_is_rejected_however_fast, tuned_entry_is_what_the_ops_run,
             corrupt_and_stale_entries_are_ignored_with_a_warning, dry_run_keeps_nothing,
             refusals_say_why, model_step_tunes_the_model_classes,
             half_weight_matvec_candidates_pass_the_check)
