"""Evaluate a run: its own held-out split (from the saved manifest) or any external dataset.

Preprocessing comes from the model card only, so an external set at another resolution (e.g. the
600x450 official HAM10000 release) is resized exactly as the training images were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.card import ModelCard
from edgeskin.config import EvalConfig
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.split import SPLITS
from edgeskin.errors import EdgeskinError
from edgeskin.evaluate.deploy import deployment_figures, markdown as deploy_markdown, per_source_figures
from edgeskin.metrics import classification_metrics
from edgeskin.evaluate.report import write_report
from edgeskin.predict import predict_logits, resolve_device, softmax
from edgeskin.train.runs import card_label_map, load_run_model, run_data


@dataclass(frozen=True)
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]
    files: dict[str, Path]


def _majority_baseline(card: ModelCard, y: np.ndarray) -> dict[str, Any]:
    train_counts = card.split.counts["train"]
    majority = card.labels.index(max(train_counts, key=train_counts.get))
    probs = np.zeros((len(y), len(card.labels)))
    probs[:, majority] = 1.0
    m = classification_metrics(y, probs, card.labels, card.positive_label, bootstrap=0)
    return {"label": card.labels[majority], "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"]}


def evaluate(cfg: EvalConfig) -> EvalResult:
    run_dir = Path(cfg.run)
    card = ModelCard.load(run_dir)
    task = get_task(card.task)
    size = card.preprocessing.input_size
    device = resolve_device(cfg.device)
    model = load_run_model(run_dir, card, device)
    if cfg.data is None:
        if cfg.split not in SPLITS:
            raise EdgeskinError(f"unknown split {cfg.split!r}; choose one of {list(SPLITS)}")
        data, split = run_data(run_dir, card)
        data = data.subset(split.indices(cfg.split))
        name, title = cfg.split, f"{cfg.split} split of the run's data"
    else:
        data = load_labelled(cfg.data, task, size, require_all_classes=False,
                             color_constancy=card.preprocessing.color_constancy, label_map=card_label_map(card))
        name, title = f"external-{Path(cfg.data).name}", f"external data {cfg.data}"
    if len(data.targets) == 0:
        raise EdgeskinError(f"no images to evaluate in {name}; check --split or --data")
    if data.source.synthetic:
        title += " (SYNTHETIC images)"
    logits = predict_logits(model, data.pixels, card.preprocessing.mean, card.preprocessing.std, device,
                            cfg.batch_size)
    if card.clinical:  # as the device decides: + the prior from each image's age, sex and body site
        from edgeskin.train.clinical import card_context_logits

        logits = logits + card_context_logits(card.clinical, data.samples)
        title += " + clinical prior"
    probs = softmax(logits)
    metrics = classification_metrics(data.targets, probs, card.labels, card.positive_label, cfg.bootstrap)
    metrics["deployment"] = deployment_figures(data.targets, logits, card.labels, card.positive_label, card.offsets)
    if len(set(data.sources)) > 1:
        metrics["per_source"] = per_source_figures(data.targets, logits, data.sources, card.labels,
                                                   card.positive_label, card.offsets)
    baseline = _majority_baseline(card, data.targets)
    out_dir = run_dir / "eval" / name
    files = write_report(out_dir, metrics, data.targets, probs, card.labels,
                         f"{card.backbone} ({card.task}) on the {title}", baseline,
                         deploy_markdown(metrics["deployment"], metrics.get("per_source"), card.positive_label))
    summary = {k: metrics[k] for k in ("n", "balanced_accuracy", "auc_macro", "ece")}
    summary.update(positive_sensitivity=metrics["positive"]["sensitivity"], ci95=metrics.get("ci95"),
                   per_class_recall={k: v["recall"] for k, v in metrics["per_class"].items()},
                   deployment=metrics["deployment"], **({"per_source": metrics["per_source"]}
                                                       if "per_source" in metrics else {}))
    card.replace(metrics={**card.metrics, name: summary}).save(run_dir)
    return EvalResult(out_dir, metrics, files)
