/* Every portable kernel compiles as CUDA with NVRTC, for compute_80 and
 * compute_90, without errors or warnings. NVRTC needs no GPU; it is loaded
 * with dlopen, and when it is absent the test says so and is skipped. */
#include <dlfcn.h>

#include "core/program.h"
#include "ox_test.h"

typedef int nvrtc_result;
typedef void *nvrtc_program;

static struct {
    nvrtc_result (*create)(nvrtc_program *, const char *, const char *, int, const char *const *,
                           const char *const *);
    nvrtc_result (*compile)(nvrtc_program, int, const char *const *);
    nvrtc_result (*log_size)(nvrtc_program, size_t *);
    nvrtc_result (*log)(nvrtc_program, char *);
    nvrtc_result (*ptx_size)(nvrtc_program, size_t *);
    nvrtc_result (*destroy)(nvrtc_program *);
} nvrtc;

static int load_nvrtc(void)
{
    static const char *names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    void *dl = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !dl; i++)
        dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!dl) return 0;
    void *syms[6] = {dlsym(dl, "nvrtcCreateProgram"), dlsym(dl, "nvrtcCompileProgram"),
                     dlsym(dl, "nvrtcGetProgramLogSize"), dlsym(dl, "nvrtcGetProgramLog"),
                     dlsym(dl, "nvrtcGetPTXSize"), dlsym(dl, "nvrtcDestroyProgram")};
    for (int i = 0; i < 6; i++)
        if (!syms[i]) return 0;
    memcpy(&nvrtc.create, &syms[0], sizeof syms[0]);
    memcpy(&nvrtc.compile, &syms[1], sizeof syms[1]);
    memcpy(&nvrtc.log_size, &syms[2], sizeof syms[2]);
    memcpy(&nvrtc.log, &syms[3], sizeof syms[3]);
    memcpy(&nvrtc.ptx_size, &syms[4], sizeof syms[4]);
    memcpy(&nvrtc.destroy, &syms[5], sizeof syms[5]);
    return 1;
}

/* The build variants the op layer uses (src/ops/device_ops.c), one per
 * kernel family and dtype. */
static const struct variant {
    const char *file;
    const char *options;
} variants[] = {
    {"elementwise", "-DDT=0 -DOP=0"}, {"elementwise", "-DDT=1 -DOP=3"},
    {"elementwise", "-DDT=2 -DOP=8"}, {"elementwise", "-DDT=0 -DOP=12"},
    {"rows", "-DDT=0 -DDT_D=0 -DOP=0 -DWG=256"}, {"rows", "-DDT=1 -DDT_D=3 -DOP=3 -DWG=64"},
    {"rows", "-DSOFTMAX=1 -DDT=0 -DDT_M=1 -DHAS_MASK=1 -DLOG=0 -DWG=256"},
    {"rows", "-DSOFTMAX=1 -DDT=2 -DDT_M=0 -DHAS_MASK=0 -DLOG=1 -DWG=64"},
    {"rows", "-DNORM=1 -DRMS=1 -DDT=0 -DHAS_W=1 -DDT_W=0 -DHAS_B=0 -DDT_B=0 -DWG=256"},
    {"rows", "-DNORM=1 -DRMS=0 -DDT=1 -DHAS_W=1 -DDT_W=2 -DHAS_B=1 -DDT_B=1 -DWG=64"},
    {"rope", "-DDT=0 -DNEOX=0"}, {"rope", "-DDT=1 -DNEOX=1"},
    {"matmul", "-DDT_A=0 -DDT_B=0 -DTK=16 -DWG_M=16 -DWG_N=16 -DRM=4 -DRN=4 -DA_KFAST=1 -DB_KFAST=0"},
    {"matmul", "-DDT_A=1 -DDT_B=2 -DTK=16 -DWG_M=8 -DWG_N=8 -DRM=2 -DRN=2 -DA_KFAST=0 -DB_KFAST=1"},
    {"matmul", "-DDT_A=0 -DDT_B=1 -DWG=256"},
    {"matmul", "-DDT_A=0 -DDT_B=4 -DOX_QUANT=1 -DDT_Q=4 -DWG=256"},
    {"matmul", "-DDT_A=0 -DDT_B=5 -DOX_QUANT=1 -DDT_Q=5 -DWG=64"},
    {"matmul", "-DDT_A=0 -DDT_B=6 -DOX_QUANT=1 -DDT_Q=6 -DWG=64"},
    {"matmul", "-DDT_A=0 -DDT_B=7 -DOX_QUANT=1 -DDT_Q=7 -DWG=64"},
    {"matmul", "-DDT_A=0 -DDT_B=8 -DOX_QUANT=1 -DDT_Q=8 -DWG=64"},
    {"matmul", "-DDT_A=0 -DDT_B=9 -DOX_QUANT=1 -DDT_Q=9 -DTK=16 -DWG_M=16 -DWG_N=16 -DRM=4 -DRN=4 -DA_KFAST=1 -DB_KFAST=0"},
    {"matmul", "-DDT_A=0 -DDT_B=10 -DOX_QUANT=1 -DDT_Q=10 -DWG=256"},
    {"matmul", "-DDT_A=0 -DDT_B=11 -DOX_QUANT=1 -DDT_Q=11 -DTK=16 -DWG_M=8 -DWG_N=8 -DRM=2 -DRN=2 -DA_KFAST=1 -DB_KFAST=0"},
    {"movement", "-DDT_S=11 -DDT_D=0 -DOX_QUANT=1 -DDT_Q=11"},
    {"movement", "-DDT_S=0 -DDT_D=1"}, {"movement", "-DDT_S=3 -DDT_D=3"},
    {"movement", "-DDT_S=2 -DDT_D=0"},
    {"attention", "-DDT_K=0 -DDT_V=0 -DWG=64 -DACC=1 -DDMAX=64 -DHAS_MASK=0 -DCAUSAL=1"},
    {"attention", "-DDT_K=1 -DDT_V=1 -DWG=64 -DACC=4 -DDMAX=256 -DHAS_MASK=1 -DCAUSAL=0"},
};

