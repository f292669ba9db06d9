#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
# The venv lives under ~/.cache/edgeskin, keyed by a hash of everything that decides its
# contents, so a fresh clone (CI) reuses it and a dependency change builds a new one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
key=$(cat "$root/pyproject.toml" "$root/requirements/constraints.txt" | sha256sum | cut -c1-12)
venv=${EDGESKIN_VENV:-$HOME/.cache/edgeskin/venv-$key}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    echo "edgeskin: building $venv (first run only)" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel >&2
    # Constraints pin torch to the CPU wheel; an unpinned torch pulls several GB of CUDA.
    "$venv/bin/pip" install -q -c "$root/requirements/constraints.txt" "$root[compress,dev]" >&2
    "$venv/bin/pip" uninstall -q -y edgeskin >&2
    touch "$venv/.complete"
fi
# The code itself is installed editable from this checkout on every call (seconds, no network),
# so the cached venv always runs the tree it was called from.
log=$(mktemp)
if ! "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$root" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
echo "$venv"
