/* User kernels on the CPU: the portable dialect compiled as C11 by the
 * system's C compiler into a shared object, kept in the kernel cache, loaded
 * with dlopen, and run one work-group per thread-pool task.
 *
 * Work-items of a group run in a loop (ox__group_NAME) when the program has
 * no barriers. With barriers each work-item is a fiber (ucontext) with its
 * own stack: BARRIER() switches back to this file's scheduler, which runs
 * every other work-item of the group up to the same barrier before any goes
 * on. So barriers and local memory mean what they mean on a GPU; a group
 * whose work-items split at a barrier (some return, some wait, or they wait
 * at different barriers) is stopped with an error naming the line.
 *
 * Local memory is one arena per thread (OX__CPU_LOCAL_BYTES): LOCAL
 * parameters first, then LOCAL_ARRAYs claimed in declaration order. */
#define _GNU_SOURCE
/* _longjmp between fiber stacks: the fortified longjmp refuses to jump to
 * another stack. */
#undef _FORTIFY_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "core/kernel_sig.h"
#include "core/backend.h"
#include "core/cpu_features.h"
#include "core/threadpool.h"

#define OX__C_ABI_ONLY
#include "../../../kernels/prelude_c.h"

#define FIBER_STACK ((size_t)128 << 10)
#define MAX_LOG ((size_t)64 << 10)
#define MAX_ARGS OX__SIG_MAX_PARAMS

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define OX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OX_ASAN 1
#endif
#endif
#ifdef OX_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif

typedef void (*entry_fn)(void *const *args, struct ox__item *w);

typedef struct cpu_program {
    const ox__host *host;
    void *dl;
    bool barriers; /* the source has BARRIER: work-items run as fibers */
} cpu_program;

typedef struct cpu_kernel {
    cpu_program *program;
    entry_fn group, item;
    char name[64];
} cpu_kernel;

enum { FIBER_READY, FIBER_BARRIER, FIBER_DONE };

#if defined(__GNUC__) && (!defined(__clang__) || defined(__x86_64__))
typedef void *fiber_jump[5]; /* __builtin_setjmp's buffer */
#else
typedef jmp_buf fiber_jump;
#endif

typedef struct fiber {
    ucontext_t uc;        /* the first entry */
    fiber_jump jump;      /* where it waits at a barrier */
    unsigned char *stack; /* mmap'ed, guard page first */
    unsigned char *stack_base; /* above the guard page */
    int state, line;
    bool made;    /* makecontext'ed onto its stack */
    bool started; /* entered: resumed through `jump` */
} fiber;

/* What one launch shares between its tasks. */
typedef struct launch {
    cpu_kernel *kernel;
    bool barriers;
    size_t groups[3];
    int local[3];
    int n_args;
    void *slots[MAX_ARGS];        /* buffer pointers; local: offsets in the arena */
    void *args[MAX_ARGS];         /* what the entry points receive */
    bool is_local[MAX_ARGS];
    unsigned long local_start;
    size_t total, chunk;          /* groups in all; per task */
    atomic_int failed;
    char error[512];
    struct thread_state *threads;
    struct guarded *guarded;      /* OX_KERNEL_CHECKS: the buffers' guarded copies */
    int n_guarded;
    const ox__sig_kernel *sig;    /* the parameters' names and types, if the core knows them */
} launch;

/* Per pool thread: its arena, fibers and the way back from a failure. */
typedef struct thread_state thread_state;
struct thread_state {
    unsigned char *arena;
    fiber *fibers;
    int n_fibers, cap;    /* fibers made; room in fibers and items */
    struct ox__item *items;
    pthread_t owner;      /* the thread its fibers were made on */
    bool has_owner;
    ucontext_t scheduler;
    ucontext_t context_template; /* getcontext's, copied into each fiber */
    fiber_jump back;      /* the scheduler, while a fiber runs */
    int current;
    bool in_fibers;
    bool aborted;
    jmp_buf escape;
    struct ox__item *loop_item; /* the work-item running in run_loops */
    launch *run;
    entry_fn entry;
    void *const *args;
#ifdef OX_ASAN
    const void *sched_bottom;
    size_t sched_size;
#endif
};

/* A device's launch state: the pool threads' arenas and fibers, used by
 * one launch at a time (lock). */
struct cpu_kernels {
    const ox__host *host;
    pthread_mutex_t lock;
    int n_threads;
    thread_state *threads;
};

/* Guards the creation of every device's launch state. */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- compiling ------------------------------------------------------------------ */

/* The C compiler to use: $OX_CC, else cc, gcc or clang from PATH. */
static bool find_compiler(char *path, size_t cap)
{
    const char *env = getenv("OX_CC");
    const char *names[] = {env && *env ? env : NULL, "cc", "gcc", "clang"};
    const char *dirs = getenv("PATH");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!names[i]) continue;
        if (strchr(names[i], '/')) {
            if (access(names[i], X_OK) == 0 && snprintf(path, cap, "%s", names[i]) < (int)cap)
                return true;
            if (i == 0) return false; /* an explicit OX_CC that is not there */
            continue;
        }
        for (const char *d = dirs ? dirs : "/usr/bin:/bin"; *d;) {
            size_t len = strcspn(d, ":");
            if (len && snprintf(path, cap, "%.*s/%s", (int)len, d, names[i]) < (int)cap &&
                access(path, X_OK) == 0)
                return true;
            d += len + (d[len] == ':');
        }
        if (i == 0) return false;
    }
    return false;
}

const char *ox__cpu_compiler(char *path, size_t cap)
{
    return find_compiler(path, cap) ? path : NULL;
}

/* -nostartfiles: no crt objects, so that an object with code to run when
 * it is loaded or unloaded can only be the kernel's own (runs_at_load).
 * On ARM64, -mno-outline-atomics too: GCC's outline atomics link libgcc's
 * lse-init, a constructor that probes the CPU. */
#if defined(__aarch64__)
#define TARGET_FLAGS " -mno-outline-atomics"
#else
#define TARGET_FLAGS ""
#endif
#define BASE_FLAGS                                                                      \
    "-std=gnu11 -O2 -fPIC -shared -nostartfiles -fvisibility=hidden -ffp-contract=off "  \
    "-fno-math-errno -fno-diagnostics-show-caret" TARGET_FLAGS

/* The instruction set beyond the ABI's baseline that the compiler may use:
 * the fused multiply-add instruction, so that fmaf is one instruction, not
 * a call into libm (12% of a prompt in reproducible mode). Results do not
 * change: fmaf is exact either way and contraction stays off. 256-bit
 * vectors (-mavx2) made the kernels slower. The flag is in the cache key,
 * so an object is never loaded on a CPU without it. */
