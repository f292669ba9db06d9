"""A finished run, loaded back: its model (weights checked against the card's SHA-256) and its own
images, split as its manifest says. Used by training steps that start from earlier runs (teachers,
the clinical prior, ensembles) and by `evaluate`, so it sits below both."""

from __future__ import annotations

from pathlib import Path

import torch

from edgeskin.card import ModelCard
from edgeskin.config import TrainConfig
from edgeskin.data.bundle import LabelledImages, load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.split import Split, read_manifest
from edgeskin.models import model_for_card
from edgeskin.train import checkpoint as ckpt


def load_run_model(run_dir: Path, card: ModelCard, device: torch.device) -> torch.nn.Module:
    """The run's best weights, after checking they are the file its card describes."""
    state = ckpt.load_weights(run_dir, card.weights["sha256"], card.weights["file"])
    model = model_for_card(card)
    model.load_state_dict(state)
    return model.to(device).eval()


def run_data(run_dir: Path, card: ModelCard, constancy: bool = True) -> tuple[LabelledImages, Split]:
    """The run's own images as its model sees them (input size, colour constancy; `constancy=False`:
    before constancy), restricted and split as its manifest says."""
    tcfg = TrainConfig.load(run_dir / ckpt.CONFIG)
    data = load_labelled(tcfg.data, get_task(card.task), card.preprocessing.input_size, tcfg.max_images,
                         tcfg.seed, require_all_classes=False,
                         color_constancy=card.preprocessing.color_constancy if constancy else "none",
                         label_map=tcfg.label_map)
    split, keep = read_manifest(run_dir / card.split.manifest, data.samples, data.digests)
    return data.subset(keep), split


def card_label_map(card: ModelCard) -> tuple[str, ...]:
    """The SOURCE=LABEL pairs the run trained with, so external data is labelled the same way."""
    return tuple(f"{k}={v}" for k, v in (card.data.get("label_map") or {}).items())
