"""Confidence a device can be honest about: a softmax temperature and an "uncertain" threshold,
both fitted on the validation split and written into the exported model card.

- temperature: the T minimising the negative log-likelihood of softmax(logits / T) (Guo et al.
  2017, "On Calibration of Modern Neural Networks"); a 1-D search, no optimiser needed.
- uncertain_below: the top probability below which a prediction is more often wrong than right:
  where the accuracy of validation predictions *at* that confidence, a logistic fit of
  right-or-wrong on the top probability's log-odds (Platt 1999: two parameters, steady on a few
  hundred images), falls below 50%, with at least MIN_IMAGES validation images below it. A device
  flags those predictions instead of presenting them as answers. Not the accuracy of *all*
  predictions below t: on a balanced-objective model that pools near 50% over a wide band of
  confidence, and its last crossing flagged 56-68% of the HAM10000 winner's test photos, which
  were right 52-53% of the time.
- ood_below: an out-of-distribution score, the energy T*logsumexp(logits/T) (Liu et al. 2020,
  "Energy-based Out-of-distribution Detection"); images scoring below the 1st percentile of the
  validation images look unlike anything the model was trained on, and are flagged too.
- refer_at_risk: the highest malignant risk (summed probability of the malignant classes) that
  still sends REFER_SENSITIVITY of the malignant validation lesions to a dermatologist.

An operating point (`edgeskin export --min-recall R`, see `operating_point`) is fitted first:
the smallest logit offset for the card's positive class (melanoma) that makes its validation
recall reach R. The device adds those offsets to the logits before anything else, so the
temperature and thresholds above are fitted on the offset logits, as the device will see them.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.site import recall_offset, risk_threshold
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy

MIN_IMAGES = 10
REFER_SENSITIVITY = 0.9
OOD_PERCENTILE = 1.0


def energy(logits: np.ndarray, t: float) -> np.ndarray:
    z = logits / t
    m = z.max(1)
    return t * (m + np.log(np.exp(z - m[:, None]).sum(1)))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 241))
    nll = [-_log_softmax(logits / t)[np.arange(len(targets)), targets].mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def uncertain_threshold(probs: np.ndarray, targets: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    top = np.clip(probs.max(1), 1e-6, 1 - 1e-6)
    correct = probs.argmax(1) == targets
    if correct.all() or not correct.any():
        return 0.0 if correct.all() else 1.0
    log_odds = np.log(top / (1 - top))[:, None]
    fit = LogisticRegression(C=np.inf).fit(log_odds, correct)
    slope, bias = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if slope <= 0:  # confidence does not rank right above wrong: no threshold separates them
        return 1.0 if correct.mean() < 0.5 else 0.0
    # accuracy_at(t) = 0.5 where slope * logit(t) + bias = 0 (clipped: a flat slope puts t at 0 or 1)
    t = float(1 / (1 + np.exp(np.clip(bias / slope, -50, 50))))
    return t if (top < t).sum() >= MIN_IMAGES else 0.0  # too few below it to say: flag nothing


def uncertain_rates(logits: np.ndarray, targets: np.ndarray, calibration: dict) -> dict:
    """How often a card's calibration flags these images (offsets already in `logits`) as uncertain
    by confidence, and how often its top class is right when flagged and when not."""
    probs = np.exp(_log_softmax(logits / calibration["temperature"]))
    flagged = probs.max(1) < calibration["uncertain_below"]
    right = probs.argmax(1) == targets
    share = lambda mask: round(float(right[mask].mean()), 4) if mask.any() else None  # noqa: E731
    return {"flagged": round(float(flagged.mean()), 4), "right_when_flagged": share(flagged),
            "right_when_kept": share(~flagged)}


def referral_threshold(probs: np.ndarray, targets: np.ndarray, malignant: list[int]) -> float | None:
    is_malignant = np.isin(targets, malignant)
    if not malignant or is_malignant.sum() == 0:
        return None
    return risk_threshold(probs[:, malignant].sum(1)[is_malignant], REFER_SENSITIVITY)


def calibration(logits: np.ndarray, targets: np.ndarray, malignant: list[int], source: str) -> dict:
    t = fit_temperature(logits, targets)
    probs = np.exp(_log_softmax(logits / t))
    refer = referral_threshold(probs, targets, malignant)
    return {"temperature": round(t, 4), "uncertain_below": round(uncertain_threshold(probs, targets), 4),
            "refer_at_risk": None if refer is None else round(refer, 4),
            "ood_below": round(float(np.percentile(energy(logits, t), OOD_PERCENTILE)), 4),
            "refer_sensitivity": REFER_SENSITIVITY, "fitted_on": source}


def operating_point(logits: np.ndarray, targets: np.ndarray, labels, positive: str, min_recall: float,
                    source: str) -> dict:
    """Per-class logit offsets (zero except `positive`'s) that lift `positive`'s validation recall
    to at least `min_recall` with the smallest offset: a prior shift on one class, the way a
    clinic picks a sensitivity. One offset, not one per class: per-class offsets tuned on a
    validation split this size over-fit it (HAM10000 ablation, row sog+3x+distill+class-thresholds:
    test balanced accuracy 0.675 -> 0.658, where the one melanoma offset gave 0.678). The fit is
    edge_runtime's, so a clinic refitting it on its own photos (`edge_runtime calibrate`) gets
    exactly the card's rule."""
    k = list(labels).index(positive)
    if not np.any(targets == k):
        raise EdgeskinError(f"--min-recall: the {source} has no {positive!r} images to fit an operating point on")
    offsets = np.zeros(logits.shape[1])
    offsets[k] = recall_offset(logits, targets, k, min_recall)  # the device's own fit (site profiles)

    def at(o):
        pred = (logits + o).argmax(1)
        return {"recall": round(float(np.mean(pred[targets == k] == k)), 4),
                "balanced_accuracy": round(balanced_accuracy(targets, pred), 4)}
    return {"label": positive, "min_recall": min_recall, "offsets": [round(float(o), 6) for o in offsets],
            "validation_before": at(0.0), "validation_after": at(offsets), "fitted_on": source}


def device_thresholds(card, logits: np.ndarray, targets: np.ndarray, min_recall: float | None, source: str):
    """`card` (a ModelCard) + what a device decides by, fitted on validation logits: an operating
    point when `min_recall` is given, then the calibration on the offset logits, and the malignant
    classes (cards from before they were recorded lack them)."""
    from edgeskin.data.records import MALIGNANT

    point = None if min_recall is None else operating_point(logits, targets, card.labels, card.positive_label,
                                                             min_recall, source)
    offset = np.asarray(point["offsets"]) if point else 0.0
    malignant = card.malignant_labels or tuple(k for k in card.labels if k in MALIGNANT or k == "malignant")
    fitted = calibration(logits + offset, targets, [card.labels.index(k) for k in malignant], source)
    return card.replace(calibration=fitted, malignant_labels=malignant, operating_point=point)
