"""The figures a clinic asks for before it deploys a model on its own dermoscope: melanoma-vs-rest
AUC, melanoma sensitivity and specificity at the card's operating point, and balanced accuracy
over the classes its data has. They hold on a labelled set with only some of the classes (e.g.
mel and nv), and per source for pooled data.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from edgeskin.metrics import balanced_accuracy


def _auc(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(is_pos, score)) if 0 < is_pos.sum() < len(is_pos) else None


def deployment_figures(y: np.ndarray, logits: np.ndarray, labels: Sequence[str], positive: str,
                       offsets: Sequence[float] | None = None) -> dict[str, Any]:
    """`logits`: what the device computes before its offsets (image model, plus the clinical prior
    where the card has one); `offsets`: the card's operating point (zeros: plain argmax)."""
    y = np.asarray(y)
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits + np.asarray(offsets if offsets is not None else np.zeros(len(labels)))
    decided = shifted.argmax(1)
    pos = list(labels).index(positive)
    present = sorted(int(k) for k in np.unique(y))
    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    is_pos, said_pos = y == pos, decided == pos
    # Argmax over the classes present only: a set of nv/mel/bkl asks which of those three it is.
    restricted = np.array(present)[shifted[:, present].argmax(1)]
    return {
        "n": int(len(y)),
        "classes_present": [labels[k] for k in present],
        f"{positive}_auc": _auc(is_pos, probs[:, pos]),
        f"{positive}_sensitivity": float(said_pos[is_pos].mean()) if is_pos.any() else None,
        f"{positive}_specificity": float((~said_pos[~is_pos]).mean()) if (~is_pos).any() else None,
        "balanced_accuracy_present": balanced_accuracy(y, decided),
        "balanced_accuracy_restricted": balanced_accuracy(y, restricted),
        "recall_present": {labels[k]: float(np.mean(decided[y == k] == k)) for k in present},
        "operating_point": "card offsets" if offsets is not None and np.any(offsets) else "argmax",
    }


def per_source_figures(y: np.ndarray, logits: np.ndarray, sources: Sequence[str], labels: Sequence[str],
                       positive: str, offsets: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
    """deployment_figures for each source of a pooled set (source name -> figures)."""
    sources = np.asarray(sources, dtype=object)
    return {str(name): deployment_figures(np.asarray(y)[sources == name], np.asarray(logits)[sources == name],
                                          labels, positive, offsets)
            for name in dict.fromkeys(sources.tolist())}


def markdown(figures: dict[str, Any], per_source: dict[str, dict[str, Any]] | None, positive: str) -> str:
    """The report section: one row for the whole set, one per source."""
    def cell(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    rows = [("all", figures)] + list((per_source or {}).items())
    lines = ["## Before deploying: the figures a clinic asks for", "",
             f"Decisions at the card's operating point ({figures['operating_point']}); balanced accuracy "
             "over the classes present, and with the argmax restricted to them.", "",
             f"| images | n | classes | {positive} AUC | {positive} sensitivity | {positive} specificity "
             "| bal. acc. (present) | bal. acc. (restricted) |", "|---|---|---|---|---|---|---|---|"]
    for name, f in rows:
        lines.append(f"| {name} | {f['n']} | {' '.join(f['classes_present'])} | {cell(f[f'{positive}_auc'])} "
                     f"| {cell(f[f'{positive}_sensitivity'])} | {cell(f[f'{positive}_specificity'])} "
                     f"| {cell(f['balanced_accuracy_present'])} | {cell(f['balanced_accuracy_restricted'])} |")
    return "\n".join(lines) + "\n"
