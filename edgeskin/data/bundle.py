"""Read a dataset for a task and decode it at the model's input size, in one call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from edge_runtime import preprocess as device_preprocess

from edgeskin.data.images import decode_all
from edgeskin.data.readers import DataSource, read_dataset
from edgeskin.data.records import Sample, Task, parse_label_map
from edgeskin.errors import EdgeskinError


@dataclass(frozen=True)
class LabelledImages:
    source: DataSource
    task: Task
    samples: tuple[Sample, ...]
    targets: np.ndarray  # class index per sample (task.labels order)
    pixels: np.ndarray  # uint8 N x H x W x 3 at the input size
    digests: tuple[str, ...]

    @property
    def sources(self) -> np.ndarray:
        """The source name of every sample (one value for a single dataset)."""
        return np.array([s.source for s in self.samples], dtype=object)

    def subset(self, keep: np.ndarray) -> "LabelledImages":
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return LabelledImages(self.source, self.task, tuple(self.samples[i] for i in idx), self.targets[idx],
                              self.pixels[idx], tuple(self.digests[i] for i in idx))


def _subset_by_lesion(samples: tuple[Sample, ...], targets: np.ndarray, n: int, seed: int) -> np.ndarray:
    """About n samples, whole lesions only, each class kept in proportion (for quick runs)."""
    rng = np.random.default_rng(seed)
    lesions: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        lesions.setdefault(s.lesion_id, []).append(i)
    chosen: list[int] = []
    for k in np.unique(targets):
        members = [lid for lid, idx in lesions.items() if targets[idx[0]] == k]
        quota = max(2, round(n * np.mean(targets == k)))
        taken = 0
        for lid in rng.permutation(members):
            if taken >= quota:
                break
            chosen += lesions[lid]
            taken += len(lesions[lid])
    return np.array(sorted(chosen))


def load_labelled(data: str | tuple[str, ...], task: Task, size_hw: tuple[int, int], max_images: int | None = None,
                  seed: int = 0, require_all_classes: bool = True, progress: bool = True,
                  color_constancy: str = "none", label_map: tuple[str, ...] = ()) -> LabelledImages:
    """`data`: one `--data` value or several (pooled, each image tagged with its source);
    `label_map`: SOURCE=LABEL pairs that join a source's extra diagnoses to the task's classes."""
    source = read_dataset(data)
    samples = source.samples
    where = str(source.root) if source.format != "multi" else f"sources {list(source.sources)}"
    mapping = parse_label_map(label_map)

    def row(s: Sample) -> str:
        return f"{s.source if source.format == 'multi' else where} ({s.image_id})"
    targets = np.array([task.target(s.dx, row(s), mapping) for s in samples])
    if require_all_classes:
        counts = Counter(targets.tolist())
        empty = [lab for k, lab in enumerate(task.labels) if counts.get(k, 0) == 0]
        if empty:
            raise EdgeskinError(
                f"class(es) {empty} have no images in {where}; add images for them or use a task "
                "whose classes are all present (e.g. --task binary)"
            )
    if max_images is not None and max_images < len(samples):
        keep = _subset_by_lesion(samples, targets, max_images, seed)
        samples, targets = tuple(samples[i] for i in keep), targets[keep]
    decoded = decode_all([s.path for s in samples], size_hw, progress=progress)
    # After the (cached) resize, as edge_runtime does on the device: one function for both.
    pixels = device_preprocess.color_constancy(decoded.pixels, color_constancy)
    return LabelledImages(source, task, samples, targets, pixels, decoded.digests)
