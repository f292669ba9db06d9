"""Export to ONNX with the CAM output: run the exported file with ONNX Runtime and compare it with
torch (logits, top-1, CAM against pytorch-grad-cam), for fp32 and the QAT int8 model."""

import json

import numpy as np
import onnx
import pytest

from conftest import one_line_error, run_cli
from edgeskin.config import CompressConfig, ExportConfig, TrainConfig
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import sha256_file
from edgeskin.train import train

pytest.importorskip("onnxruntime", reason="the export extra is not installed")
from edgeskin.export import export  # noqa: E402
from edgeskin.export.convert import OnnxRunner  # noqa: E402


@pytest.fixture(scope="module", params=["gap_linear", "mlp"])
def tiny_run(request, synth_root, tmp_path_factory):
    cfg = TrainConfig(data=str(synth_root), backbone="edgeskin_cnn_s", head=request.param, input_size=(32, 48),
                      epochs=3, batch_size=16, lr=3e-3, device="cpu",
                      project=str(tmp_path_factory.mktemp("runs")), name="t")
    return train(cfg).run_dir


def test_fp32_onnx_matches_torch_and_describes_itself(tiny_run):
    result = export(ExportConfig(run=str(tiny_run), target="onnx", precision="fp32"))
    assert result.status == "validated", result.failures
    v = result.validation
    assert v["top1_agreement"] == 1.0 and v["max_logit_diff"] < 1e-4
    assert v["cam_pearson_mean"] > 0.99 and v["cam_images"] > 5
    graph = onnx.load(str(result.artifact)).graph
    assert [o.name for o in graph.output] == ["logits", "cam"]
    described = json.loads(result.card_json.read_text())
    assert described["artifact"]["sha256"] == sha256_file(result.artifact)
    assert described["model_card"]["labels"][4] == "mel"
    assert described["artifact"]["inputs"][0]["shape"][2:] == [32, 48]  # non-square input
    # Run the file itself on a batch: 7 logits and 7 maps per image.
    logits, cams = OnnxRunner(result.artifact)(np.random.rand(2, 3, 32, 48).astype(np.float32))
    assert logits.shape == (2, 7) and cams.shape[:2] == (2, 7)