static const char *isa_flags(void)
{
#if defined(__x86_64__)
    if (ox__cpu_detect()->features & OX_FEATURE_BIT(OX_FEATURE_FMA)) return "-mfma";
#endif
    return "";
}

/* argv for the compiler: the base flags, $OX_CC_FLAGS, the user's -D/-U/-I
 * options. Returns the count, or -1 (message in why) for another option. */
static int compiler_argv(char *words, const char **argv, int cap, const char *compiler,
                         const char *src, const char *out, char *why, size_t why_cap)
{
    int n = 0;
    argv[n++] = compiler;
    char *save;
    for (char *w = strtok_r(words, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (n + 5 >= cap) {
            snprintf(why, why_cap, "too many build options");
            return -1;
        }
        argv[n++] = w;
    }
    argv[n++] = "-o";
    argv[n++] = out;
    argv[n++] = src;
    argv[n++] = "-lm";
    argv[n] = NULL;
    return n;
}

/* Check the user's options: the CPU's compiler gets -D, -U and -I only. */
static bool options_ok(const char *options, char *why, size_t cap)
{
    char copy[2048];
    if (snprintf(copy, sizeof copy, "%s", options) >= (int)sizeof copy) {
        snprintf(why, cap, "build options longer than %zu bytes", sizeof copy - 1);
        return false;
    }
    for (char *save, *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(w, "-D", 2) != 0 && strncmp(w, "-U", 2) != 0 && strncmp(w, "-I", 2) != 0) {
            snprintf(why, cap, "build option '%.64s' is not for every device: options are -D, -U "
                     "and -I", w);
            return false;
        }
    }
    return true;
}

static bool write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    const unsigned char *p = data;
    while (size) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            return false;
        }
        p += w, size -= (size_t)w;
    }
    return close(fd) == 0;
}

/* Read at most `limit` bytes of a file into host memory, NUL-terminated
 * (*size set, the allocation *size + 1); text has any NUL byte blanked. */
static void *read_file(const ox__host *host, const char *path, size_t limit, bool text,
                       size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 0) {
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size < limit ? (size_t)st.st_size : limit;
    char *data = host->alloc(host->core, n + 1);
    size_t got = 0;
    while (data && got < n) {
        ssize_t r = read(fd, data + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (data && got != n) { /* a short read: an error, and the size must stay exact */
        host->free(host->core, data, n + 1);
        return NULL;
    }
    if (data) {
        data[n] = '\0';
        for (size_t i = 0; text && i < n; i++) /* strlen + 1 is the size the core frees */
            if (!data[i]) data[i] = ' ';
    }
    *size = n;
    return data;
}

/* Limits on a kernel build (a macro that expands 2^40 times once drove
 * the compiler to 4 GB in 14 s): wall-clock seconds and address space,
 * OX_CC_TIMEOUT and OX_CC_MEMORY_MB to change them. */
#define CC_TIMEOUT_S 120
#define CC_MEMORY_MB 4096

static long env_limit(const char *name, long fallback, long lo, long hi)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == '\0' && n >= lo && n <= hi ? n : fallback;
}

/* How a compiler run ended. */
typedef enum cc_end { CC_EXITED, CC_TIMED_OUT, CC_SIGNALED, CC_NOT_RUN } cc_end;

/* Run the compiler in a process group of its own, under the limits, with
 * TMPDIR = dir (so that its temporary files are ours to remove), stdout and
 * stderr to log_path. *status: the exit status, or the signal. */
static cc_end run_compiler(const char *const *argv, const char *dir, const char *log_path,
                           long timeout_s, long memory_mb, int *status)
{
    /* the child's environment, made before fork (no allocation after it):
     * ours with TMPDIR replaced */
    char tmpdir[600];
    snprintf(tmpdir, sizeof tmpdir, "TMPDIR=%s", dir);
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **envp = malloc((n_env + 2) * sizeof *envp);
    if (!envp) return CC_NOT_RUN;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "TMPDIR=", 7) != 0) envp[k++] = environ[i];
    envp[k++] = tmpdir;
    envp[k] = NULL;
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = log_fd >= 0 && null_fd >= 0 ? fork() : -1;
    if (pid == 0) { /* the child: only async-signal-safe calls until exec */
        setpgid(0, 0);
        struct rlimit as = {(rlim_t)memory_mb << 20, (rlim_t)memory_mb << 20};
        struct rlimit cpu = {(rlim_t)timeout_s, (rlim_t)timeout_s + 5};
        setrlimit(RLIMIT_AS, &as);
        setrlimit(RLIMIT_CPU, &cpu);
        dup2(null_fd, 0);
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    if (log_fd >= 0) close(log_fd);
    if (null_fd >= 0) close(null_fd);
    if (pid < 0) return CC_NOT_RUN;
    setpgid(pid, pid); /* also here: whichever runs first */
    struct timespec start, now, nap = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    int w;
    for (;;) {
        pid_t r = waitpid(pid, &w, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return CC_NOT_RUN;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) { /* the whole group: cc1, as, ld too */
            kill(-pid, SIGKILL);
            while (waitpid(pid, &w, 0) < 0 && errno == EINTR) {}
            return CC_TIMED_OUT;
        }
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 50 * 1000 * 1000) nap.tv_nsec *= 2;
    }
    kill(-pid, SIGKILL); /* anything the compiler left running */
    if (WIFSIGNALED(w)) {
        *status = WTERMSIG(w);
        return CC_SIGNALED;
    }
    *status = WEXITSTATUS(w);
    return CC_EXITED;
}

/* Remove a build directory and whatever the compiler left in it. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char path[1200];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(path);
            else unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* True (why says what) when the shared object in `image` would run code of
 * its own when loaded or unloaded (constructors, destructors, DT_INIT or
 * DT_FINI: __attribute__((constructor)) in a kernel source), or is not an
 * ELF64 object this check can read: such an object is never opened, since
 * dlopen would run that code in the host process before any kernel is
 * called. */
static bool runs_at_load(const unsigned char *image, size_t size, char *why, size_t cap)
{
    Elf64_Ehdr eh;
    if (size < sizeof eh) goto unreadable;
    memcpy(&eh, image, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > size ||
        (size - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum)
        goto unreadable;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_DYNAMIC) continue;
        if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset) goto unreadable;
        for (size_t at = 0; at + sizeof(Elf64_Dyn) <= ph.p_filesz; at += sizeof(Elf64_Dyn)) {
            Elf64_Dyn d;
            memcpy(&d, image + ph.p_offset + at, sizeof d);
            if (d.d_tag == DT_NULL) break;
            bool runs = d.d_tag == DT_INIT || d.d_tag == DT_FINI || d.d_tag == DT_PREINIT_ARRAYSZ ||
                        ((d.d_tag == DT_INIT_ARRAYSZ || d.d_tag == DT_FINI_ARRAYSZ) &&
                         d.d_un.d_val > 0);
            if (runs) {
                snprintf(why, cap, "the kernel object would run code of its own when loaded or "
                         "unloaded (a constructor or destructor: __attribute__((constructor)) or "
                         "((destructor)) in the source); kernels may only run when launched");
                return true;
            }
        }
    }
    return false;
