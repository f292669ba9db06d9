"""Readers: turn `--data` into a list of Samples. Three layouts, detected from what is on disk.

- HAM10000 layout: a `*metadata.csv` with lesion_id,image_id,dx at the root; images are found by
  image_id anywhere below it (the official release splits them over two folders), any resolution.
- CSV manifest: a .csv file with columns path,label[,lesion_id,age,sex,site]; relative paths are
  relative to the CSV's folder.
- Image folder tree: ROOT/<label>/<image>; each image is its own lesion (no grouping known).

`--data synthetic` names the embedded default dataset (generated once, HAM layout).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from edgeskin.data import synthetic
from edgeskin.data.records import Sample
from edgeskin.errors import EdgeskinError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
HAM_COLUMNS = ("lesion_id", "image_id", "dx")
MANIFEST_COLUMNS = ("path", "label")
SYNTHETIC_NAME = "synthetic"


@dataclass(frozen=True)
class DataSource:
    samples: tuple[Sample, ...]
    format: str  # "ham10000", "manifest" or "folder"
    root: Path
    synthetic: bool

    def describe(self) -> dict:
        return {"format": self.format, "root": str(self.root), "synthetic": self.synthetic,
                "source_images": len(self.samples)}


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGESKIN_CACHE", Path.home() / ".cache" / "edgeskin"))


def read_dataset(data: str | os.PathLike) -> DataSource:
    """Read any supported layout; every problem is a one-line EdgeskinError naming the file."""
    if str(data) == SYNTHETIC_NAME:
        data = synthetic.ensure_synthetic(default_cache_dir() / "datasets")
    path = Path(data).expanduser()
    if not path.exists():
        raise EdgeskinError(
            f"data path {str(path)!r} does not exist; pass a HAM10000 folder, a CSV manifest, "
            f"an image-folder tree, or {SYNTHETIC_NAME!r}"
        )
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise EdgeskinError(f"{path} is not a .csv manifest; pass a CSV or a dataset folder")
        header = _csv_header(path)
        if set(HAM_COLUMNS) <= set(header):
            return _check_unique_ids(_read_ham(path, path.parent))
        return _check_unique_ids(_read_manifest(path))
    metadata = sorted(p for p in path.glob("*metadata.csv") if p.is_file())
    source = _read_ham(metadata[0], path) if metadata else _read_folder(path)
    return _check_unique_ids(source)


def _check_unique_ids(source: DataSource) -> DataSource:
    """Split manifests refer to images by image_id, so two images may not share one."""
    seen: dict[str, Path] = {}
    for s in source.samples:
        if s.image_id in seen:
            raise EdgeskinError(
                f"image_id {s.image_id!r} is used twice ({seen[s.image_id]} and {s.path}); "
                "give every image a unique name or row"
            )
        seen[s.image_id] = s.path
    return source


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError:
        raise EdgeskinError(f"{path} is not a UTF-8 text CSV; export it as CSV (UTF-8)") from None
    if not header:
        raise EdgeskinError(f"{path} is empty; it needs a header row ({','.join(MANIFEST_COLUMNS)},...)")
    return [h.strip() for h in header]


def _rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in fields]
        if missing:
            raise EdgeskinError(
                f"{path} lacks column(s) {missing}; it has {fields}, needs {list(required)}"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    if not rows:
        raise EdgeskinError(f"{path} has a header but no rows; add one row per image")
    return rows


def _index_images(root: Path) -> dict[str, Path]:
    """image stem -> path, for every image file below root (one walk, not one glob per image)."""
    index: dict[str, Path] = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES and not stem.endswith("_segmentation"):
                index.setdefault(stem, Path(dirpath) / name)
    return index


def _age(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _read_ham(csv_path: Path, root: Path) -> DataSource:
    rows = _rows(csv_path, HAM_COLUMNS)
    index = _index_images(root)
    samples = []
    for i, r in enumerate(rows, start=2):
        if not r["image_id"] or not r["dx"]:
            raise EdgeskinError(f"{csv_path}:{i} has an empty image_id or dx; fill it in or drop the row")
        img = index.get(r["image_id"])
        if img is None:
            raise EdgeskinError(
                f"image {r['image_id']!r} listed in {csv_path}:{i} was not found under {root}; "
                "add the image or remove its row"
            )
        samples.append(Sample(img, r["image_id"], r["dx"], r["lesion_id"] or r["image_id"],
                              _age(r.get("age", "")), r.get("sex") or None, r.get("localization") or None))
    synth = (root / synthetic.MARKER_FILE).is_file()
    return DataSource(tuple(samples), "ham10000", root.resolve(), synth)


def _read_manifest(csv_path: Path) -> DataSource:
    rows = _rows(csv_path, MANIFEST_COLUMNS)
    base = csv_path.parent
    samples = []
    for i, r in enumerate(rows, start=2):
        if not r["path"] or not r["label"]:
            raise EdgeskinError(f"{csv_path}:{i} has an empty path or label; fill it in or drop the row")
        img = Path(r["path"]).expanduser()
        img = img if img.is_absolute() else base / img
        if not img.is_file():
            raise EdgeskinError(f"image {str(img)!r} listed in {csv_path}:{i} does not exist; fix the path")
        image_id = img.stem
        samples.append(Sample(img, image_id, r["label"], r.get("lesion_id") or image_id,
                              _age(r.get("age", "")), r.get("sex") or None, r.get("site") or None))
    return DataSource(tuple(samples), "manifest", csv_path.resolve(), False)


def _read_folder(root: Path) -> DataSource:
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(class_dir.rglob("*")):
            if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES:
                image_id = img.relative_to(root).with_suffix("").as_posix()
                samples.append(Sample(img, image_id, class_dir.name, image_id))
    if not samples:
        raise EdgeskinError(
            f"no images found in {root}: expected a *metadata.csv (HAM10000 layout) "
            "or one sub-folder of images per label (e.g. mel/, nv/)"
        )
    return DataSource(tuple(samples), "folder", root.resolve(), False)
