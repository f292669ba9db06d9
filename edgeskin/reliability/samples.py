"""Makers of bad (and unusual but valid) input files for the bad-input matrix and the fuzzers."""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def folder(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def dangling(path: Path) -> Path:
    if path.is_symlink():
        path.unlink()
    os.symlink(path.with_name("target_that_was_deleted.jpg"), path)
    return path


def appended(src: Path, dst: Path) -> Path:
    """A copy of a model with one byte added, beside its original card JSON (so the SHA-256 differs)."""
    dst.write_bytes(src.read_bytes() + b"\0")
    side = src.with_name(src.name + ".json")
    dst.with_name(dst.name + ".json").write_bytes(side.read_bytes())
    return dst


def corrupt_header(photo: Path) -> bytes:
    """A JPEG whose start-of-image marker survives but whose header segments are noise. (Noise in
    the entropy-coded data after an intact header decodes to a noisy picture: libjpeg only warns,
    so that kind is not detectable from the file and is left to the out-of-distribution score.)"""
    data = bytearray(photo.read_bytes())
    data[2:200] = np.random.default_rng(1).integers(0, 256, 198, dtype=np.uint8).tobytes()
    return bytes(data)


def lesion(size=(200, 150), seed: int = 0) -> Image.Image:
    """A brown blob on skin tone: small, deterministic, classifiable."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 < 1
    rng = np.random.default_rng(seed)
    arr = np.where(blob[..., None], [110, 70, 50], [225, 180, 160]) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def image(path: Path, size=(200, 150), mode: str = "RGB", fmt: str | None = None) -> Path:
    img = lesion(size)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257)
    elif mode == "P":
        img = img.quantize(64)
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def exif_rotated(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    lesion().save(path, exif=exif)
    return path


@functools.lru_cache(maxsize=2)
def bomb_png(side: int = 12_000) -> bytes:
    """A valid 8-bit grayscale PNG of side x side zeros: 144 MP when decoded, ~140 kB on disk."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    z, row = zlib.compressobj(9), b"\0" * (side + 1)  # each row: its filter byte, then zeros
    raw = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
