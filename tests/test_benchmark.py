"""`edgeskin benchmark` builds its table from two tiny artifacts plus a row imported from
another device's `edge_runtime benchmark --json`: rows, ratios and plot files are checked."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import load_script, one_line_error, run_cli, run_edge

pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")


@pytest.fixture(scope="module")
def report(exported_tiny, tmp_path_factory):
    from edgeskin.benchmark import benchmark
    from edgeskin.config import BenchmarkConfig

    device_json = tmp_path_factory.mktemp("device") / "pi.json"
    proc = run_edge("benchmark", exported_tiny["tflite_int8"], "--json", "--runs", "5", "--warmup", "1",
                    "--threads", "1", "--no-cold", "--device-name", "Raspberry Pi 5 (test)", check=True)
    device_json.write_text(proc.stdout)
    result = benchmark(BenchmarkConfig(run=str(exported_tiny["run"]), targets=("torch-fp32", "tflite-fp32", "tflite-int8"),
                                       threads=(1,), imports=(str(device_json),), runs=5, warmup=1, cam_images=16))
    return result, json.loads(device_json.read_text())


def test_rows_ratios_and_plots(report):
    result, device = report
    data = json.loads((result.out_dir / "report.json").read_text())
    rows = data["rows"]
    host = [r for r in rows if " host (" in r["device"]]
    assert sorted(r["target"] for r in host) == ["tflite-fp32", "tflite-int8", "torch-fp32"]
    by = {r["target"]: r for r in host}
    torch_p50 = by["torch-fp32"]["p50_ms"]
    for r in host:  # speed-up is torch's end-to-end p50 over the file's, on the same device
        assert r["speedup_vs_torch"] == pytest.approx(torch_p50 / r["p50_ms"])
        assert r["delta_pp"] == pytest.approx(100 * (r["balanced_accuracy"] - by["torch-fp32"]["balanced_accuracy"]))
        assert 0 < r["p50_ms"] <= r["p90_ms"] and r["peak_rss_mb"] > 10 and r["cold_start_ms"] > r["p50_ms"]
        assert r["gmacs"] > 0 and r["peak_gmacs"] > 0
    assert by["tflite-fp32"]["status"] == "validated" and by["tflite-fp32"]["top1_agreement"] == 1.0
    # each file ran in its own process: the torch process holds torch, the LiteRT one does not
    assert by["torch-fp32"]["peak_rss_mb"] != by["tflite-int8"]["peak_rss_mb"]
    assert by["tflite-int8"]["size_mb"] < by["tflite-fp32"]["size_mb"]
    imported = [r for r in rows if r["device"] == "Raspberry Pi 5 (test)"]
    assert len(imported) == 1 and imported[0]["target"] == "tflite-int8" and imported[0]["date"] == device["date"]
    assert imported[0]["p50_ms"] == pytest.approx(device["end_to_end_without_cam"]["p50_ms"])
    assert imported[0]["speedup_vs_torch"] is None  # no torch row on that device to compare with
    md = result.markdown.read_text()
    assert md.count("\n| ") == len(rows) + 1 and "Raspberry Pi 5 (test)" in md and "warm-ups" in md
    names = sorted(p.name for p in result.plots)
    assert "size_vs_accuracy.png" in names and sum(n.startswith("pareto_") for n in names) == 2
    for p in result.plots:
        assert Image.open(p).size[0] > 300 and np.asarray(Image.open(p)).std() > 0


def test_bad_benchmark_input(exported_tiny, tmp_path):
    run = exported_tiny["run"]
    assert "tflite-int8" in one_line_error(run_cli("benchmark", run, "--targets", "tflite-int4"))
    assert "--threads" in one_line_error(run_cli("benchmark", run, "--threads", "two"))
    (tmp_path / "other.json").write_text(json.dumps({"model": {"sha256": "0" * 64}, "device": {"machine": "x"}}))
    assert "none of this run" in one_line_error(run_cli("benchmark", run, "--targets", "torch-fp32",
                                                        "--import", tmp_path / "other.json"))


def test_rows_are_scored_as_the_device_decides(exported_tiny, tmp_path):
    """A file exported with --min-recall is scored with its card's offsets, exactly as
    edge_runtime's Classifier labels the same images; the torch row (no offsets) is not."""
    pytest.importorskip("onnxruntime")
    from edge_runtime import Classifier
    from edgeskin.benchmark import benchmark
    from edgeskin.card import ModelCard
    from edgeskin.config import BenchmarkConfig, ExportConfig
    from edgeskin.metrics import balanced_accuracy
    from edgeskin.train.runs import run_data
    from edgeskin.export import export

    run = tmp_path / "run"
    shutil.copytree(exported_tiny["run"], run)
    artifact = export(ExportConfig(run=str(run), target="onnx", precision="fp32", min_recall=1.0,
                                   allow_degraded=True)).artifact
    rows = {r["target"]: r for r in json.loads((benchmark(BenchmarkConfig(
        run=str(run), targets=("torch-fp32", "onnx-fp32"), threads=(1,), runs=2, warmup=1,
        cam_images=8)).out_dir / "report.json").read_text())["rows"]}

    card = ModelCard.load(run)
    data, split = run_data(run, card)
    test = data.subset(split.indices("test"))

    def labels(path):
        device = Classifier.load(path)
        return np.array([card.labels.index(device.predict(s.path, with_cam=False).label) for s in test.samples])
    pred, plain = labels(artifact), labels(exported_tiny["onnx_fp32"])
    assert (pred != plain).any()  # the offsets move decisions on this split, so the check below can fail
    k = card.labels.index(card.positive_label)
    assert rows["onnx-fp32"]["positive_recall"] == pytest.approx(float(np.mean(pred[test.targets == k] == k)))
    assert rows["onnx-fp32"]["balanced_accuracy"] == pytest.approx(balanced_accuracy(test.targets, pred))
    assert rows["torch-fp32"]["balanced_accuracy"] == pytest.approx(balanced_accuracy(test.targets, plain))


