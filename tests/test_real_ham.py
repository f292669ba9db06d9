"""Slow lane on the real HAM10000 (../shared/data): honest splits and an end-to-end run."""

import csv
from collections import defaultdict

import numpy as np
import pytest

from conftest import one_line_error, run_cli
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import HAM_LABELS, get_task
from edgeskin.data.split import make_split, write_manifest

pytestmark = pytest.mark.slow

DUPLICATE_PAIRS = [("ISIC_0024366", "ISIC_0029861"), ("ISIC_0024777", "ISIC_0029938")]


def _sides_by_lesion(rows):
    sides = defaultdict(set)
    for r in rows:
        sides[r["lesion_id"]].add(r["split"])
    return sides


@pytest.fixture(scope="module")
def ham_split(ham_root, tmp_path_factory):
    # 16x16 is enough to hash and check every file; the split does not depend on pixels.
    data = load_labelled(str(ham_root), get_task("multiclass"), (16, 16), progress=False)
    split = make_split(data.samples, data.targets, data.digests, seed=0, val_fraction=0.15, test_fraction=0.15)
    path = write_manifest(tmp_path_factory.mktemp("ham") / "split.csv", data.samples, data.digests, split,
                          HAM_LABELS, data.targets)
    return data, split, path


def test_full_split_has_zero_lesion_overlap_and_keeps_duplicates_together(ham_split):
    data, split, path = ham_split
    assert len(data.samples) == 10015
    rows = list(csv.DictReader(open(path)))
    assert all(len(s) == 1 for s in _sides_by_lesion(rows).values())
    side = {r["image_id"]: r["split"] for r in rows}
    for a, b in DUPLICATE_PAIRS:
        assert side[a] == side[b]
    # Stratified: melanoma share of each side within 1.5 points of the dataset's 11.1%.
    y = data.targets
    for name in ("train", "val", "test"):
        assert abs(np.mean(y[split.indices(name)] == HAM_LABELS.index("mel")) - 1113 / 10015) < 0.015


def test_leaky_manifest_is_refused_by_the_cli(ham_split, ham_root, tmp_path):
    _, _, path = ham_split
    rows = list(csv.DictReader(open(path)))
    by_lesion = defaultdict(list)
    for i, r in enumerate(rows):
        by_lesion[r["lesion_id"]].append(i)
    victim = next(idx for idx in by_lesion.values() if len(idx) > 1)[0]
    rows[victim]["split"] = "test" if rows[victim]["split"] != "test" else "train"
    leaky = tmp_path / "leaky.csv"
    with open(leaky, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    proc = run_cli("train", "--data", ham_root, "--split-manifest", leaky, "--input-size", "16",
                   "--project", tmp_path / "runs")
    assert "leaky split: lesion_id" in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_train_and_evaluate_end_to_end_on_real_ham(ham_root, tmp_path):
    run_cli("train", "--data", ham_root, "--backbone", "edgeskin_cnn_s", "--input-size", "48x64",
            "--max-images", "1500", "--epochs", "3", "--batch-size", "32", "--project", tmp_path,
            "--name", "ham", check=True)
    run = tmp_path / "ham"
    rows = list(csv.DictReader(open(run / "split.csv")))
    assert 1400 <= len(rows) <= 1700
    assert all(len(s) == 1 for s in _sides_by_lesion(rows).values())
    out = run_cli("evaluate", run, "--bootstrap", "100", check=True)
    assert "balanced accuracy" in out.stdout
    import json

    m = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert set(m["per_class"]) == set(HAM_LABELS)
    assert m["n"] == sum(r["split"] == "test" for r in rows)
    assert m["baseline_majority"]["label"] == "nv" and abs(m["baseline_majority"]["balanced_accuracy"] - 1 / 7) < 1e-9
    card = json.loads((run / "model_card.json").read_text())
    assert card["data"]["synthetic"] is False and card["data"]["format"] == "ham10000"
