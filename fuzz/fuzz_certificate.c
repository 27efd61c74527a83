/* libFuzzer target for the certificate reader of 'ox check --against'
 * (tools/ox/certificate.c), which reads a file made on another machine. An
 * accepted document must hold what the reader promises (a name, version,
 * hash and grid, every case a 16-digit hash that certificate_case finds);
 * a refused one must say why. Built with clang -fsanitize=fuzzer
 * (scripts/fuzz.sh), or with replay.c as an ordinary program that runs the
 * seed corpus. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certificate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_certificate: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    certificate c;
    char why[256] = "";
    if (certificate_parse((const char *)data, size, &c, why, sizeof why) != 0) {
        expect(why[0] != '\0' && c.doc == NULL, "a refusal without a reason");
        return 0;
    }
    expect(c.device && c.version && c.hash && c.grid, "a field missing");
    expect(strcmp(c.grid, "quick") == 0 || strcmp(c.grid, "full") == 0, "an unknown grid");
    const cJSON *e;
    cJSON_ArrayForEach(e, c.cases) {
        const char *h = certificate_case(&c, e->string);
        expect(h && strlen(h) == 16, "a case not found, or its hash not 16 digits");
    }
    certificate_free(&c);
    return 0;
}
