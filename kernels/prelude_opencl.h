/* OpenXPU portable kernel dialect: prelude for OpenCL C 1.2.
 * Prepended to every kernel source built for an OpenCL device. The same
 * names are defined by prelude_cuda.h and prelude_hip.h; docs/KERNELS.md
 * lists them and the rules of the dialect. */
#define OX_KERNEL_OPENCL 1

/* kernels, helpers, memory spaces */
#define KERNEL __kernel void
#define KERNEL_WG(x, y, z) __kernel __attribute__((reqd_work_group_size(x, y, z))) void
#define FN static inline
#define GLOBAL __global
#define LOCAL __local
#define LOCAL_ARRAY(type, name, n) __local type name[n]
#define CONSTANT __constant
#define RESTRICT restrict
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
/* unroll the loop that follows completely (its trip count is a constant) */
#define OX_UNROLL _Pragma("unroll")
#define BARRIER_GLOBAL() barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)

/* integer types */
typedef long i64;
typedef ulong u64;
typedef char i8; /* signed, as OpenCL defines char */

/* Packed 8-bit dot product: c + the sum of the four products of the signed
 * bytes of a and b. OX_HAS_DOT4 is 1 where the hardware has an instruction
 * for it (kernels may pick a packed layout then). */
#ifdef cl_khr_integer_dot_product
#pragma OPENCL EXTENSION cl_khr_integer_dot_product : enable
#define OX_HAS_DOT4 1
#define ox_dot4_i8(a, b, c) ((c) + dot(as_char4(a), as_char4(b)))
#else
#define OX_HAS_DOT4 0
FN int ox_dot4_i8(uint a, uint b, int c)
{
    return c + (int)(char)a * (int)(char)b + (int)(char)(a >> 8) * (int)(char)(b >> 8) +
           (int)(char)(a >> 16) * (int)(char)(b >> 16) + (int)(char)(a >> 24) * (int)(char)(b >> 24);
}
#endif

/* a buffer argument is two parameters: the buffer and a byte offset */
#define ARG_BUF(type, name) GLOBAL type *name##_base, u64 name##_off
#define BUF(type, name) GLOBAL type *name = (GLOBAL type *)((GLOBAL uchar *)name##_base + name##_off)

/* work-item geometry (no global offsets, ever) */
#define ox_local_id(d) ((int)get_local_id(d))
#define ox_group_id(d) ((int)get_group_id(d))
#define ox_local_size(d) ((int)get_local_size(d))
#define ox_num_groups(d) ((int)get_num_groups(d))
#define ox_global_id(d) ((i64)get_group_id(d) * (i64)get_local_size(d) + (i64)get_local_id(d))

/* float math: single precision only */
#define ox_exp(x) exp(x)
#define ox_log(x) log(x)
#define ox_log1p(x) log1p(x)
#define ox_sqrt(x) sqrt(x)
#define ox_rsqrt(x) rsqrt(x)
#define ox_tanh(x) tanh(x)
#define ox_erf(x) erf(x)
#define ox_fabs(x) fabs(x)
#define ox_fmax(a, b) fmax(a, b)
#define ox_fmin(a, b) fmin(a, b)
#define ox_fma(a, b, c) fma(a, b, c)
#define ox_pow(a, b) pow(a, b)
#define ox_sin(x) sin(x)
#define ox_cos(x) cos(x)
#define ox_floor(x) floor(x)
#define ox_rint(x) rint(x) /* to nearest, ties to even */
#define ox_isinf(x) isinf(x)
#define ox_isnan(x) isnan(x)
#define ox_imin(a, b) min(a, b)
#define ox_imax(a, b) max(a, b)
#define OX_INFINITY INFINITY
#define OX_FLT_MAX 3.402823466e+38f

/* bit casts */
#define ox_as_float(u) as_float(u)
#define ox_as_uint(f) as_uint(f)

/* 16-bit storage types: loads and stores only, arithmetic in float */
typedef ushort ox_bf16;
#if OX_SOFT_HALF
/* Conversions in integer arithmetic, for OpenCL runtimes whose vload_half /
 * vstore_half are calls that keep a kernel from being vectorised (CPU
 * runtimes); exact, round to nearest even, as vstore_half_rte. */
