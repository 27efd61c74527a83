/* OpenXPU portable kernel dialect: helpers shared by every kernel, written
 * once in the dialect itself (after the API's prelude). */

#define OX_CAT_(a, b) a##b
#define OX_CAT(a, b) OX_CAT_(a, b)

/* ox_load_halves8 / ox_store_halves8: only where the prelude has them */
#ifndef OX_HALF8
#define OX_HALF8 0
#endif

/* dtype codes, as in openxpu/tensor.h */
#define OX_F32 0
#define OX_F16 1
#define OX_BF16 2
#define OX_I32 3

FN float ox_load_bf16(GLOBAL const ox_bf16 *p, i64 i)
{
    return ox_as_float(((uint)p[i]) << 16);
}

FN void ox_store_bf16(GLOBAL ox_bf16 *p, i64 i, float v)
{
    uint u = ox_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { /* NaN stays a (quiet) NaN */
        p[i] = (ox_bf16)((u >> 16) | 0x40u);
        return;
    }
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    p[i] = (ox_bf16)(u >> 16);
}

/* Storage type, load and store for a dtype code known at build time:
 *   ARG_BUF(const OX_STORAGE(DT_A), a) ... float x = OX_LOAD(DT_A, a, i); */
#define OX_STORAGE_0 float
#define OX_STORAGE_1 ox_half
#define OX_STORAGE_2 ox_bf16
#define OX_STORAGE_3 int
/* quantized types: raw bytes, read with ox_dequant (OX_QUANT) */
#define OX_STORAGE_4 uchar
#define OX_STORAGE_5 uchar
#define OX_STORAGE_6 uchar
#define OX_STORAGE_7 uchar
#define OX_STORAGE_8 uchar
#define OX_STORAGE_9 uchar
#define OX_STORAGE_10 uchar
#define OX_STORAGE_11 uchar
#define OX_STORAGE(dt) OX_CAT(OX_STORAGE_, dt)
#define OX_LOAD_0(p, i) ((p)[i])
#define OX_LOAD_1(p, i) ox_load_half((p), (i))
#define OX_LOAD_2(p, i) ox_load_bf16((p), (i))
#define OX_LOAD_3(p, i) ((float)(p)[i])
#define OX_LOAD(dt, p, i) OX_CAT(OX_LOAD_, dt)(p, i)
#define OX_STORE_0(p, i, v) ((p)[i] = (v))
#define OX_STORE_1(p, i, v) ox_store_half((p), (i), (v))
#define OX_STORE_2(p, i, v) ox_store_bf16((p), (i), (v))
#define OX_STORE_3(p, i, v) ((p)[i] = (int)(v))
#define OX_STORE(dt, p, i, v) OX_CAT(OX_STORE_, dt)(p, i, v)

/* A 4-d shape with strides in elements (in bytes for quantized types),
 * passed as scalar arguments:
 *   ARG_SHAPE(a) -> i64 a_ne0..a_ne3, i64 a_nb0..a_nb3 */
#define ARG_SHAPE(t) i64 t##_ne0, i64 t##_ne1, i64 t##_ne2, i64 t##_ne3, \
                     i64 t##_nb0, i64 t##_nb1, i64 t##_nb2, i64 t##_nb3
