/* 'ox tokenize MODEL (-p TEXT | -f FILE)': the token ids and pieces a GGUF
 * file's tokenizer gives for a text, as text, bare ids or JSON. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPTION_PROMPT, OPTION_FILE, OPTION_IDS, OPTION_NO_BOS, OPTION_SPECIAL, OPTION_JSON };

static const cli_option tokenize_options[] = {
    [OPTION_PROMPT] = {"prompt", "TEXT", "the text to tokenize (also -p)", 0},
    [OPTION_FILE] = {"file", "FILE", "tokenize the bytes of FILE (also -f)", 0},
    [OPTION_IDS] = {"ids", NULL, "print only the ids, space-separated", 0},
    [OPTION_NO_BOS] = {"no-bos", NULL, "do not add the BOS token the vocabulary asks for", 0},
    [OPTION_SPECIAL] = {"special", NULL, "parse control-token texts such as <|im_start|>", 0},
    [OPTION_JSON] = {"json", NULL, "print {\"ids\":[...],\"pieces\":[...]}", 0},
    {NULL, NULL, NULL, 0},
};

/* Print a piece quoted, with control bytes escaped. */
static void print_piece(const char *s)
{
    putchar('\'');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('\'');
}

static int run_tokenize(const cli_command *command, int argc, char **argv)
{
    /* -p and -f are short forms of --prompt and --file. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "-p") == 0) argv[i] = "--prompt";
        else if (strcmp(argv[i], "-f") == 0) argv[i] = "--file";
    }
    cli_parser parser;
    cli_parser_init(&parser, command, argc, argv);
    const char *model = NULL, *prompt = NULL, *file = NULL, *value;
    int ids_only = 0, no_bos = 0, special = 0, json = 0, r;
    while ((r = cli_parse_next(&parser, &value)) != CLI_PARSE_END) {
        switch (r) {
        case OPTION_PROMPT: prompt = value; break;
        case OPTION_FILE: file = value; break;
        case OPTION_IDS: ids_only = 1; break;
        case OPTION_NO_BOS: no_bos = 1; break;
        case OPTION_SPECIAL: special = 1; break;
        case OPTION_JSON: json = 1; break;
        case CLI_PARSE_OPERAND:
            if (model) return cli_usage_error(command, "one MODEL only, got '%s' too", value);
            model = value;
            break;
        default: return cli_parse_stop(command, r);
        }
    }
    if (!model) return cli_usage_error(command, "no MODEL given");
    if (!prompt == !file) return cli_usage_error(command, "give exactly one of -p TEXT and -f FILE");
    if (ids_only && json) return cli_usage_error(command, "--ids and --json exclude each other");

    size_t len = 0;
    char *owned = NULL;
    if (file && !(owned = cli_read_file_max(command, file, CLI_PROMPT_LIMIT, "prompt files", &len)))
        return CLI_EXIT_FAILURE;
    const char *text = owned ? owned : prompt;
    if (!owned) len = strlen(prompt);

    int code = CLI_EXIT_FAILURE;
    ox_context *ctx = NULL;
    ox_gguf *gguf = NULL;
    ox_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    ox_status status;
    if ((code = cli_context_open(command, &ctx)) != CLI_EXIT_OK) goto out_free_text;
    code = CLI_EXIT_FAILURE;
    unsigned flags = (no_bos ? 0 : OX_TOKENIZE_ADD_BOS) | (special ? OX_TOKENIZE_PARSE_SPECIAL : 0);
    size_t n = 0;
    cli_guard_mapping(command, model);
    if ((status = ox_gguf_open(ctx, model, &gguf)) != OX_OK ||
        (status = ox_tokenizer_load(ctx, gguf, &tok)) != OX_OK ||
        (status = ox_tokenizer_encode(tok, text, len, flags, NULL, 0, &n)) != OX_OK) {
        cli_library_error(command, ctx, status);
        goto out_free;
    }
    ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        cli_error(command, "out of memory");
        goto out_free;
    }
    if (n && (status = ox_tokenizer_encode(tok, text, len, flags, ids, n, &n)) != OX_OK) {
        cli_library_error(command, ctx, status);
        goto out_free;
    }
    if (json) {
        cJSON *root = cJSON_CreateObject(), *jids = cJSON_AddArrayToObject(root, "ids"),
              *pieces = cJSON_AddArrayToObject(root, "pieces");
        for (size_t i = 0; i < n; i++) {
            cJSON_AddItemToArray(jids, cJSON_CreateNumber(ids[i]));
            cJSON_AddItemToArray(pieces, cJSON_CreateString(ox_tokenizer_token_text(tok, ids[i])));
        }
        code = cli_json_write(command, root, "-");
        cJSON_Delete(root);
        goto out_free;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        printf("%d\t", ids[i]);
        print_piece(ox_tokenizer_token_text(tok, ids[i]));
        putchar('\n');
    }
    if (ids_only) putchar('\n');
    code = CLI_EXIT_OK;

out_free:
    free(ids);
    ox_tokenizer_free(tok);
    ox_gguf_close(gguf);
    ox_context_free(ctx);
out_free_text:
    free(owned);
    return code;
}

const cli_command cmd_tokenize = {
    .name = "tokenize",
    .summary = "show the token ids a GGUF model's tokenizer gives for a text",
    .description = "Encode a text with the tokenizer in MODEL's metadata (SentencePiece-style\n"
                   "or byte-level BPE) and print one line per token: the id, a tab and the\n"
                   "piece as the vocabulary stores it. BOS is added when the vocabulary asks\n"
                   "for it, unless --no-bos.",
    .options = tokenize_options,
    .run = run_tokenize,
    .operands = "MODEL",
};
