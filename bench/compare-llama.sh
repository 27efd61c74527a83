#!/usr/bin/env bash
# Compare `ox bench-model` with llama.cpp's llama-bench on the same GGUF file
# in the same run, and print the ratios. llama.cpp is the user's own build
# (this script never builds it): pass the llama-bench binary.
#
# Usage: bench/compare-llama.sh LLAMA_BENCH MODEL [THREADS]
#        bench/compare-llama.sh --matrix LLAMA_BENCH|none [DIR]
#   e.g. bench/compare-llama.sh ~/llama.cpp/build/bin/llama-bench \
#            "$(scripts/fetch-model.sh)"
#   --matrix: every model of scripts/make-model-matrix.sh DIR (made first if
#   missing), at 1 and 2 threads, pp512 and tg128, one table: both speeds,
#   the ratio, and generation as a share of the memory-bandwidth roofline
#   (the weight and cache bytes a token reads x tokens/s / measured
#   bandwidth). With "none" instead of llama-bench, ox alone.
#   OX_MATRIX_REPS (default 3): repetitions of each test, for both tools.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
ox=${OX_BIN:-$root/build-release/bin/ox}
[ -x "$ox" ] || { echo "compare-llama: build ox first (scripts/run.sh), or set OX_BIN" >&2; exit 1; }

if [ "$1" = --matrix ]; then
    llama_bench=$2 dir=${3:-}
    [ "$llama_bench" = none ] || [ -x "$llama_bench" ] ||
        { echo "compare-llama: $llama_bench is not executable (or say none)" >&2; exit 1; }
    rows=$(mktemp)
    trap 'rm -f "$rows"' EXIT
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    # every file made before the first timing, so that none runs beside a build
    list=$("$root/scripts/make-model-matrix.sh" ${dir:+"$dir"})
    while read -r file preset type; do
        for t in 1 2; do
            peer=null reps=${OX_MATRIX_REPS:-3}
            [ "$llama_bench" = none ] ||
                peer=$("$llama_bench" -m "$file" -p 512 -n 128 -t "$t" -r "$reps" -o json)
            ours=$(OX_NUM_THREADS=$t "$ox" bench-model "$file" -p 512 -n 128 -r "$reps" --json)
            printf '%s\t%s\t%s\t%s\t%s\n' "$preset" "$type" "$t" \
                "$(tr -d '\n\t' <<<"$peer")" "$(tr -d '\n\t' <<<"$ours")" >>"$rows"
            echo "  $preset $type t=$t done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        done
    done <<<"$list"
    echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    python3 - "$rows" <<'PY'
import json, sys
print("| model | type | threads | pp512 llama.cpp | pp512 ox | ratio | tg128 llama.cpp | tg128 ox | ratio | tg ox % of bw | tg llama.cpp % of bw |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    preset, qtype, t, peer, ours = line.rstrip("\n").split("\t")
    ours = {r["test"]: r for r in json.loads(ours)["results"]}
    peer = json.loads(peer) or []
    theirs = {}
    for r in peer:
        theirs["pp512" if r["n_prompt"] else "tg128"] = r["avg_ts"]
    cells = []
    for test in ("pp512", "tg128"):
        o = ours.get(test, {}).get("tokens_per_second")
        p = theirs.get(test)
        cells += [f"{p:.2f}" if p else "-", f"{o:.2f}" if o else "-",
                  f"{o / p:.2f}" if o and p else "-"]
    tg = ours.get("tg128", {})
    pct = tg.get("percent_of_limit")
    peer_pct = pct * theirs["tg128"] / tg["tokens_per_second"] if pct and theirs.get("tg128") else None
    cells += [f"{pct:.0f}%" if pct else "-", f"{peer_pct:.0f}%" if peer_pct else "-"]
    print(f"| {preset} | {qtype} | {t} | " + " | ".join(cells) + " |")
PY
    exit 0
fi

llama_bench=$1 model=$2 threads=${3:-2}
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
