/* 'ox run MODEL': generate text with a GGUF language model on any device.
 * stdout carries only the generated text (streamed as it is produced);
 * speeds, memory and errors go to stderr, so the output can be piped.
 * Ctrl-C stops generation cleanly: what was generated is kept. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mpi_link.h"

enum {
    OPTION_PROMPT,
    OPTION_FILE,
    OPTION_INTERACTIVE,
    OPTION_N_PREDICT,
    OPTION_DEVICE,
    OPTION_TEMP,
    OPTION_TOP_K,
    OPTION_TOP_P,
    OPTION_MIN_P,
    OPTION_REPEAT_PENALTY,
    OPTION_SEED,
    OPTION_CTX,
    OPTION_CACHE_TYPE,
    OPTION_CHAT,
    OPTION_SYSTEM,
    OPTION_TEMPLATE,
    OPTION_NO_BOS,
    OPTION_STOP,
    OPTION_JSON,
    OPTION_SPLIT,
    OPTION_MPI,
    OPTION_REPRODUCIBLE,
    OPTION_COUNT
};

static const cli_option run_options[] = {
    [OPTION_PROMPT] = {"prompt", "TEXT", "the prompt", 'p'},
    [OPTION_FILE] = {"file", "FILE", "read the prompt from FILE", 'f'},
    [OPTION_INTERACTIVE] = {"interactive", NULL, "chat: read turns from stdin, one per line", 'i'},
    [OPTION_N_PREDICT] = {"n-predict", "N", "tokens to generate (default 128; -1: until the end)", 'n'},
    [OPTION_DEVICE] = {"device", "SEL", "device(s) to run on: one, a list (cpu,opencl:0) or all, "
                       "the layers split by speed (default: OX_DEVICE, a GPU, else the CPU)", 0},
    [OPTION_TEMP] = {"temp", "T", "temperature (default 0.8; 0: greedy)", 0},
    [OPTION_TOP_K] = {"top-k", "K", "keep the K most likely tokens (default 40; 0: off)", 0},
    [OPTION_TOP_P] = {"top-p", "P", "nucleus sampling (default 0.95; 1: off)", 0},
    [OPTION_MIN_P] = {"min-p", "P", "drop tokens below P x the best (default 0.05; 0: off)", 0},
    [OPTION_REPEAT_PENALTY] = {"repeat-penalty", "R", "penalize the last 64 tokens (default 1: off)", 0},
    [OPTION_SEED] = {"seed", "S", "random seed, 0 to 2^64-1 (default: random, printed)", 's'},
    [OPTION_CTX] = {"ctx", "N", "context size in tokens (default: min(model, 4096))", 'c'},
    [OPTION_CACHE_TYPE] = {"cache-type", "TYPE", "KV cache: f16 (default, as llama.cpp) or f32", 0},
    [OPTION_CHAT] = {"chat", NULL, "wrap the prompt in the model's chat template", 0},
    [OPTION_SYSTEM] = {"system", "TEXT", "chat: a system message before the first turn", 0},
    [OPTION_TEMPLATE] = {"chat-template", "NAME", "chat: chatml, gemma, llama3, llama2 or zephyr "
                         "(default: the model's)", 0},
    [OPTION_NO_BOS] = {"no-bos", NULL, "do not start the prompt with the BOS token", 0},
    [OPTION_STOP] = {"stop", "TEXT", "stop when the output contains TEXT", 0},
    [OPTION_JSON] = {"json", NULL, "print one JSON object (text, tokens, speeds) at the end", 0},
    [OPTION_SPLIT] = {"split", "HOW", "several devices: layer (ranges of layers, default) or tensor "
                      "(every matrix by rows)", 0},
    [OPTION_MPI] = {"mpi", NULL, "split the layers across the ranks of mpirun (each rank on its "
                    "--device)", 0},
    [OPTION_REPRODUCIBLE] = {"reproducible", NULL, "the same bits on every device, thread count "
                             "and split (slower; --json adds a hash of every step's logits)", 0},
    [OPTION_COUNT] = {NULL, NULL, NULL, 0},
};

static volatile sig_atomic_t interrupted;

/* The first Ctrl-C stops at the end of the current step (a prompt is
 * evaluated in chunks of PROMPT_CHUNK tokens so that this comes soon); a
 * second one exits at once. */
static void on_sigint(int sig)
{
    (void)sig;
    if (interrupted) _exit(130);
    interrupted = 1;
}

#define PROMPT_CHUNK 512

typedef struct run_options_t {
    const char *model, *prompt, *file, *device, *stop, *system, *chat_template;
    int n_predict, n_ctx;
    bool interactive, chat, no_bos, json, kv_f32, mpi, tensor_split, reproducible;
    ox_sampler_params sampling;
    bool seed_given;
} run_opts;

