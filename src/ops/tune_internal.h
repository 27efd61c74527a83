/* Fault injection for the tuner's tests: when set, called with each
 * candidate's result before it is checked; returning true marks the
 * candidate as sabotaged (the hook may have changed the result): if it
 * passed the check anyway, it would be timed as taking 1 ns. A test makes
 * one candidate wrong and fast this way, and checks that it is rejected. */
#ifndef OX_OPS_TUNE_INTERNAL_H
#define OX_OPS_TUNE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "ops/tune.h"

typedef bool (*ox__tune_fault_fn)(int family, const ox__tune_params *params, float *result,
                                  size_t n, void *user);
extern ox__tune_fault_fn ox__tune_fault;
extern void *ox__tune_fault_user;
/* Tests: the least bytes a model's decode step is repeated to (default
 * 128 MiB, past the last-level caches), so that a test's step stays small. */
extern double ox__tune_step_min_bytes;

#endif /* OX_OPS_TUNE_INTERNAL_H */
