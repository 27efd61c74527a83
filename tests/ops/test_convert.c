/* Element types (src/ops/convert.c): names and sizes, F16 and BF16
 * conversions against known bit patterns, an independent round-to-nearest-
 * even oracle and an exhaustive round trip, and the row conversions (F16C
 * where the CPU has it) against the scalar ones. */
#include "ops_test.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

OX_TEST(dtype_names_and_sizes)
{
    ASSERT_STR_EQ(ox_dtype_str(OX_DTYPE_F32), "f32");
    ASSERT_STR_EQ(ox_dtype_str(OX_DTYPE_F16), "f16");
    ASSERT_STR_EQ(ox_dtype_str(OX_DTYPE_BF16), "bf16");
    ASSERT_STR_EQ(ox_dtype_str(OX_DTYPE_I32), "i32");
    ASSERT_STR_EQ(ox_dtype_str(OX_DTYPE_COUNT), "unknown");
    ASSERT_STR_EQ(ox_dtype_str((ox_dtype)-1), "unknown");
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_F32), 4);
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_F16), 2);
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_BF16), 2);
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_I32), 4);
    ASSERT_EQ(ox_dtype_size(OX_DTYPE_COUNT), 0);

    ox_dtype t = OX_DTYPE_I32;
    ASSERT_EQ(ox_dtype_from_str("f16", &t), OX_OK);
    ASSERT_EQ(t, OX_DTYPE_F16);
    ASSERT_EQ(ox_dtype_from_str("BF16", &t), OX_OK);
    ASSERT_EQ(t, OX_DTYPE_BF16);
    ASSERT_EQ(ox_dtype_from_str("F32", &t), OX_OK);
    ASSERT_EQ(t, OX_DTYPE_F32);
    ASSERT_EQ(ox_dtype_from_str("i32", &t), OX_OK);
    ASSERT_EQ(t, OX_DTYPE_I32);
    ASSERT_EQ(ox_dtype_from_str("f", &t), OX_ERR_NOT_FOUND);
    ASSERT_EQ(ox_dtype_from_str("f164", &t), OX_ERR_NOT_FOUND);
    ASSERT_EQ(ox_dtype_from_str("", &t), OX_ERR_NOT_FOUND);
    ASSERT_EQ(t, OX_DTYPE_I32); /* untouched on failure */
    ASSERT_EQ(ox_dtype_from_str(NULL, &t), OX_ERR_INVALID);
    ASSERT_EQ(ox_dtype_from_str("f32", NULL), OX_ERR_INVALID);
}

OX_TEST(f16_known_values)
{
    static const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {0.0f, 0x0000},          {-0.0f, 0x8000},         {1.0f, 0x3c00},
        {-2.0f, 0xc000},         {0.5f, 0x3800},          {0.1f, 0x2e66},
        {65504.0f, 0x7bff},      {65519.99f, 0x7bff},     {65520.0f, 0x7c00}, /* ties up to inf */
        {1e10f, 0x7c00},         {-65520.0f, 0xfc00},     {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},     {0x1p-14f, 0x0400},      /* smallest normal */
        {0x1p-24f, 0x0001},      /* smallest subnormal */
        {0x1p-25f, 0x0000},      /* tie between 0 and 2^-24: even is 0 */
        {-0x1p-25f, 0x8000},     {0x1.000002p-25f, 0x0001}, /* just above the tie */
        {0x3p-26f, 0x0001},      /* 0.75 * 2^-24 */
        {0x3p-25f, 0x0002},      /* 1.5 * 2^-24: tie, to even 2 */
        {0x5p-25f, 0x0002},      /* 2.5 * 2^-24: tie, to even 2 */
        {0x1p-26f, 0x0000},      {0x3ffp-24f, 0x03ff},     /* largest subnormal */
        {0x7ffp-25f, 0x0400},    /* 1023.5 * 2^-24: tie, to even 1024 (normal) */
        {0x1.002p0f, 0x3c00},    /* 1 + 2^-11: tie, to even */
        {0x1.006p0f, 0x3c02},    /* 1 + 3 * 2^-11: tie, to even */
        {0x1.0021p0f, 0x3c01},   /* just above a tie */
        {0x1.ffcp15f, 0x7bff},   /* 65504 exactly */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = ox_f32_to_f16(cases[i].f);
        ASSERT_MSG(h == cases[i].h, "f32_to_f16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f,
                   h, cases[i].h);
    }
    ASSERT(ox_f16_to_f32(0x0001) == 0x1p-24f);
    ASSERT(ox_f16_to_f32(0x03ff) == 0x3ffp-24f);
    ASSERT(ox_f16_to_f32(0x8001) == -0x1p-24f);
    ASSERT(ox_f16_to_f32(0x3c00) == 1.0f);
    ASSERT(ox_f16_to_f32(0xc000) == -2.0f);
    ASSERT(ox_f16_to_f32(0x7bff) == 65504.0f);
    ASSERT(ox_f16_to_f32(0x7c00) == INFINITY);
    ASSERT(ox_f16_to_f32(0xfc00) == -INFINITY);
    ASSERT(bits_of(ox_f16_to_f32(0x8000)) == 0x80000000u);
    ASSERT(isnan(ox_f16_to_f32(0x7e00)) && isnan(ox_f16_to_f32(0x7c01)));
    ASSERT(isnan(ox_f16_to_f32(0xfe00)));
    /* NaN stays NaN, sign kept, never becomes infinity */
    uint16_t nans[] = {ox_f32_to_f16(NAN), ox_f32_to_f16(-NAN),
                       ox_f32_to_f16(float_of(0x7f800001u)), ox_f32_to_f16(float_of(0xffc00000u))};
    for (size_t i = 0; i < 4; i++)
        ASSERT_MSG((nans[i] & 0x7c00) == 0x7c00 && (nans[i] & 0x3ff) != 0, "nan -> 0x%04x",
                   nans[i]);
    ASSERT((nans[3] & 0x8000) != 0);
}

