import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from edgeskin.data.records import HAM_LABELS
from edgeskin.metrics import classification_metrics, expected_calibration_error


def _probs(pred, n_classes, conf=0.9):
    p = np.full((len(pred), n_classes), (1 - conf) / (n_classes - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_always_nv_scores_one_seventh_balanced_but_high_plain_accuracy():
    rng = np.random.default_rng(0)
    y = rng.choice(7, size=1000, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    nv = HAM_LABELS.index("nv")
    m = classification_metrics(y, _probs(np.full(1000, nv), 7), HAM_LABELS, "mel", bootstrap=0)
    assert abs(m["balanced_accuracy"] - 1 / 7) < 1e-9
    assert m["accuracy"] > 0.6
    assert m["positive"]["sensitivity"] == 0.0 and m["positive"]["specificity"] == 1.0
    assert m["g_mean"] == 0.0


def test_matches_scikit_learn_and_reports_every_class():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 500)
    logits = rng.normal(size=(500, 7)) + 2.0 * np.eye(7)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, p, HAM_LABELS, "mel", bootstrap=200)
    assert np.isclose(m["balanced_accuracy"], balanced_accuracy_score(y, p.argmax(1)))
    assert np.isclose(m["auc_macro"], roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert set(m["per_class"]) == set(HAM_LABELS)
    lo, hi = m["ci95"]["balanced_accuracy"]
    assert lo < m["balanced_accuracy"] < hi and hi - lo < 0.2
    assert np.array(m["confusion_matrix"]).sum() == 500


def test_missing_class_in_external_set_is_left_out_of_averages():
    y = np.array([0, 0, 1, 1])  # no class 2
    p = _probs(np.array([0, 0, 1, 0]), 3)
    m = classification_metrics(y, p, ("a", "b", "c"), "b", bootstrap=0)
    assert m["balanced_accuracy"] == 0.75
    assert m["per_class"]["c"]["recall"] is None and m["per_class"]["c"]["auc"] is None


def test_ece_zero_when_calibrated_and_large_when_overconfident():
    y = np.array([0] * 80 + [1] * 20)
    calibrated = np.tile([0.8, 0.2], (100, 1))  # says 80% and is right 80% of the time
    assert expected_calibration_error(y, calibrated) < 1e-9
    overconfident = np.tile([0.99, 0.01], (100, 1))
    assert abs(expected_calibration_error(y, overconfident) - 0.19) < 1e-9
