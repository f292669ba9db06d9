"""`edgeskin export RUN --target onnx [--precision fp32|int8]`, as steps:

1. check the options and that the target's tools are installed (extras.py), then find the source
   model (the run's fp32 weights, or its QAT int8 variant)
2. convert with the target's pure function (e.g. torch2onnx) into a temporary file; a .tflite
   gets TFLite metadata (normalisation, labels, the model card) embedded (see metadata.py)
3. validate the final file with its real runtime on the run's validation split (validate.py)
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
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.export.convert import CAM, INPUT, LOGITS, SCORES, UNIT_PIXELS, Target, get_target
from edgeskin.export.metadata import mediapipe_python
from edgeskin.export.validate import validate
from edgeskin.extras import require, require_onnx2tf
from edgeskin.fileio import atomic_path, sha256_file, write_json

OUT_DIR = "export"


@dataclass(frozen=True)
class ExportResult:
    artifact: Path
    card_json: Path
    status: str
    validation: dict
    failures: list[str]


def _source(run: Path, card: ModelCard, precision: str, int8_from: str = "qat", target: str = "tflite",
            fp32: torch.nn.Module | None = None) -> tuple[ModelCard, torch.nn.Module, torch.nn.Module]:
    """(card, source model, fp32 model); `fp32`: the run's float model when already loaded."""
    fp32 = fp32 if fp32 is not None else load_run_model(run, card, torch.device("cpu"))
    if precision == "int16x8":  # QAT trains int8 activations; 16x8 calibrates the float weights
        return card.replace(quantization={"scheme": "int16 activations, int8 weights (LiteRT 16x8)",
                                          "method": "post-training calibration by onnx2tf", "tool": "onnx2tf",
                                          "source": "fp32 weights"}), fp32, fp32
    if precision != "int8":  # fp32 and fp16 files are made from the float weights
        return card, fp32, fp32
    if int8_from == "fp32":
        if target == "onnx":
            raise EdgeskinError("int8 .onnx carries the QAT model's quantizers; use --int8-from qat after "
                                f"`edgeskin compress {run} --int8`")
        # Post-training quantization by the converter alone (onnx2tf calibrates on real images).
        return card.replace(quantization={"scheme": "int8 full-integer", "method": "post-training calibration "
                                          "by onnx2tf", "tool": "onnx2tf", "source": "fp32 weights"}), fp32, fp32
    variant = run / "compress" / "qat_int8"
    if not (variant / "model_card.json").is_file():
        raise EdgeskinError(f"{variant} not found; run `edgeskin compress {run} --int8` before exporting int8")
    from edgeskin.compress.pipeline import load_variant

    qcard, qat = load_variant(variant)
    return qcard, qat, fp32


CAM_MEANING = ("per-class activation map = Grad-CAM x h*w before ReLU; ReLU, upsample, min-max normalise "
               "for a heatmap")


def _io(card: ModelCard, feat_hw: tuple[int, int] | None, scores: str) -> dict:
    """The ONNX graph's I/O (NCHW); the .tflite files take the same input as NHWC."""
    h, w = card.preprocessing.input_size
    k = len(card.labels)
    outputs = [{"name": LOGITS if scores == "logits" else SCORES, "shape": ["N", k], "meaning": scores}]
    if feat_hw is not None:
        outputs.append({"name": CAM, "shape": ["N", k, *feat_hw], "meaning": CAM_MEANING})
    return {"inputs": [{"name": INPUT, "shape": ["N", 3, h, w], "dtype": "float32", "layout": "NCHW",
                        "normalization": {"mean": card.preprocessing.mean, "std": card.preprocessing.std,
                                          "scale": "pixels / 255 before mean/std"}}],
            "outputs": outputs}


def _embed(path: Path, card: ModelCard, roles: list[str], input_norm) -> None:
    """TFLite metadata, one entry per output tensor in the file's own order (onnx2tf's varies);
    `input_norm` = the (mean, std) the file expects when not the card's own."""
    from edgeskin.export.metadata import embed_metadata

    describe = {"scores": ("scores", "class scores (logits, or softmax probabilities in the MediaPipe file)"),
                "cam": ("cam", "NHWC " + CAM_MEANING)}
    embed_metadata(path, card.to_dict(), [{"name": describe[r][0], "role": "scores" if r == "scores" else "feature",
                                           "description": describe[r][1]} for r in roles], input_norm)


def _device_card(card: ModelCard, source: torch.nn.Module, val,
                 min_recall: float | None = None) -> tuple[ModelCard, np.ndarray]:
    """The card a device reads: + an operating point when `min_recall` is given, + softmax
    temperature and uncertainty threshold fitted on the validation split (on the offset logits the
    device will decide from), + the malignant classes (cards from before they were recorded lack
    them). With a clinical prior in the card, all of these are fitted on logits + prior, as the
    device decides. Returns the source's raw validation logits, which the exported file must reproduce."""
    from edgeskin.export.calibrate import device_thresholds
    from edgeskin.predict import predict_logits

    pre = card.preprocessing
    logits = predict_logits(source, val.pixels, pre.mean, pre.std, torch.device("cpu"))
    source_name = f"validation split ({len(val.targets)} images), torch source model"
    decided = logits
    if card.clinical:  # the device adds the context prior before anything else: fit on what it sees
        from edgeskin.train.clinical import card_context_logits

        decided = logits + card_context_logits(card.clinical, val.samples)
        source_name += " + clinical prior"
    return device_thresholds(card, decided, val.targets, min_recall, source_name), logits


