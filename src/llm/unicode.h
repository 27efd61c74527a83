/* Unicode helpers for the tokenizer: UTF-8 decoding that never fails, the
 * character classes the pre-tokenizers test (letter, number, punctuation,
 * white space), and GPT-2's byte-to-character mapping. */
#ifndef OX_LLM_UNICODE_H
#define OX_LLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Character classes; white space is a flag on top of the category. */
enum {
    OX__UCAT_OTHER = 0,
    OX__UCAT_LETTER = 1,      /* \p{L} */
    OX__UCAT_NUMBER = 2,      /* \p{N} */
    OX__UCAT_PUNCTUATION = 3, /* \p{P} */
    OX__UCAT_MASK = 3,
    OX__UCAT_SPACE = 4        /* \s (Unicode White_Space) */
};

/* Length of the UTF-8 sequence at text[0..size), size > 0, and its code
 * point in *cpt. A malformed sequence counts as one byte with code point
 * U+FFFD, so every byte string decodes. */
size_t ox__utf8_decode(const char *text, size_t size, uint32_t *cpt);

/* The length a lead byte announces (1 for ASCII and stray continuation
 * bytes), as SentencePiece-style splitting uses it. */
size_t ox__utf8_lead_length(unsigned char byte);

/* Encode cpt (<= 0x10FFFF) into out[4]; returns the byte count. */
size_t ox__utf8_encode(uint32_t cpt, char *out);

/* OX__UCAT_* class of a code point, with OX__UCAT_SPACE or'ed in. */
unsigned ox__unicode_class(uint32_t cpt);

/* GPT-2's reversible byte mapping: printable bytes map to themselves, the
 * rest to U+0100 upwards. ox__byte_from_unicode returns -1 for a code
 * point no byte maps to. */
uint32_t ox__unicode_from_byte(unsigned char byte);
int ox__byte_from_unicode(uint32_t cpt);

#endif /* OX_LLM_UNICODE_H */
