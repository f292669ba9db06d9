"""`edgeskin export RUN --target onnx [--precision fp32|int8]`, as steps:

1. check the options and find the source model (the run's fp32 weights, or its QAT int8 variant)
2. convert with the target's pure function (e.g. torch2onnx) into a temporary file
3. validate the file with its real runtime on the run's validation split (see validate.py)
4. write the card JSON beside it (model card + artifact SHA-256 + I/O + validation), then rename
   both into RUN/export/. A failed validation is kept, marked, and exits non-zero unless
   --allow-degraded; any error before that leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeskin.card import ModelCard
from edgeskin.config import ExportConfig
from edgeskin.errors import EdgeskinError
from edgeskin.evaluate.run import load_run_model, run_data
from edgeskin.export.convert import CAM, INPUT, LOGITS, get_target
from edgeskin.export.validate import validate
from edgeskin.fileio import atomic_path, sha256_file, write_json

OUT_DIR = "export"


@dataclass(frozen=True)
class ExportResult:
    artifact: Path
    card_json: Path
    status: str
    validation: dict
    failures: list[str]


def _source(run: Path, card: ModelCard, precision: str) -> tuple[ModelCard, torch.nn.Module, torch.nn.Module]:
    fp32 = load_run_model(run, card, torch.device("cpu"))
    if precision != "int8":  # fp32 and fp16 files are made from the float weights
        return card, fp32, fp32
    variant = run / "compress" / "qat_int8"
    if not (variant / "model_card.json").is_file():
        raise EdgeskinError(f"{variant} not found; run `edgeskin compress {run} --int8` before exporting int8")
    from edgeskin.compress.pipeline import load_variant

    qcard, qat = load_variant(variant)
    return qcard, qat, fp32


def _io(card: ModelCard, feat_hw: tuple[int, int]) -> dict:
    h, w = card.preprocessing.input_size
    k = len(card.labels)
    return {"inputs": [{"name": INPUT, "shape": ["N", 3, h, w], "dtype": "float32", "layout": "NCHW",
                        "normalization": {"mean": card.preprocessing.mean, "std": card.preprocessing.std,
                                          "scale": "pixels / 255 before mean/std"}}],
            "outputs": [{"name": LOGITS, "shape": ["N", k]},
                        {"name": CAM, "shape": ["N", k, *feat_hw],
                         "meaning": "per-class activation map = Grad-CAM x h*w before ReLU; ReLU, upsample, "
                                    "min-max normalise for a heatmap"}]}


def _calibration(data, split, card: ModelCard, n: int):
    """n training images (seeded choice) with the card's normalisation, for int8 calibration."""
    from edgeskin.export.tflite import Calibration

    train = split.indices("train")
    pick = np.random.default_rng(0).permutation(train)[:n]
    return Calibration(data.pixels[pick], card.preprocessing.mean, card.preprocessing.std)


def export(cfg: ExportConfig) -> ExportResult:
    run = Path(cfg.run)
    card = ModelCard.load(run)  # Step 1
    target = get_target(cfg.target)
    if cfg.precision not in target.precisions:
        raise EdgeskinError(f"unknown --precision {cfg.precision!r} for {cfg.target}; choose one of "
                            f"{list(target.precisions)}")
    src_card, source, fp32 = _source(run, card, cfg.precision)
    data, split = run_data(run, card)
    val = data.subset(split.indices("val"))
    out = run / OUT_DIR
    out.mkdir(exist_ok=True)
    name = f"{card.backbone}_{cfg.precision}"
    artifact = out / f"{name}{target.suffix}"
    with atomic_path(artifact) as tmp:  # Steps 2-3 on a temporary file
        target.convert(source, card.preprocessing.input_size, tmp, cfg.precision,
                       calibration=_calibration(data, split, card, cfg.calib_images))
        runner = target.runner(tmp)
        result = validate(runner, source, fp32, val.pixels, val.targets, src_card, cfg.precision, cfg.cam_images)
        feat_hw = runner(torch.zeros(1, 3, *card.preprocessing.input_size).numpy())[1].shape[-2:]
        sha = sha256_file(tmp)
    card_json = write_json(out / f"{name}.json", {  # Step 4
        "model_card": src_card.to_dict(),
        "artifact": {"file": artifact.name, "sha256": sha, "format": cfg.target, "precision": cfg.precision,
                     **_io(card, tuple(feat_hw))},
        "status": result.status, "validation": result.metrics, "failures": result.failures})
    print(f"edgeskin export: {artifact} {result.status}"
          + (": " + "; ".join(result.failures) if result.failures else ""))
    if result.failures and not cfg.allow_degraded:
        raise EdgeskinError(f"{artifact.name} failed validation: {'; '.join(result.failures)} "
                            "(kept and marked; pass --allow-degraded to accept it)")
    return ExportResult(artifact, card_json, result.status, result.metrics, result.failures)