typedef ushort ox_half;
FN float ox_half_to_float(ushort bits)
{
    uint h = bits, sign = (h & 0x8000u) << 16, em = h & 0x7fffu;
    float r = as_float((em << 13) + 0x38000000u);
    r = em >= 0x7c00u ? as_float((em << 13) | 0x7f800000u) : r;
    r = em < 0x0400u ? (float)em * 5.9604644775390625e-08f : r;
    return as_float(as_uint(r) | sign);
}
FN ushort ox__float_to_half(float f)
{
    uint u = as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    uint normal = (a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13;
    /* below 2^-14: adding 0.5 rounds to a multiple of 2^-24 (to nearest even)
     * and leaves the half's bits in the low mantissa bits */
    uint sub = as_uint(as_float(a) + 0.5f) - 0x3f000000u;
    uint r = a < 0x38800000u ? sub : normal;
    r = a >= 0x477ff000u ? 0x7c00u : r;
    r = a > 0x7f800000u ? 0x7e00u : r;
    return (ushort)(sign | r);
}
#define ox_load_half(p, i) ox_half_to_float((p)[i])
#define ox_store_half(p, i, v) ((p)[i] = ox__float_to_half(v))
#if defined(__F16C__)
/* One value on its own (a block's scale): x86's conversion instruction,
 * exact as the integer form above and a tenth of its length. Loops keep the
 * integer form, which the compiler vectorises across elements. */
FN float ox_half_to_float1(ushort bits)
{
    float4 r = __builtin_ia32_vcvtph2ps((short8)((short)bits, 0, 0, 0, 0, 0, 0, 0));
    return r.s0;
}
#define OX_HALF_TO_FLOAT1 1
#endif
#else
typedef half ox_half;
#define ox_load_half(p, i) vload_half((i), (p))
#define ox_store_half(p, i, v) vstore_half_rte((v), (i), (p))
FN float ox_half_to_float(ushort bits)
{
    return vload_half(0, (const half *)&bits);
}
#endif

/* Eight halves at once, converted by the runtime's vector built-ins
 * (vload_half8 / vstore_half8_rte). PoCL converts these at full bandwidth
 * (56-59 GB/s for an F16 add here, against 3.5 one element a call and 18
 * in integers): OX_HALF8 says a dialect has them; kernels keep a
 * per-element path for the others (common.h sets it to 0). */
#define OX_HALF8 1
FN void ox_load_halves8(GLOBAL const ox_half *p, float out[8])
{
    float8 v = vload_half8(0, (GLOBAL const half *)p);
    out[0] = v.s0, out[1] = v.s1, out[2] = v.s2, out[3] = v.s3;
    out[4] = v.s4, out[5] = v.s5, out[6] = v.s6, out[7] = v.s7;
}
FN void ox_store_halves8(GLOBAL ox_half *p, const float in[8])
{
    vstore_half8_rte((float8)(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]), 0,
                     (GLOBAL half *)p);
}

/* half arithmetic in pairs (ox_half2), native where the device has
 * cl_khr_fp16; elsewhere common.h emulates it in float */
#ifdef cl_khr_fp16
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#define OX_HALF2_NATIVE 1
typedef half2 ox_half2;
#define ox_half2_set(x) ((half2)((half)(x)))
#define ox_half2_fma(a, b, c) fma((a), (b), (c))
#define ox_half2_sum(h) ((float)(h).x + (float)(h).y)
#endif

/* atomics on global memory */
#define ox_atomic_add_int(p, v) atomic_add((p), (v))
FN void ox_atomic_add_float(volatile GLOBAL float *p, float v)
{
    volatile GLOBAL uint *u = (volatile GLOBAL uint *)p;
    uint old = *u, assumed;
    do {
        assumed = old;
        old = atomic_cmpxchg(u, assumed, as_uint(as_float(assumed) + v));
    } while (old != assumed);
}
