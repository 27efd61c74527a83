/* 'ox serve MODEL': an OpenAI-compatible HTTP server.
 *
 * Threads: libmicrohttpd's own polling thread (epoll) runs every
 * connection and the handlers below, which only parse, validate, tokenize
 * and queue; one worker thread owns the model and its sessions (slots) and
 * advances every active sequence in one batched forward pass a step
 * (ox_session_eval_batch: the matrix products see all their tokens at
 * once): one token each for the generating sequences, and prompts in
 * chunks of PREFILL_CHUNK tokens up to STEP_TOKENS a step, so a long
 * prompt does not stall the others. Output passes from the worker to the HTTP
 * thread through each job's buffer under the server's mutex: a streaming
 * response's reader suspends its connection when the buffer is empty and
 * the worker resumes it when it appends, so no thread waits per client.
 * A client that goes away (its response freed before the job finished) is
 * marked gone and its slot freed at the worker's next step; streaming
 * responses send an SSE comment after each prompt chunk, so a dead socket
 * is found during long prompts too. See docs/ARCHITECTURE.md, "ox serve". */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "serve_request.h"

#ifdef OX_HAVE_MHD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MAX_BODY (4u << 20)   /* request bodies above this get 413 */
#define PREFILL_CHUNK 256     /* prompt tokens a sequence evaluates a step, at most */
#define STEP_TOKENS 512       /* tokens of all sequences a step, at most (prompts stop there) */
#define N_BUCKETS 12
#define MAX_SAMPLERS 8

enum {
    OPTION_HOST,
    OPTION_PORT,
    OPTION_DEVICE,
    OPTION_PARALLEL,
    OPTION_CTX,
    OPTION_API_KEY,
    OPTION_API_KEY_FILE,
    OPTION_MAX_QUEUE,
    OPTION_TIMEOUT,
    OPTION_MAX_CONNECTIONS,
    OPTION_REPRODUCIBLE,
    OPTION_COUNT
};

static const cli_option serve_options[] = {
    [OPTION_HOST] = {"host", "ADDR", "IPv4 address to listen on (default 127.0.0.1)", 0},
    [OPTION_PORT] = {"port", "N", "TCP port (default 8080; 0: any free port, printed)", 0},
    [OPTION_DEVICE] = {"device", "SEL", "the device to run on (default: OX_DEVICE, a GPU, else "
                       "the CPU); several (cpu,opencl:0 or all) pool into one, every matrix "
                       "split by rows in proportion to their speeds", 0},
    [OPTION_PARALLEL] = {"parallel", "N", "sequences generated at once (default 4); more wait "
                         "in the queue", 0},
    [OPTION_CTX] = {"ctx", "N", "positions of the KV pool all sequences share (default: "
                    "--parallel x min(model, 4096)); one sequence may take up to all of them, "
                    "within the model's context", 'c'},
    [OPTION_API_KEY] = {"api-key", "KEY", "require 'Authorization: Bearer KEY' on /v1, "
                        "/tokenize and /detokenize", 0},
    [OPTION_API_KEY_FILE] = {"api-key-file", "FILE", "the same, the key read from FILE", 0},
    [OPTION_MAX_QUEUE] = {"max-queue", "N", "requests that may wait for a slot (default 64); "
                          "past it, 503", 0},
    [OPTION_TIMEOUT] = {"timeout", "S", "close a connection idle for S seconds (default 30)", 0},
    [OPTION_MAX_CONNECTIONS] = {"max-connections", "N", "open connections at most (default "
                                "1024)", 0},
    [OPTION_REPRODUCIBLE] = {"reproducible", NULL, "reproducible mode: every device computes "
                             "the same bits (slower; a batch's rows may still take other "
                             "kernels than one request alone)", 0},
    [OPTION_COUNT] = {NULL, NULL, NULL, 0},
};

/* ---- the server's state ------------------------------------------------------------- */

typedef struct histogram {
    uint64_t counts[N_BUCKETS]; /* cumulative counts are printed */
    uint64_t n;
    double sum;
} histogram;

static const double BUCKETS[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5,   1,    2.5,   5,    10,  30};

typedef struct job job;
typedef struct server server;
struct job {
    /* set by the HTTP thread before the job is queued, then read-only */
    bool chat, stream, include_usage;
    int32_t *prompt;
    int n_prompt, max_tokens;
    ox_sampler_params sp;
    float presence, frequency;
    int logprobs;             /* -1: none; else the alternatives a token */
    char *stop[SERVE_MAX_STOPS + 1]; /* + the chat format's end of turn */
    int n_stop;
    char id[48];
    long long created;
    double t_submit;
    /* shared, under server.mu */
    char *out;                /* bytes for the client: SSE frames, or the whole body */
    size_t out_len, out_cap, out_sent;
    int status;               /* non-streaming: the HTTP status of out */
    bool finished;            /* the worker has appended everything */
    bool gone;                /* the client went away: stop */
    bool suspended;           /* its connection waits for output */
    struct MHD_Connection *conn;
    int fd;                   /* conn's socket, watched while it is suspended */
    int refs;                 /* the worker's, and the HTTP side's */
    struct server *sv;
    job *next;                /* in the queue */
    /* the worker's */
    int slot, fed;            /* tokens of prompt ++ gen in the session */
    uint64_t admitted;        /* the order of its (last) admission */
    ox_sampler *sampler;
    int32_t *gen;
    int n_gen, cap_gen;
    float *lp;                /* logprobs: per token, the chosen one's, then the */
    int32_t *lp_id;           /* alternatives' (logprobs each): ids and values */
    float *lp_alt;
    int lp_sent;              /* tokens whose logprobs were streamed */
    char *text;               /* the decoded reply */
    size_t text_len, emitted; /* bytes of text already sent */
    double t_last;
};

typedef struct slot {
    ox_session *se;  /* its K and V in pages of the server's pool */
    int32_t *tokens; /* what the session holds, for reuse by the next prompt */
    int n_tokens;
    job *job;
    uint64_t used;   /* when it last held a job (admissions so far): idle ones */
} slot;              /* give their pages back least recently used first */

struct server {
    const cli_command *command;
    ox_context *ctx;
    ox_device *device;
    ox_pipeline *pipeline; /* several devices: the model split by rows over them */
    ox_model *model;
    ox_model_info info;
    ox_tokenizer *tok;
    const char *chat_name, *end_of_turn;
    char model_id[256];
    char *api_key;
    int parallel, n_ctx, max_queue; /* n_ctx: positions of one sequence */
    ox_kv_pool *pool;               /* the KV cache every sequence takes pages of */
    int page, pool_pages;
    int samplers; /* threads that draw a step's tokens: the cores, at most MAX_SAMPLERS */
    slot *slots;
    atomic_bool ready;
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *queue_head, *queue_tail;
    int queued, active;
    bool stopping;
    uint64_t requests, rejected, errors, prompt_tokens, gen_tokens, cancelled;
    uint64_t admissions, preempted;
    histogram ttft, itl;
    int live; /* jobs not yet freed: the drain on SIGTERM waits for them */
    char broken[512]; /* why the server stops: the model file changed under it */
};

static double now(void)
{
    return cli_seconds();
}

static void observe(histogram *h, double v)
{
    for (int i = 0; i < N_BUCKETS; i++)
        if (v <= BUCKETS[i]) {
            h->counts[i]++;
            break;
        }
    h->n++;
    h->sum += v;
}

/* Drop one reference; the last frees the job. Under mu. */
static void job_release(job *j)
{
    if (--j->refs > 0) return;
    j->sv->live--;
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->out);
    free(j->gen);
    free(j->lp);
    free(j->lp_id);
    free(j->lp_alt);
    free(j->text);
    ox_sampler_free(j->sampler);
    free(j);
}

/* Append bytes for the client and wake its connection. Under mu. */
static bool job_append(job *j, const char *bytes, size_t n)
{
    if (j->out_len + n + 1 > j->out_cap) {
        size_t cap = j->out_cap ? j->out_cap : 1024;
        while (cap < j->out_len + n + 1) cap *= 2;
        char *grown = realloc(j->out, cap);
        if (!grown) return false;
        j->out = grown;
        j->out_cap = cap;
    }
    memcpy(j->out + j->out_len, bytes, n);
    j->out_len += n;
    j->out[j->out_len] = '\0';
    return true;
}

static void job_wake(job *j)
{
    if (j->suspended && j->conn) {
        j->suspended = false;
        MHD_resume_connection(j->conn);
    }
}

/* ---- JSON helpers ------------------------------------------------------------- */

static char *json_error_body(const char *type, const char *message, const char *param,
                             const char *code)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type,
                                 const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return MHD_NO;
    enum MHD_Result r = send_text(c, status, "application/json", text, strlen(text));
    free(text);
    return r;
}

static enum MHD_Result send_error(server *sv, struct MHD_Connection *c, unsigned status,
                                  const char *param, const char *code, const char *format, ...)
    CLI_PRINTF(6, 7);