typedef struct run_state {
    const cli_command *command;
    ox_context *ctx;
    ox_model *model;
    ox_pipeline *pipe;  /* one stage per device (of this rank's layers, with --mpi) */
    int rank, ranks;    /* --mpi: this process and how many; else 0 and 1 */
    float *hidden;      /* --mpi: this rank's output, n x n_embd */
    int hidden_tokens;
    ox_tokenizer *tok;
    ox_sampler *sampler;
    ox_model_info info;
    float *logits;
    uint64_t logits_hash; /* every sampled step's logits, hashed in turn */
    int32_t *generated; /* ids since the start of the reply, for streaming decode */
    size_t n_generated, cap_generated;
    size_t printed;     /* bytes of the reply already written */
    double prompt_seconds, gen_seconds;
    int prompt_tokens, gen_tokens;
    char *text;         /* the reply so far (for --stop and --json) */
    size_t text_len;
    /* chat: the template, the conversation, and the text the session holds */
    const char *chat_name, *end_of_turn;
    ox_chat_message *messages;
    size_t n_messages;
    char *history;      /* the formatted conversation evaluated so far, or NULL */
} run_state;

/* parse_options' result when --help was printed: exit 0, run nothing. */
#define RUN_HELP_SHOWN (-1)

static int parse_number(const cli_command *c, const char *name, const char *value, double lo,
                        double hi, double *out)
{
    char *end;
    double v = strtod(value, &end);
    if (*value == '\0' || *end != '\0' || !(v >= lo && v <= hi))
        return cli_usage_error(c, "--%s: '%s' is not a number in [%g, %g]", name, value, lo, hi);
    *out = v;
    return CLI_EXIT_OK;
}

static int parse_options(const cli_command *c, int argc, char **argv, run_opts *o)
{
    cli_parser p;
    const char *value;
    double v = 0;
    int index, status;
    *o = (run_opts){.n_predict = 128, .sampling = {.struct_size = sizeof o->sampling,
                    .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                    .repeat_penalty = 1.0f, .repeat_last_n = 64}};
    cli_parser_init(&p, c, argc, argv);
    while ((index = cli_parse_next(&p, &value)) != CLI_PARSE_END) {
        status = CLI_EXIT_OK;
        switch (index) {
        case CLI_PARSE_OPERAND:
            if (o->model) return cli_usage_error(c, "one model only ('%s' and '%s')", o->model, value);
            o->model = value;
            break;
        case OPTION_PROMPT: o->prompt = value; break;
        case OPTION_FILE: o->file = value; break;
        case OPTION_INTERACTIVE: o->interactive = o->chat = true; break;
        case OPTION_DEVICE: o->device = value; break;
        case OPTION_STOP: o->stop = value; break;
        case OPTION_CHAT: o->chat = true; break;
        case OPTION_SYSTEM: o->system = value; break;
        case OPTION_CACHE_TYPE:
            status = cli_parse_choice(c, "cache-type", value, "f16", "f32", &o->kv_f32);
            break;
        case OPTION_TEMPLATE:
            if (!ox_chat_end_of_turn(value))
                return cli_usage_error(c, "--chat-template: '%s' is not chatml, gemma, llama3, "
                                       "llama2 or zephyr", value);
            o->chat_template = value;
            break;
        case OPTION_NO_BOS: o->no_bos = true; break;
        case OPTION_JSON: o->json = true; break;
        case OPTION_MPI: o->mpi = true; break;
        case OPTION_REPRODUCIBLE: o->reproducible = true; break;
        case OPTION_SPLIT:
            status = cli_parse_choice(c, "split", value, "layer", "tensor", &o->tensor_split);
            break;
#define NUMBER(opt, lo, hi, assign)                                                         \
    case opt:                                                                               \
        status = parse_number(c, run_options[opt].name, value, lo, hi, &v);                \
        if (status == CLI_EXIT_OK) assign;                                                  \
        break;
        NUMBER(OPTION_N_PREDICT, -1, 1e7, o->n_predict = (int)v)
        NUMBER(OPTION_TEMP, 0, 100, o->sampling.temperature = (float)v)
        NUMBER(OPTION_TOP_K, 0, 1e9, o->sampling.top_k = (int)v)
        NUMBER(OPTION_TOP_P, 0, 1, o->sampling.top_p = (float)v)
        NUMBER(OPTION_MIN_P, 0, 1, o->sampling.min_p = (float)v)
        NUMBER(OPTION_REPEAT_PENALTY, 0, 100, o->sampling.repeat_penalty = (float)v)
        case OPTION_SEED: { /* every 64-bit value, exactly (not through a double) */
            char *end;
            errno = 0;
            unsigned long long seed = strtoull(value, &end, 10);
            if (!isdigit((unsigned char)value[0]) || *end != '\0' || errno == ERANGE)
                return cli_usage_error(c, "--seed: '%s' is not an integer from 0 to %llu", value,
                                       (unsigned long long)UINT64_MAX);
            o->sampling.seed = (uint64_t)seed;
            o->seed_given = true;
            break;
        }
        NUMBER(OPTION_CTX, 0, 1e7, o->n_ctx = (int)v)
#undef NUMBER
        case CLI_PARSE_HELP:
            cli_parse_stop(c, index);
            return RUN_HELP_SHOWN;
        default: return cli_parse_stop(c, index);
        }
        if (status != CLI_EXIT_OK) return status;
    }
    if (!o->model) return cli_usage_error(c, "which model? (ox run MODEL -p PROMPT)");
    if (!o->prompt && !o->file && !o->interactive)
        return cli_usage_error(c, "give a prompt with -p TEXT or -f FILE, or -i to chat");
    if ((o->prompt != NULL) + (o->file != NULL) > 1)
        return cli_usage_error(c, "-p and -f cannot be used together");
    if ((o->system || o->chat_template) && !o->chat)
        return cli_usage_error(c, "--system and --chat-template need --chat or -i");
    if (!o->seed_given) o->sampling.seed = cli_random_seed();
    return CLI_EXIT_OK;
}

