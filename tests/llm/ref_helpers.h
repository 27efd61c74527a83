/* What the tests against llama.cpp's recorded outputs share
 * (test_reference.c on Gemma 3, test_tiny_models.c on the tiny models):
 * reading token ids from the recorded text, and the greedy choice. */
#ifndef OX_TEST_REF_HELPERS_H
#define OX_TEST_REF_HELPERS_H

#include <stdint.h>
#include <stdlib.h>

/* Space-separated decimal ids from text into ids[cap]; the count read. */
static inline int parse_ids(const char *text, int32_t *ids, int cap)
{
    int n = 0;
    char *end;
    for (long v = strtol(text, &end, 10); end != text && n < cap; v = strtol(text, &end, 10)) {
        ids[n++] = (int32_t)v;
        text = end;
    }
    return n;
}

/* The index of the largest of x[0..n) (the first, on a tie). */
static inline int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

#endif /* OX_TEST_REF_HELPERS_H */
