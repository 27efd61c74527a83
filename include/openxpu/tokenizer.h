/* OpenXPU tokenizer: text <-> token ids from a GGUF file's vocabulary.
 *
 * ox_tokenizer_load reads the tokenizer.ggml.* metadata and supports
 *
 *   "llama"  SentencePiece-style BPE: pairs of pieces merge by score, a
 *            space becomes U+2581 ("▁"), one is prefixed to the text when
 *            tokenizer.ggml.add_space_prefix (default true) says so, and
 *            bytes no piece covers become <0xXX> byte tokens (or the
 *            unknown token when the vocabulary has none).
 *   "gpt2"   byte-level BPE: the text is split by the pre-tokenizer that
 *            tokenizer.ggml.pre names ("default", "gpt-2", "llama3",
 *            "llama-bpe", "qwen2", "falcon", "starcoder", "deepseek-coder",
 *            ... see ox_tokenizer_load), each byte is mapped to a printable
 *            character, and pieces merge by tokenizer.ggml.merges rank.
 *
 * "bert" (WordPiece) and other models are refused with OX_ERR_UNSUPPORTED.
 * Token ids follow llama.cpp's tokenizer exactly on its published test
 * strings (tests/tokenizer). Any byte string may be encoded: malformed
 * UTF-8 passes through byte fallback or the byte mapping.
 *
 * The tokenizer copies what it needs: the GGUF file may be closed after
 * ox_tokenizer_load. A tokenizer is immutable, so threads may share it. */
#ifndef OPENXPU_TOKENIZER_H
#define OPENXPU_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "openxpu/context.h"
#include "openxpu/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_tokenizer ox_tokenizer;

/* Token types, as tokenizer.ggml.token_type numbers them. */
typedef enum ox_token_type {
    OX_TOKEN_NORMAL = 1,
    OX_TOKEN_UNKNOWN = 2,
    OX_TOKEN_CONTROL = 3,
    OX_TOKEN_USER_DEFINED = 4,
    OX_TOKEN_UNUSED = 5,
    OX_TOKEN_BYTE = 6
} ox_token_type;

/* Flags of ox_tokenizer_encode. */
enum {
    /* Start with the BOS token when the vocabulary asks for it
     * (tokenizer.ggml.add_bos_token; default true for "llama", false for
     * "gpt2"), and end with EOS when add_eos_token is set. */
    OX_TOKENIZE_ADD_BOS = 1u << 0,
    /* Control and unknown-type token texts in the input ("<|im_start|>",
     * "<start_of_turn>") become their ids. User-defined tokens always do. */
    OX_TOKENIZE_PARSE_SPECIAL = 1u << 1
};

/* Flags of ox_tokenizer_decode_flags. */
enum {
    /* Control tokens decode to their text instead of nothing. */
    OX_DECODE_SPECIAL = 1u << 0
};

/* Build a tokenizer from `gguf`'s metadata. The caller frees *out with
 * ox_tokenizer_free. Errors: OX_ERR_FORMAT naming the missing or malformed
 * key ("tokenizer.ggml.tokens missing", "tokenizer.ggml.scores has 10
 * entries, tokenizer.ggml.tokens 32000"), OX_ERR_UNSUPPORTED for a model
 * or pre-tokenizer this reader does not implement, OX_ERR_OUT_OF_MEMORY.
 * On failure *out is NULL. */
OX_API ox_status ox_tokenizer_load(ox_context *ctx, const ox_gguf *gguf, ox_tokenizer **out);

/* Accepts NULL. */
OX_API void ox_tokenizer_free(ox_tokenizer *tok);

/* Encode `len` bytes of `text` (any bytes; need not be NUL-terminated).
 * Up to `capacity` ids go to `ids`; *count receives the number the text
 * needs. capacity 0 (ids may be NULL) is a sizing call and returns OX_OK;
 * otherwise a capacity below *count gives OX_ERR_OUT_OF_RANGE (the first
 * `capacity` ids are written). */
OX_API ox_status ox_tokenizer_encode(const ox_tokenizer *tok, const char *text, size_t len,
                                     unsigned flags, int32_t *ids, size_t capacity,
                                     size_t *count);

/* Decode `n` ids to bytes: "▁" becomes a space, byte tokens their byte,
 * byte-level pieces their bytes; control tokens give nothing. For
 * "llama" vocabularies with a space prefix, the first piece (after a
 * leading BOS) loses its leading space. *len receives the byte count;
 * the text and a terminating NUL are written when cap > *len. cap 0 (out
 * may be NULL) is a sizing call and returns OX_OK; a cap of at least 1
 * but not above *len gives OX_ERR_OUT_OF_RANGE. An id outside the
 * vocabulary gives OX_ERR_INVALID. */
OX_API ox_status ox_tokenizer_decode(const ox_tokenizer *tok, const int32_t *ids, size_t n,
                                     char *out, size_t cap, size_t *len);

/* ox_tokenizer_decode with OX_DECODE_* flags. */
OX_API ox_status ox_tokenizer_decode_flags(const ox_tokenizer *tok, const int32_t *ids, size_t n,
                                           unsigned flags, char *out, size_t cap, size_t *len);

/* The vocabulary's text of token `id` as stored ("▁Hello", "Ġworld",
 * "<0x0A>"), NUL-terminated, borrowed until ox_tokenizer_free; NULL for an
 * id out of range. A text holding a NUL byte is cut there. */
OX_API const char *ox_tokenizer_token_text(const ox_tokenizer *tok, int32_t id);

/* The type of token `id`; 0 for an id out of range. */
OX_API ox_token_type ox_tokenizer_token_type(const ox_tokenizer *tok, int32_t id);

/* Number of tokens; 0 for NULL. */
OX_API int32_t ox_tokenizer_vocab_size(const ox_tokenizer *tok);

/* Special ids; -1 when the vocabulary has none. EOT is
 * tokenizer.ggml.eot_token_id, else the first of "<end_of_turn>",
 * "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>" present as a
 * control token. */
OX_API int32_t ox_tokenizer_bos(const ox_tokenizer *tok);
OX_API int32_t ox_tokenizer_eos(const ox_tokenizer *tok);
OX_API int32_t ox_tokenizer_eot(const ox_tokenizer *tok);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_TOKENIZER_H */