/* ---- generation ------------------------------------------------------------ */

static int append_text(run_state *st, const char *bytes, size_t n)
{
    char *grown = realloc(st->text, st->text_len + n + 1);
    if (!grown) return cli_error(st->command, "out of memory");
    st->text = grown;
    memcpy(st->text + st->text_len, bytes, n);
    st->text_len += n;
    st->text[st->text_len] = '\0';
    return CLI_EXIT_OK;
}

/* Decode the reply so far and write the bytes not yet written. Decoding
 * the whole reply keeps the spaces a piece-by-piece decode would drop. */
static int stream(run_state *st, bool to_stdout)
{
    size_t len = 0;
    ox_status s = ox_tokenizer_decode(st->tok, st->generated, st->n_generated, NULL, 0, &len);
    if (s != OX_OK) return cli_library_error(st->command, st->ctx, s);
    char *buf = malloc(len + 1);
    if (!buf) return cli_error(st->command, "out of memory");
    s = ox_tokenizer_decode(st->tok, st->generated, st->n_generated, buf, len + 1, &len);
    int status = s == OX_OK ? CLI_EXIT_OK : cli_library_error(st->command, st->ctx, s);
    if (status == CLI_EXIT_OK && len > st->printed) {
        if (to_stdout) {
            fwrite(buf + st->printed, 1, len - st->printed, stdout);
            fflush(stdout);
        }
        status = append_text(st, buf + st->printed, len - st->printed);
        st->printed = len;
    }
    free(buf);
    return status;
}

static int push_generated(run_state *st, int32_t id)
{
    if (st->n_generated == st->cap_generated) {
        size_t cap = st->cap_generated ? st->cap_generated * 2 : 256;
        int32_t *grown = realloc(st->generated, cap * sizeof *grown);
        if (!grown) return cli_error(st->command, "out of memory");
        st->generated = grown;
        st->cap_generated = cap;
    }
    st->generated[st->n_generated++] = id;
    return CLI_EXIT_OK;
}

/* ---- the engine: a pipeline, or a chain of MPI ranks ----------------------------
 *
 * With --mpi, rank r evaluates layers [r L / N, (r + 1) L / N) on its own
 * devices. Rank 0 tokenizes, samples and prints; for each evaluation it
 * sends {op, n, position} and its hidden states to rank 1, which runs its
 * layers and passes on; the last rank sends {status} and the logits back
 * to rank 0. A rank that fails passes its status down the chain instead, so
 * every rank stays in step and rank 0 reports the error. */

enum { MPI_EVAL = 1, MPI_REWIND = 2, MPI_STOP = 3 };

typedef struct mpi_header {
    int32_t op, n, position, status, want_logits;
} mpi_header;

static int engine_position(const run_state *st)
{
    return ox_pipeline_position(st->pipe);
}

static int engine_capacity(const run_state *st)
{
    return ox_pipeline_capacity(st->pipe);
}

static ox_status grow_hidden(run_state *st, int n)
{
    if (n <= st->hidden_tokens) return OX_OK;
    free(st->hidden);
    st->hidden = malloc((size_t)n * (size_t)st->info.n_embd * sizeof *st->hidden);
    st->hidden_tokens = st->hidden ? n : 0;
    return st->hidden ? OX_OK : OX_ERR_OUT_OF_MEMORY;
}

static ox_status mpi_lost(run_state *st, const char *what)
{
    fprintf(stderr, "ox run: rank %d: MPI %s failed\n", st->rank, what);
    mpi_link_abort(1);
    return OX_ERR_IO;
}

static ox_status engine_eval(run_state *st, const int32_t *tokens, int n, float *logits)
{
    /* a model file rewritten in place would give wrong weights, not a
     * fault: checked before every step (one stat call) */
    ox_status file = ox_gguf_check_file(ox_model_gguf(st->model));
    if (file != OX_OK) return file;
    if (st->ranks <= 1) return ox_pipeline_eval(st->pipe, tokens, n, logits);
    mpi_header h = {MPI_EVAL, n, engine_position(st), OX_OK, logits != NULL};
    ox_status s = grow_hidden(st, n);
    if (s == OX_OK) s = ox_pipeline_eval_range(st->pipe, tokens, NULL, n, st->hidden, NULL);
    h.status = s;
    size_t bytes = (size_t)n * (size_t)st->info.n_embd * sizeof(float);
    if (mpi_link_send(&h, sizeof h, 1) ||
        (s == OX_OK && mpi_link_send(st->hidden, bytes, 1)))
        return mpi_lost(st, "send");
    mpi_header reply;
    if (mpi_link_recv(&reply, sizeof reply, st->ranks - 1)) return mpi_lost(st, "receive");
    if (reply.status == OX_OK && logits &&
        mpi_link_recv(logits, (size_t)st->info.n_vocab * sizeof *logits, st->ranks - 1))
        return mpi_lost(st, "receive");
    if (s == OX_OK && reply.status != OX_OK)
        fprintf(stderr, "ox run: rank %d failed: %s\n", reply.n, ox_status_str(reply.status));
    if (s != OX_OK && engine_position(st) > h.position) ox_pipeline_rewind(st->pipe, h.position);
    if (s == OX_OK && reply.status != OX_OK) ox_pipeline_rewind(st->pipe, h.position);
    return s != OX_OK ? s : (ox_status)reply.status;
}

