"""The card's "uncertain" threshold: below it a prediction is more often wrong than right."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script
from edgeskin.export.calibrate import MIN_IMAGES, uncertain_rates, uncertain_threshold


def predictions(top: np.ndarray, correct: np.ndarray, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose top class (0) has probability `top`, and targets right where `correct`."""
    probs = np.empty((len(top), n_classes))
    probs[:, 0] = top
    probs[:, 1:] = ((1 - top) / (n_classes - 1))[:, None]
    return probs, np.where(correct, 0, 1)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_overconfident_model_is_flagged_where_its_predictions_turn_mostly_wrong(seed):
    # Right with probability sigmoid(0.6 logit(p) - 0.8) at confidence p: 50% at p = 0.79. Pooled
    # from the bottom, accuracy stays below 50% well above that (the less confident images pull
    # it down), so a rule on the pooled accuracy would flag predictions that are mostly right.
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.3, 0.99, 3000)
    probs, y = predictions(top, rng.random(3000) < sigmoid(0.6 * np.log(top / (1 - top)) - 0.8))
    t = uncertain_threshold(probs, y)
    assert abs(t - sigmoid(0.8 / 0.6)) < 0.04
    right = probs.argmax(1) == y
    assert right[(top < t) & (top > t - 0.1)].mean() < 0.5  # the flagged ones nearest it: mostly wrong
    assert right[(top >= t) & (top < t + 0.1)].mean() > 0.5  # the first ones kept: mostly right


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_calibrated_model_is_flagged_near_one_half(seed):
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.25, 1.0, 3000)
    probs, y = predictions(top, rng.random(3000) < top)  # right with probability = its confidence
    assert abs(uncertain_threshold(probs, y) - 0.5) < 0.08


def test_nothing_flagged_without_evidence_and_everything_when_always_wrong():
    top = np.linspace(0.3, 0.99, 200)
    assert uncertain_threshold(*predictions(top, np.ones(200, bool))) == 0.0
    few = np.ones(200, bool)
    few[:MIN_IMAGES - 1] = False  # the least confident are wrong, but fewer than MIN_IMAGES of them
    assert uncertain_threshold(*predictions(top, few)) == 0.0
    assert uncertain_threshold(*predictions(top, np.zeros(200, bool))) == 1.0


@pytest.mark.parametrize("share_right, flagged", [(0.35, 1.0), (0.7, 0.0)])
def test_confidence_that_says_nothing_flags_all_or_nothing_by_the_overall_accuracy(share_right, flagged):
    rng = np.random.default_rng(0)
    top = rng.uniform(0.3, 0.99, 2000)
    probs, y = predictions(top, rng.random(2000) < share_right)  # right or wrong regardless of confidence
    assert np.mean(top < uncertain_threshold(probs, y)) == pytest.approx(flagged, abs=0.05)


def test_uncertain_rates_count_what_the_device_flags():
    # Temperature 2 turns logits (4, 0, 0) into a top probability of 0.79 and (1, 0, 0) into 0.45.
    logits = np.array([[4.0, 0, 0], [4.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    rates = uncertain_rates(logits, np.array([0, 0, 0, 2]), {"temperature": 2.0, "uncertain_below": 0.6})
    assert rates == {"flagged": 0.5, "right_when_flagged": 0.5, "right_when_kept": 1.0}
    rates = uncertain_rates(logits, np.array([0, 0, 1, 2]), {"temperature": 2.0, "uncertain_below": 0.3})
    assert rates == {"flagged": 0.0, "right_when_flagged": None, "right_when_kept": 0.5}


def test_the_winner_report_renders_flag_rates_when_nothing_or_everything_is_flagged():
    report = load_script("ham10000_winner")
    logits = np.array([[4.0, 0, 0], [4.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    cal = {"temperature": 2.0}
    every = uncertain_rates(logits, np.array([0, 1, 0, 2]), {**cal, "uncertain_below": 0.9})
    assert report._flagged({"uncertain": every}) == "100% | 0.50 / –"  # no photo kept
    none = uncertain_rates(logits, np.array([0, 0, 1, 2]), {**cal, "uncertain_below": 0.3})
    assert report._flagged({"uncertain": none}) == "0% | – / 0.50"
    assert report._flagged({}) == "– | –"
