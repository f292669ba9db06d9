"""Short fine-tuning after pruning or for QAT, on the run's own training split and preprocessing,
keeping the weights of the best validation balanced accuracy."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeskin.config import TrainConfig
from edgeskin.data.bundle import LabelledImages
from edgeskin.metrics import quick_metrics
from edgeskin.predict import predict_logits, softmax
from edgeskin.train.engine import (epoch_seed, lr_at, make_loader, make_loss, make_scaler, seed_everything,
                                   train_epoch)


@dataclass(frozen=True)
class FineTuneSetup:
    """What every fine-tuning stage shares: the run's data, split and preprocessing."""

    data: LabelledImages
    idx: dict[str, np.ndarray]  # split name -> sample indices
    tcfg: TrainConfig  # the run's training config (augmentation, balancing, loss)
    epochs: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device


def finetune(model, setup: FineTuneSetup, lr: float, set_mode: Callable[[torch.nn.Module], None], label: str,
             after_step: Callable[[], None] | None = None) -> dict:
    """Fine-tune in place; returns the best epoch's validation metrics."""
    data, idx, tcfg, epochs, mean, std, device = (setup.data, setup.idx, setup.tcfg, setup.epochs, setup.mean,
                                                  setup.std, setup.device)
    n_classes = len(data.task.labels)
    train_x, train_y = data.pixels[idx["train"]], data.targets[idx["train"]]
    cfg = replace(tcfg, seed=tcfg.seed + 1)  # a fresh augmentation/sampling stream for fine-tuning
    loss_fn = make_loss(cfg, train_y, n_classes, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=tcfg.weight_decay)
    scaler = make_scaler(device)
    mean_t, std_t = torch.tensor(mean, device=device), torch.tensor(std, device=device)
    best, best_state = {"balanced_accuracy": -1.0}, None
    for epoch in range(epochs):
        seed_everything(epoch_seed(cfg.seed, epoch))
        loader = make_loader(cfg, train_x, train_y, n_classes, epoch)
        steps = len(loader)
        set_mode(model)
        loss = train_epoch(model, loader, opt, loss_fn, scaler, lambda i: lr_at(epoch * steps + i, epochs * steps,
                                                                                0, lr),
                           mean_t, std_t, device, f"{label} {epoch + 1}/{epochs}", after_step)
        val = quick_metrics(data.targets[idx["val"]],
                            softmax(predict_logits(model, data.pixels[idx["val"]], mean, std, device)))
        tqdm.write(f"{label} epoch {epoch + 1}/{epochs}  loss {loss:.4f}  val bal_acc {val['balanced_accuracy']:.4f}")
        if val["balanced_accuracy"] > best["balanced_accuracy"]:
            best, best_state = {**val, "epoch": epoch + 1}, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best
