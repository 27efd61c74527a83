/* Token sampling: repetition penalty, top-k, temperature, top-p, min-p,
 * then a seeded draw (splitmix64), or greedy. Reproducible: the same seed
 * and logits give the same tokens on every machine (only float arithmetic
 * in a fixed order, and a portable generator). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "openxpu/llm.h"

#define HISTORY_MAX 4096

struct ox_sampler {
    ox_context *ctx;
    ox_sampler_params p;
    uint64_t state;
    int32_t history[HISTORY_MAX]; /* ring of recent tokens */
    int history_len, history_next;
    void *work; /* candidates, grown to the vocabulary */
    int capacity;
};

typedef struct candidate {
    int32_t id;
    float logit;
} candidate;

static uint64_t next_random(ox_sampler *s)
{
    uint64_t z = (s->state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

ox_status ox_sampler_create(ox_context *ctx, const ox_sampler_params *params, ox_sampler **out)
{
    if (!ox__handle_is_live(ctx, OX__HANDLE_CONTEXT))
        return ox__fail(NULL, OX_ERR_INVALID_HANDLE, "ox_sampler_create: ctx is not a context");
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "ox_sampler_create: out is NULL");
    *out = NULL;
    ox_sampler_params p = {.struct_size = sizeof p};
    if (params) {
        if (params->struct_size < sizeof(size_t) || params->struct_size > 4096)
            return ox__fail(ctx, OX_ERR_INVALID, "ox_sampler_create: params->struct_size is %zu",
                            params->struct_size);
        memcpy(&p, params, params->struct_size < sizeof p ? params->struct_size : sizeof p);
    }
    if (p.top_k < 0 || !(p.top_p >= 0.0f && p.top_p <= 1.0f) || !(p.min_p >= 0.0f && p.min_p <= 1.0f) ||
        !(p.repeat_penalty >= 0.0f) || p.repeat_last_n < 0 || isnan(p.temperature))
        return ox__fail(ctx, OX_ERR_INVALID,
                        "ox_sampler_create: out of range: top_k %d, top_p %g, min_p %g, "
                        "repeat_penalty %g, repeat_last_n %d",
                        p.top_k, (double)p.top_p, (double)p.min_p, (double)p.repeat_penalty,
                        p.repeat_last_n);
    if (p.repeat_last_n == 0) p.repeat_last_n = 64;
    if (p.repeat_last_n > HISTORY_MAX) p.repeat_last_n = HISTORY_MAX;
    ox_sampler *s = ox__calloc(ctx, 1, sizeof *s);
    if (!s) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_sampler_create: out of memory");
    s->ctx = ctx;
    s->p = p;
    s->state = p.seed;
    *out = s;
    return OX_OK;
}

void ox_sampler_free(ox_sampler *s)
{
    if (!s) return;
    ox__free(s->ctx, s->work, (size_t)s->capacity * sizeof(candidate));
    ox__free(s->ctx, s, sizeof *s);
}

void ox_sampler_accept(ox_sampler *s, int32_t token)
{
    if (!s) return;
    s->history[s->history_next] = token;
    s->history_next = (s->history_next + 1) % HISTORY_MAX;
    if (s->history_len < HISTORY_MAX) s->history_len++;
}

static int by_logit_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id; /* ties: lower id first */
}

#define SORTED_FIRST 256

static void swap_candidates(candidate *a, candidate *b)
{
    candidate t = *a;
    *a = *b;
    *b = t;
}

/* Move the k candidates of c[0..n) that sort first (by_logit_desc, a
 * strict order: ids are distinct) to c[0..k), sorted; the rest follow in
 * any order. Quickselect, then a sort of the k. */
static void select_sorted(candidate *c, int n, int k)
{
    if (k <= 0) return;
    int lo = 0, hi = n - 1;
    while (k < n && lo < hi) {
        int mid = lo + (hi - lo) / 2; /* the median of three as the pivot */
        if (by_logit_desc(&c[mid], &c[lo]) < 0) swap_candidates(&c[mid], &c[lo]);
        if (by_logit_desc(&c[hi], &c[lo]) < 0) swap_candidates(&c[hi], &c[lo]);
        if (by_logit_desc(&c[hi], &c[mid]) < 0) swap_candidates(&c[hi], &c[mid]);
        candidate pivot = c[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (by_logit_desc(&c[i], &pivot) < 0) i++;
            while (by_logit_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) swap_candidates(&c[i++], &c[j--]);
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)(k < n ? k : n), sizeof *c, by_logit_desc);
}

static inline bool sorts_before(const candidate *a, const candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Restore the heap below i: h[0] is the candidate that sorts last. */
static void sift_down(candidate *h, int k, int i)
{
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < k && sorts_before(&h[w], &h[l])) w = l;
        if (r < k && sorts_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        swap_candidates(&h[i], &h[w]);
        i = w;
    }
}

/* select_sorted for a small k (<= SORTED_FIRST) out of a large n: one scan
 * keeping the k best so far in a heap (most candidates fail a single
 * comparison with its worst), then a partition around the k-th best. On a
 * 262144-token vocabulary about 10x faster than the quickselect. */
