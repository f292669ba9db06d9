"""Reusable training pieces: seeding, LR schedule, class weights, the train loader, one epoch.

Shared by `train` and by `compress` (pruning fine-tune and quantization-aware training).
"""

from __future__ import annotations

import math
import multiprocessing
import random
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from edgeskin.progress import progress

from edgeskin.config import TrainConfig
from edgeskin.data.transforms import ArrayDataset, get_augment, normalize, train_transform
from edgeskin.predict import amp_dtype
from torchvision.transforms import v2  # after edgeskin.data.transforms, which loads the CPU-torch compat

FOCAL_GAMMA = 2.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def replan(state: dict, max_minutes: float | None, epochs: int) -> None:
    """Fit the remaining epochs to a time budget from the mean epoch so far (after every epoch, so
    the budget holds even if epochs slow down). Needs state["epoch"], ["elapsed"] (seconds), and
    sets ["planned_epochs"], which the learning-rate schedule follows."""
    if max_minutes:
        left = int((max_minutes * 60 - state["elapsed"]) // (state["elapsed"] / state["epoch"]))
        state["planned_epochs"] = max(state["epoch"], min(epochs, state["epoch"] + left))


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to 1% of the base rate."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def class_weights(targets: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    return w / (w[counts > 0] * counts[counts > 0]).sum() * counts.sum()  # mean weight per image = 1


def sample_weights(cfg: TrainConfig, targets: np.ndarray, n_classes: int, sources: np.ndarray | None = None) -> np.ndarray:
    """Each training image's draw weight in the sampler: its class's frequency^-power or, with
    --balance-source, its (source, class) cell's, so a small clinic's melanomas are drawn as often
    as a big one's (every source then weighs in by the same rule as every class)."""
    if cfg.balance_source and sources is not None:
        from edgeskin.data.split import source_strata

        keys = source_strata(targets, sources)
        counts = np.bincount(keys)
        w = counts[keys].astype(np.float64) ** -cfg.balance_power
        return w / w.mean()
    return class_weights(targets, n_classes, cfg.balance_power)[targets]


def make_loader(cfg: TrainConfig, pixels: np.ndarray, targets: np.ndarray, n_classes: int, epoch: int,
                masks: np.ndarray | None = None, sources: np.ndarray | None = None, rank: int = 0, world: int = 1):
    """The epoch's training loader, seeded from (seed, epoch) so a resumed epoch replays exactly.
    With `masks`, batches are (images, labels, lesion masks) for --mask-guidance. Under torchrun
    (`world` > 1) this rank's share of the same sampler sequence (edgeskin.train.distributed)."""
    g = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
    aug = replace(get_augment(cfg.augment), vignette=cfg.vignette_augment, down_up=cfg.resolution_augment)
    ds = ArrayDataset(pixels, targets, train_transform(aug, cfg.input_size), masks)
    # Forked workers share the decoded images; spawned ones (the default inside a spawned process,
    # e.g. an ablation's side-by-side run) would each be sent a pickled copy of them every epoch.
    context = "fork" if cfg.workers and "fork" in multiprocessing.get_all_start_methods() else None
    common = dict(drop_last=True, num_workers=cfg.workers, generator=g, multiprocessing_context=context)
    if cfg.balance == "sampler":
        w = sample_weights(cfg, targets, n_classes, sources)
        sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), len(targets), replacement=True,
                                                         generator=g)
    elif world > 1:
        sampler = torch.utils.data.RandomSampler(ds, generator=g)  # what shuffle=True builds
    else:
        return torch.utils.data.DataLoader(ds, cfg.batch_size, shuffle=True, **common)
    if world > 1:
        from edgeskin.train.distributed import RankShard

        sampler = RankShard(sampler, rank, world)
    return torch.utils.data.DataLoader(ds, cfg.batch_size // world, sampler=sampler, **common)


class BalancedSoftmaxLoss(torch.nn.Module):
    """Cross-entropy on logits + log(prior): the network learns balanced-prior logits, so its plain
    argmax at inference aims at balanced error (Ren et al. 2020, "Balanced Meta-Softmax"; Menon et al.
    2021, logit adjustment). Nothing changes in the exported graph."""

    def __init__(self, log_prior: torch.Tensor, weight: torch.Tensor | None, label_smoothing: float):
        super().__init__()
        self.register_buffer("log_prior", log_prior)
        self.weight, self.label_smoothing = weight, label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits + self.log_prior, target, self.weight,
                                                 label_smoothing=self.label_smoothing)


