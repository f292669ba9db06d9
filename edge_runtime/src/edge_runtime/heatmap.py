"""CAM -> heatmap -> overlay PNG, in numpy and Pillow.

The exported CAM output holds, per class, Grad-CAM's map times h*w before its ReLU (edgeskin's
CAM head), so the heatmap is the same post-processing pytorch-grad-cam applies: ReLU, min-max
to [0, 1], bilinear upsampling to the photo. The overlay adds a jet colour map and the outline of
the hottest region (top 20% of the map), which is what a clinician checks against the lesion.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

HOT_FRACTION = 0.2


def to_heatmap(cam: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """One class's raw CAM (h x w) -> float32 [0, 1] map at size_hw: ReLU, min-max, then bilinear
    upsampling (half-pixel centres, edges clamped: torch's align_corners=False, PIL's BILINEAR).

    Normalising before upsampling is pytorch-grad-cam's own order (scale_cam_image), and costs
    passes over the h x w map instead of the photo. The upsampling is two small matrix products
    (Wy @ cam @ Wx.T) written once at photo size: together about 20x faster than PIL's float
    resize plus a full-size min-max, which had made the heatmap cost more than the model."""
    relu = np.maximum(np.asarray(cam, np.float32), 0.0)
    lo, hi = float(relu.min()), float(relu.max())
    if hi <= lo:
        return np.zeros(size_hw, np.float32)
    norm = (relu - lo) * (1.0 / (hi - lo))
    up = (_weights(relu.shape[0], size_hw[0]) @ norm) @ _weights(relu.shape[1], size_hw[1]).T
    return np.minimum(up, 1.0, out=up)  # a convex mix of [0, 1] values, up to float32 rounding


@functools.lru_cache(maxsize=16)
def _weights(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in linear-interpolation matrix; each row sums to 1."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in), np.float32)
    np.add.at(w, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), hi), frac)
    w.setflags(write=False)
    return w


def jet(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 RGB with the classic jet colour map (blue -> cyan -> yellow -> red)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (255 * rgb).astype(np.uint8)


def hot_region(heat: np.ndarray, fraction: float = HOT_FRACTION) -> np.ndarray:
    return heat >= np.quantile(heat, 1.0 - fraction) if heat.max() > 0 else np.zeros(heat.shape, bool)


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it: the region's contour."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Photo (uint8 H x W x 3) + heatmap at the same size -> blended image with the hot contour."""
    blended = ((1 - alpha) * rgb.astype(np.float32) + alpha * jet(heat).astype(np.float32)).astype(np.uint8)
    edge = outline(hot_region(heat))
    edge = edge | np.roll(edge, 1, 0) | np.roll(edge, 1, 1)  # 2 px wide, visible on a phone
    blended[edge] = (255, 255, 255)
    return Image.fromarray(blended)
