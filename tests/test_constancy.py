"""Shades-of-gray colour constancy (a card field, applied in training and by edge_runtime alike)
and the simulated device shifts the ablation scores robustness with."""

import numpy as np
import pytest
from PIL import Image

from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.preprocess import color_constancy
from edgeskin.evaluate.shift import SHIFTS, shifted


def _photo(seed=0, h=30, w=40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 200, (h, w, 1)) * np.array([1.0, 0.8, 0.7])  # skin-like, varied brightness
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_shades_of_gray_removes_a_colour_cast():
    img = _photo()
    cast = np.clip(img * np.array([0.8, 1.0, 1.25]), 0, 255).astype(np.uint8)  # another illuminant
    before = np.abs(img.astype(int) - cast).mean()
    a, b = color_constancy(img[None], "shades_of_gray")[0], color_constancy(cast[None], "shades_of_gray")[0]
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.abs(a.astype(int) - b).mean() < before / 4
    # Per image: a batch gives what each image alone gives.
    two = color_constancy(np.stack([img, cast]), "shades_of_gray")
    assert np.array_equal(two[0], a) and np.array_equal(two[1], b)
    assert color_constancy(img, "none") is img
    with pytest.raises(EdgeRuntimeError, match="unknown color_constancy 'retinex'"):
        color_constancy(img, "retinex")


def test_device_shifts_are_deterministic_and_change_the_image():
    px = np.stack([_photo(s) for s in range(3)])
    for name in SHIFTS:
        out = shifted(px, name)
        assert out.dtype == np.uint8 and out.shape == px.shape
        assert np.array_equal(out, shifted(px, name))
        assert np.abs(out.astype(int) - px).mean() > 1, name


@pytest.fixture(scope="module")
def constancy_run(synth_root, tmp_path_factory):
    from edgeskin.config import TrainConfig
    from edgeskin.train import train

    cfg = TrainConfig(data=str(synth_root), backbone="edgeskin_cnn_s", input_size=(32, 48), epochs=1, batch_size=16,
                      device="cpu", color_constancy="shades_of_gray", project=str(tmp_path_factory.mktemp("cc")))
    return train(cfg).run_dir


def test_card_carries_constancy_and_edge_runtime_applies_it(constancy_run, synth_root):
    import torch

    from edge_runtime import Classifier
    from edgeskin.card import ModelCard
    from edgeskin.config import ExportConfig
    from edgeskin.data.images import load_image
    from edgeskin.data.readers import read_dataset
    from edgeskin.train.runs import load_run_model
    from edgeskin.export import export
    from edgeskin.predict import predict_logits

    card = ModelCard.load(constancy_run)
    pre = card.preprocessing
    assert pre.color_constancy == "shades_of_gray"
    onnx = export(ExportConfig(run=str(constancy_run), target="onnx", precision="fp32")).artifact
    clf = Classifier.load(onnx)
    assert clf.artifact.color_constancy == "shades_of_gray"
    model = load_run_model(constancy_run, card, torch.device("cpu"))
    paths = [s.path for s in read_dataset(synth_root).samples[:4]]
    raw = np.stack([load_image(p.read_bytes(), pre.input_size, str(p)) for p in paths])
    with_cc = predict_logits(model, color_constancy(raw, "shades_of_gray"), pre.mean, pre.std, torch.device("cpu"))
    without = predict_logits(model, raw, pre.mean, pre.std, torch.device("cpu"))
    assert np.abs(with_cc - without).max() > 1e-3  # the white balance matters to this model
    for i, p in enumerate(paths):
        logits, _ = clf.infer(Image.open(p).convert("RGB"))
        assert np.abs(logits - with_cc[i]).max() < 1e-3


def test_mediapipe_refuses_a_constancy_run(constancy_run):
    from edgeskin.config import ExportConfig
    from edgeskin.errors import EdgeskinError
    from edgeskin.export import export

    with pytest.raises(EdgeskinError, match="MediaPipe cannot apply; use --target tflite"):
        export(ExportConfig(run=str(constancy_run), target="mediapipe", precision="fp32"))
