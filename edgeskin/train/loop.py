"""The training loop, as numbered steps: data -> split -> model -> run dir -> epochs -> card.

Determinism: every epoch reseeds torch/numpy and the sampler from (seed, epoch), and the full
state is checkpointed after each epoch, so a killed-and-resumed run ends with exactly the
weights of an uninterrupted one (on the same device and thread count).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeskin.card import ModelCard, Preprocessing, SplitInfo
from edgeskin.config import TrainConfig
from edgeskin.data.bundle import LabelledImages, load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.split import MANIFEST_FILE, PROTOCOL, Split, make_split, read_manifest, write_manifest
from edgeskin.data.transforms import ArrayDataset, channel_stats, get_augment, normalize, train_transform
from edgeskin.evaluate.metrics import quick_metrics
from edgeskin.fileio import sha256_file
from edgeskin.models import CAM_LAYER, build_model
from edgeskin.models.factory import count_params
from edgeskin.predict import predict_logits, resolve_device, softmax
from edgeskin.train import checkpoint as ckpt


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    card: ModelCard
    best_epoch: int
    epochs_run: int
    stop_reason: str


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


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


# Step 0: options that can be checked without touching the data --------------------------------

def check_options(cfg: TrainConfig) -> None:
    """Fail in a second on a typo, not after decoding ten thousand images."""
    from edgeskin.data.transforms import get_augment
    from edgeskin.errors import EdgeskinError
    from edgeskin.models.factory import check_backbone, check_head

    get_task(cfg.task)
    get_augment(cfg.augment)
    check_backbone(cfg.backbone)
    check_head(cfg.head)
    for option, value in (("--split-manifest", cfg.split_manifest), ("--weights", cfg.weights)):
        if value and not Path(value).is_file():
            raise EdgeskinError(f"{option} {value} does not exist; pass an existing file")
    if cfg.weights and not cfg.weights_sha256:
        raise EdgeskinError(f"--weights {cfg.weights} needs --weights-sha256 (get it with `sha256sum {cfg.weights}`)")


# Step 1-2: data and split -------------------------------------------------------------------

def prepare_data(cfg: TrainConfig) -> tuple[LabelledImages, Split]:
    task = get_task(cfg.task)
    data = load_labelled(cfg.data, task, cfg.input_size, cfg.max_images, cfg.seed)
    if cfg.split_manifest:
        split, keep = read_manifest(cfg.split_manifest, data.samples, data.digests)
        data = data.subset(keep)
    else:
        split = make_split(data.samples, data.targets, data.digests, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    if len(split.indices("train")) == 0 or len(split.indices("val")) == 0:
        from edgeskin.errors import EdgeskinError

        raise EdgeskinError("the split has an empty train or val side; add images or check --split-manifest")
    return data, split


# Step 5: one epoch ------------------------------------------------------------------------

def _loader(cfg: TrainConfig, data: LabelledImages, train_idx: np.ndarray, epoch: int):
    g = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    y = data.targets[train_idx]
    ds = ArrayDataset(data.pixels[train_idx], y, train_transform(get_augment(cfg.augment), cfg.input_size))
    if cfg.balance == "sampler":
        w = class_weights(y, len(data.task.labels), cfg.balance_power)[y]
        sampler = torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), len(y), replacement=True, generator=g)
        return torch.utils.data.DataLoader(ds, cfg.batch_size, sampler=sampler, drop_last=True,
                                           num_workers=cfg.workers, generator=g)
    return torch.utils.data.DataLoader(ds, cfg.batch_size, shuffle=True, drop_last=True,
                                       num_workers=cfg.workers, generator=g)


def _train_epoch(model, loader, opt, loss_fn, scaler, state, cfg, mean, std, device, epoch) -> float:
    model.train()
    steps_per_epoch = len(loader)
    total = state["planned_epochs"] * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    running, bar = 0.0, tqdm(loader, desc=f"epoch {epoch + 1}/{state['planned_epochs']}", leave=False, disable=None)
    for i, (x, y) in enumerate(bar):
        for group in opt.param_groups:
            group["lr"] = lr_at(epoch * steps_per_epoch + i, total, warmup, cfg.lr)
        x = normalize(x.to(device, non_blocking=True), mean, std)
        if amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(model(x), y.to(device))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        running += loss.item()
        bar.set_postfix(loss=f"{running / (i + 1):.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
    return running / max(1, steps_per_epoch)


# The whole run ------------------------------------------------------------------------------

def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    if resume is not None:
        run_dir = Path(resume)
        cfg = replace(TrainConfig.load(run_dir / ckpt.CONFIG), split_manifest=str(run_dir / MANIFEST_FILE))
        state = ckpt.load_state(run_dir)
    check_options(cfg)
    device = resolve_device(cfg.device)
    # Steps 1-2: everything that can fail on bad input happens before the run directory exists.
    data, split = prepare_data(cfg)
    train_idx, val_idx = split.indices("train"), split.indices("val")
    mean, std = channel_stats(data.pixels[train_idx])
    # Step 3: model (seeded, so the initial weights are reproducible).
    seed_everything(cfg.seed)
    model = build_model(cfg.backbone, len(data.task.labels), cfg.head, cfg.input_size, cfg.drop_rate,
                        cfg.pretrained, cfg.weights, cfg.weights_sha256).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    weight = None
    if cfg.balance == "loss":
        weight = torch.tensor(class_weights(data.targets[train_idx], len(data.task.labels), cfg.balance_power),
                              dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    # Step 4: the run directory, with its config and split manifest.
    if resume is None:
        run_dir = ckpt.new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
        if cfg.exist_ok and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        cfg.save(run_dir / ckpt.CONFIG)
        write_manifest(run_dir / MANIFEST_FILE, data.samples, data.digests, split, data.task.labels, data.targets)
        state = {"epoch": 0, "planned_epochs": cfg.epochs, "best_score": -1.0, "best_epoch": -1,
                 "bad_epochs": 0, "history": [], "elapsed": 0.0}
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
    print(f"edgeskin train: {run_dir}  ({len(train_idx)} train / {len(val_idx)} val images, device {device})")
    # Step 5: epochs, each ending in validation and an atomic checkpoint.
    mean_t = torch.tensor(mean, device=device)
    std_t = torch.tensor(std, device=device)
    stop_reason = "epochs done"
    while state["epoch"] < state["planned_epochs"]:
        epoch, t0 = state["epoch"], time.time()
        seed_everything(_epoch_seed(cfg.seed, epoch))
        loss = _train_epoch(model, _loader(cfg, data, train_idx, epoch), opt, loss_fn, scaler, state, cfg,
                            mean_t, std_t, device, epoch)
        probs = softmax(predict_logits(model, data.pixels[val_idx], mean, std, device))
        val = quick_metrics(data.targets[val_idx], probs)
        state["elapsed"] += time.time() - t0
        state["history"].append({"epoch": epoch + 1, "train_loss": loss, **{f"val_{k}": v for k, v in val.items()}})
        improved = val["balanced_accuracy"] > state["best_score"] + 1e-6
        if improved:
            state.update(best_score=val["balanced_accuracy"], best_epoch=epoch + 1, bad_epochs=0)
            ckpt.save(run_dir / ckpt.BEST, model.state_dict())
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if cfg.max_minutes:  # re-plan every epoch, so the budget holds even if epochs slow down
            per_epoch = state["elapsed"] / state["epoch"]
            left = int((cfg.max_minutes * 60 - state["elapsed"]) // per_epoch)
            state["planned_epochs"] = max(state["epoch"], min(cfg.epochs, state["epoch"] + left))
        ckpt.save(run_dir / ckpt.LAST, {**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                        "scaler": scaler.state_dict()})
        tqdm.write(f"epoch {epoch + 1}/{state['planned_epochs']}  loss {loss:.4f}  "
                   f"val bal_acc {val['balanced_accuracy']:.4f}  auc {val['auc_macro']:.4f}  "
                   f"best {state['best_score']:.4f}@{state['best_epoch']}  {time.time() - t0:.1f}s")
        if state["bad_epochs"] >= cfg.patience:
            stop_reason = f"early stop: no val balanced-accuracy gain for {cfg.patience} epochs"
            break
    if stop_reason == "epochs done" and state["planned_epochs"] < cfg.epochs:
        stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
    # Step 6: the model card, describing the best weights.
    card = _write_card(cfg, run_dir, data, split, model, mean, std, state)
    print(f"edgeskin train: done ({stop_reason}); best val balanced accuracy {state['best_score']:.4f} "
          f"at epoch {state['best_epoch']}; card {run_dir / 'model_card.json'}")
    return TrainResult(run_dir, card, state["best_epoch"], state["epoch"], stop_reason)


def _write_card(cfg, run_dir, data, split, model, mean, std, state) -> ModelCard:
    best = state["history"][state["best_epoch"] - 1]
    card = ModelCard(
        task=data.task.name, labels=data.task.labels, positive_label=data.task.positive_label,
        preprocessing=Preprocessing(input_size=tuple(cfg.input_size), mean=mean, std=std),
        backbone=cfg.backbone, head=cfg.head, cam_layer=CAM_LAYER, num_params=count_params(model),
        split=SplitInfo(PROTOCOL, cfg.seed, cfg.val_fraction, cfg.test_fraction, MANIFEST_FILE,
                        split.counts(data.targets, data.task.labels)),
        data=data.source.describe(), weights={"file": ckpt.BEST, "sha256": sha256_file(run_dir / ckpt.BEST)},
        recipe=cfg.recipe,
        metrics={"val": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
                 "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
                 "train_minutes": round(state["elapsed"] / 60, 2)},
    )
    card.save(run_dir)
    return card
