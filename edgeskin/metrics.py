"""Classification metrics for imbalanced dermoscopy: balanced accuracy first, never accuracy alone.

All from scikit-learn except expected calibration error and the bootstrap, which it lacks.
Classes absent from y_true are left out of recall/AUC averages (an external set may lack vasc).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (accuracy_score, cohen_kappa_score, confusion_matrix,
                             precision_recall_fscore_support, roc_auc_score)

ECE_BINS = 15


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true (the ISIC challenge metric)."""
    present = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == k] == k) for k in present]))


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over classes that have both positives and negatives."""
    aucs = per_class_auc(y_true, probs)
    values = [v for v in aucs if v is not None]
    return float(np.mean(values)) if values else float("nan")


def per_class_auc(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    out: list[float | None] = []
    for k in range(probs.shape[1]):
        pos = y_true == k
        out.append(float(roc_auc_score(pos, probs[:, k])) if 0 < pos.sum() < len(pos) else None)
    return out


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| per equal-width confidence bin, weighted by bin size."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def quick_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """What training tracks every epoch."""
    return {"balanced_accuracy": balanced_accuracy(y_true, probs.argmax(1)), "auc_macro": macro_auc(y_true, probs)}


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, n: int, seed: int = 0) -> dict[str, list[float]]:
    """Percentile 95% intervals for balanced accuracy and macro AUC over image resamples."""
    rng = np.random.default_rng(seed)
    ba, auc = [], []
    pred = probs.argmax(1)
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        ba.append(balanced_accuracy(y_true[idx], pred[idx]))
        auc.append(macro_auc(y_true[idx], probs[idx]))
    q = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
    return {"balanced_accuracy": q(ba), "auc_macro": q(auc)}


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], positive_label: str,
                           bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    y_true = np.asarray(y_true)
    pred = probs.argmax(1)
    ks = list(range(len(labels)))
    prec, rec, f1, support = precision_recall_fscore_support(y_true, pred, labels=ks, zero_division=0)
    aucs = per_class_auc(y_true, probs)
    present = [k for k in ks if support[k] > 0]
    recalls = [rec[k] for k in present]
    pos = labels.index(positive_label)
    is_pos, said_pos = y_true == pos, pred == pos
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "balanced_accuracy": balanced_accuracy(y_true, pred),
        "auc_macro": macro_auc(y_true, probs),
        "accuracy": float(accuracy_score(y_true, pred)),
        "cohen_kappa": float(cohen_kappa_score(y_true, pred, labels=ks)),
        "g_mean": float(np.prod(recalls) ** (1 / len(recalls))) if recalls else float("nan"),
        "ece": expected_calibration_error(y_true, probs),
        "positive": {
            "label": positive_label,
            "sensitivity": float(said_pos[is_pos].mean()) if is_pos.any() else None,
            "specificity": float((~said_pos[~is_pos]).mean()) if (~is_pos).any() else None,
            "auc": aucs[pos],
        },
        "per_class": {
            lab: {"precision": float(prec[k]), "recall": float(rec[k]) if support[k] else None,
                  "f1": float(f1[k]), "support": int(support[k]), "auc": aucs[k]}
            for k, lab in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, pred, labels=ks).tolist(),
    }
    if bootstrap:
        out["ci95"] = bootstrap_ci(y_true, probs, bootstrap, seed)
    return out
