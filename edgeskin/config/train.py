"""`edgeskin train`, `pretrain` and `prior`: the configs of the training stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeskin.config.common import Resumable, raise_first_failed, shared_checks

BALANCE_MODES = ("sampler", "loss", "none")
LOSSES = ("ce", "balanced_softmax", "focal")


@dataclass(frozen=True)
class TrainConfig(Resumable):
    _command = "train"
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
        raise_first_failed(checks + shared_checks(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)



@dataclass(frozen=True)
class PretrainConfig(Resumable):
    """`edgeskin pretrain`: SimCLR on the train side of the split (edgeskin.train.pretrain). The
    data, backbone, input size, colour constancy and split fields mean what they mean in
    TrainConfig, and must match the `edgeskin train` run that starts from the weights (several
    sources, label map and held-out source included)."""
    _command = "pretrain"
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
        raise_first_failed([
            (self.batch_size >= 4, f"--batch-size {self.batch_size}; use 4 or more (each view needs negatives)"),
            (self.temperature > 0, f"--temperature {self.temperature}; use a positive value, e.g. 0.2"),
            (0.01 <= self.crop_scale <= 1, f"--crop-scale {self.crop_scale}; use a fraction in [0.01, 1]"),
        ] + shared_checks(self))



@dataclass(frozen=True)
class PriorConfig:
    run: str
    device: str = "auto"
