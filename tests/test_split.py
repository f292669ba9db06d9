"""Lesion-grouped, stratified, seeded splits; leaks are refused."""

import csv
from collections import Counter

import numpy as np
import pytest

from edgeskin.data.records import Sample
from edgeskin.data.split import Split, check_no_leak, holdout_split, make_split, read_manifest, write_manifest
from edgeskin.errors import EdgeskinError

LABELS = ("a", "b", "c")


def _toy(n_lesions=300, seed=0):
    """Lesions of 1-3 images, 3 imbalanced classes; digests unique except one duplicated file."""
    rng = np.random.default_rng(seed)
    samples, targets = [], []
    for lesion in range(n_lesions):
        k = rng.choice(3, p=[0.6, 0.3, 0.1])
        for v in range(rng.integers(1, 4)):
            samples.append(Sample(path=f"/x/{lesion}_{v}.jpg", image_id=f"I{lesion}_{v}", dx=LABELS[k],
                                  lesion_id=f"L{lesion}"))
            targets.append(k)
    digests = [f"d{i}" for i in range(len(samples))]
    return samples, np.array(targets), digests


def test_split_is_grouped_stratified_and_seeded():
    samples, y, digests = _toy()
    split = make_split(samples, y, digests, seed=3, val_fraction=0.15, test_fraction=0.15)
    sides = {}
    for s, side in zip(samples, split.assignment):
        assert sides.setdefault(s.lesion_id, side) == side  # every lesion on one side only
    for name, frac in (("test", 0.15), ("val", 0.15)):
        idx = split.indices(name)
        assert abs(len(idx) / len(y) - frac) < 0.05
        # stratified: class proportions within 6 points of the whole set's
        for k in range(3):
            assert abs(np.mean(y[idx] == k) - np.mean(y == k)) < 0.06
    again = make_split(samples, y, digests, seed=3, val_fraction=0.15, test_fraction=0.15)
    other = make_split(samples, y, digests, seed=4, val_fraction=0.15, test_fraction=0.15)
    assert again.assignment == split.assignment
    assert other.assignment != split.assignment


def test_identical_files_with_different_lesion_ids_stay_together():
    samples, y, digests = _toy()
    for seed in range(5):  # the copy must follow its twin whatever the draw
        d = list(digests)
        d[-1] = d[0]  # same bytes under another lesion_id (as HAM's duplicate pairs could be)
        split = make_split(samples, y, d, seed=seed, val_fraction=0.15, test_fraction=0.15)
        assert split.assignment[0] == split.assignment[-1]


def test_holdout_split_puts_the_whole_group_in_test_and_splits_the_rest():
    samples, y, digests = _toy()
    held = np.array([s.lesion_id.endswith("7") and s.image_id.endswith("_0") for s in samples])
    split = holdout_split(samples, y, digests, held, seed=1, val_fraction=0.15, test_fraction=0.15)
    held_lesions = {s.lesion_id for s, h in zip(samples, held) if h}
    widened = np.array([s.lesion_id in held_lesions for s in samples])
    assert widened.sum() > held.sum()  # a held image's lesion-mates follow it into test
    assert all(side == "test" for side, w in zip(split.assignment, widened) if w)
    rest = np.asarray(split.assignment)[~widened]
    for name in ("train", "val", "test"):  # the rest is still split three ways, about 70/15/15
        assert abs(np.mean(rest == name) - {"train": 0.7}.get(name, 0.15)) < 0.05
    with pytest.raises(EdgeskinError, match="held-out group has 0 of"):
        holdout_split(samples, y, digests, np.zeros(len(y), bool), 1, 0.15, 0.15)


def test_leaky_assignments_are_refused():
    samples, y, digests = _toy(20)
    bad = list(make_split(samples, y, digests, 0, 0.2, 0.2).assignment)
    first_lesion = [i for i, s in enumerate(samples) if s.lesion_id == samples[0].lesion_id]
    if len(first_lesion) == 1:
        samples[1] = Sample(samples[1].path, samples[1].image_id, samples[1].dx, samples[0].lesion_id)
        first_lesion = [0, 1]
    bad[first_lesion[0]], bad[first_lesion[1]] = "train", "test"
    with pytest.raises(EdgeskinError, match="leaky split: lesion_id"):
        check_no_leak(samples, digests, Split(tuple(bad)))
    same_bytes = list(digests)
    same_bytes[5] = same_bytes[15]
    assignment = ["train"] * len(samples)
    assignment[15] = "test"
    lone = [Sample(s.path, s.image_id, s.dx, s.image_id) for s in samples]  # no shared lesions
    with pytest.raises(EdgeskinError, match="identical files"):
        check_no_leak(lone, same_bytes, Split(tuple(assignment)))


def test_manifest_round_trip_and_leaky_manifest_refused(tmp_path):
    samples, y, digests = _toy(60)
    split = make_split(samples, y, digests, 0, 0.15, 0.15)
    path = write_manifest(tmp_path / "split.csv", samples, digests, split, LABELS, y)
    back, keep = read_manifest(path, samples, digests)
    assert keep.all() and back.assignment == split.assignment
    rows = list(csv.DictReader(open(path)))
    assert Counter(r["split"] for r in rows) == Counter(split.assignment)
    # Edit one image of a multi-image lesion onto the other side: the manifest now leaks.
    lesion_sizes = Counter(s.lesion_id for s in samples)
    victim = next(i for i, s in enumerate(samples) if lesion_sizes[s.lesion_id] > 1)
    rows[victim]["split"] = "test" if rows[victim]["split"] != "test" else "train"
    with open(tmp_path / "leaky.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(EdgeskinError, match="leaky split"):
        read_manifest(tmp_path / "leaky.csv", samples, digests)


def test_manifest_naming_unknown_images_is_refused(tmp_path):
    samples, y, digests = _toy(30)
    split = make_split(samples, y, digests, 0, 0.2, 0.2)
    path = write_manifest(tmp_path / "split.csv", samples, digests, split, LABELS, y)
    with pytest.raises(EdgeskinError, match="not in the data"):
        read_manifest(path, samples[:-3], digests[:-3])


def test_too_few_lesions_is_a_clear_error():
    samples, y, digests = _toy(3)
    with pytest.raises(EdgeskinError, match="too few"):
        make_split(samples, y, digests, 0, 0.15, 0.15)
