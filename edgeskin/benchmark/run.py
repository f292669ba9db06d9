"""`edgeskin benchmark RUN`: one row per artifact and device profile, in numbered steps:

1. find the artifacts: torch fp32 eager + every exported .onnx/.tflite of the run (their card JSONs),
   and check that the tools the next steps use are installed (extras.py)
2. re-validate each file with its real runtime on the run's split (a MediaPipe file through
   MediaPipe's ImageClassifier): status, balanced accuracy, melanoma recall, macro AUC, ECE,
   top-1 agreement and CAM r against torch Grad-CAM
3. time each file in its own process on this host, once per thread count (edge_runtime's method;
   a MediaPipe file in MediaPipe's environment, ImageClassifier.classify end to end)
4. measure the interpreter's peak (a large 1x1 convolution) for the roofline column
5. add rows imported from `edge_runtime benchmark --json` on other devices (matched by SHA-256,
   checked in step 1)
6. write RUN/benchmark/report.{md,json} and the Pareto and size-vs-accuracy plots
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeskin.benchmark import measure
from edgeskin.benchmark.report import write_report
from edgeskin.card import ModelCard
from edgeskin.config import BenchmarkConfig
from edgeskin.errors import EdgeskinError
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.extras import require, require_onnx2tf
from edgeskin.predict import predict_logits
from edgeskin.progress import progress

TORCH = "torch-fp32"
OUT_DIR = "benchmark"


@dataclass(frozen=True)
class BenchmarkResult:
    out_dir: Path
    markdown: Path
    rows: list[dict]
    plots: list[Path]


def _artifacts(run: Path) -> dict[str, dict]:
    """target name (e.g. tflite-int8, mediapipe-int8) -> its card JSON, for each exported file
    that exists."""
    found = {}
    for card_json in sorted((run / "export").glob("*.json")):
        described = json.loads(card_json.read_text())
        art = described.get("artifact", {})
        path = run / "export" / art.get("file", "")
        if art.get("format") in ("onnx", "tflite", "mediapipe") and path.is_file():
            found[f"{art['format']}-{art['precision']}"] = {**described, "path": path}
    return found


def _select(cfg: BenchmarkConfig, found: dict) -> list[str]:
    names = [TORCH, *found]
    unknown = [t for t in cfg.targets if t not in names]
    if unknown:
        raise EdgeskinError(f"unknown --targets {unknown}; this run has {names} (export more with edgeskin export)")
    return list(cfg.targets) or names


def _int8_from(art: dict) -> str:
    """What an int8 file was quantized from, as its card records it (export --int8-from)."""
    quant = art["model_card"].get("quantization") or {}
    return "fp32" if quant.get("source") == "fp32 weights" else "qat"


def _validate(art: dict, run: Path, card: ModelCard, fp32, split, cfg: BenchmarkConfig) -> dict:
    from edgeskin.export.convert import TARGETS, UNIT_PIXELS
    from edgeskin.export.metadata import ImageClassifierRunner
    from edgeskin.export.pipeline import _source
    from edgeskin.export.validate import validate

    fmt = art["artifact"]["format"]
    target = TARGETS[fmt]
    _, source, _ = _source(run, card, art["artifact"]["precision"], _int8_from(art), fmt, fp32)
    runner = ImageClassifierRunner(art["path"]) if fmt == "mediapipe" else target.runner(art["path"])
    art_card = ModelCard.from_dict(art["model_card"])
    v = validate(runner, source, fp32, split.pixels, split.targets, art_card, art["artifact"]["precision"],
                 cfg.cam_images, scores=target.scores,
                 input_norm=UNIT_PIXELS if target.takes_unit_pixels else None)
    # Scored as the device decides: logits plus the artifact card's operating-point offsets (zeros
    # when it has none), as edge_runtime's Classifier applies them; MediaPipe's probabilities as
    # log-probabilities, whose softmax gives them back (it cannot carry offsets: export refuses them).
    logits = np.log(np.maximum(v.scores, 1e-12)) if target.scores == "probabilities" else v.scores
    acc = measure.accuracy(logits + np.asarray(art_card.offsets), split.targets, card.labels, card.positive_label)
    return {"status": v.status, "failures": v.failures, "top1_agreement": v.metrics["top1_agreement"],
            "cam_pearson": v.metrics["cam_pearson_mean"], "size_mb": art["path"].stat().st_size / 1e6,
            "sha256": art["artifact"]["sha256"], "path": art["path"], **acc}


def _imported(files: tuple[str, ...], by_sha: dict[str, str]) -> list[dict]:
    rows = []
    for f in files:
        try:
            r = json.loads(Path(f).read_text())
        except (OSError, ValueError) as exc:
            raise EdgeskinError(f"--import {f}: not a readable `edge_runtime benchmark --json` file ({exc})") from None
        sha = r.get("model", {}).get("sha256")
        if sha not in by_sha:
            raise EdgeskinError(f"--import {f}: its model (SHA-256 {str(sha)[:12]}...) is none of this run's "
                                "exported files; benchmark the file edgeskin exported")
        rows.append({"target": by_sha[sha], "device": r["device"].get("name") or r["device"]["machine"],
                     "date": r.get("date"), "timing": r, "representative": r["device"].get("representative", True)})
    return rows


def _require_tools(card: ModelCard, targets: list[str], found: dict) -> None:
    """Step 1: the interpreter's peak is timed on .tflite files onnx2tf writes (so the export extra
    and onnx2tf, always); MACs come from torch-pruning when the run was not compressed; an int8
    artifact made from the QAT model is validated against that model, which NNCF loads."""
    what = "edgeskin benchmark"
    require(what, "export")
    require_onnx2tf(what)
    if card.macs is None:
        require(what, "compress", ("torch_pruning",))
    arts = [found[t] for t in targets if t != TORCH]  # as _validate finds each file's source model
    if any(a["artifact"]["format"] == "mediapipe" for a in arts):  # runs them with ImageClassifier
        from edgeskin.export.metadata import mediapipe_python

        mediapipe_python()
    if any(a["artifact"]["precision"] == "int8" and _int8_from(a) == "qat" for a in arts):
        require(f"{what} of an int8 file made from the QAT model", "compress")


def benchmark(cfg: BenchmarkConfig) -> BenchmarkResult:
    run = Path(cfg.run)
    card = ModelCard.load(run)  # Step 1
    found = _artifacts(run)
    targets = _select(cfg, found)
    _require_tools(card, targets, found)
    by_sha = {card.weights["sha256"]: TORCH, **{a["artifact"]["sha256"]: n for n, a in found.items()}}
    imported = _imported(cfg.imports, by_sha)  # checked before anything slow runs
    data, split_idx = run_data(run, card)
    split = data.subset(split_idx.indices(cfg.split))
    image = split.samples[0].path  # one real photo of the split, timed at its own resolution
    fp32 = load_run_model(run, card, torch.device("cpu"))
    if card.macs is None:  # the roofline needs MACs per image; runs record them only once compressed
        from edgeskin.compress.report import macs_and_params

        card = card.replace(macs=int(macs_and_params(fp32, card.preprocessing.input_size, torch.device("cpu"))[0]))
    pre = card.preprocessing
    ref = predict_logits(fp32, split.pixels, pre.mean, pre.std, torch.device("cpu"))
    quality = {TORCH: {"status": "reference", "failures": [], "n": len(split.targets), "top1_agreement": 1.0, "cam_pearson": 1.0,
                       "size_mb": (run / card.weights["file"]).stat().st_size / 1e6, "sha256": card.weights["sha256"],
                       **measure.accuracy(ref, split.targets, card.labels, card.positive_label)}}
    for name in targets:  # Step 2
        if name != TORCH:
            quality[name] = _validate(found[name], run, card, fp32, split, cfg)
            print(f"edgeskin benchmark: {name} {quality[name]['status']}")
    host = f"{platform.machine()} host ({os.cpu_count()} cores)"
    rows = []
    for threads in cfg.threads:  # Steps 3-4
        peak = measure.interpreter_peak(threads)
        # One step per file; never a bar inside a timed loop, where its own writes would be timed.
        for name in progress(targets, f"timing at {threads} thread{'s' * (threads > 1)}", unit="file"):
            if name == TORCH:
                timing = measure.latency_torch(run, image, threads, cfg.runs, cfg.warmup)
            else:
                timer = measure.latency_mediapipe if name.startswith("mediapipe") else measure.latency_artifact
                timing = timer(quality[name]["path"], image, threads, cfg.runs, cfg.warmup, cfg.cold_start)
            rows.append({"target": name, "device": f"{host}, {threads} thread{'s' * (threads > 1)}",
                         "date": datetime.date.today().isoformat(), "timing": timing, "peak": peak,
                         "representative": True})
            print(f"edgeskin benchmark: {name} {threads} threads end-to-end p50 "
                  f"{timing['end_to_end_without_cam']['p50_ms']:.2f} ms")
    rows += [r for r in imported if r["target"] in quality]  # Step 5
    out = run / OUT_DIR
    md, plots = write_report(out, card, cfg, quality, rows)  # Step 6
    print(f"edgeskin benchmark: {md}")
    return BenchmarkResult(out, md, rows, plots)