class FocalLoss(torch.nn.Module):
    """Softmax focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"): cross-entropy
    scaled by (1 - p_true)^gamma, so images the network already gets right weigh less and the hard
    minority ones more. Takes class indices or soft targets (MixUp/CutMix); for soft targets p_true
    is the target-weighted probability. gamma 2 is the paper's default."""

    def __init__(self, weight: torch.Tensor | None, label_smoothing: float, gamma: float = FOCAL_GAMMA):
        super().__init__()
        self.weight, self.label_smoothing, self.gamma = weight, label_smoothing, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = torch.nn.functional.log_softmax(logits.float(), 1)
        indices = not target.is_floating_point()
        soft = torch.nn.functional.one_hot(target, logits.shape[1]).float() if indices else target
        p_true = (soft * logp.exp()).sum(1)
        # Class weights and the mean as torch's cross_entropy takes them (gamma 0 is exactly it):
        # index targets divide by the summed weight of their classes, soft targets by the batch size.
        norm = (soft * self.weight).sum() if indices and self.weight is not None else len(soft)
        if self.label_smoothing:
            soft = soft * (1 - self.label_smoothing) + self.label_smoothing / logits.shape[1]
        per_class = -soft * logp if self.weight is None else -soft * logp * self.weight
        return ((1 - p_true).clamp(min=0).pow(self.gamma) * per_class.sum(1)).sum() / norm


def make_loss(cfg: TrainConfig, targets: np.ndarray, n_classes: int, device: torch.device,
              sources: np.ndarray | None = None) -> torch.nn.Module:
    weight = None
    per_class = class_weights(targets, n_classes, cfg.balance_power)
    if cfg.balance == "loss":
        weight = torch.tensor(per_class, dtype=torch.float32, device=device)
    if cfg.loss == "balanced_softmax":
        # The prior the loss actually sees: a weighted sampler (or weighted loss) has already
        # reshaped the class frequencies, and correcting for the raw ones would overshoot.
        counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
        seen = counts * per_class if cfg.balance != "none" else counts
        if cfg.balance == "sampler" and cfg.balance_source and sources is not None:
            seen = np.bincount(targets, sample_weights(cfg, targets, n_classes, sources), n_classes)
        prior = np.maximum(seen, 1e-12) / seen.sum()
        return BalancedSoftmaxLoss(torch.tensor(np.log(prior), dtype=torch.float32), weight,
                                   cfg.label_smoothing).to(device)
    if cfg.loss == "focal":
        return FocalLoss(weight, cfg.label_smoothing).to(device)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def make_mixer(cfg: TrainConfig, n_classes: int) -> Callable | None:
    """torchvision's batch MixUp/CutMix, applied to a batch with probability cfg.mixup (soft targets)."""
    if cfg.mixup <= 0:
        return None
    choice = v2.RandomChoice([v2.MixUp(alpha=0.2, num_classes=n_classes), v2.CutMix(alpha=1.0, num_classes=n_classes)])

    def mix(x: torch.Tensor, y: torch.Tensor):
        if torch.rand(()) >= cfg.mixup:
            return x, y
        return choice(x, y)
    return mix


def make_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling only for fp16 autocast, whose small gradients underflow. bf16 has fp32's
    exponent range and needs none (torch AMP docs, "Gradient Scaling"); a disabled scaler's
    scale/step/update are plain backward/step."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)


def train_epoch(model, loader, opt, loss_fn, scaler, lr_fn: Callable[[int], float], mean, std, device,
                desc: str, after_step: Callable[[], None] | None = None, mix: Callable | None = None,
                distill: Callable | None = None, guide: Callable | None = None) -> float:
    """One pass over `loader`; the caller has set train/eval modes. Returns the mean loss.
    `distill(hard_loss, logits, x)` blends in a teacher's soft targets (edgeskin.train.distill);
    `guide(cams, y, masks)` adds a penalty on the CAM outside the lesion (edgeskin.train.guide)
    for loaders that serve masks."""
    dtype = amp_dtype(device)
    amp = dtype is not None
    running, bar = 0.0, progress(loader, desc, unit="batch")
    for i, (x, y, *masks) in enumerate(bar):
        for group in opt.param_groups:
            group["lr"] = lr_fn(i)
        x = normalize(x.to(device, non_blocking=True), mean, std)
        y = y.to(device)
        if mix is not None:
            x, y = mix(x, y)
        if amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float16, enabled=amp):
            if guide is not None and masks:  # the CAM head on the same features: one forward pass
                feats = model.forward_features(x)
                logits = model.head(feats)
                loss = loss_fn(logits, y) + guide(model.head.cam(feats), y, masks[0].to(device))
            else:
                logits = model(x)
                loss = loss_fn(logits, y)
            if distill is not None:
                loss = distill(loss, logits, x)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if after_step is not None:
            after_step()
        running += loss.item()
        bar.set_postfix(loss=f"{running / (i + 1):.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
    return running / max(1, len(loader))
