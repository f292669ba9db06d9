"""Interpreters behind one interface: `run(x)` takes one normalised float32 NHWC image
(1 x H x W x 3) and returns (class scores [K], CAM [K x h x w] or None).

- LiteRT (ai-edge-litert, else tflite-runtime) for .tflite. Outputs are told apart by rank
  because onnx2tf's output order and names vary; int8 tensors are quantized and dequantized with
  their own scale and zero-point.
- ONNX Runtime for .onnx (Jetson): TensorRT, then CUDA, then CPU, whichever the build has.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edge_runtime.errors import EdgeRuntimeError


@contextmanager
def _captured_stderr():
    """The interpreter announces the delegates it applies on the C-level stderr; keep that text
    so the benchmark reports the delegate that actually ran, not the one asked for."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box = {}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode(errors="replace")


def _litert_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite-runtime"
    except ImportError:
        raise EdgeRuntimeError("no TFLite interpreter installed; pip install ai-edge-litert "
                               "(or tflite-runtime where it has no wheel)") from None


class LiteRTBackend:
    layout = "NHWC"

    def __init__(self, path: Path, threads: int = 4):
        interpreter, self.package = _litert_interpreter()
        try:
            with _captured_stderr() as log:
                self.interpreter = interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # a truncated file, or bytes that are not a flatbuffer
            raise EdgeRuntimeError(f"{Path(path).name} is not a loadable .tflite model ({exc}); copy the "
                                   "whole file again or re-run `edgeskin export`") from None
        self.delegate = "XNNPACK" if "XNNPACK" in log.get("text", "") else "built-in CPU kernels"
        self.threads = threads
        inputs = self.interpreter.get_input_details()  # told apart by rank, as the outputs are
        self.input = next((d for d in inputs if len(d["shape"]) == 4), inputs[0])
        self.context = next((d for d in inputs if len(d["shape"]) == 2), None)  # a fused model's context vector
        outputs = self.interpreter.get_output_details()
        self.scores = next((d for d in outputs if len(d["shape"]) == 2), None)
        if self.scores is None:
            shapes = [list(d["shape"]) for d in outputs]
            raise EdgeRuntimeError(f"{Path(path).name} outputs {shapes}, no [1, classes] scores: it is not a "
                                   "classifier (a segmenter?); pass a classifier exported by `edgeskin export`")
        self.cam = next((d for d in outputs if len(d["shape"]) == 4), None)
        self.n_scores = int(self.scores["shape"][1])

    @property
    def input_dtype(self) -> str:
        return np.dtype(self.input["dtype"]).name

    def _get(self, detail) -> np.ndarray:
        value = self.interpreter.get_tensor(detail["index"])[0]
        scale, zero = detail["quantization"]
        return (value.astype(np.float32) - zero) * scale if scale else value.astype(np.float32)

    def _set(self, detail, x: np.ndarray) -> None:
        scale, zero = detail["quantization"]
        if scale:  # int8 input: quantize with the tensor's own scale and zero-point
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))

    def run(self, x: np.ndarray, with_cam: bool = True, context: np.ndarray | None = None):
        """`context`: 1 x D, the encoded patient context (edge_runtime.fusion) of a fused model."""
        self._set(self.input, x)
        if self.context is not None:
            if context is None or context.shape != tuple(self.context["shape"]):
                got = None if context is None else context.shape
                raise EdgeRuntimeError(f"this model takes a context vector of shape {list(self.context['shape'])} "
                                       f"beside the image, got {got}; encode it with edge_runtime.fusion")
            self._set(self.context, context)
        self.interpreter.invoke()
        cam = self._get(self.cam).transpose(2, 0, 1) if (with_cam and self.cam is not None) else None
        return self._get(self.scores), cam


class OnnxBackend:
    layout = "NCHW"
    PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

    def __init__(self, path: Path, threads: int = 4):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeRuntimeError(f"{Path(path).name}: ONNX models need onnxruntime (edge_runtime's onnx extra); "
                                   "pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers = [p for p in self.PREFERRED if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail...: not one base class to name
            raise EdgeRuntimeError(f"{Path(path).name} is not a loadable .onnx model ({type(exc).__name__}); copy "
                                   "the whole file again or re-run `edgeskin export`") from None
        self.package, self.threads = f"onnxruntime {ort.__version__}", threads
        self.delegate = self.session.get_providers()[0]
        self.input_dtype = "float32"
        self.names = [o.name for o in self.session.get_outputs()]
        self.inputs = [i.name for i in self.session.get_inputs()]  # image, then a fused model's context
        self.n_scores = self.session.get_outputs()[0].shape[-1]

    def run(self, x: np.ndarray, with_cam: bool = True, context: np.ndarray | None = None):
        wanted = self.names if with_cam else self.names[:1]
        feed = {self.inputs[0]: x.transpose(0, 3, 1, 2)}
        if len(self.inputs) > 1:  # a fused model's context vector (edge_runtime.fusion)
            if context is None:
                raise EdgeRuntimeError("this model takes a context vector beside the image; encode it with "
                                       "edge_runtime.fusion")
            feed[self.inputs[1]] = context.astype(np.float32)
        out = self.session.run(wanted, feed)
        return out[0][0], (out[1][0] if with_cam and len(out) > 1 else None)


def open_backend(path: Path, threads: int = 4):
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return LiteRTBackend(path, threads)
    if suffix == ".onnx":
        return OnnxBackend(path, threads)
    raise EdgeRuntimeError(f"{path}: unknown model format {suffix!r}; choose a .tflite or .onnx file")
