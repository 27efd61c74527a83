#!/usr/bin/env bash
# Build the fuzz targets with clang (libFuzzer + ASan + UBSan, the whole
# library instrumented) and run each for a bounded time over its seed corpus.
# New inputs that the fuzzer finds go to build-fuzz/corpus/<target>/ (not
# the repository); a crash leaves its input in build-fuzz/ and fails.
#
# Targets: gguf (the GGUF reader), kernel_sig (user kernels' parameter
# lists), tune (the lines of a tuning file), serve (ox serve's request
# bodies), certificate (ox check --against's certificates).
# Usage: scripts/fuzz.sh              60 s per target
#        FUZZ_SECONDS=600 scripts/fuzz.sh
#        FUZZ_JOBS=4 scripts/fuzz.sh  parallel fuzzing processes per target
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}

command -v clang >/dev/null || { echo "fuzz: clang is needed for libFuzzer" >&2; exit 1; }
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
flags+=" -fno-omit-frame-pointer -g"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
    -DCMAKE_C_FLAGS="$flags" -DOX_BUILD_FUZZ=ON -DOX_BUILD_TESTS=OFF -DOX_BUILD_TOOLS=OFF \
    -DOX_BUILD_BENCH=OFF >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" --target fuzz_gguf fuzz_kernel_sig fuzz_tune fuzz_serve fuzz_certificate

for target in gguf kernel_sig tune serve certificate; do
    corpus="$build/corpus/$target"
    mkdir -p "$corpus"
    echo "== fuzz_$target: ${seconds}s over $root/fuzz/corpus/$target"
    # The new-inputs folder comes first: libFuzzer writes what it finds there.
    parallel=()
    [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
    (cd "$build" && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$build/bin/fuzz_$target" -max_total_time="$seconds" -max_len=65536 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
        "${parallel[@]}" "$corpus" "$root/fuzz/corpus/$target")
done
echo "== fuzzing passed"