unreadable:
    snprintf(why, cap, "the compiled object is not an ELF64 shared object this library can "
             "check (is OX_CC a compiler for this machine?)");
    return true;
}

/* dlopen the shared object in `data` (from the cache) through a file of
 * its own name: the loader takes a name it has seen for the object it
 * loaded then, so names are never reused while a program lives. */
static void *open_image(const void *data, size_t size, char *why, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    char path[600];
    snprintf(path, sizeof path, "%s/openxpu-kernel-XXXXXX.so", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemps(path, 3);
    if (fd < 0) {
        snprintf(why, cap, "cannot create %.300s: %s", path, strerror(errno));
        return NULL;
    }
    close(fd);
    if (runs_at_load(data, size, why, cap)) {
        unlink(path);
        return NULL;
    }
    if (!write_file(path, data, size)) {
        snprintf(why, cap, "cannot write %.300s: %s", path, strerror(errno));
        unlink(path);
        return NULL;
    }
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) snprintf(why, cap, "%s", dlerror());
    unlink(path);
    return dl;
}

static bool abi_ok(void *dl, char *why, size_t cap)
{
    const int *version = dlsym(dl, "ox__c_abi_version");
    if (!version || *version != OX__C_ABI_VERSION || !dlsym(dl, "ox__c_barriers")) {
        snprintf(why, cap, "the compiled object is not of this library's kernel ABI %d",
                 OX__C_ABI_VERSION);
        return false;
    }
    return true;
}

char *ox__cpu_directives(const char *text, const char *options, const char *marker, char *why,
                         size_t cap)
{
    char compiler[1024];
    if (!find_compiler(compiler, sizeof compiler)) {
        snprintf(why, cap, "no C compiler found (cc, gcc or clang in PATH, or OX_CC)");
        return NULL;
    }
    if (!options_ok(options, why, cap)) return NULL;
    const char *tmp = getenv("TMPDIR");
    char dir[512], src[600], out[600], logp[600];
    snprintf(dir, sizeof dir, "%s/openxpu-cpp-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(why, cap, "cannot create a directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    snprintf(src, sizeof src, "%s/kernel.c", dir);
    snprintf(out, sizeof out, "%s/kernel.i", dir);
    snprintf(logp, sizeof logp, "%s/log.txt", dir);
    size_t words_size = strlen(options) + 64;
    char *words = malloc(words_size), *result = NULL;
    const char *argv[96];
    int n = 0, rc = -1;
    if (!words) {
        snprintf(why, cap, "out of host memory");
        rmdir(dir);
        return NULL;
    }
    snprintf(words, words_size, "-E -fdirectives-only -P %s", options);
    argv[n++] = compiler;
    char *save;
    for (char *w = strtok_r(words, " \t\n", &save); w && n < 90; w = strtok_r(NULL, " \t\n", &save))
        argv[n++] = w;
    argv[n++] = "-o";
    argv[n++] = out;
    argv[n++] = src;
    argv[n] = NULL;
    cc_end how = CC_NOT_RUN;
    if (write_file(src, text, strlen(text)))
        how = run_compiler(argv, dir, logp, env_limit("OX_CC_TIMEOUT", CC_TIMEOUT_S, 1, 86400),
                           env_limit("OX_CC_MEMORY_MB", CC_MEMORY_MB, 64, 1L << 20), &rc);
    FILE *f = how == CC_EXITED && rc == 0 ? fopen(out, "rb") : NULL;
    if (!f) {
        snprintf(why, cap, "%s -E -fdirectives-only failed (%s); reproducible mode on the CPU "
                 "reads the library's kernels through GCC's preprocessor (set OX_CC to gcc)",
                 compiler, how == CC_EXITED ? "exit status" : "did not run to the end");
    } else {
        size_t size = 0, used = 0;
        char *data = NULL;
        for (;;) {
            if (used + 65536 + 1 > size) {
                char *grown = realloc(data, size = 2 * size + 65536 + 1);
                if (!grown) break;
                data = grown;
            }
            size_t got = fread(data + used, 1, size - used - 1, f);
            used += got;
            if (got == 0) break;
        }
        fclose(f);
        if (data) data[used] = '\0';
        size_t mlen = strlen(marker);
        const char *at = data;
        while (at && (at = strstr(at, marker)) != NULL &&
               !((at == data || at[-1] == '\n') && (at[mlen] == '\n' || at[mlen] == '\0')))
            at += mlen;
        if (!data) snprintf(why, cap, "out of host memory");
        else if (!at) snprintf(why, cap, "the preprocessed source lost its marker");
        else if ((result = strdup(at + mlen)) == NULL) snprintf(why, cap, "out of host memory");
        free(data);
    }
    free(words);
    remove_tree(dir);
    return result;
}

ox_status ox__cpu_program_build(void *device, const char *source, const char *options,
                                void **program, char **log)
{
    const ox__host *host = ox__cpu_device_host(device);
    char compiler[1024], why[512];
    *program = NULL;
    *log = NULL;
    if (!options_ok(options, why, sizeof why))
        return host->fail(host->core, OX_ERR_BUILD, "cpu: %s", why);
    if (!find_compiler(compiler, sizeof compiler)) {
        const char *env = getenv("OX_CC");
        return host->fail(host->core, OX_ERR_UNSUPPORTED,
                          "cpu: no C compiler found (%s%s%s): user kernels on the CPU are "
                          "compiled at run time; install one (gcc or clang), set OX_CC, or build "
                          "for an OpenCL CPU device (PoCL), which `ox devices` lists",
                          env && *env ? "OX_CC=" : "tried cc, gcc and clang in PATH",
                          env && *env ? env : "", env && *env ? " is not executable" : "");
    }
    struct stat cst;
    if (stat(compiler, &cst) != 0) memset(&cst, 0, sizeof cst);
    const char *extra = getenv("OX_CC_FLAGS");
    if (!extra) extra = "";
    const char *isa = isa_flags();

    /* the cache key: everything the object depends on */
    size_t key_size = strlen(compiler) + strlen(extra) + strlen(options) + strlen(source) + 256;
    char *key = host->alloc(host->core, key_size);
    if (!key) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    snprintf(key, key_size, "cpu-c|abi %d|%s %lld %lld|" BASE_FLAGS " %s %s|%s|%s",
             OX__C_ABI_VERSION, compiler, (long long)cst.st_size, (long long)cst.st_mtime, isa,
             extra, options, source);
    cpu_program *p = host->alloc(host->core, sizeof *p);
    if (!p) {
        host->free(host->core, key, key_size);
        return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    }
    p->host = host;
    p->dl = NULL;

    void *image;
    size_t image_size;
    if (host->cache_load(host->core, key, &image, &image_size) == OX_OK) {
        p->dl = open_image(image, image_size, why, sizeof why);
        host->free(host->core, image, image_size);
        if (p->dl && !abi_ok(p->dl, why, sizeof why)) dlclose(p->dl), p->dl = NULL;
        if (!p->dl) host->log(host->core, OX_LOG_DEBUG, "cpu: cached kernel object unusable: %s", why);
    }
    ox_status s = OX_OK;
    if (!p->dl) {
        const char *tmp = getenv("TMPDIR");
        char dir[512], src[600], out[600], logp[600];
        snprintf(dir, sizeof dir, "%s/openxpu-cc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            s = host->fail(host->core, OX_ERR_IO, "cpu: cannot create a directory %s: %s", dir,
                           strerror(errno));
            goto out;
        }
        snprintf(src, sizeof src, "%s/kernel.c", dir);
        snprintf(out, sizeof out, "%s/kernel.so", dir);
        snprintf(logp, sizeof logp, "%s/log.txt", dir);
        size_t words_size = strlen(BASE_FLAGS) + strlen(isa) + strlen(extra) + strlen(options) + 4;
        char *words = host->alloc(host->core, words_size);
        const char *argv[96];
        int argc = -1;
        if (!words) {
            rmdir(dir);
            s = host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
            goto out;
        }
        snprintf(words, words_size, BASE_FLAGS " %s %s %s", isa, extra, options);
        argc = compiler_argv(words, argv, 96, compiler, src, out, why, sizeof why);
        int rc = -2;
        cc_end how = CC_NOT_RUN;
        long timeout_s = env_limit("OX_CC_TIMEOUT", CC_TIMEOUT_S, 1, 86400);
        long memory_mb = env_limit("OX_CC_MEMORY_MB", CC_MEMORY_MB, 64, 1L << 20);
        if (argc > 0 && write_file(src, source, strlen(source))) {
            how = run_compiler(argv, dir, logp, timeout_s, memory_mb, &rc);
            if (how != CC_EXITED && rc == -2) rc = -1;
        }
        size_t log_size = 0;
        char *text = rc == -2 ? NULL : read_file(host, logp, MAX_LOG, true, &log_size);
        bool out_of_memory = text && (strstr(text, "out of memory") ||
                                      strstr(text, "memory exhausted") ||
                                      strstr(text, "Cannot allocate memory"));
        if (how != CC_EXITED || rc != 0) {
            if (rc == -2)
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: cannot run the compiler: %s",
                               argc < 0 ? why : "cannot write the source");
            else if (how == CC_TIMED_OUT)
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s ran past the time limit on "
                               "kernel builds (%ld s; OX_CC_TIMEOUT) and was stopped", compiler,
                               timeout_s);
            else if (how == CC_SIGNALED && rc == SIGXCPU)
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s used more than the CPU-time "
                               "limit on kernel builds (%ld s; OX_CC_TIMEOUT)", compiler,
                               timeout_s);
            else if (out_of_memory || (how == CC_SIGNALED && (rc == SIGKILL || rc == SIGSEGV)))
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s hit the memory limit on kernel "
                               "builds (%ld MiB of address space; OX_CC_MEMORY_MB)", compiler,
                               memory_mb);
            else if (how == CC_SIGNALED)
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s was killed by signal %d",
                               compiler, rc);
            else if (how != CC_EXITED)
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s did not run to the end",
                               compiler);
            else
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s failed (exit status %d)",
                               compiler, rc);
            *log = text;
        } else {
            if (text && log_size) *log = text;
            else if (text) host->free(host->core, text, log_size + 1);
            size_t so_size;
            void *so = read_file(host, out, (size_t)1 << 30, false, &so_size);
            bool refused = !so || runs_at_load(so, so_size, why, sizeof why);
            if (so && !refused) host->cache_store(host->core, key, so, so_size);
            if (so) host->free(host->core, so, so_size + 1);
            if (!so && access(out, R_OK) == 0) { /* there, but not read: memory */
                s = host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory "
                               "reading the kernel object");
            } else if (!so) {
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: cannot read the object %s built",
                               compiler);
            } else if (refused) {
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: %s", why);
            } else if (!(p->dl = dlopen(out, RTLD_NOW | RTLD_LOCAL)) ||
                       !abi_ok(p->dl, why, sizeof why)) {
                if (!p->dl) snprintf(why, sizeof why, "%s", dlerror());
                else dlclose(p->dl), p->dl = NULL;
                s = host->fail(host->core, OX_ERR_BUILD, "cpu: the object %s built cannot be "
                               "loaded: %s (is OX_CC a compiler for this machine?)", compiler, why);
            }
        }
        host->free(host->core, words, words_size);
        remove_tree(dir); /* with whatever a killed compiler left */
    }
