/* Tensor descriptors: construction, views, bounds checks, and host <->
 * tensor transfers (strided tensors go through a contiguous staging buffer
 * on the device and ox_copy). */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "ops/ops_internal.h"

ox_tensor ox_tensor_make(ox_buffer *buffer, size_t offset, ox_dtype dtype, int64_t ne0,
                         int64_t ne1, int64_t ne2, int64_t ne3)
{
    ox_tensor t = {.buffer = buffer, .offset = offset, .dtype = dtype,
                   .ne = {ne0, ne1, ne2, ne3}};
    int64_t block = ox_dtype_block(dtype) > 0 ? ox_dtype_block(dtype) : 1;
    t.nb[0] = (int64_t)ox_dtype_size(dtype);
    t.nb[1] = t.nb[0] * (ne0 / block);
    for (int i = 2; i < OX_MAX_DIMS; i++) t.nb[i] = t.nb[i - 1] * t.ne[i - 1];
    return t;
}

int64_t ox_tensor_nelements(const ox_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

bool ox_tensor_is_contiguous(const ox_tensor *t)
{
    int64_t expect = (int64_t)ox_dtype_size(t->dtype);
    int64_t block = ox_dtype_block(t->dtype) > 0 ? ox_dtype_block(t->dtype) : 1;
    for (int i = 0; i < OX_MAX_DIMS; i++) {
        if (t->ne[i] != 1 && t->nb[i] != expect) return false;
        expect *= i == 0 ? t->ne[0] / block : t->ne[i];
    }
    return true;
}

ox_tensor ox_tensor_permute(const ox_tensor *t, const int axes[OX_MAX_DIMS])
{
    ox_tensor r = *t;
    for (int i = 0; i < OX_MAX_DIMS; i++) {
        int a = axes[i] >= 0 && axes[i] < OX_MAX_DIMS ? axes[i] : i;
        r.ne[i] = t->ne[a];
        r.nb[i] = t->nb[a];
    }
    return r;
}

ox_tensor ox_tensor_transpose(const ox_tensor *t)
{
    static const int axes[OX_MAX_DIMS] = {1, 0, 2, 3};
    return ox_tensor_permute(t, axes);
}

const char *ox__shape_str(const ox_tensor *t, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s[%lld,%lld,%lld,%lld]", ox_dtype_str(t->dtype), (long long)t->ne[0],
             (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3]);
    return buf;
}

ox_status ox__tensor_check(ox_context *ctx, const char *op, const char *what, const ox_tensor *t)
{
    char shape[96];
    if (!t) return ox__fail(ctx, OX_ERR_INVALID, "%s: %s is NULL", op, what);
    if ((unsigned)t->dtype >= OX_DTYPE_COUNT)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: %s has unknown dtype %d", op, what,
                        (int)t->dtype);
    char buffer_of[64];
    snprintf(buffer_of, sizeof buffer_of, "the buffer of %s", what);
    ox_status s = ox__handle_check_in(ctx, t->buffer, OX__HANDLE_BUFFER, op, buffer_of, NULL);
    if (s != OX_OK) return s;
    size_t esize = ox_dtype_size(t->dtype);
    int64_t block = ox_dtype_block(t->dtype);
    if (block > 1) { /* quantized: whole blocks, packed along rows */
        if (t->ne[0] <= 0 || t->ne[0] % block || t->nb[0] != (int64_t)esize)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "%s: %s %s: %s rows must hold whole blocks of %lld elements, %zu bytes "
                            "apart (ne[0] %lld, nb[0] %lld)",
                            op, what, ox__shape_str(t, shape, sizeof shape),
                            ox_dtype_str(t->dtype), (long long)block, esize, (long long)t->ne[0],
                            (long long)t->nb[0]);
        esize = 1; /* blocks have no alignment */
    }
    if (t->offset % esize)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: %s: offset %zu is not a multiple of the %zu-byte "
                        "element", op, what, t->offset, esize);
    for (int i = 0; i < OX_MAX_DIMS; i++)
        if (t->nb[i] % (int64_t)esize)
            return ox__fail(ctx, OX_ERR_INVALID, "%s: %s: stride %d (%lld bytes) is not a multiple "
                            "of the %zu-byte element", op, what, i, (long long)t->nb[i], esize);
    /* Lowest and highest byte touched, with overflow checks: every dimension
     * must be positive, strides may be negative or zero (broadcast views). */
    uint64_t lo = t->offset, hi = t->offset;
    for (int i = 0; i < OX_MAX_DIMS; i++) {
        if (t->ne[i] <= 0 || t->ne[i] > ((int64_t)1 << 40))
            return ox__fail(ctx, OX_ERR_INVALID, "%s: %s %s: dimension %d is %lld", op, what,
                            ox__shape_str(t, shape, sizeof shape), i, (long long)t->ne[i]);
        int64_t nb = t->nb[i] < 0 ? -t->nb[i] : t->nb[i];
        if (nb > ((int64_t)1 << 50))
            return ox__fail(ctx, OX_ERR_INVALID, "%s: %s: stride %d is %lld bytes", op, what, i,
                            (long long)t->nb[i]);
        int64_t count = i == 0 && block > 1 ? t->ne[0] / block : t->ne[i];
        uint64_t span = (uint64_t)(count - 1) * (uint64_t)nb;
        if (count > 1 && span / (uint64_t)(count - 1) != (uint64_t)nb)
            return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: %s %s spans too many bytes", op, what,
                            ox__shape_str(t, shape, sizeof shape));
        if (t->nb[i] < 0) {
            if (span > lo) goto out_of_range;
            lo -= span;
        } else {
            if (hi + span < hi) goto out_of_range;
            hi += span;
        }
    }
    hi += ox_dtype_size(t->dtype);
    if (hi > t->buffer->size) goto out_of_range;
    return OX_OK;