def _calibration(data, split, card: ModelCard, n: int):
    """n training images (seeded choice) with the card's normalisation, for int8 calibration."""
    from edgeskin.export.tflite import Calibration

    train = split.indices("train")
    pick = np.random.default_rng(0).permutation(train)[:n]
    return Calibration(data.pixels[pick], card.preprocessing.mean, card.preprocessing.std)


def artifact_name(card: ModelCard, precision: str, suffix: str) -> str:
    """The exported file's name: backbone and precision, and for `edgeskin ensemble` runs the member
    count (edgeskin_cnn_m_ensemble3_int8.tflite), so a file copied to a device still says it runs
    N networks, at N times one member's latency and size."""
    members = f"_ensemble{card.members}" if card.ensemble else ""
    return f"{card.backbone}{members}_{precision}{suffix}"


def _require_tools(cfg: ExportConfig, target: Target) -> None:
    """Step 1: every tool the conversion and its validation will use, found before minutes of work."""
    what = f"edgeskin export --target {cfg.target}"
    require(what, "export", target.modules)
    if target.suffix.endswith(".tflite"):
        require_onnx2tf(what)
        mediapipe_python()  # the metadata writer's environment
    if cfg.precision == "int8" and cfg.int8_from == "qat":  # loading the QAT model needs NNCF
        require(f"{what} --precision int8 (from the QAT model)", "compress")


def export(cfg: ExportConfig) -> ExportResult:
    run = Path(cfg.run)
    card = ModelCard.load(run)  # Step 1
    target = get_target(cfg.target)
    if cfg.precision not in target.precisions:
        raise EdgeskinError(f"unknown --precision {cfg.precision!r} for {cfg.target}; choose one of "
                            f"{list(target.precisions)}")
    if target.takes_unit_pixels and card.preprocessing.color_constancy != "none":
        # MediaPipe's ImageClassifier only resizes and normalises; it would skip the white balance.
        raise EdgeskinError(f"--target {cfg.target}: {run} was trained with color_constancy "
                            f"{card.preprocessing.color_constancy!r}, which MediaPipe cannot apply; "
                            "use --target tflite (edge_runtime applies it)")
    if target.takes_unit_pixels and cfg.min_recall is not None:
        raise EdgeskinError(f"--target {cfg.target} --min-recall: MediaPipe's ImageClassifier decides by plain "
                            "argmax and cannot apply an operating point; use --target tflite (edge_runtime applies it)")
    _require_tools(cfg, target)
    src_card, source, fp32 = _source(run, card, cfg.precision, cfg.int8_from, cfg.target)
    data, split = run_data(run, card)
    val = data.subset(split.indices("val"))
    src_card, val_logits = _device_card(src_card, source, val, cfg.min_recall)
    out = run / OUT_DIR
    out.mkdir(exist_ok=True)
    artifact = out / artifact_name(card, cfg.precision, target.suffix)
    with atomic_path(artifact) as tmp:  # Steps 2-3 on a temporary file
        target.convert(source, card.preprocessing.input_size, tmp, cfg.precision,
                       calibration=_calibration(data, split, card, cfg.calib_images))
        unit = UNIT_PIXELS if target.takes_unit_pixels else None
        if artifact.suffix == ".tflite":
            _embed(tmp, src_card, target.runner(tmp).roles, unit)
        runner = target.runner(tmp)
        result = validate(runner, source, fp32, val.pixels, val.targets, src_card, cfg.precision, cfg.cam_images,
                          scores=target.scores, input_norm=unit, ref=val_logits)
        cams = runner(torch.zeros(1, 3, *card.preprocessing.input_size).numpy())[1]
        sha = sha256_file(tmp)
    # Step 4: the card JSON is named after the whole file (model.tflite.json), so an .onnx and a
    # .tflite of the same precision never share one.
    card_json = write_json(out / f"{artifact.name}.json", {
        "model_card": src_card.to_dict(),
        "artifact": {"file": artifact.name, "sha256": sha, "format": cfg.target, "precision": cfg.precision,
                     **_io(card, None if cams is None else tuple(cams.shape[-2:]), target.scores)},
        "status": result.status, "validation": result.metrics, "failures": result.failures})
    print(f"edgeskin export: {artifact} {result.status}"
          + (": " + "; ".join(result.failures) if result.failures else ""))
    if result.failures and not cfg.allow_degraded:
        raise EdgeskinError(f"{artifact.name} failed validation: {'; '.join(result.failures)} "
                            "(kept and marked; pass --allow-degraded to accept it)")
    return ExportResult(artifact, card_json, result.status, result.metrics, result.failures)
