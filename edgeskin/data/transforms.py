"""Augmentation presets and the dataset that serves the decoded-image cache.

Images arrive already resized to the input size (see images.py), so evaluation needs only
scaling and normalisation; training adds geometric and colour augmentation on uint8 tensors.
"""

from __future__ import annotations

import edgeskin._compat  # noqa: F401  (torchvision import on CPU torch)

from dataclasses import dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from edgeskin.errors import EdgeskinError


@dataclass(frozen=True)
class Augment:
    flips: bool = True
    rot90: bool = True  # dermoscopy has no "up"; for non-square inputs only 180° keeps the shape
    crop_scale: float = 0.6  # random-resized-crop minimum area (1.0 = off)
    jitter: float = 0.2  # brightness/contrast/saturation strength (0 = off); hue is jitter/4
    # Multi-source levers (TrainConfig sets them; no preset does): the probability of a simulated
    # black dermoscope vignette, and of a down-and-up resampling to a lower resolution.
    vignette: float = 0.0
    down_up: float = 0.0


AUGMENTS = {
    "none": Augment(flips=False, rot90=False, crop_scale=1.0, jitter=0.0),
    "light": Augment(crop_scale=0.8, jitter=0.1),
    "standard": Augment(),
    "strong": Augment(crop_scale=0.4, jitter=0.3),
}


def get_augment(name: str) -> Augment:
    if name not in AUGMENTS:
        raise EdgeskinError(f"unknown augment preset {name!r}; choose one of {sorted(AUGMENTS)}")
    return AUGMENTS[name]


class RandomRot90:
    """Rotate by a random multiple of 90° (180° only when the image is not square). Called with an
    image and its lesion mask (v2.Compose passes both), turns both by the same angle."""

    def __call__(self, *xs: torch.Tensor):
        square = xs[0].shape[-1] == xs[0].shape[-2]
        k = int(torch.randint(0, 4, ()).item()) if square else 2 * int(torch.randint(0, 2, ()).item())
        out = tuple(tv_tensors.wrap(torch.rot90(x, k, dims=(-2, -1)), like=x)
                    if isinstance(x, tv_tensors.TVTensor) else torch.rot90(x, k, dims=(-2, -1))
                    for x in xs) if k else xs
        return out if len(xs) > 1 else out[0]


def _image_only(fn, xs):
    """Apply `fn` to the image of (image[, mask]); the lesion mask is left where it is."""
    out = (fn(xs[0]), *xs[1:])
    return out if len(xs) > 1 else out[0]


class RandomVignette:
    """With probability p, black out everything outside a centred ellipse of random size: the round
    field of an uncropped dermoscope photo. 44% of BCN_20000's images have one, against 3% of HAM's,
    and BCN's class mix differs, so a black border would tell the network the clinic and so the
    class; given to every source's images at one rate, the border tells nothing. The mask is kept."""

    def __init__(self, p: float, radius: tuple[float, float] = (0.9, 1.25)):
        self.p, self.radius = p, radius

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        r = self.radius[0] + (self.radius[1] - self.radius[0]) * float(torch.rand(()))
        yy, xx = torch.linspace(-1, 1, h)[:, None], torch.linspace(-1, 1, w)[None, :]
        return x * ((yy ** 2 + xx ** 2) <= r * r).to(x.dtype)

    def __call__(self, *xs: torch.Tensor):
        return _image_only(self._apply, xs) if float(torch.rand(())) < self.p else (xs if len(xs) > 1 else xs[0])


class RandomDownUp:
    """With probability p, resample the image down to a random 35-100% of its size and back up:
    a lower-resolution camera. Sources differ in resolution (HAM10000 200x150, ISIC 2019's BCN/MSK
    84x84); when every source's images are sometimes blurred, sharpness stops telling them apart."""

    def __init__(self, p: float, min_scale: float = 0.35):
        self.p, self.min_scale = p, min_scale

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.min_scale + (1 - self.min_scale) * float(torch.rand(()))
        small = v2.functional.resize(x, [max(4, round(h * s)), max(4, round(w * s))], antialias=True)
        return v2.functional.resize(small, [h, w], antialias=True)

    def __call__(self, *xs: torch.Tensor):
        return _image_only(self._apply, xs) if float(torch.rand(())) < self.p else (xs if len(xs) > 1 else xs[0])


def train_transform(aug: Augment, size_hw: tuple[int, int]) -> v2.Compose:
    ops: list = []
    if aug.crop_scale < 1.0:
        ratio = size_hw[1] / size_hw[0]
        ops.append(v2.RandomResizedCrop(size_hw, scale=(aug.crop_scale, 1.0),
                                        ratio=(ratio * 3 / 4, ratio * 4 / 3), antialias=True))
    if aug.flips:
        ops += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if aug.rot90:
        ops.append(RandomRot90())
    if aug.down_up > 0:
        ops.append(RandomDownUp(aug.down_up))
    if aug.jitter > 0:
        ops.append(v2.ColorJitter(aug.jitter, aug.jitter, aug.jitter, aug.jitter / 4))
    if aug.vignette > 0:  # last: a dermoscope's black field is black whatever the lighting
        ops.append(RandomVignette(aug.vignette))
    return v2.Compose(ops)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW (or CHW) -> float, scaled to [0, 1] then standardised per channel."""
    return (x.float() / 255.0 - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)


class ArrayDataset(torch.utils.data.Dataset):
    """Samples from the decoded uint8 NHWC array; returns uint8 CHW tensors (normalised later, in batch).
    With `masks` (bool N x H x W), also each image's lesion mask (uint8 1 x H x W), moved by the
    same crop, flips and rotation as its image (a v2 Mask: colour jitter leaves it alone)."""

    def __init__(self, pixels: np.ndarray, targets: np.ndarray, transform=None, masks: np.ndarray | None = None):
        self.pixels, self.targets, self.transform, self.masks = pixels, targets, transform, masks

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.pixels[i]).permute(2, 0, 1)
        if self.masks is not None:
            m = tv_tensors.Mask(torch.from_numpy(self.masks[i].astype(np.uint8))[None])
            if self.transform is not None:
                x, m = self.transform(x, m)
            return x, int(self.targets[i]), m.as_subclass(torch.Tensor)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


def channel_stats(pixels: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 NHWC pixels scaled to [0, 1] (computed on the train split)."""
    total, sq, n = np.zeros(3), np.zeros(3), 0
    for start in range(0, len(pixels), 256):  # chunked: a float copy of all of HAM would be GBs
        x = pixels[start:start + 256].reshape(-1, 3).astype(np.float64) / 255.0
        total, sq, n = total + x.sum(0), sq + (x * x).sum(0), n + len(x)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 1e-12))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
