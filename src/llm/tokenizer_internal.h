/* Private state shared by tokenizer.c (loading, special tokens,
 * SentencePiece, decoding) and tokenizer_bpe.c (pre-tokenizers and
 * byte-level BPE). */
#ifndef OX_LLM_TOKENIZER_INTERNAL_H
#define OX_LLM_TOKENIZER_INTERNAL_H

#include <stdbool.h>

#include "core/core.h"
#include "openxpu/tokenizer.h"

typedef enum ox__tokenizer_model { OX__TOKENIZER_SPM, OX__TOKENIZER_BPE } ox__tokenizer_model;

/* Pre-tokenizers of byte-level BPE, as llama.cpp groups tokenizer.ggml.pre. */
typedef enum ox__pre_type {
    OX__PRE_DEFAULT,
    OX__PRE_GPT2,
    OX__PRE_LLAMA3,
    OX__PRE_QWEN2,
    OX__PRE_FALCON,
    OX__PRE_STARCODER,
    OX__PRE_DEEPSEEK_CODER
} ox__pre_type;

typedef struct ox__token {
    uint32_t offset; /* of its text in ox_tokenizer.text */
    uint32_t length; /* bytes, without the NUL */
    float score;
    int32_t type;    /* ox_token_type */
    uint8_t strip;   /* OX__STRIP_*: whitespace a matched special token takes with it */
} ox__token;

#define OX__STRIP_LEFT 1u  /* the whitespace before it (llama.cpp's LSTRIP) */
#define OX__STRIP_RIGHT 2u /* the whitespace after it (RSTRIP) */

struct ox_tokenizer {
    ox_context *ctx;
    ox__tokenizer_model model;
    ox__pre_type pre;
    int32_t n_tokens;
    ox__token *tokens;
    char *text; /* every token text, NUL-terminated */
    size_t text_size;
    int32_t *token_index; /* open addressing by text: token id or -1 */
    size_t token_index_capacity;
    uint64_t *merge_keys; /* (left id << 32 | right id) + 1; 0 = empty */
    int32_t *merge_ranks;
    size_t merge_capacity;
    int32_t *specials; /* control, user-defined, unknown: longest text first */
    int32_t n_specials;
    int32_t byte_tokens[256]; /* SPM <0xXX> tokens, or -1 */
    int32_t bos, eos, eot, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
};

/* Ids collected by an encode call: the first `capacity` are stored, all
 * are counted. */
typedef struct ox__token_sink {
    int32_t *ids;
    size_t capacity;
    size_t count;
} ox__token_sink;

static inline void ox__sink_push(ox__token_sink *sink, int32_t id)
{
    if (sink->count < sink->capacity) sink->ids[sink->count] = id;
    sink->count++;
}

/* The id of the token whose text is text[0..len), or -1. */
int32_t ox__tokenizer_find(const ox_tokenizer *tok, const char *text, size_t len);

/* Merge rank of the pair (left, right), or -1. */
int32_t ox__tokenizer_merge_rank(const ox_tokenizer *tok, int32_t left, int32_t right);

/* The pre-tokenizer tokenizer.ggml.pre names; false if unknown. */
bool ox__bpe_pre_from_name(const char *name, size_t len, ox__pre_type *pre);

/* Byte-level BPE of one stretch of plain text. */
ox_status ox__bpe_encode(const ox_tokenizer *tok, const char *text, size_t len,
                         ox__token_sink *sink);

/* A min-heap of candidate merges, ordered by key then left symbol. */
typedef struct ox__merge_candidate {
    double key;
    uint32_t left, right;
    uint32_t size; /* bytes of the merged text when the candidate was made */
} ox__merge_candidate;

typedef struct ox__merge_heap {
    ox_context *ctx;
    ox__merge_candidate *items;
    size_t count, capacity;
} ox__merge_heap;

ox_status ox__heap_push(ox__merge_heap *heap, ox__merge_candidate item);
bool ox__heap_pop(ox__merge_heap *heap, ox__merge_candidate *item);
void ox__heap_free(ox__merge_heap *heap);

/* The symbols merges work on: byte ranges of one buffer in a linked list. */
typedef struct ox__symbol {
    uint32_t start, length;
    int32_t prev, next; /* -1 at the ends */
    int32_t id;         /* token of the text (BPE), or -1 */
} ox__symbol;

#endif /* OX_LLM_TOKENIZER_INTERNAL_H */