out:
    host->free(host->core, key, key_size);
    if (s == OX_OK) p->barriers = *(const int *)dlsym(p->dl, "ox__c_barriers") != 0;
    if (s != OX_OK) {
        host->free(host->core, p, sizeof *p);
        return s;
    }
    *program = p;
    return OX_OK;
}

void ox__cpu_program_free(void *program)
{
    cpu_program *p = program;
    if (!p) return;
    if (p->dl) dlclose(p->dl);
    p->host->free(p->host->core, p, sizeof *p);
}

ox_status ox__cpu_kernel_create(void *program, const char *name, void **kernel)
{
    cpu_program *p = program;
    const ox__host *host = p->host;
    char symbol[128];
    cpu_kernel *k = host->alloc(host->core, sizeof *k);
    if (!k) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    k->program = p;
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(symbol, sizeof symbol, "ox__group_%s", name);
    k->group = (entry_fn)(uintptr_t)dlsym(p->dl, symbol);
    snprintf(symbol, sizeof symbol, "ox__item_%s", name);
    k->item = (entry_fn)(uintptr_t)dlsym(p->dl, symbol);
    if (!k->group || !k->item) {
        host->free(host->core, k, sizeof *k);
        return host->fail(host->core, OX_ERR_NOT_FOUND, "cpu: the program has no kernel '%s'",
                          name);
    }
    *kernel = k;
    return OX_OK;
}

void ox__cpu_kernel_free(void *kernel)
{
    cpu_kernel *k = kernel;
    if (k) k->program->host->free(k->program->host->core, k, sizeof *k);
}

/* ---- running ------------------------------------------------------------------------ */

static void launch_fail(launch *run, const char *fmt, ...) OX__PRINTF(2, 3);
static void launch_fail(launch *run, const char *fmt, ...)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&run->failed, &expected, 1)) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->error, sizeof run->error, fmt, ap);
    va_end(ap);
}

