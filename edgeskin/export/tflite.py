"""ONNX -> TFLite with onnx2tf, and a LiteRT runner for the result.

onnx2tf runs as a subprocess in a scratch folder: it keeps TensorFlow out of the torch process,
and the folder holds a generated copy of the calibration sample onnx2tf would otherwise download
(`calibration_image_sample_data_20x128x128x3_float32.npy`). onnx2tf transposes the graph to NHWC,
so the .tflite takes NHWC images and returns the CAM as N x h x w x K; its output names are
generic (PartitionedCall:N) and their order varies, so outputs are told apart by rank.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeskin.errors import EdgeskinError

CALIBRATION_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
# onnx2tf's file for each precision; int8 is full-integer (int8 input and outputs, their
# scale/zero-point in the tensors), or int8 inside float32 input/outputs with io="float".
# int16x8 = LiteRT's 16x8 mode: int16 activations, int8 weights, integer-only; far closer to float
# than int8 activations, but XNNPACK has no kernels for it (built-in kernels run it).
SUFFIX = {"fp32": "_float32.tflite", "fp16": "_float16.tflite", "int8": "_full_integer_quant.tflite",
          "int16x8": "_full_integer_quant_with_int16_act.tflite"}
CALIBRATED = ("int8", "int16x8")
FLOAT_IO_INT8 = "_integer_quant.tflite"


@dataclass(frozen=True)
class Calibration:
    """Real images for int8 calibration: uint8 NHWC at the input size, and the card's mean/std
    (onnx2tf applies (x/255 - mean) / std itself, as training did)."""

    pixels: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context: np.ndarray | None = None  # a fused model's context vectors, one per image (fed as they are)


def onnx2tflite(onnx_path: Path, out_path: Path, precision: str, input_size: tuple[int, int],
                calibration: Calibration | None = None, io: str = "int8", channels: int = 3,
                context_dim: int = 0) -> Path:
    """`context_dim` > 0: the graph's second input `context` (1 x D), a fused model's; int8
    calibration then needs `calibration.context`, the training images' own context vectors."""
    if precision not in SUFFIX:
        raise EdgeskinError(f"unknown --precision {precision!r} for tflite; choose one of {sorted(SUFFIX)}")
    if precision in CALIBRATED and (calibration is None or len(calibration.pixels) == 0):
        raise EdgeskinError(f"{precision} .tflite needs calibration images from the run's training split; none were given")
    h, w = input_size
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as work:
        rng = np.random.default_rng(0)  # never read for float export; present so nothing downloads
        np.save(Path(work) / CALIBRATION_SAMPLE, rng.random((20, 128, 128, 3), dtype=np.float32))
        shutil.copy(onnx_path, Path(work) / "model.onnx")  # onnx2tf names its outputs after the input
        cmd = [sys.executable, "-m", "onnx2tf", "-i", "model.onnx", "-o", "out", "-n",
               "-ois", f"image:1,{channels},{h},{w}"] + ([f"context:1,{context_dim}"] if context_dim else [])
        if precision in CALIBRATED:  # onnx2tf drops QDQ pairs, so int8 is calibrated on real images
            np.save(Path(work) / "calib.npy", calibration.pixels.astype(np.float32) / 255.0)
            cmd += ["-oiqt", "-cind", "image", "calib.npy", str(list(calibration.mean)), str(list(calibration.std))]
            if context_dim:  # every input needs calibration data; the vectors are already encoded
                if calibration.context is None or len(calibration.context) != len(calibration.pixels):
                    raise EdgeskinError("int8 calibration of a fused model needs one context vector per image")
                np.save(Path(work) / "calib_context.npy", calibration.context.astype(np.float32))
                cmd += ["-cind", "context", "calib_context.npy", "[0.0]", "[1.0]"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
        suffix = FLOAT_IO_INT8 if precision == "int8" and io == "float" else SUFFIX[precision]
        produced = Path(work) / "out" / f"model{suffix}"
        if proc.returncode != 0 or not produced.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EdgeskinError(f"onnx2tf could not convert {onnx_path.name}: {tail[0][:300]}")
        shutil.move(str(produced), out_path)
    return out_path


class LiteRTRunner:
    """edge_runtime's LiteRT backend (the device's own I/O handling: outputs told apart by rank,
    int8 quantized/dequantized with the tensors' scale and zero-point) over NCHW batches; returns
    (scores, cams NCHW), cams None for a file without a CAM output (the MediaPipe one)."""

    def __init__(self, path: Path, threads: int = 2):
        from edge_runtime.backends import LiteRTBackend

        self.backend = LiteRTBackend(path, threads)
        self.input, self.cam = self.backend.input, self.backend.cam
        outputs = self.backend.interpreter.get_output_details()
        self.roles = ["scores" if len(d["shape"]) == 2 else "cam" for d in outputs]  # in tensor order

    def __call__(self, x: np.ndarray, context: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        rows = [None] * len(x) if context is None else [c[None] for c in context]
        outs = [self.backend.run(image[None], context=c)  # NHWC: onnx2tf's layout
                for image, c in zip(x.transpose(0, 2, 3, 1), rows)]
        cams = None if self.cam is None else np.stack([c for _, c in outs])
        return np.stack([s for s, _ in outs]), cams
