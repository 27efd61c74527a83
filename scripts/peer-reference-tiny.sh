#!/usr/bin/env bash
# Regenerate tests/data/tiny/: llama.cpp's (an independent implementation,
# MIT licence) tokens, greedy steps and first-step logits for the tiny
# random-weight llama, qwen2 and qwen3 models of tests/llm/tiny_model.h.
# This script does NOT build llama.cpp and nothing of llama.cpp is
# committed; see tests/data/tiny/README.md for the commit, build and driver.
#
# Usage: scripts/peer-reference-tiny.sh LLAMA_CPP_BUILD_DIR OUTDIR
#   LLAMA_CPP_BUILD_DIR  a llama.cpp CMake build folder (or its bin/) with
#                        llama-tokenize (CPU build)
#   OUTDIR               receives llama.txt, qwen2.txt, qwen3.txt
# Environment:
#   OX_PEER_DRIVER      required: the driver program linked against that
#                       build's libllama (README.md, "driver"), called as
#                       DRIVER MODEL PROMPT_FILE N_PREDICT N_CTX N_THREADS
#                       [logits]; it must honour OXREF_CACHE_TYPE=f32 and
#                       OXREF_FLASH_ATTN=off (it prints a kv_cache: line)
#   OX_PEER_THREADS     threads (default 2)
#   OX_MAKE_TINY_MODEL  the generator (default build/tests/make_tiny_model)
# Requires python3 (checksum, UTF-8 clean-up) and sha256sum.
set -euo pipefail

[ $# -eq 2 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$1
[ -x "$bin/llama-tokenize" ] || bin=$1/bin
out=$2
threads=${OX_PEER_THREADS:-2}
driver=${OX_PEER_DRIVER:-}
make_model=${OX_MAKE_TINY_MODEL:-$root/build/tests/make_tiny_model}
vocab=$root/tests/data/tokenizer
[ -x "$bin/llama-tokenize" ] || { echo "peer-reference-tiny: $bin/llama-tokenize not found" >&2; exit 1; }
if [ -z "$driver" ] || [ ! -x "$driver" ]; then
    echo "peer-reference-tiny: set OX_PEER_DRIVER to the driver (see tests/data/tiny/README.md)" >&2
    exit 1
fi
[ -x "$make_model" ] ||
    { echo "peer-reference-tiny: no $make_model (cmake --build build --target make_tiny_model)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The most exact path llama.cpp has: an F32 KV cache and no flash
# attention (its CPU flash attention rounds Q, K and V to F16).
export OXREF_CACHE_TYPE=f32 OXREF_FLASH_ATTN=off
n_predict=32
n_ctx=256
prompts=('Hello world' 'The quick brown fox' '1, 2, 3,')

# FNV-1a 64 of the whole file: test_tiny_models checks the file it writes against it.
fnv() { python3 -c '
import sys
h = 0xcbf29ce484222325
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
print(f"{h:016x}")' "$1"; }

for spec in llama:ggml-vocab-llama-spm.gguf qwen2:ggml-vocab-gpt-2.gguf qwen3:ggml-vocab-starcoder.gguf; do
    arch=${spec%%:*}
    model=$work/tiny-$arch.gguf
    "$make_model" "$arch" "$vocab/${spec#*:}" "$model"
    {
        echo "# llama.cpp on tiny-$arch: make_tiny_model $arch tests/data/tokenizer/${spec#*:} (tests/llm/tiny_model.h)"
        echo "model: bytes=$(stat -c %s "$model") fnv1a64=$(fnv "$model") sha256=$(sha256sum "$model" | cut -d' ' -f1)"
        echo "# greedy (argmax, lowest id on ties), $n_predict steps, n_ctx $n_ctx, $threads threads, CPU,"
        echo "# KV cache f32, flash attention off; BOS as the vocabulary says, special tokens parsed;"
        echo "# generation does not stop at an end-of-generation token; the first prompt also has"
        echo "# its last-position logits (logits_stats over the vocabulary, top 20)"
        first=1
        for p in "${prompts[@]}"; do
            printf '%s' "$p" >"$work/prompt.txt"
            mode=()
            [ $first = 1 ] && mode=(logits)
            "$driver" "$model" "$work/prompt.txt" $n_predict $n_ctx "$threads" "${mode[@]}" \
                >"$work/run.txt" 2>/dev/null
            grep -qx 'kv_cache: type_k=f32 type_v=f32 flash_attn=disabled' "$work/run.txt" || {
                echo "peer-reference-tiny: $driver does not report an f32 KV cache without flash" \
                     "attention (OXREF_CACHE_TYPE, OXREF_FLASH_ATTN)" >&2
                exit 1
            }
            # Cross-check the driver's prompt ids with the build's own tokenizer tool.
            ids=$("$bin/llama-tokenize" -m "$model" -f "$work/prompt.txt" --ids --no-escape --log-disable \
                  2>/dev/null | tr -d '[],')
            [ "prompt_ids: $ids" = "$(grep '^prompt_ids:' "$work/run.txt")" ] || {
                echo "peer-reference-tiny: $arch, '$p': llama-tokenize gives '$ids', the driver" \
                     "'$(grep '^prompt_ids:' "$work/run.txt")'" >&2
                exit 1
            }
            echo
            echo "# source: driver ($(basename "$driver")) over libllama"
            cat "$work/run.txt"
            first=0
        done
    } >"$work/$arch.txt"
    # Pieces of byte-level tokens may split a UTF-8 character: write such
    # bytes as \xNN so that the data stays UTF-8 text.
    python3 -c 'import sys; d = open(sys.argv[1], "rb").read().decode("utf-8", "backslashreplace")
open(sys.argv[2], "w", encoding="utf-8").write(d)' "$work/$arch.txt" "$out/$arch.txt"
done
echo "peer-reference-tiny: wrote $out" >&2