/* ---- switching between the scheduler and the work-items' fibers ----
 *
 * Fiber i of a pool thread runs work-item i of every group that thread
 * runs: it loops, running one work-item and then yielding, so a fiber is
 * made (makecontext) and first entered (swapcontext) once, not once per
 * group. After that, without AddressSanitizer, every switch is
 * _setjmp/_longjmp: no system call (swapcontext saves and restores the
 * signal mask with one each way). With AddressSanitizer, swapcontext
 * throughout, each switch announced to it, so that it knows which stack is
 * live. A fiber left in the middle of a work-item (the launch failed) is
 * made afresh the next time. */

static __thread thread_state *fiber_owner;
static __thread thread_state *running_ts; /* this pool thread's, in a launch */

#ifndef OX_ASAN
/* The compiler's own setjmp/longjmp where it has them (GCC everywhere,
 * clang on x86-64): three words saved, the registers spilled by the
 * compiler around the call; else the C library's _setjmp/_longjmp. A jump
 * is its own function: __builtin_longjmp may not share one with
 * __builtin_setjmp. */
#if defined(__GNUC__) && (!defined(__clang__) || defined(__x86_64__))
#define SAVE(buf) __builtin_setjmp(buf)
__attribute__((noinline, noreturn)) static void jump(fiber_jump buf)
{
    __builtin_longjmp(buf, 1);
}
#else
#define SAVE(buf) _setjmp(buf)
__attribute__((noinline, noreturn)) static void jump(fiber_jump buf)
{
    _longjmp(buf, 1);
}
#endif
#endif

/* Scheduler to fiber; returns when the fiber waits at a barrier, ends its
 * work-item, or stops the launch. */
__attribute__((noinline)) static void resume(thread_state *ts, fiber *f)
{
#ifdef OX_ASAN
    void *fake = NULL;
    f->started = true;
    __sanitizer_start_switch_fiber(&fake, f->stack_base, FIBER_STACK);
    swapcontext(&ts->scheduler, &f->uc);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    if (SAVE(ts->back) == 0) {
        if (f->started) jump(f->jump);
        f->started = true;
        swapcontext(&ts->scheduler, &f->uc); /* comes back through ts->back */
    }
#endif
}

/* Fiber to scheduler; returns when the scheduler resumes the fiber. */
__attribute__((noinline)) static void yield(thread_state *ts, fiber *f)
{
#ifdef OX_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, ts->sched_bottom, ts->sched_size);
    swapcontext(&f->uc, &ts->scheduler);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    if (SAVE(f->jump) == 0) jump(ts->back);
#endif
}

static void fiber_main(void)
{
    thread_state *ts = fiber_owner;
#ifdef OX_ASAN
    __sanitizer_finish_switch_fiber(NULL, &ts->sched_bottom, &ts->sched_size);
#endif
    int i = ts->current;
    for (;;) { /* work-item i of one group, then of the next */
        ts->entry(ts->args, &ts->items[i]);
        ts->fibers[i].state = FIBER_DONE;
        yield(ts, &ts->fibers[i]);
    }
}

static void on_barrier(struct ox__item *w, int line)
{
    thread_state *ts = w->grp->runtime;
    if (!ts->in_fibers) {
        /* the program was judged barrier-free: only a macro hiding BARRIER
         * can bring us here */
        launch_fail(ts->run, "kernel '%s': a barrier (line %d) in a program run without "
                    "barriers: write BARRIER() in the source itself", ts->run->kernel->name, line);
        longjmp(ts->escape, 1);
    }
    fiber *f = &ts->fibers[ts->current];
    f->state = FIBER_BARRIER;
    f->line = line;
    yield(ts, f);
}

/* Leave the work-item running on this thread after launch_fail: back to
 * run_loops, or to the scheduler for good. */
__attribute__((noreturn)) static void stop_item(thread_state *ts)
{
    if (!ts->in_fibers) longjmp(ts->escape, 1);
    ts->aborted = true;
    for (;;) yield(ts, &ts->fibers[ts->current]); /* never resumed: the fiber is made afresh */
}

static void on_fail(struct ox__item *w, const char *what, unsigned long value)
{
    thread_state *ts = w->grp->runtime;
    launch_fail(ts->run, "kernel '%s', group (%d, %d, %d): %s %lu exceeds the %lu the CPU "
                "gives a work-group", ts->run->kernel->name, w->grp->gid[0], w->grp->gid[1],
                w->grp->gid[2], what, value, w->grp->local_cap);
    stop_item(ts);
}

/* ---- OX_KERNEL_CHECKS=1: user kernels on guarded copies ------------------------------
 *
 * Each buffer of a launch is copied into a mapping of its own between two
 * no-access regions of CHECK_GUARD bytes, the kernel runs on the copies,
 * and an access outside a buffer faults in a guard region: the SIGSEGV
 * handler names the kernel, the work-item, the argument and the index,
 * and leaves the work-item as a failed launch does. The copies are written
 * back only when the launch ran to the end, so a caught launch changes no
 * buffer. A buffer whose size is not a whole number of pages runs twice,
 * first starting at its mapping's first byte (an index below 0 faults at
 * once), then ending at its last (an index past the end faults at once).
 * Arguments that share a buffer share its copy, as they share the buffer. */

#define CHECK_GUARD ((size_t)256 << 20)

typedef struct guarded {
    void *buffer;
    unsigned char *orig, *map, *data;
    size_t size, span, map_size; /* bytes; readable pages; all */
    int arg;                     /* the first argument on it */
} guarded;

static pthread_mutex_t checks_lock = PTHREAD_MUTEX_INITIALIZER; /* one checked launch at a time */
static launch *_Atomic checked_run;
static struct sigaction checks_old; /* SIGSEGV's action before ours */
static pthread_once_t checks_once = PTHREAD_ONCE_INIT;

/* "write", "read" or "access" (where the fault does not say) */
static const char *fault_access(const void *context)
{
#if defined(__x86_64__)
    return ((const ucontext_t *)context)->uc_mcontext.gregs[REG_ERR] & 2 ? "write" : "read";
#else
    (void)context;
    return "access";
#endif
}

static void checks_chain(int sig, siginfo_t *info, void *context)
{
    if (checks_old.sa_flags & SA_SIGINFO) {
        if (checks_old.sa_sigaction) checks_old.sa_sigaction(sig, info, context);
    } else if (checks_old.sa_handler != SIG_DFL && checks_old.sa_handler != SIG_IGN) {
        checks_old.sa_handler(sig);
    } else { /* the fault happens again on return, and ends the process */
        signal(sig, SIG_DFL);
    }
}

