"""The training loop, as numbered steps: data -> split -> model -> run dir -> epochs -> card.

Determinism: every epoch reseeds torch/numpy and the sampler from (seed, epoch), and the full
state is checkpointed after each epoch, so a killed-and-resumed run ends with exactly the
weights of an uninterrupted one (on the same device and thread count).

Under torchrun every rank runs these steps on its share of each batch (edgeskin.train.distributed);
validation is gathered so all ranks take the same decisions, and only rank 0 writes or prints.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import edgeskin._compat  # noqa: F401  (before timm, which imports torchvision, on CPU torch)

import torch
from timm.utils import ModelEmaV3
from tqdm.auto import tqdm

from edgeskin.card import ModelCard, Preprocessing, SplitInfo
from edgeskin.config import TrainConfig
from edgeskin.data.bundle import LabelledImages
from edgeskin.data.records import MALIGNANT, parse_label_map
from edgeskin.data.split import MANIFEST_FILE, PROTOCOL, SOURCE_PROTOCOL, Split, write_manifest
from edgeskin.data.transforms import channel_stats
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import quick_metrics
from edgeskin.fileio import sha256_file
from edgeskin.models import CAM_LAYER, build_model, model_for_card
from edgeskin.models.factory import count_params
from edgeskin.predict import describe_device, predict_logits, softmax
from edgeskin.train import checkpoint as ckpt
from edgeskin.train import distributed
from edgeskin.train.prepare import check_options, prepare_data
from edgeskin.train.engine import (epoch_seed, lr_at, make_loader, make_loss, make_mixer, make_scaler, replan,
                                   seed_everything, train_epoch)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    card: ModelCard
    best_epoch: int
    epochs_run: int
    stop_reason: str
    main: bool = True  # False on torchrun's other ranks, which write and print nothing


# The whole run ------------------------------------------------------------------------------

def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train from `cfg`, or continue the run folder `resume` with the config saved in it.
    `on_epoch(epoch, val_metrics)` is called after each epoch's checkpoint (`edgeskin tune`'s
    pruner reports there, and may stop the run by raising)."""
    if (cfg is None) == (resume is None):
        raise EdgeskinError("pass either a training config or a run folder to resume, not both")
    if resume is not None:
        run_dir = Path(resume)
        cfg = replace(TrainConfig.load(run_dir / ckpt.CONFIG), split_manifest=str(run_dir / MANIFEST_FILE))
        state = ckpt.load_state(run_dir)
    check_options(cfg)
    d, device = distributed.setup(cfg.device, cfg.batch_size)
    if d.on and cfg.mask_guidance:  # its CAM penalty calls the model's parts, around DDP's gradient hooks
        raise EdgeskinError(f"--mask-guidance {cfg.mask_guidance} under torchrun ({d.world} processes); "
                            "train mask-guided runs in one process")
    # Steps 1-2: everything that can fail on bad input happens before the run directory exists.
    with d.main_first():
        data, split = prepare_data(cfg)
    train_idx, val_idx = split.indices("train"), split.indices("val")
    mean, std = channel_stats(data.pixels[train_idx])
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.tensor(std, dtype=torch.float32, device=device)
    # Step 3: model (seeded, so the initial weights are reproducible).
    seed_everything(cfg.seed)
    model = build_model(cfg.backbone, len(data.task.labels), cfg.head, cfg.input_size, cfg.drop_rate,
                        cfg.pretrained, cfg.weights, cfg.weights_sha256).to(device)
    if cfg.weights:  # (SHA-256 checked by now) self-supervised weights must not have seen held-out images
        from edgeskin.train.pretrain import check_unseen

        check_unseen(cfg.weights, [d for d, a in zip(data.digests, split.assignment) if a != "train"])
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(device)
    n_classes = len(data.task.labels)
    loss_fn = make_loss(cfg, data.targets[train_idx], n_classes, device, data.sources[train_idx])
    mix = make_mixer(cfg, n_classes)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None
    distill = _distiller(cfg, data, split, mean_t, std_t, device)
    guide, masks = _mask_guide(cfg, data, train_idx)
    # Step 4: the run directory, with its config and split manifest (rank 0 makes it).
    if resume is None:
        run_dir = _new_run(cfg, data, split) if d.main else None
        run_dir = d.broadcast(run_dir)
        state = {"epoch": 0, "planned_epochs": cfg.epochs, "best_score": -1.0, "best_epoch": -1,
                 "bad_epochs": 0, "history": [], "elapsed": 0.0}
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    net = distributed.wrap(model, d, device)  # after a resume's weights are in: DDP broadcasts rank 0's
    say = print if d.main else (lambda *_: None)
    say(f"edgeskin train: {run_dir}  ({len(train_idx)} train / {len(val_idx)} val images, device {device}"
        + (f", {d.world} processes" if d.on else "") + ")")
    # Step 5: epochs, each ending in validation and an atomic checkpoint.
    stop_reason = "epochs done"
    while state["epoch"] < state["planned_epochs"]:
        epoch, t0 = state["epoch"], time.time()
        seed_everything(epoch_seed(cfg.seed, epoch) + d.rank * 1_000_003)  # the ranks' augmentations differ
        loader = make_loader(cfg, data.pixels[train_idx], data.targets[train_idx], n_classes, epoch, masks,
                             data.sources[train_idx], d.rank, d.world)
        steps, warmup = len(loader), int(cfg.warmup_epochs * len(loader))
        model.train()
        step = [epoch * steps]  # the EMA warm-up counts optimizer steps across epochs (and resumes)

        def update_ema() -> None:
            step[0] += 1
            ema.update(model, step=step[0])
        loss = train_epoch(net, loader, opt, loss_fn, scaler,
                           lambda i: lr_at(epoch * steps + i, state["planned_epochs"] * steps, warmup, cfg.lr),
                           mean_t, std_t, device, f"epoch {epoch + 1}/{state['planned_epochs']}",
                           after_step=update_ema if ema is not None else None, mix=mix, distill=distill,
                           guide=guide)
        loss = d.mean(loss)
        judged = ema.module if ema is not None else model  # the weights that are validated and saved
        mine = d.shard(val_idx)
        probs = softmax(d.gather_rows(predict_logits(judged, data.pixels[mine], mean, std, device), len(val_idx)))
        val = quick_metrics(data.targets[val_idx], probs)
        state["elapsed"] += time.time() - t0
        state["history"].append({"epoch": epoch + 1, "train_loss": loss, **{f"val_{k}": v for k, v in val.items()}})
        improved = val["balanced_accuracy"] > state["best_score"] + 1e-6
        if improved:
            state.update(best_score=val["balanced_accuracy"], best_epoch=epoch + 1, bad_epochs=0)
            if d.main:
                ckpt.save(run_dir / ckpt.BEST, judged.state_dict())
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        # Every rank replans from the same elapsed time (rank 0's), so none runs an epoch alone.
        state["elapsed"] = d.broadcast(state["elapsed"])
        replan(state, cfg.max_minutes, cfg.epochs)
        if d.main:
            ckpt.save(run_dir / ckpt.LAST, {**state, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                            "scaler": scaler.state_dict(),
                                            **({"ema": ema.state_dict()} if ema is not None else {})})
        if d.main:
            tqdm.write(f"epoch {epoch + 1}/{state['planned_epochs']}  loss {loss:.4f}  "
                       f"val bal_acc {val['balanced_accuracy']:.4f}  auc {val['auc_macro']:.4f}  "
                       f"best {state['best_score']:.4f}@{state['best_epoch']}  {time.time() - t0:.1f}s")
        if on_epoch is not None:
            on_epoch(epoch + 1, val)
        if state["bad_epochs"] >= cfg.patience:
            stop_reason = f"early stop: no val balanced-accuracy gain for {cfg.patience} epochs"
            break
    if stop_reason == "epochs done" and state["planned_epochs"] < cfg.epochs:
        stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
    # Step 6: the model card, describing the best weights.
    card = None
    if d.main:
        card = _write_card(cfg, run_dir, data, split, model, mean, std, state, describe_device(device))
        if cfg.clinical:  # Step 7: the clinical-context prior, on the best weights' validation logits
            card = _fit_clinical(card, run_dir, data, split, mean, std, device)
    card = d.broadcast(card)
    distributed.teardown(d)
    say(f"edgeskin train: done ({stop_reason}); best val balanced accuracy {state['best_score']:.4f} "
          f"at epoch {state['best_epoch']}; card {run_dir / 'model_card.json'}")
    return TrainResult(run_dir, card, state["best_epoch"], state["epoch"], stop_reason, d.main)


