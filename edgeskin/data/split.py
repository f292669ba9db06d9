"""Honest train/val/test splits: grouped by lesion, stratified by label, seeded, written down.

Several HAM10000 images show the same lesion; a split that puts them on both sides leaks the test
set into training. Groups here are lesion_ids *joined with byte-identical files* (HAM10000 has two
duplicate pairs), so neither can cross a split. A reused manifest is checked for both leaks.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeskin.data.records import Sample
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import atomic_path

SPLITS = ("train", "val", "test")
MANIFEST_FILE = "split.csv"
PROTOCOL = "grouped by lesion_id and identical bytes, stratified by label"
SOURCE_PROTOCOL = "grouped by lesion_id and identical bytes, stratified by label within each source"


@dataclass(frozen=True)
class Split:
    assignment: tuple[str, ...]  # one of SPLITS per sample, in sample order

    def indices(self, name: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.assignment) == name)

    def counts(self, targets: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, int]]:
        a = np.asarray(self.assignment)
        return {s: {lab: int(np.sum((a == s) & (targets == k))) for k, lab in enumerate(labels)} for s in SPLITS}


def group_ids(samples: Sequence[Sample], digests: Sequence[str]) -> np.ndarray:
    """One integer per sample; samples sharing a lesion_id or identical bytes share a group."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key_of in (lambda i: samples[i].lesion_id, lambda i: digests[i]):
        first: dict[str, int] = {}
        for i in range(len(samples)):
            j = first.setdefault(key_of(i), i)
            parent[find(i)] = find(j)
    return np.array([find(i) for i in range(len(samples))])


