"""`edgeskin train --folds K`: K lesion-grouped folds, each image tested once, one report."""

from __future__ import annotations

import csv
import json
import statistics

from conftest import one_line_error, run_cli


def test_three_folds_have_disjoint_lesions(synth_root, tmp_path):
    run_cli("train", "--data", synth_root, "--backbone", "edgeskin_cnn_s", "--input-size", "32x48", "--epochs", "4",
            "--lr", "3e-3", "--batch-size", "16", "--device", "cpu", "--folds", "3", "--project", tmp_path, "--name", "cv", check=True)
    out = tmp_path / "cv"
    sides = []
    for i in range(3):
        with open(out / f"fold-{i}-split.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        lesions = {side: {r["lesion_id"] for r in rows if r["split"] == side} for side in ("train", "val", "test")}
        assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"]
                    or lesions["val"] & lesions["test"])
        sides.append({r["image_id"]: r["split"] for r in rows})
        card = json.loads((out / f"fold-{i}" / "model_card.json").read_text())
        assert "test" in card["metrics"]  # scored by `edgeskin evaluate` on its own test fold
    tests = [{k for k, v in s.items() if v == "test"} for s in sides]
    assert not (tests[0] & tests[1] or tests[0] & tests[2] or tests[1] & tests[2])
    assert set().union(*tests) == set(sides[0])  # every image is tested exactly once
    test_lesions = [{r["lesion_id"] for r in csv.DictReader(open(out / f"fold-{i}-split.csv")) if r["split"] == "test"}
                    for i in range(3)]
    assert not (test_lesions[0] & test_lesions[1] or test_lesions[0] & test_lesions[2]
                or test_lesions[1] & test_lesions[2])
    report = json.loads((out / "kfold.json").read_text())
    values = [f["balanced_accuracy"] for f in report["folds"]]
    assert len(values) == 3 and all(0 <= v <= 1 for v in values)
    assert report["mean"] == statistics.fmean(values) and report["std"] == statistics.stdev(values)
    assert max(values) > 1 / 7  # trained, not the one-class floor of 7 classes
    assert "mean ± std" in (out / "kfold.md").read_text()


def test_bad_folds(synth_root, tmp_path):
    proc = run_cli("train", "--data", synth_root, "--folds", "1", "--project", tmp_path)
    assert "--folds 1; use 2..20" in one_line_error(proc)
    proc = run_cli("train", "--data", synth_root, "--folds", "3", "--holdout-source", "x", "--project", tmp_path)
    assert "--folds makes its own splits" in one_line_error(proc)
    assert not any(tmp_path.iterdir())
