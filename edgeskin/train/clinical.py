"""Fit the clinical-context prior (edge_runtime.clinical) that the device adds to the image logits.

1. a logistic regression of the class on age bin, sex and body site, with balanced class weights,
   on the training split's context (not its images: it is fitted once, in a second); then each
   field's weights are centred on their class-balanced mean (moved into the bias), which leaves
   every fully recorded image's prior unchanged and gives a missing field its average effect
   rather than the effect of "nothing recorded" in this dataset;
2. its weight against the image logits, picked on the validation split from a grid by the
   class-balanced log-loss of the fused logits (ties: the smallest), so 0 (no prior) wins unless
   the context helps on held-out images. A smooth loss rather than balanced accuracy, which moves
   in steps of one image of a 20-image class: on HAM10000's ablation runs it picked 0.5 in all
   nine (balanced accuracy: 0 to 1.0) and scored 0.5 pp better on test; on context that is pure
   noise it switched the prior on in 5 of 20 draws (balanced accuracy: 13).

`edgeskin train --clinical` fits it after training; `edgeskin prior RUN` fits it on a finished run
(the same two steps on its best weights, in seconds): context never changes the image model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from edge_runtime.clinical import AGE_EDGES, ClinicalPrior, Context, vocab

from edgeskin.card import ModelCard
from edgeskin.config import PriorConfig, TrainConfig
from edgeskin.data.bundle import LabelledImages
from edgeskin.data.records import Sample
from edgeskin.data.split import Split
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy
from edgeskin.train import checkpoint as ckpt

PRIOR_RULE = "balanced_log_loss"  # how the weight is picked; part of the ablation's score cache key
SCALE_GRID = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2))
C = 0.1  # inverse L2 strength: the context-only model scored best at 0.1 of 0.1/1/10 on a HAM10000 fold
MIN_KNOWN = 0.5  # fit only when at least half the training images record some context


def context_of(s: Sample) -> Context:
    return Context(s.age, s.sex, s.site)


@dataclass(frozen=True)
class PriorFit:
    prior: ClinicalPrior
    val_balanced_accuracy: dict[float, float]  # scale -> balanced accuracy of the fused logits
    val_balanced_log_loss: dict[float, float]  # scale -> their class-balanced log-loss (what picks it)


def recorded_fraction(samples: Sequence[Sample]) -> float:
    return float(np.mean([s.age is not None or s.sex is not None or s.site is not None for s in samples]))


def check_context(data: str, train: Sequence[Sample], who: str = "--clinical",
                  otherwise: str = "train without --clinical") -> None:
    if recorded_fraction(train) < MIN_KNOWN:
        raise EdgeskinError(f"{who}: fewer than half the training images of {data} record age, sex or body "
                            f"site; add age,sex,site columns (a CSV manifest) or {otherwise}")


def fit_clinical_prior(train: Sequence[Sample], train_y: np.ndarray, n_classes: int,
                       val: Sequence[Sample], val_y: np.ndarray, val_logits: np.ndarray) -> PriorFit:
    """Steps 1-2 above. `val_logits`: the image model's own validation logits (no offsets)."""
    from sklearn.linear_model import LogisticRegression

    check_context("the data", train)
    shell = ClinicalPrior(vocab([s.site for s in train]), vocab([s.sex for s in train]), AGE_EDGES,
                          np.zeros((n_classes, 0)), np.zeros(n_classes), 1.0)
    x = np.stack([shell.features(context_of(s)) for s in train])
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(x, train_y)
    weights = np.zeros((n_classes, x.shape[1]))
    bias = np.zeros(n_classes)
    weights[lr.classes_], bias[lr.classes_] = lr.coef_, lr.intercept_  # a class absent from train: 0
    for group in shell.groups():  # centre each field: a missing one then adds its average effect
        recorded = x[:, group].sum(1) > 0
        # Averaged over classes, not images: an average patient of the natural mix is a nevus patient.
        by_class = [x[recorded & (train_y == k), group].mean(0) for k in range(n_classes)
                    if (recorded & (train_y == k)).any()]
        if by_class:
            mean = weights[:, group] @ np.mean(by_class, 0)
            weights[:, group] -= mean[:, None]
            bias += mean
    fitted = ClinicalPrior(shell.sites, shell.sexes, AGE_EDGES, weights, bias, 1.0)
    val_prior = np.stack([fitted.log_prior(_known(fitted, s)) for s in val])
    fused = {float(t): val_logits + t * val_prior for t in SCALE_GRID}
    losses = {t: balanced_log_loss(val_y, z) for t, z in fused.items()}
    best = min(losses.values())
    scale = min(t for t, v in losses.items() if v == best)
    return PriorFit(ClinicalPrior(fitted.sites, fitted.sexes, AGE_EDGES, weights, bias, scale),
                    {t: balanced_accuracy(val_y, z.argmax(1)) for t, z in fused.items()}, losses)