def _one_fold(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of one held-out fold of ~`fraction`, via scikit-learn's StratifiedGroupKFold."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, int(round(1 / fraction)))
    if len(np.unique(groups)) < n_splits:
        raise EdgeskinError(
            f"only {len(np.unique(groups))} distinct lesions: too few for a {fraction:.0%} held-out split; "
            "add images or lower --val-fraction/--test-fraction"
        )
    largest = int(np.bincount(y).max())
    if largest < n_splits:  # StratifiedGroupKFold's own ValueError does not say what to do
        raise EdgeskinError(
            f"the largest class has only {largest} images: too few for a {fraction:.0%} held-out split "
            f"(it needs at least {n_splits}); add images or raise --val-fraction/--test-fraction"
        )
    with warnings.catch_warnings():  # rare classes with fewer lesions than folds are expected
        warnings.simplefilter("ignore", UserWarning)
        sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, held = next(iter(sgkf.split(np.zeros(len(y)), y, groups)))
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return mask


def make_split(samples: Sequence[Sample], targets: np.ndarray, digests: Sequence[str],
               seed: int, val_fraction: float, test_fraction: float) -> Split:
    for name, f in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 < f < 0.5:
            raise EdgeskinError(f"{name} {f} is outside (0, 0.5); use e.g. 0.15")
    groups = group_ids(samples, digests)
    assignment = np.full(len(samples), "train", dtype=object)
    test = _one_fold(targets, groups, test_fraction, seed)
    assignment[test] = "test"
    rest = np.flatnonzero(~test)
    val = _one_fold(targets[rest], groups[rest], val_fraction / (1 - test_fraction), seed + 1)
    assignment[rest[val]] = "val"
    split = Split(tuple(assignment))
    check_no_leak(samples, digests, split)
    return split


def kfold_splits(samples: Sequence[Sample], targets: np.ndarray, digests: Sequence[str], k: int, seed: int,
                 val_fraction: float) -> list[Split]:
    """K lesion-grouped, class-stratified folds (scikit-learn's StratifiedGroupKFold): split i tests
    on fold i, and validates on a grouped ~`val_fraction` of the others; every image is tested once."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 2 <= k <= 20:
        raise EdgeskinError(f"--folds {k}; use 2..20 (5 is usual)")
    groups = group_ids(samples, digests)
    if len(np.unique(groups)) < k or int(np.bincount(targets).max()) < k:
        raise EdgeskinError(f"--folds {k}: the data has {len(np.unique(groups))} distinct lesions and its largest "
                            f"class {int(np.bincount(targets).max())} images; use fewer folds or add images")
    with warnings.catch_warnings():  # rare classes with fewer lesions than folds are expected
        warnings.simplefilter("ignore", UserWarning)
        folds = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
            np.zeros(len(targets)), targets, groups))
    splits = []
    for i, (_, test) in enumerate(folds):
        assignment = np.full(len(samples), "train", dtype=object)
        assignment[test] = "test"
        rest = np.flatnonzero(assignment != "test")
        val = _one_fold(targets[rest], groups[rest], val_fraction / (1 - 1 / k), seed + 1 + i)
        assignment[rest[val]] = "val"
        split = Split(tuple(assignment))
        check_no_leak(samples, digests, split)
        splits.append(split)
    return splits


def source_strata(targets: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """The stratification key of a pooled dataset: the label within its source, so each source keeps
    its own class mix on every side of the split (BCN's 34% nv is not HAM's 67%)."""
    names = {n: i for i, n in enumerate(dict.fromkeys(sources))}
    return np.asarray(targets) + (int(np.max(targets)) + 1) * np.array([names[n] for n in sources])


def source_holdout_split(samples: Sequence[Sample], strata: np.ndarray, digests: Sequence[str], holdout: str,
                         seed: int, val_fraction: float) -> Split:
    """Leave one source out: every image of source `holdout` (widened to whole lesion groups) is the
    test side; the other sources are split into train and val only, grouped and stratified."""
    sources = [s.source for s in samples]
    names = list(dict.fromkeys(sources))
    if holdout not in names:
        raise EdgeskinError(f"--holdout-source {holdout!r} is not a source of the data; choose one of {names}")
    if len(names) < 2:
        raise EdgeskinError(f"--holdout-source {holdout!r} leaves nothing to train on; pass a second --data source")
    if not 0 < val_fraction < 0.5:
        raise EdgeskinError(f"--val-fraction {val_fraction} is outside (0, 0.5); use e.g. 0.15")
    held = widen_to_groups(samples, digests, np.array([n == holdout for n in sources]))
    rest = np.flatnonzero(~held)
    assignment = np.full(len(samples), "test", dtype=object)
    assignment[rest] = "train"
    groups = group_ids([samples[i] for i in rest], [digests[i] for i in rest])
    val = _one_fold(strata[rest], groups, val_fraction, seed + 1)
    assignment[rest[val]] = "val"
    split = Split(tuple(assignment))
    check_no_leak(samples, digests, split)
    return split


def widen_to_groups(samples: Sequence[Sample], digests: Sequence[str], mask: np.ndarray) -> np.ndarray:
    """`mask` plus every sample sharing a lesion (or identical bytes) with a masked one."""
    groups = group_ids(samples, digests)
    return np.isin(groups, groups[np.asarray(mask, bool)])


def holdout_split(samples: Sequence[Sample], targets: np.ndarray, digests: Sequence[str], held: np.ndarray,
                  seed: int, val_fraction: float, test_fraction: float) -> Split:
    """A pseudo-external split: every `held` sample (widened to its whole lesion group) goes to test,
    and the rest is split as `make_split` does, so test = an in-distribution part + the held-out
    group, told apart by `held`. The model never trains or picks weights on the held-out group."""
    held = widen_to_groups(samples, digests, held)
    if held.all() or not held.any():
        raise EdgeskinError(f"the held-out group has {int(held.sum())} of {len(held)} images; "
                            "hold out a group that is neither empty nor everything")
    rest = np.flatnonzero(~held)
    inner = make_split([samples[i] for i in rest], targets[rest], [digests[i] for i in rest],
                       seed, val_fraction, test_fraction)
    assignment = np.full(len(samples), "test", dtype=object)
    assignment[rest] = inner.assignment
    split = Split(tuple(assignment))
    check_no_leak(samples, digests, split)
    return split


def check_no_leak(samples: Sequence[Sample], digests: Sequence[str], split: Split) -> None:
    """Refuse a split where one lesion, or one identical image, appears on two sides."""
    for key_name, key_of in (("lesion_id", lambda i: samples[i].lesion_id), ("identical bytes", lambda i: digests[i])):
        seen: dict[str, int] = {}
        for i, side in enumerate(split.assignment):
            j = seen.setdefault(key_of(i), i)
            if split.assignment[j] != side:
                a, b = samples[j], samples[i]
                what = f"lesion_id {a.lesion_id!r}" if key_name == "lesion_id" else "identical files"
                raise EdgeskinError(
                    f"leaky split: {what} in both {split.assignment[j]} ({a.image_id}) and {side} ({b.image_id}); "
                    "put every image of a lesion (and byte-identical copies) in one split"
                )


def write_manifest(path: Path, samples: Sequence[Sample], digests: Sequence[str], split: Split,
                   labels: Sequence[str], targets: np.ndarray) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "split", "label", "dx", "lesion_id", "source", "sha1", "path"])
        for s, d, side, t in zip(samples, digests, split.assignment, targets):
            w.writerow([s.image_id, side, labels[t], s.dx, s.lesion_id, s.source, d, str(s.path)])
    return path


def read_manifest(path: str | Path, samples: Sequence[Sample], digests: Sequence[str]) -> tuple[Split, np.ndarray]:
    """The split a manifest assigns, and which samples it covers (images it omits are left out)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeskinError(f"split manifest {path} does not exist; pass a split.csv written by `edgeskin train`")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"image_id", "split"} <= set(reader.fieldnames or []):
            raise EdgeskinError(f"{path} lacks columns image_id,split; pass a split.csv written by `edgeskin train`")
        side_of = {}
        for i, row in enumerate(reader, start=2):
            if row["split"] not in SPLITS:
                raise EdgeskinError(f"{path}:{i} has split {row['split']!r}; use one of {list(SPLITS)}")
            side_of[row["image_id"]] = row["split"]
    ids = {s.image_id for s in samples}
    missing = [i for i in side_of if i not in ids]
    if missing:
        raise EdgeskinError(
            f"{path} lists {len(missing)} image(s) not in the data (e.g. {missing[0]!r}); "
            "pass the --data the manifest was made from"
        )
    keep = np.array([s.image_id in side_of for s in samples])
    kept = [s for s, k in zip(samples, keep) if k]
    split = Split(tuple(side_of[s.image_id] for s in kept))
    check_no_leak(kept, [d for d, k in zip(digests, keep) if k], split)
    return split, keep
