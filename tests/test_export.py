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
    described = json.loads((tiny_run / "export" / "edgeskin_cnn_s_fp32.json").read_text())
    assert described["status"] == "validation failed" and described["failures"]
    assert (tiny_run / "export" / "edgeskin_cnn_s_fp32.onnx").is_file()
    allowed = export(ExportConfig(run=str(tiny_run), target="onnx", allow_degraded=True))
    assert allowed.status == "validation failed"
