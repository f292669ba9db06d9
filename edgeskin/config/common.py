"""What every stage's config shares: the device choice, saving a config into its run folder
and reading it back for --resume, and the check list a config fails on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edge_runtime.preprocess import CONSTANCY

from edgeskin.errors import EdgeskinError
from edgeskin.fileio import write_json

DEVICES = ("auto", "cpu", "cuda")


def shared_checks(cfg: Any) -> list[tuple[bool, str]]:
    """The option checks `train` and `pretrain` share (same fields, same meaning)."""
    return [
        (cfg.color_constancy in CONSTANCY,
         f"--color-constancy {cfg.color_constancy!r}; choose one of {list(CONSTANCY)}"),
        (cfg.device in DEVICES, f"--device {cfg.device!r}; choose one of {list(DEVICES)}"),
        (cfg.epochs >= 1, f"--epochs {cfg.epochs}; use 1 or more"),
        (cfg.workers >= 0, f"--workers {cfg.workers}; use 0 (load in the training process) or more"),
        (cfg.lr > 0, f"--lr {cfg.lr}; use a positive learning rate"),
        (all(16 <= s <= 1024 for s in cfg.input_size), f"--input-size {cfg.input_size}; use 16..1024 pixels"),
        (cfg.max_images is None or cfg.max_images >= 20, f"--max-images {cfg.max_images}; use 20 or more"),
        (cfg.max_minutes is None or cfg.max_minutes > 0,
         f"--max-minutes {cfg.max_minutes}; use a positive number of minutes (or leave it out)"),
    ]


def save_config(cfg: Any, path: Path) -> None:
    """The run folder's config.json, which --resume reads back with load_saved."""
    write_json(path, dataclasses.asdict(cfg))


def load_saved(cls, path: Path, command: str):
    """A config saved in a run folder (config.json), for --resume. JSON has no tuples, and every
    list-valued field is a tuple; keys an older version did not write take their defaults."""
    if not path.is_file():
        raise EdgeskinError(f"{path} not found; --resume needs a run directory written by `edgeskin {command}`")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(path.read_text()).items()})


def raise_first_failed(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise EdgeskinError(f"invalid {message}")


class Resumable:
    """A config saved in its run folder as config.json and read back by `--resume`. Each subclass
    names its command (`_command`, a plain class attribute, so not a dataclass field)."""

    _command = ""

    def save(self, path: Path) -> None:
        save_config(self, path)

    @classmethod
    def load(cls, path: Path):
        return load_saved(cls, path, cls._command)
