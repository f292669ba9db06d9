"""`edgeskin compress`: pruning and INT8 quantization-aware training."""

from __future__ import annotations

from dataclasses import dataclass

from edgeskin.config.common import DEVICES
from edgeskin.errors import EdgeskinError

PRUNE_MODES = ("magnitude", "structured")


@dataclass(frozen=True)
class CompressConfig:
    run: str
    int8: bool = False
    prune: float | None = None  # fraction of weights (magnitude) or channels (structured) to remove
    prune_mode: str = "magnitude"
    epochs: int = 3  # fine-tuning epochs after pruning, and quantization-aware training epochs
    lr_scale: float = 0.05  # QAT learning rate as a fraction of the run's training LR
    prune_lr_scale: float = 0.5  # pruning fine-tune LR: removed channels need real retraining
    calib_images: int = 300  # training images for post-training quantization statistics
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.int8 or self.prune is not None, "nothing to do; pass --int8 and/or --prune RATIO"),
            (self.prune is None or 0 < self.prune < 1, f"--prune {self.prune} is outside (0, 1); use e.g. 0.3"),
            (self.prune_mode in PRUNE_MODES, f"--prune-mode {self.prune_mode!r}; choose one of {list(PRUNE_MODES)}"),
            (self.epochs >= 1, f"--epochs {self.epochs}; use 1 or more"),
            (self.lr_scale > 0 and self.prune_lr_scale > 0, "--lr-scale/--prune-lr-scale must be positive"),
            (self.calib_images >= 1, f"--calib-images {self.calib_images}; use 1 or more"),
            (self.device in DEVICES, f"--device {self.device!r}; choose one of {list(DEVICES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise EdgeskinError(message)
