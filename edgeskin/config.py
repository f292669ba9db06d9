"""Frozen configs built by the CLI, and named training recipes (a registry of tiny builders)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.preprocess import CONSTANCY
from edge_runtime.site import valid_recall

from edgeskin.errors import EdgeskinError

BALANCE_MODES = ("sampler", "loss", "none")
LOSSES = ("ce", "balanced_softmax", "focal")
DEVICES = ("auto", "cpu", "cuda")


def _shared_checks(cfg: "TrainConfig | PretrainConfig") -> list[tuple[bool, str]]:
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


def _save(cfg: "TrainConfig | PretrainConfig", path: Path) -> None:
    """The run folder's config.json, which --resume reads back with _load_saved."""
    from edgeskin.fileio import write_json

    write_json(path, dataclasses.asdict(cfg))


def _load_saved(cls, path: Path, command: str):
    """A config saved in a run folder (config.json), for --resume. JSON has no tuples, and every
    list-valued field is a tuple; keys an older version did not write take their defaults."""
    if not path.is_file():
        raise EdgeskinError(f"{path} not found; --resume needs a run directory written by `edgeskin {command}`")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(path.read_text()).items()})


def _raise_first_failed(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise EdgeskinError(f"invalid {message}")


@dataclass(frozen=True)
class TrainConfig:
    data: str | tuple[str, ...] = "synthetic"  # several: pooled sources (each image tagged with its source)
    task: str = "multiclass"
    label_map: tuple[str, ...] = ()  # SOURCE=LABEL pairs, e.g. ("scc=akiec",): a source's extra diagnoses
    holdout_source: str | None = None  # leave-one-source-out: train+val on the others, test on all of it
    balance_source: bool = False  # the sampler balances (source, class) cells, not classes alone
    vignette_augment: float = 0.0  # probability an image gets a black dermoscope vignette (every source)
    resolution_augment: float = 0.0  # probability an image is downsampled (to 35-100%) and back up
    backbone: str = "mobilenetv3_small_100"
    head: str = "gap_linear"
    input_size: tuple[int, int] = (128, 128)  # (height, width)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: str = "sampler"  # weighted sampler, class-weighted loss, or none
    balance_power: float = 0.5  # class weight = frequency ** -power (0.5: 1/sqrt, 1: inverse)
    # balanced_softmax: logits + log(class prior seen in training) (Ren et al. 2020); focal: CE * (1-p)^2
    loss: str = "ce"
    augment: str = "standard"
    color_constancy: str = "none"  # "shades_of_gray": recorded in the card, applied on the device too
    mixup: float = 0.0  # probability that a batch is mixed (MixUp alpha 0.2 or CutMix alpha 1.0)
    ema_decay: float = 0.0  # EMA of weights (timm ModelEmaV3, warm-up); validated and saved if > 0
    teacher: tuple[str, ...] = ()  # finished runs whose ensemble is distilled into this one
    distill_alpha: float = 0.5  # weight of the distillation term (the labels get 1 - alpha)
    distill_temperature: float = 2.0
    # Weight of the penalty on CAM energy outside the lesion (edgeskin.train.guide); needs lesion masks
    mask_guidance: float = 0.0
    # Fit a prior from age, sex and body site (edgeskin.train.clinical) after training; the card carries it
    clinical: bool = False
    drop_rate: float = 0.2
    patience: int = 8  # early stopping on validation balanced accuracy
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_manifest: str | None = None
    pretrained: bool = False  # timm hub weights (needs network)
    weights: str | None = None  # or a local backbone checkpoint, checked by SHA-256
    weights_sha256: str | None = None
    max_minutes: float | None = None  # time budget: epochs are re-planned after the first one
    max_images: int | None = None  # a stratified subset, for quick runs
    device: str = "auto"
    workers: int = 0
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    recipe: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.balance in BALANCE_MODES, f"--balance {self.balance!r}; choose one of {list(BALANCE_MODES)}"),
            (self.loss in LOSSES, f"--loss {self.loss!r}; choose one of {list(LOSSES)}"),
            (0 <= self.mixup <= 1, f"--mixup {self.mixup}; use a probability in [0, 1]"),
            (self.ema_decay == 0 or 0.5 <= self.ema_decay < 1, f"--ema-decay {self.ema_decay}; use 0 (off) or [0.5, 1)"),
            (0 < self.distill_alpha <= 1, f"--distill-alpha {self.distill_alpha}; use a weight in (0, 1]"),
            (self.distill_temperature > 0, f"--distill-temperature {self.distill_temperature}; use a positive value"),
            (self.mask_guidance >= 0, f"--mask-guidance {self.mask_guidance}; use 0 (off) or a positive weight"),
            (not (self.mask_guidance and self.mixup), f"--mask-guidance {self.mask_guidance} with --mixup "
             f"{self.mixup}; a mixed image has no single lesion mask, so use one of them"),
            (0 <= self.vignette_augment <= 1, f"--vignette-augment {self.vignette_augment}; use a probability in [0, 1]"),
            (0 <= self.resolution_augment <= 1,
             f"--resolution-augment {self.resolution_augment}; use a probability in [0, 1]"),
            (not (self.balance_source and self.balance != "sampler"),
             f"--balance-source with --balance {self.balance}; source balancing is a sampler, use --balance sampler"),
            (self.batch_size >= 2, f"--batch-size {self.batch_size}; use 2 or more (BatchNorm needs it)"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing {self.label_smoothing}; use a value in [0, 1)"),
            (0 <= self.drop_rate < 1, f"--drop-rate {self.drop_rate}; use a value in [0, 1)"),
        ]
        _raise_first_failed(checks + _shared_checks(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        _save(self, path)

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return _load_saved(cls, path, "train")


@dataclass(frozen=True)
class PretrainConfig:
    """`edgeskin pretrain`: SimCLR on the train side of the split (edgeskin.train.pretrain). The
    data, backbone, input size, colour constancy and split fields mean what they mean in
    TrainConfig, and must match the `edgeskin train` run that starts from the weights (several
    sources, label map and held-out source included)."""
    data: str | tuple[str, ...] = "synthetic"
    task: str = "multiclass"
    label_map: tuple[str, ...] = ()
    holdout_source: str | None = None
    backbone: str = "mobilenetv3_small_100"
    input_size: tuple[int, int] = (128, 128)
    color_constancy: str = "none"
    epochs: int = 30
    batch_size: int = 128  # SimCLR contrasts each view with the batch's other 2N - 2: larger is better
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2  # NT-Xent temperature
    crop_scale: float = 0.25  # the views' random-resized-crop minimum area (SimCLR uses 0.08 on ImageNet)
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_manifest: str | None = None
    max_images: int | None = None
    max_minutes: float | None = None  # time budget, as in TrainConfig: epochs are re-planned after each
    device: str = "auto"
    workers: int = 0
    project: str = "runs/pretrain"
    name: str = "exp"
    exist_ok: bool = False

    def __post_init__(self) -> None:
        _raise_first_failed([
            (self.batch_size >= 4, f"--batch-size {self.batch_size}; use 4 or more (each view needs negatives)"),
            (self.temperature > 0, f"--temperature {self.temperature}; use a positive value, e.g. 0.2"),
            (0.01 <= self.crop_scale <= 1, f"--crop-scale {self.crop_scale}; use a fraction in [0.01, 1]"),
        ] + _shared_checks(self))

    def save(self, path: Path) -> None:
        _save(self, path)

    @classmethod
    def load(cls, path: Path) -> "PretrainConfig":
        return _load_saved(cls, path, "pretrain")


@dataclass(frozen=True)
class EvalConfig:
    run: str
    data: str | None = None  # None: the run's own data and split manifest
    split: str = "test"
    bootstrap: int = 1000
    batch_size: int = 128
    device: str = "auto"


@dataclass(frozen=True)
class PriorConfig:
    run: str
    device: str = "auto"


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
class ChainConfig:
    """`edgeskin chain`: generations of runs, each generation's runs (one per seed) distilled from
    all of the one before (edgeskin.train.chain). `overrides`: TrainConfig fields over the recipe's."""
    recipe: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    generations: tuple[int, ...] = ()  # epochs of each generation (edgeskin.train.chain.chain_config)
    seeds: tuple[int, ...] = (0, 1, 2)
    parallel: int = 1  # a generation's runs trained side by side (on a GPU)
    project: str = "runs/chain"
    name: str = "chain"
    exist_ok: bool = False

    def __post_init__(self) -> None:
        set_here = sorted(set(self.overrides) & set(CHAIN_SETS))
        _raise_first_failed([
            (not set_here, f"option {set_here} for a chain; the chain sets {list(CHAIN_SETS)} for each run"),
            (bool(self.generations) and min(self.generations) >= 1,
             f"--generations {list(self.generations)}; give each generation's epochs, e.g. 12,12,18,18"),
            (bool(self.seeds) and min(self.seeds) >= 0 and len(set(self.seeds)) == len(self.seeds),
             f"--seeds {list(self.seeds)}; give distinct non-negative seeds, e.g. 0,1,2"),
            (self.parallel >= 1, f"--parallel {self.parallel}; use 1 or more runs at once"),
        ])

    def train_config(self, generation: int, seed: int, teachers: tuple[str, ...], split_manifest: str,
                     run_dir: Path) -> TrainConfig:
        """The config of one run: generation `generation` (1-based), taught by `teachers`."""
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides.items()}  # from JSON
        if split_manifest:  # it lists the --max-images subset, one for all seeds (a run's own is per seed)
            given["max_images"] = None
        return recipe_config(self.recipe, {**given, "epochs": self.generations[generation - 1],
                                           "seed": seed, "teacher": teachers, "split_manifest": split_manifest,
                                           "project": str(run_dir.parent), "name": run_dir.name, "exist_ok": True})

    def save(self, path: Path) -> None:
        _save(self, path)

    @classmethod
    def load(cls, path: Path) -> "ChainConfig":
        return _load_saved(cls, path, "chain")


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


# The recipes live in their own module; importing them here keeps `from edgeskin.config import
# RECIPES, recipe_config` working (recipes.py imports this module only inside its functions).
from edgeskin.recipes import (CHAINS, RECIPES, pretrain_config, recipe_config,  # noqa: E402,F401
                              register_recipe)
