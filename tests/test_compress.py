"""Compression on tiny synthetic runs: QAT really trains, checkpoints restore exactly, structured
pruning removes MACs, magnitude sparsity survives QAT, bad input leaves nothing behind."""

import json

import numpy as np
import pytest
import torch

from conftest import one_line_error, run_cli
from edgeskin.config import CompressConfig, TrainConfig
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.split import read_manifest
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy
from edgeskin.predict import predict_logits
from edgeskin.train import train

pytest.importorskip("nncf", reason="the compress extra is not installed")
from edgeskin.compress.pipeline import compress, load_variant  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(synth_root, tmp_path_factory):
    cfg = TrainConfig(data=str(synth_root), backbone="edgeskin_cnn_s", input_size=(32, 48), epochs=3,
                      batch_size=16, lr=3e-3, device="cpu", project=str(tmp_path_factory.mktemp("runs")), name="t")
    return train(cfg).run_dir


def _test_logits(run, card, model):
    tcfg = TrainConfig.load(run / "config.json")
    data = load_labelled(tcfg.data, get_task(card.task), card.preprocessing.input_size, require_all_classes=False,
                         progress=False)
    split, keep = read_manifest(run / "split.csv", data.samples, data.digests)
    data = data.subset(keep).subset(split.indices("test"))
    logits = predict_logits(model, data.pixels, card.preprocessing.mean, card.preprocessing.std, torch.device("cpu"))
    return logits, data.targets


def _quantizer_tensors(state):
    return {k: v for k, v in state.items() if "scale" in k or "input_low" in k or "input_range" in k}


def test_int8_ptq_then_qat_trains_and_restores_exactly(tiny_run):
    result = compress(CompressConfig(run=str(tiny_run), int8=True, epochs=2, calib_images=32, device="cpu"))
    stages = [r["stage"] for r in result.rows]
    assert stages == ["fp32", "ptq_int8", "qat_int8"]
    ptq = torch.load(result.variants["ptq_int8"] / "model.pt", weights_only=False)["state_dict"]
    qat = torch.load(result.variants["qat_int8"] / "model.pt", weights_only=False)["state_dict"]
    q_ptq, q_qat = _quantizer_tensors(ptq), _quantizer_tensors(qat)
    assert q_ptq, "NNCF inserted no quantizers"
    assert any(not torch.equal(q_ptq[k], q_qat[k]) for k in q_ptq), "QAT did not move quantizer scales"
    weights = [k for k in ptq if k.endswith("weight") and ptq[k].ndim == 4]
    assert any(not torch.equal(ptq[k], qat[k]) for k in weights), "QAT did not update weights"
    # Restored from disk (NNCF config + state dict), the QAT model reproduces its own table row.
    card, restored = load_variant(result.variants["qat_int8"])
    logits, y = _test_logits(tiny_run, card, restored)
    qat_row = next(r for r in result.rows if r["stage"] == "qat_int8")
    assert balanced_accuracy(y, logits.argmax(1)) == qat_row["test"]["balanced_accuracy"]
    _, again = load_variant(result.variants["qat_int8"])
    assert np.array_equal(_test_logits(tiny_run, card, again)[0], logits)
    assert card.quantization["method"] == "QAT" and card.quantization["bits"] == 8
    # ... and it is int8-simulated: differs from the fp32 model's logits.
    from edgeskin.card import ModelCard
    from edgeskin.train.runs import load_run_model

    fp32 = load_run_model(tiny_run, ModelCard.load(tiny_run), torch.device("cpu"))
    assert not np.allclose(_test_logits(tiny_run, card, fp32)[0], logits)
    summary = (result.out_dir / "summary.md").read_text()
    assert "qat_int8" in summary and "Δ vs fp32" in summary
    assert json.loads((result.out_dir / "summary.json").read_text())["rows"][0]["stage"] == "fp32"


def test_structured_pruning_removes_macs_and_still_runs(tiny_run):
    result = compress(CompressConfig(run=str(tiny_run), prune=0.5, prune_mode="structured", epochs=1,
                                     device="cpu"))
    fp32, pruned = result.rows
    assert pruned["macs"] < 0.6 * fp32["macs"] and pruned["params"] < 0.6 * fp32["params"]
    card, model = load_variant(result.variants["pruned"])
    assert card.macs == pruned["macs"] and card.pruning["mode"] == "structured"
    out = model(torch.randn(2, 3, *card.preprocessing.input_size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_magnitude_pruning_sparsity_holds_through_qat(tiny_run):
    result = compress(CompressConfig(run=str(tiny_run), prune=0.5, prune_mode="magnitude", int8=True, epochs=1,
                                     calib_images=16, device="cpu"))
    rows = {r["stage"]: r for r in result.rows}
    assert set(rows) == {"fp32", "pruned", "ptq_int8", "qat_int8", "pruned_ptq_int8", "pruned_qat_int8"}
    assert rows["pruned"]["macs"] == rows["fp32"]["macs"]  # zeros, same shapes
    assert 0.4 < rows["pruned"]["pruning"]["sparsity"] < 0.6
    assert rows["pruned_qat_int8"]["nonzero_params"] <= rows["pruned"]["nonzero_params"]
    _, model = load_variant(result.variants["pruned_qat_int8"])
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in convs) / sum(w.numel() for w in convs)
    assert zeros > 0.35


def test_bad_input_leaves_nothing(tiny_run, tmp_path):
    assert "model_card.json" in one_line_error(run_cli("compress", tmp_path, "--int8"))
    assert "nothing to do" in one_line_error(run_cli("compress", tiny_run))
    assert "outside (0, 1)" in one_line_error(run_cli("compress", tiny_run, "--prune", "1.5"))
    proc = run_cli("compress", tiny_run, "--prune", "0.3", "--prune-mode", "sideways")
    assert proc.returncode == 2 and "structured" in proc.stderr
    with pytest.raises(EdgeskinError):
        CompressConfig(run=str(tiny_run), int8=True, epochs=0)
    assert not (tiny_run / ".compress.partial").exists()


def test_cli_compress_writes_table_and_cards(tiny_run):
    out = run_cli("compress", tiny_run, "--int8", "--epochs", "1", "--calib-images", "8", "--device", "cpu",
                  check=True).stdout
    assert "| qat_int8 |" in out and f"compressed: {tiny_run / 'compress'}" in out
    card = json.loads((tiny_run / "compress" / "qat_int8" / "model_card.json").read_text())
    assert card["quantization"]["method"] == "QAT" and card["macs"] > 0
    assert card["metrics"]["test"]["n"] > 0