static enum MHD_Result send_error(server *sv, struct MHD_Connection *c, unsigned status,
                                  const char *param, const char *code, const char *format, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, format);
    vsnprintf(message, sizeof message, format, ap);
    va_end(ap);
    const char *type = status == 401 ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 503 || status == 429 ? "server_overloaded"
                       : status >= 500 ? "server_error" : "invalid_request_error";
    char *body = json_error_body(type, message, param, code);
    pthread_mutex_lock(&sv->mu);
    if (status == 503 || status == 429) sv->rejected++;
    else sv->errors++;
    pthread_mutex_unlock(&sv->mu);
    if (!body) return MHD_NO;
    enum MHD_Result r = send_text(c, status, "application/json", body, strlen(body));
    free(body);
    return r;
}

/* ---- tokens and text ------------------------------------------------------------ */

static ox_status encode(const server *sv, const char *text, size_t len, unsigned flags,
                        int32_t **ids, int *n)
{
    size_t count = 0;
    *ids = NULL;
    ox_status s = ox_tokenizer_encode(sv->tok, text, len, flags, NULL, 0, &count);
    if (s != OX_OK) return s;
    *ids = malloc((count ? count : 1) * sizeof **ids);
    if (!*ids) return OX_ERR_OUT_OF_MEMORY;
    s = ox_tokenizer_encode(sv->tok, text, len, flags, *ids, count, &count);
    if (s != OX_OK) {
        free(*ids);
        *ids = NULL;
    }
    *n = (int)count;
    return s;
}

static char *decode(const server *sv, const int32_t *ids, size_t n, size_t *len)
{
    if (ox_tokenizer_decode(sv->tok, ids, n, NULL, 0, len) != OX_OK) return NULL;
    char *text = malloc(*len + 1);
    if (text && ox_tokenizer_decode(sv->tok, ids, n, text, *len + 1, len) != OX_OK) {
        free(text);
        return NULL;
    }
    if (text) text[*len] = '\0';
    return text;
}

/* text[0..len) as valid UTF-8: every byte that does not start a valid
 * character (a stray continuation, a lead byte not followed by its
 * continuations, an overlong form, a surrogate) becomes U+FFFD, as a
 * sampled run of byte tokens can be anything; so does a NUL byte, which
 * the JSON strings made from C strings cannot hold. An incomplete character at
 * the very end is kept as it is, for the next token may complete it, and
 * *whole is the length before it; with `final`, it is replaced too. A
 * prefix cleans the same way whatever follows it, so offsets into an
 * earlier result stay valid up to its *whole. NULL when out of memory. */
static char *utf8_clean(const char *text, size_t len, bool final, size_t *out_len, size_t *whole)
{
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    char *out = malloc(3 * len + 1);
    if (!out) return NULL;
    size_t i = 0, k = 0;
    *whole = SIZE_MAX;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        size_t need = c == 0 ? 0 : c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2
                      : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        /* have: the bytes of the longest valid start of a character here
         * (Unicode's "maximal subpart": one U+FFFD replaces all of it) */
        size_t have = need ? 1 : 0;
        while (have && have < need && i + have < len) {
            unsigned char d = (unsigned char)text[i + have];
            bool cont = (d & 0xC0) == 0x80;
            if (have == 1) /* the second byte's narrower ranges: no overlongs, surrogates */
                cont = cont && !((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) ||
                                 (c == 0xF0 && d < 0x90) || (c == 0xF4 && d > 0x8F));
            if (!cont) break;
            have++;
        }
        if (need && have == need) {
            memcpy(out + k, text + i, need);
            k += need;
            i += need;
            continue;
        }
        if (need && i + have == len && !final) { /* incomplete, at the end: wait */
            *whole = k;
            memcpy(out + k, text + i, have);
            k += have;
            break;
        }
        memcpy(out + k, fffd, 3);
        k += 3;
        i += have ? have : 1;
    }
    if (*whole == SIZE_MAX) *whole = k;
    out[k] = '\0';
    *out_len = k;
    return out;
}

/* ---- the worker --------------------------------------------------------------------- */

static void frame(job *j, cJSON *chunk)
{
    char *text = cJSON_PrintUnformatted(chunk);
    cJSON_Delete(chunk);
    if (!text) return;
    job_append(j, "data: ", 6);
    job_append(j, text, strlen(text));
    job_append(j, "\n\n", 2);
    free(text);
}

/* The fields every reply object starts with; `object` its type. */
static cJSON *reply_head(const server *sv, const job *j, const char *object)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", j->id);
    cJSON_AddStringToObject(c, "object", object);
    cJSON_AddNumberToObject(c, "created", (double)j->created);
    cJSON_AddStringToObject(c, "model", sv->model_id);
    return c;
}

static cJSON *usage(const job *j)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", j->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + j->n_gen);
    return u;
}

/* A token's text as OpenAI gives it: the decoded piece, or "bytes:\\xNN..."
 * when the piece is not whole UTF-8 (part of a character); and its bytes. */
static cJSON *token_text(const server *sv, int32_t id, cJSON **bytes)
{
    size_t len = 0;
    char *text = decode(sv, &id, 1, &len);
    *bytes = cJSON_CreateArray();
    bool whole = text != NULL;
    for (size_t i = 0; text && i < len; i++) {
        cJSON_AddItemToArray(*bytes, cJSON_CreateNumber((unsigned char)text[i]));
        unsigned char c = (unsigned char)text[i];
        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (need == 0 || i + need > len) whole = false;
        for (size_t k = 1; whole && k < need; k++) whole = ((unsigned char)text[i + k] & 0xC0) == 0x80;
        if (whole && need > 1) {
            for (size_t k = 1; k < need; k++)
                cJSON_AddItemToArray(*bytes, cJSON_CreateNumber((unsigned char)text[i + k]));
            i += need - 1;
        }
    }
    cJSON *out;
    if (whole) {
        out = cJSON_CreateString(text);
    } else {
        char buf[64] = "bytes:";
        size_t at = 6;
        for (size_t i = 0; text && i < len && at + 4 < sizeof buf; i++)
            at += (size_t)snprintf(buf + at, sizeof buf - at, "\\x%02x", (unsigned char)text[i]);
        out = cJSON_CreateString(buf);
    }
    free(text);
    return out;
}

/* The logprobs of tokens [from, to) of a job, in the format of its
 * endpoint; NULL when it asked for none. */
static cJSON *logprobs_json(const server *sv, const job *j, int from, int to)
{
    if (j->logprobs < 0) return NULL;
    cJSON *o = cJSON_CreateObject(), *bytes;
    int n = j->logprobs;
    if (j->chat) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (int t = from; t < to; t++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToArray(content, e);
            cJSON_AddItemToObject(e, "token", token_text(sv, j->gen[t], &bytes));
            cJSON_AddNumberToObject(e, "logprob", j->lp[t]);
            cJSON_AddItemToObject(e, "bytes", bytes);
            cJSON *alts = cJSON_AddArrayToObject(e, "top_logprobs");
            for (int a = 0; a < n; a++) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddItemToArray(alts, x);
                cJSON_AddItemToObject(x, "token", token_text(sv, j->lp_id[t * n + a], &bytes));
                cJSON_AddNumberToObject(x, "logprob", j->lp_alt[t * n + a]);
                cJSON_AddItemToObject(x, "bytes", bytes);
            }
        }
        return o;
    }
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *values = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offsets = cJSON_AddArrayToObject(o, "text_offset");
    size_t offset = 0, len = 0;
    if (from > 0) {
        char *before = decode(sv, j->gen, (size_t)from, &len);
        offset = before ? len : 0;
        free(before);
    }
    for (int t = from; t < to; t++) {
        cJSON *tt = token_text(sv, j->gen[t], &bytes);
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        offset += (size_t)cJSON_GetArraySize(bytes);
        cJSON_Delete(bytes);
        cJSON_AddItemToArray(tokens, tt);
        cJSON_AddItemToArray(values, cJSON_CreateNumber(j->lp[t]));
        cJSON *top = cJSON_CreateObject();
        cJSON_AddItemToArray(tops, top);
        for (int a = 0; a < n; a++) {
            cJSON *at = token_text(sv, j->lp_id[t * n + a], &bytes);
            cJSON_Delete(bytes);
            if (cJSON_IsString(at) && !cJSON_GetObjectItemCaseSensitive(top, at->valuestring))
                cJSON_AddNumberToObject(top, at->valuestring, j->lp_alt[t * n + a]);
            cJSON_Delete(at);
        }
    }
    return o;
}

/* A streamed piece of text (finish NULL), or the end (finish set, text
 * may be empty), with the logprobs of the tokens not yet sent. Under mu. */
static void stream_piece(const server *sv, job *j, const char *text, size_t len, const char *finish,
                         bool first)
{
    cJSON *c = reply_head(sv, j, j->chat ? "chat.completion.chunk" : "text_completion"), *choices = cJSON_AddArrayToObject(c, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    char *piece = strndup(text, len);
    if (j->chat) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (first) cJSON_AddStringToObject(delta, "role", "assistant");
        if (len > 0 || (first && !finish)) cJSON_AddStringToObject(delta, "content", piece ? piece : "");
    } else {
        cJSON_AddStringToObject(ch, "text", piece ? piece : "");
    }
    free(piece);
    cJSON *lp = logprobs_json(sv, j, j->lp_sent, j->n_gen);
    j->lp_sent = j->n_gen;
    if (lp) cJSON_AddItemToObject(ch, "logprobs", lp);
    else cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    frame(j, c);
}

