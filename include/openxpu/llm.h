/* OpenXPU language models: load a GGUF model onto a device and evaluate
 * tokens with a KV cache.
 *
 * A model is a set of weights (memory-mapped from the file on the CPU, no
 * copy; copied to other devices) and hyper-parameters read from the GGUF
 * metadata. A session holds one sequence's KV cache and position: evaluate a
 * prompt in one call (batched), then one token per call. Architectures are
 * graph builders over the op library (openxpu/ops.h): no kernels of their
 * own. Supported: llama (Llama 2/3, TinyLlama, SmolLM and kin), qwen2,
 * qwen3, gemma3. */
#ifndef OPENXPU_LLM_H
#define OPENXPU_LLM_H

#include "openxpu/gguf.h"
#include "openxpu/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_model ox_model;
typedef struct ox_session ox_session;

/* Hyper-parameters of a loaded model. Set struct_size before the call. */
typedef struct ox_model_info {
    size_t struct_size;
    char arch[32];        /* "llama", "qwen2", "qwen3" or "gemma3" */
    char name[128];       /* general.name, or "" */
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ff;
    int n_ctx_train;      /* context length the model was trained for */
    uint64_t weight_bytes; /* bytes of tensor data (all layers) */
    int first_layer, last_layer; /* the layers loaded: [first, last) */
    uint64_t loaded_bytes; /* bytes of tensor data this model placed on its device */
} ox_model_info;

/* Load the model in the GGUF file `path` for `device`. An unsupported
 * architecture is an error naming it; a missing key or tensor names it.
 * *out is owned by the caller: free with ox_model_free (before the
 * context).
 *
 * The file is memory-mapped and stays mapped while the model lives (on the
 * CPU its weights are read from the mapping, never copied). The file must
 * not change meanwhile: truncating or rewriting it in place makes the next
 * read of a lost page raise SIGBUS in the reading thread, which no library
 * call can turn into an error. Replace a model file by writing a new one
 * and renaming it over the old (the mapping keeps the old one), as
 * ox quantize does; a program that must survive in-place changes handles
 * SIGBUS itself (the ox tool names the file and exits 1). */
OX_API ox_status ox_model_load(ox_device *device, const char *path, ox_model **out);

/* Options of ox_model_load_ex: zero-initialize, set struct_size. */
typedef struct ox_model_load_options {
    size_t struct_size;
    /* Called as the weights reach the device (fraction 0..1, last call
     * 1), from the loading thread; NULL: none. Weights the device maps
     * from the file need no copy: one call with 1. */
    void (*progress)(float fraction, void *user);
    void *progress_user;
    /* A pipeline stage: only layers [first_layer, last_layer) (both 0: all),
     * with the embeddings when first_layer is 0 and the output when
     * last_layer is the model's last. Devices that copy weights copy only
     * these; see ox_session_eval_range. */
    int first_layer, last_layer;
    /* Tensor parallel: the layers' matrices (q, k, v, o, gate, up, down)
     * split by output rows over tp_count devices, tp_devices[0] being
     * `device`, in proportion to tp_shares; each matrix product then runs on
     * all of them at once. tp_count 0 or 1: off. */
    ox_device *const *tp_devices;
    const double *tp_shares;
    int tp_count;
} ox_model_load_options;

/* ox_model_load with options (NULL: the defaults). */
OX_API ox_status ox_model_load_ex(ox_device *device, const char *path,
                                  const ox_model_load_options *options, ox_model **out);
OX_API void ox_model_free(ox_model *model);
OX_API ox_status ox_model_get_info(const ox_model *model, ox_model_info *info);

/* The model's GGUF file (for its tokenizer); borrowed until ox_model_free. */
OX_API const ox_gguf *ox_model_gguf(const ox_model *model);

/* What evaluating tokens costs, to compare a model's speed with a device's
 * limits (ox_device_measure_limits): the bytes a generation step reads and
 * the FLOP a prompt token takes. Counted from the model file over all its
 * layers, whatever layer range this model loaded. Set struct_size =
 * sizeof(ox_model_cost) before the call; fields are only ever appended.
 *
 * For n_past cached tokens and kv_bytes per cached element (2 for the
 * default F16 cache, 4 with kv_f32), one token whose logits are computed
 * reads about
 *   layer_weight_bytes + output_weight_bytes
 *     + kv_elements_per_token x kv_bytes x (n_past + 1)
 * bytes and takes about
 *   2 x (layer_weight_params + output_weight_params)
 *     + attention_flop_per_key x (n_past + 1)
 * FLOP (a token of a prompt batch whose logits are not computed: without
 * the output's share). Approximate: norms and biases count as weights,
 * activations are not counted, and sliding-window layers (Gemma 3) are
 * counted as reading the whole context. */
