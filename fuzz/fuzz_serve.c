/* libFuzzer target for ox serve's request parser (tools/ox/serve_request.c),
 * which reads JSON bodies from the network: each input is parsed as a chat
 * request, a completion request, a /tokenize and a /detokenize body. An
 * accepted request must hold what the parser promises (a message list or a
 * prompt, at most SERVE_MAX_STOPS non-empty stop strings, sampling values
 * in range); a refused one must say why. Built with clang -fsanitize=fuzzer
 * (scripts/fuzz.sh), or with replay.c as an ordinary program that runs the
 * seed corpus. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_serve: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    for (int chat = 0; chat < 2; chat++) {
        serve_request r;
        serve_error e;
        if (serve_request_parse(body, size, chat, &r, &e)) {
            expect(chat ? r.n_messages > 0 && r.messages && !r.prompt : r.prompt && !r.messages,
                   "an accepted request lacks its messages or prompt");
            for (int i = 0; i < r.n_messages; i++)
                expect(r.messages[i].content && (strcmp(r.messages[i].role, "system") == 0 ||
                                                 strcmp(r.messages[i].role, "user") == 0 ||
                                                 strcmp(r.messages[i].role, "assistant") == 0),
                       "a message with no content or an unknown role");
            expect(r.n_stop <= SERVE_MAX_STOPS, "too many stop strings");
            expect(r.logprobs >= -1 && r.logprobs <= 20, "logprobs out of range");
            for (int i = 0; i < r.n_stop; i++) expect(r.stop[i] && r.stop[i][0], "an empty stop");
            expect(r.sampling.temperature >= 0 && r.sampling.temperature <= 2 &&
                       r.sampling.top_p >= 0 && r.sampling.top_p <= 1 && r.sampling.min_p >= 0 &&
                       r.sampling.min_p <= 1 && r.sampling.top_k >= 0 && r.max_tokens >= -1,
                   "a sampling value out of range");
            serve_request_free(&r);
        } else {
            expect(e.status >= 400 && e.message[0], "a refusal without a status or message");
        }
    }
    char *content;
    bool special;
    serve_error e;
    if (serve_tokenize_parse(body, size, &content, &special, &e)) free(content);
    else expect(e.status == 400 && e.message[0], "a /tokenize refusal without a message");
    int32_t *ids;
    int n;
    if (serve_detokenize_parse(body, size, 1000, &ids, &n, &e)) {
        for (int i = 0; i < n; i++) expect(ids[i] >= 0 && ids[i] < 1000, "an id out of range");
        free(ids);
    } else {
        expect(e.status == 400 && e.message[0], "a /detokenize refusal without a message");
    }
    return 0;
}
