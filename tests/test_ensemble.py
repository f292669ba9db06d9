"""`edgeskin ensemble`: finished runs as one model. Its logits and CAMs are the members' means, it
exports to a .tflite edge_runtime runs like any other, and bad members are refused in one line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, one_line_error, run_cli
from edgeskin.card import ModelCard
from edgeskin.config import EnsembleConfig, TrainConfig
from edgeskin.train.runs import load_run_model
from edgeskin.train import train
from edgeskin.ensemble.build import build_ensemble


@pytest.fixture(scope="module")
def members(synth_root, tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs on one split (seeds 0 and 1); one on another split, one with the mlp head, one
    at another input size."""
    project = tmp_path_factory.mktemp("members")
    base = TrainConfig(data=str(synth_root), epochs=2, project=str(project), **TINY)
    a = train(replace(base, name="a", seed=0)).run_dir
    shared = str(a / "split.csv")
    return {"a": a, "b": train(replace(base, name="b", seed=1, split_manifest=shared)).run_dir,
            "other_split": train(replace(base, name="other_split", seed=1)).run_dir,
            "mlp": train(replace(base, name="mlp", head="mlp", split_manifest=shared)).run_dir,
            "size": train(replace(base, name="size", input_size=(40, 56), split_manifest=shared)).run_dir}


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.cam_output = True
    with torch.no_grad():
        return model(x)


def test_ensemble_is_the_mean_of_its_members(members, tmp_path):
    result = build_ensemble(EnsembleConfig(runs=(str(members["a"]), str(members["b"])), project=str(tmp_path),
                                           name="e", bootstrap=0, device="cpu"))
    card = result.card
    assert result.run_dir == tmp_path / "e" and card.members == 2
    assert [m["weights_sha256"] for m in card.ensemble["runs"]] == \
        [ModelCard.load(members[k]).weights["sha256"] for k in ("a", "b")]
    assert card.metrics["val"]["n"] > 0 and card.clinical is None and card.operating_point is None
    x = torch.randn(3, 3, 32, 48)  # non-square, as the members were trained
    parts = [_outputs(load_run_model(members[k], ModelCard.load(members[k]), torch.device("cpu")), x) for k in "ab"]
    model = load_run_model(result.run_dir, card, torch.device("cpu"))
    logits, cams = _outputs(model, x)
    assert not torch.allclose(parts[0][0], parts[1][0], atol=1e-3)  # two different members
    assert torch.allclose(logits, (parts[0][0] + parts[1][0]) / 2, atol=1e-5)
    assert torch.allclose(cams, (parts[0][1] + parts[1][1]) / 2, atol=1e-5)
    assert card.num_params == sum(p.numel() for p in model.parameters())


def test_ensemble_cli_exports_a_file_edge_runtime_runs(members, synth_root, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    from PIL import Image

    from edge_runtime.classifier import Classifier
    from edge_runtime.preprocess import model_pixels, normalize

    proc = run_cli("ensemble", members["a"], members["b"], "--project", tmp_path, "--name", "e", "--device", "cpu",
                   check=True)
    assert f"ensemble of 2: {tmp_path / 'e'}" in proc.stdout
    run = tmp_path / "e"
    run_cli("export", run, "--target", "tflite", "--precision", "fp32", check=True)
    tflite = next((run / "export").glob("*.tflite"))
    assert tflite.name == "edgeskin_cnn_s_ensemble2_fp32.tflite"  # says it runs two networks
    described = json.loads(Path(f"{tflite}.json").read_text())
    assert described["status"] == "validated" and described["validation"]["cam_pearson_mean"] > 0.99
    assert len(described["model_card"]["ensemble"]["runs"]) == 2
    clf = Classifier.load(tflite)
    assert clf.describe["networks"] == 2 and clf.describe["verified"]
    rgb = Image.open(next((synth_root / "images").glob("*.jpg"))).convert("RGB")
    logits, _ = clf.raw(rgb)
    card = ModelCard.load(run)
    pre = card.preprocessing
    x = normalize(model_pixels(rgb, pre.input_size, pre.color_constancy)[None], pre.mean, pre.std)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()  # NHWC -> torch's NCHW
    with torch.no_grad():
        ref = sum(load_run_model(members[k], ModelCard.load(members[k]), torch.device("cpu"))(x) for k in "ab") / 2
    assert np.allclose(np.ravel(logits), ref.numpy().ravel(), atol=1e-3)


def test_compress_carries_the_ensemble(members, tmp_path):
    """`compress --int8` takes an ensemble run; its QAT variant's card still says ensemble, and the
    variant loads back as the members side by side."""
    pytest.importorskip("nncf", reason="the compress extra is not installed")
    from edgeskin.compress.pipeline import compress, load_variant
    from edgeskin.config import CompressConfig
    from edgeskin.models.factory import Members

    run = build_ensemble(EnsembleConfig(runs=(str(members["a"]), str(members["b"])), project=str(tmp_path),
                                        name="e", bootstrap=0, device="cpu")).run_dir
    compress(CompressConfig(run=str(run), int8=True, epochs=1, calib_images=16, device="cpu"))
    card, model = load_variant(run / "compress" / "qat_int8")
    assert card.members == 2 and card.quantization and card.ensemble == ModelCard.load(run).ensemble
    assert isinstance(model.backbone, Members) and len(model.backbone.members) == 2
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 48)).shape == (2, 7)
    # neither an ensemble nor a compressed variant can be a member: one line, nothing written
    for member, kind in ((run, "is an ensemble"), (run / "compress" / "qat_int8", "is compressed")):
        err = one_line_error(run_cli("ensemble", members["a"], member, "--project", tmp_path / "out"))
        assert kind in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("names, expected", [
    (("a",), "needs 2 or more runs"),
    (("a", "a"), "same run twice"),
    (("a", "other_split"), "another split"),
    (("a", "mlp"), "head 'mlp'"),
    (("a", "size"), "another preprocessing input_size than"),
    (("a", "missing"), "model_card.json not found"),
])
def test_bad_members_are_refused_in_one_line(members, tmp_path, names, expected):
    runs = [members.get(n, tmp_path / n) for n in names]
    err = one_line_error(run_cli("ensemble", *runs, "--project", tmp_path / "out", "--device", "cpu"))
    assert expected in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written


def test_atomic_dir_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    from edgeskin.fileio import atomic_dir

    target = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "best.pt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and [p.name for p in target.iterdir()] == ["new.txt"]