/* The end of a job: the last frames, or the whole body. Under mu. */
static void job_finish(server *sv, job *j, const char *finish, const char *error)
{
    size_t len, whole;
    char *final = j->text ? utf8_clean(j->text, j->text_len, true, &len, &whole) : NULL;
    if (final) { /* an incomplete character left at the end becomes U+FFFD */
        free(j->text);
        j->text = final;
        j->text_len = len;
    }
    if (j->stream) {
        if (error) {
            char *body = json_error_body("server_error", error, NULL, NULL);
            if (body) {
                job_append(j, "data: ", 6);
                job_append(j, body, strlen(body));
                job_append(j, "\n\n", 2);
                free(body);
            }
        } else {
            stream_piece(sv, j, j->text + j->emitted, j->text_len - j->emitted, finish, j->n_gen == 0);
            if (j->include_usage) {
                cJSON *c = reply_head(sv, j, j->chat ? "chat.completion.chunk" : "text_completion");
                cJSON_AddArrayToObject(c, "choices");
                cJSON_AddItemToObject(c, "usage", usage(j));
                frame(j, c);
            }
        }
        job_append(j, "data: [DONE]\n\n", 14);
    } else if (error) {
        char *body = json_error_body("server_error", error, NULL, NULL);
        if (body) job_append(j, body, strlen(body));
        free(body);
        j->status = 500;
    } else {
        cJSON *c = reply_head(sv, j, j->chat ? "chat.completion" : "text_completion");
        cJSON *choices = cJSON_AddArrayToObject(c, "choices"), *ch = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, ch);
        cJSON_AddNumberToObject(ch, "index", 0);
        char *text = strndup(j->text ? j->text : "", j->text_len);
        if (j->chat) {
            cJSON *m = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", text ? text : "");
        } else {
            cJSON_AddStringToObject(ch, "text", text ? text : "");
        }
        free(text);
        cJSON *lp = logprobs_json(sv, j, 0, j->n_gen);
        if (lp) cJSON_AddItemToObject(ch, "logprobs", lp);
        else cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddStringToObject(ch, "finish_reason", finish);
        cJSON_AddItemToObject(c, "usage", usage(j));
        char *body = cJSON_PrintUnformatted(c);
        cJSON_Delete(c);
        if (body) job_append(j, body, strlen(body));
        free(body);
        j->status = body ? 200 : 500;
    }
    if (error) sv->errors++;
    j->finished = true;
    job_wake(j);
}

/* After a new token: decode the reply, cut it at a stop string, and send
 * what is safe (whole UTF-8 characters, not the start of a stop string).
 * Returns true when a stop string ended the reply. Under mu. */
