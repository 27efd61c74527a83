#!/usr/bin/env bash
# Certify and measure OpenXPU on a GPU in one run, and write a report: build
# (Release), list the devices, tune the portable kernels (ox tune), benchmark
# matmul with the portable kernels alone (OX_NATIVE_LIBS=0) and with cuBLAS
# per shape and the other ops against the device's limits (ox bench), write
# a synthetic model (bench/make_model) and measure its prompt and decode
# speed both ways (ox bench-model: tokens/s, % of roofline, launches and
# host waits per token, J/token from NVML), then run the full conformance
# check with the portable kernels alone and the matmul check with cuBLAS
# (ox check), and the backend's unit tests.
#
# Usage: scripts/gpu-check.sh [REPORT_DIR]
#   REPORT_DIR defaults to $OUT when set, else ./gpu-report. It receives
#   summary.md (read this first), log.txt (every step's output),
#   results.json (the tuning, both benchmarks and every model run, as the
#   tools printed them), check-kernels.json/.html and check-cublas.json.
# Environment:
#   OX_GPU_DEVICE        the device (default cuda:0; opencl:0 runs it all on PoCL)
#   OX_GPU_CHECK_BUDGET  seconds for everything (default 450: within 8
#                        minutes on an H100 or H200 with 16 cores)
#   OX_GPU_TUNE_BUDGET   seconds for ox tune (default 120, less when the
#                        budget cannot hold it)
#   OX_GPU_CHECK_RESERVE seconds of the budget kept for the conformance checks
#                        and unit tests while tuning and benchmarking (default 120)
#   OX_GPU_MODEL         make_model preset (default llama-852m; llama-110m
#                        when little time is left)
#   OX_GPU_MODEL_TYPES   weight types of the models (default "q4_0 q8_0")
#   OX_GPU_CHECK_QUICK   1: small sizes everywhere (ox bench/check --quick,
#                        2-layer models, short bench-model runs), to try the
#                        script on a slow device
#   OX_BUILD_DIR         the build (default build-gpu-check/ in the repository)
#   OX_GPU_DEBS          a folder of .deb files unpacked when cJSON is missing
#                        (default .deps/ in the repository; see below)
#   OX_GPU_PYTHON        the python3 that makes the tables (default: python3
#                        from PATH; empty: none, the JSON goes in as it is)
# The machine needs gcc or clang, cmake, ninja (or make) and cJSON
# (libcjson-dev). Without network nothing can be installed: bring cJSON as
# Debian packages in .deps/ (ignored by git), e.g. here
#   mkdir -p .deps && (cd .deps && apt-get download libcjson-dev libcjson1)
# and carry .deps along; the script unpacks them and builds against them.
# Exit status: 0 only if every step passed; the report is written in every
# case. python3, when present, turns the JSON into tables; else the summary
# shows the JSON as it is.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
report=$(mkdir -p "${1:-${OUT:-$PWD/gpu-report}}" && cd "${1:-${OUT:-$PWD/gpu-report}}" && pwd)
build=${OX_BUILD_DIR:-$root/build-gpu-check}
device=${OX_GPU_DEVICE:-cuda:0}
backend=${device%%:*}
budget=${OX_GPU_CHECK_BUDGET:-450}
quick=${OX_GPU_CHECK_QUICK:-0}
model_preset=${OX_GPU_MODEL:-llama-852m}
read -r -a model_types <<<"${OX_GPU_MODEL_TYPES:-q4_0 q8_0}"
debs=${OX_GPU_DEBS:-$root/.deps}
ox=$build/bin/ox
start=$(date +%s)
work=$(mktemp -d)
status=0
last=0    # exit status of the last step
reserve=0 # seconds kept for the steps after the current section
rows=()
models=() # "preset type run" of each bench-model step, in order
: >"$report/log.txt"

case $backend in
cuda) vendor_lib=cuBLAS ;;
hip) vendor_lib=rocBLAS ;;
*) vendor_lib="vendor library" ;;
esac
python=${OX_GPU_PYTHON-$(command -v python3 || true)}
quick_flag=()
[ "$quick" = 1 ] && quick_flag=(--quick)