def _new_run(cfg: TrainConfig, data: LabelledImages, split: Split) -> Path:
    run_dir = ckpt.new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
    if cfg.exist_ok and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cfg.save(run_dir / ckpt.CONFIG)
    write_manifest(run_dir / MANIFEST_FILE, data.samples, data.digests, split, data.task.labels, data.targets)
    return run_dir


def _distiller(cfg: TrainConfig, data: LabelledImages, split: Split, mean_t, std_t, device):
    if not cfg.teacher:
        return None
    from edgeskin.train.distill import Distiller, load_teachers  # imports evaluate, which imports train

    teachers = load_teachers(cfg, data.task.labels, data.samples, split, device)
    return Distiller(teachers, cfg.distill_alpha, cfg.distill_temperature, mean_t, std_t)


def _mask_guide(cfg: TrainConfig, data: LabelledImages, train_idx):
    """(MaskGuide, the training images' lesion masks) for --mask-guidance, else (None, None)."""
    if not cfg.mask_guidance:
        return None, None
    from edgeskin.train.guide import MaskGuide, training_masks

    return MaskGuide(cfg.mask_guidance), training_masks(data, train_idx)


def _fit_clinical(card: ModelCard, run_dir, data: LabelledImages, split: Split, mean, std, device) -> ModelCard:
    from edgeskin.train.clinical import add_prior

    model = model_for_card(card).to(device)
    model.load_state_dict(ckpt.load_weights(run_dir))
    val = split.indices("val")
    return add_prior(card, run_dir, data, split, predict_logits(model, data.pixels[val], mean, std, device))


