"""Conversions as pure functions named source->target, and the table of targets that uses them.

Each exported graph has one input `image` (float32 N x 3 x H x W, normalised as the card says)
and two outputs: `logits` (N x K) and `cam` (N x K x h x w, see edgeskin.cam), so the device gets
its explanation map without autograd. The MediaPipe graph is the exception: MediaPipe's
ImageClassifier expects one classification tensor, so it returns softmax `scores` only.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgeskin.cam import with_cam
from edgeskin.errors import EdgeskinError
from edgeskin.extras import EXTRAS

OPSET = 17
INPUT, LOGITS, CAM, SCORES = "image", "logits", "cam", "scores"
CONTEXT = "context"  # a fused network's second input: the patient-context vector (edge_runtime.fusion)
UNIT_PIXELS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # (mean, std) of a Target.takes_unit_pixels input: pixels/255


class _Scores(nn.Module):
    """Softmax probabilities only, the single output MediaPipe's ImageClassifier reads as scores,
    from pixels/255: MediaPipe applies one mean/std to all channels ("Per-channel image
    normalization is not available"), so the card's per-channel normalisation goes in the graph."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        # (x - mean) / std as a per-channel 1x1 convolution: onnx2tf mis-broadcasts a [1,3,1,1]
        # constant Sub on the NHWC-transposed input, and convolutions convert cleanly.
        self.normalize = nn.Conv2d(3, 3, 1, groups=3)
        std_t, mean_t = torch.tensor(std, dtype=torch.float32), torch.tensor(mean, dtype=torch.float32)
        with torch.no_grad():
            self.normalize.weight.copy_((1 / std_t).view(3, 1, 1, 1))
            self.normalize.bias.copy_(-mean_t / std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(self.normalize(x)), dim=1)


def torch2onnx(model: nn.Module, input_size: tuple[int, int], path: Path, precision: str = "fp32",
               calibration=None, outputs: str = "logits+cam", normalize=None) -> Path:
    """`outputs="scores"` with `normalize=(mean, std)` gives MediaPipe's graph (see _Scores).

    Export with TorchScript tracing (dynamo=False): the route that turns NNCF's quantizers,
    once stripped to native torch fake-quantize ops, into standard QuantizeLinear/DequantizeLinear."""
    model = copy.deepcopy(model).cpu().eval()
    if precision == "int8" and "__nncf_hooks" in dict(model.named_children()):  # QAT model (not --int8-from fp32)
        import nncf

        model = nncf.strip(model, do_copy=False, strip_format=nncf.StripFormat.NATIVE,
                           example_input=torch.zeros(1, 3, *input_size))
    with_cam(model, outputs == "logits+cam")
    names = [LOGITS, CAM] if outputs == "logits+cam" else [SCORES]
    context = getattr(model, "context", None)
    if context is not None and outputs == "scores":
        raise EdgeskinError("a fused image + metadata model takes two inputs; MediaPipe's ImageClassifier takes "
                            "one image, so use --target tflite (edge_runtime feeds the context)")
    if outputs == "scores":
        model = _Scores(model, *normalize)
    args, inputs = (torch.zeros(1, 3, *input_size),), [INPUT]
    if context is not None:  # exported as an input, not folded: the device feeds each patient's
        args, inputs = (*args, context.missing.clone()), [INPUT, CONTEXT]
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but is the one that writes NNCF's QDQ pairs.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, args, str(path), dynamo=False,
                              opset_version=OPSET, input_names=inputs, output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in [*inputs, *names]})
    except Exception as exc:  # the exporter raises many types for unsupported ops
        raise EdgeskinError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return path


class OnnxRunner:
    """Runs an .onnx artifact with ONNX Runtime (CPU), returning (logits, cams)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x, context=None):
        feed = {INPUT: x}
        if context is not None:
            feed[CONTEXT] = context.astype("float32")
        return tuple(self.session.run([LOGITS, CAM], feed))


@dataclass(frozen=True)
class Target:
    suffix: str  # file name ending after <backbone>_<precision>
    convert: Callable[..., Path]
    runner: Callable[[Path], Callable]
    precisions: tuple[str, ...]
    scores: str = "logits"  # what the first output holds: "logits", or softmax "probabilities"
    takes_unit_pixels: bool = False  # input pixels/255, normalised inside the graph (MediaPipe)
    modules: tuple[str, ...] = EXTRAS["export"]  # what converting and validating it imports (extras.require)


def torch2tflite(model: nn.Module, input_size: tuple[int, int], path: Path, precision: str = "fp32",
                 calibration=None, outputs: str = "logits+cam", normalize=None) -> Path:
    """torch -> ONNX -> TFLite (onnx2tf), composed from the two pure conversions. For int8 the
    ONNX carries the QAT model's QDQ pairs; onnx2tf drops them and calibrates on real images, so
    the QAT-adapted weights are what gets quantized. The edge_runtime file is full-integer (int8
    input and outputs); the MediaPipe file keeps float32 input and scores around the int8 body,
    because MediaPipe's ImageClassifier refuses int8 input tensors."""
    from edgeskin.export.tflite import onnx2tflite

    onnx_path = path.with_name(path.stem + "_src.onnx")
    try:
        torch2onnx(model, input_size, onnx_path, precision, outputs=outputs, normalize=normalize)
        io = "int8" if outputs == "logits+cam" else "float"
        context = getattr(model, "context", None)
        return onnx2tflite(onnx_path, path, precision, input_size, calibration, io=io,
                           context_dim=0 if context is None else context.dim)
    finally:
        onnx_path.unlink(missing_ok=True)


def torch2mediapipe(model: nn.Module, input_size: tuple[int, int], path: Path, precision: str = "fp32",
                    calibration=None) -> Path:
    """Scores-only .tflite that takes pixels/255 (NHWC); `calibration` supplies the run's images
    and the card's mean/std, which this graph applies itself."""
    from edgeskin.export.tflite import Calibration

    unit = Calibration(calibration.pixels, *UNIT_PIXELS)
    return torch2tflite(model, input_size, path, precision, unit, outputs="scores",
                        normalize=(calibration.mean, calibration.std))


def _litert_runner(path: Path):
    from edgeskin.export.tflite import LiteRTRunner

    return LiteRTRunner(path)


TARGETS = {
    "onnx": Target(".onnx", torch2onnx, OnnxRunner, ("fp32", "int8"), modules=("onnx", "onnxruntime")),
    "tflite": Target(".tflite", torch2tflite, _litert_runner, ("fp32", "fp16", "int8", "int16x8")),
    "mediapipe": Target("_mediapipe.tflite", torch2mediapipe, _litert_runner, ("fp32", "int8"), "probabilities",
                        takes_unit_pixels=True),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeskinError(f"unknown --target {name!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[name]
