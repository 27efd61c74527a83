/* Element types: names and sizes, exact F32 <-> F16 / BF16 conversion (round
 * to nearest even, subnormals, infinities and NaN included), and the row
 * conversions the CPU operators use, with F16C code chosen at run time. */
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "core/cpu_features.h"
#include "ops/cpu_ops.h"
#include "openxpu/openxpu.h"
#include "openxpu/tensor.h"

#if defined(__x86_64__) || defined(_M_X64)
#define OX_HAVE_F16C_ROWS 1
/* convert_avx2.c, compiled with -mf16c; call only when the CPU has F16C. */
void ox__row_f16_to_f32_f16c(const uint16_t *src, float *dst, int64_t n);
void ox__row_f32_to_f16_f16c(const float *src, uint16_t *dst, int64_t n);
#endif

/* ---- dtype names ------------------------------------------------------------- */

const char *ox_dtype_str(ox_dtype dtype)
{
    switch (dtype) {
#define OX__DTYPE_STR(name, value, text, size, block) \
    case OX_DTYPE_##name: return text;
        OX_DTYPE_LIST(OX__DTYPE_STR)
#undef OX__DTYPE_STR
    default: return "unknown";
    }
}

size_t ox_dtype_size(ox_dtype dtype)
{
    switch (dtype) {
#define OX__DTYPE_SIZE(name, value, text, size, block) \
    case OX_DTYPE_##name: return size;
        OX_DTYPE_LIST(OX__DTYPE_SIZE)
#undef OX__DTYPE_SIZE
    default: return 0;
    }
}

int64_t ox_dtype_block(ox_dtype dtype)
{
    switch (dtype) {
#define OX__DTYPE_BLOCK(name, value, text, size, block) \
    case OX_DTYPE_##name: return block;
        OX_DTYPE_LIST(OX__DTYPE_BLOCK)
#undef OX__DTYPE_BLOCK
    default: return 0;
    }
}

bool ox_dtype_is_quantized(ox_dtype dtype)
{
    return ox_dtype_block(dtype) > 1;
}

size_t ox_dtype_row_size(ox_dtype dtype, int64_t n)
{
    int64_t block = ox_dtype_block(dtype);
    if (block <= 0 || n < 0 || n % block) return 0;
    return (size_t)(n / block) * ox_dtype_size(dtype);
}

ox_status ox_dtype_from_str(const char *name, ox_dtype *dtype)
{
    static const struct {
        const char *text;
        ox_dtype dtype;
    } names[] = {
#define OX__DTYPE_NAME(name, value, text, size, block) {text, OX_DTYPE_##name},
        OX_DTYPE_LIST(OX__DTYPE_NAME)
#undef OX__DTYPE_NAME
    };
    if (!name || !dtype) return OX_ERR_INVALID;
    for (size_t i = 0; i < OX__ARRAY_SIZE(names); i++) {
        size_t n = strlen(names[i].text);
        if (strlen(name) == n && ox__strncasecmp(name, names[i].text, n) == 0) {
            *dtype = names[i].dtype;
            return OX_OK;
        }
    }
    return OX_ERR_NOT_FOUND;
}

/* ---- scalar conversions -------------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* NaN stays a quiet NaN with the top payload bits kept, as F16C does. */
uint16_t ox_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: infinity */
    if (abs >= 0x38800000u) {                                   /* normal: >= 2^-14 */
        uint32_t bits = abs - 0x38000000u;                      /* rebias 127 -> 15 */
        bits += 0xfffu + ((bits >> 13) & 1u);                   /* to nearest even */
        return (uint16_t)(sign | (bits >> 13));
    }
    if (abs <= 0x33000000u) return sign; /* <= 2^-25: the tie at 2^-25 goes to even 0 */
    /* Subnormal result: the value in units of 2^-24 is mant * 2^(exp - 126). */
    uint32_t exp = abs >> 23;
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp; /* 14..23 */
    uint32_t q = mant >> shift, rest = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

float ox_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f; /* exact: zero or subnormal */
        return sign ? -v : v;
    }
    if (exp == 31) /* infinity, or NaN made quiet as F16C does */
        return f32_from_bits(sign | 0x7f800000u | (mant ? 0x400000u | (mant << 13) : 0u));
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t ox_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float ox_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

/* ---- elements and rows ------------------------------------------------------------ */

float ox__load_f(ox_dtype dtype, const void *p)
{
    uint16_t h;
    float f;
    switch (dtype) {
    case OX_DTYPE_F16: memcpy(&h, p, sizeof h); return ox_f16_to_f32(h);
    case OX_DTYPE_BF16: memcpy(&h, p, sizeof h); return ox_bf16_to_f32(h);
    default: memcpy(&f, p, sizeof f); return f;
    }
}

void ox__store_f(ox_dtype dtype, void *p, float v)
{
    uint16_t h;
    switch (dtype) {
    case OX_DTYPE_F16: h = ox_f32_to_f16(v); memcpy(p, &h, sizeof h); break;
    case OX_DTYPE_BF16: h = ox_f32_to_bf16(v); memcpy(p, &h, sizeof h); break;
    default: memcpy(p, &v, sizeof v); break;
    }
}

#ifdef OX_HAVE_F16C_ROWS
/* Whether to use the F16C row code: 0 unknown yet, 1 no, 2 yes. */
static atomic_int f16c_state;

static int have_f16c(void)
{
    int state = atomic_load_explicit(&f16c_state, memory_order_relaxed);
    if (state == 0) {
        uint64_t f = ox__cpu_detect()->features;
        /* convert_avx2.c is built with -mavx2, so ask for AVX2 as well. */
        uint64_t need = OX_FEATURE_BIT(OX_FEATURE_F16C) | OX_FEATURE_BIT(OX_FEATURE_AVX2);
        state = (f & need) == need ? 2 : 1;
        atomic_store_explicit(&f16c_state, state, memory_order_relaxed);
    }
    return state == 2;
}
#endif

void ox__row_to_f32(ox_dtype dtype, const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    uint16_t h;
    if (n <= 0) return;
    if (dtype == OX_DTYPE_F32) {
        memmove(dst, src, (size_t)n * sizeof(float));
    } else if (dtype == OX_DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            memcpy(&h, s + 2 * i, sizeof h);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&dst[i], &u, sizeof u);
        }
    } else {
#ifdef OX_HAVE_F16C_ROWS
        if (have_f16c() && ((uintptr_t)src & 1u) == 0) {
            ox__row_f16_to_f32_f16c((const uint16_t *)src, dst, n);
            return;
        }
#endif
        for (int64_t i = 0; i < n; i++) {
            memcpy(&h, s + 2 * i, sizeof h);
            dst[i] = ox_f16_to_f32(h);
        }
    }
}

void ox__row_from_f32(ox_dtype dtype, const float *src, void *dst, int64_t n)
{
    unsigned char *d = dst;
    uint16_t h;
    if (n <= 0) return;
    if (dtype == OX_DTYPE_F32) {
        memmove(dst, src, (size_t)n * sizeof(float));
    } else if (dtype == OX_DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            h = ox_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, sizeof h);
        }
    } else {
#ifdef OX_HAVE_F16C_ROWS
        if (have_f16c() && ((uintptr_t)dst & 1u) == 0) {
            ox__row_f32_to_f16_f16c(src, (uint16_t *)dst, n);
            return;
        }
#endif
        for (int64_t i = 0; i < n; i++) {
            h = ox_f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, sizeof h);
        }
    }
}
