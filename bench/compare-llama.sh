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
#   OX_MATRIX_ROUNDS (default 3): each row runs both tools in turn that many
#   times (one repetition each), and the table gives each tool's median and
#   the median of the rounds' ratios with their range: this VM's memory
#   bandwidth drifts by 25% within minutes, and a ratio of two runs taken
#   side by side is steadier than one of two runs minutes apart.
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
            for ((round = 0; round < ${OX_MATRIX_ROUNDS:-3}; round++)); do
                peer=null
                [ "$llama_bench" = none ] ||
                    peer=$("$llama_bench" -m "$file" -p 512 -n 128 -t "$t" -r 1 -o json)
                ours=$(OX_NUM_THREADS=$t "$ox" bench-model "$file" -p 512 -n 128 -r 1 --json)
                printf '%s\t%s\t%s\t%s\t%s\n' "$preset" "$type" "$t" \
                    "$(tr -d '\n\t' <<<"$peer")" "$(tr -d '\n\t' <<<"$ours")" >>"$rows"
            done
            echo "  $preset $type t=$t done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        done
    done <<<"$list"
    echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    python3 - "$rows" <<'PY'
import json, statistics, sys
print("| model | type | threads | pp512 llama.cpp | pp512 ox | ratio (range) | tg128 llama.cpp | tg128 ox | ratio (range) | tg ox % of bw | tg llama.cpp % of bw |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
rows = {}  # (preset, type, threads) -> rounds of (ours, theirs), in file order
for line in open(sys.argv[1]):
    preset, qtype, t, peer, ours = line.rstrip("\n").split("\t")
    ours = {r["test"]: r for r in json.loads(ours)["results"]}
    theirs = {}
    for r in json.loads(peer) or []:
        theirs["pp512" if r["n_prompt"] else "tg128"] = r["avg_ts"]
    rows.setdefault((preset, qtype, t), []).append((ours, theirs))
med = statistics.median
for (preset, qtype, t), rounds in rows.items():
    cells = []
    for test in ("pp512", "tg128"):
        o = [r[0][test]["tokens_per_second"] for r in rounds if test in r[0]]
        p = [r[1][test] for r in rounds if test in r[1]]
        q = [r[0][test]["tokens_per_second"] / r[1][test] for r in rounds
             if test in r[0] and test in r[1]]
        cells += [f"{med(p):.2f}" if p else "-", f"{med(o):.2f}" if o else "-",
                  f"{med(q):.2f} ({min(q):.2f}-{max(q):.2f})" if q else "-"]
    pcts = [r[0]["tg128"]["percent_of_limit"] for r in rounds
            if r[0].get("tg128", {}).get("percent_of_limit")]
    peer_pcts = [r[0]["tg128"]["percent_of_limit"] * r[1]["tg128"] / r[0]["tg128"]["tokens_per_second"]
                 for r in rounds if r[0].get("tg128", {}).get("percent_of_limit") and "tg128" in r[1]]
    cells += [f"{med(pcts):.0f}%" if pcts else "-", f"{med(peer_pcts):.0f}%" if peer_pcts else "-"]
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
