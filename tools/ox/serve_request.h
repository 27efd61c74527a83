/* The parser of ox serve's request bodies: JSON from the network, so a pure
 * function of the bytes (no server state), fuzzed by fuzz/fuzz_serve.c.
 * Every failure names the field and says what was expected. */
#ifndef OX_TOOLS_SERVE_REQUEST_H
#define OX_TOOLS_SERVE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openxpu/llm.h>

#define SERVE_MAX_STOPS 4 /* as OpenAI's API */

typedef struct serve_error {
    unsigned status;   /* 400, or 404 for an unknown model */
    const char *param; /* the field, or NULL */
    char message[256];
} serve_error;

/* A completion (prompt) or chat (messages) request. Absent or null fields
 * keep the defaults: max_tokens -1 (the room left in the context),
 * temperature 1, top_p 1, top_k and min_p off, no seed. */
typedef struct serve_request {
    bool chat, stream, include_usage, seed_given;
    int logprobs; /* -1: none; else the alternatives per token (top_logprobs) */
    char *model; /* NULL when not given */
    int max_tokens;
    ox_sampler_params sampling;
    float presence, frequency;
    char *stop[SERVE_MAX_STOPS];
    int n_stop;
    ox_chat_message *messages; /* chat: roles "system", "user", "assistant" */
    int n_messages;
    char *prompt; /* completion */
} serve_request;

/* Fill *e as a 400 for `param` (or NULL) with a printf-style message;
 * returns false, for `return serve_fail(...)`. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
bool serve_fail(serve_error *e, const char *param, const char *format, ...);

/* Parse `len` bytes of body. On failure *e says why and *r holds nothing
 * to free. On success free *r with serve_request_free. */
bool serve_request_parse(const char *body, size_t len, bool chat, serve_request *r, serve_error *e);
void serve_request_free(serve_request *r);

/* /tokenize: {"content": TEXT, "add_special": BOOL}; *content is malloc'ed. */
bool serve_tokenize_parse(const char *body, size_t len, char **content, bool *add_special,
                          serve_error *e);

/* /detokenize: {"tokens": [ids in [0, n_vocab)]}; *ids is malloc'ed. */
bool serve_detokenize_parse(const char *body, size_t len, int32_t n_vocab, int32_t **ids, int *n,
                            serve_error *e);

#endif /* OX_TOOLS_SERVE_REQUEST_H */
