#!/usr/bin/env bash
# Cross-build OpenXPU for AArch64 Linux and run the CPU tests (core, ops,
# quantized and F32 matmul) under qemu user-mode emulation, twice: on qemu's
# "max" CPU (NEON + dotprod: the SDOT kernels) and on a Cortex-A53 (NEON
# only: the plain NEON kernels). Each run also checks the SIMD kernels
# against the scalar ones. Prints "N passed, N failed" over both runs.
# Usage: scripts/test-arm64.sh      (builds under build-test/arm64/)
# Needs (Debian): gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${OX_ARM64_BUILD_DIR:-$root/build-test/arm64}
sysroot=/usr/aarch64-linux-gnu
labels='^(core|ops|ops_api|matmul|quant)$'
cpus=(max cortex-a53)

missing=()
for tool in aarch64-linux-gnu-gcc qemu-aarch64 cmake ninja ctest; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || missing+=("$sysroot (libc6-dev-arm64-cross)")
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-arm64: missing ${missing[*]}" >&2
    echo "  install: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user" >&2
    exit 2
fi

jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$(dirname "$dir")"
echo "== arm64: configure and build ($dir)"
# The ox tool needs libcjson for the target, so only the library and tests.
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
    -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
    -DCMAKE_CROSSCOMPILING_EMULATOR="$(command -v qemu-aarch64)" \
    -DOX_BUILD_TOOLS=OFF -DOX_BUILD_BENCH=OFF -DOX_WERROR=ON >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$jobs"

passed=0 failed=0
for cpu in "${cpus[@]}"; do
    echo "== arm64: test on qemu cpu $cpu"
    log="$dir/ctest-$cpu.log"
    # qemu-aarch64 reads its CPU model and library prefix from the environment;
    # kernels compiled on the CPU (reproducible mode in core.test_context) need
    # the cross compiler
    (cd "$dir" && QEMU_CPU=$cpu QEMU_LD_PREFIX=$sysroot OX_CC=aarch64-linux-gnu-gcc \
        ctest -L "$labels" --output-on-failure -j "$jobs" --timeout 600) >"$log" 2>&1 || true
    summary=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" || true)
    if [ -z "$summary" ]; then
        cat "$log"
        echo "test-arm64: no ctest summary for cpu $cpu" >&2
        exit 1
    fi
    [[ $summary =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]
    f=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
    [ "$f" -eq 0 ] || sed -n '/The following tests FAILED/,$p' "$log"
    echo "   $cpu: $((total - f)) passed, $f failed"
    passed=$((passed + total - f)) failed=$((failed + f))
done
# User kernels on the CPU: the dialect compiled by the cross compiler (an
# x86 program the emulated process starts natively) and run as AArch64
# code, barriers as fibers. No OpenCL device here: that half says so.
echo "== arm64: user kernels on the CPU (OX_CC=aarch64-linux-gnu-gcc)"
log="$dir/ctest-user-kernels.log"
(cd "$dir" && QEMU_LD_PREFIX=$sysroot OX_CC=aarch64-linux-gnu-gcc OX_CACHE_DIR=off \
    ctest -R 'test_user_kernels|test_kernel_sig|test_kernel_checks' --output-on-failure --timeout 600) >"$log" 2>&1 || true
summary=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" || true)
[ -n "$summary" ] || { cat "$log"; echo "test-arm64: no ctest summary for the user kernels" >&2; exit 1; }
[[ $summary =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]
f=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
[ "$f" -eq 0 ] || cat "$log"
echo "   user kernels: $((total - f)) passed, $f failed"
passed=$((passed + total - f)) failed=$((failed + f))

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
