"""Measurements behind one benchmark row: accuracy of a file on the run's split (re-validated
with its real runtime), latency/memory from its own process, and the interpreter's peak.

Latency always runs in a fresh process, the artifact through `edge_runtime benchmark` and the
torch baseline through edgeskin.benchmark.torch_bench, with the same method, photo and threads,
so peak RSS and cold start compare like with like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy, expected_calibration_error, macro_auc
from edgeskin.predict import softmax

PEAK_SHAPE = (256, 64, 64)  # a 1x1 convolution C->C on an HxW map: C*C*H*W MACs (268M)


def accuracy(logits: np.ndarray, targets: np.ndarray, labels, positive: str) -> dict:
    probs = softmax(logits)
    pred = probs.argmax(1)
    k = list(labels).index(positive)
    return {"balanced_accuracy": balanced_accuracy(targets, pred), "auc_macro": macro_auc(targets, probs),
            "ece": expected_calibration_error(targets, probs),
            "positive_recall": float(np.mean(pred[targets == k] == k)) if (targets == k).any() else None}


def _json_child(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EdgeskinError(f"benchmark child failed ({' '.join(cmd[1:4])}...): "
                            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1][:300]}")
    return json.loads(proc.stdout)


def latency_artifact(path: Path, image: Path, threads: int, runs: int, warmup: int, cold: bool) -> dict:
    cmd = [sys.executable, "-m", "edge_runtime", "benchmark", str(path), "--json", "--image", str(image),
           "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)] + ([] if cold else ["--no-cold"])
    return _json_child(cmd)


def latency_mediapipe(path: Path, image: Path, threads: int, runs: int, warmup: int, cold: bool) -> dict:
    """A MediaPipe file timed by MediaPipe's ImageClassifier in MediaPipe's own environment (the
    task API an Android app calls); cold start = that process from spawn to its first result."""
    from edge_runtime.bench import percentiles

    from edgeskin.export.metadata import run_tool

    result = json.loads(run_tool("bench", str(path), str(image), str(threads), str(runs), str(warmup)))
    # MediaPipe hides the model alone and has no CAM, so only the end-to-end timing exists.
    result.update(inference=None, end_to_end_with_cam=None,
                  end_to_end_without_cam=percentiles(result.pop("seconds")))
    if cold:
        t = time.perf_counter()
        run_tool("classify", str(path), str(image))
        result["cold_start_ms"] = 1000 * (time.perf_counter() - t)
    return result


def latency_torch(run: Path, image: Path, threads: int, runs: int, warmup: int) -> dict:
    return _json_child([sys.executable, "-m", "edgeskin.benchmark.torch_bench", str(run), "--image", str(image),
                        "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)])


class _PeakConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(PEAK_SHAPE[0], PEAK_SHAPE[0], 1, bias=False)

    def forward(self, x):
        return self.conv(x)


@lru_cache(maxsize=None)
def _peak_files() -> dict[str, Path]:
    """The peak-probe model as fp32 and int8 .tflite, converted once per machine (onnx2tf)."""
    from edgeskin.export.tflite import Calibration, onnx2tflite

    cache = Path(os.environ.get("EDGESKIN_CACHE", Path.home() / ".cache" / "edgeskin")) / "peak"
    cache.mkdir(parents=True, exist_ok=True)
    files = {p: cache / f"conv1x1_{'x'.join(map(str, PEAK_SHAPE))}_{p}.tflite" for p in ("fp32", "int8")}
    if all(f.is_file() for f in files.values()):
        return files
    c, h, w = PEAK_SHAPE
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "peak.onnx"
        torch.onnx.export(_PeakConv().eval(), (torch.rand(1, c, h, w),), str(onnx), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["out"])
        calib = Calibration((np.random.default_rng(0).random((8, h, w, c)) * 255).astype(np.uint8), (0.5,) * c,
                            (0.25,) * c)
        for precision, f in files.items():
            onnx2tflite(onnx, f, precision, (h, w), calib, channels=c)
    return files


def interpreter_peak(threads: int, runs: int = 10) -> dict:
    """Measured multiply-accumulates per second of one large 1x1 convolution through LiteRT
    (the same interpreter the artifacts run on), fp32 and int8, and through torch."""
    from ai_edge_litert.interpreter import Interpreter

    c, h, w = PEAK_SHAPE
    macs = c * c * h * w
    out = {}
    for precision, f in _peak_files().items():
        it = Interpreter(model_path=str(f), num_threads=threads)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
        x = np.random.default_rng(0).uniform(-50 if info else -1, 50 if info else 1, d["shape"])
        it.set_tensor(d["index"], x.astype(d["dtype"]))  # random data: no data-dependent shortcut
        it.invoke()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t)
        out[precision] = macs / float(np.median(times)) / 1e9
    conv, x = _PeakConv().eval(), torch.rand(1, c, h, w)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    with torch.inference_mode():
        conv(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - t)
    torch.set_num_threads(old)
    out["torch_fp32"] = macs / float(np.median(times)) / 1e9
    return {"gmacs": out, "probe": f"1x1 conv {c}->{c} on {h}x{w} ({macs / 1e6:.0f}M MACs), median of {runs}"}
