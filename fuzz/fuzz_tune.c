/* libFuzzer target for the tuning file's line reader (src/ops/tune.c),
 * which reads a file anyone can edit: each line of the input is parsed;
 * an accepted line is written back (ox__tune_format_line) and read again,
 * and must give the same entry. Built with clang -fsanitize=fuzzer
 * (scripts/fuzz.sh), or with replay.c as an ordinary program that runs the
 * seed corpus. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/tune.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const ox__tune_line *a, const ox__tune_line *b)
{
    const ox__tune_family_desc *d = ox__tune_family_get(a->family);
    int equal = a->family == b->family && strcmp(a->cls, b->cls) == 0 &&
                a->source == b->source && a->driver == b->driver;
    for (int i = 0; equal && i < d->n_params; i++) equal = a->params.v[i] == b->params.v[i];
    if (!equal) {
        fprintf(stderr, "fuzz_tune: an accepted line does not read back the same\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[1024];
    size_t at = 0;
    while (at < size) {
        size_t n = 0;
        while (at < size && data[at] != '\n' && n + 1 < sizeof line) line[n++] = (char)data[at++];
        while (at < size && data[at] != '\n') at++; /* the rest of a long line */
        at++;
        line[n] = '\0';
        if (strlen(line) != n) continue; /* a NUL inside: fgets-based readers stop there */
        ox__tune_line e, again;
        if (ox__tune_parse_line(line, &e) != NULL) continue;
        char written[1024];
        int w = ox__tune_format_line(written, sizeof written, &e);
        if (w <= 0) continue;
        if (ox__tune_parse_line(written, &again) != NULL) {
            fprintf(stderr, "fuzz_tune: a written line is refused: %s\n", written);
            abort();
        }
        same(&e, &again);
    }
    return 0;
}