/* Element offset of (i0, i1, i2, i3) in tensor t. */
#define OX_AT(t, i0, i1, i2, i3) \
    ((i0) * t##_nb0 + (i1) * t##_nb1 + (i2) * t##_nb2 + (i3) * t##_nb3)

/* x rounded to the nearest half-precision value (ties to even), as float:
 * what storing x as a half and loading it back gives, without the store. */
FN float ox_round_to_half(float x)
{
    float ax = ox_fabs(x);
    if (ax < 6.103515625e-05f) /* below the smallest normal half: steps of 2^-24 */
        return ox_rint(x * 16777216.0f) * 5.9604644775390625e-08f;
    if (ax >= 65520.0f) return x > 0 ? OX_INFINITY : -OX_INFINITY;
    uint u = ox_as_uint(x);
    u = (u + 0xFFFu + ((u >> 13) & 1u)) & ~0x1FFFu;
    return ox_as_float(u);
}

/* Half arithmetic in pairs: ox_half2 holds two halves;
 *   ox_half2_set(x)        both halves x (float), rounded to nearest
 *   ox_half2_fma(a, b, c)  a * b + c per half
 *   ox_half2_sum(h)        the two halves added, as float
 * Preludes of devices that compute in half define them natively
 * (OX_HALF2_NATIVE 1: one rounding per operation). Elsewhere (the C path,
 * OpenCL without cl_khr_fp16) they are emulated here: float arithmetic
 * rounded to half after each operation, which may differ from the native
 * result in the last bit (double rounding), and is no faster than float. */
#ifndef OX_HALF2_NATIVE
#define OX_HALF2_NATIVE 0
typedef struct ox_half2 {
    float lo, hi;
} ox_half2;
FN ox_half2 ox_half2_set(float x)
{
    ox_half2 r;
    r.lo = r.hi = ox_round_to_half(x);
    return r;
}
FN ox_half2 ox_half2_fma(ox_half2 a, ox_half2 b, ox_half2 c)
{
    ox_half2 r;
    r.lo = ox_round_to_half(ox_fma(a.lo, b.lo, c.lo));
    r.hi = ox_round_to_half(ox_fma(a.hi, b.hi, c.hi));
    return r;
}
FN float ox_half2_sum(ox_half2 h)
{
    return h.lo + h.hi;
}
#endif

/* ---- flat kernels: the whole work-group in range ------------------------------------------ */

/* Whether every work-item of the group, each taking per_item consecutive
 * elements from (global id 0) x per_item, stays below n: the same for the
 * whole group, so a kernel that skips its bounds checks when it holds does
 * not diverge on a GPU. A CPU runtime that vectorises across work-items
 * otherwise turns the per-element check into masked loads and stores, which
 * AMD's cores run as microcode (PoCL on Zen 3: an F32 add at 48% of the
 * bandwidth). */
#define OX_GROUP_WITHIN(n, per_item) (((i64)ox_group_id(0) + 1) * ox_local_size(0) * (per_item) <= (n))

/* ---- quantized weights: one unit of 32 ---------------------------------------------------- */

#ifdef DT_Q
/* Bytes per block and weights per block of each type. */
#if DT_Q == 4
#define Q_BYTES 18
#elif DT_Q == 5
#define Q_BYTES 20
#elif DT_Q == 6
#define Q_BYTES 22
#elif DT_Q == 7
#define Q_BYTES 24
#elif DT_Q == 8
#define Q_BYTES 34
#elif DT_Q == 9
#define Q_BYTES 144
#elif DT_Q == 10
#define Q_BYTES 176
#else
#define Q_BYTES 210
#endif
#if DT_Q >= 9
#define Q_UNITS 8 /* units per super-block of 256 */
#else
#define Q_UNITS 1
#endif

#ifndef OX_HALF_TO_FLOAT1
#define ox_half_to_float1 ox_half_to_float /* a single half's conversion */
#endif

FN float q_half(GLOBAL const uchar *p)
{
    return ox_half_to_float1((ushort)(p[0] | (p[1] << 8)));
}

/* Four bytes at a 2-byte aligned address, as one little-endian word. */
FN uint q_word2(GLOBAL const uchar *p)
{
    GLOBAL const ushort *h = (GLOBAL const ushort *)p;
    return (uint)h[0] | ((uint)h[1] << 16);
}

/* How unit u's raw values (q[j], j < 32; in [0, 63] except Q8_0's signed
 * bytes) turn into a dot product: with S = sum q[j] x[j] and SX = sum x[j]
 * (SX0/SX1, S0/S1: the halves of 16, for Q6_K), the unit adds
 *   Q4_0, Q5_0, Q8_0:  d dx (S - OFF SX)           (OFF 8, 16, 0)
 *   Q4_1, Q5_1:        dx (d S + m SX)
 *   Q4_K, Q5_K:        dx (d sc S - dmin mn SX)
 *   Q6_K:              d dx (sc0 (S0 - 32 SX0) + sc1 (S1 - 32 SX1))
 * q_unit_factors gives {s, sx} for the first 16 values and {s1, sx1} for
 * the second (equal but for Q6_K): weight j of the unit is s q[j] + sx. */
typedef struct q_factors {
    float s, sx, s1, sx1;
} q_factors;

FN q_factors q_unit_factors(GLOBAL const uchar *b, int sub)
{
    q_factors f;
#if DT_Q == 4 || DT_Q == 6 || DT_Q == 8
    float d = q_half(b);
    f.s = d;
    f.sx = DT_Q == 4 ? -8.0f * d : DT_Q == 6 ? -16.0f * d : 0.0f;
    f.s1 = f.s;
    f.sx1 = f.sx;
#elif DT_Q == 5 || DT_Q == 7
    f.s = q_half(b);
    f.sx = q_half(b + 2);
    f.s1 = f.s;
    f.sx1 = f.sx;
#elif DT_Q == 9 || DT_Q == 10
    GLOBAL const uchar *s = b + 4;
    float sc, mn;
    if (sub < 4) {
        sc = (float)(s[sub] & 63);
        mn = (float)(s[sub + 4] & 63);
    } else {
        sc = (float)((s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4));
        mn = (float)((s[sub + 4] >> 4) | ((s[sub] >> 6) << 4));
    }
    f.s = q_half(b) * sc;
    f.sx = -q_half(b + 2) * mn;
    f.s1 = f.s;
    f.sx1 = f.sx;
#else /* Q6_K: scales[16] at 192, d at 208; unit sub covers scales 8 h + 2 q + {0, 1} */
    float d = q_half(b + 208);
    int half_ = sub / 4, quarter = sub % 4;
    float sc0 = (float)(i8)b[192 + 8 * half_ + 2 * quarter];
    float sc1 = (float)(i8)b[192 + 8 * half_ + 2 * quarter + 1];
    f.s = d * sc0;
    f.sx = -32.0f * d * sc0;
    f.s1 = d * sc1;
    f.sx1 = -32.0f * d * sc1;
#endif
    return f;
}

#if DT_Q >= 9
/* The factors of all 8 units of K-quant super-block b at once (straight
 * code, constant indices): s[u], sx[u], and for Q6_K s1[u], sx1[u]. */
FN void q_block_factors(GLOBAL const uchar *b, float *s, float *sx, float *s1, float *sx1)
{
#if DT_Q == 9 || DT_Q == 10
    GLOBAL const uchar *sc = b + 4;
    float d = q_half(b), dmin = q_half(b + 2);
    for (int j = 0; j < 4; j++) {
        s[j] = d * (float)(sc[j] & 63);
        sx[j] = -dmin * (float)(sc[j + 4] & 63);
        s[j + 4] = d * (float)((sc[j + 8] & 0xF) | ((sc[j] >> 6) << 4));
        sx[j + 4] = -dmin * (float)((sc[j + 8] >> 4) | ((sc[j + 4] >> 6) << 4));
    }
    for (int j = 0; j < 8; j++) {
        s1[j] = s[j];
        sx1[j] = sx[j];
    }
#else
    float d = q_half(b + 208);
    for (int u = 0; u < 8; u++) {
        int at = 192 + 8 * (u / 4) + 2 * (u % 4);
        s[u] = d * (float)(i8)b[at];
        sx[u] = -32.0f * s[u];
        s1[u] = d * (float)(i8)b[at + 1];
        sx1[u] = -32.0f * s1[u];
    }
#endif
}
#endif

/* The setup a unit's raw values need: Q5_0 / Q5_1's 32 high bits. */
FN uint q_unit_high(GLOBAL const uchar *b)
{
#if DT_Q == 6 || DT_Q == 7
    return q_word2(b + (DT_Q == 7 ? 4 : 2));
#else
    return 0u;
#endif
}

/* Raw values j and j + 16 (j < 16) of unit `sub` of block b (h: from
 * q_unit_high), each from plain byte loads and shifts: no branch. */
FN int q_raw_lo(GLOBAL const uchar *b, int sub, uint h, int j)
{
#if DT_Q == 4
    return b[2 + j] & 0xF;
#elif DT_Q == 5
    return b[4 + j] & 0xF;
#elif DT_Q == 6 || DT_Q == 7
    return (b[(DT_Q == 7 ? 8 : 6) + j] & 0xF) | (int)(((h >> j) & 1u) << 4);
#elif DT_Q == 8
    return (int)(i8)b[2 + j];
#elif DT_Q == 9 || DT_Q == 10
    int q = (b[(DT_Q == 9 ? 16 : 48) + 32 * (sub / 2) + j] >> (4 * (sub & 1))) & 0xF;
#if DT_Q == 10
    q |= ((b[16 + j] >> sub) & 1) << 4;
#endif
    return q;
#else
    int half_ = sub / 4, quarter = sub % 4;
    return ((b[64 * half_ + 32 * (quarter & 1) + j] >> (4 * (quarter >> 1))) & 0xF) |
           (((b[128 + 32 * half_ + j] >> (2 * quarter)) & 3) << 4);
#endif
}

FN int q_raw_hi(GLOBAL const uchar *b, int sub, uint h, int j)
{
#if DT_Q == 4
    return b[2 + j] >> 4;
#elif DT_Q == 5
    return b[4 + j] >> 4;
#elif DT_Q == 6 || DT_Q == 7
    return (b[(DT_Q == 7 ? 8 : 6) + j] >> 4) | (int)(((h >> (j + 16)) & 1u) << 4);
#elif DT_Q == 8
    return (int)(i8)b[18 + j];
#else
    return q_raw_lo(b, sub, h, j + 16);
#endif
}
#endif /* DT_Q */

#ifdef OX_QUANT
/* Quantized GGUF block formats: element k of a row of blocks starting at
 * byte pointer `row`, as float. Slow per element but exact; kernels that
 * care about speed walk whole blocks. */

/* Q4_K / Q5_K: 6-bit scale and min of sub-block j (0..7) from scales[12]. */
FN void ox_q_scale_min_k4(GLOBAL const uchar *s, int j, float *sc, float *mn)
{
    if (j < 4) {
        *sc = (float)(s[j] & 63);
        *mn = (float)(s[j + 4] & 63);
    } else {
        *sc = (float)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *mn = (float)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

FN float ox_dequant(GLOBAL const uchar *row, i64 k)
{
#if DT_Q == 4 /* Q4_0: {f16 d; u8 qs[16]}, x = (q - 8) d */
    GLOBAL const uchar *b = row + (k / 32) * 18;
    int j = (int)(k % 32);
    int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
    return (float)(q - 8) * q_half(b);
#elif DT_Q == 5 /* Q4_1: {f16 d, m; u8 qs[16]}, x = q d + m */
    GLOBAL const uchar *b = row + (k / 32) * 20;
    int j = (int)(k % 32);
    int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
    return (float)q * q_half(b) + q_half(b + 2);
#elif DT_Q == 6 || DT_Q == 7 /* Q5_0 {f16 d; u8 qh[4]; qs[16]}, Q5_1 {d, m; qh; qs} */
    const int m_bytes = DT_Q == 7 ? 2 : 0;
    GLOBAL const uchar *b = row + (k / 32) * (22 + m_bytes);
    int j = (int)(k % 32);
    GLOBAL const uchar *qh = b + 2 + m_bytes, *qs = qh + 4;
    int low = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
    int high = (qh[j / 8] >> (j % 8)) & 1;
    int q = low | (high << 4);
#if DT_Q == 6
    return (float)(q - 16) * q_half(b);
#else
    return (float)q * q_half(b) + q_half(b + 2);
#endif
#elif DT_Q == 8 /* Q8_0: {f16 d; i8 qs[32]} */
    GLOBAL const uchar *b = row + (k / 32) * 34;
    int q = (int)b[2 + k % 32];
    return (float)(q > 127 ? q - 256 : q) * q_half(b);
#elif DT_Q == 9 || DT_Q == 10 /* Q4_K {d, dmin; scales[12]; qs[128]}, Q5_K adds qh[32] */
    GLOBAL const uchar *b = row + (k / 256) * (DT_Q == 9 ? 144 : 176);
    int e = (int)(k % 256), pair = e / 64, within = e % 64, l = within % 32;
    int sub = 2 * pair + within / 32;
    float sc, mn;
    ox_q_scale_min_k4(b + 4, sub, &sc, &mn);
#if DT_Q == 9
    int byte = b[16 + 32 * pair + l];
#else
    int byte = b[48 + 32 * pair + l];
#endif
    int q = within < 32 ? (byte & 0xF) : (byte >> 4);
#if DT_Q == 10
    q += ((b[16 + l] >> sub) & 1) << 4;
#endif
    return q_half(b) * sc * (float)q - q_half(b + 2) * mn;
#elif DT_Q == 11 /* Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} */
    GLOBAL const uchar *b = row + (k / 256) * 210;
    int e = (int)(k % 256), half_ = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    GLOBAL const uchar *ql = b + 64 * half_, *qh = b + 128 + 32 * half_;
    int lowbits = quarter == 0 ? (ql[l] & 0xF) : quarter == 1 ? (ql[l + 32] & 0xF)
                : quarter == 2 ? (ql[l] >> 4) : (ql[l + 32] >> 4);
    int q = (lowbits | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
    int s = (int)b[192 + 8 * half_ + l / 16 + 2 * quarter];
    return q_half(b + 208) * (float)(s > 127 ? s - 256 : s) * (float)q;
#else
    return 0.0f;
#endif
}
#endif /* OX_QUANT */

/* ---- Reproducible math (issue 17) -------------------------------------------
 * Functions that give the same bits on every API and device: each is written
 * here once from +, -, x, explicit ox_fma, ox_rint and bit operations, all
 * of them exactly rounded operations in IEEE single precision, in a fixed
 * order. No product feeds an addition except inside ox_fma or where the
 * product is exact (a power of two), so a compiler that contracts a * b + c
 * (OpenCL C and CUDA do by default) cannot change a result; OpenCL's
 * contraction is switched off around them besides. No division or square
 * root (OpenCL may round those loosely): reciprocals and reciprocal square
 * roots are Newton steps from a bit-pattern estimate. They are not
 * correctly rounded; tests/opencl/test_repro_math.c measures their error
 * against double-precision libm and holds CPU and OpenCL to the same bits. */
#if defined(__OPENCL_VERSION__)
#pragma OPENCL FP_CONTRACT OFF
#endif

/* 2^k for k in [-126, 127] */
FN float ox__pow2i(int k)
{
    return ox_as_float((uint)(k + 127) << 23);
}

/* 1 / d for a positive normal d below 2^126: a bit-pattern estimate (within
 * 12%), then four Newton steps. */
FN float ox_repro_recip(float d)
{
    float y = ox_as_float(0x7ef311c3u - ox_as_uint(d));
    for (int i = 0; i < 4; i++) y = ox_fma(y, ox_fma(-d, y, 1.0f), y);
    return y;
}

/* 1 / sqrt(x): +-0 -> +-inf, inf -> 0, negative or NaN -> NaN. */
FN float ox_repro_rsqrt(float x)
{
    if (!(x > 0.0f)) return x == 0.0f ? ox_as_float(ox_as_uint(x) | 0x7f800000u)
                                      : ox_as_float(0x7fc00000u);
    if (x == OX_INFINITY) return 0.0f;
    float scale = 1.0f;
    if (x < 1.17549435e-38f) { /* subnormal: x 2^64, the result 2^32 */
        x = x * 18446744073709551616.0f;
        scale = 4294967296.0f;
    }
    float y = ox_as_float(0x5f3759dfu - (ox_as_uint(x) >> 1)); /* within 3.5% */
    for (int i = 0; i < 4; i++) y = ox_fma(0.5f * y, ox_fma(-(x * y), y, 1.0f), y);
    return y * scale;
}

/* e^x: x = k ln2 + r, |r| <= ln2 / 2, e^r by its Taylor polynomial to r^7,
 * times 2^k in two exact steps (one rounding where the result is
 * subnormal). */
FN float ox_repro_exp(float x)
{
    if (x != x) return x;
    if (x > 88.7228394f) return OX_INFINITY;
    if (x < -103.972084f) return 0.0f;
    float kf = ox_rint(x * 1.44269502f);
    float r = ox_fma(-kf, 0.693147182f, x);
    r = ox_fma(-kf, -1.90465432e-09f, r);
    float p = 1.98412701e-04f;
    p = ox_fma(p, r, 1.38888892e-03f);
    p = ox_fma(p, r, 8.33333377e-03f);
    p = ox_fma(p, r, 4.16666679e-02f);
    p = ox_fma(p, r, 1.66666672e-01f);
    p = ox_fma(p, r, 0.5f);
    p = ox_fma(p, r, 1.0f);
    p = ox_fma(p, r, 1.0f);
    int k = (int)kf, k1 = k / 2;
    return p * ox__pow2i(k1) * ox__pow2i(k - k1);
}

/* log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s),
 * s = (m - 1) / (m + 1), by its series to s^9. */
FN float ox_repro_log(float x)
{
    if (x != x || x < 0.0f) return ox_as_float(0x7fc00000u);
    if (x == 0.0f) return -OX_INFINITY;
    if (x == OX_INFINITY) return x;
    int e = 0;
    if (x < 1.17549435e-38f) { /* subnormal */
        x = x * 8388608.0f;
        e = -23;
    }
    uint u = ox_as_uint(x);
    e += (int)(u >> 23) - 127;
    float m = ox_as_float((u & 0x007fffffu) | 0x3f800000u);
    if (m > 1.41421354f) {
        m = m * 0.5f;
        e += 1;
    }
    float f = m - 1.0f; /* exact */
    float s = f * ox_repro_recip(2.0f + f);
    float z = s * s, s2 = s + s;
    float t = ox_fma(0.111111112f, z, 0.142857149f);
    t = ox_fma(t, z, 0.2f);
    t = ox_fma(t, z, 0.333333343f);
    float l = ox_fma(s2 * z, t, s2);
    float ef = (float)e;
    return ox_fma(ef, 0.693147182f, ox_fma(ef, -1.90465432e-09f, l));
}

/* tanh(x): below 0.3 its Taylor polynomial to x^13; then 1 - 2 / (e^2|x| + 1);
 * from 9 on +-1. */
FN float ox_repro_tanh(float x)
{
    if (x != x) return x;
    float a = ox_fabs(x);
    if (a < 0.3f) {
        float z = x * x;
        float p = 3.59212793e-03f;
        p = ox_fma(p, z, -8.86323582e-03f);
        p = ox_fma(p, z, 2.18694881e-02f);
        p = ox_fma(p, z, -5.39682545e-02f);
        p = ox_fma(p, z, 1.33333340e-01f);
        p = ox_fma(p, z, -3.33333343e-01f);
        return ox_fma(x * z, p, x);
    }
    float t = 1.0f;
    if (a < 9.0f) t = ox_fma(-2.0f, ox_repro_recip(ox_repro_exp(a + a) + 1.0f), 1.0f);
    return x < 0.0f ? -t : t;
}

/* erf(x) (generated by scripts/gen-repro-erf.py, which says how) */
FN float ox_repro_erf(float x)
{
    if (x != x) return x;
    float a = ox_fabs(x), p;
    if (a < 1.0f) {
        float z = x * x;
        p = -1.229055524e-09f;
        p = ox_fma(p, z, 1.480719281e-08f);
        p = ox_fma(p, z, -1.636584415e-07f);
        p = ox_fma(p, z, 1.646211444e-06f);
        p = ox_fma(p, z, -1.492565025e-05f);
        p = ox_fma(p, z, 1.205533263e-04f);
        p = ox_fma(p, z, -8.548327023e-04f);
        p = ox_fma(p, z, 5.223977845e-03f);
        p = ox_fma(p, z, -2.686617151e-02f);
        p = ox_fma(p, z, 1.128379181e-01f);
        p = ox_fma(p, z, -3.761263788e-01f);
        /* x (2/sqrt(pi) - 1 + z p) + x: x itself exact, one rounding at the end */
        return ox_fma(x, ox_fma(p, z, 1.283791661e-01f), x);
    }
    if (a >= 4.0f) return x < 0.0f ? -1.0f : 1.0f;
    int j = (int)((a - 1.0f) * 2.0f); /* exact: the interval */
    float h = a - (1.25f + 0.5f * (float)j); /* exact */
#define OX__ERF_C(c0, c1, c2, c3, c4, c5) \
    (j == 0 ? c0 : j == 1 ? c1 : j == 2 ? c2 : j == 3 ? c3 : j == 4 ? c4 : c5)
    p = OX__ERF_C(-3.239567159e-04f, -5.445490388e-06f, 6.513494009e-05f,
                  -1.584380516e-05f, -2.864299404e-06f, 7.753483828e-07f);
    p = ox_fma(p, h,
               OX__ERF_C(7.935115136e-04f, -4.427504900e-04f, -1.146658360e-05f,
                         5.499699182e-05f, -2.328866231e-06f, -2.603308985e-06f));
    p = ox_fma(p, h,
               OX__ERF_C(8.776361938e-04f, 8.941817214e-04f, -3.693804319e-04f,
                         -7.122311217e-05f, 2.591384691e-05f, 6.108880825e-06f));
    p = ox_fma(p, h,
               OX__ERF_C(-5.697677843e-03f, 7.300512516e-04f, 9.994937573e-04f,
                         -8.901156980e-05f, -8.164763130e-05f, -1.112822702e-05f));
    p = ox_fma(p, h,
               OX__ERF_C(3.625982674e-03f, -6.058751605e-03f, -6.704559783e-04f,
                         6.460409495e-04f, 1.699914137e-04f, 1.627530219e-05f));
    p = ox_fma(p, h,
               OX__ERF_C(2.130127326e-02f, 8.963044733e-03f, -2.904357156e-03f,
                         -1.657327404e-03f, -2.635284909e-04f, -1.927272206e-05f));
    p = ox_fma(p, h,
               OX__ERF_C(-4.718103632e-02f, 6.624361500e-03f, 1.065767929e-02f,
                         2.755808411e-03f, 3.137972381e-04f, 1.837097443e-05f));
    p = ox_fma(p, h,
               OX__ERF_C(-6.159404293e-03f, -4.810221121e-02f, -1.908338442e-02f,
                         -3.258113749e-03f, -2.865693241e-04f, -1.384123971e-05f));
    p = ox_fma(p, h,
               OX__ERF_C(1.675357968e-01f, 9.015728533e-02f, 2.172455378e-02f,
                         2.760388656e-03f, 1.958097127e-04f, 7.969616490e-06f));
    p = ox_fma(p, h,
               OX__ERF_C(-2.956514060e-01f, -9.235624224e-02f, -1.607021689e-02f,
                         -1.612262451e-03f, -9.486433555e-05f, -3.305370683e-06f));
    p = ox_fma(p, h,
               OX__ERF_C(2.365211248e-01f, 5.277499557e-02f, 7.142318878e-03f,
                         5.862772232e-04f, 2.918902464e-05f, 8.814321859e-07f));
    p = ox_fma(p, h,
               OX__ERF_C(9.229001403e-01f, 9.866716862e-01f, 9.985373020e-01f,
                         9.998993874e-01f, 9.999957085e-01f, 9.999998808e-01f));
#undef OX__ERF_C
    return x < 0.0f ? -p : p;
}

/* sin and cos: x = k pi/2 + r with pi/2 in three floats (the product k
 * times each taken exactly inside ox_fma), Taylor polynomials on |r| <= pi/4
 * (sin to r^11, cos to r^12). Accurate while the three parts carry pi/2
 * far enough: to |x| = 2^20 (rope's angles are positions times at most 1);
 * beyond, the bits are still the same everywhere but the reduction is not
 * exact. The quadrant is k mod 4, taken in floats (k may exceed an int). */
FN float ox__sin_r(float r)
{
    float z = r * r;
    float p = -2.505210794e-08f;
    p = ox_fma(p, z, 2.755731884e-06f);
    p = ox_fma(p, z, -1.984127011e-04f);
    p = ox_fma(p, z, 8.333333768e-03f);
    p = ox_fma(p, z, -1.666666716e-01f);
    return ox_fma(r * z, p, r);
}

/* 1 - z/2 rounded once, its rounding error carried into the rest */
FN float ox__cos_r(float r)
{
    float z = r * r, hz = 0.5f * z, w = 1.0f - hz;
    float c = 2.087675588e-09f;
    c = ox_fma(c, z, -2.755731998e-07f);
    c = ox_fma(c, z, 2.480158764e-05f);
    c = ox_fma(c, z, -1.388888923e-03f);
    c = ox_fma(c, z, 4.166666791e-02f);
    return w + ox_fma(z * z, c, (1.0f - w) - hz);
}

/* r and the quadrant q (0..3) of x */
FN float ox__reduce_half_pi(float x, int *q)
{
    float k = ox_rint(x * 6.366197467e-01f);
    float r = ox_fma(-k, 1.570796371e+00f, x);
    r = ox_fma(-k, -4.371138829e-08f, r);
    r = ox_fma(-k, -1.715124510e-15f, r);
    *q = (int)(k - 4.0f * ox_floor(k * 0.25f)); /* exact */
    return r;
}

FN float ox_repro_sin(float x)
{
    if (x != x || ox_fabs(x) == OX_INFINITY) return ox_as_float(0x7fc00000u);
    if (ox_fabs(x) < 2.44140625e-04f) return x; /* 2^-12: sin x rounds to x */
    int q;
    float r = ox__reduce_half_pi(x, &q);
    float v = q & 1 ? ox__cos_r(r) : ox__sin_r(r);
    return q & 2 ? -v : v;
}

FN float ox_repro_cos(float x)
{
    if (x != x || ox_fabs(x) == OX_INFINITY) return ox_as_float(0x7fc00000u);
    int q;
    float r = ox__reduce_half_pi(x, &q);
    float v = q & 1 ? ox__sin_r(r) : ox__cos_r(r);
    return (q + 1) & 2 ? -v : v;
}

/* log(1 + x): log of u = 1 + x, corrected by the rounding error of that sum
 * ((u - 1) - x, over u); below -1 NaN. */
FN float ox_repro_log1p(float x)
{
    if (x != x || x < -1.0f) return ox_as_float(0x7fc00000u);
    if (x == -1.0f) return -OX_INFINITY;
    if (x == OX_INFINITY) return x;
    float u = 1.0f + x;
    if (u == 1.0f) return x;
    float l = ox_repro_log(u);
    if (u > 16777216.0f) return l; /* the correction is below half an ulp */
    float c = (u - 1.0f) - x;
    return ox_fma(-c, ox_repro_recip(u), l);
}

/* a^b for a >= 0 as e^(b log a): the same bits everywhere, but less
 * accurate than a library pow when |b log a| is large (the error of log a
 * grows by that factor: about 15 ulp for rope's base 10000). Negative a:
 * NaN. */
FN float ox_repro_pow(float a, float b)
{
    if (a != a || b != b || a < 0.0f) return ox_as_float(0x7fc00000u);
    if (b == 0.0f || a == 1.0f) return 1.0f;
    if (a == 0.0f) return b > 0.0f ? 0.0f : OX_INFINITY;
    return ox_repro_exp(b * ox_repro_log(a));
}

/* max and min with a NaN taking the other operand, as fmax and fmin, and
 * the sign of equal zeros fixed (max(-0, +0) = +0, min = -0), which
 * IEEE 754's maxNum leaves open and the APIs' libraries differ on. */
FN float ox_repro_fmax(float a, float b)
{
    if (a == b) return ox_as_float(ox_as_uint(a) & ox_as_uint(b));
    return a > b || b != b ? a : b;
}

FN float ox_repro_fmin(float a, float b)
{
    if (a == b) return ox_as_float(ox_as_uint(a) | ox_as_uint(b));
    return a < b || b != b ? a : b;
}

/* A reproducible build (-DOX_REPRO=1; the backends then also switch off
 * contraction and ask for correctly rounded division and square root): the
 * dialect's math names mean the functions above. */
#if defined(OX_REPRO) && OX_REPRO
#undef ox_exp
#undef ox_log
#undef ox_tanh
#undef ox_erf
#undef ox_sin
#undef ox_cos
#undef ox_rsqrt
#undef ox_log1p
#undef ox_pow
#undef ox_fmax
#undef ox_fmin
#define ox_exp(x) ox_repro_exp(x)
#define ox_log(x) ox_repro_log(x)
#define ox_tanh(x) ox_repro_tanh(x)
#define ox_erf(x) ox_repro_erf(x)
#define ox_sin(x) ox_repro_sin(x)
#define ox_cos(x) ox_repro_cos(x)
#define ox_rsqrt(x) ox_repro_rsqrt(x)
#define ox_log1p(x) ox_repro_log1p(x)
#define ox_pow(a, b) ox_repro_pow(a, b)
#define ox_fmax(a, b) ox_repro_fmax(a, b)
#define ox_fmin(a, b) ox_repro_fmin(a, b)
/* -0 as +0: a tile's padding (k past K) adds 0 x 0 to a sum, which turns a
 * sum of -0 into +0 in one variant and not in another */
#define OX_REPRO_ZERO(x) ((x) + 0.0f)
#elif defined(__OPENCL_VERSION__)
#pragma OPENCL FP_CONTRACT ON
#endif
#ifndef OX_REPRO_ZERO
#define OX_REPRO_ZERO(x) (x)
#endif
