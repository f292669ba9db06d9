#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
# The venv lives under ~/.cache/edgeskin, keyed by a hash of everything that decides its
# contents, so a fresh clone (CI) reuses it and a dependency change builds a new one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
key=$(cat "$root/pyproject.toml" "$root/edge_runtime/pyproject.toml" "$root/requirements/constraints.txt" "$0" \
      | sha256sum | cut -c1-12)
venv=${EDGESKIN_VENV:-$HOME/.cache/edgeskin/venv-$key}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
quiet() {  # run a step, showing its output only if it fails
    if ! "$@" >"$log" 2>&1; then cat "$log" >&2; echo "edgeskin: failed: $*" >&2; exit 1; fi
}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    echo "edgeskin: building $venv (first run only, a few minutes)" >&2
    rm -rf "$venv"
    quiet "$py" -m venv "$venv"
    quiet "$venv/bin/pip" install --upgrade pip setuptools wheel
    # Constraints pin torch to the CPU wheel; an unpinned torch pulls several GB of CUDA.
    # edge_runtime first: edgeskin depends on it and it is not on an index.
    quiet "$venv/bin/pip" install -c "$root/requirements/constraints.txt" "$root/edge_runtime[onnx]"
    quiet "$venv/bin/pip" install -c "$root/requirements/constraints.txt" "$root[compress,export,pretrain,tune,dev]"
    # onnx2tf pins numpy 1.26 / TF 2.19; it runs fine next to TF 2.21, so it goes in without deps.
    quiet "$venv/bin/pip" install --no-deps onnx2tf==1.29.24
    quiet "$venv/bin/pip" uninstall -y edgeskin edgeskin-runtime
    touch "$venv/.complete"
fi
# MediaPipe (TFLite metadata writer, ImageClassifier) lives in its own environment: its pins
# clash with TensorFlow's. edgeskin finds it at this path or at $EDGESKIN_MEDIAPIPE_PYTHON.
mp=$HOME/.cache/edgeskin/mediapipe-$(sha256sum <"$root/requirements/mediapipe.txt" | cut -c1-12)
if [ ! -f "$mp/.complete" ]; then
    echo "edgeskin: building $mp (first run only)" >&2
    rm -rf "$mp"
    quiet "$py" -m venv "$mp"
    quiet "$mp/bin/pip" install -r "$root/requirements/mediapipe.txt"
    touch "$mp/.complete"
fi
ln -sfn "$mp" "$HOME/.cache/edgeskin/mediapipe"
# The code itself is installed editable from this checkout on every call (seconds, no network),
# so the cached venv always runs the tree it was called from.
quiet "$venv/bin/pip" install --no-deps --no-build-isolation -e "$root/edge_runtime" -e "$root"
echo "$venv"
