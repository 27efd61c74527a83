/* Every built-in kernel, in the build variants the op layer uses, compiles
 * as C with the C prelude (kernels/prelude_c.h) and the system's compiler,
 * with -Wall -Werror: the CPU path of user kernels speaks the whole
 * dialect the built-in kernels use (tables, atomics, halves, quantized
 * loads), not only what the user-kernel tests touch; and its software half
 * conversions round like the hardware's. Without a C compiler the tests
 * say so. */
#include <fcntl.h>
#include <dirent.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/cpu/cpu_kernels.h"
#include "core/program.h"
#include "kernel_variants.h"
#include "openxpu/openxpu.h"
#include "ox_test.h"

extern char **environ;

/* Compile one variant; print the compiler's output on failure. */
static int compile(const char *cc, const char *dir, const struct variant *v)
{
    char src[512], log[512];
    snprintf(src, sizeof src, "%s/kernel.c", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    FILE *f = fopen(src, "w");
    ASSERT(f != NULL);
    fprintf(f, "%s\n%s\n#line 1 \"%s.oxc\"\n%s", ox__kernel_prelude(OX__KERNEL_C),
            ox__kernel_common(), v->file, ox__kernel_source(v->file));
    ASSERT_EQ(fclose(f), 0);

    char options[512];
    snprintf(options, sizeof options, "%s", v->options);
    const char *argv[40] = {cc, "-std=gnu11", "-fsyntax-only", "-Wall", "-Werror"};
    int argc = 5;
    for (char *tok = strtok(options, " "); tok && argc < 37; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc++] = src;
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    ASSERT_EQ(posix_spawn_file_actions_init(&fa), 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, cc, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int status;
    ASSERT(waitpid(pid, &status, 0) == pid);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        printf("  %s [%s]:\n", v->file, v->options);
        f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) printf("    %s", line);
        if (f) fclose(f);
    }
    return ok;
}

OX_TEST(every_kernel_compiles_as_c)
{
    char cc[1024];
    if (!ox__cpu_compiler(cc, sizeof cc))
        OX_SKIP("%s", "no C compiler here: the C dialect was NOT checked");
    char dir[] = "/tmp/ox-c-dialect-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    int failures = 0;
    for (size_t i = 0; i < VARIANT_COUNT; i++) failures += !compile(cc, dir, &variants[i]);
    printf("  %zu C compilations with %s, %d failed\n", VARIANT_COUNT, cc, failures);
    char path[600];
    snprintf(path, sizeof path, "%s/kernel.c", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/log.txt", dir);
    unlink(path);
    rmdir(dir);
    ASSERT_EQ(failures, 0);
}

/* The C prelude's half conversions (software, round to nearest even)
 * against an independent reference: the exact value of every half, and a
 * binary search for the nearest one. */
static double half_value(unsigned h)
{
    int e = (int)(h >> 10 & 31);
    double m = (double)(h & 1023), v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return h & 0x8000 ? -v : v;
}

static unsigned nearest_half(float f)
{
    if (isnan(f)) return 0x7e00;
    unsigned sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7c00; /* rounds past the largest half */
    unsigned lo = 0, hi = 0x7bff;           /* the largest finite half */
    while (lo < hi) {                        /* the last half <= a */
        unsigned mid = (lo + hi + 1) / 2;
        if (half_value(mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo < 0x7bff) {
        double below = a - half_value(lo), above = half_value(lo + 1) - a;
        if (above < below || (above == below && (lo & 1))) lo++;
    }
    return sign | lo;
}

/* A context without plugins, and its CPU device. */
static ox_device *cpu_device(ox_context **ctx)
{
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS};
    ASSERT_OK(NULL, ox_context_create(&o, ctx));
    ox_device *cpu;
    int n_dev;
    ASSERT_OK(*ctx, ox_device_select(*ctx, "cpu", &cpu, 1, &n_dev));
    return cpu;
}

OX_TEST(c_prelude_halves_round_to_nearest_even)
{
    ox_context *ctx;
    ox_device *cpu = cpu_device(&ctx);
    ox_program *p;
    ox_status st = ox_program_build(cpu,
                                    "KERNEL halves(ARG_BUF(const float, x), ARG_BUF(ox_half, h),\n"
                                    "              ARG_BUF(float, back), int n)\n"
                                    "{\n"
                                    "    BUF(const float, x); BUF(ox_half, h); BUF(float, back);\n"
                                    "    i64 i = ox_global_id(0);\n"
                                    "    if (i >= n) return;\n"
                                    "    ox_store_half(h, i, x[i]);\n"
                                    "    back[i] = ox_load_half(h, i);\n"
                                    "}\n",
                                    NULL, &p);
    if (st == OX_ERR_UNSUPPORTED) OX_SKIP("%s", ox_errmsg(ctx));
    ASSERT_OK(ctx, st);
    enum { N = 4096 };
    static float x[N], back[N];
    static unsigned short h[N];
    uint32_t seed = 12345;
    const float specials[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, 1e9f, INFINITY,
                              -INFINITY, NAN, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f,
                              6.1035156e-5f, 6.0975552e-5f, 1.00048828125f, 1.000732421875f};
    for (int i = 0; i < N; i++) {
        if (i < (int)(sizeof specials / sizeof specials[0])) {
            x[i] = specials[i];
            continue;
        }
        seed = seed * 1664525u + 1013904223u;
        /* exponents from 2^-26 to 2^17: subnormal, normal and overflowing halves */
        float m = 1.0f + (float)(seed >> 9) / 8388608.0f;
        x[i] = ldexpf(m, (int)(seed % 44) - 26) * (seed & 0x100 ? -1.0f : 1.0f);
    }
    ox_buffer *bx, *bh, *bb;
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, sizeof x, &bx));
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, sizeof h, &bh));
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, sizeof back, &bb));
    ASSERT_OK(ctx, ox_buffer_write(bx, 0, x, sizeof x));
    ox_kernel *k;
    ASSERT_OK(ctx, ox_program_kernel(p, "halves", &k));
    int n = N;
    ASSERT_OK(ctx, ox_kernel_set_buffer(k, 0, bx));
    ASSERT_OK(ctx, ox_kernel_set_buffer(k, 1, bh));
    ASSERT_OK(ctx, ox_kernel_set_buffer(k, 2, bb));
    ASSERT_OK(ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
    ox_queue *q;
    ASSERT_OK(ctx, ox_queue_create(cpu, &q));
    size_t global[3] = {N, 1, 1}, local[3] = {64, 1, 1};
    ASSERT_OK(ctx, ox_kernel_launch(q, k, global, local, NULL));
    ASSERT_OK(ctx, ox_buffer_read(bh, 0, h, sizeof h));
    ASSERT_OK(ctx, ox_buffer_read(bb, 0, back, sizeof back));
    for (int i = 0; i < N; i++) {
        unsigned want = nearest_half(x[i]);
        ASSERT_MSG(h[i] == want, "%a -> half 0x%04x, nearest is 0x%04x", (double)x[i], h[i], want);
        double v = (want & 0x7c00) == 0x7c00 ? (want & 0x3ff ? NAN : (want & 0x8000 ? -INFINITY
                                                                                    : INFINITY))
                                             : half_value(want);
        ASSERT_MSG((isnan(v) && isnan(back[i])) || (double)back[i] == v,
                   "half 0x%04x read back as %a, is %a", want, (double)back[i], v);
    }
    ox_context_free(ctx);
}