# step NAME LIMIT COMMAND...: run with a time limit cut to what is left of
# the budget (less the reserve); output to $work/NAME.out and log.txt (with
# json=FILE before the call: stdout to FILE, stderr alone to NAME.out); a
# row for the summary.
json=''
step() {
    local name=$1 limit=$2 out=$json
    json=''
    shift 2
    local left=$((budget - ($(date +%s) - start) - reserve))
    if ((left < 20)); then
        local kept=''
        ((reserve == 0)) || kept=" (${reserve}s kept for the checks)"
        rows+=("| $name | not run: out of time$kept | |")
        status=1
        last=124
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s): $*" >>"$report/log.txt"
    local t0 rc=0 result=passed
    t0=$(date +%s)
    if [ -n "$out" ]; then
        timeout --kill-after=10 "$limit" "$@" >"$out" 2>"$work/$name.out" || rc=$?
    else
        timeout --kill-after=10 "$limit" "$@" >"$work/$name.out" 2>&1 || rc=$?
    fi
    local took=$(($(date +%s) - t0))
    if ((rc == 124 || rc == 137)); then
        result="timed out after ${limit}s"
    elif ((rc != 0)); then
        result="FAILED (exit $rc)"
    fi
    ((rc == 0)) || status=1
    last=$rc
    cat "$work/$name.out" >>"$report/log.txt"
    [ -n "$out" ] && [ -s "$out" ] && echo "(JSON: $(wc -c <"$out") bytes)" >>"$report/log.txt"
    echo "== $name: $result in ${took}s" >>"$report/log.txt"
    rows+=("| $name | $result | ${took}s |")
}

# The output of a step, or a line saying there is none.
output() {
    if [ -s "$work/$1.out" ]; then cat "$work/$1.out"; else echo "(no output)"; fi
}

# A JSON file as it is when it parses (or merely starts like JSON, without
# python3), else null.
json_or_null() {
    if [ ! -s "$1" ]; then
        echo null
    elif [ -n "$python" ]; then
        "$python" -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null &&
            cat "$1" || echo null
    elif head -c 1 "$1" | grep -q '[{[]'; then
        cat "$1"
    else
        echo null
    fi
}