static void on_fault(int sig, siginfo_t *info, void *context)
{
    thread_state *ts = running_ts;
    launch *run = atomic_load(&checked_run);
    const unsigned char *addr = info->si_addr;
    const guarded *g = NULL;
    if (run && ts && ts->run == run)
        for (int i = 0; i < run->n_guarded; i++)
            if (addr >= run->guarded[i].map && addr < run->guarded[i].map + run->guarded[i].map_size)
                g = &run->guarded[i];
    if (!g) {
        checks_chain(sig, info, context);
        return;
    }
    const struct ox__item *w = ts->in_fibers ? &ts->items[ts->current] : ts->loop_item;
    const ox__sig_param *param =
        run->sig && g->arg < run->sig->n_params ? &run->sig->params[g->arg] : NULL;
    size_t es = param ? param->size : 0, offset =
        (size_t)((unsigned char *)run->slots[g->arg] - g->data);
    long long at = (long long)(addr - g->data) - (long long)offset;
    char where[200];
    if (es)
        snprintf(where, sizeof where, "(%s, %zu elements): index %lld", param->type,
                 (g->size - offset) / es, at >= 0 ? at / (long long)es
                                                  : -((-at + (long long)es - 1) / (long long)es));
    else
        snprintf(where, sizeof where, "(%zu bytes): byte %lld", g->size - offset, at);
    launch_fail(run, "kernel '%s', group (%d, %d, %d), work-item (%d, %d, %d): %s out of the "
                "bounds of argument %d%s%s%s %s (OX_KERNEL_CHECKS; no buffer was changed)",
                run->kernel->name, w->grp->gid[0], w->grp->gid[1], w->grp->gid[2], w->lid[0],
                w->lid[1], w->lid[2], fault_access(context), g->arg, param ? " '" : "",
                param ? param->name : "", param ? "'" : "", where);
    stop_item(ts);
}

static void checks_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER; /* left by a jump, not a return */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &checks_old);
}

/* OX_KERNEL_CHECKS: 1 (on, yes, true) or 0 (off, no, false); warned once otherwise */
static bool checks_enabled(const ox__host *host)
{
    const char *v = getenv("OX_KERNEL_CHECKS");
    if (!v || !*v) return false;
    static const char *const on[] = {"1", "on", "yes", "true"}, *const off[] = {"0", "off", "no",
                                                                                "false"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, on[i])) return true;
        if (!strcmp(v, off[i])) return false;
    }
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&warned))
        host->log(host->core, OX_LOG_WARN, "OX_KERNEL_CHECKS=%.40s is not 1 or 0; user kernels "
                  "run unchecked", v);
    return false;
}

static void run_groups(void *arg, size_t task, int thread);

static void run_tasks(ox__pool *pool, launch *run)
{
    if (run->total) ox__pool_run(pool, (run->total + run->chunk - 1) / run->chunk, run_groups, run);
}

/* The launch on guarded copies of its buffers (see above). */
static ox_status run_checked(const ox__host *host, ox__pool *pool, launch *run, int n_args,
                             const ox__kernel_arg *args)
{
    guarded g[MAX_ARGS];
    int n = 0, on[MAX_ARGS];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    ox_status s = OX_OK;
    for (int i = 0; i < n_args && s == OX_OK; i++) {
        if (args[i].kind != OX__ARG_BUFFER) continue;
        for (on[i] = 0; on[i] < n && g[on[i]].buffer != args[i].buffer; on[i]++) {}
        if (on[i] < n) continue;
        guarded *c = &g[n];
        *c = (guarded){.buffer = args[i].buffer, .orig = ox__cpu_buffer_data(args[i].buffer),
                       .size = ox__cpu_buffer_size(args[i].buffer), .arg = i};
        c->span = (c->size + page - 1) / page * page;
        c->map_size = c->span + 2 * CHECK_GUARD;
        c->map = mmap(NULL, c->map_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
        if (c->map == MAP_FAILED ||
            (c->span && mprotect(c->map + CHECK_GUARD, c->span, PROT_READ | PROT_WRITE))) {
            if (c->map != MAP_FAILED) munmap(c->map, c->map_size);
            s = host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: kernel '%s', argument %d: "
                           "no room for a guarded copy of %zu bytes (OX_KERNEL_CHECKS)",
                           run->kernel->name, i, c->size);
            break;
        }
        n++;
    }
    if (s == OX_OK) {
        bool whole = true; /* every size a whole number of pages: one run sees both ends */
        for (int j = 0; j < n; j++) whole &= g[j].span == g[j].size;
        pthread_once(&checks_once, checks_install);
        pthread_mutex_lock(&checks_lock);
        run->guarded = g, run->n_guarded = n;
        atomic_store(&checked_run, run);
        for (int pass = 0; pass < (whole ? 1 : 2) && !atomic_load(&run->failed); pass++) {
            for (int j = 0; j < n; j++) {
                g[j].data = g[j].map + CHECK_GUARD + (pass ? g[j].span - g[j].size : 0);
                if (g[j].size) memcpy(g[j].data, g[j].orig, g[j].size);
            }
            for (int i = 0; i < n_args; i++)
                if (args[i].kind == OX__ARG_BUFFER) run->slots[i] = g[on[i]].data + args[i].offset;
            run_tasks(pool, run);
        }
        atomic_store(&checked_run, NULL);
        run->guarded = NULL, run->n_guarded = 0;
        pthread_mutex_unlock(&checks_lock);
        if (!atomic_load(&run->failed))
            for (int j = 0; j < n; j++)
                if (g[j].size) memcpy(g[j].orig, g[j].data, g[j].size);
    }
    for (int j = 0; j < n; j++) munmap(g[j].map, g[j].map_size);
    return s;
}

/* Fibers (and work-item records) for n work-items; existing ones are made
 * afresh if the arrays move, since saved contexts do not survive a move. */
static bool grow_fibers(const ox__host *host, thread_state *ts, int n)
{
    if (n <= ts->n_fibers) return true;
    if (n > ts->cap) {
        fiber *f = host->alloc(host->core, (size_t)n * sizeof *f);
        struct ox__item *items = host->alloc(host->core, (size_t)n * sizeof *items);
        if (!f || !items) {
            host->free(host->core, f, (size_t)n * sizeof *f);
            host->free(host->core, items, (size_t)n * sizeof *items);
            return false;
        }
        if (ts->n_fibers) memcpy(f, ts->fibers, (size_t)ts->n_fibers * sizeof *f);
        host->free(host->core, ts->fibers, (size_t)ts->cap * sizeof *f);
        host->free(host->core, ts->items, (size_t)ts->cap * sizeof *items);
        ts->fibers = f, ts->items = items, ts->cap = n;
        for (int i = 0; i < ts->n_fibers; i++) f[i].started = f[i].made = false;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = ts->n_fibers; i < n; i++) {
        void *stack = mmap(NULL, FIBER_STACK + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) return false;
        mprotect(stack, page, PROT_NONE); /* a guard page below the stack */
        ts->fibers[i].stack = stack;
        ts->fibers[i].stack_base = (unsigned char *)stack + page;
        ts->fibers[i].started = ts->fibers[i].made = false;
        ts->n_fibers = i + 1;
    }
    return true;
}

