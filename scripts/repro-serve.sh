#!/usr/bin/env bash
# Reproducible mode in ox serve: a completion's text is the same whether the
# request runs alone or in a batch with others (greedy, --reproducible), and
# the same on each device given. Starts `ox serve --reproducible` on
# 127.0.0.1 (a free port), sends each prompt alone, then all of them at
# once, compares, and stops the server.
#
# Usage: scripts/repro-serve.sh OX MODEL [DEVICE...]   (default device: cpu)
set -euo pipefail
ox=$1
model=$2
shift 2
devices=("${@:-cpu}")
prompts=("The capital of France is" "Once upon a time, in a small village,"
         "def fibonacci(n):" "The three laws of thermodynamics state that")
tokens=24
work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

complete() { # port prompt -> the completion's text on stdout
    python3 - "$1" "$2" "$tokens" <<'EOF'
import json, sys, urllib.request
port, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0}).encode()
req = urllib.request.Request("http://127.0.0.1:%s/v1/completions" % port, body,
                             {"Content-Type": "application/json"})
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=600))["choices"][0]["text"]))
EOF
}

failed=0
reference=()
for device in "${devices[@]}"; do
    "$ox" serve "$model" --reproducible --device "$device" --port 0 --parallel 4 \
        2>"$work/serve.log" &
    server=$!
    port=""
    for _ in $(seq 600); do
        port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.log")
        [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
        sleep 0.5
    done
    for i in "${!prompts[@]}"; do complete "$port" "${prompts[i]}" >"$work/alone.$i"; done
    for i in "${!prompts[@]}"; do complete "$port" "${prompts[i]}" >"$work/batch.$i" & done
    wait $(jobs -p | grep -v "^$server$") 2>/dev/null || true
    for i in "${!prompts[@]}"; do
        alone=$(cat "$work/alone.$i")
        batch=$(cat "$work/batch.$i")
        printf '%-10s prompt %d  alone %s\n' "$device" "$i" "$alone"
        if [ "$alone" != "$batch" ]; then
            echo "  in a batch of ${#prompts[@]}: $batch"
            failed=1
        fi
        if [ -z "${reference[i]:-}" ]; then
            reference[i]=$alone
        elif [ "$alone" != "${reference[i]}" ]; then
            echo "  differs from ${devices[0]}: ${reference[i]}"
            failed=1
        fi
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
done
if [ "$failed" = 0 ]; then
    echo "reproducible serve: the same text alone and in a batch, on every device"
else
    echo "reproducible serve: texts differ" >&2
fi
exit "$failed"
