"""Inference-time rules fitted on the validation split only (the ablation's post levers): they
change which class is decided, never the network's weights."""

from __future__ import annotations

import numpy as np
from edge_runtime.site import valid_recall

from edgeskin.metrics import balanced_accuracy

# R: a recall in (0, 1], e.g. min_recall=0.7. clinical_unrecorded: the same run's test images sent
# with no context, so no prior (what leaving the fields empty costs); +min_recall=R: the operating
# point fitted on the validation logits with the prior, as `edgeskin export --min-recall` fits it.
# class_thresholds: one logit offset per class, searched on validation balanced accuracy.
POST_LEVERS = ("logit_adjust", "class_thresholds", "tta", "min_recall=R", "clinical", "clinical_unrecorded",
               "clinical+min_recall=R")

TAU_GRID = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2))
OFFSET_GRID = tuple(np.round(np.arange(-2.0, 2.01, 0.1), 2))


def pick_tau(val_logits: np.ndarray, val_y: np.ndarray, log_prior: np.ndarray) -> float:
    """Post-hoc logit adjustment (Menon et al. 2021): logits - tau*log(train prior), with tau picked
    on validation balanced accuracy only (ties: the smallest tau)."""
    scores = [balanced_accuracy(val_y, (val_logits - t * log_prior).argmax(1)) for t in TAU_GRID]
    return float(TAU_GRID[int(np.argmax(scores))])


def fit_class_offsets(val_logits: np.ndarray, val_y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class decision thresholds tuned on validation: one logit offset per class, by coordinate
    ascent on validation balanced accuracy over OFFSET_GRID (ties: the smaller offset). Starts at
    zero and each step keeps or raises validation balanced accuracy."""
    offsets = np.zeros(val_logits.shape[1])
    for _ in range(rounds):
        for k in range(len(offsets)):
            def score(g: float) -> tuple[float, float]:
                trial = offsets.copy()
                trial[k] = g
                return balanced_accuracy(val_y, (val_logits + trial).argmax(1)), -abs(g)
            offsets[k] = max((offsets[k], *OFFSET_GRID), key=score)
    return offsets


def min_recall_of(post: str | None) -> float | None:
    """R of a "min_recall=R" post lever (the export's --min-recall operating point), else None."""
    name, _, value = (post or "").partition("=")
    try:
        r = float(value) if name == "min_recall" else None
    except ValueError:
        return None
    return r if r is not None and valid_recall(r) else None


def clinical_of(post: str | None) -> tuple[bool, float | None] | None:
    """(context recorded?, R or None) of a "clinical[_unrecorded][+min_recall=R]" post lever, else None."""
    head, plus, tail = (post or "").partition("+")
    if head not in ("clinical", "clinical_unrecorded") or (plus and min_recall_of(tail) is None):
        return None
    return head == "clinical", min_recall_of(tail) if plus else None