/* Forget the fibers of a group that did not end normally: they stopped in
 * the middle of a work-item. */
static void discard_fibers(thread_state *ts, int n)
{
    for (int i = 0; i < n; i++)
        if (ts->fibers[i].state != FIBER_DONE) ts->fibers[i].started = ts->fibers[i].made = false;
}

/* The context new fibers start from: this thread's signal mask and
 * floating-point state (a fiber first entered with swapcontext takes
 * them). */
__attribute__((noinline)) static bool take_template(thread_state *ts)
{
    return getcontext(&ts->context_template) == 0;
}

/* One group's work-items as fibers, each run up to a barrier in turn. */
static void run_fibers(thread_state *ts, struct ox__group *grp, int n)
{
    launch *run = ts->run;
    ts->in_fibers = true;
    ts->aborted = false;
    fiber_owner = ts;
    /* Fibers stay with the thread that made them: pool slot 0 is whichever
     * thread launches, and a fiber resumed on another thread would carry
     * the first one's thread-local addresses (and AddressSanitizer's
     * per-thread state) in its saved frames. */
    if (!ts->has_owner || !pthread_equal(ts->owner, pthread_self())) {
        for (int i = 0; i < ts->n_fibers; i++) ts->fibers[i].made = ts->fibers[i].started = false;
        ts->owner = pthread_self();
        ts->has_owner = take_template(ts);
        if (!ts->has_owner) {
            launch_fail(run, "kernel '%s': getcontext failed", run->kernel->name);
            return;
        }
    }
    int i = 0;
    for (int z = 0; z < grp->lsize[2]; z++)
        for (int y = 0; y < grp->lsize[1]; y++)
            for (int x = 0; x < grp->lsize[0]; x++, i++) {
                ts->items[i] = (struct ox__item){.lid = {x, y, z},
                                                 .local_cursor = grp->local_start, .grp = grp};
                fiber *f = &ts->fibers[i];
                f->state = FIBER_READY;
                if (f->made) continue;
                f->uc = ts->context_template;
                f->uc.uc_stack.ss_sp = f->stack_base;
                f->uc.uc_stack.ss_size = FIBER_STACK;
                f->uc.uc_link = NULL; /* fiber_main never returns */
                makecontext(&f->uc, fiber_main, 0);
                f->made = true;
                f->started = false;
            }
    int live = n;
    while (live > 0) {
        int waiting = 0, returned = 0, line = -1, other = -1, first_returned = -1;
        for (i = 0; i < n; i++) {
            fiber *f = &ts->fibers[i];
            if (f->state == FIBER_DONE) continue;
            ts->current = i;
            resume(ts, f);
            if (ts->aborted) {
                discard_fibers(ts, n);
                return;
            }
            if (f->state == FIBER_DONE) {
                live--, returned++;
                if (first_returned < 0) first_returned = i;
            } else {
                waiting++;
                if (line < 0) line = f->line;
                else if (f->line != line && other < 0) other = f->line;
            }
        }
        const struct ox__item *w = &ts->items[first_returned < 0 ? 0 : first_returned];
        if (waiting && returned) {
            launch_fail(run, "kernel '%s', group (%d, %d, %d): work-item (%d, %d, %d) returned "
                        "while others wait at the barrier on line %d: every work-item of a group "
                        "must reach every barrier", run->kernel->name, grp->gid[0], grp->gid[1],
                        grp->gid[2], w->lid[0], w->lid[1], w->lid[2], line);
            discard_fibers(ts, n);
            return;
        }
        if (other >= 0) {
            launch_fail(run, "kernel '%s', group (%d, %d, %d): work-items wait at different "
                        "barriers (lines %d and %d): every work-item of a group must reach the "
                        "same barriers", run->kernel->name, grp->gid[0], grp->gid[1], grp->gid[2],
                        line < other ? line : other, line < other ? other : line);
            discard_fibers(ts, n);
            return;
        }
        for (i = 0; i < n; i++)
            if (ts->fibers[i].state == FIBER_BARRIER) ts->fibers[i].state = FIBER_READY;
    }
}

/* The group ids of group number g (x fastest). */
static void group_id(const launch *run, size_t g, int gid[3])
{
    gid[0] = (int)(g % run->groups[0]);
    gid[1] = (int)(g / run->groups[0] % run->groups[1]);
    gid[2] = (int)(g / run->groups[0] / run->groups[1]);
}

/* Groups [first, last) with their work-items in loops; a failure comes back
 * through escape. */
__attribute__((noinline)) static void run_loops(thread_state *ts, const launch *run,
                                                void *const *args, struct ox__group *grp,
                                                size_t first, size_t last)
{
    struct ox__item w = {.grp = grp};
    ts->loop_item = &w;
    if (setjmp(ts->escape) != 0) return;
    for (size_t g = first; g < last; g++) {
        group_id(run, g, grp->gid);
        run->kernel->group(args, &w);
    }
}

/* A barrier of a group of one work-item: nothing to wait for. */
static void lone_barrier(struct ox__item *w, int line)
{
    (void)w, (void)line;
}

/* One task: a run of consecutive groups, so that each thread streams
 * through its own part of the data. */
static void run_groups(void *arg, size_t task, int thread)
{
    launch *run = arg;
    if (atomic_load_explicit(&run->failed, memory_order_relaxed)) return;
    size_t first = task * run->chunk, last = first + run->chunk;
    if (last > run->total) last = run->total;
    thread_state *ts = &run->threads[thread];
    int n = run->local[0] * run->local[1] * run->local[2];
    struct ox__group grp = {
        .lsize = {run->local[0], run->local[1], run->local[2]},
        .ngroups = {(int)run->groups[0], (int)run->groups[1], (int)run->groups[2]},
        .local_mem = ts->arena,
        .local_cap = OX__CPU_LOCAL_BYTES,
        .local_start = run->local_start,
        .barrier = n == 1 ? lone_barrier : on_barrier,
        .fail = on_fail,
        .runtime = ts,
    };
    void *args[MAX_ARGS], *locals[MAX_ARGS];
    for (int i = 0; i < run->n_args; i++) {
        args[i] = run->args[i];
        if (run->is_local[i]) {
            locals[i] = ts->arena + (uintptr_t)run->slots[i];
            args[i] = &locals[i];
        }
    }
    ts->run = run;
    ts->args = args;
    running_ts = ts;
    if (!run->barriers || n == 1) {
        ts->in_fibers = false;
        run_loops(ts, run, args, &grp, first, last);
        return;
    }
    ts->entry = run->kernel->item;
    for (size_t g = first; g < last; g++) {
        if (atomic_load_explicit(&run->failed, memory_order_relaxed)) return;
        group_id(run, g, grp.gid);
        run_fibers(ts, &grp, n);
    }
}

