#!/usr/bin/env bash
# Certify OpenXPU on an NVIDIA GPU and write a report: build (Release), list
# the devices, run the full conformance check on the GPU with the portable
# kernels alone (OX_NATIVE_LIBS=0), then again with cuBLAS, benchmark the
# GPU against the CPU, and run the CUDA backend's unit tests.
#
# Usage: scripts/gpu-check.sh [REPORT_DIR]
#   REPORT_DIR defaults to $OUT when set, else ./gpu-report. It receives
#   summary.md (read this first), log.txt (every step's output),
#   check-kernels.json/.html, check-cublas.json and bench.json.
# Environment: OX_GPU_DEVICE (default cuda:0), OX_BUILD_DIR (default
#   build-gpu-check/ in the repository), OX_GPU_CHECK_BUDGET (seconds for
#   everything, default 450: within 8 minutes on an H200).
# The machine needs gcc or clang, cmake, ninja (or make), pkg-config and
# libcjson-dev; without network access nothing can be installed, and the
# script says what is missing. Exit status: 0 only if every step passed;
# the report is written in every case.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
report=$(mkdir -p "${1:-${OUT:-$PWD/gpu-report}}" && cd "${1:-${OUT:-$PWD/gpu-report}}" && pwd)
build=${OX_BUILD_DIR:-$root/build-gpu-check}
device=${OX_GPU_DEVICE:-cuda:0}
budget=${OX_GPU_CHECK_BUDGET:-450}
ox=$build/bin/ox
start=$(date +%s)
work=$(mktemp -d)
status=0
last=0 # exit status of the last step
rows=()
: >"$report/log.txt"

# step NAME LIMIT COMMAND...: run with a time limit cut to what is left of
# the budget; output to $work/NAME.out and log.txt; a row for the summary.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - ($(date +%s) - start)))
    if ((left < 20)); then
        rows+=("| $name | not run: out of time | |")
        status=1
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s): $*" >>"$report/log.txt"
    local t0 rc=0 result=passed
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$work/$name.out" 2>&1 || rc=$?
    local took=$(($(date +%s) - t0))
    if ((rc == 124 || rc == 137)); then
        result="timed out after ${limit}s"
    elif ((rc != 0)); then
        result="FAILED (exit $rc)"
    fi
    ((rc == 0)) || status=1
    last=$rc
    cat "$work/$name.out" >>"$report/log.txt"
    echo "== $name: $result in ${took}s" >>"$report/log.txt"
    rows+=("| $name | $result | ${took}s |")
}

# The output of a step, or a line saying there is none.
output() {
    if [ -s "$work/$1.out" ]; then cat "$work/$1.out"; else echo "(no output)"; fi
}

write_summary() {
    local gpu commit
    gpu=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader 2>/dev/null || echo "nvidia-smi not available")
    commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
    {
        echo "# OpenXPU GPU check: $([ $status -eq 0 ] && echo PASSED || echo FAILED)"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(uname -n), commit: $commit"
        echo "- GPU (nvidia-smi): $gpu"
        echo "- loader path: ${LD_LIBRARY_PATH:-(default)}"
        echo "- device checked: $device; total time: $(($(date +%s) - start))s of a ${budget}s budget"
        echo
        echo "| step | result | time |"
        echo "|---|---|---|"
        printf '%s\n' "${rows[@]}"
        echo
        echo "## Devices"
        echo '```'
        output devices
        echo '```'
        echo
        echo "## Conformance"
        echo
        echo "- portable kernels alone (OX_NATIVE_LIBS=0): $(grep -E '^(PASSED|FAILED)' \
            "$work/check-kernels.out" 2>/dev/null | tail -1 || true)"
        echo "- with cuBLAS: $(grep -E '^(PASSED|FAILED)' "$work/check-cublas.out" 2>/dev/null |
            tail -1 || true)"
        for name in check-kernels check-cublas; do
            if grep -q '^Failures:' "$work/$name.out" 2>/dev/null; then
                echo
                echo "Failures ($name, first 40):"
                echo '```'
                sed -n '/^Failures:/,$p' "$work/$name.out" | sed -n 2,41p
                echo '```'
            fi
        done
        echo
        echo "## Benchmark ($device and the CPU)"
        echo '```'
        output bench
        echo '```'
        echo
        echo "## Unit tests (test_cuda)"
        echo '```'
        grep -E '^(ok|FAIL|skip) |passed, ' "$work/unit-tests.out" 2>/dev/null || echo "(not run)"
        echo '```'
        echo
        echo "Files: check-kernels.json, check-kernels.html, check-cublas.json, bench.json;"
        echo "every step's output is in log.txt."
    } >"$report/summary.md"
    rm -rf "$work"
    echo "gpu-check: $([ $status -eq 0 ] && echo PASSED || echo FAILED); report in $report/summary.md"
    exit $status
}
trap write_summary EXIT

# ---- tools ----------------------------------------------------------------------
missing() {
    local m=()
    command -v cmake >/dev/null || m+=(cmake)
    command -v ninja >/dev/null || command -v make >/dev/null || m+=(ninja-build)
    command -v cc >/dev/null || m+=(gcc)
    command -v pkg-config >/dev/null || m+=(pkg-config)
    pkg-config --exists libcjson 2>/dev/null || m+=(libcjson-dev)
    echo "${m[@]:-}"
}
need=$(missing)
if [ -n "$need" ] && [ "$(id -u)" -eq 0 ] && timeout 10 getent hosts deb.debian.org >/dev/null; then
    step install-deps 180 "$root/scripts/deps.sh"
    need=$(missing)
fi
if [ -n "$need" ]; then
    echo "gpu-check: missing $need; install them (scripts/deps.sh does, with network) and run" \
        "again" | tee -a "$report/log.txt" >&2
    rows+=("| tools | FAILED: missing $need | |")
    status=1
    exit
fi

# ---- build, then the checks -------------------------------------------------------
generator=Ninja
command -v ninja >/dev/null || generator="Unix Makefiles"
step configure 60 cmake -S "$root" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DOX_BUILD_BENCH=OFF
[ "$last" -eq 0 ] && step build 200 cmake --build "$build" -j "$(nproc)" --target ox ox-cuda \
    test_cuda
[ "$last" -eq 0 ] || exit

# NVRTC and cuBLAS come with the CUDA toolkit, whose folder is not always on
# the loader path.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    for dir in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
        if compgen -G "$dir/libnvrtc.so*" >/dev/null; then
            export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            echo "== NVRTC is not on the loader path: using $dir" >>"$report/log.txt"
            break
        fi
    done
fi

# A fresh kernel cache: the first check pays every NVRTC build, later steps reuse them.
export OX_CACHE_DIR=$work/kernel-cache OX_BACKEND_PATH='' OX_DEVICE='' OX_LOG=''
step devices 30 "$ox" devices
step check-kernels 240 env OX_NATIVE_LIBS=0 "$ox" check --device "$device" \
    --json "$report/check-kernels.json" --html "$report/check-kernels.html"
step check-cublas 150 "$ox" check --device "$device" --json "$report/check-cublas.json"
# shellcheck disable=SC2016 # expanded by the inner shell
step bench-json 90 sh -c '"$0" bench --device "$1" --json >"$2"' "$ox" "$device,cpu" \
    "$report/bench.json"
step bench 90 "$ox" bench --device "$device,cpu"
step unit-tests 120 env OX_BACKEND_PATH="$build/lib/libox-cuda.so" "$build/tests/test_cuda"