def test_int8_onnx_from_qat_has_qdq_and_agrees(tiny_run):
    from edgeskin.compress.pipeline import compress

    compress(CompressConfig(run=str(tiny_run), int8=True, epochs=1, calib_images=16, device="cpu"))
    result = export(ExportConfig(run=str(tiny_run), precision="int8", allow_degraded=True))
    ops = {n.op_type for n in onnx.load(str(result.artifact)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.validation["top1_agreement"] >= 0.95  # against the QAT torch model it came from
    assert result.validation["cam_pearson_mean"] > 0.8


def test_bad_export_input(tiny_run, tmp_path):
    with pytest.raises(EdgeskinError, match="choose one of"):
        export(ExportConfig(run=str(tiny_run), target="tflite-ish"))
    with pytest.raises(EdgeskinError, match="--precision"):
        export(ExportConfig(run=str(tiny_run), precision="int4"))
    assert "model_card.json" in one_line_error(run_cli("export", tmp_path))


def test_int8_without_compress_is_refused(synth_root, tmp_path):
    cfg = TrainConfig(data=str(synth_root), backbone="edgeskin_cnn_s", input_size=(32, 48), epochs=1,
                      batch_size=16, device="cpu", project=str(tmp_path), name="r")
    run = train(cfg).run_dir
    assert "compress" in one_line_error(run_cli("export", run, "--precision", "int8"))
    assert not list((run / "export").glob("*.onnx")) if (run / "export").exists() else True
    assert "--int8-from qat" in one_line_error(run_cli("export", run, "--precision", "int8", "--int8-from", "fp32"))
    assert "choose one of" in one_line_error(run_cli("export", run, "--precision", "int8", "--int8-from", "pt"))
    # --int8-from fp32: the converter calibrates the trained weights itself; no compress needed.
    result = export(ExportConfig(run=str(run), target="tflite", precision="int8", int8_from="fp32",
                                 calib_images=64, allow_degraded=True))
    described = json.loads(result.card_json.read_text())
    assert described["model_card"]["quantization"]["source"] == "fp32 weights"
    assert described["validation"]["n"] > 0 and described["artifact"]["precision"] == "int8"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tflite_runs_in_litert_and_matches_torch(tiny_run, precision):
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    from edgeskin.export.tflite import LiteRTRunner

    result = export(ExportConfig(run=str(tiny_run), target="tflite", precision=precision))
    assert result.status == "validated", result.failures
    assert result.validation["top1_agreement"] >= 0.99 and result.validation["cam_pearson_mean"] > 0.99
    runner = LiteRTRunner(result.artifact)
    assert runner.input["shape"].tolist() == [1, 32, 48, 3]  # NHWC, non-square
    logits, cams = runner(np.random.rand(2, 3, 32, 48).astype(np.float32))
    assert logits.shape == (2, 7) and cams.shape[:2] == (2, 7)
    described = json.loads(result.card_json.read_text())
    assert described["artifact"]["format"] == "tflite" and described["artifact"]["sha256"] == sha256_file(result.artifact)
    _assert_embedded_metadata(result.artifact, described["model_card"], ["scores", "cam"])


def _assert_embedded_metadata(path, card, roles, unit_pixels=False):
    """Read the metadata back two ways: MediaPipe's displayer, and zipfile alone (no MediaPipe).
    `unit_pixels`: the file normalises in its graph and takes pixels/255 (MediaPipe's file)."""
    from edgeskin.export.metadata import read_packed, show_metadata

    packed = read_packed(path)
    assert packed["model_card"] == card and packed["labels"] == list(card["labels"])
    shown = show_metadata(path)
    assert sorted(shown["packed_files"]) == ["labels.txt", "model_card.json"]
    sub = shown["metadata"]["subgraph_metadata"][0]
    norm = sub["input_tensor_metadata"][0]["process_units"][0]
    assert norm["options_type"] == "NormalizationOptions"
    mean, std = ([0.0], [1.0]) if unit_pixels else (card["preprocessing"]["mean"], card["preprocessing"]["std"])
    assert np.allclose(norm["options"]["mean"], 255 * np.array(mean), atol=1e-3)
    assert np.allclose(norm["options"]["std"], 255 * np.array(std), atol=1e-3)
    outputs = {o["name"]: o for o in sub["output_tensor_metadata"]}
    assert sorted(outputs) == sorted(roles)
    assert outputs["scores"]["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"


def test_int8_tflite_is_full_integer_and_agrees_with_qat(tiny_run):
    from edgeskin.compress.pipeline import compress
    from edgeskin.export.tflite import LiteRTRunner

    if not (tiny_run / "compress" / "qat_int8").exists():
        compress(CompressConfig(run=str(tiny_run), int8=True, epochs=1, calib_images=16, device="cpu"))
    result = export(ExportConfig(run=str(tiny_run), target="tflite", precision="int8", calib_images=64,
                                 allow_degraded=True))
    runner = LiteRTRunner(result.artifact)
    assert runner.input["dtype"] == np.int8 and runner.input["quantization"][0] > 0
    assert result.validation["top1_agreement"] >= 0.85  # tiny model, 35 validation images
    assert result.validation["cam_pearson_mean"] > 0.8


def test_failed_validation_keeps_marked_file_and_exits_non_zero(tiny_run, monkeypatch):
    from edgeskin.export import validate as v

    strict = v.Tolerances(min_agreement=1.01, max_logit_diff=None, min_cam_pearson=0.0, max_ba_drop_pp=100.0)
    monkeypatch.setitem(v.TOLERANCES, "fp32", strict)  # no file can agree more than 100%
    with pytest.raises(EdgeskinError, match=r"failed validation: top-1 agreement 1.000 < 1.01"):
        export(ExportConfig(run=str(tiny_run), target="onnx"))
    described = json.loads((tiny_run / "export" / "edgeskin_cnn_s_fp32.onnx.json").read_text())
    assert described["status"] == "validation failed" and described["failures"]
    assert (tiny_run / "export" / "edgeskin_cnn_s_fp32.onnx").is_file()
    allowed = export(ExportConfig(run=str(tiny_run), target="onnx", allow_degraded=True))
    assert allowed.status == "validation failed"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mediapipe_image_classifier_runs_the_file(tiny_run, precision, tmp_path):
    """The same task API Android apps use: MediaPipe's ImageClassifier reads the embedded
    normalisation and labels, and ranks classes as LiteRT ranks the edge_runtime file."""
    from PIL import Image

    from edgeskin.train.runs import run_data
    from edgeskin.card import ModelCard
    from edgeskin.export.metadata import run_tool
    from edgeskin.export.tflite import LiteRTRunner
    from edgeskin.export.validate import run_artifact

    if precision == "int8" and not (tiny_run / "compress" / "qat_int8").exists():
        from edgeskin.compress.pipeline import compress

        compress(CompressConfig(run=str(tiny_run), int8=True, epochs=1, calib_images=16, device="cpu"))
    common = dict(run=str(tiny_run), precision=precision, calib_images=64, allow_degraded=True)
    mp = export(ExportConfig(target="mediapipe", **common))
    edge = export(ExportConfig(target="tflite", **common))
    runner = LiteRTRunner(mp.artifact)
    assert runner.cam is None and runner.input["dtype"] == np.float32  # MediaPipe refuses int8 input
    card = ModelCard.load(tiny_run)
    _assert_embedded_metadata(mp.artifact, json.loads(mp.card_json.read_text())["model_card"], ["scores"], True)
    data, _ = run_data(tiny_run, card)
    pixels = data.pixels[:24]  # already at the 32x48 input size, so MediaPipe does not resize
    paths = []
    for i, p in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(p).save(paths[-1])
    lines = run_tool("classify", str(mp.artifact), *paths).splitlines()
    mp_scores = np.zeros((len(paths), 7))
    for i, line in enumerate(lines):
        for c in json.loads(line)["categories"]:
            mp_scores[i, c["index"]] = c["score"]
    assert {c["label"] for c in json.loads(lines[0])["categories"]} == set(card.labels)
    pre = card.preprocessing
    file_scores, _ = run_artifact(runner, pixels, (0, 0, 0), (1, 1, 1))
    edge_logits, _ = run_artifact(LiteRTRunner(edge.artifact), pixels, pre.mean, pre.std)
    assert np.abs(mp_scores - file_scores).max() < (1e-4 if precision == "fp32" else 0.02)
    agreement = np.mean(mp_scores.argmax(1) == edge_logits.argmax(1))
    assert agreement >= (1.0 if precision == "fp32" else 0.9), agreement


def test_int16x8_tflite_is_integer_only_and_agrees(tiny_run):
    """LiteRT's 16x8 mode: int16 activations (input included), int8 weights, from the fp32 weights."""
    from edgeskin.export.tflite import LiteRTRunner

    result = export(ExportConfig(run=str(tiny_run), target="tflite", precision="int16x8", calib_images=64,
                                 allow_degraded=True))
    runner = LiteRTRunner(result.artifact)
    assert runner.input["dtype"] == np.int16 and runner.input["quantization"][0] > 0
    described = json.loads(result.card_json.read_text())
    assert "int16 activations" in described["model_card"]["quantization"]["scheme"]
    assert result.validation["top1_agreement"] >= 0.9 and result.validation["cam_pearson_mean"] > 0.9