def test_a_mediapipe_file_is_validated_and_timed_by_mediapipe(exported_tiny, tmp_path):
    """A MediaPipe file gets its own row: re-validated and timed through MediaPipe's ImageClassifier
    in MediaPipe's environment. Made from the same fp32 weights, it decides as the fp32 .tflite
    does; it has no CAM head, and MediaPipe does not time the model alone."""
    from edgeskin.benchmark import benchmark
    from edgeskin.config import BenchmarkConfig, ExportConfig
    from edgeskin.export import export

    run = tmp_path / "run"
    shutil.copytree(exported_tiny["run"], run)
    export(ExportConfig(run=str(run), target="mediapipe", precision="fp32", calib_images=64, allow_degraded=True))
    result = benchmark(BenchmarkConfig(run=str(run), targets=("tflite-fp32", "mediapipe-fp32"), threads=(1,),
                                       runs=3, warmup=1, cam_images=8))
    rows = {r["target"]: r for r in json.loads((result.out_dir / "report.json").read_text())["rows"]}
    mp, tfl = rows["mediapipe-fp32"], rows["tflite-fp32"]
    assert mp["status"] == "validated" and mp["top1_agreement"] == 1.0
    assert mp["balanced_accuracy"] == pytest.approx(tfl["balanced_accuracy"])
    assert mp["auc_macro"] == pytest.approx(tfl["auc_macro"], abs=1e-3)
    assert mp["method"]["interpreter"].startswith("MediaPipe ImageClassifier 0.10")
    assert mp["cam_pearson"] is None and mp["p50_cam_ms"] is None and mp["throughput"] is None
    assert 0 < mp["p50_ms"] <= mp["p90_ms"] and mp["cold_start_ms"] > mp["p50_ms"] and mp["peak_rss_mb"] > 10
    assert "| mediapipe-fp32 | validated |" in result.markdown.read_text()
    # Without MediaPipe's environment: one line naming the fix, before anything is measured or written.
    before = (result.out_dir / "report.json").stat().st_mtime_ns
    proc = run_cli("benchmark", run, "--targets", "mediapipe-fp32", env={"EDGESKIN_MEDIAPIPE_PYTHON": "/no/python"})
    assert "MediaPipe's Python not found at /no/python" in one_line_error(proc)
    assert (result.out_dir / "report.json").stat().st_mtime_ns == before


def test_the_real_data_script_compares_mediapipe_with_edge_runtime_per_device():
    """benchmarks/ham10000_benchmark.py's MediaPipe table: one line per device that has both int8
    files, ratios of MediaPipe's numbers over edge_runtime's; none when either file is missing."""
    script = load_script("ham10000_benchmark")

    def row(device, target, p50, rss, cold, ba):
        return {"device": device, "target": target, "p50_ms": p50, "peak_rss_mb": rss, "cold_start_ms": cold,
                "balanced_accuracy": ba}
    rows = [row("host, 1 thread", "mediapipe-int8", 3.0, 120, 1000, 0.50),
            row("host, 1 thread", "tflite-int8", 2.0, 60, 200, 0.51),
            row("pi", "tflite-int8", 9.0, 60, 300, 0.51)]
    lines = script.mediapipe_ratios({"rows": rows})
    assert [ln for ln in lines if ln.startswith("| host")] == [
        "| host, 1 thread | 1.50× (3.00 vs 2.00 ms) | 120 vs 60 MB | 1000 vs 200 ms | 0.500 vs 0.510 |"]
    assert not any(ln.startswith("| pi") for ln in lines)
    assert script.mediapipe_ratios({"rows": rows[1:]}) == []


@pytest.mark.slow
def test_int8_tflite_reuses_a_matching_file_and_re_exports_on_a_new_operating_point(exported_tiny, tmp_path):
    """benchmark.artifacts.int8_tflite: the file is kept while its card has the operating point
    asked for, and exported again (by the real `edgeskin export`) when it has not."""
    from edgeskin.benchmark.artifacts import exported_card, int8_tflite

    run = tmp_path / "run"
    shutil.copytree(exported_tiny["run"], run)
    path = int8_tflite(run, calib_images=32, min_recall=None, allow_degraded=True)
    assert path == run / "export" / exported_tiny["tflite_int8"].name
    before = path.stat().st_mtime_ns
    assert int8_tflite(run, calib_images=32, min_recall=None, allow_degraded=True).stat().st_mtime_ns == before
    again = int8_tflite(run, calib_images=32, min_recall=0.5, allow_degraded=True)
    assert again == path and path.stat().st_mtime_ns != before
    card = exported_card(path)
    assert card.operating_point["min_recall"] == 0.5 and card.quantization
    after = path.stat().st_mtime_ns
    assert int8_tflite(run, calib_images=32, min_recall=0.5, allow_degraded=True).stat().st_mtime_ns == after
