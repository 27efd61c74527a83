/* Tuning the portable kernels for a device.
 *
 * Every portable kernel family (matmul, matrix-vector products, quantized
 * products, elementwise ops, rows, attention) is parameterised: tile sizes,
 * work-group shape, work per work-item, variant. Without tuning a device
 * runs the defaults of its class (GPU, or CPU-like). ox_device_tune
 * searches each family's parameters on the device within a time budget:
 * every candidate is first checked against the CPU's result for the same
 * inputs (a wrong candidate is rejected, however fast), then timed; the
 * winners are kept in a tuning file beside the kernel cache, keyed by the
 * device's name, its driver version and a hash of the kernel source, and
 * every later op call on that device (ox check included) runs them. An
 * entry for another driver or another kernel source is stale: it is
 * ignored with a warning and replaced by the next tuning. */
#ifndef OPENXPU_TUNE_H
#define OPENXPU_TUNE_H

#include "openxpu/device.h"
#include "openxpu/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One tuned problem class of one family. */
typedef struct ox_tune_result {
    size_t struct_size;
    char op[32];             /* the family: "matmul", "qmatvec", ... */
    char cls[32];            /* the problem class: "f32.f32", "q4_k", "f16" */
    char shape[64];          /* the problem measured, "M1 N16384 K4096" */
    char default_params[96]; /* "LANES=1,ROWS=16,..." */
    char best_params[96];    /* the winner (the default when nothing beat it) */
    double default_seconds;  /* one call with the defaults; 0 if it failed */
    double best_seconds;     /* one call with the winner */
    int tried;               /* candidates checked and timed */
    int rejected;            /* candidates whose results were wrong */
    int failed;              /* candidates that did not build or run */
    int stopped;             /* 1 when the budget ended the search early */
} ox_tune_result;

typedef void (*ox_tune_callback)(const ox_tune_result *result, void *user);

/* One weight matrix of a model's decode step: `rows` rows of `cols`
 * elements of `dtype` (a GGUF tensor of ne[0] = cols, ne[1] = rows), met
 * `count` times a step (once per layer). */
typedef struct ox_tune_matrix {
    ox_dtype dtype;
    int64_t rows, cols;
    int count;
} ox_tune_matrix;

typedef struct ox_tune_options {
    size_t struct_size;       /* sizeof(ox_tune_options) */
    const char *op;           /* one family (ox_tune_op_name), or NULL for all */
    double budget_seconds;    /* wall time for the whole search; 0: 120 */
    ox_tune_callback callback; /* called after each class, may be NULL */
    void *user;
    unsigned flags;           /* OX_TUNE_* */
    /* Appended: options from callers built before these fields (a smaller
     * struct_size) read as NULL / 0. A model's decode step: when given, the
     * matrix-vector families (matvec, qmatvec) time one step's products of
     * each class's dtype, in proportion, instead of their built-in shapes,
     * and skip the classes the model does not use (ox_tune_model_matrices
     * lists a GGUF file's). */
    const ox_tune_matrix *matrices;
    int n_matrices;
} ox_tune_options;

#define OX_TUNE_DRY_RUN 1u /* search, but keep nothing: neither in memory nor on disk */

/* Tune `device`. Devices that run native code only (the CPU) have nothing
 * to tune: OX_ERR_UNSUPPORTED with a message saying so. The tuning file is
 * written when the search ends; OX_ERR_IO if it cannot be (the winners
 * still apply in this process). An unknown op is OX_ERR_INVALID, and the
 * message lists the families. */
OX_API ox_status ox_device_tune(ox_device *device, const ox_tune_options *options);

/* The weight matrices a decode step of the model in `gguf` multiplies by
 * (every 2-D "*.weight" tensor but the embeddings, and the token embedding
 * where the output projection is tied to it), equal shapes and dtypes
 * merged with their count, into out[0 .. *n - 1]. Tensors of dtypes
 * OpenXPU cannot compute with are left out. OX_ERR_OUT_OF_RANGE when there
 * are more than cap distinct shapes. */
OX_API ox_status ox_tune_model_matrices(const ox_gguf *gguf, ox_tune_matrix *out, int cap, int *n);

/* The name of tunable family i (0, 1, ...), NULL past the last. */
OX_API const char *ox_tune_op_name(int i);

/* The parameters `op` runs with on `device` for problem class `cls`, as
 * "NAME=V,..." into buf; *tuned (may be NULL) is 1 when they come from
 * tuning, 0 for the device class's defaults. */
OX_API ox_status ox_device_tune_params(ox_device *device, const char *op, const char *cls,
                                       char *buf, size_t cap, int *tuned);

/* Tuned entry i (0, 1, ...) of the device, as its tuning file lists it:
 * *op the op's name, the problem class into cls and "NAME=V,..." into
 * params. OX_ERR_OUT_OF_RANGE past the last entry (every class without an
 * entry runs the device class's defaults). ox check lists them, so that a
 * report says which variants it certified. */
OX_API ox_status ox_device_tuned(ox_device *device, int i, const char **op, char *cls,
                                 size_t cls_cap, char *params, size_t params_cap);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_TUNE_H */
