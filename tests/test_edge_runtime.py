"""edge_runtime runs the exported files with no torch and no TensorFlow: its predictions match
edgeskin's own LiteRT/torch runs, it reads everything from the artifact, refuses a changed file,
takes awkward images, and its CLI writes heatmaps and benchmark JSON."""

import csv
import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import one_line_error, run_edge

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
from edge_runtime import Classifier  # noqa: E402


@pytest.fixture(scope="module")
def photos(synth_root, tmp_path_factory):
    """One synthetic lesion photo per class at its own 200x150 size, with its label."""
    from edgeskin.data.readers import read_dataset

    first = {}
    for s in read_dataset(synth_root).samples:
        first.setdefault(s.dx, s.path)
    return sorted((path, dx) for dx, path in first.items())


def test_predict_matches_edgeskin_litert_and_torch(exported_tiny, photos):
    import torch

    from edgeskin.card import ModelCard
    from edgeskin.data.images import load_image
    from edgeskin.train.runs import load_run_model
    from edgeskin.export.tflite import LiteRTRunner
    from edgeskin.export.validate import run_artifact
    from edgeskin.predict import predict_logits

    run = exported_tiny["run"]
    card = ModelCard.load(run)
    pre = card.preprocessing
    pixels = np.stack([load_image(p.read_bytes(), pre.input_size, str(p)) for p, _ in photos])
    int8_ref, _ = run_artifact(LiteRTRunner(exported_tiny["tflite_int8"]), pixels, pre.mean, pre.std)
    torch_ref = predict_logits(load_run_model(run, card, torch.device("cpu")), pixels, pre.mean, pre.std,
                               torch.device("cpu"))
    int8, fp32 = Classifier.load(exported_tiny["tflite_int8"]), Classifier.load(exported_tiny["tflite_fp32"])
    for i, (path, _) in enumerate(photos):
        logits, cam = int8.infer(Image.open(path).convert("RGB"))
        assert np.array_equal(logits, int8_ref[i])  # same preprocessing, same file: identical
        fp32_logits, _ = fp32.infer(Image.open(path).convert("RGB"))
        assert np.abs(fp32_logits - torch_ref[i]).max() < 1e-3
        p = int8.predict(path)
        assert p.label == card.labels[int(int8_ref[i].argmax())]
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5 and list(p.probabilities)[0] == p.label
        assert p.malignant_risk == pytest.approx(sum(p.probabilities[k] for k in ("akiec", "bcc", "mel")), abs=1e-5)
        assert p.heatmap.shape == (150, 200) and 0 <= p.heatmap.min() and p.heatmap.max() <= 1
        assert p.next_step


def test_card_calibration_is_used(exported_tiny, photos):
    clf = Classifier.load(exported_tiny["tflite_int8"])
    cal = clf.artifact.calibration
    assert cal["temperature"] > 0 and 0 <= cal["uncertain_below"] <= 1 and cal["fitted_on"]
    logits, _ = clf.infer(Image.open(photos[0][0]).convert("RGB"))
    z = logits / cal["temperature"]
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    p = clf.predict(photos[0][0])
    assert p.confidence == pytest.approx(expected.max(), abs=1e-6)
    t = cal["temperature"]
    energy = t * np.log(np.exp(logits / t).sum())  # the energy OOD score the card's threshold is for
    assert cal["ood_below"] is not None and p.out_of_distribution == (energy < cal["ood_below"])
    assert p.uncertain == (expected.max() < cal["uncertain_below"] or p.out_of_distribution)


def test_never_imports_torch_or_tensorflow(exported_tiny, photos, tmp_path):
    """torch/TF are blocked outright (an import would raise) and checked absent afterwards."""
    code = (
        "import sys\n"
        "for m in ('torch', 'tensorflow', 'tf_keras', 'jax', 'edgeskin'): sys.modules[m] = None\n"
        "from edge_runtime.cli import main\n"
        f"rc = main(['predict', {str(exported_tiny['tflite_int8'])!r}, {str(photos[0][0])!r}, '--json',"
        f" '--cam-out', {str(tmp_path)!r}])\n"
        "heavy = [m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
        "('torch', 'tensorflow', 'tf_keras', 'jax')]\n"
        "assert rc == 0 and not heavy, (rc, heavy)\n"
        "print('clean')\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr
    assert list(tmp_path.glob("*_cam.png"))


def test_cli_predict_json_and_overlay(exported_tiny, photos, tmp_path):
    proc = run_edge("predict", exported_tiny["tflite_int8"], photos[0][0], photos[1][0], "--json",
                    "--cam-out", tmp_path, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 2 and {"label", "confidence", "probabilities", "malignant_risk", "next_step"} <= set(rows[0])
    overlay = Image.open(rows[0]["heatmap_png"])
    assert overlay.size == (200, 150) and overlay.mode == "RGB"
    text = run_edge("predict", exported_tiny["tflite_int8"], photos[0][0], check=True).stdout
    assert rows[0]["label"] in text and "not a diagnosis" in text


def test_changed_file_is_refused(exported_tiny, photos, tmp_path):
    src = exported_tiny["tflite_int8"]
    shutil.copy(src, tmp_path / src.name)
    card = src.with_name(src.name + ".json")
    shutil.copy(card, tmp_path / card.name)
    with open(tmp_path / src.name, "ab") as f:
        f.write(b"\0")
    err = one_line_error(run_edge("predict", tmp_path / src.name, photos[0][0]))
    assert "SHA-256" in err and src.name in err
    # Without the card JSON the card packed inside the file is used.
    (tmp_path / card.name).unlink()
    shutil.copy(src, tmp_path / src.name)
    assert Classifier.load(tmp_path / src.name).artifact.labels[4] == "mel"


def test_awkward_images(exported_tiny, photos, tmp_path):
    clf = Classifier.load(exported_tiny["tflite_int8"])
    rgb = Image.open(photos[0][0]).convert("RGB")
    base = clf.predict(rgb)
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    rgb.convert("L").save(tmp_path / "gray.png")
    Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)).save(tmp_path / "deep16.png")
    for name in ("rgba.png", "gray.png", "deep16.png"):
        assert clf.predict(tmp_path / name).heatmap.shape == (150, 200)
    assert clf.predict(tmp_path / "rgba.png").probabilities == base.probabilities  # opaque alpha changes nothing
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the photo is shown 150 wide, 200 tall
    rgb.save(tmp_path / "rotated.jpg", exif=exif)
    assert clf.predict(tmp_path / "rotated.jpg").heatmap.shape == (200, 150)
    (tmp_path / "notes.txt").write_text("not a photo")
    assert "not an image" in one_line_error(run_edge("predict", exported_tiny["tflite_int8"], tmp_path / "notes.txt"))
    assert "choose one of" in one_line_error(run_edge("predict", exported_tiny["tflite_int8"], photos[0][0],
                                                      "--target", "melanoma"))