static void engine_rewind(run_state *st, int position)
{
    ox_pipeline_rewind(st->pipe, position);
    if (st->ranks <= 1) return;
    mpi_header h = {MPI_REWIND, 0, position, OX_OK, 0}, reply;
    if (mpi_link_send(&h, sizeof h, 1) || mpi_link_recv(&reply, sizeof reply, st->ranks - 1))
        mpi_lost(st, "rewind");
}

/* Ranks 1..N-1: run this rank's layers for each request from the rank
 * before, until told to stop. */
static int mpi_worker(run_state *st)
{
    bool last = st->rank == st->ranks - 1;
    float *logits = last ? malloc((size_t)st->info.n_vocab * sizeof *logits) : NULL;
    float *in = NULL;
    int in_tokens = 0, status = CLI_EXIT_OK;
    if (last && !logits) return cli_error(st->command, "rank %d: out of memory", st->rank);
    for (;;) {
        mpi_header h;
        if (mpi_link_recv(&h, sizeof h, st->rank - 1)) {
            mpi_lost(st, "receive");
            break;
        }
        if (h.op == MPI_STOP) {
            if (!last) mpi_link_send(&h, sizeof h, st->rank + 1);
            break;
        }
        size_t bytes = (size_t)h.n * (size_t)st->info.n_embd * sizeof(float);
        if (h.op == MPI_EVAL && h.status == OX_OK) {
            if (h.n > in_tokens) {
                free(in);
                in = malloc(bytes);
                in_tokens = in ? h.n : 0;
            }
            if (!in || grow_hidden(st, h.n) != OX_OK) {
                mpi_lost(st, "buffer");
                break;
            }
            if (mpi_link_recv(in, bytes, st->rank - 1)) {
                mpi_lost(st, "receive");
                break;
            }
            ox_status s = ox_pipeline_eval_range(st->pipe, NULL, in, h.n, last ? NULL : st->hidden,
                                                 last && h.want_logits ? logits : NULL);
            if (s != OX_OK) {
                fprintf(stderr, "ox run: rank %d: %s\n", st->rank, ox_errmsg(st->ctx));
                h.status = s;
                h.n = st->rank; /* who failed, for rank 0's message */
            }
        } else if (h.op == MPI_REWIND) {
            ox_pipeline_rewind(st->pipe, h.position);
        }
        int bad;
        if (!last) {
            bad = mpi_link_send(&h, sizeof h, st->rank + 1) ||
                  (h.op == MPI_EVAL && h.status == OX_OK && mpi_link_send(st->hidden, bytes,
                                                                           st->rank + 1));
        } else {
            bad = mpi_link_send(&h, sizeof h, 0) ||
                  (h.op == MPI_EVAL && h.status == OX_OK && h.want_logits &&
                   mpi_link_send(logits, (size_t)st->info.n_vocab * sizeof *logits, 0));
        }
        if (bad) {
            mpi_lost(st, "send");
            break;
        }
    }
    free(in);
    free(logits);
    return status;
}

/* --mpi, before anything is loaded: every rank must read the same model
 * file (its size and a hash of all of it: cli_file_hash); rank r's share of
 * the layers. */
