"""Overlay PNGs for a clinician: the image, the heatmap in a colour map, and a contour around the
hottest region (the top `hot_fraction` of the map) so the region reads even in greyscale."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from edgeskin.fileio import atomic_path

HOT_FRACTION = 0.2


def hot_region(heat: np.ndarray, hot_fraction: float = HOT_FRACTION) -> np.ndarray:
    return heat >= np.quantile(heat, 1 - hot_fraction)


def _edge(region: np.ndarray) -> np.ndarray:
    inner = region.copy()
    inner[1:, :] &= region[:-1, :]
    inner[:-1, :] &= region[1:, :]
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    return region & ~inner


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 HxWx3 image + [0,1] heat (same HxW) -> uint8 overlay with the hot-region contour."""
    import matplotlib

    colours = (matplotlib.colormaps["jet"](heat)[..., :3] * 255).astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colours
    out[_edge(hot_region(heat))] = (255, 255, 255)
    return out.clip(0, 255).astype(np.uint8)


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
