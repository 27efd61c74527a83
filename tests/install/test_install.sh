#!/usr/bin/env bash
# test_install.sh BUILD_DIR SOURCE_DIR CC SANITIZE
# Install into a scratch prefix, then build and run user programs against it
# with pkg-config (shared, static) and with CMake's find_package.
set -euo pipefail
build=$1 src=$2 cc=$3 sanitize=${4:-OFF}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
flags=()
case "$sanitize" in ON|on|1|TRUE|true) flags=(-fsanitize=address,undefined) ;; esac

fail() { echo "FAIL: $*"; exit 1; }
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }

libdir=$(dirname "$(find "$prefix" -name 'libopenxpu.so' | head -n1)")
[ -n "$libdir" ] || fail "libopenxpu.so not installed"
for f in include/openxpu/openxpu.h include/openxpu/version.h bin/ox; do
    [ -e "$prefix/$f" ] || fail "$f not installed"
done
[ -e "$libdir/libopenxpu.a" ] || fail "libopenxpu.a not installed"
[ -e "$libdir/pkgconfig/openxpu.pc" ] || fail "openxpu.pc not installed"
[ -e "$libdir/cmake/OpenXPU/OpenXPUConfig.cmake" ] || fail "OpenXPUConfig.cmake not installed"
if [ -e "$build/lib/libox-opencl.so" ]; then
    [ -e "$libdir/openxpu/libox-opencl.so" ] || fail "the opencl plugin is not installed in $libdir/openxpu"
    # The installed library finds its plugins beside itself, in openxpu/.
    OX_LOG=info "$prefix/bin/ox" devices --json | grep -q '"name":[[:space:]]*"opencl"' ||
        fail "installed ox does not load the installed opencl plugin"
    echo "ok   installed plugin is found beside the installed library"
fi
echo "ok   installed files"

"$prefix/bin/ox" --version | grep -q "OpenXPU" || fail "installed ox --version"
echo "ok   installed ox runs"

export PKG_CONFIG_PATH=$libdir/pkgconfig
version=$(pkg-config --modversion openxpu) || fail "pkg-config --modversion"
[ -n "$version" ] || fail "empty pkg-config version"
# shellcheck disable=SC2046
"$cc" "${flags[@]}" -std=c11 -o "$work/consumer_pc" "$src/consumer.c" \
    $(pkg-config --cflags --libs openxpu) -Wl,-rpath,"$libdir" || fail "build with pkg-config"
"$work/consumer_pc" | grep -q "consumer ok" || fail "pkg-config program"
echo "ok   pkg-config (shared) program $version"
# shellcheck disable=SC2046
"$cc" "${flags[@]}" -std=c11 -o "$work/consumer_pc_static" "$src/consumer.c" \
    $(pkg-config --cflags openxpu) "$libdir/libopenxpu.a" $(pkg-config --static --libs-only-l openxpu | sed 's/-lopenxpu//') \
    || fail "static build with pkg-config"
"$work/consumer_pc_static" | grep -q "consumer ok" || fail "static pkg-config program"
echo "ok   pkg-config (static) program"

cflags="${flags[*]:-}"
cmake -S "$src/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" >"$work/cmake.log" 2>&1 \
    || { cat "$work/cmake.log"; fail "find_package(OpenXPU)"; }
cmake --build "$work/cmake" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "CMake consumer build"; }
"$work/cmake/consumer_shared" | grep -q "consumer ok" || fail "CMake shared program"
"$work/cmake/consumer_static" | grep -q "consumer ok" || fail "CMake static program"
echo "ok   find_package(OpenXPU) programs (shared and static)"

# The user-kernel examples (examples/), built against the installed library
# and run on every device present: each checks its kernel against the host
# and must pass on the CPU and, where the OpenCL plugin was built, on the
# OpenCL device (PoCL in CI). A CPU without a C compiler would say so.
examples=$src/../../examples
cmake -S "$examples" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" >"$work/examples.log" 2>&1 \
    || { cat "$work/examples.log"; fail "configure examples/"; }
cmake --build "$work/examples" >>"$work/examples.log" 2>&1 || { cat "$work/examples.log"; fail "build examples/"; }
for example in saxpy bias_gelu reduce; do
    out=$("$work/examples/$example" "$examples/kernels" 2>&1) || { echo "$out"; fail "example $example"; }
    echo "$out" | sed 's/^/     /'
    echo "$out" | grep -A2 '^cpu:0' | grep -q '^    ok' || { echo "$out"; fail "example $example did not run on the CPU"; }
    if [ -e "$build/lib/libox-opencl.so" ] && "$prefix/bin/ox" devices | grep -q 'opencl:0'; then
        echo "$out" | grep -A2 '^opencl:0' | grep -q '^    ok' || fail "example $example did not run on opencl:0"
    else
        echo "     (no OpenCL device here: $example ran on the CPU only)"
    fi
done
echo "ok   examples/ saxpy, bias_gelu, reduce on every device"

# Their kernels pass the portability check for every API this machine
# compiles for (CUDA through NVRTC when the toolkit is installed).
for kernel in "$examples"/kernels/*.oxc; do
    out=$("$prefix/bin/ox" kernel-check "$kernel" 2>&1) || { echo "$out"; fail "ox kernel-check $kernel"; }
    echo "$out" | sed 's/^/     /'
done
echo "ok   ox kernel-check on the examples' kernels"
echo "6 passed, 0 failed"
