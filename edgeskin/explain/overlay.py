"""Overlay PNGs for a clinician: the image, the heatmap in a colour map, and a contour around the
hottest region (the top 20% of the map) so the region reads even in greyscale. The drawing is
edge_runtime's (edge_runtime.heatmap), so a report and a device show the same picture."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from edge_runtime.heatmap import overlay as _device_overlay
from edgeskin.fileio import atomic_path



def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 HxWx3 image + [0,1] heat (same HxW) -> uint8 overlay with the hot-region contour:
    edge_runtime's own drawing, so explain's PNGs look exactly like the device's."""
    return np.asarray(_device_overlay(image, heat, alpha))


def save_png(array: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path


def save_grid(tiles: Sequence[np.ndarray], titles: Sequence[str], path: Path, cols: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(tiles) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, title in zip(axes.flat, tiles, titles):
        ax.imshow(tile)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
