"""Conversions as pure functions named source->target, and the table of targets that uses them.

Each exported graph has one input `image` (float32 N x 3 x H x W, normalised as the card says)
and two outputs: `logits` (N x K) and `cam` (N x K x h x w, see edgeskin.cam), so the device gets
its explanation map without autograd.
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

OPSET = 17
INPUT, LOGITS, CAM = "image", "logits", "cam"


def torch2onnx(model: nn.Module, input_size: tuple[int, int], path: Path, precision: str = "fp32",
               calibration=None) -> Path:
    """Export with TorchScript tracing (dynamo=False): the route that turns NNCF's quantizers,
    once stripped to native torch fake-quantize ops, into standard QuantizeLinear/DequantizeLinear."""
    model = copy.deepcopy(model).cpu().eval()
    if precision == "int8":
        import nncf

        model = nncf.strip(model, do_copy=False, strip_format=nncf.StripFormat.NATIVE,
                           example_input=torch.zeros(1, 3, *input_size))
    with_cam(model)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but is the one that writes NNCF's QDQ pairs.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (torch.zeros(1, 3, *input_size),), str(path), dynamo=False,
                              opset_version=OPSET, input_names=[INPUT], output_names=[LOGITS, CAM],
                              dynamic_axes={INPUT: {0: "batch"}, LOGITS: {0: "batch"}, CAM: {0: "batch"}})
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

    def __call__(self, x):
        logits, cams = self.session.run([LOGITS, CAM], {INPUT: x})
        return logits, cams


@dataclass(frozen=True)
class Target:
    suffix: str
    convert: Callable[..., Path]
    runner: Callable[[Path], Callable]
    precisions: tuple[str, ...]


def torch2tflite(model: nn.Module, input_size: tuple[int, int], path: Path, precision: str = "fp32",
                 calibration=None) -> Path:
    """torch -> ONNX -> TFLite (onnx2tf), composed from the two pure conversions. For int8 the
    ONNX carries the QAT model's QDQ pairs; onnx2tf drops them and calibrates on real images, so
    the QAT-adapted weights are what gets quantized."""
    from edgeskin.export.tflite import onnx2tflite

    onnx_path = path.with_name(path.stem + "_src.onnx")
    try:
        torch2onnx(model, input_size, onnx_path, precision)
        return onnx2tflite(onnx_path, path, precision, input_size, calibration)
    finally:
        onnx_path.unlink(missing_ok=True)


def _litert_runner(path: Path):
    from edgeskin.export.tflite import LiteRTRunner

    return LiteRTRunner(path)


TARGETS = {
    "onnx": Target(".onnx", torch2onnx, OnnxRunner, ("fp32", "int8")),
    "tflite": Target(".tflite", torch2tflite, _litert_runner, ("fp32", "fp16", "int8")),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeskinError(f"unknown --target {name!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[name]