/* A kernel whose macros expand 8^12 times (issue 16: the compiler once
 * took 4 GB in 14 s): stopped by the memory limit, then by the time
 * limit, each named, and no build directory left behind. */
static void bomb_refused(const char *timeout, const char *memory, const char *want)
{
    char tmp[] = "/tmp/ox_test_cc_XXXXXX";
    ASSERT(mkdtemp(tmp) != NULL);
    setenv("TMPDIR", tmp, 1);
    setenv("OX_CC_TIMEOUT", timeout, 1);
    setenv("OX_CC_MEMORY_MB", memory, 1);
    ox_context *ctx;
    ox_device *cpu = cpu_device(&ctx);
    ox_program *p = NULL;
    ox_status st = ox_program_build(cpu,
                                    "#define A(x) x x x x x x x x\n"
                                    "#define B(x) A(A(A(A(x))))\n"
                                    "#define C(x) B(B(B(x)))\n"
                                    "KERNEL bomb(ARG_BUF(float, y))\n"
                                    "{\n"
                                    "    BUF(float, y);\n"
                                    "    float s = 0.0f;\n"
                                    "    C(s += 1.0f;)\n"
                                    "    y[0] = s;\n"
                                    "}\n",
                                    NULL, &p);
    if (st == OX_ERR_UNSUPPORTED) OX_SKIP("%s", ox_errmsg(ctx));
    ASSERT_EQ(st, OX_ERR_BUILD);
    ASSERT_MSG(strstr(ox_errmsg(ctx), want), "'%s' not in: %s", want, ox_errmsg(ctx));
    printf("  %s\n", ox_errmsg(ctx));
    DIR *d = opendir(tmp);
    ASSERT(d != NULL);
    struct dirent *e;
    int left = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            printf("  left behind: %s\n", e->d_name);
            left++;
        }
    closedir(d);
    ASSERT_EQ(left, 0);
    rmdir(tmp);
    ox_context_free(ctx);
}

OX_TEST(compiler_memory_limit)
{
    bomb_refused("600", "300", "hit the memory limit on kernel builds (300 MiB");
}

OX_TEST(compiler_time_limit)
{
    bomb_refused("2", "8192", "ran past the time limit on kernel builds (2 s");
}

/* A kernel object with a constructor or destructor (code dlopen would run
 * in the host process) is refused at build, however the attribute is
 * spelled; were it opened, the trap would end this test. */
OX_TEST(kernels_that_run_code_when_loaded_are_refused)
{
    ox_context *ctx;
    ox_device *cpu = cpu_device(&ctx);
    static const char *const sources[] = {
        "__attribute__((constructor)) static void at_load(void) { __builtin_trap(); }\n"
        "KERNEL k(ARG_BUF(float, y)) { BUF(float, y); y[0] = 1.0f; }\n",
        "#define LATER __attribute__((destructor))\n"
        "LATER static void at_unload(void) { __builtin_trap(); }\n"
        "KERNEL k(ARG_BUF(float, y)) { BUF(float, y); y[0] = 2.0f; }\n",
    };
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
        ox_program *p = NULL;
        ox_status st = ox_program_build(cpu, sources[i], NULL, &p);
        if (st == OX_ERR_UNSUPPORTED) OX_SKIP("%s", ox_errmsg(ctx));
        ASSERT_EQ(st, OX_ERR_BUILD);
        ASSERT_CONTAINS(ox_errmsg(ctx), "would run code of its own when loaded or unloaded");
    }
    ox_program *p = NULL; /* the same kernel without it builds */
    ASSERT_OK(ctx, ox_program_build(cpu, "KERNEL k(ARG_BUF(float, y)) { BUF(float, y); y[0] = 1.0f; }\n",
                                    NULL, &p));
    ox_program_free(p);
    ox_context_free(ctx);
}

OX_TEST_MAIN(every_kernel_compiles_as_c, c_prelude_halves_round_to_nearest_even,
             compiler_memory_limit, compiler_time_limit,
             kernels_that_run_code_when_loaded_are_refused)