static void free_thread(const ox__host *host, thread_state *ts)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < ts->n_fibers; i++) munmap(ts->fibers[i].stack, FIBER_STACK + page);
    host->free(host->core, ts->fibers, (size_t)ts->cap * sizeof *ts->fibers);
    host->free(host->core, ts->items, (size_t)ts->cap * sizeof *ts->items);
    host->free(host->core, ts->arena, OX__CPU_LOCAL_BYTES);
    memset(ts, 0, sizeof *ts);
}

void ox__cpu_kernels_free(struct cpu_kernels *state)
{
    if (!state) return;
    const ox__host *host = state->host;
    for (int i = 0; i < state->n_threads; i++) free_thread(host, &state->threads[i]);
    host->free(host->core, state->threads, (size_t)state->n_threads * sizeof *state->threads);
    pthread_mutex_destroy(&state->lock);
    host->free(host->core, state, sizeof *state);
}

static ox_status launch_locked(cpu_kernel *k, struct cpu_kernels *st, ox__pool *pool,
                               const size_t groups[3], const size_t local[3], int n_args,
                               const ox__kernel_arg *args);

ox_status ox__cpu_kernel_launch(void *queue, void *kernel, const size_t groups[3],
                                const size_t local[3], int n_args, const ox__kernel_arg *args,
                                void **event)
{
    cpu_kernel *k = kernel;
    const ox__host *host = k->program->host;
    ox__pool *pool = ox__cpu_device_pool(queue);
    struct cpu_kernels **slot = ox__cpu_device_kernels(queue);
    int threads = ox__pool_size(pool);
    if (event) *event = NULL;
    if (n_args > MAX_ARGS)
        return host->fail(host->core, OX_ERR_INVALID, "cpu: kernel '%s': more than %d arguments",
                          k->name, MAX_ARGS);
    size_t total = 1;
    for (int d = 0; d < 3; d++) {
        if (local[d] == 0 || local[d] > 1024 || groups[d] > INT32_MAX ||
            (groups[d] && total > SIZE_MAX / groups[d]))
            return host->fail(host->core, OX_ERR_INVALID, "cpu: kernel '%s': %zu groups of %zu "
                              "work-items in dimension %d is not a valid range", k->name,
                              groups[d], local[d], d);
        total *= groups[d];
    }
    pthread_mutex_lock(&create_lock);
    if (!*slot) {
        struct cpu_kernels *st = host->alloc(host->core, sizeof *st);
        thread_state *ts = host->alloc(host->core, (size_t)threads * sizeof *ts);
        if (!st || !ts) {
            host->free(host->core, st, sizeof *st);
            host->free(host->core, ts, (size_t)threads * sizeof *ts);
            pthread_mutex_unlock(&create_lock);
            return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
        }
        memset(st, 0, sizeof *st);
        memset(ts, 0, (size_t)threads * sizeof *ts);
        st->host = host;
        st->threads = ts;
        pthread_mutex_init(&st->lock, NULL);
        st->n_threads = threads;
        *slot = st;
    }
    struct cpu_kernels *st = *slot;
    pthread_mutex_unlock(&create_lock);

    pthread_mutex_lock(&st->lock); /* launches from several threads: one at a time */
    ox_status s = launch_locked(k, st, pool, groups, local, n_args, args);
    pthread_mutex_unlock(&st->lock);
    if (s == OX_OK && event) *event = ox__cpu_completed_event();
    return s;
}

static ox_status launch_locked(cpu_kernel *k, struct cpu_kernels *st, ox__pool *pool,
                               const size_t groups[3], const size_t local[3], int n_args,
                               const ox__kernel_arg *args)
{
    const ox__host *host = k->program->host;
    int threads = st->n_threads;
    size_t total = groups[0] * groups[1] * groups[2];
    launch *run = host->alloc(host->core, sizeof *run);
    if (!run) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    memset(run, 0, sizeof *run);
    run->kernel = k;
    run->threads = st->threads;
    run->barriers = k->program->barriers;
    for (int d = 0; d < 3; d++) run->groups[d] = groups[d], run->local[d] = (int)local[d];
    run->n_args = n_args;
    unsigned long local_bytes = 0;
    for (int i = 0; i < n_args; i++) {
        const ox__kernel_arg *a = &args[i];
        if (a->kind == OX__ARG_BUFFER) {
            run->slots[i] = ox__cpu_buffer_data(a->buffer) + a->offset;
            run->args[i] = &run->slots[i];
        } else if (a->kind == OX__ARG_SCALAR) {
            run->args[i] = (void *)a->value;
        } else { /* local memory: 16-byte aligned pieces of the arena */
            local_bytes = (local_bytes + 15) & ~15ul;
            run->slots[i] = (void *)(uintptr_t)local_bytes;
            run->is_local[i] = true;
            if (a->size > OX__CPU_LOCAL_BYTES - local_bytes) {
                host->free(host->core, run, sizeof *run);
                return host->fail(host->core, OX_ERR_INVALID, "cpu: kernel '%s', argument %d: "
                                  "%zu bytes of local memory exceed the %lu the CPU gives a "
                                  "work-group (%lu taken by earlier arguments)", k->name, i,
                                  a->size, (unsigned long)OX__CPU_LOCAL_BYTES, local_bytes);
            }
            local_bytes += a->size;
        }
    }
    run->local_start = local_bytes;
    int n = (int)(local[0] * local[1] * local[2]);
    for (int t = 0; t < threads; t++) {
        thread_state *ts = &st->threads[t];
        if (!ts->arena && !(ts->arena = host->alloc(host->core, OX__CPU_LOCAL_BYTES))) goto oom;
        if (run->barriers && n > 1 && !grow_fibers(host, ts, n)) goto oom;
    }
    /* consecutive groups per task: about 16 tasks per thread, for balance */
    run->total = total;
    run->chunk = total / ((size_t)threads * 16);
    if (run->chunk == 0) run->chunk = 1;
    run->sig = ox__launching_sig();
    ox_status s = OX_OK;
    if (checks_enabled(host)) s = run_checked(host, pool, run, n_args, args);
    else run_tasks(pool, run);
    if (s == OX_OK && atomic_load(&run->failed))
        s = host->fail(host->core, OX_ERR_INVALID, "cpu: %s", run->error);
    host->free(host->core, run, sizeof *run);
    return s;

oom:
    host->free(host->core, run, sizeof *run);
    return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of memory for the work-groups "
                      "of kernel '%s' (%d fibers per thread)", k->name, n);
}
