#!/usr/bin/env bash
# Compare `ox bench-model` with llama.cpp's llama-bench on the same GGUF file
# in the same run, and print the ratios. llama.cpp is the user's own build
# (this script never builds it): pass the llama-bench binary.
#
# Usage: bench/compare-llama.sh LLAMA_BENCH MODEL [THREADS]
#   e.g. bench/compare-llama.sh ~/llama.cpp/build/bin/llama-bench \
#            "$(scripts/fetch-model.sh)"
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
llama_bench=$1 model=$2 threads=${3:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
ox=${OX_BIN:-$root/build-release/bin/ox}
[ -x "$ox" ] || { echo "compare-llama: build ox first (scripts/run.sh), or set OX_BIN" >&2; exit 1; }
[ -x "$llama_bench" ] || { echo "compare-llama: $llama_bench is not executable" >&2; exit 1; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
peer=$("$llama_bench" -m "$model" -p 512 -n 128 -t "$threads" -o json)
ours=$(OX_NUM_THREADS=$threads "$ox" bench-model "$model" -p 512 -n 128 --json)
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$peer" "$ours" <<'PY'
import json, sys
peer = json.loads(sys.argv[1])
ours = {r["test"]: r for r in json.loads(sys.argv[2])["results"]}
print(f"{'test':8} {'llama.cpp t/s':>15} {'ox t/s':>10} {'ratio':>7}")
for r in peer:
    test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
    if test in ours:
        o = ours[test]["tokens_per_second"]
        print(f"{test:8} {r['avg_ts']:15.2f} {o:10.2f} {o / r['avg_ts']:7.2f}")
PY
