"""Up-front checks that a command's optional dependencies (pyproject's extras) are installed.

`compress`, `export`, `benchmark`, `pretrain` and `tune` import nncf, onnx, TensorFlow, lightly or Optuna
lazily, deep inside the steps that use them (onnx2tf even runs as a subprocess), so without these
checks a missing package would surface minutes into a run as a traceback. Each command calls
`require` first and stops with one line naming the extra and the pip command. Only the module is looked up
(importlib.util.find_spec), nothing is imported, so the check costs milliseconds.
"""

from __future__ import annotations

import importlib.util

from edgeskin.errors import EdgeskinError

# The import names of each extra in pyproject.toml's [project.optional-dependencies] (a
# distribution's name with "-" as "_"); tests/test_extras.py checks the two agree.
EXTRAS = {
    "compress": ("nncf", "torchao", "torch_pruning"),
    "export": ("onnx", "onnxruntime", "tensorflow", "tf_keras", "ai_edge_litert", "onnx_graphsurgeon", "sng4onnx",
               "psutil"),
    "pretrain": ("lightly",),
    "tune": ("optuna",),
}
# onnx2tf pins numpy 1.26 / TF 2.19, so it is not in the export extra: it goes in without its
# dependencies, next to TF 2.21 (scripts/venv.sh).
ONNX2TF = "onnx2tf==1.29.24"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None, Python's mark of a blocked import
        return False


def require(what: str, extra: str, modules: tuple[str, ...] | None = None) -> None:
    """One line naming the extra and its pip command if any of `modules` (default: all of it) is absent."""
    for name in modules if modules is not None else EXTRAS[extra]:
        if not installed(name):
            raise EdgeskinError(f"{what} needs the {extra} extra ({name} missing): "
                                f"pip install 'edgeskin[{extra}]' -c requirements/constraints.txt")


def require_onnx2tf(what: str) -> None:
    if not installed("onnx2tf"):
        raise EdgeskinError(f"{what} needs onnx2tf (not installed), which is installed apart from the export "
                            f"extra because it pins older numpy and TensorFlow: pip install --no-deps {ONNX2TF}")
