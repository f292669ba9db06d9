"""A fused image + metadata network exported as a two-input full-int8 .tflite runs in
edge_runtime's LiteRT backend, with and without each context field, and matches torch."""

import numpy as np
import pytest

pytest.importorskip("onnx2tf")

import edgeskin._compat  # noqa: F401,E402
import torch  # noqa: E402

from edge_runtime.backends import LiteRTBackend  # noqa: E402
from edge_runtime.clinical import Context  # noqa: E402
from edge_runtime.errors import EdgeRuntimeError  # noqa: E402
from edge_runtime.fusion import ContextEncoding  # noqa: E402
from edgeskin.export.convert import torch2tflite  # noqa: E402
from edgeskin.export.tflite import Calibration  # noqa: E402
from edgeskin.models.factory import build_model  # noqa: E402

SIZE = (24, 32)  # non-square: onnx2tf's NHWC transpose must keep H and W apart
ENC = ContextEncoding.fit([Context(40, "male", "back"), Context(60, "female", "face"), Context(30, "male", "trunk")])
FULL = Context(70, "female", "face")
VARIANTS = [FULL, Context(None, "female", "face"), Context(70, None, "face"), Context(70, "female", None), Context()]


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("edgeskin_cnn_s", 3, input_size=SIZE, context=ENC.to_dict()).eval()
    with torch.no_grad():  # a context block strong enough to move the decision
        model.context.fc.weight.mul_(8)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, *SIZE, 3), dtype=np.uint8)
    ctx = [Context(float(rng.integers(5, 90)), rng.choice([None, "male", "female"]),
                   rng.choice([None, "back", "face", "trunk"])) for _ in range(48)]
    # calibrated with training's field dropout, so a device's missing fields are inside the ranges
    vectors = ENC.drop_fields(ENC.encode_all(ctx), 0.3, rng)
    calib = Calibration(pixels, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), vectors)
    path = torch2tflite(model, SIZE, tmp_path_factory.mktemp("fused") / "fused_int8.tflite", "int8", calib)
    return model, path, pixels


def _torch(model, x, ctx):
    with torch.no_grad():
        model.cam_output = True
        logits, cam = model(torch.from_numpy(x), torch.from_numpy(ENC.encode(ctx)[None]))
        model.cam_output = False
    return logits[0].numpy(), cam[0].numpy()


def test_two_input_int8_file_matches_torch_with_and_without_each_field(fused):
    model, path, pixels = fused
    backend = LiteRTBackend(path, threads=1)
    assert backend.context is not None and list(backend.context["shape"]) == [1, ENC.dim]
    assert backend.input_dtype == "int8"
    x = ((pixels[:8].astype(np.float32) / 255 - 0.5) / 0.25).transpose(0, 3, 1, 2)
    agree, moved = [], []
    for ctx in VARIANTS:
        for i in range(len(x)):
            ref, ref_cam = _torch(model, x[i:i + 1], ctx)
            got, cam = backend.run(x[i:i + 1].transpose(0, 2, 3, 1), context=ENC.encode(ctx)[None])
            spread = ref.max() - ref.min()
            assert np.abs(got - ref).max() < 0.25 * spread + 0.05, (ctx, got, ref)
            assert cam.shape == ref_cam.shape
            assert np.corrcoef(cam.ravel(), ref_cam.ravel())[0, 1] > 0.9
            agree.append(got.argmax() == ref.argmax())
        moved.append(_torch(model, x[:1], ctx)[0])
    assert np.mean(agree) >= 0.9
    assert max(np.abs(m - moved[0]).max() for m in moved[1:]) > 0.5  # each field changes the scores


def test_the_context_input_is_required(fused):
    _, path, pixels = fused
    backend = LiteRTBackend(path, threads=1)
    x = np.zeros((1, *SIZE, 3), np.float32)
    with pytest.raises(EdgeRuntimeError, match="context vector"):
        backend.run(x)
    with pytest.raises(EdgeRuntimeError, match="context vector"):
        backend.run(x, context=np.zeros((1, ENC.dim + 1), np.float32))


def test_mediapipe_refuses_a_fused_model_in_one_line(fused, tmp_path):
    from edgeskin.errors import EdgeskinError
    from edgeskin.export.convert import torch2mediapipe

    model, _, pixels = fused
    calib = Calibration(pixels[:4], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    with pytest.raises(EdgeskinError, match="two inputs.*--target tflite") as e:
        torch2mediapipe(model, SIZE, tmp_path / "m.tflite", "fp32", calib)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())


def test_two_input_onnx_runs_in_edge_runtime_and_matches_torch(fused, tmp_path):
    from edge_runtime.backends import OnnxBackend
    from edgeskin.export.convert import OnnxRunner, torch2onnx

    model, _, pixels = fused
    path = torch2onnx(model, SIZE, tmp_path / "fused.onnx")
    backend, runner = OnnxBackend(path, threads=1), OnnxRunner(path)
    x = ((pixels[:2].astype(np.float32) / 255 - 0.5) / 0.25).transpose(0, 3, 1, 2)
    for ctx in VARIANTS:
        ref, ref_cam = _torch(model, x[:1], ctx)
        vec = ENC.encode(ctx)[None]
        got, cam = backend.run(x[:1].transpose(0, 2, 3, 1), context=vec)
        np.testing.assert_allclose(got, ref, atol=1e-4)
        np.testing.assert_allclose(cam, ref_cam, atol=1e-4)
        np.testing.assert_allclose(runner(x[:1], vec)[0][0], ref, atol=1e-4)
    with pytest.raises(EdgeRuntimeError, match="context vector"):
        backend.run(x[:1].transpose(0, 2, 3, 1))


def test_int8_calibration_of_a_fused_graph_needs_its_context_vectors(fused, tmp_path):
    from edgeskin.errors import EdgeskinError
    from edgeskin.export.tflite import onnx2tflite

    _, _, pixels = fused
    onnx = tmp_path / "any.onnx"
    onnx.write_bytes(b"not read: the check comes first")
    with pytest.raises(EdgeskinError, match="one context vector per image") as e:
        onnx2tflite(onnx, tmp_path / "out.tflite", "int8", SIZE,
                    Calibration(pixels[:4], (0.5,) * 3, (0.25,) * 3), context_dim=ENC.dim)
    assert "\n" not in str(e.value) and not (tmp_path / "out.tflite").exists()