def _write_card(cfg, run_dir, data, split, model, mean, std, state, hardware: str) -> ModelCard:
    best = state["history"][state["best_epoch"] - 1]
    card = ModelCard(
        task=data.task.name, labels=data.task.labels, positive_label=data.task.positive_label,
        malignant_labels=tuple(k for k in data.task.labels if k in MALIGNANT or k == "malignant"),
        preprocessing=Preprocessing(input_size=tuple(cfg.input_size), mean=mean, std=std,
                                    color_constancy=cfg.color_constancy),
        backbone=cfg.backbone, head=cfg.head, cam_layer=CAM_LAYER, num_params=count_params(model),
        split=SplitInfo(_protocol(cfg, data), cfg.seed, cfg.val_fraction, cfg.test_fraction, MANIFEST_FILE,
                        split.counts(data.targets, data.task.labels)),
        data=_data_record(cfg, data), weights={"file": ckpt.BEST, "sha256": sha256_file(run_dir / ckpt.BEST)},
        recipe=cfg.recipe,
        metrics={"val": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
                 "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
                 "train_minutes": round(state["elapsed"] / 60, 2), "train_hardware": hardware},
    )
    card.save(run_dir)
    return card


def _protocol(cfg: TrainConfig, data: LabelledImages) -> str:
    protocol = SOURCE_PROTOCOL if len(data.source.sources) > 1 else PROTOCOL
    return protocol + (f"; test = all of source {cfg.holdout_source} (leave-one-source-out)"
                       if cfg.holdout_source else "")


def _data_record(cfg: TrainConfig, data: LabelledImages) -> dict:
    """The card's `data`: where the images came from, per source, and how labels and borders were
    handled. The vignette and resolution augmentations act in training only: the device resizes the
    whole photo to the input size and does nothing else."""
    return {**data.source.describe(), "label_map": dict(parse_label_map(cfg.label_map)),
            "holdout_source": cfg.holdout_source, "balance_source": cfg.balance_source,
            "vignette_augment": cfg.vignette_augment, "resolution_augment": cfg.resolution_augment}
