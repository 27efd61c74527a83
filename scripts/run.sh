#!/usr/bin/env bash
# Build OpenXPU (release) and run the main job: list every device, then
# self-check each of them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOX_BUILD_TESTS=OFF >/dev/null
cmake --build "$root/build-release" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
"$root/build-release/bin/ox" devices
echo
"$root/build-release/bin/ox" check --quick
