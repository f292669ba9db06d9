"""`edgeskin ensemble` and `edgeskin chain`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeskin.config.common import Resumable, raise_first_failed


@dataclass(frozen=True)
class EnsembleConfig:
    runs: tuple[str, ...]  # finished `edgeskin train` runs on one split
    project: str = "runs/train"
    name: str = "ensemble"
    exist_ok: bool = False
    bootstrap: int = 1000  # resamples for the validation report's 95% CIs
    device: str = "auto"


# TrainConfig fields a distillation chain sets for each of its runs (so no recipe or option may).
CHAIN_SETS = ("epochs", "seed", "teacher", "project", "name", "exist_ok")


@dataclass(frozen=True)
class ChainConfig(Resumable):
    """`edgeskin chain`: generations of runs, each generation's runs (one per seed) distilled from
    all of the one before (edgeskin.ensemble.chain). `overrides`: TrainConfig fields over the recipe's."""
    _command = "chain"
    recipe: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    generations: tuple[int, ...] = ()  # epochs of each generation (edgeskin.ensemble.chain.chain_config)
    seeds: tuple[int, ...] = (0, 1, 2)
    parallel: int = 1  # a generation's runs trained side by side (on a GPU)
    project: str = "runs/chain"
    name: str = "chain"
    exist_ok: bool = False

    def __post_init__(self) -> None:
        set_here = sorted(set(self.overrides) & set(CHAIN_SETS))
        raise_first_failed([
            (not set_here, f"option {set_here} for a chain; the chain sets {list(CHAIN_SETS)} for each run"),
            (bool(self.generations) and min(self.generations) >= 1,
             f"--generations {list(self.generations)}; give each generation's epochs, e.g. 12,12,18,18"),
            (bool(self.seeds) and min(self.seeds) >= 0 and len(set(self.seeds)) == len(self.seeds),
             f"--seeds {list(self.seeds)}; give distinct non-negative seeds, e.g. 0,1,2"),
            (self.parallel >= 1, f"--parallel {self.parallel}; use 1 or more runs at once"),
        ])