static bool emit(server *sv, job *j, bool *first)
{
    size_t len = 0, whole = 0;
    char *raw = decode(sv, j->gen, (size_t)j->n_gen, &len);
    char *text = raw ? utf8_clean(raw, len, false, &len, &whole) : NULL;
    free(raw);
    if (!text) return false;
    free(j->text);
    j->text = text;
    j->text_len = len;
    bool stopped = false;
    for (int i = 0; i < j->n_stop; i++) {
        char *at = strstr(text, j->stop[i]);
        if (at && (size_t)(at - text) < j->text_len) {
            j->text_len = (size_t)(at - text);
            stopped = true;
        }
    }
    if (stopped || !j->stream) return stopped;
    size_t safe = whole < j->text_len ? whole : j->text_len, hold = 0;
    for (int i = 0; i < j->n_stop; i++) {
        size_t sl = strlen(j->stop[i]);
        for (size_t k = sl - 1 < safe ? sl - 1 : safe; k > hold; k--)
            if (memcmp(text + safe - k, j->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    safe -= hold;
    if (safe > j->emitted) {
        stream_piece(sv, j, text + j->emitted, safe - j->emitted, NULL, *first);
        *first = false;
        j->emitted = safe;
        job_wake(j);
    }
    return false;
}

static void apply_penalties(const job *j, float *logits, int n_vocab)
{
    if (j->presence == 0.0f && j->frequency == 0.0f) return;
    for (int i = 0; i < j->n_gen; i++) {
        int32_t t = j->gen[i];
        bool seen = false;
        for (int k = 0; k < i && !seen; k++) seen = j->gen[k] == t;
        if (seen || t < 0 || t >= n_vocab) continue;
        int count = 0;
        for (int k = i; k < j->n_gen; k++) count += j->gen[k] == t;
        logits[t] -= j->presence + j->frequency * (float)count;
    }
}

static bool is_end(const server *sv, int32_t id)
{
    return id == ox_tokenizer_eos(sv->tok) || id == ox_tokenizer_eot(sv->tok);
}

/* A slot's job after the step that gave it logits (its whole prompt, or
 * its last token, evaluated): the next token sampled, sent, and the job
 * finished if it ends here. */
static void sample_next(server *sv, slot *sl, float *logits)
{
    job *j = sl->job;
    int V = sv->info.n_vocab, n_alt = j->logprobs;
    /* logprobs: of the model's distribution (the raw logits' log-softmax),
     * before penalties and temperature */
    double lse = 0;
    float alt[20];
    int32_t alt_id[20];
    float *raw = logits;
    if (n_alt >= 0) {
        float max = logits[0];
        for (int v = 1; v < V; v++) max = logits[v] > max ? logits[v] : max;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)logits[v] - max);
        lse = max + log(sum);
        int have = 0; /* the n_alt best, in order (ties: lower id first) */
        for (int v = 0; v < V && n_alt > 0; v++) {
            if (have == n_alt && logits[v] <= alt[have - 1]) continue;
            int at = have < n_alt ? have++ : have - 1;
            while (at > 0 && logits[v] > alt[at - 1]) {
                alt[at] = alt[at - 1];
                alt_id[at] = alt_id[at - 1];
                at--;
            }
            alt[at] = logits[v];
            alt_id[at] = v;
        }
        if (j->presence != 0.0f || j->frequency != 0.0f) { /* penalties on a copy */
            raw = malloc((size_t)V * sizeof *raw);
            if (raw) memcpy(raw, logits, (size_t)V * sizeof *raw);
            else raw = logits;
        }
    }
    apply_penalties(j, logits, V);
    int32_t id = 0;
    ox_status s = ox_sampler_sample(j->sampler, logits, V, &id);
    double t = now();
    pthread_mutex_lock(&sv->mu);
    bool first = j->n_gen == 0;
    if (first) observe(&sv->ttft, t - j->t_submit);
    else observe(&sv->itl, t - j->t_last);
    j->t_last = t;
    if (s != OX_OK) {
        job_finish(sv, j, NULL, "sampling failed");
    } else if (is_end(sv, id)) {
        job_finish(sv, j, "stop", NULL);
    } else {
        ox_sampler_accept(j->sampler, id);
        if (j->n_gen == j->cap_gen) {
            int cap = j->cap_gen ? 2 * j->cap_gen : 64;
            int32_t *grown = realloc(j->gen, (size_t)cap * sizeof *grown);
            if (!grown) {
                job_finish(sv, j, NULL, "out of memory");
                pthread_mutex_unlock(&sv->mu);
                return;
            }
            j->gen = grown;
            j->cap_gen = cap;
        }
        j->gen[j->n_gen] = id;
        if (n_alt >= 0) {
            float *lp = realloc(j->lp, (size_t)j->cap_gen * sizeof *lp);
            int32_t *ids = realloc(j->lp_id, (size_t)j->cap_gen * (size_t)(n_alt + 1) * sizeof *ids);
            float *alts = realloc(j->lp_alt, (size_t)j->cap_gen * (size_t)(n_alt + 1) * sizeof *alts);
            if (lp) j->lp = lp;
            if (ids) j->lp_id = ids;
            if (alts) j->lp_alt = alts;
            if (!lp || !ids || !alts) {
                job_finish(sv, j, NULL, "out of memory");
                pthread_mutex_unlock(&sv->mu);
                if (raw != logits) free(raw);
                return;
            }
            j->lp[j->n_gen] = (float)(raw[id] - lse);
            for (int a = 0; a < n_alt; a++) {
                j->lp_id[j->n_gen * n_alt + a] = alt_id[a];
                j->lp_alt[j->n_gen * n_alt + a] = (float)(alt[a] - lse);
            }
        }
        j->n_gen++;
        sv->gen_tokens++;
        bool head = first;
        if (emit(sv, j, &head)) job_finish(sv, j, "stop", NULL);
        else if (j->n_gen >= j->max_tokens || sl->n_tokens + 1 >= sv->n_ctx)
            job_finish(sv, j, "length", NULL);
    }
    pthread_mutex_unlock(&sv->mu);
    if (raw != logits) free(raw);
}

/* The worker's buffers for one step. */
typedef struct step_buffers {
    float *logits;      /* parallel rows of n_vocab */
    ox_session **sessions;
    int *counts, *slots;
    int *sample;        /* the segments that draw a token */
    int32_t *tokens;    /* STEP_TOKENS + parallel */
} step_buffers;

/* Every parts-th segment from `first` that draws a token this step. */
typedef struct sample_part {
    server *sv;
    const step_buffers *b;
    int n, first, parts;
} sample_part;

static void *sample_run(void *arg)
{
    sample_part *p = arg;
    for (int i = p->first; i < p->n; i += p->parts) {
        int g = p->b->sample[i];
        sample_next(p->sv, &p->sv->slots[p->b->slots[g]],
                    p->b->logits + (size_t)g * (size_t)p->sv->info.n_vocab);
    }
    return NULL;
}

/* Token i of a job's sequence: its prompt, then what it generated. */
static int32_t job_token(const job *j, int i)
{
    return i < j->n_prompt ? j->prompt[i] : j->gen[i - j->n_prompt];
}

static int pages_of(const server *sv, int positions)
{
    return (positions + sv->page - 1) / sv->page;
}

static int pool_free(const server *sv)
{
    ox_kv_pool_stats st = {.struct_size = sizeof st};
    return ox_kv_pool_get_stats(sv->pool, &st) == OX_OK ? st.free_pages : 0;
}

/* Free pages until `need` are, giving back the cached prefixes of idle
 * slots, least recently used first (never slot `keep`'s); the free pages
 * then. The worker's. */
static int reclaim(server *sv, int need, int keep)
{
    int free_pages = pool_free(sv);
    while (free_pages < need) {
        int lru = -1;
        for (int i = 0; i < sv->parallel; i++) {
            const slot *sl = &sv->slots[i];
            if (i == keep || sl->job || sl->n_tokens == 0) continue;
            if (lru < 0 || sl->used < sv->slots[lru].used) lru = i;
        }
        if (lru < 0) break;
        ox_session_rewind(sv->slots[lru].se, 0);
        sv->slots[lru].n_tokens = 0;
        free_pages = pool_free(sv);
    }
    return free_pages;
}

/* When the pool cannot hold the next step: the sequence admitted last goes
 * back to the head of the queue with its pages given back; when pages are
 * free again it is prefilled anew with its prompt and what it generated so
 * far, and goes on (its client sees a pause). False when one sequence is
 * left: a sequence alone always fits (--ctx bounds its positions). */
static bool preempt(server *sv)
{
    int victim = -1, active = 0;
    pthread_mutex_lock(&sv->mu);
    for (int i = 0; i < sv->parallel; i++) {
        const job *j = sv->slots[i].job;
        if (!j || j->finished || j->gone) continue;
        active++;
        if (victim < 0 || j->admitted > sv->slots[victim].job->admitted) victim = i;
    }
    if (active < 2) {
        pthread_mutex_unlock(&sv->mu);
        return false;
    }
    slot *sl = &sv->slots[victim];
    job *j = sl->job;
    sl->job = NULL;
    j->fed = 0;
    j->next = sv->queue_head;
    sv->queue_head = j;
    if (!sv->queue_tail) sv->queue_tail = j;
    sv->active--;
    sv->queued++;
    sv->preempted++;
    pthread_mutex_unlock(&sv->mu);
    ox_session_rewind(sl->se, 0);
    sl->n_tokens = 0;
    return true;
}

/* One step: every active sequence in one forward pass
 * (ox_session_eval_batch): each generating one takes its last token, then
 * prompts take chunks of up to PREFILL_CHUNK tokens while the step has
 * fewer than STEP_TOKENS, so long prompts are prefilled over several steps
 * beside the others' tokens. A sequence's pending tokens are those of its
 * prompt and generated text not yet in its session: one when it
 * generates, more while it is prefilled (again, after a preemption). When
 * the pool lacks pages for the step, idle slots give theirs back, then
 * sequences are preempted. */
static void step(server *sv, const step_buffers *b)
{
    int n_seg, n_tok;
    for (;;) {
        int need = 0;
        n_seg = n_tok = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < sv->parallel; i++) {
                slot *sl = &sv->slots[i];
                job *j = sl->job;
                pthread_mutex_lock(&sv->mu);
                bool skip = !j || j->finished || j->gone;
                pthread_mutex_unlock(&sv->mu);
                int pending = skip ? 0 : j->n_prompt + j->n_gen - j->fed;
                if (pending <= 0 || (pending > 1) != (pass == 1)) continue;
                int n = pending < PREFILL_CHUNK ? pending : PREFILL_CHUNK;
                if (n > STEP_TOKENS - n_tok) n = STEP_TOKENS - n_tok;
                if (n <= 0) continue;
                for (int t = 0; t < n; t++) b->tokens[n_tok + t] = job_token(j, j->fed + t);
                need += ox_session_pages_needed(sl->se, n);
                b->sessions[n_seg] = sl->se;
                b->counts[n_seg] = n;
                b->slots[n_seg++] = i;
                n_tok += n;
            }
        if (n_seg == 0) return;
        if (reclaim(sv, need, -1) >= need || !preempt(sv)) break;
    }
    ox_status s = ox_session_eval_batch(b->sessions, b->counts, n_seg, b->tokens, b->logits);
    n_tok = 0;
    int n_sample = 0;
    for (int g = 0; g < n_seg; g++) {
        slot *sl = &sv->slots[b->slots[g]];
        job *j = sl->job;
        int n = b->counts[g];
        if (s != OX_OK) {
            char message[300];
            snprintf(message, sizeof message, "generation failed: %s", ox_errmsg(sv->ctx));
            pthread_mutex_lock(&sv->mu);
            job_finish(sv, j, NULL, message);
            pthread_mutex_unlock(&sv->mu);
            continue;
        }
        memcpy(sl->tokens + sl->n_tokens, b->tokens + n_tok, (size_t)n * sizeof *sl->tokens);
        sl->n_tokens += n;
        n_tok += n;
        j->fed += n;
        if (j->fed < j->n_prompt + j->n_gen) { /* more to prefill */
            pthread_mutex_lock(&sv->mu);
            if (j->stream) job_append(j, ": ping\n\n", 8); /* finds a dead socket */
            job_wake(j);
            pthread_mutex_unlock(&sv->mu);
            continue;
        }
        b->sample[n_sample++] = g;
    }
    /* the draws, over the worker and its helper threads (a draw reads all
     * of the vocabulary: 262144 logits for Gemma 3) */
    sample_part part[MAX_SAMPLERS];
    pthread_t helper[MAX_SAMPLERS];
    bool started[MAX_SAMPLERS] = {false};
    int parts = sv->samplers < n_sample ? sv->samplers : n_sample;
    for (int t = 0; t < parts; t++) {
        part[t] = (sample_part){sv, b, n_sample, t, parts};
        if (t > 0) started[t] = pthread_create(&helper[t], NULL, sample_run, &part[t]) == 0;
    }
    for (int t = 1; t < parts; t++)
        if (!started[t]) sample_run(&part[t]); /* no thread: here */
    if (parts > 0) sample_run(&part[0]);
    for (int t = 1; t < parts; t++)
        if (started[t]) pthread_join(helper[t], NULL);
}

/* The tokens a slot's session holds that begin the job's sequence. */
static int common_prefix(const slot *sl, const job *j)
{
    int n = 0, total = j->n_prompt + j->n_gen;
    while (n < sl->n_tokens && n < total && sl->tokens[n] == job_token(j, n)) n++;
    return n;
}

/* Give queued jobs the free slots, each the one whose cached tokens share
 * the longest prefix with its prompt. Under mu. */
/* Whether a job's client has gone: libmicrohttpd does not watch a
 * suspended connection (a request waiting for a slot, a whole reply being
 * generated), so its socket is peeked at: end of stream or an error means
 * the client closed it. Under mu. */