static int mpi_agree(run_state *st, const run_opts *o, int *first, int *last)
{
    typedef struct fingerprint {
        uint64_t size, hash;
        int32_t n_layer, ok;
        char host[64], path[192]; /* for the message when they differ */
    } fingerprint;
    fingerprint mine = {0}, *all = calloc(256, sizeof *all);
    if (!all) return cli_error(st->command, "out of memory");
    if (st->ranks > 256) {
        free(all);
        return cli_error(st->command, "--mpi: at most 256 ranks");
    }
    gethostname(mine.host, sizeof mine.host - 1);
    snprintf(mine.path, sizeof mine.path, "%s", o->model);
    if (cli_file_hash(st->command, o->model, &mine.hash, &mine.size) == CLI_EXIT_OK) {
        ox_gguf *g;
        if (ox_gguf_open(st->ctx, o->model, &g) == OX_OK) {
            const char *arch;
            size_t len;
            int64_t k = ox_gguf_find(g, "general.architecture"), v;
            char key[96];
            if (k >= 0 && ox_gguf_get_string(g, k, &arch, &len) == OX_OK) {
                snprintf(key, sizeof key, "%.*s.block_count", (int)len, arch);
                k = ox_gguf_find(g, key);
                if (k >= 0 && ox_gguf_get_int(g, k, &v) == OX_OK) mine.n_layer = (int32_t)v;
            }
            ox_gguf_close(g);
        }
        mine.ok = mine.n_layer > 0;
    }
    if (mpi_link_allgather(&mine, sizeof mine, all)) {
        free(all);
        return cli_error(st->command, "MPI failed");
    }
    int status = CLI_EXIT_OK;
    for (int r = 0; r < st->ranks && status == CLI_EXIT_OK; r++) {
        if (!all[r].ok)
            status = st->rank == 0 ? cli_error(st->command, "--mpi: rank %d (%s) cannot read the "
                                               "model %s as a language model", r, all[r].host,
                                               all[r].path)
                                   : CLI_EXIT_FAILURE;
        else if (all[r].size != all[0].size || all[r].hash != all[0].hash)
            status = st->rank == 0
                         ? cli_error(st->command, "--mpi: the ranks' model files differ: rank 0 "
                                     "has %s:%s (%llu bytes, hash %016llx), rank %d %s:%s (%llu "
                                     "bytes, hash %016llx)", all[0].host, all[0].path,
                                     (unsigned long long)all[0].size,
                                     (unsigned long long)all[0].hash, r, all[r].host, all[r].path,
                                     (unsigned long long)all[r].size,
                                     (unsigned long long)all[r].hash)
                         : CLI_EXIT_FAILURE;
    }
    int L = all[0].n_layer;
    free(all);
    if (status != CLI_EXIT_OK) return status;
    if (st->ranks > L)
        return st->rank == 0 ? cli_error(st->command, "--mpi: %d ranks for %d layers", st->ranks, L)
                             : CLI_EXIT_FAILURE;
    *first = (int)((long)st->rank * L / st->ranks);
    *last = (int)((long)(st->rank + 1) * L / st->ranks);
    return CLI_EXIT_OK;
}

/* Add a message to the conversation (content copied). */
static int add_message(run_state *st, const char *role, const char *content)
{
    ox_chat_message *grown = realloc(st->messages, (st->n_messages + 1) * sizeof *grown);
    if (!grown) return cli_error(st->command, "out of memory");
    st->messages = grown;
    char *copy = strdup(content);
    if (!copy) return cli_error(st->command, "out of memory");
    st->messages[st->n_messages++] = (ox_chat_message){role, copy};
    return CLI_EXIT_OK;
}

/* The conversation in the chat template, malloc'ed. */
static char *format_chat(run_state *st, bool generation_prompt)
{
    size_t len = 0;
    ox_status s = ox_chat_apply(st->ctx, st->chat_name, st->messages, st->n_messages,
                                generation_prompt, NULL, 0, &len);
    char *text = s == OX_OK || s == OX_ERR_OUT_OF_RANGE ? malloc(len + 1) : NULL;
    if (text && ox_chat_apply(st->ctx, st->chat_name, st->messages, st->n_messages,
                              generation_prompt, text, len + 1, &len) == OX_OK)
        return text;
    free(text);
    cli_library_error(st->command, st->ctx, s == OX_OK ? OX_ERR_OUT_OF_MEMORY : s);
    return NULL;
}

static int tokenize(run_state *st, const char *text, bool bos, int32_t **ids, size_t *count)
{
    unsigned flags = OX_TOKENIZE_PARSE_SPECIAL | (bos ? OX_TOKENIZE_ADD_BOS : 0);
    ox_status s = ox_tokenizer_encode(st->tok, text, strlen(text), flags, NULL, 0, count);
    *ids = s == OX_OK ? malloc((*count ? *count : 1) * sizeof **ids) : NULL;
    if (s == OX_OK && !*ids) s = OX_ERR_OUT_OF_MEMORY;
    if (s == OX_OK) s = ox_tokenizer_encode(st->tok, text, strlen(text), flags, *ids, *count, count);
    if (s != OX_OK) {
        free(*ids);
        *ids = NULL;
        return cli_library_error(st->command, st->ctx, s);
    }
    return CLI_EXIT_OK;
}

/* The tokens to evaluate for this turn, BOS first on the first unless
 * --no-bos. In chat mode, the conversation with the new user message in the
 * template, less what the session already holds (when the template does
 * not extend the old text, the session starts over). *ids is malloc'ed. */
static int encode_prompt(run_state *st, const run_opts *o, const char *text, int32_t **ids,
                         size_t *count)
{
    if (!o->chat)
        return tokenize(st, text, engine_position(st) == 0 && !o->no_bos, ids,
                        count);
    int status = add_message(st, "user", text);
    char *full = status == CLI_EXIT_OK ? format_chat(st, true) : NULL;
    if (!full) return CLI_EXIT_FAILURE;
    size_t held = st->history ? strlen(st->history) : 0;
    if (!st->history || strncmp(full, st->history, held) != 0) {
        engine_rewind(st, 0);
        held = 0;
    }
    status = tokenize(st, full + held, held == 0 && !o->no_bos, ids, count);
    free(st->history);
    st->history = full;
    return status;
}

/* After a chat reply: record it and evaluate the template's closing of the
 * turn, so that the next turn follows on. */
