#!/usr/bin/env bash
# Build OpenXPU and run the whole test suite twice: a warnings-as-errors
# build, then an AddressSanitizer + UndefinedBehaviorSanitizer build.
# Usage: scripts/test.sh            (from anywhere; builds under build-test/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/deps.sh"

jobs=$(nproc 2>/dev/null || echo 2)
ctest_extra=()
# each stage's start says how long the run has taken so far (CI must stay well
# under 30 minutes)
stage() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }
run_suite() { # name, cmake args... (ctest_extra: more ctest arguments)
    local name=$1
    shift
    local dir="$root/build-test/$name"
    stage "$name: configure and build"
    cmake -S "$root" -B "$dir" -G Ninja -DOX_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs"
    stage "$name: test"
    (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600 "${ctest_extra[@]}")
}

mkdir -p build-test
# the openai package for the ox serve test, in a venv of its own
python=$("$root/scripts/py-deps.sh")
run_suite release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOX_TEST_PYTHON="$python"

# Conformance: every op on the CPU (against naive double-precision loops)
# and on the OpenCL device (PoCL here, against the CPU). Fails if either
# device is missing or any case fails.
stage "conformance: ox check --device cpu,opencl:0"
"$root/build-test/release/bin/ox" check --device cpu,opencl:0 \
    --json "$root/build-test/check.json" --html "$root/build-test/check.html"
# Reproducible mode (docs/ARCHITECTURE.md): the CPU gives the bits of the
# certificate committed for this version on the whole quick grid; PoCL
# gives them on the ops whose kernels reduce or use the dialect's own math
# (the rest of the grid it runs in minutes more of PoCL's compiles); and a
# real model gives the same tokens and logits on the CPU, PoCL, both split
# by layers and by rows, and two MPI ranks (2 prompts x 10 tokens here;
# scripts/repro-model.sh OX MODEL runs 16 x 64).
stage "reproducible: the certificate on the CPU and PoCL, a model on every placement"
"$root/build-test/release/bin/ox" check --device cpu --quick \
    --against "$root/tests/data/certificates/cpu-quick.json"
"$root/build-test/release/bin/ox" check --device opencl:0 --quick \
    --against "$root/tests/data/certificates/cpu-quick.json" --op softmax,rms_norm,gelu,rope_qk
"$root/scripts/repro-model.sh" "$root/build-test/release/bin/ox" "$("$root/scripts/fetch-model.sh")" 2 10
# -O1: the sanitizers stay exact, and the model tests run in minutes, not ten.
# kernels.test_nvrtc runs in the release suite only: under the sanitizers it
# spends 200 s in NVIDIA's compiler, whose code they do not check, while
# our side of it (assembling the sources) runs in every kernel test here.
# serve.chat_page too: what it adds to serve.openai_clients (which runs here)
# is the page's script in a real browser, which the sanitizers do not see.
stage "sanitize: kernels.test_nvrtc and serve.chat_page are left to the release suite" \
    "(NVIDIA's compiler, the browser: code the sanitizers do not check)"
ctest_extra=(-E '^(kernels[.]test_nvrtc|serve[.]chat_page)$')
run_suite sanitize -DCMAKE_BUILD_TYPE=Debug -DOX_SANITIZE=ON -DCMAKE_C_COMPILER=clang \
    -DOX_TEST_PYTHON="$python" \
    -DCMAKE_C_FLAGS_DEBUG="-g -O1"
ctest_extra=()

# A build without MPI still works, and ox run --mpi says MPI is off.
stage "no MPI: ox run --mpi says so"
cmake -S "$root" -B "$root/build-test/nompi" -G Ninja -DOX_WERROR=ON -DOX_WITH_MPI=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$root/build-test/nompi.configure.log" 2>&1 ||
    { cat "$root/build-test/nompi.configure.log"; exit 1; }
grep -q "ox run --mpi: off" "$root/build-test/nompi.configure.log"
cmake --build "$root/build-test/nompi" -j "$jobs" --target ox test_mpi
(cd "$root/build-test/nompi" && ctest --output-on-failure -R test_mpi)

# The ARM NEON kernels, cross-built and run under qemu on two CPU models
# (with and without the dotprod extension).
stage "arm64: NEON kernels under qemu"
"$root/scripts/test-arm64.sh"

# Fuzz the GGUF, kernel-parameter, tuning-file, request and certificate parsers for a
# bounded time (here 30 s each, to keep CI short; FUZZ_SECONDS=600
# scripts/fuzz.sh fuzzes longer) on top of their seed corpora, which every
# suite above already replays.
stage "fuzz: the GGUF, kernel-parameter, tuning-file, request and certificate parsers"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} "$root/scripts/fuzz.sh"
stage "all test suites passed"
