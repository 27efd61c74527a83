/* OpenXPU portable kernel dialect: prelude for CUDA C++ through NVRTC.
 * Prepended to every kernel source built for a CUDA device. The same names
 * are defined by prelude_opencl.h and prelude_hip.h; docs/KERNELS.md lists
 * them and the rules of the dialect. */
#define OX_KERNEL_CUDA 1

#define KERNEL extern "C" __global__ void
#define KERNEL_WG(x, y, z) extern "C" __global__ void __launch_bounds__((x) * (y) * (z))
#define FN __device__ __forceinline__
#define GLOBAL
#define LOCAL
#define LOCAL_ARRAY(type, name, n) __shared__ type name[n]
/* user kernels: the kernel itself becomes a device function called by a
 * generated entry point, which places LOCAL parameters in dynamic shared
 * memory (src/core/kernel_sig.c) */
#define OX__KERNEL_FN static __device__ __forceinline__ void
#define OX__DYNAMIC_LOCAL(name) extern __shared__ __align__(16) unsigned char name[]
#define CONSTANT __constant__
#define RESTRICT __restrict__
#define BARRIER() __syncthreads()
#define OX_UNROLL _Pragma("unroll")
#define BARRIER_GLOBAL() (__threadfence(), __syncthreads())

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef long long i64;
typedef unsigned long long u64;
typedef signed char i8;

/* Packed 8-bit dot product (dp4a, sm_61 and later): c + the sum of the four
 * products of the signed bytes of a and b. */
#define OX_HAS_DOT4 1
#define ox_dot4_i8(a, b, c) __dp4a((int)(a), (int)(b), (c))

#define ARG_BUF(type, name) type *name##_base, u64 name##_off
#define BUF(type, name) type *name = (type *)((uchar *)name##_base + name##_off)

FN int ox__dim(uint3 v, int d) { return d == 0 ? (int)v.x : d == 1 ? (int)v.y : (int)v.z; }
#define ox_local_id(d) ox__dim(threadIdx, d)
#define ox_group_id(d) ox__dim(blockIdx, d)
#define ox_local_size(d) ox__dim(make_uint3(blockDim.x, blockDim.y, blockDim.z), d)
#define ox_num_groups(d) ox__dim(make_uint3(gridDim.x, gridDim.y, gridDim.z), d)
#define ox_global_id(d) ((i64)ox_group_id(d) * (i64)ox_local_size(d) + (i64)ox_local_id(d))

#define ox_exp(x) expf(x)
#define ox_log(x) logf(x)
#define ox_log1p(x) log1pf(x)
#define ox_sqrt(x) sqrtf(x)
#define ox_rsqrt(x) rsqrtf(x)
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
#define ox_imin(a, b) min(a, b)
#define ox_imax(a, b) max(a, b)
#define OX_INFINITY __int_as_float(0x7f800000)
#define OX_FLT_MAX 3.402823466e+38f

#define ox_as_float(u) __uint_as_float(u)
#define ox_as_uint(f) __float_as_uint(f)

typedef unsigned short ox_half;
typedef unsigned short ox_bf16;
FN float ox_load_half(const ox_half *p, i64 i)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i]));
    return f;
}
FN float ox_half_to_float(unsigned short bits)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
    return f;
}
FN void ox_store_half(ox_half *p, i64 i, float v)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p[i] = h;
}

/* half arithmetic in pairs: two halves in 32 bits, the f16x2 instructions
 * (sm_53 and later, which every NVRTC target is) */
#define OX_HALF2_NATIVE 1
typedef unsigned int ox_half2;
FN ox_half2 ox_half2_set(float x)
{
    unsigned short h;
    ox_half2 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    asm("mov.b32 %0, {%1, %1};" : "=r"(r) : "h"(h));
    return r;
}
FN ox_half2 ox_half2_fma(ox_half2 a, ox_half2 b, ox_half2 c)
{
    ox_half2 d;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
FN float ox_half2_sum(ox_half2 h)
{
    unsigned short lo, hi;
    asm("mov.b32 {%0, %1}, %2;" : "=h"(lo), "=h"(hi) : "r"(h));
    return ox_half_to_float(lo) + ox_half_to_float(hi);
}

#define ox_atomic_add_int(p, v) atomicAdd((p), (v))
FN void ox_atomic_add_float(float *p, float v) { atomicAdd(p, v); }
