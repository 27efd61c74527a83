/* Every portable kernel compiles as CUDA with NVRTC (compute_80 and
 * compute_90) and as HIP with hiprtc (gfx90a and gfx1030), without errors
 * or warnings; user programs compile through the library's own path. The
 * compilers need no GPU; they are loaded with dlopen, and when one is
 * absent the test says so. */
#include <dlfcn.h>

#include "core/program.h"
#include "openxpu/openxpu.h"
#include "ox_test.h"

typedef int rtc_result;
typedef void *rtc_program;

/* NVRTC and hiprtc have the same shape. */
typedef struct rtc {
    const char *name;
    ox__kernel_language language;
    const char *archs[2];
    const char *std; /* a language option, or NULL */
    rtc_result (*create)(rtc_program *, const char *, const char *, int, const char *const *,
                         const char *const *);
    rtc_result (*compile)(rtc_program, int, const char *const *);
    rtc_result (*log_size)(rtc_program, size_t *);
    rtc_result (*log)(rtc_program, char *);
    rtc_result (*code_size)(rtc_program, size_t *);
    rtc_result (*destroy)(rtc_program *);
} rtc;

static rtc nvrtc = {.name = "NVRTC",
                    .language = OX__KERNEL_CUDA,
                    .archs = {"--gpu-architecture=compute_80", "--gpu-architecture=compute_90"},
                    .std = "--std=c++17"};
static rtc hiprtc = {.name = "hiprtc",
                     .language = OX__KERNEL_HIP,
                     .archs = {"--gpu-architecture=gfx90a", "--gpu-architecture=gfx1030"}};

/* Open the first library of `names` that has the six functions
 * PREFIX{CreateProgram, CompileProgram, GetProgramLogSize, GetProgramLog,
 * <code_size>, DestroyProgram}. */
static int load_rtc(rtc *r, const char *const *names, const char *prefix, const char *code_size)
{
    static const char *const functions[6] = {"CreateProgram", "CompileProgram",
                                             "GetProgramLogSize", "GetProgramLog", NULL,
                                             "DestroyProgram"};
    for (; *names; names++) {
        void *dl = dlopen(*names, RTLD_NOW | RTLD_LOCAL);
        if (!dl) continue;
        void *syms[6];
        int found = 1;
        for (int i = 0; i < 6; i++) {
            char symbol[64];
            snprintf(symbol, sizeof symbol, "%s%s", i == 4 ? "" : prefix,
                     i == 4 ? code_size : functions[i]);
            found &= (syms[i] = dlsym(dl, symbol)) != NULL;
        }
        if (!found) continue;
        memcpy(&r->create, &syms[0], sizeof syms[0]);
        memcpy(&r->compile, &syms[1], sizeof syms[1]);
        memcpy(&r->log_size, &syms[2], sizeof syms[2]);
        memcpy(&r->log, &syms[3], sizeof syms[3]);
        memcpy(&r->code_size, &syms[4], sizeof syms[4]);
        memcpy(&r->destroy, &syms[5], sizeof syms[5]);
        return 1;
    }
    return 0;
}

static int load_nvrtc(void)
{
    static const char *const names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", NULL};
    return load_rtc(&nvrtc, names, "nvrtc", "nvrtcGetPTXSize");
}

static int load_hiprtc(void)
{
    static const char *const names[] = {"libhiprtc.so.6", "libhiprtc.so.5", "libhiprtc.so",
                                        "libamdhip64.so.6", "libamdhip64.so.5",
                                        "libamdhip64.so", NULL};
    return load_rtc(&hiprtc, names, "hiprtc", "hiprtcGetCodeSize");
}

#include "kernel_variants.h"


/* Compile prelude + common + source with the variant's options for `arch`.
 * Returns 0 and prints the log on an error or a warning. */
static int compile(const rtc *r, const struct variant *v, const char *arch)
{
    const char *prelude = ox__kernel_prelude(r->language);
    const char *source = ox__kernel_source(v->file);
    ASSERT_MSG(prelude && source, "kernel %s is not embedded", v->file);
    const char *common = ox__kernel_common();
    ASSERT(common);
    size_t n = strlen(prelude) + strlen(common) + strlen(source) + 16;
    char *full = malloc(n);
    snprintf(full, n, "%s\n%s\n%s", prelude, common, source);

    char opts[512];
    snprintf(opts, sizeof opts, "%s", v->options);
    const char *argv[24];
    int argc = 0;
    argv[argc++] = arch;
    if (r->std) argv[argc++] = r->std;
    for (char *tok = strtok(opts, " "); tok && argc < 24; tok = strtok(NULL, " ")) argv[argc++] = tok;

    rtc_program prog;
    ASSERT_EQ(r->create(&prog, full, v->file, 0, NULL, NULL), 0);
    int result = r->compile(prog, argc, argv);
    size_t log_size = 0;
    r->log_size(prog, &log_size);
    char *log = calloc(1, log_size + 1);
    r->log(prog, log);
    size_t code = 0;
    if (result == 0) r->code_size(prog, &code);
    size_t log_len = strlen(log);
    while (log_len && (log[log_len - 1] == '\n' || log[log_len - 1] == ' ')) log[--log_len] = '\0';
    int ok = result == 0 && code > 0 && log_len == 0;
    if (!ok)
        printf("  %s: %s [%s] %s: result %d\n%s\n", r->name, v->file, v->options, arch, result,
               log);
    r->destroy(&prog);
    free(log);
    free(full);
    return ok;
}