static bool client_gone(job *j)
{
    if (j->gone) return true;
    if (!j->suspended || !j->conn || j->fd < 0) return false;
    char byte;
    ssize_t n = recv(j->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        j->gone = true;
    return j->gone;
}

static void admit(server *sv)
{
    /* the queued whose clients have gone leave first */
    for (job **at = &sv->queue_head; *at;) {
        job *j = *at;
        if (!client_gone(j)) {
            at = &j->next;
            continue;
        }
        *at = j->next;
        sv->queued--;
        sv->cancelled++;
        j->finished = true;
        job_wake(j);
        job_release(j);
    }
    sv->queue_tail = NULL;
    for (job *j = sv->queue_head; j; j = j->next) sv->queue_tail = j;
    while (sv->queue_head) {
        int best = -1, best_len = -1;
        job *j = sv->queue_head;
        for (int i = 0; i < sv->parallel; i++) {
            if (sv->slots[i].job) continue;
            int len = common_prefix(&sv->slots[i], j);
            if (len > best_len) best = i, best_len = len;
        }
        if (best < 0) return;
        slot *sl = &sv->slots[best];
        /* the last token is evaluated again for its logits */
        int total = j->n_prompt + j->n_gen, keep = best_len < total ? best_len : total - 1;
        /* pages for its whole sequence so far, past those of what the slot
         * keeps, and one for each active sequence to grow into (so that
         * admitting does not soon preempt): the free ones, the idle
         * slots' and the slot's own past `keep`; else the job waits (first
         * in, first served) */
        int need = pages_of(sv, total) - pages_of(sv, keep) + sv->active;
        if (reclaim(sv, need, best) + pages_of(sv, sl->n_tokens) - pages_of(sv, keep) < need) return;
        sv->queue_head = j->next;
        if (!sv->queue_head) sv->queue_tail = NULL;
        sv->queued--;
        sv->active++;
        ox_session_rewind(sl->se, keep);
        sl->n_tokens = keep;
        sl->job = j;
        if (j->admitted == 0) sv->prompt_tokens += (uint64_t)j->n_prompt; /* not again */
        sl->used = j->admitted = ++sv->admissions;
        j->slot = best;
        j->fed = keep;
    }
}

/* Before the server says it is ready: the largest step there can be (every
 * slot, STEP_TOKENS tokens), so that its memory is taken now and RSS stays
 * flat under load; the sessions then start empty. */
static int warm_up(server *sv)
{
    /* every slot but the first one page, the first the rest (up to) */
    int P = sv->parallel < sv->pool_pages ? sv->parallel : sv->pool_pages;
    int first = STEP_TOKENS - (P - 1), room = (sv->pool_pages - (P - 1)) * sv->page;
    if (first > sv->n_ctx - 1) first = sv->n_ctx - 1;
    if (first > room) first = room;
    if (first < 1) first = 1;
    float *logits = malloc((size_t)P * (size_t)sv->info.n_vocab * sizeof *logits);
    int32_t *tokens = malloc((size_t)(first + P) * sizeof *tokens);
    ox_session **sessions = malloc((size_t)P * sizeof *sessions);
    int *counts = malloc((size_t)P * sizeof *counts);
    int status = CLI_EXIT_OK;
    if (!logits || !tokens || !sessions || !counts) {
        status = cli_error(sv->command, "out of memory");
    } else {
        int32_t bos = ox_tokenizer_bos(sv->tok) >= 0 ? ox_tokenizer_bos(sv->tok) : 0;
        for (int i = 0; i < first + P - 1; i++) tokens[i] = bos;
        for (int i = 0; i < P; i++) {
            sessions[i] = sv->slots[i].se;
            counts[i] = i == 0 ? first : 1;
        }
        ox_status s = ox_session_eval_batch(sessions, counts, P, tokens, logits);
        if (s != OX_OK) status = cli_library_error(sv->command, sv->ctx, s);
        for (int i = 0; i < P; i++) ox_session_rewind(sv->slots[i].se, 0);
    }
    free(logits);
    free(tokens);
    free(sessions);
    free(counts);
    return status;
}

/* Every sequence in a slot that has not finished ends with the error why.
 * Under mu. */
static void fail_active(server *sv, const char *why)
{
    for (int i = 0; i < sv->parallel; i++) {
        job *j = sv->slots[i].job;
        if (j && !j->finished) job_finish(sv, j, NULL, why);
    }
}

/* Set by SIGTERM or SIGINT, or by the worker when the server must stop. */
static volatile sig_atomic_t stop_signal;

/* The model file rewritten or truncated in place (ox_gguf_check_file,
 * before every step): every request in flight or queued fails with the
 * reason, new ones get 503, and the server stops with exit status 1,
 * rather than generate from weights that changed under it. Under mu. */
static void model_changed(server *sv, const char *why)
{
    snprintf(sv->broken, sizeof sv->broken, "%s", why);
    fprintf(stderr, "ox serve: %s: stopping\n", sv->broken);
    fail_active(sv, sv->broken);
    while (sv->queue_head) {
        job *j = sv->queue_head;
        sv->queue_head = j->next;
        sv->queued--;
        job_finish(sv, j, NULL, sv->broken);
        job_release(j);
    }
    sv->queue_tail = NULL;
    sv->stopping = true;
    stop_signal = SIGTERM;
}

static void *worker_main(void *arg)
{
    server *sv = arg;
    size_t P = (size_t)sv->parallel;
    step_buffers b = {malloc(P * (size_t)sv->info.n_vocab * sizeof *b.logits),
                      malloc(P * sizeof *b.sessions), malloc(P * sizeof *b.counts),
                      malloc(P * sizeof *b.slots), malloc(P * sizeof *b.sample),
                      malloc((STEP_TOKENS + P) * sizeof *b.tokens)};
    bool ok = b.logits && b.sessions && b.counts && b.slots && b.sample && b.tokens;
    pthread_mutex_lock(&sv->mu);
    for (;;) {
        /* the finished and the abandoned leave their slots */
        for (int i = 0; i < sv->parallel; i++) {
            job *j = sv->slots[i].job;
            if (!j || !(j->finished || client_gone(j))) continue;
            if (j->gone && !j->finished) {
                sv->cancelled++;
                j->finished = true;
                job_wake(j); /* a suspended connection: libmicrohttpd closes it now */
                ox_session_rewind(sv->slots[i].se, 0); /* its pages, now */
                sv->slots[i].n_tokens = 0;
            }
            sv->slots[i].job = NULL;
            sv->active--;
            job_release(j);
        }
        admit(sv);
        if (sv->active == 0) {
            if (sv->stopping && !sv->queue_head) break;
            pthread_cond_wait(&sv->cv, &sv->mu);
            continue;
        }
        if (!ok) {
            fail_active(sv, "out of memory");
            continue;
        }
        pthread_mutex_unlock(&sv->mu);
        ox_status file = ox_gguf_check_file(ox_model_gguf(sv->model)); /* a stat call */
        if (file == OX_OK) step(sv, &b);
        pthread_mutex_lock(&sv->mu);
        if (file != OX_OK && !sv->broken[0]) model_changed(sv, ox_errmsg(sv->ctx));
    }
    pthread_mutex_unlock(&sv->mu);
    free(b.logits);
    free(b.sessions);
    free(b.counts);
    free(b.slots);
    free(b.sample);
    free(b.tokens);
    return NULL;
}

/* ---- requests -------------------------------------------------------------------------- */

typedef struct conn_state {
    char *body;
    size_t len;
    bool too_big;
    job *job; /* a non-streaming job waiting for its reply */
} conn_state;

/* A streaming response's content: what the worker has appended; with
 * nothing new, the connection is suspended until it appends. */
typedef struct stream_ref {
    server *sv;
    job *j;
} stream_ref;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_ref *ref = cls;
    job *j = ref->j;
    pthread_mutex_lock(&ref->sv->mu);
    ssize_t n;
    if (j->out_sent < j->out_len) {
        size_t left = j->out_len - j->out_sent;
        n = (ssize_t)(left < max ? left : max);
        memcpy(buf, j->out + j->out_sent, (size_t)n);
        j->out_sent += (size_t)n;
    } else if (j->finished) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        j->suspended = true;
        MHD_suspend_connection(j->conn);
        n = 0;
    }
    pthread_mutex_unlock(&ref->sv->mu);
    return n;
}

static void stream_free(void *cls)
{
    stream_ref *ref = cls;
    pthread_mutex_lock(&ref->sv->mu);
    if (!ref->j->finished) ref->j->gone = true;
    ref->j->conn = NULL;
    ref->j->suspended = false;
    job_release(ref->j);
    pthread_cond_signal(&ref->sv->cv);
    pthread_mutex_unlock(&ref->sv->mu);
    free(ref);
}

