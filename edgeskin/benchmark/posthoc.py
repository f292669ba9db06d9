"""Inference-time rules fitted on the validation split only (the ablation's post levers): they
change which class is decided, never the network's weights."""

from __future__ import annotations

import numpy as np

from edgeskin.evaluate.metrics import balanced_accuracy

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