static void compile_all(const rtc *r)
{
    int failures = 0, count = 0;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        for (int a = 0; a < 2; a++, count++) failures += !compile(r, &variants[i], r->archs[a]);
    printf("  %d %s compilations, %d failed\n", count, r->name, failures);
    ASSERT_EQ(failures, 0);
}

OX_TEST(every_kernel_compiles_with_nvrtc)
{
    if (!load_nvrtc()) OX_SKIP("libnvrtc not found: CUDA kernels were NOT compile-checked");
    compile_all(&nvrtc);
}

OX_TEST(every_kernel_compiles_with_hiprtc)
{
    if (!load_hiprtc())
        OX_SKIP("hiprtc not found (Debian: libamdhip64-5 rocm-device-libs): HIP kernels were NOT "
                "compile-checked");
    compile_all(&hiprtc);
}

OX_TEST(every_embedded_kernel_has_a_variant)
{
    const char *const *names = ox__kernel_source_names();
    ASSERT(names[0] != NULL);
    for (int i = 0; names[i]; i++) {
        int found = 0;
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++)
            found |= strcmp(variants[v].file, names[i]) == 0;
        ASSERT_MSG(found, "kernels/%s.oxc has no NVRTC build variant in this test", names[i]);
    }
}

/* User programs through the library's own path (openxpu/kernel.h,
 * ox_program_check): the core reads their parameters and adds the entry
 * points that CUDA and HIP need (LOCAL parameters in dynamic shared memory,
 * KERNEL_WG), the CUDA plugin compiles with NVRTC, no GPU needed. */
static const char *const user_programs[][2] = {
    {"KERNEL saxpy(ARG_BUF(float, y), ARG_BUF(const float, x), float a, int n)\n"
     "{ BUF(float, y); BUF(const float, x); i64 i = ox_global_id(0);\n"
     "  if (i < n) y[i] = a * x[i] + y[i]; }\n", ""},
    {"FN float tile_sum(LOCAL float *t, int n) { float s = 0.0f; for (int i = 0; i < n; i++) "
     "s += t[i]; return s; }\n"
     "KERNEL_WG(64, 1, 1) sums(ARG_BUF(float, out), ARG_BUF(const float, x), LOCAL float *tile,\n"
     "                        LOCAL int *flags, i64 n)\n"
     "{\n"
     "    BUF(float, out); BUF(const float, x);\n"
     "    int lid = ox_local_id(0);\n"
     "    tile[lid] = ox_global_id(0) < n ? x[ox_global_id(0)] : 0.0f;\n"
     "    flags[lid] = 1;\n"
     "    BARRIER();\n"
     "    if (lid == 0) out[ox_group_id(0)] = tile_sum(tile, 64) + (float)flags[63];\n"
     "}\n"
     "KERNEL nothing(void) { }\n", ""},
    {"KERNEL scalars(ARG_BUF(i64, out), uchar c, short s, uint u, double d, u64 w, REAL r)\n"
     "{ BUF(i64, out); out[0] = c + s + u + (i64)d + (i64)w + (i64)r; }\n", "-DREAL=float"},
    {"KERNEL tiled(ARG_BUF(float, y))\n"
     "{ BUF(float, y); LOCAL_ARRAY(float, t, WG); t[ox_local_id(0)] = 1.0f; BARRIER();\n"
     "  y[ox_global_id(0)] = t[WG - 1 - ox_local_id(0)]; }\n", "-DWG=128"},
    /* a reproducible build: the math of kernels/common.h, and the plugins'
     * flags for it (NVRTC --fmad=false, hiprtc -ffp-contract=off) */
    {"KERNEL mixed(ARG_BUF(float, y))\n"
     "{ BUF(float, y); i64 i = ox_global_id(0); float v = y[i];\n"
     "  y[i] = ox_exp(v) * v + ox_tanh(v) / ox_sqrt(v) + ox_erf(v) + ox_sin(v) * ox_cos(v)\n"
     "         + ox_log(v) + ox_rsqrt(v); }\n", "-DOX_REPRO=1"},
};

OX_TEST(user_programs_compile_for_cuda_and_hip)
{
    ox_context *ctx;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS,
                            .backend_path = OX_TEST_GPU_PLUGINS, .log_level = OX_LOG_OFF};
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    static const char *const apis[] = {"cuda", "hip"};
    int checked = 0;
    for (int a = 0; a < 2; a++) {
        for (size_t i = 0; i < sizeof user_programs / sizeof user_programs[0]; i++) {
            char target[160], *warnings = NULL;
            ox_status s = ox_program_check(ctx, apis[a], user_programs[i][0], user_programs[i][1],
                                           target, sizeof target, &warnings);
            if (s == OX_ERR_UNSUPPORTED || s == OX_ERR_NOT_FOUND) {
                printf("  %s: NOT checked here: %s\n", apis[a], ox_errmsg(ctx));
                break;
            }
            ASSERT_MSG(s == OX_OK, "%s, program %zu: %s", apis[a], i, ox_errmsg(ctx));
            ASSERT_MSG(!warnings, "%s, program %zu: warnings: %s", apis[a], i, warnings);
            printf("  %s program %zu: compiles (%s)\n", apis[a], i, target);
            checked++;
        }
    }
    ox_context_free(ctx);
    if (!checked) OX_SKIP("neither NVRTC nor hiprtc is here: user programs were NOT compile-checked");
}

OX_TEST_MAIN(user_programs_compile_for_cuda_and_hip, every_kernel_compiles_with_nvrtc,
             every_kernel_compiles_with_hiprtc, every_embedded_kernel_has_a_variant)