def test_onnx_file_without_onnxruntime_names_the_package(exported_tiny, photos):
    # The distribution is edgeskin-runtime, installed from its folder: the hint names the package itself.
    err = one_line_error(run_edge("predict", exported_tiny["onnx_fp32"], photos[0][0], without=("onnxruntime",)))
    assert exported_tiny["onnx_fp32"].name in err and err.endswith("pip install onnxruntime")


def test_onnx_backend_agrees_with_tflite(exported_tiny, photos):
    onnx, fp32 = Classifier.load(exported_tiny["onnx_fp32"]), Classifier.load(exported_tiny["tflite_fp32"])
    for path, _ in photos:
        a, b = onnx.predict(path), fp32.predict(path)
        assert a.label == b.label and abs(a.confidence - b.confidence) < 1e-4
        assert np.corrcoef(a.heatmap.ravel(), b.heatmap.ravel())[0, 1] > 0.99


def test_benchmark_reports_method_latency_memory_and_accuracy(exported_tiny, photos, tmp_path):
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([(str(p), y) for p, y in photos])
    proc = run_edge("benchmark", exported_tiny["tflite_int8"], "--runs", "5", "--warmup", "2", "--threads", "1",
                    "--data", tmp_path / "labels.csv", "--image", photos[0][0], "--json", check=True)
    r = json.loads(proc.stdout)
    assert r["method"]["runs"] == 5 and r["method"]["threads"] == 1 and r["method"]["input_dtype"] == "int8"
    assert r["method"]["delegate"] and r["model"]["verified"]
    for key in ("inference", "end_to_end_without_cam", "end_to_end_with_cam"):
        assert 0 < r[key]["p50_ms"] <= r[key]["p90_ms"] <= r[key]["p99_ms"]
    assert r["cold_start_ms"] > r["first_inference_ms"] and r["peak_rss_mb"] > 10
    clf = Classifier.load(exported_tiny["tflite_int8"])
    labels = clf.artifact.labels
    pred = [clf.predict(p).label for p, _ in photos]
    recalls = [np.mean([q == k for q, (_, y) in zip(pred, photos) if y == k]) for k in labels
               if any(y == k for _, y in photos)]
    assert r["accuracy"]["n"] == len(photos)
    assert r["accuracy"]["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_benchmark_accuracy_gives_melanoma_figures(exported_tiny, photos, tmp_path):
    """`edge_runtime benchmark --data` on a set with only some classes: the positive class's AUC
    (numpy's rank statistic, equal to scikit-learn's) and sensitivity/specificity at the decision."""
    from sklearn.metrics import roc_auc_score

    from edge_runtime.bench import accuracy, labelled_images, rank_auc
    from edge_runtime.preprocess import open_rgb

    rng = np.random.default_rng(0)
    for _ in range(20):
        is_pos = rng.random(30) < 0.4
        score = np.round(rng.normal(size=30) + is_pos, 1)  # rounded: ties happen
        if 0 < is_pos.sum() < 30:
            assert rank_auc(is_pos, score) == pytest.approx(roc_auc_score(is_pos, score))
    assert rank_auc(np.ones(3, bool), np.zeros(3)) is None
    clf = Classifier.load(exported_tiny["tflite_int8"])
    with open(tmp_path / "two.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([(str(p), "mel" if i % 2 else "nv") for i, (p, _) in enumerate(photos)])
    data = tmp_path / "two.csv"
    a = accuracy(clf, labelled_images(data), data)
    assert set(a["recall"]) == {"mel", "nv"} and a["positive"]["label"] == "mel"
    pos = a["positive"]
    scores = np.stack([clf.infer(open_rgb(p), False)[0] for p, _ in photos])
    y = np.array([i % 2 == 1 for i in range(len(photos))])
    assert pos["sensitivity"] == pytest.approx(np.mean(scores[y].argmax(1) == clf.artifact.labels.index("mel")))
    assert pos["auc"] is None or 0 <= pos["auc"] <= 1
