"""`edgeskin benchmark`: artifacts, thread counts, devices and repetitions."""

from __future__ import annotations

from dataclasses import dataclass

from edgeskin.errors import EdgeskinError


@dataclass(frozen=True)
class BenchmarkConfig:
    run: str
    targets: tuple[str, ...] = ()  # empty: torch fp32 and every exported .onnx/.tflite of the run
    threads: tuple[int, ...] = (1, 4)  # one "this host" device profile per thread count
    imports: tuple[str, ...] = ()  # `edge_runtime benchmark --json` files from other devices
    split: str = "test"
    runs: int = 50
    warmup: int = 5
    cam_images: int = 64
    cold_start: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("val", "test"):
            raise EdgeskinError(f"unknown --split {self.split!r}; choose one of ['test', 'val']")
        if not self.threads or min(self.threads) < 1:
            raise EdgeskinError(f"--threads {list(self.threads)} must be positive integers, e.g. 1,4")
        if self.runs < 1 or self.warmup < 0:
            raise EdgeskinError(f"--runs {self.runs} must be >= 1 and --warmup {self.warmup} >= 0")