static void close_turn(run_state *st)
{
    if (add_message(st, "assistant", st->text ? st->text : "") != CLI_EXIT_OK) return;
    char *after = format_chat(st, false);
    size_t held = st->history ? strlen(st->history) : 0;
    if (!after || strncmp(after, st->history, held) != 0 ||
        strncmp(after + held, st->text ? st->text : "", st->text_len) != 0) {
        free(after);
        free(st->history);
        st->history = NULL; /* the next turn starts over */
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenize(st, after + held + st->text_len, false, &ids, &n) == CLI_EXIT_OK && n > 0 &&
        (int)n < engine_capacity(st) - engine_position(st) &&
        engine_eval(st, ids, (int)n, NULL) == OX_OK) {
        free(st->history);
        st->history = after;
    } else {
        free(after);
        free(st->history);
        st->history = NULL;
    }
    free(ids);
}

/* Evaluate the prompt, then sample and evaluate token by token. */
static int generate(run_state *st, const run_opts *o, const int32_t *prompt, size_t n_prompt)
{
    int room = engine_capacity(st) - engine_position(st);
    if (n_prompt == 0 && engine_position(st) == 0)
        return cli_error(st->command, "the prompt is empty%s: there is nothing to continue from",
                         o->no_bos ? " and --no-bos adds no BOS token" : "");
    if ((int)n_prompt >= room)
        return cli_error(st->command, "the prompt has %zu tokens but only %d fit in the context "
                         "(--ctx %d)", n_prompt, room - 1, engine_capacity(st));
    double t0 = cli_seconds();
    ox_status s = OX_OK;
    for (size_t done = 0; done < n_prompt && s == OX_OK;) {
        if (interrupted) { /* Ctrl-C between chunks: what was evaluated counts */
            st->prompt_seconds += cli_seconds() - t0;
            return CLI_EXIT_OK;
        }
        size_t n = n_prompt - done < PROMPT_CHUNK ? n_prompt - done : PROMPT_CHUNK;
        s = engine_eval(st, prompt + done, (int)n, done + n == n_prompt ? st->logits : NULL);
        if (s == OX_OK) {
            done += n;
            st->prompt_tokens += (int)n;
        }
    }
    if (s != OX_OK) return cli_library_error(st->command, st->ctx, s);
    st->prompt_seconds += cli_seconds() - t0;
    for (size_t i = 0; i < n_prompt; i++) ox_sampler_accept(st->sampler, prompt[i]);

    int32_t eos = ox_tokenizer_eos(st->tok), eot = ox_tokenizer_eot(st->tok);
    t0 = cli_seconds();
    for (int i = 0; (o->n_predict < 0 || i < o->n_predict) && !interrupted; i++) {
        int32_t id;
        uint64_t step = cli_bytes_hash(st->logits, (size_t)st->info.n_vocab * sizeof *st->logits);
        st->logits_hash = (st->logits_hash ^ step) * 0x100000001b3ull;
        if ((s = ox_sampler_sample(st->sampler, st->logits, st->info.n_vocab, &id)) != OX_OK)
            return cli_library_error(st->command, st->ctx, s);
        if (id == eos || id == eot) break;
        if (st->end_of_turn) {
            const char *piece = ox_tokenizer_token_text(st->tok, id);
            if (piece && strcmp(piece, st->end_of_turn) == 0) break;
        }
        ox_sampler_accept(st->sampler, id);
        int status = push_generated(st, id);
        if (status == CLI_EXIT_OK) status = stream(st, !o->json);
        if (status != CLI_EXIT_OK) return status;
        st->gen_tokens++;
        if (o->stop && strstr(st->text ? st->text : "", o->stop)) break;
        if (engine_position(st) >= engine_capacity(st)) {
            fprintf(stderr, "\nox run: the context of %d tokens is full\n",
                    engine_capacity(st));
            break;
        }
        if ((s = engine_eval(st, &id, 1, st->logits)) != OX_OK)
            return cli_library_error(st->command, st->ctx, s);
    }
    st->gen_seconds += cli_seconds() - t0;
    return CLI_EXIT_OK;
}

/* Interactive lines are read up to this many bytes; a longer one is
 * refused (and skipped to its end) with a message naming the limit. */
#define LINE_LIMIT ((size_t)1 << 20)

/* The next line of stdin without its newline, in *buf (grown as needed, up
 * to LINE_LIMIT + 1 bytes); 1: a line, 0: end of input or an interrupt,
 * -1: a line past the limit (skipped). */
static int read_line(char **buf, size_t *cap)
{
    size_t n = 0;
    int c = EOF;
    bool over = false;
    while (!interrupted && (c = getchar()) != EOF && c != '\n') {
        if (over || (over = n >= LINE_LIMIT)) continue;
        if (n + 1 >= *cap) {
            size_t grown_cap = *cap ? *cap * 2 : 4096;
            char *grown = realloc(*buf, grown_cap);
            if (!grown) { /* past the limit (or out of memory): skip to the end of the line */
                over = true;
                continue;
            }
            *buf = grown;
            *cap = grown_cap;
        }
        (*buf)[n++] = (char)c;
    }
    if (over) return -1;
    if (interrupted || (c == EOF && n == 0)) return 0;
    (*buf)[n] = '\0';
    return 1;
}

