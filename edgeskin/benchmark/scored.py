"""A row's test-split scores: one seed's metrics, the seed mean's paired-bootstrap interval, and
a row's seeds as one ensemble (what a distilled row's students learnt from)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgeskin.metrics import balanced_accuracy, classification_metrics


@dataclass(frozen=True)
class Scored:
    probs: np.ndarray
    targets: np.ndarray
    labels: tuple[str, ...]
    extra: dict[str, Any]


def seed_row(s: Scored, positive: str = "mel") -> dict[str, Any]:
    m = classification_metrics(s.targets, s.probs, s.labels, positive, bootstrap=0)
    return {"balanced_accuracy": m["balanced_accuracy"], "mel_recall": m["per_class"][positive]["recall"],
            "mel_auc": m["per_class"][positive]["auc"], "auc_macro": m["auc_macro"], "ece": m["ece"],
            "per_class_recall": {k: v["recall"] for k, v in m["per_class"].items()}, **s.extra}


def paired_bootstrap(scored: Sequence[Scored], n: int, seed: int = 0) -> list[float]:
    """95% interval of the seed-mean balanced accuracy, resampling the same test images for each seed."""
    return seed_mean_ci(scored[0].targets, [s.probs.argmax(1) for s in scored], n, seed)


def seed_mean_ci(y: np.ndarray, preds: Sequence[np.ndarray], n: int, seed: int = 0) -> list[float]:
    """paired_bootstrap on per-seed predicted labels aligned with `y`."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        means.append(np.mean([balanced_accuracy(y[idx], p[idx]) for p in preds]))
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def ensemble_row(scored: Sequence[Scored]) -> dict[str, float]:
    """A row's seeds as one model (their probabilities averaged), as a distilled row's teacher is."""
    s = Scored(np.mean([x.probs for x in scored], 0), scored[0].targets, scored[0].labels, {})
    return {k: v for k, v in seed_row(s).items() if k in ("balanced_accuracy", "mel_recall", "mel_auc")}


def paired_delta(y: np.ndarray, a: Sequence[np.ndarray], b: Sequence[np.ndarray], metric, n: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Seed-mean metric(a) - seed-mean metric(b) on the same images, with a paired bootstrap 95% CI:
    each resample draws one set of images for every seed of both rows, so the interval is that of the
    difference, not two overlapping intervals. `a`, `b`: per-seed scores aligned with `y`;
    `metric(y, scores) -> float`."""
    def delta(idx: np.ndarray) -> float:
        return float(np.mean([metric(y[idx], s[idx]) for s in a]) - np.mean([metric(y[idx], s[idx]) for s in b]))

    rng = np.random.default_rng(seed)
    boots = [delta(rng.integers(0, len(y), len(y))) for _ in range(n)]
    return {"delta": delta(np.arange(len(y))), "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "p_le_0": float(np.mean(np.asarray(boots) <= 0))}
