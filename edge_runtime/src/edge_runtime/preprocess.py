"""Image -> model input, exactly as edgeskin trained: EXIF orientation applied, any PIL mode to
RGB, the whole image resized to the card's input size with PIL's antialiased bilinear filter,
then the card's normalisation. edgeskin's own data loader imports `to_rgb` from here, so
training and the device cannot drift apart.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge_runtime.errors import EdgeRuntimeError

# PIL logs some refusals (a TIFF's sample count) as errors before raising; that exception becomes
# our one-line error, so the log line is a duplicate. A NullHandler keeps Python's last-resort
# handler from printing it, and an application that configures logging still receives it.
logging.getLogger("PIL").addHandler(logging.NullHandler())

MAX_PIXELS = 100_000_000  # refuse decompression bombs before decoding (~10k x 10k)
MIN_SIDE = 16  # smaller is a thumbnail or an icon, never a photo of a lesion
MAX_ASPECT = 8.0  # wider is a strip or a banner: resized to the model's input it would be noise
ImageLike = Union[str, Path, bytes, Image.Image, np.ndarray]


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any PIL mode: EXIF orientation applied, alpha dropped onto white, 16-bit scaled to 8-bit."""
    with warnings.catch_warnings():  # corrupt EXIF: the orientation is unknown, keep the pixels as stored
        warnings.simplefilter("ignore", UserWarning)
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / scale * 255.0, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def _check_size(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise EdgeRuntimeError(f"{name} is {width}x{height} pixels, above the {MAX_PIXELS:,} limit; downscale it first")
    if min(width, height) < MIN_SIDE:
        raise EdgeRuntimeError(f"{name} is {width}x{height} pixels; a lesion photo needs at least {MIN_SIDE} "
                               "pixels on each side")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise EdgeRuntimeError(f"{name} is {width}x{height} pixels, more than {MAX_ASPECT:g} times wider than "
                               "tall (or taller than wide); crop it around the lesion")


def _checked(img: Image.Image, name: str) -> Image.Image:
    _check_size(img.width, img.height, name)
    return img


def open_rgb(image: ImageLike, name: str = "image") -> Image.Image:
    """Any accepted input -> an RGB PIL image at its own resolution (checked, pixel-limited)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EdgeRuntimeError(f"{name}: arrays must be uint8 H x W x 3 RGB, got {image.dtype} {image.shape}")
        return _checked(Image.fromarray(image), name)
    if isinstance(image, Image.Image):
        return _checked(to_rgb(image), name)
    if isinstance(image, (str, Path)):
        name = str(image)
        try:
            image = Path(image).read_bytes()
        except OSError as exc:
            raise EdgeRuntimeError(f"cannot read {name} ({exc.strerror}); check the path") from None
    try:
        with warnings.catch_warnings():
            # A decoder's warning ("Truncated File Read") means a damaged file: refuse it, in one
            # line. PIL's bomb warning is not one: MAX_PIXELS decides that.
            warnings.simplefilter("error", UserWarning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(image))
            _check_size(img.width, img.height, name)
            img.load()
        with img:
            return _checked(to_rgb(img), name)
    except Image.DecompressionBombError:
        raise EdgeRuntimeError(f"{name} has more than {MAX_PIXELS:,} pixels; downscale it first") from None
    except UnidentifiedImageError:
        raise EdgeRuntimeError(f"{name} is not an image (JPEG, PNG, ...); send a photo of the lesion") from None
    except (OSError, SyntaxError, ValueError, UserWarning) as exc:
        raise EdgeRuntimeError(f"{name} is corrupt or truncated ({exc}); take or export it again") from None


def resize(rgb: Image.Image, size_hw: tuple[int, int]) -> np.ndarray:
    """The whole image to (h, w), no crop: what the card's `resize: bilinear` means."""
    return np.asarray(rgb.resize((size_hw[1], size_hw[0]), Image.BILINEAR), dtype=np.uint8)


def normalize(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 N x H x W x 3 -> float32 NHWC, (pixels / 255 - mean) / std, as in training."""
    x = pixels.astype(np.float32) / 255.0
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


CONSTANCY = ("none", "shades_of_gray")
SOG_POWER = 6  # Minkowski norm of shades of gray (Finlayson & Trezzi 2004); p=6 is the ISIC-winning setting


def color_constancy(pixels: np.ndarray, method: str) -> np.ndarray:
    """uint8 (N x) H x W x 3 -> the same, white-balanced per image so the scene's illuminant is grey.

    Shades of gray: each channel's Minkowski p-norm estimates the illuminant; dividing it out
    removes a dermoscope's or a room light's colour cast. Applied after resizing, in training and
    on the device alike (the card's `color_constancy`)."""
    if method == "none":
        return pixels
    if method != "shades_of_gray":
        raise EdgeRuntimeError(f"unknown color_constancy {method!r} in the model card; known: {list(CONSTANCY)}")
    x = pixels.astype(np.float32)
    illum = np.power(np.mean(np.power(x, SOG_POWER), axis=(-3, -2), keepdims=True), 1.0 / SOG_POWER)
    gain = np.sqrt((illum ** 2).sum(-1, keepdims=True) / 3.0) / np.maximum(illum, 1e-6)  # keeps the norm
    return np.clip(x * gain + 0.5, 0, 255).astype(np.uint8)


def model_pixels(rgb: Image.Image, size_hw: tuple[int, int], constancy: str = "none") -> np.ndarray:
    """RGB photo -> the uint8 H x W x 3 image the model sees (before normalisation)."""
    return color_constancy(resize(rgb, size_hw), constancy)