/* The f16 nearest to f, ties to even, found by comparing the candidates in
 * double: an oracle independent of the bit manipulation under test. */
static uint16_t f16_oracle(float f)
{
    double x = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (x >= 65520.0) return sign | 0x7c00;
    int c0; /* encoding of the f16 at or below x */
    if (x < 0x1p-14) {
        c0 = (int)floor(x * 0x1p24);
    } else {
        int e;
        frexp(x, &e); /* x = m 2^e, 0.5 <= m < 1 */
        c0 = ((e - 1 + 15) << 10) + (int)floor((ldexp(x, 1 - e) - 1.0) * 1024.0);
    }
    uint16_t best = 0;
    double best_err = INFINITY;
    for (int c = c0 - 1; c <= c0 + 1; c++) {
        if (c < 0 || c > 0x7bff) continue;
        double v = (c >> 10) == 0 ? ldexp(c & 0x3ff, -24)
                                  : ldexp(1.0 + (c & 0x3ff) / 1024.0, (c >> 10) - 15);
        double err = fabs(v - x);
        if (err < best_err || (err == best_err && (c & 1) == 0)) {
            best = (uint16_t)c;
            best_err = err;
        }
    }
    return sign | best;
}

OX_TEST(f16_rounding_matches_oracle)
{
    tt_seed(1);
    for (int i = 0; i < 2000000; i++) {
        /* random bit patterns with exponents around the f16 range */
        uint32_t u = (uint32_t)tt_next();
        uint32_t exp = 96u + (uint32_t)(tt_next() % 50u); /* 2^-31 .. 2^18 */
        u = (u & 0x807fffffu) | (exp << 23);
        if (i % 4 == 0) u &= 0xffffe000u | (1u << 12); /* many exact ties */
        float f = float_of(u);
        uint16_t h = ox_f32_to_f16(f), want = f16_oracle(f);
        ASSERT_MSG(h == want, "f32_to_f16(%a) = 0x%04x, oracle 0x%04x", (double)f, h, want);
    }
}

OX_TEST(f16_exhaustive_round_trip)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ox_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            ASSERT_MSG(isnan(f), "0x%04x is a NaN", h);
            continue;
        }
        ASSERT_MSG(ox_f32_to_f16(f) == h, "0x%04x -> %a -> 0x%04x", h, (double)f,
                   ox_f32_to_f16(f));
    }
}

OX_TEST(bf16_known_values)
{
    static const struct {
        float f;
        uint16_t h;
    } cases[] = {
        {1.0f, 0x3f80},         {-2.0f, 0xc000},         {0.0f, 0x0000},
        {-0.0f, 0x8000},        {0x1.01p0f, 0x3f80},     /* 1 + 2^-8: tie, to even */
        {0x1.018p0f, 0x3f81},   /* 1 + 3 * 2^-9: above half, up */
        {0x1.03p0f, 0x3f82},    /* 1 + 3 * 2^-8: tie, to even (up) */
        {0x1.008p0f, 0x3f80},   /* 1 + 2^-9: below half */
        {INFINITY, 0x7f80},     {-INFINITY, 0xff80},
        {0x1.fffffep127f, 0x7f80}, /* FLT_MAX rounds up to infinity */
        {0x1p-133f, 0x0001},    /* f32 subnormals keep their top bits */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = ox_f32_to_bf16(cases[i].f);
        ASSERT_MSG(h == cases[i].h, "f32_to_bf16(%a) = 0x%04x, want 0x%04x", (double)cases[i].f,
                   h, cases[i].h);
    }
    ASSERT(ox_bf16_to_f32(0x3f80) == 1.0f);
    ASSERT(ox_bf16_to_f32(0x3f81) == 0x1.02p0f);
    ASSERT(ox_bf16_to_f32(0xff80) == -INFINITY);
    uint16_t nans[] = {ox_f32_to_bf16(NAN), ox_f32_to_bf16(float_of(0x7f800001u)),
                       ox_f32_to_bf16(float_of(0xff800001u)),
                       ox_f32_to_bf16(float_of(0x7fffffffu))};
    for (size_t i = 0; i < 4; i++) {
        ASSERT_MSG((nans[i] & 0x7f80) == 0x7f80 && (nans[i] & 0x7f) != 0, "nan -> 0x%04x", nans[i]);
        ASSERT(isnan(ox_bf16_to_f32(nans[i])));
    }
    ASSERT((nans[2] & 0x8000) != 0);
    for (uint32_t h = 0; h < 65536; h++) { /* round trip of every non-NaN pattern */
        float f = ox_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        ASSERT_MSG(ox_f32_to_bf16(f) == h, "0x%04x -> 0x%04x", h, ox_f32_to_bf16(f));
    }
}

