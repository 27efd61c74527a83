#!/usr/bin/env bash
# The model matrix of docs/BENCHMARKS.md: Llama- and Qwen-shaped models of
# random weights, written by bench/make_model (the project's GGUF writer, F16)
# and converted by `ox quantize` into each type. Files already there are kept.
#
# Usage: scripts/make-model-matrix.sh [DIR]   (default ~/.cache/openxpu/matrix)
# Environment:
#   OX_MATRIX_MODELS  presets (default: llama-110m llama-852m qwen-like llama-3b;
#                     llama-3b only with 12 GiB of memory available)
#   OX_MATRIX_TYPES   types (default: f16 q8_0 q4_0 q4_k_m q5_k_m q6_k)
#   OX_BIN, OX_MAKE_MODEL  the binaries (default build-release/bin/{ox,make_model},
#                     built by scripts/run.sh)
# Prints one line per file: its path, preset and type.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/openxpu/matrix}
ox=${OX_BIN:-$root/build-release/bin/ox}
make_model=${OX_MAKE_MODEL:-$root/build-release/bin/make_model}
for tool in "$ox" "$make_model"; do
    [ -x "$tool" ] || { echo "make-model-matrix: $tool not found (scripts/run.sh builds it)" >&2; exit 1; }
done
avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
models=${OX_MATRIX_MODELS:-"llama-110m llama-852m qwen-like llama-3b"}
types=${OX_MATRIX_TYPES:-"f16 q8_0 q4_0 q4_k_m q5_k_m q6_k"}
mkdir -p "$dir"
for model in $models; do
    if [ "$model" = llama-3b ] && [ -z "${OX_MATRIX_MODELS:-}" ] && [ "$avail_kib" -lt $((12 * 1024 * 1024)) ]; then
        echo "make-model-matrix: skipping llama-3b: $((avail_kib / 1024)) MiB available, 12 GiB wanted" >&2
        continue
    fi
    f16="$dir/$model-f16.gguf"
    if [ ! -s "$f16" ]; then
        "$make_model" --preset "$model" --type f16 "$f16.part" >&2
        mv "$f16.part" "$f16"
    fi
    for type in $types; do
        out="$dir/$model-$type.gguf"
        if [ "$type" != f16 ] && [ ! -s "$out" ]; then
            "$ox" quantize "$f16" "$out" "$type" >&2
        fi
        echo "$out $model $type"
    done
done