static bool authorized(const server *sv, struct MHD_Connection *c)
{
    if (!sv->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    /* compare every byte, whatever matches, against timing probes */
    const char *given = h + 7;
    size_t a = strlen(given), b = strlen(sv->api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned)(given[i] ^ sv->api_key[i]);
    return diff == 0;
}

/* The conversation's text through the model's chat format. */
static char *chat_text(server *sv, const serve_request *r)
{
    size_t len = 0;
    char *text = NULL;
    ox_status s = ox_chat_apply(sv->ctx, sv->chat_name, r->messages, (size_t)r->n_messages, true,
                                NULL, 0, &len);
    if (s == OX_OK || s == OX_ERR_OUT_OF_RANGE) text = malloc(len + 1);
    if (text && ox_chat_apply(sv->ctx, sv->chat_name, r->messages, (size_t)r->n_messages, true,
                              text, len + 1, &len) != OX_OK) {
        free(text);
        text = NULL;
    }
    return text;
}

/* A completion or chat request made a job: parsed (serve_request.c), the
 * model checked, the chat format applied, tokenized and fitted to the
 * context. NULL with *e set. */
static job *parse_job(server *sv, const char *body, size_t len, bool chat, serve_error *e)
{
    serve_request r;
    if (!serve_request_parse(body, len, chat, &r, e)) return NULL;
    job *j = calloc(1, sizeof *j);
    char *text = NULL;
    bool ok = j ? true : serve_fail(e, NULL, "out of memory");
    if (ok && r.model && r.model[0] && strcmp(r.model, sv->model_id) != 0) {
        ok = serve_fail(e, "model", "model '%.100s' does not exist; this server has '%s'", r.model,
                      sv->model_id);
        e->status = 404;
    }
    unsigned flags = OX_TOKENIZE_ADD_BOS;
    if (ok && chat) {
        text = chat_text(sv, &r);
        if (!text) ok = serve_fail(e, "messages", "the chat format '%s' could not be applied: %s",
                                 sv->chat_name, ox_errmsg(sv->ctx));
        flags |= OX_TOKENIZE_PARSE_SPECIAL;
    } else if (ok) {
        text = r.prompt;
        r.prompt = NULL;
    }
    if (ok) {
        j->sv = sv;
        j->chat = chat;
        j->stream = r.stream;
        j->include_usage = r.include_usage;
        j->sp = r.sampling;
        if (!r.seed_given) j->sp.seed = cli_random_seed();
        j->presence = r.presence;
        j->frequency = r.frequency;
        j->logprobs = r.logprobs;
        for (int i = 0; i < r.n_stop; i++) j->stop[j->n_stop++] = r.stop[i];
        r.n_stop = 0;
        if (chat && sv->end_of_turn && !(j->stop[j->n_stop++] = strdup(sv->end_of_turn)))
            ok = serve_fail(e, NULL, "out of memory");
    }
    if (ok && encode(sv, text, strlen(text), flags, &j->prompt, &j->n_prompt) != OX_OK)
        ok = serve_fail(e, chat ? "messages" : "prompt", "the prompt could not be tokenized: %s",
                      ox_errmsg(sv->ctx));
    if (ok && j->n_prompt == 0) ok = serve_fail(e, "prompt", "the prompt is empty");
    if (ok && j->n_prompt >= sv->n_ctx)
        ok = serve_fail(e, chat ? "messages" : "prompt", "the prompt is %d tokens; the context "
                      "holds %d (with room for one generated token)", j->n_prompt, sv->n_ctx);
    if (ok) {
        int room = sv->n_ctx - j->n_prompt;
        j->max_tokens = r.max_tokens < 0 || r.max_tokens > room ? room : r.max_tokens;
        if (j->max_tokens == 0) j->max_tokens = 1;
        if (ox_sampler_create(sv->ctx, &j->sp, &j->sampler) != OX_OK)
            ok = serve_fail(e, NULL, "the sampling parameters were refused: %s", ox_errmsg(sv->ctx));
        for (int i = 0; ok && i < j->n_prompt; i++) ox_sampler_accept(j->sampler, j->prompt[i]);
    }
    free(text);
    serve_request_free(&r);
    if (!ok) {
        if (j) {
            pthread_mutex_lock(&sv->mu);
            j->sv = sv;
            j->refs = 1;
            sv->live++; /* job_release counts it out */
            job_release(j);
            pthread_mutex_unlock(&sv->mu);
        }
        return NULL;
    }
    static atomic_ullong counter;
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)atomic_fetch_add(&counter, 1));
    j->created = (long long)time(NULL);
    j->status = 200;
    return j;
}