def balanced_log_loss(y: np.ndarray, logits: np.ndarray) -> float:
    """Mean over the classes present of their images' mean negative log-likelihood: the log-loss
    of a balanced test set, as balanced accuracy is the accuracy of one."""
    z = logits - logits.max(1, keepdims=True)
    nll = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
    return float(np.mean([nll[y == c].mean() for c in np.unique(y)]))


def _known(prior: ClinicalPrior, s: Sample) -> Context:
    """A sample's context with values the prior never saw (e.g. a held-out body site) as missing."""
    return Context(s.age, s.sex if s.sex in prior.sexes else None, s.site if s.site in prior.sites else None)


def context_logits(prior: ClinicalPrior, samples: Sequence[Sample]) -> np.ndarray:
    """The prior's additive term for each sample, unseen values treated as missing."""
    return np.stack([prior.log_prior(_known(prior, s)) for s in samples]).astype(np.float32)


def card_context_logits(clinical: dict, samples: Sequence[Sample]) -> np.ndarray:
    """context_logits of a card's `clinical` entry: what the device adds to these images' logits."""
    return context_logits(ClinicalPrior.from_dict(clinical), samples)


def add_prior(card: ModelCard, run_dir: Path, data: LabelledImages, split: Split, val_logits: np.ndarray,
              who: str = "edgeskin train") -> ModelCard:
    """Fit the prior on the run's split (`val_logits`: its best weights' validation logits) and
    write it into the run's card, replacing any earlier one; exports made from then on carry it."""
    tr, val = split.indices("train"), split.indices("val")
    fit = fit_clinical_prior([data.samples[i] for i in tr], data.targets[tr], len(card.labels),
                             [data.samples[i] for i in val], data.targets[val], val_logits)
    scores, losses, w = fit.val_balanced_accuracy, fit.val_balanced_log_loss, fit.prior.scale
    print(f"{who}: clinical prior weight {w:g}; val balanced log-loss {losses[0.0]:.4f} without it, "
          f"{losses[w]:.4f} with it; balanced accuracy {scores[0.0]:.4f} -> {scores[w]:.4f}")
    card = card.replace(clinical={**fit.prior.to_dict(), "fitted_on": "training split (context), validation (weight)",
                                  "val_balanced_log_loss": {f"{k:g}": v for k, v in losses.items()},
                                  "val_balanced_accuracy": {f"{k:g}": v for k, v in scores.items()}})
    card.save(run_dir)
    return card


def fit_run_prior(cfg: PriorConfig) -> ModelCard:
    """`edgeskin prior RUN`: the prior for a finished run, from its own data, split and best weights."""
    from edgeskin.train.runs import load_run_model, run_data  # torch: only this command needs it
    from edgeskin.predict import predict_logits, resolve_device

    run_dir = Path(cfg.run)
    card = ModelCard.load(run_dir)
    data, split = run_data(run_dir, card)
    check_context(TrainConfig.load(run_dir / ckpt.CONFIG).data, [data.samples[i] for i in split.indices("train")],
                  "edgeskin prior", "deploy the model without a prior")
    device = resolve_device(cfg.device)
    pre, val = card.preprocessing, split.indices("val")
    logits = predict_logits(load_run_model(run_dir, card, device), data.pixels[val], pre.mean, pre.std, device)
    return add_prior(card, run_dir, data, split, logits, "edgeskin prior")
