"""Readers: turn `--data` into a list of Samples. Three layouts, detected from what is on disk.

- HAM10000 layout: a `*metadata.csv` with lesion_id,image_id,dx at the root; images are found by
  image_id anywhere below it (the official release splits them over two folders), any resolution.
- CSV manifest: a .csv file with columns path,label[,lesion_id,age,sex,site]; relative paths are
  relative to the CSV's folder.
- Image folder tree: ROOT/<label>/<image>; each image is its own lesion (no grouping known).

`--data synthetic` names the embedded default dataset (generated once, HAM layout).

Several `--data` values are pooled into one dataset (multi-source training). Every image carries
its source: `NAME=PATH` names it, else a `source` column (ISIC 2019's BCN/MSK part has one), else
the folder's (or CSV's) name. A HAM-layout folder's `duplicates.csv` (image_id_a,image_id_b) joins
lesions that hide under two lesion_ids and drops pairs whose labels conflict.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from edgeskin.data import synthetic
from edgeskin.data.records import Sample
from edgeskin.errors import EdgeskinError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
HAM_COLUMNS = ("lesion_id", "image_id", "dx")
MANIFEST_COLUMNS = ("path", "label")
SYNTHETIC_NAME = "synthetic"
DUPLICATES_FILE = "duplicates.csv"  # pairs of image_ids showing one picture (ISIC 2019's BCN/MSK part)


@dataclass(frozen=True)
class DataSource:
    samples: tuple[Sample, ...]
    format: str  # "ham10000", "manifest" or "folder"
    root: Path
    synthetic: bool
    parts: tuple[dict, ...] = field(default=())  # several sources: each one's name, format, root

    @property
    def sources(self) -> tuple[str, ...]:
        """The source names, in first-seen order."""
        return tuple(dict.fromkeys(s.source for s in self.samples))

    def describe(self) -> dict:
        counts = {name: sum(s.source == name for s in self.samples) for name in self.sources}
        return {"format": self.format, "root": str(self.root), "synthetic": self.synthetic,
                "source_images": len(self.samples), "sources": counts, **({"parts": list(self.parts)} if self.parts else {})}


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGESKIN_CACHE", Path.home() / ".cache" / "edgeskin"))


def read_dataset(data: str | os.PathLike | Sequence[str]) -> DataSource:
    """Read any supported layout, or several pooled (a list or tuple of `--data` values); every
    problem is a one-line EdgeskinError naming the file."""
    if isinstance(data, (list, tuple)):
        if len(data) == 1:
            return read_dataset(data[0])
        return _pool([read_dataset(d) for d in data], [str(d) for d in data])
    name, sep, rest = str(data).partition("=")
    if sep and name and "/" not in name and not Path(str(data)).exists():
        return _named(read_dataset(rest), name)
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


def _named(source: DataSource, name: str) -> DataSource:
    """`--data NAME=PATH`: every image of PATH belongs to source NAME (over any `source` column)."""
    return replace(source, samples=tuple(replace(s, source=name) for s in source.samples))


def _pool(parts: list[DataSource], given: list[str]) -> DataSource:
    """Several sources as one dataset. Two sources may not share a name (say NAME=PATH) or an image id."""
    owner: dict[str, str] = {}
    for part, arg in zip(parts, given):
        for name in part.sources:
            if name in owner:
                raise EdgeskinError(f"--data {arg} and --data {owner[name]} both give source {name!r}; "
                                    f"name them apart with --data OTHER={arg}")
            owner[name] = arg
    pooled = DataSource(tuple(s for p in parts for s in p.samples), "multi", parts[0].root,
                        all(p.synthetic for p in parts),
                        tuple({"data": arg, "format": p.format, "root": str(p.root), "sources": list(p.sources)}
                              for p, arg in zip(parts, given)))
    return _check_unique_ids(pooled)


def _default_source(root: Path) -> str:
    return SYNTHETIC_NAME if (root / synthetic.MARKER_FILE).is_file() else root.name


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
    try:
        return _read_rows(path, required)
    except UnicodeDecodeError as exc:  # the header was UTF-8, a later row is not
        raise EdgeskinError(f"{path} is not a UTF-8 text CSV (byte {exc.start}); export it as CSV (UTF-8)") from None


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
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


def _age(value: str, where: str) -> float | None:
    """Years, or None when the cell is empty; anything else is the user's typo, not a missing age."""
    try:
        age = float(value) if value else None
    except ValueError:
        raise EdgeskinError(f"{where}: age {value!r} is not a number of years; write e.g. 55 or leave it empty") from None
    if age is not None and not 0 <= age <= 130:
        if age != age:  # NaN, as pandas writes an empty cell
            return None
        raise EdgeskinError(f"{where}: age {value!r} is outside 0-130 years; fix the row or leave it empty")
    return age


def _read_ham(csv_path: Path, root: Path) -> DataSource:
    rows = _rows(csv_path, HAM_COLUMNS)
    index = _index_images(root)
    default = _default_source(root)
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
                              _age(r.get("age", ""), f"{csv_path}:{i}"), r.get("sex") or None, r.get("localization") or None,
                              r.get("source") or default))
    synth = (root / synthetic.MARKER_FILE).is_file()
    duplicates = root / DUPLICATES_FILE
    if duplicates.is_file():
        samples = _join_duplicates(samples, duplicates)
    return DataSource(tuple(samples), "ham10000", root.resolve(), synth)


def _join_duplicates(samples: list[Sample], path: Path) -> list[Sample]:
    """One lesion_id for the lesions a duplicate pair joins (so no split can put one picture on two
    sides); both images of a pair whose diagnoses disagree are dropped (neither label is known)."""
    rows = _rows(path, ("image_id_a", "image_id_b"))
    by_id = {s.image_id: s for s in samples}
    parent = {s.lesion_id: s.lesion_id for s in samples}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    dropped: set[str] = set()
    for r in rows:
        a, b = by_id.get(r["image_id_a"]), by_id.get(r["image_id_b"])
        if a is None or b is None:
            continue
        if a.dx != b.dx:
            dropped |= {a.image_id, b.image_id}
        ra, rb = find(a.lesion_id), find(b.lesion_id)
        parent[max(ra, rb)] = min(ra, rb)
    return [replace(s, lesion_id=find(s.lesion_id)) for s in samples if s.image_id not in dropped]


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
                              _age(r.get("age", ""), f"{csv_path}:{i}"), r.get("sex") or None, r.get("site") or None,
                              r.get("source") or csv_path.stem))
    return DataSource(tuple(samples), "manifest", csv_path.resolve(), False)


def _read_folder(root: Path) -> DataSource:
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(class_dir.rglob("*")):
            if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES:
                image_id = img.relative_to(root).with_suffix("").as_posix()
                samples.append(Sample(img, image_id, class_dir.name, image_id, source=root.name))
    if not samples:
        raise EdgeskinError(
            f"no images found in {root}: expected a *metadata.csv (HAM10000 layout) "
            "or one sub-folder of images per label (e.g. mel/, nv/)"
        )
    return DataSource(tuple(samples), "folder", root.resolve(), False)
