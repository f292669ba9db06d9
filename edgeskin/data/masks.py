"""Lesion masks (`<image_id>_segmentation.png` below the data root, as HAM10000 and the synthetic
set ship them) at the model's input size: scored against heatmaps (edgeskin.explain.quality) and,
with `edgeskin train --mask-guidance`, a training signal (edgeskin.train.guide)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgeskin.errors import EdgeskinError

SUFFIX = "_segmentation.png"


def lesion_masks(root: Path, image_ids: list[str], size_hw: tuple[int, int], needed_by: str = "localisation",
                 otherwise: str = "") -> np.ndarray:
    """Bool N x H x W masks at the input size (nearest-neighbour, so they stay binary).
    `otherwise`: the other way out, for the error message (e.g. "train with --mask-guidance 0")."""
    index = {p.name[: -len(SUFFIX)]: p for p in Path(root).rglob(f"*{SUFFIX}")}
    missing = [i for i in image_ids if i not in index]
    if missing:
        raise EdgeskinError(f"no lesion mask for {missing[0]} (and {len(missing) - 1} more) under {root}; "
                            f"{needed_by} needs <image_id>{SUFFIX} files (HAM10000's masks)"
                            + (f"; add them or {otherwise}" if otherwise else ""))
    return np.stack([np.asarray(Image.open(index[i]).convert("L").resize((size_hw[1], size_hw[0]), Image.NEAREST))
                     > 127 for i in image_ids])
