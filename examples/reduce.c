/* A tiled reduction with local memory and barriers (kernels/reduce.oxc):
 * the sum of 2^22 floats in two launches of the same kernel, on every
 * device, against a double-precision sum on the host. */
#include <math.h>

#include "example.h"

enum { N = 1 << 22 };

static int run(ox_device *device, ox_queue *queue, ox_program *program)
{
    ox_context *ctx = ox_device_context(device);
    ox_device_info info = {.struct_size = sizeof info};
    EXAMPLE_CHECK(ctx, ox_device_get_info(device, &info));
    /* a power-of-two work-group the device allows, at most 256 */
    size_t wg = 256;
    while (wg > info.max_work_group_size) wg /= 2;
    size_t groups = 120; /* partial sums: the second launch's input */
    float *x = malloc(N * sizeof *x);
    if (!x) return 1;
    double want = 0;
    for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 1001) / 64.0f - 7.0f, want += x[i];
    ox_buffer *bx, *parts, *total;
    ox_kernel *k;
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, N * sizeof(float), &bx));
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, groups * sizeof(float), &parts));
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, sizeof(float), &total));
    EXAMPLE_CHECK(ctx, ox_queue_write(queue, bx, 0, x, N * sizeof(float), NULL));
    EXAMPLE_CHECK(ctx, ox_program_kernel(program, "partial_sums", &k));

    /* pass 1: `groups` partial sums */
    long long n = N;
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 0, parts));
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 1, bx));
    EXAMPLE_CHECK(ctx, ox_kernel_set_local(k, 2, wg * sizeof(float)));
    EXAMPLE_CHECK(ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
    size_t global[3] = {groups * wg, 1, 1}, local[3] = {wg, 1, 1};
    EXAMPLE_CHECK(ctx, ox_kernel_launch(queue, k, global, local, NULL));
    /* pass 2: one group sums the partials */
    long long n_parts = (long long)groups;
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 0, total));
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 1, parts));
    EXAMPLE_CHECK(ctx, ox_kernel_set_scalar(k, 3, &n_parts, sizeof n_parts));
    size_t one_group[3] = {wg, 1, 1};
    EXAMPLE_CHECK(ctx, ox_kernel_launch(queue, k, one_group, local, NULL));
    float got;
    EXAMPLE_CHECK(ctx, ox_queue_read(queue, total, 0, &got, sizeof got, NULL));
    EXAMPLE_CHECK(ctx, ox_queue_finish(queue));
    /* float partial sums of ~35000 terms each: relative error well under 1e-5 */
    double err = fabs(got - want) / fabs(want);
    printf("    sum of %d floats in %zu groups of %zu: %.9g (host %.9g), relative error %.2g\n", N,
           groups, wg, got, want, err);
    ox_buffer_free(bx), ox_buffer_free(parts), ox_buffer_free(total);
    free(x);
    return !(err < 1e-5);
}

int main(int argc, char **argv)
{
    return example_main(argc, argv, "reduce.oxc", NULL, run);
}
