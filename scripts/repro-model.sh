#!/usr/bin/env bash
# Reproducible mode on a real model: greedy tokens and the hash of every
# step's logits (ox run --reproducible --json) must be the same on the CPU,
# on the OpenCL device, on both with the layers split and with every matrix
# split, and on two MPI ranks. Prints one line per prompt and placement.
#
# Usage: scripts/repro-model.sh OX MODEL [PROMPTS] [TOKENS]
#   PROMPTS: how many of the prompts below (default 16), TOKENS: generated
#   per prompt (default 64). CI runs 2 x 10 (scripts/test.sh); the issue's
#   16 x 64 takes about half an hour on two cores.
# Needs the OpenCL device (OX_BACKEND_PATH naming the plugin where it is
# not installed) and mpirun; says which placement it cannot run and fails.
set -euo pipefail
ox=$1
model=$2
n_prompts=${3:-16}
tokens=${4:-64}
prompts=(
    "The capital of France is"
    "Once upon a time, in a small village,"
    "The three laws of thermodynamics state that"
    "def fibonacci(n):"
    "A recipe for bread needs flour, water,"
    "The quick brown fox"
    "In 1969, the first people to walk on the Moon"
    "Photosynthesis is the process by which"
    "SELECT name, age FROM users WHERE"
    "The most important thing about learning a language is"
    "Water boils at 100 degrees Celsius because"
    "Dear hiring manager, I am writing to"
    "The difference between a list and a tuple in Python is"
    "Mount Everest is the highest mountain"
    "To be, or not to be, that is"
    "The main causes of the First World War were"
)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
placements=("cpu" "opencl:0" "cpu,opencl:0 --split layer" "cpu,opencl:0 --split tensor" "mpi")
failed=0
for ((i = 0; i < n_prompts && i < ${#prompts[@]}; i++)); do
    want=""
    for where in "${placements[@]}"; do
        args=(run "$model" -p "${prompts[i]}" -n "$tokens" --temp 0 --reproducible --json)
        if [ "$where" = mpi ]; then
            out=$(mpirun -np 2 "$ox" "${args[@]}" --device cpu --mpi 2>/tmp/repro-model.err) ||
                { echo "mpirun -np 2 failed: $(tail -3 /tmp/repro-model.err)"; exit 1; }
        else
            # shellcheck disable=SC2086 # the placement is several words
            out=$("$ox" "${args[@]}" --device $where 2>/tmp/repro-model.err) ||
                { echo "ox run --device $where failed: $(tail -3 /tmp/repro-model.err)"; exit 1; }
        fi
        got=$(printf '%s' "$out" | python3 -c '
import json, sys
text = sys.stdin.read()
d = json.loads(text[text.index("{"):])
print(d["logits_hash"], ",".join(map(str, d["tokens"])))')
        printf 'prompt %2d  %-28s %s\n' "$i" "$where" "${got%% *}"
        if [ -z "$want" ]; then
            want=$got
        elif [ "$got" != "$want" ]; then
            echo "  differs from the CPU: $got"
            echo "  the CPU:              $want"
            failed=1
        fi
    done
done
if [ "$failed" = 0 ]; then
    echo "reproducible: the same tokens and logits on every placement"
else
    echo "reproducible: placements differ" >&2
fi
exit "$failed"
