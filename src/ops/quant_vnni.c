/* The AVX-512 VNNI quantized dot products (quant_x86.h: the AVX2 kernels
 * with vpdpbusd on 256-bit registers, AVX512VL), for CPUs with AVX512F,
 * AVX512BW, AVX512VL and AVX512VNNI besides AVX2, FMA and F16C. Their
 * results are the AVX2 kernels' bits. */
#define OX_QUANT_VNNI 1
#define OX_QUANT_X86(name) ox__##name##_vnni
#include "ops/quant_x86.h"