out_of_range:
    return ox__fail(ctx, OX_ERR_OUT_OF_RANGE,
                    "%s: %s %s at offset %zu with strides [%lld,%lld,%lld,%lld] reaches past the "
                    "end of its %zu-byte buffer",
                    op, what, ox__shape_str(t, shape, sizeof shape), t->offset,
                    (long long)t->nb[0], (long long)t->nb[1], (long long)t->nb[2],
                    (long long)t->nb[3], t->buffer->size);
}

ox_status ox_tensor_check(const ox_tensor *t, const char *what)
{
    ox_context *ctx = NULL;
    if (!t) return ox__fail(NULL, OX_ERR_INVALID, "ox_tensor_check: tensor is NULL");
    if (ox__handle_check(t->buffer, OX__HANDLE_BUFFER, __func__, "tensor buffer", &ctx) != OX_OK)
        return OX_ERR_INVALID_HANDLE;
    return ox__tensor_check(ctx, __func__, what ? what : "tensor", t);
}

ox_status ox_tensor_alloc(ox_device *device, ox_dtype dtype, int64_t ne0, int64_t ne1, int64_t ne2,
                          int64_t ne3, ox_tensor *t)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!t) return ox__fail(ctx, OX_ERR_INVALID, "%s: t is NULL", __func__);
    memset(t, 0, sizeof *t);
    if ((unsigned)dtype >= OX_DTYPE_COUNT)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: unknown dtype %d", __func__, (int)dtype);
    int64_t ne[4] = {ne0, ne1, ne2, ne3};
    int64_t block = ox_dtype_block(dtype);
    if (ne0 <= 0 || ne0 % block)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: a %s row of %lld elements is not a whole number "
                        "of %lld-element blocks", __func__, ox_dtype_str(dtype), (long long)ne0,
                        (long long)block);
    ne[0] = ne0 / block; /* count blocks along rows */
    uint64_t bytes = ox_dtype_size(dtype);
    for (int i = 0; i < 4; i++) {
        if (ne[i] <= 0 || ne[i] > ((int64_t)1 << 40) || bytes * (uint64_t)ne[i] / (uint64_t)ne[i] != bytes)
            return ox__fail(ctx, OX_ERR_INVALID, "%s: shape [%lld,%lld,%lld,%lld] is invalid",
                            __func__, (long long)ne0, (long long)ne1, (long long)ne2,
                            (long long)ne3);
        bytes *= (uint64_t)ne[i];
    }
    if (bytes > SIZE_MAX)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: %llu bytes do not fit in size_t", __func__,
                        (unsigned long long)bytes);
    ox_buffer *buffer;
    s = ox_buffer_alloc(device, (size_t)bytes, &buffer);
    if (s != OX_OK) return s;
    *t = ox_tensor_make(buffer, 0, dtype, ne0, ne1, ne2, ne3);
    return OX_OK;
}

/* Host transfers of a whole tensor. Contiguous: one transfer. Strided: via a
 * contiguous staging tensor on the same device and ox_copy. */
static ox_status tensor_transfer(const ox_tensor *t, void *host, size_t size, bool write,
                                 const char *func)
{
    ox_context *ctx;
    if (!t) return ox__fail(NULL, OX_ERR_INVALID, "%s: t is NULL", func);
    ox_status s = ox__handle_check(t->buffer, OX__HANDLE_BUFFER, func, "t->buffer", &ctx);
    if (s != OX_OK) return s;
    if ((s = ox__tensor_check(ctx, func, "t", t)) != OX_OK) return s;
    if (!host) return ox__fail(ctx, OX_ERR_INVALID, "%s: host pointer is NULL", func);
    uint64_t bytes = (uint64_t)(ox_tensor_nelements(t) / ox_dtype_block(t->dtype)) *
                     ox_dtype_size(t->dtype);
    if (size != bytes)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: host size %zu bytes, but the tensor holds %llu",
                        func, size, (unsigned long long)bytes);
    if (ox_tensor_is_contiguous(t))
        return write ? ox_buffer_write(t->buffer, t->offset, host, size)
                     : ox_buffer_read(t->buffer, t->offset, host, size);
    ox_device *device = t->buffer->memory->device;
    ox_tensor stage;
    s = ox_tensor_alloc(device, t->dtype, t->ne[0], t->ne[1], t->ne[2], t->ne[3], &stage);
    if (s != OX_OK) return s;
    ox_queue *q = NULL;
    s = ox_queue_create(device, &q);
    if (s == OX_OK && write) {
        s = ox_buffer_write(stage.buffer, 0, host, size);
        if (s == OX_OK) s = ox_copy(q, t, &stage);
        if (s == OX_OK) s = ox_queue_finish(q);
    } else if (s == OX_OK) {
        s = ox_copy(q, &stage, t);
        if (s == OX_OK) s = ox_queue_finish(q);
        if (s == OX_OK) s = ox_buffer_read(stage.buffer, 0, host, size);
    }
    ox_queue_free(q);
    ox_buffer_free(stage.buffer);
    return s;
}

ox_status ox_tensor_write(const ox_tensor *t, const void *src, size_t size)
{
    return tensor_transfer(t, (void *)(uintptr_t)src, size, true, __func__);
}

ox_status ox_tensor_read(const ox_tensor *t, void *dst, size_t size)
{
    return tensor_transfer(t, dst, size, false, __func__);
}