# results.json: every tool's JSON, and whether the vendor library ran.
write_results() {
    local used=false detail=''
    if [ ! -e "$work/bench-cublas.out" ]; then
        detail="not measured (the step did not run)"
    elif grep -qE "matmul through (cuBLAS|rocBLAS)" "$work/bench-cublas.out" 2>/dev/null; then
        used=true
    elif grep -qE "no (cuBLAS|rocBLAS) on" "$work/bench-cublas.out" 2>/dev/null; then
        detail=$(grep -oE "no (cuBLAS|rocBLAS) on .*" "$work/bench-cublas.out" | head -1)
    else
        detail="no vendor library"
    fi
    detail=${detail//\\/\\\\}
    {
        echo "{\"device\": \"$device\","
        echo "\"vendor\": {\"library\": \"$vendor_lib\", \"used\": $used, \"detail\": \"${detail//\"/\\\"}\"},"
        echo '"tune":'
        json_or_null "$work/tune.json"
        echo ', "bench_kernels":'
        json_or_null "$work/bench-kernels.json"
        echo ', "bench_vendor":'
        json_or_null "$work/bench-cublas.json"
        echo ', "models": ['
        local i=0 m preset type run
        for m in "${models[@]}"; do
            read -r preset type run <<<"$m"
            ((i++)) && echo ','
            echo "{\"name\": \"$preset\", \"type\": \"$type\", \"run\": \"$run\", \"result\":"
            json_or_null "$work/model-$type-$run.json"
            echo '}'
        done
        echo ']}'
    } >"$report/results.json"
}

write_summary() {
    local gpu commit
    gpu=$(timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit \
        --format=csv,noheader 2>/dev/null || echo "nvidia-smi not available")
    commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
    write_results
    {
        echo "# OpenXPU GPU check: $([ $status -eq 0 ] && echo PASSED || echo FAILED)"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(uname -n), commit: $commit"
        echo "- GPU (nvidia-smi): $gpu"
        echo "- loader path: ${LD_LIBRARY_PATH:-(default)}"
        echo "- device checked: $device; total time: $(($(date +%s) - start))s of a ${budget}s budget"
        [ "$quick" = 1 ] && echo "- OX_GPU_CHECK_QUICK=1: small sizes, not the figures to report"
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
        if [ -n "$python" ] && "$python" "$root/scripts/gpu-check-report.py" "$report/results.json" \
            >"$work/tables.md" 2>"$work/tables.err"; then
            cat "$work/tables.md"
        else
            if [ -z "$python" ]; then
                echo "python3 is not on this machine: the results as the tools printed them."
            else
                echo "The tables could not be made ($(head -c 300 "$work/tables.err")):" \
                    "the results as the tools printed them."
            fi
            echo
            echo '```json'
            cat "$report/results.json"
            echo '```'
        fi
        echo
        echo "## Conformance"
        echo
        echo "- portable kernels alone (OX_NATIVE_LIBS=0): $(grep -E '^(PASSED|FAILED)' \
            "$work/check-kernels.out" 2>/dev/null | tail -1 || true)"
        echo "- matmul with $vendor_lib: $(grep -E '^(PASSED|FAILED)' "$work/check-cublas.out" \
            2>/dev/null | tail -1 || true)"
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
        echo "## Unit tests (test_$backend)"
        echo '```'
        grep -E '^(ok|FAIL|skip) |passed, ' "$work/unit-tests.out" 2>/dev/null || echo "(not run)"
        echo '```'
        echo
        echo "Files: results.json (ox tune, ox bench twice, ox bench-model per run), check-kernels.json,"
        echo "check-kernels.html, check-cublas.json; every step's output is in log.txt."
    } >"$report/summary.md"
    rm -rf "$work"
    echo "gpu-check: $([ $status -eq 0 ] && echo PASSED || echo FAILED); report in $report/summary.md"
    exit $status
}
trap write_summary EXIT

# ---- tools ----------------------------------------------------------------------
have_cjson() {
    { command -v pkg-config >/dev/null && pkg-config --exists libcjson; } ||
        compgen -G "/usr/include/cjson/cJSON.h" >/dev/null ||
        compgen -G "/usr/local/include/cjson/cJSON.h" >/dev/null
}
missing() {
    local m=()
    command -v cmake >/dev/null || m+=(cmake)
    command -v ninja >/dev/null || command -v make >/dev/null || m+=(ninja-build)
    command -v cc >/dev/null || m+=(gcc)
    have_cjson || m+=(libcjson-dev)
    echo "${m[@]:-}"
}
need=$(missing)
if [ -n "$need" ] && [ "$(id -u)" -eq 0 ] && timeout 10 getent hosts deb.debian.org >/dev/null; then
    step install-deps 180 "$root/scripts/deps.sh"
    need=$(missing)
fi
# cJSON from the Debian packages brought along: unpacked beside the build,
# found through CMAKE_PREFIX_PATH (tools/ox/CMakeLists.txt needs no pkg-config).
prefix=()
if [ "$need" = libcjson-dev ] && compgen -G "$debs/libcjson*.deb" >/dev/null; then
    for deb in "$debs"/libcjson*.deb; do dpkg-deb -x "$deb" "$build.sysroot" || true; done
    if compgen -G "$build.sysroot/usr/include/cjson/cJSON.h" >/dev/null; then
        prefix=(-DCMAKE_PREFIX_PATH="$build.sysroot/usr")
        echo "== cJSON from $debs, unpacked into $build.sysroot" >>"$report/log.txt"
        need=''
    fi
fi
if [ -n "$need" ]; then
    echo "gpu-check: missing $need; install them (scripts/deps.sh does, with network), or bring" \
        "cJSON's .deb files in $debs (see the top of this script), and run again" |
        tee -a "$report/log.txt" >&2
    rows+=("| tools | FAILED: missing $need | |")
    status=1
    exit
fi

# ---- build ------------------------------------------------------------------------
generator=Ninja
command -v ninja >/dev/null || generator="Unix Makefiles"
step configure 60 cmake -S "$root" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DOX_BUILD_BENCH=ON "${prefix[@]}"
unit_test=test_$backend
[ "$last" -eq 0 ] && step build 200 cmake --build "$build" -j "$(nproc)" --target ox \
    "ox-$backend" "$unit_test" make_model
[ "$last" -eq 0 ] || exit

# NVRTC and cuBLAS come with the CUDA toolkit, whose folder is not always on
# the loader path.
if [ "$backend" = cuda ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    for dir in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
        if compgen -G "$dir/libnvrtc.so*" >/dev/null; then
            export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            echo "== NVRTC is not on the loader path: using $dir" >>"$report/log.txt"
            break
        fi
    done
fi

# A fresh kernel cache, which also holds the tuning file and the device
# limits: ox tune pays the first NVRTC builds and its winners serve every
# later step.
export OX_CACHE_DIR=$work/kernel-cache OX_BACKEND_PATH='' OX_DEVICE='' OX_LOG=''
step devices 30 "$ox" devices

# ---- tuning and benchmarks; the checks keep their share of the budget --------------
# Estimates, not yet measured on an H100: the checks and unit tests ~120 s,
# the benchmarks and models ~100 s, ox tune's overrun of its budget (each
# class builds and runs its defaults whatever the time left) ~30 s.
reserve=${OX_GPU_CHECK_RESERVE:-120}
left=$((budget - ($(date +%s) - start) - reserve))
tune_budget=${OX_GPU_TUNE_BUDGET:-120}
fit=$((left - 100 - 30))
((tune_budget > fit)) && tune_budget=$fit
((tune_budget < 10)) && tune_budget=10
json=$work/tune.json step tune $((tune_budget + 60)) \
    "$ox" tune --device "$device" --budget "$tune_budget" --json
json=$work/bench-kernels.json step bench-kernels 90 \
    env OX_NATIVE_LIBS=0 "$ox" bench --device "$device" --json "${quick_flag[@]}"
# matmul alone: the one op the vendor library serves; debug lines name it
json=$work/bench-cublas.json step bench-cublas 60 \
    env OX_LOG=debug "$ox" bench matmul --device "$device" --json "${quick_flag[@]}"

# The synthetic models: written here (no network), then each through
# bench-model with the portable kernels alone and by default.
left=$((budget - ($(date +%s) - start) - reserve))
model_args=(--preset "$model_preset")
bench_args=(-p 512 -n 128)
if [ "$quick" = 1 ]; then
    model_args+=(--layers 2)
    bench_args=(-p 32 -n 8 -r 1)
elif [ "$model_preset" = llama-852m ] && ((left < 40 * ${#model_types[@]} + 30)); then
    model_preset=llama-110m
    model_args=(--preset llama-110m)
    echo "== ${left}s left for the models: llama-110m instead of llama-852m" >>"$report/log.txt"
fi
for type in "${model_types[@]}"; do
    file=$work/$model_preset-$type.gguf
    step "make-model-$type" 60 "$build/bin/make_model" "${model_args[@]}" --type "$type" "$file"
    [ "$last" -eq 0 ] || continue
    models+=("$model_preset $type kernels" "$model_preset $type vendor")
    json=$work/model-$type-kernels.json step "bench-model-$type-kernels" 60 \
        env OX_NATIVE_LIBS=0 "$ox" bench-model "$file" --device "$device" "${bench_args[@]}" --json
    json=$work/model-$type-vendor.json step "bench-model-$type-cublas" 60 \
        "$ox" bench-model "$file" --device "$device" "${bench_args[@]}" --json
    rm -f "$file"
done

# ---- conformance and unit tests ------------------------------------------------------
reserve=0
step check-kernels 240 env OX_NATIVE_LIBS=0 "$ox" check --device "$device" "${quick_flag[@]}" \
    --json "$report/check-kernels.json" --html "$report/check-kernels.html"
# the vendor library serves matmul alone: the other ops ran the same kernels above
step check-cublas 90 "$ox" check --device "$device" --op matmul "${quick_flag[@]}" \
    --json "$report/check-cublas.json"
# reproducible mode: the GPU's bits against the CPU's certificate for this version
# (docs/CHECK.md); the quick grid, whatever OX_GPU_CHECK_QUICK says
step certificate 120 "$ox" check --device "$device" --quick \
    --against "$root/tests/data/certificates/cpu-quick.json" --json "$report/certificate.json"
step unit-tests 120 env OX_BACKEND_PATH="$build/lib/libox-$backend.so" "$build/tests/$unit_test"
