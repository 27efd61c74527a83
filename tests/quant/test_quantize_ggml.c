/* Quantization gives ggml's bytes: tests/data/quant holds 16 rows of 1024
 * floats (inputs.f32, each row one corner: trained-weight scales, outliers,
 * all-positive, tiny, large, constant, zero, sparse, integer ties, a scale
 * per block, values below the K-types' epsilon) and what ggml's
 * ggml_quantize_chunk made of them for every type `ox quantize` writes
 * (record_ggml.c; README.md there has the commands). Every row must give
 * the recorded bytes through the public ox_row_from_f32. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openxpu/openxpu.h>
#include <openxpu/ops.h>

#include "ox_test.h"

#define ROWS 16
#define N 1024

static void *read_file(const char *name, size_t *size)
{
    const char *dir = getenv("OX_QUANT_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data/quant", name);
    FILE *f = fopen(path, "rb");
    if (!f) OX_TEST_FAIL_AT("cannot open %s (OX_QUANT_DATA=%s)", path, dir ? dir : "(unset)");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc((size_t)n);
    if (!data || fread(data, 1, (size_t)n, f) != (size_t)n)
        OX_TEST_FAIL_AT("cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* Quantize every row as `type` and compare with <name>.bin, block by block. */
static void same_bytes_as_ggml(ox_dtype type, const char *name)
{
    size_t in_size, ref_size;
    float *x = read_file("inputs.f32", &in_size);
    uint8_t *ref = read_file(name, &ref_size);
    size_t row_bytes = ox_dtype_row_size(type, N), block_bytes = row_bytes / (N / ox_dtype_block(type));
    ASSERT_EQ(in_size, sizeof(float) * ROWS * N);
    ASSERT_EQ(ref_size, row_bytes * ROWS);
    uint8_t *q = malloc(row_bytes);
    ASSERT(q != NULL);
    int wrong = 0, blocks = 0;
    for (int r = 0; r < ROWS; r++) {
        memset(q, 0xA5, row_bytes);
        ASSERT_EQ(ox_row_from_f32(type, x + (size_t)r * N, q, N), OX_OK);
        for (size_t b = 0; b < row_bytes; b += block_bytes, blocks++) {
            const uint8_t *want = ref + (size_t)r * row_bytes + b;
            if (memcmp(q + b, want, block_bytes) == 0) continue;
            if (wrong++ < 3) {
                size_t at = 0;
                while (q[b + at] == want[at]) at++;
                printf("  %s row %d block %zu: byte %zu is 0x%02x, ggml wrote 0x%02x\n", name, r,
                       b / block_bytes, at, q[b + at], want[at]);
            }
        }
    }
    printf("  %s: %d of %d blocks differ from ggml's\n", name, wrong, blocks);
    ASSERT_EQ(wrong, 0);
    free(q);
    free(ref);
    free(x);
}

OX_TEST(f16_and_bf16) { same_bytes_as_ggml(OX_DTYPE_F16, "f16.bin"); same_bytes_as_ggml(OX_DTYPE_BF16, "bf16.bin"); }
OX_TEST(q8_0) { same_bytes_as_ggml(OX_DTYPE_Q8_0, "q8_0.bin"); }
OX_TEST(q4_0) { same_bytes_as_ggml(OX_DTYPE_Q4_0, "q4_0.bin"); }
OX_TEST(q4_1) { same_bytes_as_ggml(OX_DTYPE_Q4_1, "q4_1.bin"); }
OX_TEST(q5_0) { same_bytes_as_ggml(OX_DTYPE_Q5_0, "q5_0.bin"); }
OX_TEST(q5_1) { same_bytes_as_ggml(OX_DTYPE_Q5_1, "q5_1.bin"); }
OX_TEST(q4_k) { same_bytes_as_ggml(OX_DTYPE_Q4_K, "q4_k.bin"); }
OX_TEST(q5_k) { same_bytes_as_ggml(OX_DTYPE_Q5_K, "q5_k.bin"); }
OX_TEST(q6_k) { same_bytes_as_ggml(OX_DTYPE_Q6_K, "q6_k.bin"); }

OX_TEST_MAIN(f16_and_bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)
