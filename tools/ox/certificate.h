/* Reproducible-mode certificates (docs/CHECK.md): the JSON document
 * 'ox check --certificate' writes and '--against' reads. Reading is a
 * parser of outside input (a file made on another machine), so it checks
 * every field it uses and has a fuzz target (fuzz/fuzz_certificate.c). */
#ifndef OX_TOOLS_CERTIFICATE_H
#define OX_TOOLS_CERTIFICATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define CERTIFICATE_FORMAT "openxpu-reproducible-certificate"

typedef struct certificate {
    cJSON *doc;          /* owns everything below */
    const cJSON *cases;  /* object: case key -> 16 hexadecimal digits */
    const char *device;  /* the device's name */
    const char *version; /* OpenXPU's version that made it */
    const char *hash;    /* "xxh3-64" or "fnv1a-64" */
    const char *grid;    /* "quick" or "full" */
} certificate;

/* Parse `size` bytes of `text`. Returns 0 with *out filled (free it with
 * certificate_free), or -1 with the reason in why[] and *out empty. */
int certificate_parse(const char *text, size_t size, certificate *out, char *why, size_t cap);

/* The hash the certificate records for `key`, or NULL. */
const char *certificate_case(const certificate *c, const char *key);

void certificate_free(certificate *c);

#endif /* OX_TOOLS_CERTIFICATE_H */