static enum MHD_Result start_job(server *sv, struct MHD_Connection *c, conn_state *cs, bool chat)
{
    serve_error e;
    job *j = parse_job(sv, cs->body ? cs->body : "", cs->len, chat, &e);
    if (!j) return send_error(sv, c, e.status, e.param, e.status == 404 ? "model_not_found" : NULL,
                              "%s", e.message);
    pthread_mutex_lock(&sv->mu);
    if (sv->stopping || sv->queued >= sv->max_queue) {
        bool stopping = sv->stopping;
        j->refs = 1;
        sv->live++;
        job_release(j);
        pthread_mutex_unlock(&sv->mu);
        char why[600];
        if (stopping)
            snprintf(why, sizeof why, "the server is shutting down%s%s",
                     sv->broken[0] ? ": " : "", sv->broken);
        else
            snprintf(why, sizeof why, "the queue is full (%d requests wait); try again later",
                     sv->max_queue);
        return send_error(sv, c, 503, NULL, NULL, "%s", why);
    }
    j->refs = 2; /* the worker's and the connection's */
    sv->live++;
    j->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    j->t_submit = now();
    sv->requests++;
    if (sv->queue_tail) sv->queue_tail->next = j;
    else sv->queue_head = j;
    sv->queue_tail = j;
    sv->queued++;
    pthread_cond_signal(&sv->cv);
    if (!j->stream) { /* wait (suspended) for the whole reply */
        cs->job = j;
        j->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&sv->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&sv->mu);
    stream_ref *ref = malloc(sizeof *ref);
    struct MHD_Response *r = ref ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                                     stream_read, ref, stream_free)
                                 : NULL;
    if (!r) {
        pthread_mutex_lock(&sv->mu);
        j->gone = true;
        job_release(j);
        pthread_mutex_unlock(&sv->mu);
        free(ref);
        return MHD_NO;
    }
    *ref = (stream_ref){sv, j};
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result models(server *sv, struct MHD_Connection *c)
{
    cJSON *root = cJSON_CreateObject(), *data;
    cJSON_AddStringToObject(root, "object", "list");
    data = cJSON_AddArrayToObject(root, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", sv->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "openxpu");
    cJSON_AddNumberToObject(m, "context_length", sv->n_ctx);
    return send_json(c, 200, root);
}

static enum MHD_Result tokenize(server *sv, struct MHD_Connection *c, conn_state *cs, bool back)
{
    serve_error e;
    const char *body = cs->body ? cs->body : "";
    cJSON *out = cJSON_CreateObject();
    if (!out) return MHD_NO;
    if (!back) {
        char *content;
        bool special;
        int32_t *ids = NULL;
        int n = 0;
        if (!serve_tokenize_parse(body, cs->len, &content, &special, &e)) {
            cJSON_Delete(out);
            return send_error(sv, c, e.status, e.param, NULL, "%s", e.message);
        }
        ox_status s = encode(sv, content, strlen(content), special ? OX_TOKENIZE_ADD_BOS : 0, &ids, &n);
        free(content);
        if (s != OX_OK) {
            cJSON_Delete(out);
            return send_error(sv, c, 400, "content", NULL, "the text could not be tokenized");
        }
        cJSON *list = cJSON_AddArrayToObject(out, "tokens");
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(list, cJSON_CreateNumber(ids[i]));
        free(ids);
    } else {
        int32_t *ids;
        int n;
        size_t len = 0;
        if (!serve_detokenize_parse(body, cs->len, sv->info.n_vocab, &ids, &n, &e)) {
            cJSON_Delete(out);
            return send_error(sv, c, e.status, e.param, NULL, "%s", e.message);
        }
        char *raw = decode(sv, ids, (size_t)n, &len);
        size_t whole;
        char *text = raw ? utf8_clean(raw, len, true, &len, &whole) : NULL;
        free(raw);
        free(ids);
        if (!text) {
            cJSON_Delete(out);
            return send_error(sv, c, 500, NULL, NULL, "the tokens could not be decoded");
        }
        cJSON_AddStringToObject(out, "content", text);
        free(text);
    }
    return send_json(c, 200, out);
}

static void metric(char **buf, size_t *len, size_t *cap, const char *format, ...) CLI_PRINTF(4, 5);

static void metric(char **buf, size_t *len, size_t *cap, const char *format, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, format);
        int n = *buf ? vsnprintf(*buf + *len, *cap - *len, format, ap) : -1;
        va_end(ap);
        if (n >= 0 && (size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        size_t grown_cap = *cap ? *cap * 2 : 4096;
        char *grown = realloc(*buf, grown_cap);
        if (!grown) return;
        *buf = grown;
        *cap = grown_cap;
    }
}

static void metric_histogram(char **b, size_t *len, size_t *cap, const char *name, const char *help,
                             const histogram *h)
{
    metric(b, len, cap, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t total = 0;
    for (int i = 0; i < N_BUCKETS; i++) {
        total += h->counts[i];
        metric(b, len, cap, "%s_bucket{le=\"%g\"} %llu\n", name, BUCKETS[i], (unsigned long long)total);
    }
    metric(b, len, cap, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
           (unsigned long long)h->n, name, h->sum, name, (unsigned long long)h->n);
}

static enum MHD_Result metrics(server *sv, struct MHD_Connection *c)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    pthread_mutex_lock(&sv->mu);
    ox_kv_pool_stats st = {.struct_size = sizeof st};
    if (!atomic_load(&sv->ready) || ox_kv_pool_get_stats(sv->pool, &st) != OX_OK) st.page_size = 0;
    struct { const char *name, *type, *help; double value; } rows[] = {
        {"ox_requests_total", "counter", "generation requests accepted", (double)sv->requests},
        {"ox_requests_rejected_total", "counter", "requests refused with 503 (queue full, "
         "shutting down)", (double)sv->rejected},
        {"ox_request_errors_total", "counter", "requests answered with an error", (double)sv->errors},
        {"ox_requests_cancelled_total", "counter", "sequences stopped because the client went away",
         (double)sv->cancelled},
        {"ox_prompt_tokens_total", "counter", "prompt tokens of admitted requests",
         (double)sv->prompt_tokens},
        {"ox_generated_tokens_total", "counter", "tokens generated", (double)sv->gen_tokens},
        {"ox_queue_depth", "gauge", "requests waiting for a slot", (double)sv->queued},
        {"ox_active_sequences", "gauge", "sequences being generated", (double)sv->active},
        {"ox_slots", "gauge", "sequences that can be generated at once", (double)sv->parallel},
        {"ox_kv_cache_used_tokens", "gauge", "positions of the KV pool's pages in use (active "
         "sequences and cached prefixes of idle slots, which give theirs back on demand)",
         (double)(st.pages - st.free_pages) * st.page_size},
        {"ox_kv_cache_capacity_tokens", "gauge", "positions the KV pool holds, shared by all "
         "sequences", (double)st.pages * st.page_size},
        {"ox_kv_cache_free_pages", "gauge", "pages of the KV pool free", (double)st.free_pages},
        {"ox_preemptions_total", "counter", "sequences put back in the queue because the KV pool "
         "was full (prefilled again later)", (double)sv->preempted},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        metric(&b, &len, &cap, "# HELP %s %s\n# TYPE %s %s\n%s %.0f\n", rows[i].name, rows[i].help,
               rows[i].name, rows[i].type, rows[i].name, rows[i].value);
    metric_histogram(&b, &len, &cap, "ox_time_to_first_token_seconds",
                     "from the request's arrival to its first token", &sv->ttft);
    metric_histogram(&b, &len, &cap, "ox_inter_token_seconds", "between consecutive tokens of a "
                     "sequence", &sv->itl);
    pthread_mutex_unlock(&sv->mu);
    if (!b) return MHD_NO;
    enum MHD_Result r = send_text(c, 200, "text/plain; version=0.0.4", b, len);
    free(b);
    return r;
}

extern const char ox_serve_page[];

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    server *sv = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) { /* the body, up to MAX_BODY */
        if (!cs->too_big && cs->len + *upload_size <= MAX_BODY) {
            char *grown = realloc(cs->body, cs->len + *upload_size + 1);
            if (grown) {
                memcpy(grown + cs->len, upload, *upload_size);
                cs->body = grown;
                cs->len += *upload_size;
                cs->body[cs->len] = '\0';
            } else {
                cs->too_big = true;
            }
        } else {
            cs->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->job) { /* a non-streaming job: resumed */
        job *j = cs->job;
        pthread_mutex_lock(&sv->mu);
        if (!j->finished) {
            j->suspended = true;
            MHD_suspend_connection(c);
            pthread_mutex_unlock(&sv->mu);
            return MHD_YES;
        }
        char *body = j->out ? j->out : "";
        size_t len = j->out_len;
        int status = j->status;
        pthread_mutex_unlock(&sv->mu);
        return send_text(c, (unsigned)status, "application/json", body, len);
    }
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (get && strcmp(url, "/health") == 0) {
        bool ready = atomic_load(&sv->ready);
        const char *body = ready ? "{\"status\":\"ok\"}" : "{\"status\":\"loading model\"}";
        return send_text(c, ready ? 200 : 503, "application/json", body, strlen(body));
    }
    if (get && strcmp(url, "/") == 0)
        return send_text(c, 200, "text/html; charset=utf-8", ox_serve_page, strlen(ox_serve_page));
    if (!atomic_load(&sv->ready))
        return send_error(sv, c, 503, NULL, NULL, "the model is still loading");
    if (get && strcmp(url, "/metrics") == 0) return metrics(sv, c);
    bool v1 = strncmp(url, "/v1/", 4) == 0;
    bool known = strcmp(url, "/v1/models") == 0 || strcmp(url, "/v1/completions") == 0 ||
                 strcmp(url, "/v1/chat/completions") == 0 || strcmp(url, "/tokenize") == 0 ||
                 strcmp(url, "/detokenize") == 0;
    if ((v1 || known) && !authorized(sv, c))
        return send_error(sv, c, 401, NULL, "invalid_api_key", "a valid API key is required "
                          "(Authorization: Bearer KEY)");
    if (cs->too_big)
        return send_error(sv, c, 413, NULL, NULL, "the body is larger than %u bytes", MAX_BODY);
    if (get && strcmp(url, "/v1/models") == 0) return models(sv, c);
    if (post && strcmp(url, "/v1/completions") == 0) return start_job(sv, c, cs, false);
    if (post && strcmp(url, "/v1/chat/completions") == 0) return start_job(sv, c, cs, true);
    if (post && strcmp(url, "/tokenize") == 0) return tokenize(sv, c, cs, false);
    if (post && strcmp(url, "/detokenize") == 0) return tokenize(sv, c, cs, true);
    if (known || strcmp(url, "/metrics") == 0)
        return send_error(sv, c, 405, NULL, NULL, "%s does not take %s", url, method);
    return send_error(sv, c, 404, NULL, NULL, "no such endpoint: %s %s", method, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    server *sv = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    if (cs->job) {
        pthread_mutex_lock(&sv->mu);
        if (!cs->job->finished) cs->job->gone = true;
        cs->job->conn = NULL;
        cs->job->suspended = false;
        job_release(cs->job);
        pthread_cond_signal(&sv->cv);
        pthread_mutex_unlock(&sv->mu);
    }
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ---- the command ----------------------------------------------------------------------- */

static void on_stop(int sig)
{
    stop_signal = sig;
}

typedef struct serve_opts {
    const char *model, *host, *device, *api_key, *api_key_file;
    int port, parallel, n_ctx, max_queue, timeout, max_connections;
    bool reproducible;
} serve_opts;

static int parse_int(const cli_command *c, const char *name, const char *value, int lo, int hi,
                     int *out)
{
    char *end;
    long v = strtol(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < lo || v > hi)
        return cli_usage_error(c, "--%s: '%s' is not an integer in [%d, %d]", name, value, lo, hi);
    *out = (int)v;
    return CLI_EXIT_OK;
}

/* parse_serve's result when --help was printed: exit 0, serve nothing. */
#define SERVE_HELP_SHOWN (-1)

static int parse_serve(const cli_command *c, int argc, char **argv, serve_opts *o)
{
    cli_parser p;
    const char *value;
    int index, status = CLI_EXIT_OK;
    *o = (serve_opts){.host = "127.0.0.1", .port = 8080, .parallel = 4, .max_queue = 64,
                      .timeout = 30, .max_connections = 1024};
    cli_parser_init(&p, c, argc, argv);
    while (status == CLI_EXIT_OK && (index = cli_parse_next(&p, &value)) != CLI_PARSE_END) {
        switch (index) {
        case CLI_PARSE_OPERAND:
            if (o->model) return cli_usage_error(c, "one model only: '%s'", value);
            o->model = value;
            break;
        case OPTION_HOST: o->host = value; break;
        case OPTION_REPRODUCIBLE: o->reproducible = true; break;
        case OPTION_PORT: status = parse_int(c, "port", value, 0, 65535, &o->port); break;
        case OPTION_DEVICE: o->device = value; break;
        case OPTION_PARALLEL: status = parse_int(c, "parallel", value, 1, 256, &o->parallel); break;
        case OPTION_CTX: status = parse_int(c, "ctx", value, 8, 1 << 20, &o->n_ctx); break;
        case OPTION_API_KEY: o->api_key = value; break;
        case OPTION_API_KEY_FILE: o->api_key_file = value; break;
        case OPTION_MAX_QUEUE: status = parse_int(c, "max-queue", value, 0, 1 << 20, &o->max_queue); break;
        case OPTION_TIMEOUT: status = parse_int(c, "timeout", value, 1, 86400, &o->timeout); break;
        case OPTION_MAX_CONNECTIONS:
            status = parse_int(c, "max-connections", value, 1, 1 << 20, &o->max_connections);
            break;
        default:
            status = cli_parse_stop(c, index);
            return index == CLI_PARSE_HELP && status == CLI_EXIT_OK ? SERVE_HELP_SHOWN : status;
        }
    }
    if (status != CLI_EXIT_OK) return status;
    if (!o->model) return cli_usage_error(c, "a MODEL file is required");
    if (o->api_key && o->api_key_file)
        return cli_usage_error(c, "--api-key and --api-key-file: give one");
    return CLI_EXIT_OK;
}

static int load(server *sv, const serve_opts *o)
{
    const cli_command *c = sv->command;
    ox_device *devices[CLI_MAX_DEVICES];
    int n = 0, status = cli_select_devices(c, sv->ctx, o->device, devices, &n);
    if (status != CLI_EXIT_OK) return status;
    sv->device = devices[0];
    cli_guard_mapping(c, o->model);
    ox_status s;
    if (n == 1) {
        s = ox_model_load(sv->device, o->model, &sv->model);
    } else {
        /* several devices pool as one: every layer's matrices split by rows
         * in proportion to the devices' measured speeds (ox run --split
         * tensor), so that a batched step runs on all of them at once; the
         * pipeline's own session is not used (8 positions) */
        ox_pipeline_options po = {.struct_size = sizeof po, .n_ctx = 8, .tensor_parallel = 1};
        s = ox_pipeline_create(sv->ctx, o->model, devices, n, &po, &sv->pipeline);
        if (s == OX_OK) {
            sv->model = ox_pipeline_model(sv->pipeline, 0);
            char stages[512];
            cli_describe_stages(sv->pipeline, stages, sizeof stages);
            fprintf(stderr, "ox serve: %s\n", stages);
        }
    }
    sv->info.struct_size = sizeof sv->info;
    if (s == OX_OK) s = ox_model_get_info(sv->model, &sv->info);
    if (s == OX_OK) s = ox_tokenizer_load(sv->ctx, ox_model_gguf(sv->model), &sv->tok);
    if (s != OX_OK) return cli_library_error(c, sv->ctx, s);
    /* one pool of --ctx positions (default: min(trained context, 4096) per
     * slot) that every sequence takes pages of; a sequence may use all of
     * it, up to the model's trained context */
    int train = sv->info.n_ctx_train, per_slot = train < 4096 ? train : 4096;
    int64_t positions = o->n_ctx ? o->n_ctx : (int64_t)sv->parallel * per_slot;
    if (positions > (1 << 24)) positions = 1 << 24;
    ox_kv_pool_options po = {.struct_size = sizeof po, .n_tokens = (int)positions};
    if ((s = ox_kv_pool_create(sv->model, &po, &sv->pool))) return cli_library_error(c, sv->ctx, s);
    ox_kv_pool_stats st = {.struct_size = sizeof st};
    if ((s = ox_kv_pool_get_stats(sv->pool, &st))) return cli_library_error(c, sv->ctx, s);
    sv->page = st.page_size;
    sv->pool_pages = st.pages;
    sv->n_ctx = positions < train ? (int)positions : train;
    sv->chat_name = ox_chat_template_name(sv->model);
    sv->end_of_turn = ox_chat_end_of_turn(sv->chat_name);
    sv->slots = calloc((size_t)sv->parallel, sizeof *sv->slots);
    if (!sv->slots) return cli_error(c, "out of memory");
    ox_session_options so = {.struct_size = sizeof so, .n_ctx = sv->n_ctx, .pool = sv->pool};
    for (int i = 0; i < sv->parallel; i++) {
        sv->slots[i].tokens = malloc((size_t)sv->n_ctx * sizeof *sv->slots[i].tokens);
        if (!sv->slots[i].tokens) return cli_error(c, "out of memory");
        if ((s = ox_session_create_ex(sv->model, &so, &sv->slots[i].se)))
            return cli_library_error(c, sv->ctx, s);
    }
    return CLI_EXIT_OK;
}

static char *read_key(const cli_command *c, const char *path)
{
    size_t size = 0;
    char *key = cli_read_file(c, path, &size);
    if (!key) return NULL;
    size_t end = strcspn(key, "\r\n");
    key[end] = '\0';
    if (end == 0) {
        cli_error(c, "--api-key-file %s: the file holds no key", path);
        free(key);
        return NULL;
    }
    return key;
}


/* The model's name for "model" fields: the file's name without ".gguf". */
static void model_name(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".gguf") == 0) len -= 5;
    snprintf(out, cap, "%.*s", (int)len, base);
}

static void drain(server *sv)
{
    pthread_mutex_lock(&sv->mu);
    sv->stopping = true;
    int waiting = sv->queued + sv->active;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    fprintf(stderr, "ox serve: stopping: %d request(s) in flight finish first (a second signal "
            "stops at once)\n", waiting);
    stop_signal = 0;
    for (;;) {
        pthread_mutex_lock(&sv->mu);
        int live = sv->live;
        pthread_mutex_unlock(&sv->mu);
        if (live == 0 || stop_signal) break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void free_server(server *sv)
{
    for (int i = 0; sv->slots && i < sv->parallel; i++) {
        ox_session_free(sv->slots[i].se);
        free(sv->slots[i].tokens);
    }
    free(sv->slots);
    ox_kv_pool_free(sv->pool);
    ox_tokenizer_free(sv->tok);
    if (sv->pipeline) ox_pipeline_free(sv->pipeline); /* with its model */
    else ox_model_free(sv->model);
    ox_context_free(sv->ctx);
    free(sv->api_key);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
}

static int run_serve(const cli_command *command, int argc, char **argv)
{
    serve_opts o;
    int status = parse_serve(command, argc, argv, &o);
    if (status == SERVE_HELP_SHOWN) return CLI_EXIT_OK;
    if (status != CLI_EXIT_OK) return status;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
    if (inet_pton(AF_INET, o.host, &addr.sin_addr) != 1)
        return cli_usage_error(command, "--host: '%s' is not an IPv4 address", o.host);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    server sv = {.command = command, .parallel = o.parallel, .max_queue = o.max_queue,
                 .samplers = cores < 1 ? 1 : cores > MAX_SAMPLERS ? MAX_SAMPLERS : (int)cores};
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.cv, NULL);
    model_name(o.model, sv.model_id, sizeof sv.model_id);
    if (o.api_key) sv.api_key = strdup(o.api_key);
    if (o.api_key_file && !(sv.api_key = read_key(command, o.api_key_file))) {
        free_server(&sv);
        return CLI_EXIT_FAILURE;
    }
    if ((status = cli_context_open_mode(command, o.reproducible, &sv.ctx)) != CLI_EXIT_OK) {
        free_server(&sv);
        return status;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* listening first, so /health answers 503 while the model loads */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)o.port, NULL, NULL,
        handle, &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o.max_connections,
        MHD_OPTION_NOTIFY_COMPLETED, completed, &sv, MHD_OPTION_END);
    if (!d) {
        status = cli_error(command, "cannot listen on %s:%d: %s", o.host, o.port, strerror(errno));
        free_server(&sv);
        return status;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : o.port;
    fprintf(stderr, "ox serve: listening on http://%s:%d/ (loading %s)\n", o.host, port, o.model);
    status = load(&sv, &o);
    if (status == CLI_EXIT_OK) status = warm_up(&sv);
    pthread_t worker;
    if (status == CLI_EXIT_OK && pthread_create(&worker, NULL, worker_main, &sv) != 0)
        status = cli_error(command, "cannot start the worker thread");
    if (status != CLI_EXIT_OK) {
        MHD_stop_daemon(d);
        free_server(&sv);
        return status;
    }
    ox_device_info di = {.struct_size = sizeof di};
    ox_device_get_info(sv.device, &di);
    atomic_store(&sv.ready, true);
    fprintf(stderr, "ox serve: ready: %s on %s, %d sequences at once sharing a KV pool of %d "
            "positions (pages of %d), up to %d a sequence, model id '%s'%s\n", o.model, di.name,
            sv.parallel, sv.pool_pages * sv.page, sv.page, sv.n_ctx, sv.model_id,
            sv.api_key ? ", API key required" : "");
    while (!stop_signal) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_quiesce_daemon(d); /* no new connections; the open ones go on */
    drain(&sv);
    pthread_mutex_lock(&sv.mu);
    sv.stopping = true;
    for (int i = 0; i < sv.parallel; i++) /* a second signal: stop the rest now */
        if (sv.slots[i].job) sv.slots[i].job->gone = true;
    for (job *j = sv.queue_head; j; j = j->next) j->gone = true;
    pthread_cond_broadcast(&sv.cv);
    pthread_mutex_unlock(&sv.mu);
    pthread_join(worker, NULL);
    MHD_stop_daemon(d);
    fprintf(stderr, "ox serve: stopped\n");
    status = sv.broken[0] ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    free_server(&sv);
    return status;
}

#else /* built without libmicrohttpd */

static const cli_option serve_options[] = {{NULL, NULL, NULL, 0}};

static int run_serve(const cli_command *command, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error(command, "this ox was built without libmicrohttpd, so it cannot serve: "
                     "install libmicrohttpd-dev (scripts/deps.sh) and build again");
}
#endif

const cli_command cmd_serve = {
    "serve",
    "serve a GGUF model over HTTP with an OpenAI-compatible API",
    "Serve MODEL over HTTP: POST /v1/chat/completions and /v1/completions\n"
    "(streamed as server-sent events with \"stream\": true; logprobs too),\n"
    "GET /v1/models, GET /health (503 while the model loads), GET /metrics\n"
    "(Prometheus text), POST /tokenize and /detokenize, and a chat page at /.\n"
    "Up to --parallel sequences are generated at once, all advanced in one\n"
    "batched forward pass a step (a token each, or a chunk of a prompt);\n"
    "further requests wait in a queue of --max-queue, past which they get 503.\n"
    "Their keys and values live in one KV pool of --ctx positions, in pages\n"
    "of 64 that a sequence takes as it grows: a request waits until the pool\n"
    "holds its prompt, and when it is full the sequence admitted last goes\n"
    "back to the queue to be prefilled again later. Finished sequences keep\n"
    "their pages as a prompt cache until others need them.\n"
    "A client that disconnects has its sequence stopped. SIGTERM or Ctrl-C\n"
    "stops accepting connections, lets the requests in flight finish, and\n"
    "exits; a second signal stops at once. Errors are OpenAI-style JSON with a\n"
    "4xx or 5xx status. Listens on 127.0.0.1 unless --host says otherwise.",
    serve_options,
    run_serve,
    "MODEL",
};
