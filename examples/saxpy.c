/* SAXPY, y = a * x + y, with a user kernel (kernels/saxpy.oxc) on every
 * device, checked element by element against the host. */
#include <math.h>

#include "example.h"

enum { N = 1000003, GROUP = 64 };

static int run(ox_device *device, ox_queue *queue, ox_program *program)
{
    ox_context *ctx = ox_device_context(device);
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *out = malloc(N * sizeof *out);
    if (!x || !y || !out) return 1;
    for (int i = 0; i < N; i++) x[i] = (float)(i % 1000) * 0.25f, y[i] = 1.0f - (float)(i % 77);
    ox_buffer *bx, *by;
    ox_kernel *k;
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, N * sizeof(float), &bx));
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, N * sizeof(float), &by));
    EXAMPLE_CHECK(ctx, ox_queue_write(queue, bx, 0, x, N * sizeof(float), NULL));
    EXAMPLE_CHECK(ctx, ox_queue_write(queue, by, 0, y, N * sizeof(float), NULL));
    EXAMPLE_CHECK(ctx, ox_program_kernel(program, "saxpy", &k));
    float a = 3.0f;
    int n = N;
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 0, by));
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 1, bx));
    EXAMPLE_CHECK(ctx, ox_kernel_set_scalar(k, 2, &a, sizeof a));
    EXAMPLE_CHECK(ctx, ox_kernel_set_scalar(k, 3, &n, sizeof n));
    size_t global[3] = {(N + GROUP - 1) / GROUP * GROUP, 1, 1}, local[3] = {GROUP, 1, 1};
    EXAMPLE_CHECK(ctx, ox_kernel_launch(queue, k, global, local, NULL));
    EXAMPLE_CHECK(ctx, ox_queue_read(queue, by, 0, out, N * sizeof(float), NULL));
    EXAMPLE_CHECK(ctx, ox_queue_finish(queue));
    int wrong = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double want = (double)a * x[i] + y[i], err = fabs(out[i] - want);
        /* a product and a sum in float: within 2 roundings of the exact value */
        if (err > 2.5 * 5.96e-8 * (fabs(want) + fabs((double)a * x[i]))) wrong++;
        if (err > worst) worst = err;
    }
    printf("    saxpy of %d floats: %d wrong, largest error %.3g\n", N, wrong, worst);
    ox_buffer_free(bx);
    ox_buffer_free(by);
    free(x), free(y), free(out);
    return wrong != 0;
}

int main(int argc, char **argv)
{
    return example_main(argc, argv, "saxpy.oxc", NULL, run);
}
