"""Simulated change of device: fixed photometric shifts of the test images, to estimate how a
model holds up under another dermoscope's white balance, exposure or optics.

A stand-in, not a replacement, for truly external data: the shifts are applied to the images at
the model's input size, before colour constancy, where a different camera would act. They are
deterministic, so every model in a comparison sees the same shifted images.
"""

from __future__ import annotations

import edgeskin._compat  # noqa: F401  (before torchvision, on CPU torch)

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF


def _gains(r: float, g: float, b: float):
    return lambda x: np.clip(x.astype(np.float32) * np.array([r, g, b], np.float32), 0, 255)


def _under_exposed(x: np.ndarray) -> np.ndarray:
    return 255.0 * 0.85 * (x.astype(np.float32) / 255.0) ** 1.4


def _defocus(x: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    return TF.gaussian_blur(t, kernel_size=[7, 7], sigma=[1.2, 1.2]).permute(0, 2, 3, 1).numpy()


SHIFTS = {
    "warm-light": _gains(1.12, 1.0, 0.82),  # tungsten-like illuminant / warm white balance
    "cool-light": _gains(0.88, 1.0, 1.15),  # daylight-LED / cool white balance
    "under-exposed": _under_exposed,  # darker sensor response, lower gain
    "defocus": _defocus,  # softer optics or a lower-resolution camera
}


def shifted(pixels: np.ndarray, name: str) -> np.ndarray:
    """uint8 N x H x W x 3 -> the same images as the named device would have taken them."""
    return np.clip(np.rint(SHIFTS[name](pixels)), 0, 255).astype(np.uint8)
