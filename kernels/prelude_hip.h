/* OpenXPU portable kernel dialect: prelude for HIP through hiprtc (AMD GPUs,
 * Hygon DCUs). Like the CUDA prelude, with _Float16 for half conversions.
 * Untested on hardware until someone runs `ox check` on one. */
#define OX_KERNEL_HIP 1

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

/* Packed 8-bit dot product: c + the sum of the four products of the signed
 * bytes of a and b; one instruction on the GPUs that have it. */
#if defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__) || \
    defined(__gfx941__) || defined(__gfx942__) || defined(__gfx1030__) || defined(__gfx1100__)
#define OX_HAS_DOT4 1
#define ox_dot4_i8(a, b, c) __builtin_amdgcn_sdot4((int)(a), (int)(b), (c), false)
#else
#define OX_HAS_DOT4 0
FN int ox_dot4_i8(uint a, uint b, int c)
{
    return c + (int)(i8)a * (int)(i8)b + (int)(i8)(a >> 8) * (int)(i8)(b >> 8) +
           (int)(i8)(a >> 16) * (int)(i8)(b >> 16) + (int)(i8)(a >> 24) * (int)(i8)(b >> 24);
}
#endif

#define ARG_BUF(type, name) type *name##_base, u64 name##_off
#define BUF(type, name) type *name = (type *)((uchar *)name##_base + name##_off)

FN int ox__dim(dim3 v, int d) { return d == 0 ? (int)v.x : d == 1 ? (int)v.y : (int)v.z; }
#define ox_local_id(d) ox__dim(dim3(threadIdx.x, threadIdx.y, threadIdx.z), d)
#define ox_group_id(d) ox__dim(dim3(blockIdx.x, blockIdx.y, blockIdx.z), d)
#define ox_local_size(d) ox__dim(dim3(blockDim.x, blockDim.y, blockDim.z), d)
#define ox_num_groups(d) ox__dim(dim3(gridDim.x, gridDim.y, gridDim.z), d)
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
    unsigned short bits = p[i];
    _Float16 h;
    __builtin_memcpy(&h, &bits, 2);
    return (float)h;
}
FN float ox_half_to_float(unsigned short bits)
{
    _Float16 h;
    __builtin_memcpy(&h, &bits, 2);
    return (float)h;
}
FN void ox_store_half(ox_half *p, i64 i, float v)
{
    _Float16 h = (_Float16)v;
    unsigned short bits;
    __builtin_memcpy(&bits, &h, 2);
    p[i] = bits;
}

/* half arithmetic in pairs: a vector of two _Float16, whose fused
 * multiply-add is one packed instruction (v_pk_fma_f16) */
#define OX_HALF2_NATIVE 1
typedef _Float16 ox_half2 __attribute__((ext_vector_type(2)));
FN ox_half2 ox_half2_set(float x)
{
    _Float16 h = (_Float16)x;
    ox_half2 r = {h, h};
    return r;
}
FN ox_half2 ox_half2_fma(ox_half2 a, ox_half2 b, ox_half2 c)
{
#pragma clang fp contract(fast)
    return a * b + c;
}
FN float ox_half2_sum(ox_half2 h)
{
    return (float)h.x + (float)h.y;
}

#define ox_atomic_add_int(p, v) atomicAdd((p), (v))
FN void ox_atomic_add_float(float *p, float v) { atomicAdd(p, v); }
