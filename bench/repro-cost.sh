#!/usr/bin/env bash
# The cost of reproducible mode: ox bench-model in the default mode and with
# --reproducible, on each device, for each model given; prints a Markdown
# table of tokens/s and the ratio (docs/BENCHMARKS.md, "Reproducible mode").
#
# Usage: bench/repro-cost.sh OX DEVICES MODEL...
#   DEVICES: comma-separated (cpu,opencl:0)
# Environment: OX_REPRO_PROMPT (default 64), OX_REPRO_GEN (32),
#   OX_REPRO_REPS (3): ox bench-model's -p, -n and -r.
set -euo pipefail
ox=$1
devices=$2
shift 2
p=${OX_REPRO_PROMPT:-64}
n=${OX_REPRO_GEN:-32}
r=${OX_REPRO_REPS:-3}
rate() { # model device [--reproducible] -> "pp tg"
    "$ox" bench-model "$1" --device "$2" -p "$p" -n "$n" -r "$r" --json ${3:+"$3"} 2>/dev/null |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
r = {x["test"][:2]: x["tokens_per_second"] for x in d["results"]}
print("%.1f %.1f" % (r["pp"], r["tg"]))'
}
echo "| model | device | pp$p default | pp$p reproducible | ratio | tg$n default | tg$n reproducible | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for model in "$@"; do
    for device in ${devices//,/ }; do
        read -r pd td < <(rate "$model" "$device")
        read -r pr tr < <(rate "$model" "$device" --reproducible)
        python3 -c "
import sys
pd, pr, td, tr = map(float, sys.argv[3:])
print('| %s | %s | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |' % (sys.argv[1], sys.argv[2], pd, pr,
      pr / pd, td, tr, tr / td))" "$(basename "$model")" "$device" "$pd" "$pr" "$td" "$tr"
    done
done
