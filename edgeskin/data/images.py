"""Decode every image once into a uint8 array at the model's input size.

Epochs then index this array and never touch JPEG decoding again. Decoding also checks each file
(a corrupt, truncated or non-image file is a one-line error naming it) and hashes its bytes, which
the split uses to keep byte-identical images on the same side.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

# The device runtime's own conversion and limit: training sees images exactly as devices will.
from edge_runtime.preprocess import MAX_PIXELS, to_rgb
from edgeskin.errors import EdgeskinError

__all__ = ["MAX_PIXELS", "DecodedImages", "decode_all", "load_image", "to_rgb"]


@dataclass(frozen=True)
class DecodedImages:
    pixels: np.ndarray  # uint8, N x H x W x 3, RGB, already resized to the input size
    digests: tuple[str, ...]  # SHA-1 of each file's bytes (to find identical images)


def load_image(data: bytes, size_hw: tuple[int, int], name: str) -> np.ndarray:
    """Decode bytes and resize the whole image to (h, w) with PIL's antialiased bilinear filter."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise EdgeskinError(
                    f"{name} is {img.width}x{img.height} pixels, above the {MAX_PIXELS:,} limit; downscale it"
                )
            img.load()
            rgb = to_rgb(img).resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    except UnidentifiedImageError:
        raise EdgeskinError(f"{name} is not an image PIL can read; remove it or convert it to JPEG/PNG") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise EdgeskinError(f"{name} is corrupt or truncated ({exc}); re-export or remove it") from None
    return np.asarray(rgb, dtype=np.uint8)


def _decode_one(path: Path, size_hw: tuple[int, int]) -> tuple[np.ndarray, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgeskinError(f"cannot read {path} ({exc.strerror}); check the file and its permissions") from None
    if not data:
        raise EdgeskinError(f"{path} is an empty file; remove it or replace it with the image")
    return load_image(data, size_hw, str(path)), hashlib.sha1(data).hexdigest()


def decode_all(paths: Sequence[Path], size_hw: tuple[int, int], workers: int = 4,
               progress: bool = True) -> DecodedImages:
    """Decode `paths` in parallel (PIL releases the GIL while decoding) into one array."""
    from edgeskin.progress import progress as show

    out = np.empty((len(paths), size_hw[0], size_hw[1], 3), dtype=np.uint8)
    digests = [""] * len(paths)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _decode_one(p, size_hw), paths)
        for i, (arr, digest) in enumerate(show(results, "decode", total=len(paths), unit="img",
                                               enabled=progress)):
            out[i], digests[i] = arr, digest
    return DecodedImages(out, tuple(digests))
