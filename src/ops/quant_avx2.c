/* The AVX2 quantized dot products (quant_x86.h), for CPUs with AVX2, FMA
 * and F16C. */
#define OX_QUANT_VNNI 0
#define OX_QUANT_X86(name) ox__##name##_avx2
#include "ops/quant_x86.h"
