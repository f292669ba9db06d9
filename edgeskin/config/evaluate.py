"""`edgeskin evaluate`: a run on its own split or on external data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalConfig:
    run: str
    data: str | None = None  # None: the run's own data and split manifest
    split: str = "test"
    bootstrap: int = 1000
    batch_size: int = 128
    device: str = "auto"
