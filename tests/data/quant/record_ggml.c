/* Records what ggml's quantizers make of fixed inputs, for
 * tests/ops/test_quantize.c: writes inputs.f32 (ROWS rows of N floats,
 * little-endian) and, for each type, <type>.bin (the ROWS quantized rows,
 * as ggml_quantize_chunk writes them without an importance matrix, which
 * is what llama-quantize does without --imatrix).
 *
 * Built against a user's ggml (never part of this project's build); the
 * commands are in README.md. Our own code: it only calls ggml's public
 * ggml_quantize_chunk. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

#define ROWS 16
#define N 1024

static uint64_t state = 0x0123456789abcdefULL;

static double uniform(void) /* [0, 1) */
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double gauss(void) /* roughly normal, variance 1 */
{
    return (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7320508;
}

/* Row r: a distribution that exercises one corner of the quantizers. */
static float value(int r, int i)
{
    int block = i / 32;
    switch (r) {
    case 0: return (float)(uniform() * 2 - 1);
    case 1: return (float)(gauss() * 0.02); /* trained weights' scale */
    case 2: return (float)(gauss() * 0.02 * (uniform() < 0.01 ? 20 : 1)); /* outliers */
    case 3: return (float)uniform();              /* all positive: min 0 */
    case 4: return (float)(-uniform());           /* all negative */
    case 5: return (float)(gauss() * 1e-6);       /* tiny */
    case 6: return (float)(gauss() * 1e3);        /* large */
    case 7: return block % 2 ? 0.5f : -0.25f;     /* constant blocks */
    case 8: return 0.0f;                          /* zeros */
    case 9: return uniform() < 0.9 ? 0.0f : (float)gauss(); /* sparse */
    case 10: return (float)(floor(uniform() * 16) - 8);      /* integers: ties */
    case 11: return (float)(gauss() * pow(10.0, block % 7 - 3)); /* scale per block */
    case 12: return (float)((floor(uniform() * 33) - 16) * 0.05); /* half steps */
    case 13: return (float)(-log(uniform() + 1e-12) * (uniform() < 0.5 ? -1 : 1)); /* tails */
    case 14: return i % 32 == 7 ? 3.0f : 1.0f;    /* one outlier a block */
    default: return (float)(gauss() * (i % 64 < 8 ? 1.0 : 1e-20)); /* below the groups' epsilon */
    }
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    static float x[ROWS * N];
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < N; i++) x[r * N + i] = value(r, i);
    char path[4096];
    snprintf(path, sizeof path, "%s/inputs.f32", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof x, 1, f) != 1 || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    const struct {
        enum ggml_type type;
        const char *name;
    } types[] = {{GGML_TYPE_F16, "f16"},   {GGML_TYPE_BF16, "bf16"}, {GGML_TYPE_Q8_0, "q8_0"},
                 {GGML_TYPE_Q4_0, "q4_0"}, {GGML_TYPE_Q4_1, "q4_1"}, {GGML_TYPE_Q5_0, "q5_0"},
                 {GGML_TYPE_Q5_1, "q5_1"}, {GGML_TYPE_Q4_K, "q4_k"}, {GGML_TYPE_Q5_K, "q5_k"},
                 {GGML_TYPE_Q6_K, "q6_k"}};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t bytes = ggml_row_size(types[t].type, N) * ROWS;
        void *q = calloc(1, bytes);
        if (!q) return 1;
        size_t wrote = ggml_quantize_chunk(types[t].type, x, q, 0, ROWS, N, NULL);
        snprintf(path, sizeof path, "%s/%s.bin", dir, types[t].name);
        f = fopen(path, "wb");
        if (wrote != bytes || !f || fwrite(q, bytes, 1, f) != 1 || fclose(f) != 0) {
            perror(path);
            return 1;
        }
        free(q);
        printf("%s: %zu bytes\n", path, bytes);
    }
    return 0;
}
