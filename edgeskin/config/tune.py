"""`edgeskin tune`: an Optuna study over a recipe's training options."""

from __future__ import annotations

from dataclasses import dataclass

from edgeskin.config.common import raise_first_failed

PARAMS = ("lr", "weight_decay", "label_smoothing", "augment", "mixup", "input_size", "width")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class TuneConfig:
    recipe: str | None = None
    train: tuple[tuple[str, object], ...] = ()  # explicit train options every trial shares
    trials: int = 20  # the study ends when this many trials have finished (complete or pruned)
    params: tuple[str, ...] = PARAMS
    storage: str | None = None  # any Optuna RDB URL; default sqlite in the study folder
    study: str = "tune"
    pruner: str = "median"
    heartbeat_s: int = 60  # a trial whose process died is failed and retried after 2 heartbeats
    seed: int = 0  # the TPE sampler's
    project: str = "runs/tune"

    def __post_init__(self) -> None:
        unknown = [p for p in self.params if p not in PARAMS]
        raise_first_failed([
            (self.trials >= 1, f"--trials {self.trials}; use 1 or more"),
            (not unknown, f"--params {','.join(unknown)}; choose from {','.join(PARAMS)}"),
            (len(self.params) >= 1, "--params (none given); choose from " + ",".join(PARAMS)),
            (self.pruner in PRUNERS, f"--pruner {self.pruner!r}; choose one of {list(PRUNERS)}"),
            (self.heartbeat_s >= 1, f"--heartbeat {self.heartbeat_s}; use 1 or more seconds"),
            (bool(self.study) and "/" not in self.study, f"--study {self.study!r}; use a plain name"),
        ])
