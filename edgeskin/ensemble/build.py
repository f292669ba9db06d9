"""`edgeskin ensemble RUN RUN ...`: finished runs as one model, in a run folder of its own.

The members' networks run side by side on the same image and their logits are averaged
(edgeskin.models.factory.Members). With gap_linear heads that is exactly one SkinClassifier: a
linear head over the concatenated feature maps, weights [W_1 ... W_N] / N, bias the members' mean.
So its CAM head is the mean of theirs, and evaluate, prior, export (its int8 .tflite calibrated
like any other), benchmark, explain and edge_runtime take the folder as they take a trained run.
Seed ensembles add up to a few points of balanced accuracy at N times the latency and size
(benchmarks/results/ham10000_ablation.md, "seeds as one model").

Members must share everything a device relies on (labels, preprocessing, backbone, head) and
the split: a member trained on another's validation or test images would leak them into the
ensemble's scores.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeskin.card import ModelCard
from edgeskin.config import EnsembleConfig, EvalConfig
from edgeskin.errors import EdgeskinError
from edgeskin.evaluate import evaluate
from edgeskin.fileio import atomic_dir, sha256_file
from edgeskin.models import model_for_card
from edgeskin.models.factory import count_params
from edgeskin.train import checkpoint as ckpt

# Card fields every member must share: what the device applies and what the weights mean.
SHARED = ("task", "labels", "positive_label", "malignant_labels", "preprocessing", "backbone", "head", "cam_layer")


@dataclass(frozen=True)
class EnsembleResult:
    run_dir: Path
    card: ModelCard


def _split_rows(run_dir: Path, card: ModelCard) -> set[tuple[str, str]]:
    with open(run_dir / card.split.manifest, newline="") as f:
        return {(row["image_id"], row["split"]) for row in csv.DictReader(f)}


def _check_members(runs: list[Path]) -> list[ModelCard]:
    if len(runs) < 2:
        raise EdgeskinError(f"ensemble needs 2 or more runs, got {len(runs)}; pass the run folders of `edgeskin train`")
    if len(set(map(Path.resolve, runs))) < len(runs):
        raise EdgeskinError("ensemble got the same run twice; pass each member once")
    cards = [ModelCard.load(r) for r in runs]
    for run, card in zip(runs, cards):
        if card.ensemble or card.quantization or card.pruning:
            kind = "compressed" if card.quantization or card.pruning else "an ensemble"
            raise EdgeskinError(f"{run} is {kind}; pass the float runs `edgeskin train` wrote")
        if card.head != "gap_linear":
            raise EdgeskinError(f"{run} has head {card.head!r}; only gap_linear heads average into one exact "
                                "CAM head (train the members with --head gap_linear)")
    first, rows = cards[0], _split_rows(runs[0], cards[0])
    for run, card in zip(runs[1:], cards[1:]):  # each against the first, whose manifest is read once
        if _split_rows(run, card) != rows:
            raise EdgeskinError(f"{run} was trained on another split than {runs[0]}; train every member with "
                                f"--split-manifest {runs[0] / first.split.manifest}")
        differs = _first_difference(card, first)
        if differs:
            what, theirs, ours = differs
            raise EdgeskinError(f"{run} has another {what} than {runs[0]} ({theirs!r} against {ours!r}); "
                                "ensemble runs trained alike")
    return cards


def _first_difference(card: ModelCard, first: ModelCard) -> tuple[str, object, object] | None:
    """(field, this card's value, the first card's) for the first SHARED field that differs; within
    preprocessing, the item (e.g. input_size)."""
    for name in SHARED:
        theirs, ours = getattr(card, name), getattr(first, name)
        if name == "preprocessing":
            items = [(f"preprocessing {k}", v, getattr(ours, k))
                     for k, v in vars(theirs).items() if v != getattr(ours, k)]
            if items:
                return items[0]
        elif theirs != ours:
            return name, theirs, ours
    return None


def combine(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The members' state dicts as one Members + gap_linear state dict (mean of their logits)."""
    n, out = len(states), {}
    for i, state in enumerate(states):
        out.update({f"backbone.members.{i}.{k[len('backbone.'):]}": v
                    for k, v in state.items() if k.startswith("backbone.")})
    out["head.fc.weight"] = torch.cat([s["head.fc.weight"] for s in states], dim=1) / n
    out["head.fc.bias"] = torch.stack([s["head.fc.bias"] for s in states]).mean(0)
    return out


def _member(run: Path, card: ModelCard) -> dict[str, Any]:
    val = (card.metrics.get("val") or {}).get("balanced_accuracy")
    return {"run": str(run), "weights_sha256": card.weights["sha256"], "val_balanced_accuracy": val}


def build_ensemble(cfg: EnsembleConfig) -> EnsembleResult:
    """Write the ensemble run folder (weights, card, split, config), then score it on validation."""
    runs = [Path(r) for r in cfg.runs]
    cards = _check_members(runs)
    states = [ckpt.load_weights(r, c.weights["sha256"], c.weights["file"]) for r, c in zip(runs, cards)]
    card = cards[0].replace(ensemble={"combine": "mean of the members' logits",
                                      "runs": [_member(r, c) for r, c in zip(runs, cards)]},
                            metrics={}, clinical=None, calibration=None, operating_point=None, macs=None)
    model = model_for_card(card)
    model.load_state_dict(combine(states))  # strict: the layout is the one model_for_card builds
    target = ckpt.new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
    with atomic_dir(target, replace=True) as tmp:  # a failure leaves no half-written run
        ckpt.save(tmp / ckpt.BEST, model.state_dict())
        shutil.copyfile(runs[0] / cards[0].split.manifest, tmp / card.split.manifest)
        shutil.copyfile(runs[0] / ckpt.CONFIG, tmp / ckpt.CONFIG)  # data, seed, max_images: what run_data reads
        card.replace(num_params=count_params(model),
                     weights={"file": ckpt.BEST, "sha256": sha256_file(tmp / ckpt.BEST)}).save(tmp)
    evaluate(EvalConfig(run=str(target), split="val", bootstrap=cfg.bootstrap, device=cfg.device))
    return EnsembleResult(target, ModelCard.load(target))