static void report(const run_state *st, const run_opts *o)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mib = (double)ru.ru_maxrss / 1024.0;
    double pp = st->prompt_seconds > 0 ? st->prompt_tokens / st->prompt_seconds : 0;
    double tg = st->gen_seconds > 0 ? st->gen_tokens / st->gen_seconds : 0;
    if (o->json) {
        cJSON *doc = cli_json_document();
        if (!doc) return;
        cJSON_AddStringToObject(doc, "text", st->text ? st->text : "");
        cJSON *ids = cJSON_AddArrayToObject(doc, "tokens");
        for (size_t i = 0; ids && i < st->n_generated; i++)
            cJSON_AddItemToArray(ids, cJSON_CreateNumber(st->generated[i]));
        cJSON_AddNumberToObject(doc, "prompt_tokens", st->prompt_tokens);
        cJSON_AddNumberToObject(doc, "prompt_tokens_per_second", pp);
        cJSON_AddNumberToObject(doc, "generated_tokens", st->gen_tokens);
        cJSON_AddNumberToObject(doc, "generation_tokens_per_second", tg);
        cJSON_AddNumberToObject(doc, "peak_rss_mib", rss_mib);
        cli_json_add_u64(doc, "seed", o->sampling.seed);
        char hash[24];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)st->logits_hash);
        cJSON_AddStringToObject(doc, "logits_hash", hash);
        cJSON_AddBoolToObject(doc, "reproducible", o->reproducible);
        char *text = cJSON_Print(doc);
        if (text) puts(text);
        free(text);
        cJSON_Delete(doc);
        return;
    }
    fprintf(stderr, "\n\nprompt: %d tokens in %.2f s, %.1f tokens/s\n", st->prompt_tokens,
            st->prompt_seconds, pp);
    fprintf(stderr, "generation: %d tokens in %.2f s, %.1f tokens/s\n", st->gen_tokens,
            st->gen_seconds, tg);
    fprintf(stderr, "peak memory: %.0f MiB (weights %.0f MiB, memory-mapped), seed %llu\n",
            rss_mib, (double)st->info.weight_bytes / 1048576.0,
            (unsigned long long)o->sampling.seed);
}

/* A progress bar on stderr while the weights load, on a terminal only. */
static void load_progress(float fraction, void *user)
{
    const char *name = user;
    int filled = (int)(fraction * 30.0f + 0.5f);
    fprintf(stderr, "\rloading %s [%.*s%*s] %3d%%", name, filled,
            "##############################", 30 - filled, "", (int)(fraction * 100.0f + 0.5f));
    if (fraction >= 1.0f) fprintf(stderr, "\r\033[K"); /* done: clear the line */
    fflush(stderr);
}

static int open_all(run_state *st, const run_opts *o)
{
    ox_status s;
    int n = 0, status = cli_context_open_mode(st->command, o->reproducible, &st->ctx);
    if (status != CLI_EXIT_OK) return status;
    ox_device *devices[CLI_MAX_DEVICES];
    if ((status = cli_select_devices(st->command, st->ctx, o->device, devices, &n)) != CLI_EXIT_OK)
        return status;
    s = OX_OK;
    int first = 0, last = 0;
    if (st->ranks > 1 && (status = mpi_agree(st, o, &first, &last)) != CLI_EXIT_OK) return status;
    const char *base = strrchr(o->model, '/');
    ox_pipeline_options po = {.struct_size = sizeof po, .n_ctx = o->n_ctx, .kv_f32 = o->kv_f32,
                              .progress_user = (void *)(base ? base + 1 : o->model),
                              .first_layer = first, .last_layer = last,
                              .tensor_parallel = o->tensor_split};
    if (isatty(2) && st->rank == 0) po.progress = load_progress;
    cli_guard_mapping(st->command, o->model);
    if (s == OX_OK) s = ox_pipeline_create(st->ctx, o->model, devices, n, &po, &st->pipe);
    if (s == OX_OK) {
        st->model = ox_pipeline_model(st->pipe, 0);
        st->info.struct_size = sizeof st->info;
        s = ox_model_get_info(st->model, &st->info);
    }
    if (s == OX_OK) s = ox_tokenizer_load(st->ctx, ox_model_gguf(st->model), &st->tok);
    if (s == OX_OK && (n > 1 || st->ranks > 1)) {
        char stages[512];
        cli_describe_stages(st->pipe, stages, sizeof stages);
        if (st->ranks > 1) fprintf(stderr, "ox run: rank %d of %d: %s\n", st->rank, st->ranks, stages);
        else fprintf(stderr, "ox run: %s\n", stages);
    }
    if (s == OX_OK && o->chat) {
        st->chat_name = o->chat_template ? o->chat_template : ox_chat_template_name(st->model);
        st->end_of_turn = ox_chat_end_of_turn(st->chat_name);
        if (o->system && add_message(st, "system", o->system) != CLI_EXIT_OK)
            return CLI_EXIT_FAILURE;
    }
    if (s == OX_OK) s = ox_sampler_create(st->ctx, &o->sampling, &st->sampler);
    if (s != OX_OK) return cli_library_error(st->command, st->ctx, s);
    st->logits = malloc((size_t)st->info.n_vocab * sizeof *st->logits);
    if (!st->logits) return cli_error(st->command, "out of memory");
    return CLI_EXIT_OK;
}

