"""Several sources in one run: tagging, label mapping, leave-one-source-out splits that never let a
lesion cross, the training-only border and resolution levers, and the figures an external
mel/nv-only set gets from `evaluate`."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, TINY, load_script, one_line_error, run_cli
from edgeskin.data.readers import read_dataset
from edgeskin.errors import EdgeskinError

ISIC_ROOT = ROOT.parent / "shared" / "data" / "ISIC2019_BCN_MSK"


def _second_source(synth_root: Path, out: Path, labels: dict[str, str] | None = None, n: int = 120,
                   name: str = "clinic_b") -> Path:
    """A CSV-manifest source made of the synthetic images, mirrored, under new names (another clinic's files),
    two images per lesion, with age/sex/site columns; `labels` relabels some diagnoses (e.g. to scc)."""
    rows = list(csv.DictReader(open(synth_root / "synthetic_metadata.csv")))[:n]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "lesion_id", "age", "sex", "site"])
        for i, r in enumerate(rows):
            src = next(synth_root.rglob(f"{r['image_id']}.jpg"))
            dst = out / f"B_{r['image_id']}.jpg"
            # Mirrored, so not byte-identical: identical files would rightly be kept on one side.
            Image.open(src).transpose(Image.FLIP_LEFT_RIGHT).save(dst, quality=90)
            w.writerow([dst.name, (labels or {}).get(r["dx"], r["dx"]), f"BL{i // 2}", "50", "female", "back"])
    return out / f"{name}.csv"


def _lesions_cross(manifest: Path) -> list[str]:
    """The lesion_ids a split.csv puts on more than one side (must be none)."""
    sides: dict[str, set[str]] = defaultdict(set)
    for row in csv.DictReader(open(manifest)):
        sides[row["lesion_id"]].add(row["split"])
    return [lid for lid, s in sides.items() if len(s) > 1]


def test_sources_are_tagged_named_and_kept_apart(synth_root, tmp_path):
    b = _second_source(synth_root, tmp_path / "b", n=20)
    pooled = read_dataset((f"vienna={synth_root}", str(b)))
    assert pooled.sources == ("vienna", "clinic_b")
    assert pooled.describe()["sources"] == {"vienna": 240, "clinic_b": 20}
    with pytest.raises(EdgeskinError, match="both give source 'synthetic'"):
        read_dataset((str(synth_root), str(synth_root)))


def test_two_source_run_holds_one_source_out(synth_root, tmp_path):
    """The CI run: two sources (one with scc, mapped to akiec), source B held out, then evaluated."""
    b = _second_source(synth_root, tmp_path / "b", labels={"akiec": "scc"})
    common = ["--backbone", TINY["backbone"], "--input-size", "32x48", "--batch-size", "16", "--epochs", "1",
              "--device", "cpu", "--project", str(tmp_path / "runs")]
    unmapped = run_cli("train", "--data", synth_root, "--data", b, "--holdout-source", "clinic_b", *common)
    assert "--label-map scc=" in one_line_error(unmapped)
    wrong = run_cli("train", "--data", synth_root, "--data", b, "--holdout-source", "nowhere",
                    "--label-map", "scc=akiec", *common)
    assert "choose one of ['synthetic', 'clinic_b']" in one_line_error(wrong)

    run_cli("train", "--data", synth_root, "--data", b, "--holdout-source", "clinic_b", "--label-map", "scc=akiec",
            "--vignette-augment", "0.5", "--resolution-augment", "0.5", "--balance-source", *common,
            "--name", "loso", check=True)
    run = tmp_path / "runs" / "loso"
    card = json.loads((run / "model_card.json").read_text())
    assert card["data"]["sources"] == {"synthetic": 240, "clinic_b": 120}
    assert card["data"]["label_map"] == {"scc": "akiec"} and card["data"]["holdout_source"] == "clinic_b"
    assert "leave-one-source-out" in card["split"]["protocol"]
    rows = list(csv.DictReader(open(run / "split.csv")))
    assert {r["split"] for r in rows if r["source"] == "clinic_b"} == {"test"}
    assert {r["split"] for r in rows if r["source"] == "synthetic"} == {"train", "val"}
    assert not _lesions_cross(run / "split.csv")
    assert any(r["dx"] == "scc" and r["label"] == "akiec" for r in rows)

    run_cli("evaluate", run, "--bootstrap", "0", check=True)
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["n"] == 120 and metrics["deployment"]["n"] == 120
    assert "before deploying" in (run / "eval" / "test" / "report.md").read_text().lower()


def test_lesion_crossing_a_split_is_caught(synth_root, tmp_path):
    """The check every test here leans on fails when one lesion is put on two sides."""
    b = _second_source(synth_root, tmp_path / "b", n=20)
    run_cli("train", "--data", synth_root, "--data", b, "--backbone", TINY["backbone"], "--input-size", "32x48",
            "--epochs", "1", "--device", "cpu", "--project", str(tmp_path / "runs"), "--name", "pooled", check=True)
    manifest = tmp_path / "runs" / "pooled" / "split.csv"
    rows = list(csv.DictReader(open(manifest)))
    assert not _lesions_cross(manifest)
    assert {r["source"] for r in rows if r["split"] == "test"} == {"synthetic", "clinic_b"}  # stratified per source
    first = next(r for r in rows if r["split"] == "train")
    other = next(r for r in rows if r["split"] == "test")
    other["lesion_id"] = first["lesion_id"]
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert _lesions_cross(bad) == [first["lesion_id"]]


def test_external_mel_nv_set_gives_melanoma_figures(synth_root, tmp_path):
    """A labelled set with only mel and nv: evaluate reports melanoma-vs-rest AUC and the balanced
    accuracy over those two classes, and the AUC is sklearn's on the model's own probabilities."""
    from sklearn.metrics import roc_auc_score

    from edgeskin.config import TrainConfig
    from edgeskin.evaluate.deploy import deployment_figures
    from edgeskin.train import train

    run = train(TrainConfig(data=str(synth_root), epochs=2, project=str(tmp_path / "runs"), name="r",
                            **TINY)).run_dir
    rows = [r for r in csv.DictReader(open(synth_root / "synthetic_metadata.csv")) if r["dx"] in ("mel", "nv")]
    ext = tmp_path / "ext.csv"
    with open(ext, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for r in rows:
            w.writerow([next(synth_root.rglob(f"{r['image_id']}.jpg")), r["dx"]])
    run_cli("evaluate", run, "--data", ext, "--bootstrap", "0", check=True)
    m = json.loads((run / "eval" / "external-ext.csv" / "metrics.json").read_text())
    d = m["deployment"]
    assert d["classes_present"] == ["mel", "nv"] and d["n"] == len(rows)
    assert 0 <= d["mel_auc"] <= 1 and 0 <= d["mel_sensitivity"] <= 1 and 0 <= d["mel_specificity"] <= 1
    assert d["mel_auc"] == pytest.approx(m["per_class"]["mel"]["auc"])
    y = np.array([1, 1, 0, 0, 0])  # hand-checked: both melanomas called mel; one of three nevi (logit 2) too
    logits = np.array([[0, 3.0], [0, 1.0], [0, 2.0], [0, 0.0], [0, -1.0]])
    f = deployment_figures(y, logits, ("nv", "mel"), "mel")
    assert f["mel_auc"] == pytest.approx(roc_auc_score(y == 1, logits[:, 1]))
    assert f["mel_sensitivity"] == 1.0 and f["mel_specificity"] == pytest.approx(2 / 3)
    assert f["mel_auc"] == pytest.approx(5 / 6)  # of 6 (mel, nv) pairs, only (1.0, 2.0) is ranked wrong


def test_vignette_and_down_up_move_the_image_not_the_mask():
    from torchvision import tv_tensors

    from edgeskin.data.transforms import RandomDownUp, RandomVignette

    torch.manual_seed(0)
    x = torch.full((3, 30, 40), 200, dtype=torch.uint8)
    m = tv_tensors.Mask(torch.ones(1, 30, 40, dtype=torch.uint8))
    vx, vm = RandomVignette(1.0)(x, m)
    assert vx[:, 0, 0].eq(0).all() and vx[:, 15, 20].eq(200).all() and torch.equal(vm, m)
    assert torch.equal(RandomVignette(0.0)(x), x)
    checker = (torch.arange(40)[None, None] % 2 * 255).expand(3, 30, 40).to(torch.uint8).contiguous()
    blurred = RandomDownUp(1.0, min_scale=0.4)(checker)
    assert blurred.shape == checker.shape and blurred.float().std() < checker.float().std()


def test_source_balanced_sampler_weighs_cells_alike():
    from edgeskin.config import TrainConfig
    from edgeskin.train.engine import sample_weights

    y = np.array([0] * 90 + [1] * 10 + [0] * 10 + [1] * 10)
    src = np.array(["a"] * 100 + ["b"] * 20, dtype=object)
    w = sample_weights(TrainConfig(balance_source=True, balance_power=1.0), y, 2, src)
    cells = [w[(src == s) & (y == k)].sum() for s in "ab" for k in (0, 1)]
    assert np.allclose(cells, cells[0])  # power 1: every (source, class) cell drawn equally often
    plain = sample_weights(TrainConfig(balance_power=1.0), y, 2, src)  # classes alone: the big source wins
    assert plain[y == 0].sum() == pytest.approx(plain[y == 1].sum())
    assert plain[(src == "a") & (y == 0)].sum() == pytest.approx(9 * plain[(src == "b") & (y == 0)].sum())


@pytest.mark.slow
def test_real_isic_pool_never_lets_a_lesion_cross():
    """HAM10000 + ISIC 2019's BCN/MSK part as read: duplicate-joined lesions, conflicting pairs
    dropped, and every leave-one-source-out split (and the pooled one) free of crossing lesions."""
    from edgeskin.data.split import make_split, source_holdout_split, source_strata

    ham = ROOT.parent / "shared" / "data" / "HAM10000"
    if not (ISIC_ROOT / "metadata.csv").is_file() or not ham.is_dir():
        pytest.skip(f"ISIC 2019 BCN/MSK or HAM10000 not found under {ISIC_ROOT.parent} (../shared on dev and CI)")
    isic = read_dataset(ISIC_ROOT)
    assert len(isic.samples) == 15284 - 4  # the two conflicting-label pairs are dropped
    lesion_of = {s.image_id: s.lesion_id for s in isic.samples}
    assert lesion_of["ISIC_0054023"] == lesion_of["ISIC_0064545"]  # BCN_0002049 = BCN_0002919
    pooled = read_dataset((str(ham), str(ISIC_ROOT)))
    assert pooled.sources == ("HAM10000", "MSK", "BCN")
    samples = pooled.samples
    labels = sorted({s.dx for s in samples})
    y = np.array([labels.index(s.dx) for s in samples])
    digests = [s.image_id for s in samples]  # identical files are joined through duplicates.csv here
    strata = source_strata(y, [s.source for s in samples])
    splits = [source_holdout_split(samples, strata, digests, held, 0, 0.15) for held in pooled.sources]
    splits.append(make_split(samples, strata, digests, 0, 0.15, 0.15))
    for split in splits:
        sides: dict[str, set[str]] = defaultdict(set)
        for s, side in zip(samples, split.assignment):
            sides[s.lesion_id].add(side)
        assert all(len(v) == 1 for v in sides.values())
    held_msk = splits[1]
    assert {side for s, side in zip(samples, held_msk.assignment) if s.source == "MSK"} == {"test"}
    assert "test" not in {side for s, side in zip(samples, held_msk.assignment) if s.source != "MSK"}


def test_multisource_report_matches_its_schema():
    """The committed leave-one-source-out report has the keys a program reads, from real runs."""
    path = ROOT / "benchmarks" / "results" / "multisource" / "report.json"
    if not path.is_file():
        pytest.skip("benchmarks/results/multisource/report.json not written yet (benchmarks/multisource.py)")
    report = json.loads(path.read_text())
    for row in report["rows"]:
        assert {"row", "train_sources", "test_source", "seeds", "balanced_accuracy", "balanced_accuracy_ci95",
                "mel_auc", "mel_recall"} <= set(row)
        lo, hi = row["balanced_accuracy_ci95"]
        assert lo <= row["balanced_accuracy"] <= hi
        assert Path(row["runs"][0]).name.startswith(row["row"])
    if "winner_int8" in report:
        w = report["winner_int8"]
        assert {"ham_test_balanced_accuracy", "ham_test_ci95", "holdout_mel_auc", "size_mb"} <= set(w)
    ms = load_script("multisource")
    assert set(r["row"] for r in report["rows"]) <= set(ms.ROWS)


def test_multisource_report_sets_the_winner_beside_the_ham_only_file():
    """The rendered report reads the HAM10000-only winner's figures from its committed JSON."""
    ms = load_script("multisource")
    path = ROOT / "benchmarks" / "results" / "ham10000_winner_int8.json"
    if not path.is_file():
        pytest.skip("benchmarks/results/ham10000_winner_int8.json not written yet")
    current = json.loads(path.read_text())
    (line,) = ms.beside_current_winner()
    assert f"{current['int8']['balanced_accuracy']:.3f}" in line and current["row"] in line
    report = json.loads((ROOT / "benchmarks" / "results" / "multisource" / "report.json").read_text())
    if "winner_int8" in report:
        assert line in ms.render(report)


def test_paired_delta_sees_a_better_row_and_no_difference_between_equals():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from edgeskin.benchmark.scored import paired_delta

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = [y + rng.normal(0, 0.8, 400) for _ in range(2)]
    bad = [y + rng.normal(0, 2.0, 400) for _ in range(3)]
    better = paired_delta(y, good, bad, roc_auc_score, n=200)
    assert better["ci95"][0] > 0 and better["p_le_0"] == 0.0
    same = paired_delta(y, bad, bad, roc_auc_score, n=50)
    assert same["delta"] == 0.0 and same["ci95"] == [0.0, 0.0]