typedef struct ox_model_cost {
    size_t struct_size;
    uint64_t layer_weight_bytes;    /* every layer tensor (blk.N.*) of all layers */
    uint64_t layer_weight_params;   /* their elements */
    /* the final norm and the output matrix, which is the token-embedding
     * table when they are tied (Gemma); otherwise the embedding table is not
     * counted: a token reads one row of it */
    uint64_t output_weight_bytes;
    uint64_t output_weight_params;
    uint64_t kv_elements_per_token; /* K and V elements cached per token, all layers */
    double attention_flop_per_key;  /* one query against one cached key and value, all
                                     * layers: 2 x (key + value head size) x heads x layers */
} ox_model_cost;

/* Fill *cost for `model`. OX_ERR_INVALID for NULL arguments or a
 * struct_size that is too small. */
OX_API ox_status ox_model_get_cost(const ox_model *model, ox_model_cost *cost);

/* A session of up to n_ctx tokens (0: min(model's trained context, 4096)).
 * *out is owned by the caller: free with ox_session_free. */
OX_API ox_status ox_session_create(ox_model *model, int n_ctx, ox_session **out);

/* ---- a KV cache shared by sessions ----------------------------------------------- */

/* One pool of fixed-size pages of KV cache (every layer's keys and values
 * of page_size positions a page) that sessions of one model take pages
 * from as they grow and give back when rewound or freed, so that many
 * sequences share one cache with no split per sequence (a server's
 * slots). Attention reads a session's pages through its page table
 * (ox_attention_paged); results are those of a session with its own
 * cache. Sessions of one pool may run in several threads. */
typedef struct ox_kv_pool ox_kv_pool;

typedef struct ox_kv_pool_options {
    size_t struct_size;
    int n_tokens;  /* capacity in positions, rounded up to whole pages (> 0) */
    int page_size; /* positions a page: a power of two, 0: 64 */
    int kv_f32;    /* nonzero: K and V in F32 (default F16) */
} ox_kv_pool_options;

typedef struct ox_kv_pool_stats {
    size_t struct_size;
    int page_size, pages, free_pages;
    int sessions; /* sessions holding the pool */
} ox_kv_pool_stats;

OX_API ox_status ox_kv_pool_create(ox_model *model, const ox_kv_pool_options *options,
                                   ox_kv_pool **out);
/* Released once its last session is freed (sessions hold the pool). */
OX_API void ox_kv_pool_free(ox_kv_pool *pool);
OX_API ox_status ox_kv_pool_get_stats(const ox_kv_pool *pool, ox_kv_pool_stats *stats);

/* Pages a session must take from its pool to evaluate n more tokens
 * (0 for a session without a pool). */
OX_API int ox_session_pages_needed(const ox_session *session, int n);

/* Options of ox_session_create_ex: zero-initialize, set struct_size. */
typedef struct ox_session_options {
    size_t struct_size;
    int n_ctx;            /* 0: min(model's trained context, 4096), or with a
                           * pool min(trained context, the pool's positions) */
    int kv_f32;           /* nonzero: keep K and V in F32 (default F16, as
                           * llama.cpp: half the memory); with a pool, the pool's */
    /* Keep K and V in pages of this pool instead of a cache of the
     * session's own (NULL): pages are taken as the session grows, an
     * evaluation that finds too few free fails (OX_ERR_OUT_OF_MEMORY, no
     * session advanced), and ox_session_rewind gives back the pages past
     * the new position. Added after kv_f32: an older struct_size means
     * NULL. */
    ox_kv_pool *pool;
} ox_session_options;

/* ox_session_create with options (NULL: the defaults). */
OX_API ox_status ox_session_create_ex(ox_model *model, const ox_session_options *options,
                                      ox_session **out);
OX_API void ox_session_free(ox_session *session);

/* Evaluate n tokens at the session's position (all at once), append them to
 * the KV cache and, if logits is not NULL, write the n_vocab logits of the
 * last token there. Fails without changing the session if the tokens would
 * pass the context (the message says by how much) or an id is out of the
 * vocabulary. */
OX_API ox_status ox_session_eval(ox_session *session, const int32_t *tokens, int n, float *logits);

