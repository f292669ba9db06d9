"""`edge_runtime benchmark`: what a device owner needs to decide, measured on the device.

Method (also written into the output): the model is loaded once; one first inference is timed
alone; then WARMUP untimed runs; then RUNS timed runs of each of
  - inference: the interpreter alone on a prepared input,
  - end-to-end without CAM: resize + normalise + interpreter + softmax,
  - end-to-end with CAM: the same + the heatmap (ReLU, min-max, upsample to the photo).
The two end-to-end figures are timed alternately, call by call (ABBA order), so drift in the
machine's speed falls on both alike and their ratio is the heatmap's cost.
Cold start = a fresh `python -m edge_runtime predict` process, from spawn to its exit with the
first result (imports, model load, first inference). Peak RSS = this process's maximum resident
set size (VmHWM on Linux).
"""

from __future__ import annotations

import csv
import datetime
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime.classifier import Classifier
from edge_runtime.clinical import Context
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.preprocess import normalize, open_rgb, resize

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def peak_rss_mb() -> float:
    """This process's peak resident set. Linux: VmHWM, which starts afresh at exec; getrusage's
    ru_maxrss would report the parent's peak for a child spawned from a large process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def percentiles(seconds: list[float]) -> dict:
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: str
    context: Context | None = None  # age, sex, site columns of a CSV; None for class folders
    lesion: str | None = None  # a CSV's lesion_id: photos of one lesion are kept together when folded


def _age(value: str, where: str) -> float | None:
    try:
        return float(value) if value.strip() else None
    except ValueError:
        raise EdgeRuntimeError(f"{where}: age {value!r} is not a number; write years (e.g. 55) or leave it empty") from None


def labelled_images(data: Path) -> list[LabelledPhoto]:
    """A CSV with `path,label` columns (paths relative to it; optional `age,sex,site` give each
    photo's clinical context, optional `lesion_id` its lesion), or a folder of class folders."""
    if data.is_file():
        try:
            with open(data, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
                reader = csv.DictReader(f)
                rows = list(reader)
        except UnicodeDecodeError as exc:
            raise EdgeRuntimeError(f"{data} is not a UTF-8 text CSV (byte {exc.start}); save it as CSV UTF-8") from None
        columns = set(reader.fieldnames or ())
        if not {"path", "label"} <= columns:
            raise EdgeRuntimeError(f"{data} needs a header with `path` and `label` columns")
        has_context = bool({"age", "sex", "site"} & columns)
        for i, r in enumerate(rows, start=2):
            if not r.get("path") or not r.get("label"):  # a short row leaves its last cells None
                raise EdgeRuntimeError(f"{data}:{i} has no path or no label; fill them in or drop the row")
        return [LabelledPhoto(data.parent / r["path"], r["label"],
                              Context(_age(r.get("age") or "", f"{data}:{i}"), r.get("sex") or None,
                                      r.get("site") or None) if has_context else None,
                              r.get("lesion_id") or None)
                for i, r in enumerate(rows, start=2)]
    if data.is_dir():
        return [LabelledPhoto(p, d.name) for d in sorted(data.iterdir()) if d.is_dir()
                for p in sorted(d.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    raise EdgeRuntimeError(f"{data} not found; pass a CSV (path,label) or a folder of class folders")


def label_indices(clf: Classifier, items: list[LabelledPhoto], data: Path) -> np.ndarray:
    labels = clf.artifact.labels
    unknown = sorted({it.label for it in items} - set(labels))
    if unknown:
        raise EdgeRuntimeError(f"{data}: labels {unknown} are not classes of this model; choose from {labels}")
    if not items:
        raise EdgeRuntimeError(f"{data} lists no images; pass a CSV (path,label) or a folder of class folders")
    return np.array([labels.index(it.label) for it in items])


def rank_auc(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count half); numpy only, as on the device.
    None when the set has no positives or no negatives."""
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(score)]
    for a, b in zip(starts, ends):  # average rank within each run of ties
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(clf: Classifier, items: list[LabelledPhoto], data: Path) -> dict:
    """Balanced accuracy over the classes the set has (it may hold only some, e.g. mel and nv), and
    for the card's positive class (melanoma) its AUC against the rest and its sensitivity and
    specificity at the card's operating point: the figures a clinic asks for before deploying."""
    labels = clf.artifact.labels
    y = label_indices(clf, items, data)
    scores = np.stack([clf.infer(open_rgb(it.path), False, it.context)[0] for it in items])
    pred = scores.argmax(1)
    recall = {labels[k]: float(np.mean(pred[y == k] == k)) for k in range(len(labels)) if (y == k).any()}
    out = {"n": len(items), "balanced_accuracy": float(np.mean(list(recall.values()))), "recall": recall,
           "clinical_context": clf.clinical is not None and any(it.context is not None for it in items)}
    positive = clf.artifact.card.get("positive_label")
    if positive in labels:
        k, is_pos = labels.index(positive), y == labels.index(positive)
        z = scores - scores.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        out["positive"] = {"label": positive, "auc": rank_auc(is_pos, p[:, k]),
                           "sensitivity": float(np.mean(pred[is_pos] == k)) if is_pos.any() else None,
                           "specificity": float(np.mean(pred[~is_pos] != k)) if (~is_pos).any() else None}
    return out


def cold_start(model: Path, image: Path, threads: int, site: Path | None = None) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edge_runtime", "predict", str(model), str(image), "--json",
                           "--threads", str(threads), *(["--site", str(site)] if site else [])],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise EdgeRuntimeError(f"cold-start run failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return {"cold_start_ms": 1000 * seconds}


def benchmark(model: Path, threads: int = 4, runs: int = 100, warmup: int = 10, data: Path | None = None,
              image: Path | None = None, cold: bool = True, verify: bool = True, site: Path | None = None) -> dict:
    t = time.perf_counter()
    clf = Classifier.load(model, threads, verify, site)
    load_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="edge-runtime-") as tmp:
        if image is None:  # a neutral photo-sized input when no image is given
            image = Path(tmp) / "neutral.png"
            Image.fromarray(np.full((450, 600, 3), 160, np.uint8)).save(image)
        return _measure(clf, load_s, Path(model), Path(image), threads, runs, warmup, data, cold, site)


def timed_pair(fn_a, fn_b, runs: int) -> tuple[list[float], list[float]]:
    """Seconds of `runs` calls each of two functions, alternating A B B A, ..."""
    a, b = [], []
    for i in range(runs):
        for fn, out in ((fn_a, a), (fn_b, b)) if i % 2 == 0 else ((fn_b, b), (fn_a, a)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return a, b


def _end_to_end(clf, rgb, runs: int) -> dict:
    if not clf.has_cam:
        return {"end_to_end_without_cam": percentiles(timed(lambda: clf.predict(rgb, with_cam=False), runs)),
                "end_to_end_with_cam": None}
    without, with_cam = timed_pair(lambda: clf.predict(rgb, with_cam=False), lambda: clf.predict(rgb), runs)
    return {"end_to_end_without_cam": percentiles(without), "end_to_end_with_cam": percentiles(with_cam)}


def _measure(clf, load_s, model, image, threads, runs, warmup, data, cold, site) -> dict:
    rgb = open_rgb(image)
    x = normalize(resize(rgb, clf.artifact.input_size)[None], clf.artifact.mean, clf.artifact.std)
    t = time.perf_counter()
    clf.backend.run(x)
    first_s = time.perf_counter() - t
    for _ in range(warmup):
        clf.backend.run(x)
    result = {
        "date": datetime.date.today().isoformat(), "model": clf.describe, "device": {"machine": platform.machine(), "system": platform.system(),
                                                  "python": platform.python_version(), "processor": platform.processor()},
        "method": {"warmup": warmup, "runs": runs, "threads": threads, "interpreter": clf.backend.package,
                   "delegate": clf.backend.delegate, "input_dtype": clf.backend.input_dtype,
                   "image_size": [rgb.height, rgb.width], "notes": __doc__.split("Method", 1)[1].strip()},
        "load_ms": 1000 * load_s, "first_inference_ms": 1000 * first_s,
        "inference": percentiles(timed(lambda: clf.backend.run(x), runs)),
        **_end_to_end(clf, rgb, runs),
        "peak_rss_mb": peak_rss_mb(),
    }
    if cold:
        result.update(cold_start(model, image, threads, site))
    if data is not None:
        result["accuracy"] = accuracy(clf, labelled_images(Path(data)), Path(data))
    return result
