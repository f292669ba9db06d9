"""The ablation that compares the accuracy levers: one row per lever, same split and seeds, resumable,
with seeds trained side by side, inference-time rows, teacher and seed ensembles, and the merge
into the committed table (the levers themselves: test_levers.py)."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import TINY
from edgeskin.benchmark.ablation import AblationConfig, Lever, Scored, paired_bootstrap, run_ablation, train_rows
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy


def test_paired_bootstrap_brackets_the_seed_mean():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    scored = []
    for s in range(3):
        p = np.eye(3)[np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))]
        scored.append(Scored(p, y, ("a", "b", "c"), {}))
    lo, hi = paired_bootstrap(scored, 300)
    mean = np.mean([balanced_accuracy(y, s.probs.argmax(1)) for s in scored])
    assert lo < mean < hi and hi - lo < 0.2


def test_ablation_table_rows_seeds_split_and_resume(synth_root, tmp_path):
    levers = (Lever("base", "reference"),
              Lever("logit-adjust", "objective", post="logit_adjust", reuse="base"),
              Lever("bsm-ema", "objective", {"loss": "balanced_softmax", "ema_decay": 0.9}),
              Lever("mel-op", "operating point", post="min_recall=1.0", reuse="bsm-ema"),
              Lever("thresholds", "operating point", post="class_thresholds", reuse="bsm-ema"))
    cfg = AblationConfig(data=str(synth_root), recipe="demo", levers=levers, seeds=(0, 1),
                         base={**TINY, "epochs": 1}, out=str(tmp_path / "abl"), bootstrap=50)
    result = run_ablation(cfg)
    assert [r["name"] for r in result["rows"]] == ["base", "logit-adjust", "bsm-ema", "mel-op", "thresholds"]
    for row in result["rows"]:
        assert row["seeds"] == [0, 1]
        lo, hi = row["balanced_accuracy_ci95"]
        assert 0 <= lo <= row["mean"]["balanced_accuracy"] <= hi <= 1
        assert 0 <= row["mean"]["mel_auc"] <= 1
    # Every run used the one shared split, and the inference-time row trained nothing of its own.
    manifests = {json.loads((tmp_path / "abl" / "runs" / f"{n}-s{s}" / "config.json").read_text())["split_manifest"]
                 for n in ("base", "bsm-ema") for s in (0, 1)}
    assert manifests == {str(tmp_path / "abl" / "split.csv")}
    assert result["rows"][1]["mean"]["train_minutes"] == 0.0 and "tau" in result["rows"][1]["per_seed"]["0"]
    assert sorted(p.name for p in (tmp_path / "abl" / "runs").iterdir()) == ["base-s0", "base-s1", "bsm-ema-s0",
                                                                             "bsm-ema-s1"]
    # The operating-point row decides with a melanoma offset fitted on validation: never fewer
    # melanomas found than its source row, and every validation melanoma (R = 1.0) in the fit.
    op, src = result["rows"][3]["per_seed"], result["rows"][2]["per_seed"]
    for s in ("0", "1"):
        assert op[s]["offset"] >= 0 and op[s]["mel_recall"] >= src[s]["mel_recall"]
        assert op[s]["mel_auc"] == pytest.approx(src[s]["mel_auc"])  # one logit shifted: ranks within mel kept
        # Per-class thresholds: one offset per class, from the validation split (not the test split).
        assert len(result["rows"][4]["per_seed"][s]["offsets"]) == len(result["rows"][4]["per_seed"][s]["per_class_recall"])
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| logit-adjust | objective |" in md and "Per-class recall" in md
    # A re-run reuses finished runs (same weights file, untouched).
    before = (tmp_path / "abl" / "runs" / "base-s0" / "best.pt").stat().st_mtime_ns
    again = run_ablation(cfg)
    assert (tmp_path / "abl" / "runs" / "base-s0" / "best.pt").stat().st_mtime_ns == before
    assert again["rows"][0]["mean"] == result["rows"][0]["mean"]
    # ...and its cached scores (keyed by weights, split and scorer version); a stale key is re-scored.
    cache = tmp_path / "abl" / "runs" / "base-s0" / "scores-logit_adjust.npz"
    with np.load(cache) as z:
        meta = json.loads(str(z["meta"]))
        probs = z["probs"]
    assert meta["key"]["post"] == "logit_adjust" and meta["extra"]["tau"] == again["rows"][1]["per_seed"]["0"]["tau"]
    np.savez(cache, probs=np.zeros_like(probs), targets=np.zeros(len(probs)), meta=np.array(json.dumps(
        {**meta, "key": {**meta["key"], "version": -1}})))
    from edgeskin.benchmark.ablation import score_run

    rescored = score_run(cache.parent, "logit_adjust", torch.device("cpu"), tmp_path / "abl" / "split.csv")
    assert np.allclose(rescored.probs, probs)
    # A run killed before its card was written is resumed from last.pt, not trained again.
    (tmp_path / "abl" / "runs" / "base-s0" / "model_card.json").unlink()
    resumed = run_ablation(cfg)
    assert (tmp_path / "abl" / "runs" / "base-s0" / "model_card.json").is_file()
    assert (tmp_path / "abl" / "runs" / "base-s0" / "best.pt").stat().st_mtime_ns == before
    assert resumed["rows"][0]["mean"]["balanced_accuracy"] == result["rows"][0]["mean"]["balanced_accuracy"]


def test_seeds_train_side_by_side_and_are_reused_on_other_hardware(synth_root, tmp_path):
    """--parallel trains a row's seeds in spawned processes; a run is the same run whatever device
    or loader processes trained it, and its card says which hardware that was."""
    levers = (Lever("base", "reference"),)
    side = AblationConfig(data=str(synth_root), recipe="demo", levers=levers, seeds=(0, 1),
                          base={**TINY, "epochs": 1}, out=str(tmp_path / "abl"), bootstrap=0, parallel=2, workers=1)
    first = run_ablation(side)
    runs = tmp_path / "abl" / "runs"
    for s in (0, 1):
        card = json.loads((runs / f"base-s{s}" / "model_card.json").read_text())
        assert card["metrics"]["train_hardware"].endswith("no GPU")  # CI has no GPU
        assert json.loads((runs / f"base-s{s}" / "config.json").read_text())["workers"] == 1
    assert first["rows"][0]["mean"]["train_hardware"] == card["metrics"]["train_hardware"]
    assert card["metrics"]["train_hardware"] in (tmp_path / "abl" / "ablation.md").read_text()
    before = (runs / "base-s0" / "best.pt").stat().st_mtime_ns
    again = run_ablation(replace(side, parallel=1, workers=0))
    assert (runs / "base-s0" / "best.pt").stat().st_mtime_ns == before
    assert again["rows"][0]["mean"]["balanced_accuracy"] == first["rows"][0]["mean"]["balanced_accuracy"]
    # ...but another recipe value is another run.
    other = run_ablation(replace(side, parallel=1, base={**TINY, "epochs": 2}))
    assert (runs / "base-s0" / "best.pt").stat().st_mtime_ns != before and other["rows"][0]["mean"]["epochs"] == 2


def test_train_only_trains_every_trained_row_and_a_later_ablation_scores_those_runs(synth_root, tmp_path):
    """What a lent GPU runs (--train-only): the trained rows' runs, teachers first, nothing scored;
    the ablation run later where the runs are copied scores them without training again."""
    levers = (Lever("base", "reference"), Lever("op", "operating point", post="min_recall=1.0", reuse="base"),
              Lever("student", "distillation", teacher="base"))
    cfg = AblationConfig(data=str(synth_root), recipe="demo", levers=levers, seeds=(0, 1),
                         base={**TINY, "epochs": 1}, out=str(tmp_path / "abl"), bootstrap=0)
    runs = tmp_path / "abl" / "runs"
    assert train_rows(cfg) == [runs / n for n in ("base-s0", "base-s1", "student-s0", "student-s1")]
    assert sorted(p.name for p in runs.iterdir()) == ["base-s0", "base-s1", "student-s0", "student-s1"]
    assert not list(runs.glob("*/scores-*.npz")) and not (tmp_path / "abl" / "ablation.json").exists()
    stamps = {p: (p / "best.pt").stat().st_mtime_ns for p in runs.iterdir()}
    result = run_ablation(replace(cfg, workers=1))  # another loader setting: the same runs
    assert {p: (p / "best.pt").stat().st_mtime_ns for p in runs.iterdir()} == stamps
    assert [r["name"] for r in result["rows"]] == ["base", "op", "student"]
    assert all(0 <= r["mean"]["balanced_accuracy"] <= 1 for r in result["rows"])
    # A row whose teacher is not among the rows is refused before anything trains.
    with pytest.raises(EdgeskinError, match="not an earlier trained row"):
        train_rows(replace(cfg, levers=levers[2:], out=str(tmp_path / "other")))
    assert not (tmp_path / "other").exists()


def test_ablation_script_refuses_train_only_with_render_only(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "ham10000_ablation.py"
    done = subprocess.run([sys.executable, str(script), "--train-only", "--render-only", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not allowed with argument" in done.stderr.splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_ablation_script_train_only_trains_and_writes_no_table(synth_root, tmp_path):
    """The script's --train-only as a lent GPU runs it: the run folders printed, exit 0, and no
    table written, neither under --out nor over the committed results."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "ham10000_ablation.py"
    committed = script.parent / "results" / "ham10000_ablation.json"
    before = committed.stat().st_mtime_ns if committed.is_file() else None
    done = subprocess.run([sys.executable, str(script), "--data", str(synth_root), "--rows", "base", "--seeds", "0",
                           "--epochs", "1", "--out", str(tmp_path / "abl"), "--train-only"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "abl" / "runs" / "base-s0"
    assert done.stdout.splitlines()[-2:] == ["trained (not scored):", f"  {run}"]
    assert (run / "model_card.json").is_file() and not list(run.glob("scores-*.npz"))
    assert not list((tmp_path / "abl").glob("ablation.*"))
    assert (committed.stat().st_mtime_ns if committed.is_file() else None) == before


def test_distilled_row_scores_its_teacher_ensemble(synth_root, tmp_path):
    """A distilled row also reports its teachers as one model: whether the students beat it is
    what says if another generation can still help."""
    from edgeskin.metrics import balanced_accuracy

    levers = (Lever("base", "reference"), Lever("student", "distillation", teacher="base"))
    cfg = AblationConfig(data=str(synth_root), recipe="demo", levers=levers, seeds=(0, 1),
                         base={**TINY, "epochs": 1}, out=str(tmp_path / "abl"), bootstrap=0)
    result = run_ablation(cfg)
    teachers = [np.load(tmp_path / "abl" / "runs" / f"base-s{s}" / "scores-plain.npz") for s in (0, 1)]
    mean = (teachers[0]["probs"] + teachers[1]["probs"]) / 2
    want = balanced_accuracy(teachers[0]["targets"], mean.argmax(1))
    assert result["rows"][1]["teacher_ensemble"]["balanced_accuracy"] == pytest.approx(want)
    assert "teacher_ensemble" not in result["rows"][0]
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert f"distilled from the base ensemble (which scores {want:.3f})" in md
    # Every row also scores its own seeds as one model: the teachers' row is the same ensemble, and
    # the students' row averages the students' probabilities.
    assert result["rows"][0]["seed_ensemble"] == result["rows"][1]["teacher_ensemble"]
    students = [np.load(tmp_path / "abl" / "runs" / f"student-s{s}" / "scores-plain.npz")["probs"] for s in (0, 1)]
    own = balanced_accuracy(teachers[0]["targets"], (students[0] + students[1]).argmax(1))
    assert result["rows"][1]["seed_ensemble"]["balanced_accuracy"] == pytest.approx(own)
    base_line = next(line for line in md.splitlines() if line.startswith("| base |"))
    assert f"| {want:.3f} | 1 |" in base_line  # the "seeds as one model" column, before the epochs


def test_a_single_seed_row_has_no_seed_ensemble(synth_root, tmp_path):
    cfg = AblationConfig(data=str(synth_root), recipe="demo", levers=(Lever("base", "reference"),), seeds=(0,),
                         base={**TINY, "epochs": 1}, out=str(tmp_path / "abl"), bootstrap=0)
    assert "seed_ensemble" not in run_ablation(cfg)["rows"][0]
    assert "| – | 1 |" in (tmp_path / "abl" / "ablation.md").read_text()


def test_plain_rows_score_where_the_heatmap_falls(synth_root, tmp_path):
    """The "CAM in lesion" column: a plain row's runs are scored against the test images' lesion
    masks (the synthetic set ships them), an inference-time row on the same weights is not."""
    from edgeskin.card import ModelCard
    from edgeskin.data.masks import lesion_masks
    from edgeskin.data.transforms import normalize
    from edgeskin.train.runs import load_run_model, run_data
    from edgeskin.explain.quality import cam_localisation

    levers = (Lever("base", "reference"), Lever("tta", "inference", post="tta", reuse="base"))
    cfg = AblationConfig(data=str(synth_root), recipe="demo", levers=levers, seeds=(0,),
                         base={**TINY, "epochs": 1}, out=str(tmp_path / "abl"), bootstrap=0)
    base, tta = run_ablation(cfg)["rows"]
    run = tmp_path / "abl" / "runs" / "base-s0"
    card = ModelCard.load(run)
    data, split = run_data(run, card)
    test = split.indices("test")
    masks = lesion_masks(synth_root, [data.samples[i].image_id for i in test], card.preprocessing.input_size)
    x = normalize(torch.from_numpy(data.pixels[test]).permute(0, 3, 1, 2), torch.tensor(card.preprocessing.mean),
                  torch.tensor(card.preprocessing.std))
    want = cam_localisation(load_run_model(run, card, torch.device("cpu")), x, masks)
    assert base["per_seed"]["0"]["cam_in_lesion"] == pytest.approx(want["cam_in_lesion"])
    assert base["mean"]["cam_in_lesion"] == pytest.approx(want["cam_in_lesion"])
    assert "cam_in_lesion" not in tta["mean"] and "cam_in_lesion" not in tta["per_seed"]["0"]
    assert "| CAM in lesion |" in (tmp_path / "abl" / "ablation.md").read_text()


def test_ablation_refuses_a_reuse_of_a_later_row(synth_root, tmp_path):
    levers = (Lever("tta", "inference", post="tta", reuse="base"), Lever("base", "reference"))
    with pytest.raises(EdgeskinError, match="not an earlier row"):
        run_ablation(AblationConfig(data=str(synth_root), recipe="demo", levers=levers, out=str(tmp_path)))
    for bad in ("magic", "min_recall=1.5", "min_recall=x", "class_thresholds=1"):
        with pytest.raises(EdgeskinError, match="unknown post"):
            Lever("x", "y", post=bad)


WINNER = "sog+3x+distill-g3"  # the trained row under the committed table's best row
WINNER_CHAIN_EPOCHS = [18, 18, 12, 12]  # its epochs, then each teacher's: the recipe's docstring says so


def test_named_recipe_reproduces_the_committed_ablation_winner():
    """`edgeskin train --recipe ham-edge-robust` is the best row of the committed HAM10000 ablation."""
    from pathlib import Path

    from edgeskin.benchmark.ablation_report import best_row
    from edgeskin.recipes import CHAINS, recipe_config

    result = json.loads((Path(__file__).parents[1] / "benchmarks/results/ham10000_ablation.json").read_text())
    def row(name):
        return next(r for r in result["rows"] if r["name"] == name)
    best = best_row(result)
    trained = best if best["post"] is None else row(best["reuse"])
    assert trained["name"] == WINNER
    clinical = (best["post"] or "").startswith("clinical")  # the prior `train --clinical` fits, as a post lever

    def fields(cfg, *drop):
        return {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k not in ("name", "recipe", *drop)}
    # The winner is the recipe, distilled from a chain of the recipe's own runs (at 12 or 18 epochs)
    # that starts from a run with no teacher.
    assert fields(recipe_config("ham-edge-robust", {})) == \
        fields(recipe_config(result["recipe"], {**result["base"], **trained["overrides"], "clinical": clinical}))
    chain = [trained]
    while chain[-1].get("teacher"):
        chain.append(row(chain[-1]["teacher"]))
    assert [r["mean"]["epochs"] for r in chain] == WINNER_CHAIN_EPOCHS
    # ...which is the chain `edgeskin chain --recipe ham-edge-robust` trains, first generation first.
    assert list(CHAINS["ham-edge-robust"]) == WINNER_CHAIN_EPOCHS[::-1]
    for r in chain[1:]:  # a prior never changes weights: the teachers are compared without it
        assert fields(recipe_config("ham-edge-robust", {"epochs": r["mean"]["epochs"]}), "clinical") == \
            fields(recipe_config(result["recipe"], {**result["base"], **r["overrides"]}), "clinical")
    # The committed int8 files (benchmarks/ham10000_winner.py) are that row's runs, deployed with the
    # best row's post levers, and score what the table says the same runs score in torch.
    winner = json.loads((Path(__file__).parents[1] / "benchmarks/results/ham10000_winner_int8.json").read_text())
    assert winner["row"] == trained["name"] and winner["clinical"] == clinical
    assert f"min_recall={winner['min_recall']}" in (best["post"] or "")
    assert abs(winner["int8"]["balanced_accuracy"] - best["mean"]["balanced_accuracy"]) < 0.01


def test_site_holdout_scores_the_held_out_group_apart(synth_root, tmp_path):
    from edgeskin.benchmark.holdout import run_holdout

    cfg = AblationConfig(data=str(synth_root), recipe="demo", levers=(Lever("base", "reference"),), seeds=(0,),
                         base={**TINY, "epochs": 1}, out=str(tmp_path / "hold"), bootstrap=20)
    # Synthetic images have no body site: hold out every lesion whose id ends in 3 or 7 instead.
    report = run_holdout(cfg, lambda s: s.lesion_id[-1] in "37", "lesions ending in 3 or 7")
    held_ids = set(json.loads((tmp_path / "hold" / "held_out.json").read_text())["image_ids"])
    rows = list(csv.DictReader(open(tmp_path / "hold" / "split.csv")))
    held_rows = [r for r in rows if r["image_id"] in held_ids]
    assert held_rows and all(r["split"] == "test" for r in held_rows)  # never trained or validated on
    in_dist_test = [r for r in rows if r["split"] == "test" and r["image_id"] not in held_ids]
    parts = report["rows"][0]["parts"]
    assert (parts["held_out"]["n"], parts["in_distribution"]["n"]) == (len(held_rows), len(in_dist_test))
    for part in parts.values():
        lo, hi = part["balanced_accuracy_ci95"]
        assert 0 <= lo <= part["mean"]["balanced_accuracy"] <= hi <= 1
    # The two parts together are the ablation's whole test split, scored once (the cached scores).
    with np.load(tmp_path / "hold" / "runs" / "base-s0" / "scores-plain.npz") as z:
        assert len(z["targets"]) == parts["held_out"]["n"] + parts["in_distribution"]["n"]
    assert "| base |" in (tmp_path / "hold" / "holdout.md").read_text()


def test_merge_keeps_committed_rows_and_refuses_another_split():
    from edgeskin.benchmark.ablation_report import merge_tables

    def table(rows, seeds=(0, 1, 2), notes=()):
        return {"seeds": list(seeds), "base": {"epochs": 6}, "recipe": "r", "notes": list(notes),
                "rows": [{"name": n, "v": v} for n, v in rows]}
    committed = table([("a", 1), ("b", 2), ("c", 3)], notes=["old"])
    merged = merge_tables(table([("d", 9), ("b", 5)], notes=["new"]), committed, ["a", "b", "c", "d"])
    assert [(r["name"], r["v"]) for r in merged["rows"]] == [("a", 1), ("b", 5), ("c", 3), ("d", 9)]
    assert merged["notes"] == ["old", "new"]
    # A committed "not run" line is dropped: the rows it named may be in the table now.
    stale = table([("a", 1)], notes=["Not run: b, c.", "old"])
    assert merge_tables(table([("b", 5)], notes=["Not run: c."]), stale, ["a", "b"],
                        stale_prefix="Not run:")["notes"] == ["old", "Not run: c."]
    fresh = {**table([("b", 5)]), "base": {"input_size": (96, 128)}}  # a new run's tuple, saved as a list
    assert merge_tables(fresh, {**committed, "base": {"input_size": [96, 128]}}, ["a", "b"])["rows"][1]["v"] == 5
    with pytest.raises(ValueError, match="seeds"):
        merge_tables(table([("b", 5)], seeds=(0,)), committed, ["a", "b"])
