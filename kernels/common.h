/* OpenXPU portable kernel dialect: helpers shared by every kernel, written
 * once in the dialect itself (after the API's prelude). */

#define OX_CAT_(a, b) a##b
#define OX_CAT(a, b) OX_CAT_(a, b)

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

/* A 4-d shape with strides in elements, passed as scalar arguments:
 *   ARG_SHAPE(a) -> i64 a_ne0..a_ne3, i64 a_nb0..a_nb3 (element strides) */
#define ARG_SHAPE(t) i64 t##_ne0, i64 t##_ne1, i64 t##_ne2, i64 t##_ne3, \
                     i64 t##_nb0, i64 t##_nb1, i64 t##_nb2, i64 t##_nb3
/* Element offset of (i0, i1, i2, i3) in tensor t. */
#define OX_AT(t, i0, i1, i2, i3) \
    ((i0) * t##_nb0 + (i1) * t##_nb1 + (i2) * t##_nb2 + (i3) * t##_nb3)
