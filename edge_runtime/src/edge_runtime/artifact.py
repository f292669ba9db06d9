"""Everything about a model comes from the artifact itself: the model card packed inside the
.tflite (a packed TFLite file is also a zip archive) and the card JSON edgeskin writes beside
every artifact, whose SHA-256 is checked before the file is run.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edge_runtime.errors import EdgeRuntimeError

HAM_MALIGNANT = ("akiec", "bcc", "mel", "malignant")


@dataclass(frozen=True)
class Artifact:
    path: Path
    card: dict  # edgeskin's model card
    sidecar: Optional[Path]  # the card JSON beside the file, when present
    sha256: str
    verified: bool  # SHA-256 matched the sidecar's

    @property
    def labels(self) -> list:
        return list(self.card["labels"])

    @property
    def input_size(self) -> tuple:
        return tuple(self.card["preprocessing"]["input_size"])

    @property
    def mean(self) -> list:
        return self.card["preprocessing"]["mean"]

    @property
    def std(self) -> list:
        return self.card["preprocessing"]["std"]

    @property
    def color_constancy(self) -> str:
        return self.card["preprocessing"].get("color_constancy", "none")  # cards before it existed: none

    @property
    def malignant_labels(self) -> list:
        return list(self.card.get("malignant_labels") or [k for k in self.labels if k in HAM_MALIGNANT])

    @property
    def calibration(self) -> dict:
        return self.card.get("calibration") or {"temperature": 1.0, "uncertain_below": 0.0, "fitted_on": None}

    @property
    def offsets(self) -> list:
        """Logit offsets of the card's operating point (`edgeskin export --min-recall`), one per
        label, added before the softmax; zeros (plain argmax) when the card has none."""
        point = self.card.get("operating_point") or {}
        offsets = list(point.get("offsets") or [0.0] * len(self.labels))
        if len(offsets) != len(self.labels):
            raise EdgeRuntimeError(f"{self.path}: its card's operating point has {len(offsets)} offsets for "
                                   f"{len(self.labels)} labels; re-export it with `edgeskin export`")
        return offsets

    @property
    def clinical(self):
        """The card's prior from age, sex and body site (edge_runtime.clinical), or None."""
        from edge_runtime.clinical import ClinicalPrior

        d = self.card.get("clinical")
        return None if d is None else ClinicalPrior.from_dict(d)

    @property
    def describe(self) -> dict[str, Any]:
        point = self.card.get("operating_point")
        clinical = self.card.get("clinical")
        return {"file": self.path.name, "sha256": self.sha256, "verified": self.verified,
                "backbone": self.card.get("backbone"), "quantization": self.card.get("quantization"),
                # an `edgeskin ensemble` file runs several networks (its latency scales with them)
                "networks": len((self.card.get("ensemble") or {}).get("runs", ())) or 1,
                "operating_point": None if point is None else {k: point[k] for k in ("label", "min_recall")},
                "clinical_context": None if clinical is None else
                {"sites": clinical["sites"], "sexes": clinical["sexes"], "weight": clinical["scale"]}}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_for(path: Path) -> Path:
    """edgeskin names the card JSON after the whole file: model.tflite -> model.tflite.json."""
    return path.with_name(path.name + ".json")


def load_artifact(path, verify: bool = True) -> Artifact:
    path = Path(path)
    if not path.is_file():
        raise EdgeRuntimeError(f"{path} not found; pass a .tflite or .onnx file written by `edgeskin export`")
    sha = sha256_file(path)
    side = sidecar_for(path)
    card, expected = None, None
    if side.is_file():
        try:
            described = json.loads(side.read_text(encoding="utf-8"))
            card, expected = described["model_card"], described["artifact"]["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EdgeRuntimeError(f"{side} is not an edgeskin card JSON ({exc}); export the model again") from None
        if verify and sha != expected:
            raise EdgeRuntimeError(f"{path.name} does not match its card: SHA-256 {sha[:12]}... but {side.name} "
                                   f"says {expected[:12]}...; the file was changed or truncated, copy it again")
    if card is None and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if "model_card.json" in zf.namelist():
                card = json.loads(zf.read("model_card.json"))
    if card is None:
        raise EdgeRuntimeError(f"{path} carries no model card and has no {side.name} beside it; "
                               "export it with `edgeskin export` and copy both files")
    return Artifact(path, card, side if side.is_file() else None, sha, verified=expected == sha)
