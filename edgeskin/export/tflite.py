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


def onnx2tflite(onnx_path: Path, out_path: Path, precision: str, input_size: tuple[int, int],
                calibration: Calibration | None = None, io: str = "int8", channels: int = 3) -> Path:
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
               "-ois", f"image:1,{channels},{h},{w}"]
        if precision in CALIBRATED:  # onnx2tf drops QDQ pairs, so int8 is calibrated on real images
            np.save(Path(work) / "calib.npy", calibration.pixels.astype(np.float32) / 255.0)
            cmd += ["-oiqt", "-cind", "image", "calib.npy", str(list(calibration.mean)), str(list(calibration.std))]
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
    """Runs a .tflite with the LiteRT interpreter; takes NCHW batches, returns (scores, cams NCHW),
    cams None for a file without a CAM output (the MediaPipe one)."""

    def __init__(self, path: Path, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        self.logits = next(d for d in outputs if len(d["shape"]) == 2)["index"]
        self.cam = next((d["index"] for d in outputs if len(d["shape"]) == 4), None)
        self.roles = ["scores" if len(d["shape"]) == 2 else "cam" for d in outputs]  # in tensor order

    def _output(self, index: int) -> np.ndarray:
        detail = next(d for d in self.interpreter.get_output_details() if d["index"] == index)
        value = self.interpreter.get_tensor(index)[0]
        scale, zero = detail["quantization"]
        return (value.astype(np.float32) - zero) * scale if scale else value

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, cams = [], []
        scale, zero = self.input["quantization"]
        for image in x.transpose(0, 2, 3, 1):  # NHWC because onnx2tf transposes inputs
            if scale:  # int8 input: quantize with the tensor's own scale and zero-point
                info = np.iinfo(self.input["dtype"])
                image = np.clip(np.round(image / scale + zero), info.min, info.max).astype(self.input["dtype"])
            self.interpreter.set_tensor(self.input["index"], image[None].astype(self.input["dtype"]))
            self.interpreter.invoke()
            logits.append(self._output(self.logits))
            if self.cam is not None:
                cams.append(self._output(self.cam).transpose(2, 0, 1))
        return np.stack(logits), (np.stack(cams) if cams else None)
