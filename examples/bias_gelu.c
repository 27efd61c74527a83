/* A custom fused operator, y = gelu(x + bias), with a user kernel
 * (kernels/bias_gelu.oxc) on a 2-d grid on every device, checked against
 * the host in double precision. */
#include <math.h>

#include "example.h"

enum { ROWS = 300, COLS = 1000 };

static int run(ox_device *device, ox_queue *queue, ox_program *program)
{
    ox_context *ctx = ox_device_context(device);
    size_t n = (size_t)ROWS * COLS;
    float *x = malloc(n * sizeof *x), *out = malloc(n * sizeof *out), bias[COLS];
    if (!x || !out) return 1;
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 7919) % 2001) / 250.0f - 4.0f;
    for (int c = 0; c < COLS; c++) bias[c] = (float)(c % 13) * 0.1f - 0.6f;
    ox_buffer *bx, *bb, *by;
    ox_kernel *k;
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, n * sizeof(float), &bx));
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, sizeof bias, &bb));
    EXAMPLE_CHECK(ctx, ox_buffer_alloc(device, n * sizeof(float), &by));
    EXAMPLE_CHECK(ctx, ox_queue_write(queue, bx, 0, x, n * sizeof(float), NULL));
    EXAMPLE_CHECK(ctx, ox_queue_write(queue, bb, 0, bias, sizeof bias, NULL));
    EXAMPLE_CHECK(ctx, ox_program_kernel(program, "bias_gelu", &k));
    int rows = ROWS, cols = COLS;
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 0, by));
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 1, bx));
    EXAMPLE_CHECK(ctx, ox_kernel_set_buffer(k, 2, bb));
    EXAMPLE_CHECK(ctx, ox_kernel_set_scalar(k, 3, &rows, sizeof rows));
    EXAMPLE_CHECK(ctx, ox_kernel_set_scalar(k, 4, &cols, sizeof cols));
    /* 16 x 4 work-groups over columns x rows, the grid rounded up */
    size_t local[3] = {16, 4, 1};
    size_t global[3] = {(COLS + 15) / 16 * 16, (ROWS + 3) / 4 * 4, 1};
    EXAMPLE_CHECK(ctx, ox_kernel_launch(queue, k, global, local, NULL));
    EXAMPLE_CHECK(ctx, ox_queue_read(queue, by, 0, out, n * sizeof(float), NULL));
    EXAMPLE_CHECK(ctx, ox_queue_finish(queue));
    int wrong = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double v = (double)x[i] + bias[i % COLS];
        double want = 0.5 * v * (1.0 + tanh(0.7978845608 * (v + 0.044715 * v * v * v)));
        double err = fabs(out[i] - want);
        if (err > 1e-5 * (1.0 + fabs(want))) wrong++;
        if (err > worst) worst = err;
    }
    printf("    bias + GELU on %d x %d: %d wrong, largest error %.3g\n", ROWS, COLS, wrong, worst);
    ox_buffer_free(bx), ox_buffer_free(bb), ox_buffer_free(by);
    free(x), free(out);
    return wrong != 0;
}

int main(int argc, char **argv)
{
    return example_main(argc, argv, "bias_gelu.oxc", NULL, run);
}
