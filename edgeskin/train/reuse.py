"""Train a run unless it is already there: what a re-run of a multi-run job (an ablation, a
distillation chain) does with each of its runs, so a killed job goes on where it stopped."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from edgeskin.config import TrainConfig
from edgeskin.train.checkpoint import CONFIG, LAST


def same_recipe(a: TrainConfig, b: TrainConfig) -> bool:
    """Equal but for where the run trains: device and loader processes pick the hardware, not the
    recipe (workers do change the augmentation's random stream, as a new seed would, not its law)."""
    return replace(a, device=b.device, workers=b.workers) == b


def train_or_reuse(tcfg: TrainConfig) -> Path:
    """A finished run with the same recipe is reused, a killed one resumed from its last epoch;
    anything else (another config) is trained from scratch."""
    from edgeskin.train import train

    run_dir = Path(tcfg.project) / tcfg.name
    saved = run_dir / CONFIG
    # Compared as TrainConfigs, so a run saved before a new (defaulted) field existed still matches.
    same = saved.is_file() and same_recipe(TrainConfig.load(saved), tcfg)
    if same and (run_dir / "model_card.json").is_file():
        return run_dir
    if same and (run_dir / LAST).is_file():
        return train(resume=run_dir).run_dir
    return train(tcfg).run_dir


def train_side_by_side(configs: list[TrainConfig], parallel: int) -> list[Path]:
    """Train (or reuse) runs in up to `parallel` fresh processes at once. Spawned, not forked: a
    forked child would inherit the parent's CUDA context, which CUDA does not allow."""
    if parallel <= 1:
        return [train_or_reuse(c) for c in configs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(parallel, len(configs)), mp_context=ctx) as pool:
        return [future.result() for future in [pool.submit(train_or_reuse, c) for c in configs]]  # re-raises
