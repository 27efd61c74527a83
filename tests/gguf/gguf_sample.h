/* A small GGUF file with every metadata type and tensors of several ggml
 * types, built with the writer; shared by the GGUF tests. */
#ifndef OX_TESTS_GGUF_SAMPLE_H
#define OX_TESTS_GGUF_SAMPLE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"

/* The tensors of the sample: name, ggml type, n_dims, ne. */
typedef struct sample_tensor {
    const char *name;
    uint32_t ggml_type;
    uint32_t n_dims;
    int64_t ne[4];
} sample_tensor;

static const sample_tensor sample_tensors[] = {
    {"token_embd.weight", OX_GGML_TYPE_F32, 2, {8, 2, 1, 1}},
    {"blk.0.attn_norm.weight", OX_GGML_TYPE_F16, 1, {4, 1, 1, 1}},
    {"blk.0.attn_q.weight", OX_GGML_TYPE_Q4_0, 2, {32, 2, 1, 1}},
    {"blk.0.attn_k.weight", OX_GGML_TYPE_Q8_0, 3, {64, 1, 2, 1}},
    {"blk.0.ffn_up.weight", OX_GGML_TYPE_Q4_K, 2, {256, 1, 1, 1}},
    {"blk.0.ffn_down.weight", OX_GGML_TYPE_Q6_K, 4, {256, 1, 1, 2}},
    {"output_norm.weight", OX_GGML_TYPE_BF16, 1, {3, 1, 1, 1}},
    {"positions", OX_GGML_TYPE_I32, 1, {5, 1, 1, 1}},
    {"blk.0.ffn_gate.weight", OX_GGML_TYPE_Q2_K, 2, {256, 1, 1, 1}},
};
#define SAMPLE_TENSOR_COUNT (sizeof sample_tensors / sizeof sample_tensors[0])
#define SAMPLE_DATA_BYTES 4096

static const char *const sample_tokens[] = {"<pad>", "<eos>", "hello", "", "w\xc3\xb6rld"};

/* Bytes of tensor t for its shape (block sizes from the ggml table). */
static inline size_t sample_tensor_bytes(const sample_tensor *t)
{
    static const struct {
        uint32_t type;
        size_t block, bytes;
    } sizes[] = {{OX_GGML_TYPE_F32, 1, 4},    {OX_GGML_TYPE_F16, 1, 2},   {OX_GGML_TYPE_Q4_0, 32, 18},
                 {OX_GGML_TYPE_Q8_0, 32, 34}, {OX_GGML_TYPE_Q4_K, 256, 144},
                 {OX_GGML_TYPE_Q6_K, 256, 210}, {OX_GGML_TYPE_BF16, 1, 2},
                 {OX_GGML_TYPE_I32, 1, 4},    {OX_GGML_TYPE_Q2_K, 256, 84}};
    size_t n = (size_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].type == t->ggml_type) return n / sizes[i].block * sizes[i].bytes;
    return 0;
}

/* Deterministic data for tensor i, at least its size. */
static inline const unsigned char *sample_tensor_data(size_t i)
{
    static unsigned char data[SAMPLE_TENSOR_COUNT][SAMPLE_DATA_BYTES];
    for (size_t j = 0; j < SAMPLE_DATA_BYTES; j++)
        data[i][j] = (unsigned char)(j * 7u + i * 31u + 1u);
    /* Keep the f32/f16/bf16 values finite: small positive patterns. */
    if (sample_tensors[i].ggml_type == OX_GGML_TYPE_F32)
        for (size_t j = 0; j < 16; j++) {
            float f = (float)j * 0.5f - 2.0f;
            memcpy(data[i] + 4 * j, &f, 4);
        }
    return data[i];
}

/* Build the sample with `version` and `alignment` (0: default). Returns
 * OX_OK with *file malloc'ed (free it) and *size set. */
static inline ox_status sample_build(ox_context *ctx, uint32_t version, uint32_t alignment,
                              unsigned char **file, size_t *size)
{
    ox_gguf_writer *w;
    ox_status s = ox_gguf_writer_create(ctx, &w);
    if (s != OX_OK) return s;
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint32_t u32 = 4000000000u, context_length = 2048;
    int32_t i32 = -2000000000;
    float f32 = 1.5f;
    bool flag = true;
    uint64_t u64 = UINT64_C(18000000000000000000);
    int64_t i64 = INT64_C(-9000000000000000000);
    double f64 = -2.25;
    int32_t ints[] = {1, -2, 3};
    float floats[] = {0.25f, -0.5f};
    bool bools[] = {true, false, true};
    uint64_t big[] = {1, UINT64_MAX};
    if (s == OX_OK) s = ox_gguf_writer_set_version(w, version);
    if (s == OX_OK) s = ox_gguf_writer_add_string(w, "general.architecture", "testarch", 8);
    if (s == OX_OK) s = ox_gguf_writer_add_string(w, "general.name", "Sample", 6);
    if (s == OX_OK && alignment)
        s = ox_gguf_writer_add_scalar(w, "general.alignment", OX_GGUF_UINT32, &alignment);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "testarch.context_length", OX_GGUF_UINT32,
                                                  &context_length);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.u8", OX_GGUF_UINT8, &u8);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.i8", OX_GGUF_INT8, &i8);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.u16", OX_GGUF_UINT16, &u16);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.i16", OX_GGUF_INT16, &i16);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.u32", OX_GGUF_UINT32, &u32);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.i32", OX_GGUF_INT32, &i32);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.f32", OX_GGUF_FLOAT32, &f32);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.bool", OX_GGUF_BOOL, &flag);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.u64", OX_GGUF_UINT64, &u64);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.i64", OX_GGUF_INT64, &i64);
    if (s == OX_OK) s = ox_gguf_writer_add_scalar(w, "test.f64", OX_GGUF_FLOAT64, &f64);
    if (s == OX_OK) s = ox_gguf_writer_add_array(w, "test.ints", OX_GGUF_INT32, ints, 3);
    if (s == OX_OK) s = ox_gguf_writer_add_array(w, "test.floats", OX_GGUF_FLOAT32, floats, 2);
    if (s == OX_OK) s = ox_gguf_writer_add_array(w, "test.bools", OX_GGUF_BOOL, bools, 3);
    if (s == OX_OK) s = ox_gguf_writer_add_array(w, "test.big", OX_GGUF_UINT64, big, 2);
    if (s == OX_OK) s = ox_gguf_writer_add_array(w, "test.empty", OX_GGUF_UINT8, NULL, 0);
    if (s == OX_OK)
        s = ox_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", sample_tokens,
                                            sizeof sample_tokens / sizeof sample_tokens[0]);
    for (size_t i = 0; s == OX_OK && i < SAMPLE_TENSOR_COUNT; i++) {
        const sample_tensor *t = &sample_tensors[i];
        s = ox_gguf_writer_add_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne,
                                      sample_tensor_data(i), sample_tensor_bytes(t));
    }
    if (s == OX_OK) s = ox_gguf_writer_size(w, size);
    if (s == OX_OK) {
        *file = malloc(*size);
        s = *file ? ox_gguf_writer_write_memory(w, *file, *size) : OX_ERR_OUT_OF_MEMORY;
    }
    ox_gguf_writer_free(w);
    return s;
}

#endif /* OX_TESTS_GGUF_SAMPLE_H */
