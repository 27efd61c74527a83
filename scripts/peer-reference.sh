#!/usr/bin/env bash
# Regenerate the Gemma 3 270M reference data in tests/data/gemma3/ from an
# existing, user-built llama.cpp (an independent implementation, MIT licence).
# This script does NOT build llama.cpp and nothing of llama.cpp is committed;
# see tests/data/gemma3/README.md for the commit and build used.
#
# Usage: scripts/peer-reference.sh LLAMA_CPP_BUILD_DIR MODEL OUTDIR
#   LLAMA_CPP_BUILD_DIR  a llama.cpp CMake build folder (or its bin/) with
#                        llama-tokenize, llama-completion, llama-debug and
#                        llama-bench (CPU build; -DGGML_NATIVE=ON, Release)
#   MODEL                gemma-3-270m-q4_k_m.gguf (scripts/fetch-model.sh)
#   OUTDIR               receives tokens.txt, greedy.txt, logits.txt, bench.txt
# Environment:
#   OX_PEER_THREADS  threads for every run (default 2)
#   OX_PEER_DRIVER   optional: a small program linked against that build's
#                    libllama, called as DRIVER MODEL PROMPT_FILE N_PREDICT
#                    N_CTX N_THREADS [logits] (see README.md, "driver"). When
#                    set, greedy.txt and logits.txt come from it (exact
#                    generated ids, per-step logit margins); otherwise from
#                    llama-completion (text; ids re-tokenized from the text)
#                    and llama-debug --save-logits.
#   OX_PEER_SKIP_BENCH=1  skip bench.txt (it takes a few minutes on 2 cores)
# Requires python3 (JSON escaping, logit statistics) and /usr/bin/time.
set -euo pipefail