OX_TEST(load_store_elements)
{
    unsigned char buf[8];
    for (int t = 0; t < 3; t++) {
        ox_dtype dt = tt_float_types[t];
        ox__store_f(dt, buf + 1, 1.5f); /* unaligned on purpose */
        ASSERT(ox__load_f(dt, buf + 1) == 1.5f);
        ox__store_f(dt, buf + 1, 0.1f);
        float want = dt == OX_DTYPE_F16 ? ox_f16_to_f32(ox_f32_to_f16(0.1f))
                     : dt == OX_DTYPE_BF16 ? ox_bf16_to_f32(ox_f32_to_bf16(0.1f))
                                           : 0.1f;
        ASSERT(ox__load_f(dt, buf + 1) == want);
    }
}

/* Row conversions give the scalar results bit for bit, NaNs included. */
static void check_rows(ox_dtype dt, const uint32_t *f32_bits, const uint16_t *h16, int64_t n,
                       int offset)
{
    float *src = tt_alloc((size_t)(n + 8) * sizeof(float));
    uint16_t *raw = tt_alloc((size_t)(n + 8) * 2), *hs = raw + offset;
    float *f = tt_alloc((size_t)(n + 8) * sizeof(float));
    memcpy(src, f32_bits, (size_t)n * 4);
    ox__row_from_f32(dt, src, hs, n);
    for (int64_t i = 0; i < n; i++) {
        uint16_t want = dt == OX_DTYPE_F16 ? ox_f32_to_f16(src[i]) : ox_f32_to_bf16(src[i]);
        ASSERT_MSG(hs[i] == want, "n %lld: from_f32(0x%08x) = 0x%04x, scalar 0x%04x",
                   (long long)n, f32_bits[i], hs[i], want);
    }
    memcpy(hs, h16, (size_t)n * 2);
    ox__row_to_f32(dt, hs, f, n);
    for (int64_t i = 0; i < n; i++) {
        float want = dt == OX_DTYPE_F16 ? ox_f16_to_f32(h16[i]) : ox_bf16_to_f32(h16[i]);
        ASSERT_MSG(bits_of(f[i]) == bits_of(want), "n %lld: to_f32(0x%04x) = 0x%08x, scalar 0x%08x",
                   (long long)n, h16[i], bits_of(f[i]), bits_of(want));
    }
}

OX_TEST(row_conversions_match_scalar)
{
    enum { N = 65536 };
    uint32_t *f = tt_alloc(N * 4);
    uint16_t *h = tt_alloc(N * 2);
    tt_seed(7);
    for (int i = 0; i < N; i++) {
        h[i] = (uint16_t)i; /* every 16-bit pattern */
        uint32_t u = (uint32_t)tt_next();
        if (i % 3 == 0) u = (u & 0x807fffffu) | ((100u + (uint32_t)(i % 45)) << 23);
        f[i] = u;                                             /* NaNs, infinities, subnormals */
    }
    for (int t = 1; t < 3; t++)
        for (int64_t n = 0; n <= 67; n++)
            for (int offset = 0; offset < 2; offset++)
                check_rows(tt_float_types[t], f, h, n, offset);
    check_rows(OX_DTYPE_F16, f, h, N, 0);
    check_rows(OX_DTYPE_BF16, f, h, N, 1);
    float a[5] = {1, 2, 3, 4, 5}, b[5];
    ox__row_to_f32(OX_DTYPE_F32, a, b, 5);
    ASSERT(memcmp(a, b, sizeof a) == 0);
    ox__row_from_f32(OX_DTYPE_F32, a, b, 5);
    ASSERT(memcmp(a, b, sizeof a) == 0);
}

OX_TEST_MAIN(dtype_names_and_sizes, f16_known_values, f16_rounding_matches_oracle,
             f16_exhaustive_round_trip, bf16_known_values, load_store_elements,
             row_conversions_match_scalar)