static void select_prefix(candidate *c, int n, int k)
{
    if (k >= n || k > SORTED_FIRST) {
        select_sorted(c, n, k);
        return;
    }
    candidate h[SORTED_FIRST];
    memcpy(h, c, (size_t)k * sizeof *h);
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(h, k, i);
    for (int i = k; i < n; i++)
        if (sorts_before(&c[i], &h[0])) {
            h[0] = c[i];
            sift_down(h, k, 0);
        }
    candidate kth = h[0];
    int front = 0;
    for (int i = 0; i < n; i++)
        if (!sorts_before(&kth, &c[i])) swap_candidates(&c[front++], &c[i]);
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
}

/* Grow the sorted prefix c[0..sorted) of c[0..n): four times, at least. */
static int extend_sorted(candidate *c, int n, int sorted)
{
    int grown = sorted * 4 < n ? sorted * 4 : n;
    select_sorted(c + sorted, n - sorted, grown - sorted);
    return grown;
}

/* Repetition penalty on the recent tokens, as llama.cpp applies it:
 * positive logits divided, negative ones multiplied. */
static void penalize(const ox_sampler *s, candidate *c, int n_vocab)
{
    float pen = s->p.repeat_penalty;
    if (pen == 0.0f || pen == 1.0f) return;
    int n = s->history_len < s->p.repeat_last_n ? s->history_len : s->p.repeat_last_n;
    for (int i = 0; i < n; i++) {
        int32_t t = s->history[(s->history_next - 1 - i + HISTORY_MAX) % HISTORY_MAX];
        if (t < 0 || t >= n_vocab) continue;
        bool seen = false; /* penalize each token once */
        for (int j = 0; j < i && !seen; j++)
            seen = s->history[(s->history_next - 1 - j + HISTORY_MAX) % HISTORY_MAX] == t;
        if (seen) continue;
        c[t].logit = c[t].logit > 0.0f ? c[t].logit / pen : c[t].logit * pen;
    }
}

ox_status ox_sampler_sample(ox_sampler *s, const float *logits, int n_vocab, int32_t *token)
{
    if (!s || !logits || !token || n_vocab <= 0)
        return ox__fail(s ? s->ctx : NULL, OX_ERR_INVALID,
                        "ox_sampler_sample: sampler, logits or token is NULL, or n_vocab <= 0");
    if (n_vocab > s->capacity) {
        candidate *w = ox__alloc(s->ctx, (size_t)n_vocab * sizeof *w);
        if (!w) return ox__fail(s->ctx, OX_ERR_OUT_OF_MEMORY, "ox_sampler_sample: out of memory");
        ox__free(s->ctx, s->work, (size_t)s->capacity * sizeof(candidate));
        s->work = w;
        s->capacity = n_vocab;
    }
    candidate *c = s->work;
    for (int i = 0; i < n_vocab; i++) c[i] = (candidate){i, isnan(logits[i]) ? -INFINITY : logits[i]};
    penalize(s, c, n_vocab);
    if (s->p.temperature <= 0.0f) { /* greedy: first maximum */
        int best = 0;
        for (int i = 1; i < n_vocab; i++)
            if (c[i].logit > c[best].logit) best = i;
        *token = best;
        return OX_OK;
    }
    /* Only a sorted prefix is needed: the kept candidates (top-k, the
     * nucleus, min-p) are the first ones, and a draw almost always lands
     * in the first few hundred. c[0..sorted) is in by_logit_desc order and
     * holds the best; it grows when a walk reaches its end. (Sorting all
     * of a 262144-token vocabulary cost 30-50 ms a token.) */
    int n = n_vocab;
    if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
    int sorted = n < SORTED_FIRST ? n : SORTED_FIRST;
    if (n < n_vocab) sorted = n; /* top-k: exactly the k best, sorted */
    select_prefix(c, n_vocab, sorted);
    double max = c[0].logit, sum = 0.0;
    if (isinf(max) && max < 0) return ox__fail(s->ctx, OX_ERR_INVALID, "ox_sampler_sample: every "
                                                                       "logit is -inf");
    float inv_t = 1.0f / s->p.temperature, fmax_ = (float)max;
    for (int i = 0; i < n; i++) {
        float pr = expf((c[i].logit - fmax_) * inv_t); /* in float: 2-3x faster than double */
        c[i].logit = pr; /* the same order: exp is monotonic */
        sum += pr;
    }
    if (s->p.top_p > 0.0f && s->p.top_p < 1.0f) {
        double acc = 0.0;
        for (int i = 0; i < n; i++) {
            if (i == sorted) sorted = extend_sorted(c, n, sorted);
            acc += c[i].logit / sum;
            if (acc >= s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0.0f) {
        double floor_p = s->p.min_p * c[0].logit;
        int keep = 1;
        for (; keep < n; keep++) {
            if (keep == sorted) sorted = extend_sorted(c, n, sorted);
            if (c[keep].logit < floor_p) break;
        }
        n = keep;
    }
    sum = 0.0;
    for (int i = 0; i < n; i++) sum += c[i].logit;
    double r = (double)(next_random(s) >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0.0;
    int pick = -1;
    for (int i = 0; i < n && pick < 0; i++) {
        if (i == sorted) sorted = extend_sorted(c, n, sorted);
        acc += c[i].logit;
        if (r < acc) pick = i;
    }
    if (pick < 0) { /* rounding left r at the very end: the last of the sorted order */
        if (sorted < n) select_sorted(c + sorted, n - sorted, n - sorted);
        pick = n - 1;
    }
    *token = c[pick].id;
    return OX_OK;
}
