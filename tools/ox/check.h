/* What 'ox check' and 'ox bench' run on each device.
 *
 * Two groups of checks:
 * - runtime checks (check_runtime.c): small functions in a table, run first;
 * - op cases (check_ops.c): one operator, dtype and shape each, run on the
 *   device and compared with a reference by normalized mean squared error.
 * cmd_check.c runs both and reports; cmd_bench.c times a few op cases. */
#ifndef OX_TOOLS_CHECK_H
#define OX_TOOLS_CHECK_H

#include <stdint.h>

#include <openxpu/openxpu.h>
#include <openxpu/ops.h>

#include "cli.h"

/* ---- runtime checks ------------------------------------------------------ */

typedef enum check_result {
    CHECK_PASS = 0,
    CHECK_FAIL = 1,
    CHECK_SKIP = 2 /* does not apply to this device; the detail says why */
} check_result;

/* What a check gets to work with, and where it leaves its detail line. */
typedef struct check_env {
    ox_context *ctx;
    ox_device *device;          /* the device under test */
    const ox_device_info *info; /* its description */
    ox_device *cpu;             /* the first CPU device; NULL if there is none */
    int quick;                  /* --quick: skip the largest transfers */
    char detail[256];           /* what was measured, or what went wrong */
} check_env;

typedef struct check_def {
    const char *name; /* short, stable: it keys the JSON report */
    check_result (*run)(check_env *env);
} check_def;

/* Runtime checks: memory, transfers, views, queues, events, bad input.
 * Ends with an entry whose name is NULL. */
extern const check_def check_runtime_table[];

/* ---- op cases ------------------------------------------------------------- */

#define OP_MAX_INPUTS 5

/* How an input's values are drawn (fixed-seed PRNG, then rounded to the
 * input's dtype). */
typedef enum op_fill {
    FILL_UNIFORM,    /* uniform in [lo, hi) */
    FILL_INTEGERS,   /* I32: integers uniform in [lo, hi) */
    FILL_UNIQUE_MAX, /* uniform in [lo, hi), one element per row hi + 1: no ties */
    FILL_MASK,       /* uniform in [lo, hi), a quarter -INFINITY; column 0 finite */
    FILL_MASK_EMPTY  /* FILL_MASK with row 0 entirely -INFINITY */
} op_fill;

typedef struct op_input {
    ox_dtype dtype;
    int64_t ne[4];
    int transposed; /* a strided view: memory holds dimensions 0 and 1 swapped */
    op_fill fill;
    double lo, hi;
} op_input;

typedef struct op_case op_case;
struct ox_ref_tensor;

/* One operator call: its inputs, output, tolerance and the two ways to
 * compute it. Built by the op_case_* functions below. */
struct op_case {
    const char *op;     /* "add", "gelu", "matmul": the OP column, matched by --op */
    const char *family; /* "binary", "unary", "reduce", "norm" or op: also matched */
    char dtype[24];     /* "f16", "f16*f32" (matmul a*b), "f32>f16" (copy src>dst) */
    char shape[80];     /* human-readable shapes and parameters */
    int n_inputs;
    op_input in[OP_MAX_INPUTS];
    ox_dtype out_dtype;
    int64_t out_ne[4];
    double threshold;   /* largest NMSE that passes; 0: bit-exact */
    double flops;       /* per call; 0 for memory-bound ops (rated in GB/s) */
    /* Enqueue the op on q; in[] are the inputs as tensors on q's device. */
    ox_status (*run)(ox_queue *q, const op_case *c, const ox_tensor *dst, const ox_tensor *in);
    /* The naive double reference (ops/reference.h). */
    void (*reference)(const op_case *c, struct ox_ref_tensor *dst,
                      const struct ox_ref_tensor *in);
    int kind;           /* the op's enum value, matmul flags or concat dim */
    int has_mask, has_weight, has_bias;
    int table;          /* rope: the angles as an ox_rope_table tensor, not positions */
    int prepared;       /* matmul, get_rows: the weights (b, table) passed to
                           ox_tensor_prepare_weights first, as models do */
    float param[2];     /* scale and bias, lo and hi, eps */
    ox_rope_params rope;
    ox_attention_params attention;
};

/* Constructors. Shapes are ne[4] (ne[0] innermost). */
op_case op_case_binary(ox_binary_op kind, ox_dtype dtype, const int64_t a_ne[4],
                       const int64_t b_ne[4], int a_transposed);
op_case op_case_scale(ox_dtype dtype, const int64_t ne[4], float scale, float bias);
op_case op_case_clamp(ox_dtype dtype, const int64_t ne[4], float lo, float hi);
op_case op_case_unary(ox_unary_op kind, ox_dtype dtype, const int64_t ne[4]);
op_case op_case_reduce(ox_reduce_op kind, ox_dtype dtype, const int64_t ne[4]);
/* mask_dtype < 0: no mask; else a mask of mask_rows rows (dividing ne[1]);
 * empty_row: its row 0 is entirely -INFINITY. */
op_case op_case_softmax(ox_dtype dtype, const int64_t ne[4], int mask_dtype, int64_t mask_rows,
                        int empty_row, float scale);
