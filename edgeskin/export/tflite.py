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
from pathlib import Path

import numpy as np

from edgeskin.errors import EdgeskinError

CALIBRATION_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
SUFFIX = {"fp32": "_float32.tflite", "fp16": "_float16.tflite"}


def onnx2tflite(onnx_path: Path, out_path: Path, precision: str, input_size: tuple[int, int]) -> Path:
    if precision not in SUFFIX:
        raise EdgeskinError(f"unknown --precision {precision!r} for tflite; choose one of {sorted(SUFFIX)}")
    h, w = input_size
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as work:
        rng = np.random.default_rng(0)  # never read for float export; present so nothing downloads
        np.save(Path(work) / CALIBRATION_SAMPLE, rng.random((20, 128, 128, 3), dtype=np.float32))
        shutil.copy(onnx_path, Path(work) / "model.onnx")  # onnx2tf names its outputs after the input
        cmd = [sys.executable, "-m", "onnx2tf", "-i", "model.onnx", "-o", "out", "-n",
               "-ois", f"image:1,3,{h},{w}"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
        produced = Path(work) / "out" / f"model{SUFFIX[precision]}"
        if proc.returncode != 0 or not produced.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EdgeskinError(f"onnx2tf could not convert {onnx_path.name}: {tail[0][:300]}")
        shutil.move(str(produced), out_path)
    return out_path


class LiteRTRunner:
    """Runs a .tflite with the LiteRT interpreter; takes NCHW batches, returns (logits, cams NCHW)."""

    def __init__(self, path: Path, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        self.logits = next(d for d in outputs if len(d["shape"]) == 2)["index"]
        self.cam = next(d for d in outputs if len(d["shape"]) == 4)["index"]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, cams = [], []
        for image in x.transpose(0, 2, 3, 1):  # NHWC because onnx2tf transposes inputs
            self.interpreter.set_tensor(self.input["index"], image[None].astype(np.float32))
            self.interpreter.invoke()
            logits.append(self.interpreter.get_tensor(self.logits)[0])
            cams.append(self.interpreter.get_tensor(self.cam)[0].transpose(2, 0, 1))
        return np.stack(logits), np.stack(cams)