static void close_all(run_state *st)
{
    for (size_t i = 0; i < st->n_messages; i++) free((char *)st->messages[i].content);
    free(st->messages);
    free(st->history);
    free(st->logits);
    free(st->generated);
    free(st->text);
    ox_sampler_free(st->sampler);
    ox_pipeline_free(st->pipe);
    free(st->hidden);
    ox_tokenizer_free(st->tok);
    ox_context_free(st->ctx);
}

static int run_turn(run_state *st, const run_opts *o, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int status = encode_prompt(st, o, text, &ids, &n);
    if (status == CLI_EXIT_OK) {
        st->n_generated = st->printed = 0;
        st->text_len = 0;
        if (st->text) st->text[0] = '\0';
        status = generate(st, o, ids, n);
        if (status == CLI_EXIT_OK && o->chat && !interrupted) close_turn(st);
    }
    free(ids);
    return status;
}

static int run_run(const cli_command *command, int argc, char **argv)
{
    run_opts o;
    int status = parse_options(command, argc, argv, &o);
    if (status == RUN_HELP_SHOWN) return CLI_EXIT_OK;
    if (status != CLI_EXIT_OK) return status;
    run_state st = {.command = command, .ranks = 1};
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (o.mpi) {
        if (!mpi_link_available())
            return cli_error(command, "--mpi: MPI is off in this build (no MPI was found when "
                             "ox was built; install libopenmpi-dev and rebuild)");
        if (mpi_link_init(&st.rank, &st.ranks) != 0) return cli_error(command, "MPI_Init failed");
        if (o.interactive && st.ranks > 1) {
            mpi_link_finalize();
            return cli_usage_error(command, "--mpi runs one prompt (-p or -f), not -i");
        }
    }
    /* the prompt file first: a bad one is named before the model loads */
    char *file_text = NULL;
    if (o.file && !o.interactive && st.rank == 0) {
        size_t size = 0;
        file_text = cli_read_file_max(command, o.file, CLI_PROMPT_LIMIT, "prompt files", &size);
        if (!file_text) status = CLI_EXIT_FAILURE;
    }
    if (status == CLI_EXIT_OK) status = open_all(&st, &o);
    if (st.ranks > 1) { /* every rank loaded its layers, or none goes on */
        int32_t mine = status, all[256];
        if (mpi_link_allgather(&mine, sizeof mine, all)) mpi_lost(&st, "allgather");
        for (int r = 0; r < st.ranks && status == CLI_EXIT_OK; r++)
            if (all[r] != CLI_EXIT_OK) {
                if (st.rank == 0) fprintf(stderr, "ox run: rank %d could not start\n", r);
                status = CLI_EXIT_FAILURE;
            }
        if (status != CLI_EXIT_OK) {
            free(file_text);
            close_all(&st);
            mpi_link_finalize();
            return status;
        }
    }
    if (st.ranks > 1 && st.rank > 0) { /* a worker: run layers for rank 0 until it stops */
        if (status == CLI_EXIT_OK) status = mpi_worker(&st);
        close_all(&st);
        mpi_link_finalize();
        return status;
    }
    if (status == CLI_EXIT_OK && !o.interactive) {
        status = run_turn(&st, &o, o.file ? file_text : o.prompt);
    } else if (status == CLI_EXIT_OK) {
        char *line = NULL;
        size_t cap = 0;
        int got;
        if (isatty(0)) fprintf(stderr, "> ");
        while ((got = read_line(&line, &cap)) != 0) {
            if (got < 0) {
                cli_error(command, "a line of input is longer than %zu bytes, the limit on "
                          "interactive lines: skipped", LINE_LIMIT);
                if (isatty(0)) fprintf(stderr, "> ");
                continue;
            }
            if (!*line) continue;
            if ((status = run_turn(&st, &o, line)) != CLI_EXIT_OK) break;
            fputc('\n', stdout);
            if (isatty(0)) fprintf(stderr, "> ");
        }
        free(line);
    }
    free(file_text);
    /* speeds only for work done: not after a failed load or an empty run */
    if (st.pipe && (st.prompt_tokens > 0 || st.gen_tokens > 0)) report(&st, &o);
    if (st.ranks > 1) {
        mpi_header stop = {MPI_STOP, 0, 0, OX_OK, 0};
        mpi_link_send(&stop, sizeof stop, 1);
    }
    close_all(&st);
    if (o.mpi) mpi_link_finalize();
    if (interrupted && status == CLI_EXIT_OK) return 130;
    return status;
}

const cli_command cmd_run = {
    .name = "run",
    .summary = "generate text with a GGUF language model",
    .description =
        "Generate text with the GGUF model MODEL on a device, or several (--device\n"
        "cpu,opencl:0 or all: the layers split by speed), or several processes\n"
        "(mpirun -np N ox run --mpi: the layers split across the ranks). The text\n"
        "streams to stdout (no prompt echo, no logs); speeds and peak memory go to\n"
        "stderr. --temp 0 is greedy. Ctrl-C stops cleanly, keeping what was\n"
        "generated. --chat and -i use the model's chat template (chatml, gemma,\n"
        "llama3, llama2 or zephyr). Supported architectures: llama, qwen2, qwen3,\n"
        "gemma3.",
    .options = run_options,
    .run = run_run,
    .operands = "MODEL",
};
