"""`edgeskin export`: the target format, precision and what validation checks."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.site import valid_recall

from edgeskin.errors import EdgeskinError


@dataclass(frozen=True)
class ExportConfig:
    run: str
    target: str = "onnx"
    precision: str = "fp32"  # int8 exports the run's QAT model (`edgeskin compress RUN --int8`)
    allow_degraded: bool = False  # keep going (exit 0) when validation fails
    cam_images: int = 64  # validation images whose CAM is compared with pytorch-grad-cam
    calib_images: int = 200  # training images that calibrate int8 .tflite
    int8_from: str = "qat"  # int8 source weights: "qat" (compress --int8) or "fp32" (converter calibration only)
    min_recall: float | None = None  # validation recall the card's positive class must reach (an operating point)

    def __post_init__(self) -> None:
        if self.int8_from not in ("qat", "fp32"):
            raise EdgeskinError(f"unknown --int8-from {self.int8_from!r}; choose one of ['fp32', 'qat']")
        if self.min_recall is not None and not valid_recall(self.min_recall):
            raise EdgeskinError(f"--min-recall {self.min_recall}: a recall is in (0, 1], e.g. --min-recall 0.7")
