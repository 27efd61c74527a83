/* OpenXPU portable kernel dialect: prelude for C11, the CPU path of user
 * kernels. The CPU backend compiles a user program with the system's C
 * compiler into a shared object (src/backends/cpu/cpu_kernels.c) and runs
 * its work-groups on the thread pool. The same names are defined by
 * prelude_opencl.h, prelude_cuda.h and prelude_hip.h; docs/KERNELS.md lists
 * them and the rules of the dialect.
 *
 * How a kernel runs here: OpenXPU reads each kernel's parameter list and
 * appends two entry points per kernel, ox__group_NAME (every work-item of one
 * group in a loop, for kernels without barriers) and ox__item_NAME (one
 * work-item, run as a fiber when the program has barriers: BARRIER() hands
 * control to the next work-item of the group until all have reached it).
 * The work-item being run is ox__wi, one per thread.
 *
 * The first part, the ABI between the library and the compiled object, is
 * also compiled into the library (with OX__C_ABI_ONLY defined). */
#ifndef OX__C_ABI
#define OX__C_ABI 1

#define OX__C_ABI_VERSION 1

struct ox__group;

/* One work-item. */
struct ox__item {
    int lid[3];
    unsigned long local_cursor; /* bytes of the group's local memory claimed by LOCAL_ARRAY */
    struct ox__group *grp;
};

/* One work-group being run, shared by its work-items. */
struct ox__group {
    int gid[3];
    int lsize[3];
    int ngroups[3];
    unsigned char *local_mem;   /* as aligned as malloc's memory */
    unsigned long local_cap;    /* bytes */
    unsigned long local_start;  /* after the LOCAL parameters */
    /* wait at a barrier (line: where, in the user's source) */
    void (*barrier)(struct ox__item *w, int line);
    /* stop the launch with an error; never returns */
    void (*fail)(struct ox__item *w, const char *what, unsigned long value);
    void *runtime;
};

#endif /* OX__C_ABI */

#ifndef OX__C_ABI_ONLY
#define OX_KERNEL_C 1

#include <math.h>
#include <stddef.h>
#include <string.h>

#define OX__ENTRY __attribute__((visibility("default")))
/* The work-item being run. A kernel receives it as a hidden first
 * parameter of the same name, which hides this thread-local copy: the
 * kernel's own geometry costs no thread-local access; helper functions
 * (FN) read the copy, set per group and after every barrier. */
static __thread struct ox__item *ox__wi __attribute__((unused));
static inline void ox__set_item(struct ox__item *w)
{
    ox__wi = w;
}

/* kernels, helpers, memory spaces */
#define KERNEL void
#define KERNEL_WG(x, y, z) void
#define OX__KERNEL_FN static inline void
#define FN static inline
#define GLOBAL
#define LOCAL
#define CONSTANT const
#define RESTRICT restrict
#if defined(__clang__)
#define OX_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define OX_UNROLL _Pragma("GCC unroll 32")
#else
#define OX_UNROLL
#endif

/* integer types */
typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;
typedef long long i64;
typedef unsigned long long u64;
typedef signed char i8;

/* local memory: all work-items of a group get the same address for the
 * same LOCAL_ARRAY, because each claims arrays in the same order */
static inline void *ox__local_array(struct ox__item *w, unsigned long bytes,
                                    unsigned long align)
{
    unsigned long at = (w->local_cursor + align - 1) & ~(align - 1);
    if (at + bytes > w->grp->local_cap) w->grp->fail(w, "local memory (bytes)", at + bytes);
    w->local_cursor = at + bytes;
    return w->grp->local_mem + at;
}
#define LOCAL_ARRAY(type, name, n) \
    type *name = (type *)ox__local_array(ox__wi, sizeof(type) * (unsigned long)(n), _Alignof(type))

/* barriers: the work-item pointer lives on the fiber's own stack across the
 * switch; the thread-local copy, which other work-items of the group reset
 * meanwhile, is set back */
#define BARRIER()                                   \
    do {                                            \
        struct ox__item *ox__self = ox__wi;         \
        ox__self->grp->barrier(ox__self, __LINE__); \
        ox__set_item(ox__self);                     \
    } while (0)
#define BARRIER_GLOBAL() BARRIER()

/* a buffer argument is two parameters: a pointer and a byte offset */
#define ARG_BUF(type, name) GLOBAL type *name##_base, u64 name##_off
#define BUF(type, name) GLOBAL type *name = (GLOBAL type *)((GLOBAL uchar *)name##_base + name##_off)

