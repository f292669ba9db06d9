"""A run's full-int8 .tflite for the benchmark scripts: exported by `edgeskin export` (in its own
process, so TensorFlow's memory goes when it ends) and reused while the file's card still has the
operating point and clinical prior asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgeskin.card import ModelCard
from edgeskin.export.pipeline import artifact_name


def exported_card(tflite: Path) -> ModelCard:
    """The card `edgeskin export` wrote beside the file (what the device reads)."""
    return ModelCard.from_dict(json.loads(Path(f"{tflite}.json").read_text())["model_card"])


def int8_tflite(run: Path, calib_images: int = 500, min_recall: float | None = None, reuse: bool = True,
                allow_degraded: bool = False) -> Path:
    """RUN/export/<name>_int8.tflite from the fp32 weights, calibrated on `calib_images` training
    images, with the melanoma operating point at `min_recall` (None: none)."""
    card = ModelCard.load(run)
    path = run / "export" / artifact_name(card, "int8", ".tflite")
    side = Path(f"{path}.json")
    exported = json.loads(side.read_text())["model_card"] if side.is_file() else {}
    same = ((exported.get("operating_point") or {}).get("min_recall") == min_recall
            and exported.get("clinical") == card.clinical)
    if not (reuse and path.is_file() and same):
        options = ["--min-recall", str(min_recall)] if min_recall is not None else []
        options += ["--allow-degraded"] if allow_degraded else []
        subprocess.run([sys.executable, "-m", "edgeskin", "export", str(run), "--target", "tflite", "--precision",
                        "int8", "--int8-from", "fp32", "--calib-images", str(calib_images), *options], check=True)
    return path
