#!/usr/bin/env bash
# Install what building and testing OpenXPU needs, from Debian's packages.
# Only missing packages are installed; run as root or with sudo available.
set -euo pipefail

packages=(
    gcc clang cmake ninja-build pkg-config make   # toolchain
    libcjson-dev                                  # JSON for the ox tool
    libmicrohttpd-dev                             # HTTP for ox serve
    libxxhash-dev                                 # whole-file hashes (ox run --mpi)
    curl python3-venv python3-pip                 # the ox serve test's clients
    chromium chromium-driver                      # ...and its browser (the chat page)
    opencl-headers ocl-icd-libopencl1             # OpenCL types; the ICD loader
    pocl-opencl-icd clinfo                        # an OpenCL device on the CPU
    libamdhip64-5 rocm-device-libs                # hiprtc: HIP kernels compile-checked, no GPU
    libopenblas-dev                               # the peer of the matmul benchmark
    libopenmpi-dev openmpi-bin                    # ox run --mpi and its mpirun test
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross   # cross-build the ARM (NEON) code...
    qemu-user                                     # ...and run its tests emulated
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