/* One pipeline stage's part of an evaluation, for a model loaded with a
 * layer range: input `tokens` when the range starts at layer 0, else
 * `hidden_in` (n x n_embd floats, the previous stage's hidden_out); output
 * the last token's logits when the range ends at the last layer (if logits
 * is not NULL), else hidden_out (n x n_embd floats). ox_session_eval is
 * this call on a whole model. */
OX_API ox_status ox_session_eval_range(ox_session *session, const int32_t *tokens,
                                       const float *hidden_in, int n, float *hidden_out,
                                       float *logits);

/* Several sessions of one model in one forward pass (continuous
 * batching): session i takes counts[i] > 0 tokens, the next ones of
 * `tokens`, at its own position, and `logits` (when not NULL) receives, for
 * each session in order, the n_vocab logits after its last token (n_seq
 * rows). The matrix products see all the tokens at once; each session's
 * attention reads its own cache. The sessions must be distinct and of one
 * whole model (not a pipeline stage). The pass uses scratch memory and a
 * queue the model keeps for batches (sized for the largest batch so far),
 * so batches of one model must not run at the same time from several
 * threads (each session's own evaluations may). A session's result
 * is the one it would get alone up to the rounding of products over a
 * different number of rows. Fails, with no session advanced, on a bad
 * argument (the message names the session) or an error of the pass. */
OX_API ox_status ox_session_eval_batch(ox_session *const *sessions, const int *counts, int n_seq,
                                       const int32_t *tokens, float *logits);

/* Tokens evaluated so far, and the session's capacity. */
OX_API int ox_session_position(const ox_session *session);
OX_API int ox_session_capacity(const ox_session *session);

/* Forget everything after the first `position` tokens (0: start over). */
OX_API ox_status ox_session_rewind(ox_session *session, int position);

/* ---- pipelines: one model over several devices ---------------------------------- */

/* A model cut into contiguous layer ranges, one per device (any backends),
 * in proportion to each device's measured speed: the devices pool into one
 * "super-node". Evaluations pass the hidden states from device to device;
 * the results are the one-device results up to each device's rounding.
 * A device that fails (backend, device or device-memory errors) is dropped:
 * the pipeline plans again on the others and replays the tokens so far, so
 * the call that saw the failure still succeeds (one warning is logged).
 * OX_FAULT_DEVICE=ID [OX_FAULT_AFTER=N] makes device ID fail from the Nth
 * evaluation on, for tests. */
typedef struct ox_pipeline ox_pipeline;

typedef struct ox_pipeline_options {
    size_t struct_size;
    int n_ctx;              /* 0: min(model's trained context, 4096) */
    int kv_f32;             /* as ox_session_options */
    /* Relative speed of each device (as many as devices); NULL: measured
     * once per device (a quantized matrix-vector product) and cached in
     * $XDG_CACHE_HOME/openxpu/calibration (OX_CALIBRATION_FILE overrides). */
    const double *speeds;
    void (*progress)(float fraction, void *user); /* weights reaching each device */
    void *progress_user;
    /* Only layers [first_layer, last_layer) (both 0: all), as one rank of a
     * pipeline across processes: see ox_pipeline_eval_range. */
    int first_layer, last_layer;
    /* Nonzero: instead of a range of layers per device, split every layer's
     * matrices by rows over all the devices (tensor parallel), in
     * proportion to their speeds; the fastest runs the rest. Each matrix
     * product then runs on every device at once. */
    int tensor_parallel;
} ox_pipeline_options;

/* One stage of a plan or pipeline. */
typedef struct ox_stage_info {
    size_t struct_size;
    char device[48];         /* the device's id, "opencl:0" */
    int first_layer, last_layer; /* layers [first, last) */
    double speed;            /* the device's share of the total speed */
    uint64_t weight_bytes;   /* weights of its layers (and embeddings/output) */
    uint64_t kv_bytes;       /* its KV cache at the context size */
    uint64_t need_bytes;     /* device memory it needs (the CPU maps weights: no copy) */
} ox_stage_info;

/* The placement of the model in `path` on n devices, without loading it:
 * stages[0..n) filled. A device list that names one device twice, more
 * devices than layers, or a model that does not fit a device's memory (the
 * message says how much is missing where) is an error. */
OX_API ox_status ox_pipeline_plan(ox_context *ctx, const char *path, ox_device *const *devices,
                                  int n, const ox_pipeline_options *options,
                                  ox_stage_info *stages);

