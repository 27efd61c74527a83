#!/usr/bin/env bash
# A Python environment with what the tests drive the server with (the
# official openai package and selenium, from PyPI), made once under build-test/venv, and
# its interpreter's path printed. Fails, saying why, when it cannot be had.
# Usage: scripts/py-deps.sh [DIR]     (default: build-test/venv)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/build-test/venv}
# openai 1.x and later speak the same chat/completions wire format;
# selenium drives Debian's chromium for the chat page's test
readonly PACKAGES=('openai>=1.40,<5' 'selenium>=4.10,<5')

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2 || {
        echo "py-deps: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi
if ! "$venv/bin/python" -c "import openai, selenium" 2>/dev/null; then
    echo "py-deps: installing ${PACKAGES[*]} into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 || {
        echo "py-deps: pip could not install ${PACKAGES[*]} (is PyPI reachable?)" >&2
        exit 1
    }
fi
echo "$venv/bin/python"
