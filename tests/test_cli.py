"""The CLI as a user meets it: end to end on tiny data, and one-line errors with nothing written."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import SMALL_MODEL_REPORTS, one_line_error, run_cli

FAST = ["--backbone", "edgeskin_cnn_s", "--input-size", "32x48", "--epochs", "1", "--batch-size", "16"]


def test_train_then_evaluate_own_split_and_external_resolution(synth_root, tmp_path):
    run_cli("train", "--data", synth_root, *FAST, "--project", tmp_path, "--name", "r", check=True)
    run = tmp_path / "r"
    out = run_cli("evaluate", run, "--bootstrap", "50", check=True)
    assert "balanced accuracy" in out.stdout and "always predicting `nv`" in out.stdout
    for f in ("metrics.json", "report.md", "confusion_matrix.png", "roc.png"):
        assert (run / "eval" / "test" / f).stat().st_size > 0
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert {"balanced_accuracy", "auc_macro", "cohen_kappa", "g_mean", "ece", "ci95", "per_class"} <= set(metrics)
    # External data at another resolution (3x, like the official 600x450 release): same preprocessing.
    ext = tmp_path / "external"
    shutil.copytree(synth_root, ext)
    for p in (ext / "images").iterdir():
        Image.open(p).resize((600, 450)).save(p)
    run_cli("evaluate", run, "--data", ext, "--bootstrap", "0", check=True)
    ext_metrics = json.loads((run / "eval" / "external-external" / "metrics.json").read_text())
    assert ext_metrics["n"] == 240
    card = json.loads((run / "model_card.json").read_text())
    assert {"val", "test", "external-external"} <= set(card["metrics"])
    # Weights changed after training (here one byte) are refused in one line, and nothing is re-scored.
    weights = run / "best.pt"
    blob = bytearray(weights.read_bytes())
    blob[-30] ^= 0xFF
    weights.write_bytes(bytes(blob))
    report = (run / "eval" / "test" / "metrics.json").stat().st_mtime_ns
    assert "changed after training" in one_line_error(run_cli("evaluate", run))
    assert (run / "eval" / "test" / "metrics.json").stat().st_mtime_ns == report


def _bad_dataset(tmp_path, kind):
    root = tmp_path / "data"
    for label in ("mel", "nv"):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), (200, 100 + i, 80)).save(root / label / f"{i}.jpg")
    if kind == "truncated":
        p = root / "mel" / "0.jpg"
        p.write_bytes(p.read_bytes()[:60])
    return root


@pytest.mark.parametrize("args, needle", [
    (["--data", "/no/such/dir"], "/no/such/dir"),
    (["--data", "DATA", "--task", "binary", "--backbone", "resnet81"], "resnet81"),
    (["--data", "DATA", "--task", "multiclass"], "have no images"),
    (["--data", "TRUNCATED", "--task", "binary"], "0.jpg"),
    (["--data", "DATA", "--task", "binary", "--epochs", "0"], "--epochs 0"),
    (["--data", "DATA", "--task", "binary", "--max-minutes", "0"], "--max-minutes 0.0"),
    (["--data", "DATA", "--task", "binary", "--split-manifest", "/no/split.csv"], "/no/split.csv"),
    (["--data", "DATA", "--task", "binary", "--weights", "/no/w.pth"], "/no/w.pth"),
])
def test_bad_input_one_line_error_and_no_run_dir(tmp_path, args, needle):
    data = _bad_dataset(tmp_path, "truncated" if "TRUNCATED" in args else "ok")
    args = [str(data) if a in ("DATA", "TRUNCATED") else a for a in args]
    proc = run_cli("train", *args, "--batch-size", "4", "--project", tmp_path / "runs")
    assert needle in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_unknown_choice_lists_valid_values(tmp_path):
    proc = run_cli("train", "--balance", "oversample")
    assert proc.returncode == 2
    assert "sampler" in proc.stderr and "loss" in proc.stderr


def test_resume_refuses_options_it_would_ignore(tmp_path):
    proc = run_cli("train", "--resume", tmp_path / "run", "--epochs", "50", "--lr", "0.1")
    assert "drop --epochs --lr" in one_line_error(proc)


def test_evaluate_without_card_names_the_fix(tmp_path):
    assert "model_card.json" in one_line_error(run_cli("evaluate", tmp_path))


def test_recipes_listed():
    out = run_cli("recipes", check=True).stdout
    for name in ("demo", "ham-mobile", "densenet121-7class", "sresnet-binary"):
        assert name in out


@pytest.mark.slow
def test_demo_main_job(tmp_path):
    """The README's first command: trains on the synthetic set and prints where the results are."""
    proc = run_cli("demo", "--project", tmp_path, check=True)
    assert "SYNTHETIC" in proc.stdout
    run = tmp_path / "demo"
    for f in ("model_card.json", "best.pt", "split.csv", "eval/test/report.md", "compress/summary.md",
              "export/edgeskin_cnn_s_int8.tflite", "export/edgeskin_cnn_s_int8.tflite.json",
              "benchmark/report.md", "benchmark/report.json", "benchmark/size_vs_accuracy.png"):
        assert (run / f).exists(), f
    assert list((run / "edge").glob("*_cam.png")) and "edge_runtime predict" in proc.stdout
    SMALL_MODEL_REPORTS.append(run / "benchmark" / "report.md")  # printed at the end of the test run (CI log)
    assert f"results: {run}" in proc.stdout and "int8 tflite" in proc.stdout
    ba = json.loads((run / "eval/test/metrics.json").read_text())["balanced_accuracy"]
    assert ba > 0.5  # clearly better than chance (1/7)


def test_synth_command_writes_a_readable_dataset(tmp_path):
    out = run_cli("synth", tmp_path / "s", "--n", "12", "--size", "60x80", check=True).stdout
    assert "synthetic dataset:" in out
    images = sorted((tmp_path / "s" / "images").iterdir())
    assert len(images) == 12 and Image.open(images[0]).size == (80, 60)
    assert "--n 0" in one_line_error(run_cli("synth", tmp_path / "t", "--n", "0"))


def test_synth_labels_csv_is_what_the_device_tools_read(tmp_path):
    """`edgeskin synth` also writes labels.csv (path,label,lesion_id), so the README's
    `edge_runtime benchmark/calibrate --data` lines run on it as written."""
    import csv

    from edge_runtime.bench import labelled_images

    run_cli("synth", tmp_path / "s", "--n", "12", "--size", "60x80", check=True)
    meta = {r["image_id"]: r["dx"] for r in csv.DictReader(open(tmp_path / "s" / "synthetic_metadata.csv"))}
    items = labelled_images(tmp_path / "s" / "labels.csv")
    assert len(items) == 12 and all(Path(it.path).is_file() for it in items)
    assert {Path(it.path).stem: it.label for it in items} == meta


def test_cuda_request_without_gpu_is_a_clear_error():
    import torch

    from edgeskin.errors import EdgeskinError
    from edgeskin.predict import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(EdgeskinError, match="--device cpu or auto"):
        resolve_device("cuda")
