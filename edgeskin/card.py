"""The model card: the one contract between train, compress, export and the edge runtime.

Like timm's `pretrained_cfg` or torchvision's `Weights.meta`, it says everything needed to use
the weights (labels, preprocessing, layout, CAM layer) so no later stage guesses. It is written
by `train` next to the checkpoint as `model_card.json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeskin import __version__
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import write_json

CARD_FILE = "model_card.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model input. Applied identically in training and on device."""

    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]  # per channel, on pixels scaled to [0, 1]
    std: tuple[float, float, float]
    resize: str = "bilinear"  # the whole image is resized to input_size (no crop)
    layout: str = "NCHW"  # torch layout; exported .tflite files state their own (NHWC)
    color: str = "RGB"
    color_constancy: str = "none"  # or "shades_of_gray": white balance after resizing (edge_runtime.preprocess)


@dataclass(frozen=True)
class SplitInfo:
    protocol: str  # e.g. "lesion_id-grouped, label-stratified"
    seed: int
    val_fraction: float
    test_fraction: float
    manifest: str  # file in the run directory, one row per image with its split
    counts: dict[str, dict[str, int]]  # split -> label -> images


@dataclass(frozen=True)
class ModelCard:
    task: str  # "multiclass" or "binary"
    labels: tuple[str, ...]
    positive_label: str  # the class whose sensitivity is reported ("mel" or "malignant")
    preprocessing: Preprocessing
    backbone: str
    head: str
    cam_layer: str  # module whose output feeds the global-average pool (exact CAM target)
    num_params: int
    split: SplitInfo
    data: dict[str, Any]  # format, root, synthetic flag
    weights: dict[str, str]  # file name and SHA-256 of the state dict file
    recipe: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None  # None for float weights; scheme, method, tool when int8
    pruning: dict[str, Any] | None = None  # mode, ratio, measured sparsity; None when not pruned
    macs: int | None = None  # multiply-accumulates per image at input_size
    # Classes whose probabilities add up to the malignant risk a device shows (mel, bcc, akiec).
    malignant_labels: tuple[str, ...] = ()
    # Set by export: softmax temperature fitted on the validation split, and the top probability
    # below which a prediction is flagged uncertain (see edgeskin.export.calibrate).
    calibration: dict[str, Any] | None = None
    # Set by `export --min-recall`: logit offsets (one per label) a device adds before the softmax,
    # so the positive class reaches a chosen validation recall (edgeskin.export.calibrate).
    operating_point: dict[str, Any] | None = None
    # Set by `train --clinical`: a prior on the logits from the patient's age, sex and body site
    # (edge_runtime.clinical.ClinicalPrior), which the device adds before offsets and softmax.
    clinical: dict[str, Any] | None = None
    # Set by `edgeskin ensemble`: the member runs (path, weights SHA-256, validation balanced
    # accuracy), whose networks run side by side, their logits averaged (models.factory.Members).
    ensemble: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION
    edgeskin_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / CARD_FILE, self.to_dict())

    def replace(self, **changes: Any) -> "ModelCard":
        return dataclasses.replace(self, **changes)

    @property
    def offsets(self) -> tuple[float, ...]:
        """The operating point's logit offsets, one per label (zeros: plain argmax)."""
        point = self.operating_point or {}
        return tuple(point.get("offsets") or (0.0,) * len(self.labels))

    @property
    def members(self) -> int:
        """Networks in the model: 1, or an ensemble's member count."""
        return len(self.ensemble["runs"]) if self.ensemble else 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        if d.get("schema") != SCHEMA_VERSION:
            raise EdgeskinError(
                f"model card schema {d.get('schema')!r} is not supported (expected {SCHEMA_VERSION}); "
                "re-run `edgeskin train` with this edgeskin version"
            )
        d = dict(d)
        pre = dict(d.pop("preprocessing"))
        for key in ("input_size", "mean", "std"):
            pre[key] = tuple(pre[key])
        d["preprocessing"] = Preprocessing(**pre)
        d["split"] = SplitInfo(**d.pop("split"))
        d["labels"] = tuple(d["labels"])
        d["malignant_labels"] = tuple(d.get("malignant_labels", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EdgeskinError(f"model card has unknown fields {unknown}; it was written by a newer edgeskin")
        return cls(**d)

    @classmethod
    def load(cls, run_dir: str | Path) -> "ModelCard":
        path = Path(run_dir) / CARD_FILE
        if not path.is_file():
            raise EdgeskinError(
                f"{path} not found: pass a run directory written by `edgeskin train` (it holds {CARD_FILE})"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(raw)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EdgeskinError(f"{path} is not a valid model card ({exc}); re-run `edgeskin train`") from None
