"""Run directories and atomic checkpoints (a kill mid-save never corrupts `last.pt`)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from edgeskin.errors import EdgeskinError
from edgeskin.fileio import atomic_path

LAST = "last.pt"  # full training state, written after every epoch (for --resume)
BEST = "best.pt"  # model state dict of the best validation epoch (the run's weights)
CONFIG = "config.json"


def new_run_dir(project: str, name: str, exist_ok: bool) -> Path:
    """runs/train/NAME, or NAME2, NAME3... unless exist_ok (the Ultralytics convention)."""
    base = Path(project) / name
    path, i = base, 2
    while path.exists() and not exist_ok:
        path, i = base.with_name(f"{name}{i}"), i + 1
    return path


def save(path: Path, obj: Any) -> None:
    # To an open file, not a path: torch.save names the zip's inner folder after a path it is given,
    # which here is the random temporary name, so equal weights would get a new SHA-256 every save.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / LAST
    if not path.is_file():
        raise EdgeskinError(f"{path} not found; nothing to resume (train at least one epoch first)")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_weights(run_dir: Path, sha256: str | None = None, file: str = BEST) -> dict[str, torch.Tensor]:
    """The run's best weights; with `sha256`, only if the file is the one it names. One read: the
    bytes loaded are the bytes hashed (the file cannot change in between), and they are read once."""
    path = run_dir / file
    if not path.is_file():
        raise EdgeskinError(f"{path} not found; the run has no trained weights (did training finish?)")
    blob = path.read_bytes()
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise EdgeskinError(f"{path} does not match the SHA-256 in its model card; it was changed after training")
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
