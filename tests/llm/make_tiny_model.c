/* make_tiny_model ARCH VOCAB.gguf OUT.gguf: write the tiny random-weight
 * model of tests/llm/tiny_model.h, so that another implementation
 * (scripts/peer-reference-tiny.sh runs llama.cpp) sees the very file the
 * tests build in memory. */
#include <stdio.h>

#include "llm/tiny_model.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ARCH VOCAB.gguf OUT.gguf\n"
                "  ARCH: llama (vocab ggml-vocab-llama-spm.gguf), qwen2 (ggml-vocab-gpt-2.gguf)"
                " or qwen3 (ggml-vocab-starcoder.gguf), from tests/data/tokenizer\n", argv[0]);
        return 2;
    }
    ox_context *ctx;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS};
    if (ox_context_create(&o, &ctx) != OX_OK) {
        fprintf(stderr, "make_tiny_model: %s\n", ox_errmsg(NULL));
        return 1;
    }
    ox_status s = tiny_model_write(ctx, argv[1], argv[2], argv[3]);
    if (s != OX_OK) fprintf(stderr, "make_tiny_model: %s: %s\n", argv[3], tiny_model_errmsg(ctx));
    ox_context_free(ctx);
    return s == OX_OK ? 0 : 1;
}