/* work-item geometry */
#define ox_local_id(d) (ox__wi->lid[d])
#define ox_group_id(d) (ox__wi->grp->gid[d])
#define ox_local_size(d) (ox__wi->grp->lsize[d])
#define ox_num_groups(d) (ox__wi->grp->ngroups[d])
#define ox_global_id(d) ((i64)ox_group_id(d) * (i64)ox_local_size(d) + (i64)ox_local_id(d))

/* every work-item of the group at (x, y, z) in turn: the loop of
 * ox__group_NAME */
#define OX__FOR_ITEMS(w)                                                                 \
    for (int ox__z = 0, ox__nz = (w)->grp->lsize[2]; ox__z < ox__nz; ox__z++)            \
        for (int ox__y = 0, ox__ny = (w)->grp->lsize[1]; ox__y < ox__ny; ox__y++)        \
            for (int ox__x = ((w)->lid[1] = ox__y, (w)->lid[2] = ox__z, 0),              \
                     ox__nx = (w)->grp->lsize[0];                                        \
                 ox__x < ox__nx; ox__x++)                                                \
                if (((w)->lid[0] = ox__x, (w)->local_cursor = (w)->grp->local_start, 1))

/* float math: single precision only */
#define ox_exp(x) expf(x)
#define ox_log(x) logf(x)
#define ox_log1p(x) log1pf(x)
#define ox_sqrt(x) sqrtf(x)
#define ox_rsqrt(x) (1.0f / sqrtf(x))
#define ox_tanh(x) tanhf(x)
#define ox_erf(x) erff(x)
#define ox_fabs(x) fabsf(x)
#define ox_fmax(a, b) fmaxf(a, b)
#define ox_fmin(a, b) fminf(a, b)
#define ox_fma(a, b, c) fmaf(a, b, c)
#define ox_pow(a, b) powf(a, b)
#define ox_sin(x) sinf(x)
#define ox_cos(x) cosf(x)
#define ox_floor(x) floorf(x)
#define ox_rint(x) rintf(x) /* to nearest, ties to even */
#define ox_isinf(x) isinf(x)
#define ox_isnan(x) isnan(x)
static inline int ox__imin(int a, int b) { return a < b ? a : b; }
static inline int ox__imax(int a, int b) { return a > b ? a : b; }
#define ox_imin(a, b) ox__imin(a, b)
#define ox_imax(a, b) ox__imax(a, b)
#define OX_INFINITY INFINITY
#define OX_FLT_MAX 3.402823466e+38f

/* bit casts */
static inline float ox_as_float(uint u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint ox_as_uint(float f)
{
    uint u;
    memcpy(&u, &f, 4);
    return u;
}

/* 16-bit storage types: loads and stores only, arithmetic in float */
typedef ushort ox_half;
typedef ushort ox_bf16;
static inline float ox_half_to_float(ushort h)
{
    uint sign = (uint)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return ox_as_float(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp == 0) { /* zero, subnormal: man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return ox_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}
static inline ushort ox__float_to_half(float f) /* to nearest, ties to even */
{
    uint u = ox_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (ushort)(sign | 0x7e00u);          /* NaN */
    if (a >= 0x477ff000u) return (ushort)(sign | 0x7c00u);         /* overflow: inf */
    if (a < 0x38800000u) { /* subnormal or zero: round a * 2^24 to an integer */
        float m = ox_as_float(a) * 16777216.0f;
        return (ushort)(sign | (uint)rintf(m));
    }
    uint r = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;
    return (ushort)(sign | (r >> 13));
}
#define ox_load_half(p, i) ox_half_to_float((p)[i])
#define ox_store_half(p, i, v) ((p)[i] = ox__float_to_half(v))

/* packed 8-bit dot product: c + the sum of the four products of the signed
 * bytes of a and b */
#define OX_HAS_DOT4 0
static inline int ox_dot4_i8(uint a, uint b, int c)
{
    return c + (int)(i8)a * (int)(i8)b + (int)(i8)(a >> 8) * (int)(i8)(b >> 8) +
           (int)(i8)(a >> 16) * (int)(i8)(b >> 16) + (int)(i8)(a >> 24) * (int)(i8)(b >> 24);
}

/* atomics on global memory */
#define ox_atomic_add_int(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
static inline void ox_atomic_add_float(volatile float *p, float v)
{
    volatile uint *u = (volatile uint *)p;
    uint old = __atomic_load_n(u, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(u, &old, ox_as_uint(ox_as_float(old) + v), 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}
#endif /* OX__C_ABI_ONLY */