op_case op_case_log_softmax(ox_dtype dtype, const int64_t ne[4]);
op_case op_case_norm(int rms, ox_dtype dtype, const int64_t ne[4], int has_weight, int has_bias,
                     float eps);
op_case op_case_rope(ox_dtype dtype, const int64_t ne[4], const ox_rope_params *params);
/* ox_glu: act(gate) * up. */
op_case op_case_glu(ox_unary_op act, ox_dtype dtype, const int64_t ne[4]);
/* ox_add_rms_norm on x [ne0, rows] (F32): checks out when !check_x, else
 * the updated x; delta normalised first when has_delta_weight. */
op_case op_case_add_rms_norm(int64_t ne0, int64_t rows, int has_delta_weight, int check_x);
/* ox_matmul_many: a [K, M] F32 times n (<= 3) weight matrices of types[i],
 * N[i] rows of K each, into column slices of one dst [sum N, M]. */
op_case op_case_matmul_many(int n, const ox_dtype types[], const int64_t N[], int64_t M, int64_t K);
/* ox_rope_qk: q [D, Hq, T, 1] and k [D, Hkv, T, 1] (F32), norm weights
 * when has_weight; checks the keys (into k_dtype) when keys, else the
 * queries (F32). */
op_case op_case_rope_qk(int64_t D, int64_t Hq, int64_t Hkv, int64_t T, int has_weight, int keys,
                        ox_dtype k_dtype, const ox_rope_params *params);
/* dst[M x N] per batch; a's batch dims a_batch[0..1] divide b's. */
op_case op_case_matmul(ox_dtype a_dtype, ox_dtype b_dtype, int64_t M, int64_t N, int64_t K,
                       unsigned flags, const int64_t a_batch[2], const int64_t b_batch[2]);
op_case op_case_get_rows(ox_dtype table_dtype, ox_dtype dst_dtype, const int64_t table_ne[4],
                         const int64_t ids_ne[3]);
op_case op_case_copy(ox_dtype src_dtype, ox_dtype dst_dtype, const int64_t ne[4],
                     int src_transposed);
op_case op_case_concat(ox_dtype dtype, const int64_t a_ne[4], int64_t b_size, int dim);
/* q [D, n_q, H, B], k [D, n_kv, H_kv, B], v [Dv, n_kv, H_kv, B]. */
op_case op_case_attention(ox_dtype kv_dtype, int64_t D, int64_t Dv, int64_t n_q, int64_t n_kv,
                          int64_t H, int64_t H_kv, int64_t B, int causal, int has_mask);

/* A growable array of cases. */
typedef struct op_case_list {
    op_case *cases;
    int count;
    int capacity;
} op_case_list;

/* The same case with its weights prepared (op_case.prepared). */
op_case op_case_prepared(op_case c);

/* Append every case of the conformance grid (the smaller one when
 * `quick`). Returns 0, or -1 out of memory. */
int op_cases_build(op_case_list *list, int quick);

/* Append one case. Returns 0, or -1 out of memory. */
int op_case_list_add(op_case_list *list, const op_case *c);

void op_case_list_free(op_case_list *list);

/* True if `name` is c's op or c's family. */
int op_case_matches(const op_case *c, const char *name);

/* The outcome of one case on one device. */
typedef struct op_result {
    int passed;
    double nmse;        /* I32 outputs: the fraction of differing elements; NaN: not compared */
    double max_abs_err; /* NaN: not compared */
    double seconds;     /* best time of one call; 0 if it did not run */
    double gbps;        /* bytes read and written / seconds / 1e9; 0 if rated in GFLOP/s */
    double gflops;      /* flops / seconds / 1e9; 0 if rated in GB/s */
    char detail[1024];  /* what failed, or "" */
    int bitwise;        /* compared bit for bit with the CPU (reproducible mode) */
    char bits[24];      /* the output's bits hashed (cli_bytes_hash, hex); "" if it did not run */
} op_result;

/* Run `c` on `device` and compare it with a reference: on the built-in CPU
 * backend, the naive double reference ops; elsewhere the same op run on
 * `cpu`. Checks that two runs give the same bits and that no NaN or
 * infinity appears where the reference is finite. In a reproducible
 * context a device other than the CPU must give the CPU's bits exactly. */
void op_case_check(const op_case *c, ox_device *device, ox_device *cpu, op_result *result);

/* Time `c` on `device`: one warm-up call, then up to `max_runs` calls,
 * stopping early once `budget` seconds were spent; each waits with
 * ox_queue_finish. *best is the fastest, *runs the number timed. On failure
 * returns the status with the message in error[]. */
ox_status op_case_time(const op_case *c, ox_device *device, int max_runs, double budget,
                       double *best, int *runs, char *error, size_t error_size);

/* Bytes an op call reads and writes (every input and the output, once). */
double op_case_bytes(const op_case *c);

/* ---- the HTML report (report_html.c) ------------------------------------------ */

/* Write `report`, the JSON document of 'ox check' (docs/CHECK.md), as one
 * self-contained HTML page to `path` ("-" = stdout): a summary per device,
 * charts of the achieved throughput per op, and every row. Returns
 * CLI_EXIT_OK, or prints the error and returns CLI_EXIT_FAILURE. */
int report_html_write(const cli_command *command, const cJSON *report, const char *path);

#endif /* OX_TOOLS_CHECK_H */