/* Plan and load. *out is owned by the caller: ox_pipeline_free. */
OX_API ox_status ox_pipeline_create(ox_context *ctx, const char *path, ox_device *const *devices,
                                    int n, const ox_pipeline_options *options, ox_pipeline **out);
OX_API void ox_pipeline_free(ox_pipeline *pipeline);

/* As ox_session_eval, over the whole pipeline. */
OX_API ox_status ox_pipeline_eval(ox_pipeline *pipeline, const int32_t *tokens, int n,
                                  float *logits);
/* As ox_session_eval_range, for a pipeline over a range of layers. */
OX_API ox_status ox_pipeline_eval_range(ox_pipeline *pipeline, const int32_t *tokens,
                                        const float *hidden_in, int n, float *hidden_out,
                                        float *logits);
OX_API ox_status ox_pipeline_rewind(ox_pipeline *pipeline, int position);
OX_API int ox_pipeline_position(const ox_pipeline *pipeline);
OX_API int ox_pipeline_capacity(const ox_pipeline *pipeline);

/* The stages as they are now (after a failure, fewer); with tensor
 * parallelism, one entry per device, all over the same layers. */
OX_API int ox_pipeline_stage_count(const ox_pipeline *pipeline);
OX_API ox_status ox_pipeline_stage_get(const ox_pipeline *pipeline, int i, ox_stage_info *info);
/* Stage i's model (stage 0's for the tokenizer and the hyper-parameters). */
OX_API ox_model *ox_pipeline_model(const ox_pipeline *pipeline, int i);

/* ---- chat templates ------------------------------------------------------------ */

/* One message of a conversation: role "system", "user" or "assistant". */
typedef struct ox_chat_message {
    const char *role;
    const char *content;
} ox_chat_message;

/* The chat format a model expects: "chatml", "gemma", "llama3", "llama2"
 * or "zephyr", recognised from the file's tokenizer.chat_template (by its
 * markers: the Jinja is not run) or, without one, from the architecture and
 * the vocabulary. NULL if model is NULL. */
OX_API const char *ox_chat_template_name(const ox_model *model);

/* The family of a Jinja chat template's text, NULL if not recognised. */
OX_API const char *ox_chat_template_detect(const char *jinja, size_t len);

/* The text that ends an assistant turn in format `name` ("<end_of_turn>",
 * "<|im_end|>", ...), for stopping generation; NULL for an unknown name. */
OX_API const char *ox_chat_end_of_turn(const char *name);

/* Write the n messages in format `name` to buf (cap bytes, NUL-terminated)
 * and the length to *len; with add_generation_prompt, also the opening of
 * the assistant's turn. A buffer too small fails with OX_ERR_OUT_OF_RANGE
 * and *len the length needed (call with cap 0 to size it). The BOS token
 * is not written: the tokenizer adds it. */
OX_API ox_status ox_chat_apply(ox_context *ctx, const char *name, const ox_chat_message *messages,
                               size_t n, bool add_generation_prompt, char *buf, size_t cap,
                               size_t *len);

/* ---- sampling ---------------------------------------------------------------- */

typedef struct ox_sampler ox_sampler;

/* Zero-initialize, set struct_size, then what you need. Filters apply in
 * this order: repetition penalty, top-k, temperature, top-p, min-p; then a
 * draw from the remaining distribution. temperature <= 0 is greedy (the
 * first largest logit after the repetition penalty). */
typedef struct ox_sampler_params {
    size_t struct_size;
    float temperature;     /* 0: greedy */
    int top_k;             /* 0: off */
    float top_p;           /* 0 or 1: off */
    float min_p;           /* 0: off; keep p >= min_p * p_max */
    float repeat_penalty;  /* 0 or 1: off; > 1 makes recent tokens less likely */
    int repeat_last_n;     /* how many recent tokens the penalty looks at (default 64) */
    uint64_t seed;         /* same seed, same logits, same tokens */
} ox_sampler_params;

/* ctx receives error messages and provides memory. *out is owned by the
 * caller: free with ox_sampler_free. */
OX_API ox_status ox_sampler_create(ox_context *ctx, const ox_sampler_params *params,
                                   ox_sampler **out);
OX_API void ox_sampler_free(ox_sampler *sampler);

/* Pick the next token from n_vocab logits (not modified). */
OX_API ox_status ox_sampler_sample(ox_sampler *sampler, const float *logits, int n_vocab,
                                   int32_t *token);

/* Record a token of the sequence (prompt and generated), for the
 * repetition penalty. */
OX_API void ox_sampler_accept(ox_sampler *sampler, int32_t token);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_LLM_H */