[ $# -eq 3 ] || { sed -n '2,22p' "$0" >&2; exit 2; }
bin=$1
[ -x "$bin/llama-tokenize" ] || bin=$1/bin
model=$2
out=$3
threads=${OX_PEER_THREADS:-2}
driver=${OX_PEER_DRIVER:-}
mkdir -p "$out"
for t in llama-tokenize llama-completion llama-debug llama-bench; do
    [ -x "$bin/$t" ] || { echo "peer-reference: $bin/$t not found" >&2; exit 1; }
done
[ -f "$model" ] || { echo "peer-reference: no model $model" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

json() { python3 -c 'import json,sys; sys.stdout.write(json.dumps(sys.stdin.buffer.read().decode("utf-8","replace"), ensure_ascii=False))' <"$1"; }

# --- tokens.txt: llama-tokenize on the exact bytes of each case ----------
# Each case: "BOS SPECIAL TEXT" where TEXT uses printf %b escapes (\n, \t).
cases=(
    '1 1 The quick brown fox jumps over the lazy dog.'
    '0 1 The quick brown fox jumps over the lazy dog.'
    '1 1  Hello'
    '1 1   leading two spaces'
    '1 1 multiple    spaces   between  words'
    '1 1 line one\nline two\n\nafter a blank line\ttab\tseparated\n'
    '1 1 Hello\n'
    '1 1 12345 3.14159'
    '1 1 Hello 👋🌍'
    '1 1 你好，世界'
    '1 1 naïve café'
    '1 1 def f(x):\n    return x**2'
    '1 1 <start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n'
    '1 0 <start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n'
    '1 1 '
)
{
    echo "# llama.cpp llama-tokenize --ids --no-escape -f FILE [--no-bos] [--no-parse-special]"
    echo "# bos: 1 = BOS added (model's add_bos_token is true, <bos> = 2); special: 1 = special tokens parsed"
    for c in "${cases[@]}"; do
        bos=${c%% *}; rest=${c#* }; special=${rest%% *}; text=${rest#* }
        [ "$rest" = "$special " ] && text=""
        printf '%b' "$text" >"$work/case.txt"
        flags=()
        [ "$bos" = 1 ] || flags+=(--no-bos)
        [ "$special" = 1 ] || flags+=(--no-parse-special)
        ids=$("$bin/llama-tokenize" -m "$model" -f "$work/case.txt" --ids --no-escape --log-disable "${flags[@]}" 2>/dev/null)
        echo
        echo "text: $(json "$work/case.txt")"
        echo "bos: $bos"
        echo "special: $special"
        echo "ids: $(echo "$ids" | tr -d '[],')"
    done
} >"$out/tokens.txt"

# --- greedy.txt / logits.txt ----------------------------------------------
# Prompts (printf %b escapes). The chat one is written out by hand: no chat
# template is applied anywhere (the GGUF carries none; -no-cnv below).
prompts=(
    'The capital of France is'
    'def fibonacci(n):'
    'Once upon a time'
    '<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n'
    'The first law of thermodynamics states that'
    '#include <stdio.h>\n\nint main(void)\n{'
    'Water boils at'
    'The Python programming language was created by'
    'List of prime numbers: 2, 3, 5, 7,'
    'In 1969, Neil Armstrong'
    'The mitochondria is'
    'Q: What is 12 times 12?\nA:'
)
n_predict=40
n_ctx=512
{
    echo "# greedy (argmax = temp 0 / top-k 1, no penalties, seed 1), n_ctx $n_ctx, $threads threads, CPU;"
    echo "# BOS (2) added, special tokens parsed, no chat template applied"
    if [ -n "$driver" ]; then
        echo "# driver: EOG does not stop generation (first_eog_index: -1 = none in the 40)"
    else
        echo "# llama-completion: stops at an end-of-generation token"
    fi
    for p in "${prompts[@]}"; do
        printf '%b' "$p" >"$work/prompt.txt"
        echo
        if [ -n "$driver" ]; then
            echo "# source: driver ($(basename "$driver")) over libllama"
            "$driver" "$model" "$work/prompt.txt" $n_predict $n_ctx "$threads" 2>/dev/null \
                | grep -v -e '^add_bos_model' -e '^eos_id' -e '^eot_id' -e '^n_vocab' -e '^bos_id'
        else
            echo "# source: llama-completion (gen_ids re-tokenized from gen_text, may differ from sampled ids)"
            "$bin/llama-completion" -m "$model" -p "$p" -no-cnv --temp 0 --top-k 1 --repeat-penalty 1.0 \
                --seed 1 -n $n_predict -c $n_ctx -t "$threads" --no-display-prompt \
                --no-warmup >"$work/gen.txt" 2>/dev/null </dev/null
            # llama-completion ends its output with "\n\n" of its own: drop it
            python3 -c 'import sys; p=sys.argv[1]; b=open(p,"rb").read(); open(p,"wb").write(b[:-2] if b.endswith(b"\n\n") else b)' "$work/gen.txt"
            echo "prompt: $(json "$work/prompt.txt")"
            echo "prompt_ids: $("$bin/llama-tokenize" -m "$model" -f "$work/prompt.txt" --ids --no-escape --log-disable 2>/dev/null | tr -d '[],')"
            echo "gen_ids: $("$bin/llama-tokenize" -m "$model" -f "$work/gen.txt" --ids --no-escape --no-bos --log-disable 2>/dev/null | tr -d '[],')"
            echo "gen_text: $(json "$work/gen.txt")"
        fi
    done
} >"$out/greedy.txt"

printf '%b' "${prompts[0]}" >"$work/prompt.txt"
{
    echo "# last-position logits after the prompt (BOS added), n_ctx $n_ctx, $threads threads, CPU"
    if [ -n "$driver" ]; then
        "$driver" "$model" "$work/prompt.txt" 1 $n_ctx "$threads" logits 2>/dev/null | sed '/^steps/,$d'
    else
        (cd "$work" && "$bin/llama-debug" -m "$model" -p "${prompts[0]}" -c $n_ctx -t "$threads" \
            --save-logits --logits-output-dir "$work/logits" >/dev/null 2>&1)
        python3 - "$work/logits" <<'EOF'
import glob, math, sys
f = [p for p in glob.glob(sys.argv[1] + "/*.txt") if not p.endswith("-prompt.txt")][0]
l = [float(x.split()[-1]) for x in open(f) if x.strip()]
n = len(l); mean = sum(l) / n
sd = math.sqrt(sum((x - mean) ** 2 for x in l) / n)
am = max(range(n), key=lambda i: l[i])
print(f"logits_stats: n={n} mean={mean:.6f} stddev={sd:.6f} min={min(l):.6f} max={l[am]:.6f} argmax={am}")
print("top20 (rank id logit):")
for r, i in enumerate(sorted(range(n), key=lambda i: -l[i])[:20]):
    print(r, i, f"{l[i]:.6f}")
EOF
    fi
} >"$out/logits.txt"

# --- bench.txt --------------------------------------------------------------
if [ "${OX_PEER_SKIP_BENCH:-0}" != 1 ]; then
    {
        echo "# uptime before: $(uptime)"
        "$bin/llama-bench" -m "$model" -p 512 -n 128 -t "$threads" 2>/dev/null
        echo "# uptime after: $(uptime)"
        echo
        echo "# peak RSS of a generation run (llama-completion, prompt 1, -n 128, -c $n_ctx):"
        /usr/bin/time -v "$bin/llama-completion" -m "$model" -p "${prompts[0]}" -no-cnv --temp 0 \
            --top-k 1 --seed 1 -n 128 -c $n_ctx -t "$threads" --ignore-eos </dev/null 2>&1 >/dev/null \
            | grep -e 'Maximum resident set size' -e 'Elapsed (wall clock)'
    } >"$out/bench.txt"
fi
echo "peer-reference: wrote $out" >&2