/* Compile prelude + common + source with the variant's options for `arch`.
 * Returns 0 and prints the log on an error or a warning. */
static int compile(const struct variant *v, const char *arch)
{
    const char *prelude = ox__kernel_prelude(OX__KERNEL_CUDA);
    const char *source = ox__kernel_source(v->file);
    ASSERT_MSG(prelude && source, "kernel %s is not embedded", v->file);
    extern const struct ox__embedded_kernel {
        const char *name;
        const char *text;
    } ox__embedded_kernels[];
    const char *common = NULL;
    for (const struct ox__embedded_kernel *k = ox__embedded_kernels; k->name; k++)
        if (strcmp(k->name, "common.h") == 0) common = k->text;
    ASSERT(common);
    size_t n = strlen(prelude) + strlen(common) + strlen(source) + 16;
    char *full = malloc(n);
    snprintf(full, n, "%s\n%s\n%s", prelude, common, source);

    char opts[512];
    snprintf(opts, sizeof opts, "%s", v->options);
    const char *argv[24];
    int argc = 0;
    argv[argc++] = arch;
    argv[argc++] = "--std=c++17";
    for (char *tok = strtok(opts, " "); tok && argc < 24; tok = strtok(NULL, " ")) argv[argc++] = tok;

    nvrtc_program prog;
    ASSERT_EQ(nvrtc.create(&prog, full, v->file, 0, NULL, NULL), 0);
    int result = nvrtc.compile(prog, argc, argv);
    size_t log_size = 0;
    nvrtc.log_size(prog, &log_size);
    char *log = calloc(1, log_size + 1);
    nvrtc.log(prog, log);
    size_t ptx = 0;
    if (result == 0) nvrtc.ptx_size(prog, &ptx);
    int ok = result == 0 && ptx > 0 && strlen(log) == 0;
    if (!ok) printf("  %s [%s] %s: result %d\n%s\n", v->file, v->options, arch, result, log);
    nvrtc.destroy(&prog);
    free(log);
    free(full);
    return ok;
}

OX_TEST(every_kernel_compiles_with_nvrtc)
{
    if (!load_nvrtc()) OX_SKIP("libnvrtc not found: CUDA kernels were NOT compile-checked");
    int failures = 0, count = 0;
    static const char *archs[] = {"--gpu-architecture=compute_80", "--gpu-architecture=compute_90"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        for (int a = 0; a < 2; a++, count++) failures += !compile(&variants[i], archs[a]);
    printf("  %d NVRTC compilations, %d failed\n", count, failures);
    ASSERT_EQ(failures, 0);
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

OX_TEST_MAIN(every_kernel_compiles_with_nvrtc, every_embedded_kernel_has_a_variant)
