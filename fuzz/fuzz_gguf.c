/* libFuzzer target for the GGUF reader: open the input from memory, and if
 * it is accepted, read every value and touch every tensor byte the reader
 * vouched for; if it is refused, the message must name the byte offset.
 * Built with clang -fsanitize=fuzzer (scripts/fuzz.sh), or with replay.c as
 * an ordinary program that runs the seed corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_context.h"
#include "openxpu/openxpu.h"

/* What ox quantize does with the metadata: copy every pair as the file
 * holds it into a writer; the file written must open again with the same
 * keys and value types. */
static void copy_metadata(ox_context *ctx, const ox_gguf *g)
{
    ox_gguf_writer *w;
    if (ox_gguf_writer_create(ctx, &w) != OX_OK) return;
    for (int64_t i = 0; i < ox_gguf_kv_count(g); i++)
        if (ox_gguf_writer_copy_kv(w, g, i) != OX_OK) abort();
    size_t size;
    if (ox_gguf_writer_size(w, &size) != OX_OK) abort();
    unsigned char *copy = malloc(size);
    ox_gguf *again = NULL;
    if (copy && ox_gguf_writer_write_memory(w, copy, size) == OX_OK) {
        if (ox_gguf_open_memory(ctx, copy, size, &again) != OX_OK) abort();
        if (ox_gguf_kv_count(again) != ox_gguf_kv_count(g)) abort();
        for (int64_t i = 0; i < ox_gguf_kv_count(g); i++)
            if (strcmp(ox_gguf_kv_key(again, i), ox_gguf_kv_key(g, i)) != 0 ||
                ox_gguf_kv_type(again, i) != ox_gguf_kv_type(g, i))
                abort();
        ox_gguf_close(again);
    }
    free(copy);
    ox_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static unsigned read_values(const ox_gguf *g)
{
    unsigned sum = 0;
    for (int64_t i = 0; i < ox_gguf_kv_count(g); i++) {
        const char *key = ox_gguf_kv_key(g, i);
        if (!key || ox_gguf_find(g, key) != i) abort();
        int64_t v;
        double f;
        const char *s;
        size_t n;
        ox_gguf_type elem;
        uint64_t count;
        switch (ox_gguf_kv_type(g, i)) {
        case OX_GGUF_STRING:
            if (ox_gguf_get_string(g, i, &s, &n) != OX_OK) abort();
            for (size_t k = 0; k < n; k++) sum += (unsigned char)s[k];
            break;
        case OX_GGUF_FLOAT32:
        case OX_GGUF_FLOAT64:
            if (ox_gguf_get_float(g, i, &f) != OX_OK) abort();
            sum += f > 0;
            break;
        case OX_GGUF_ARRAY:
            if (ox_gguf_get_array(g, i, &elem, &count) != OX_OK) abort();
            for (uint64_t j = 0; j < count && j < 4096; j++) {
                if (elem == OX_GGUF_STRING) {
                    if (ox_gguf_get_array_string(g, i, j, &s, &n) != OX_OK) abort();
                    if (n) sum += (unsigned char)s[n - 1];
                } else if (elem == OX_GGUF_FLOAT32 || elem == OX_GGUF_FLOAT64) {
                    if (ox_gguf_get_array_float(g, i, j, &f) != OX_OK) abort();
                } else if (elem != OX_GGUF_BOOL) {
                    ox_status st = ox_gguf_get_array_int(g, i, j, &v);
                    if (st != OX_OK && st != OX_ERR_OUT_OF_RANGE) abort();
                }
            }
            if (count && ox_gguf_get_array_int(g, i, count, &v) == OX_OK) abort();
            break;
        case OX_GGUF_BOOL: {
            bool b;
            if (ox_gguf_get_bool(g, i, &b) != OX_OK) abort();
            sum += b;
            break;
        }
        default: {
            ox_status st = ox_gguf_get_int(g, i, &v);
            if (st != OX_OK && st != OX_ERR_OUT_OF_RANGE) abort();
            break;
        }
        }
    }
    return sum;
}

static unsigned read_tensors(const ox_gguf *g)
{
    unsigned sum = 0;
    size_t file_size;
    const unsigned char *base = ox_gguf_file_data(g, &file_size);
    for (int64_t i = 0; i < ox_gguf_tensor_count(g); i++) {
        ox_gguf_tensor_info info = {.struct_size = sizeof info};
        if (ox_gguf_tensor_info_get(g, i, &info) != OX_OK) abort();
        if (ox_gguf_find_tensor(g, info.name) != i) abort();
        const unsigned char *p = info.data;
        if (p < base || info.nbytes == 0 || info.file_offset + info.nbytes > file_size) abort();
        sum += p[0] + p[info.nbytes - 1];
        ox_status st = ox_gguf_tensor_data(g, i, NULL, NULL, NULL);
        if (st != (info.dtype == OX_DTYPE_COUNT ? OX_ERR_UNSUPPORTED : OX_OK)) abort();
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static volatile unsigned sink;
    ox_context *ctx = fuzz_context();
    ox_gguf *g;
    ox_status status = ox_gguf_open_memory(ctx, data, size, &g);
    if (status == OX_OK) {
        sink = read_values(g) + read_tensors(g);
        copy_metadata(ctx, g);
        ox_gguf_close(g);
    } else {
        const char *message = ox_errmsg(ctx);
        if (status != OX_ERR_FORMAT || g != NULL || !strstr(message, "gguf: <memory>: ") ||
            !strstr(message, " at byte "))
            abort();
    }
    (void)sink;
    return 0;
}
