"""Site profiles: refit a model's decision thresholds on a clinic's own labelled photos.

Measured on HAM10000 with body sites held out of training (benchmarks/results/ham10000_site_refit.md):
a melanoma operating point fitted on the training sites' validation images gives 0.70 melanoma
recall there but about a third of that at an unseen site. The thresholds, not the weights, are
what a clinic can refit with a few hundred labelled photos, and on the device itself (numpy only).

`edge_runtime calibrate MODEL --data DATA` writes a profile JSON bound to the model's SHA-256:
- the operating point: the smallest logit offset for the positive class (melanoma) whose recall
  on the site's photos reaches --min-recall (default: the card's own target, if it has one);
- the referral threshold: the highest malignant risk that still refers the card's
  refer_sensitivity (0.9) of the site's malignant photos.
`predict`, `benchmark` and `serve --site PROFILE` use them instead of the card's. The card's
temperature and uncertainty thresholds stay: they need more photos than a site usually has.

Figures fitted and scored on the same photos flatter the profile (with 10 melanomas, a recall
target of 1.0 is always met in-sample). So the profile also says what the same fit does on photos
it did not see: 5-fold cross-validation, each fold decided by thresholds fitted on the other four
(`cross_validated`). Each class's lesions (a CSV's `lesion_id`; without one, each photo) are cut
into 5 contiguous runs in file order, so no lesion is scored by thresholds fitted on its own photos.

The fitting functions here are also what `edgeskin export` uses for the card's own thresholds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_runtime.atomic import atomic_path
from edge_runtime.errors import EdgeRuntimeError

PROFILE_KIND = "edge_runtime site profile"
PROFILE_VERSION = 1
MIN_POSITIVES = 10  # fewer positive photos give a recall in steps of more than 10 points
FOLDS = 5


def valid_recall(value: float) -> bool:
    """A recall target (`--min-recall`, the ablation's min_recall=R): in (0, 1]."""
    return 0.0 < value <= 1.0


def check_min_recall(value: float | None) -> None:
    if value is not None and not valid_recall(value):
        raise EdgeRuntimeError(f"--min-recall {value} is not a recall; pass a value in (0, 1], e.g. 0.7")


def recall_offset(logits: np.ndarray, targets: np.ndarray, k: int, min_recall: float) -> float:
    """Smallest offset added to logit k that makes class k's recall reach min_recall. Exact, no
    grid: positive image i is predicted k once the offset exceeds its margin max_j z_ij - z_ik."""
    pos = logits[targets == k]
    if len(pos) == 0:
        raise ValueError("no images of the class")
    others = np.delete(pos, k, axis=1).max(1)
    margins = np.sort(np.maximum(others - pos[:, k], 0.0))
    need = math.ceil(min_recall * len(pos) - 1e-9)  # images that must be recalled
    # Just above the deciding image's margin, so it is strictly the top logit; 0 when already met.
    return 0.0 if margins[need - 1] == 0.0 else float(margins[need - 1]) + 1e-4


def risk_threshold(risk_of_malignant: np.ndarray, sensitivity: float) -> float:
    """The highest risk threshold that still refers `sensitivity` of these malignant images,
    rounded down to 4 decimals: rounding up could leave the deciding image just below it."""
    return math.floor(float(np.quantile(risk_of_malignant, 1.0 - sensitivity, method="lower")) * 1e4) / 1e4


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def decisions(logits: np.ndarray, targets: np.ndarray, k: int) -> dict:
    """Class k's recall and the balanced accuracy (mean recall over the classes present)."""
    pred = logits.argmax(1)
    recalls = [float(np.mean(pred[targets == c] == c)) for c in np.unique(targets)]
    return {"recall": round(float(np.mean(pred[targets == k] == k)), 4),
            "balanced_accuracy": round(float(np.mean(recalls)), 4)}


@dataclass(frozen=True)
class Thresholds:
    offsets: np.ndarray  # added to the logits (the operating point)
    refer: float | None  # malignant risk at or above which a photo is referred


def _fit(logits: np.ndarray, targets: np.ndarray, k: int, min_recall: float | None, offsets: np.ndarray,
         temperature: float, sensitivity: float, malignant: list[int]) -> Thresholds:
    """The operating point (when there is a recall target) and the referral threshold, on these photos."""
    if min_recall is not None:
        offsets = np.zeros(len(offsets))
        offsets[k] = recall_offset(logits, targets, k, min_recall)
    is_malignant = np.isin(targets, malignant)
    refer = None
    if malignant and is_malignant.any():
        refer = risk_threshold(_risk(logits + offsets, temperature, malignant)[is_malignant], sensitivity)
    return Thresholds(offsets, refer)


def _risk(logits: np.ndarray, temperature: float, malignant: list[int]) -> np.ndarray:
    return softmax(logits, temperature)[:, malignant].sum(1)


def _referred(risk: np.ndarray, refer: np.ndarray | float, is_malignant: np.ndarray) -> dict:
    """What the referral threshold costs here: a model that cannot tell this site's lesions apart
    refers nearly every benign one too, and the clinic should know before relying on it."""
    sent = risk >= refer
    return {"malignant": round(float(np.mean(sent[is_malignant])), 4),
            "benign": None if is_malignant.all() else round(float(np.mean(sent[~is_malignant])), 4)}


def folds(targets: np.ndarray, lesions: Sequence[str | None] | None = None, n_folds: int = FOLDS) -> np.ndarray:
    """Each photo's fold. Each class's lesions (in order of first appearance; without `lesions`,
    each photo is its own, and so is a photo whose id is None, as in edgeskin's own split) are cut
    into `n_folds` contiguous runs, so every fold holds its share of every class and a lesion's
    photos share one fold. Without lesion ids, photos of one lesion listed together still do
    (dealt round-robin, they would not)."""
    units = list(range(len(targets))) if lesions is None else [i if u is None else u for i, u in enumerate(lesions)]
    first = {}  # unit -> its first photo, in file order
    for i, u in enumerate(units):
        first.setdefault(u, i)
    unit_fold = {}
    for c in np.unique(targets):
        mine = [u for u, i in first.items() if targets[i] == c]
        unit_fold.update({u: r * n_folds // len(mine) for r, u in enumerate(mine)})
    return np.array([unit_fold[u] for u in units], np.int64)


def _cross_validated(logits: np.ndarray, targets: np.ndarray, k: int, fit, temperature: float,
                     malignant: list[int], lesions: Sequence[str | None] | None) -> dict:
    """Every photo decided by thresholds `fit` on the other folds: the profile's out-of-sample figures."""
    fold = folds(targets, lesions)
    # Photos folded alone: a lesion photographed twice without an id can sit on both sides of a fold.
    alone = len(targets) if lesions is None else sum(u is None for u in lesions)
    out = {"folds": FOLDS, "grouped_by": "photo" if alone == len(targets) else "lesion_id",
           "photos_without_lesion_id": alone, "decisions": None, "referred": None}
    if any(not np.any(targets[fold != f] == k) for f in range(FOLDS)):  # e.g. one lesion, many photos
        return {**out, "skipped": "a fold would be fitted without a positive photo; add other lesions' photos"}
    offsets = np.zeros_like(logits)
    refer = np.full(len(targets), np.nan)
    for f in range(FOLDS):
        held, rest = fold == f, fold != f
        t = fit(logits[rest], targets[rest])
        offsets[held] = t.offsets
        refer[held] = np.nan if t.refer is None else t.refer
    out["decisions"] = decisions(logits + offsets, targets, k)
    is_malignant = np.isin(targets, malignant)
    if is_malignant.any() and not np.isnan(refer).any():
        out["referred"] = _referred(_risk(logits + offsets, temperature, malignant), refer, is_malignant)
    return out


def fit_profile(logits: np.ndarray, targets: np.ndarray, card: dict, min_recall: float | None,
                site: str, source: str, lesions: Sequence[str | None] | None = None) -> dict:
    """A site profile from raw logits (before the card's offsets) of labelled photos; `lesions`:
    each photo's lesion id (None where unknown), which keeps a lesion's photos in one cross-validation fold."""
    labels = list(card["labels"])
    card_point = card.get("operating_point") or {}
    positive = card_point.get("label") or card["positive_label"]
    k = labels.index(positive)
    counts = {lab: int(np.sum(targets == i)) for i, lab in enumerate(labels)}
    if counts[positive] < MIN_POSITIVES:
        raise EdgeRuntimeError(f"{source} has {counts[positive]} {positive!r} photos; a site profile needs at "
                               f"least {MIN_POSITIVES} to fit on (add labelled {positive!r} photos)")
    if min_recall is None:
        min_recall = card_point.get("min_recall")
    check_min_recall(min_recall)
    card_offsets = np.asarray(card_point.get("offsets") or [0.0] * len(labels), np.float64)
    cal = card.get("calibration") or {}
    sensitivity, temperature = float(cal.get("refer_sensitivity") or 0.9), float(cal.get("temperature") or 1.0)
    malignant = [labels.index(m) for m in card.get("malignant_labels") or [] if m in labels]

    def fit(z: np.ndarray, y: np.ndarray) -> Thresholds:
        return _fit(z, y, k, min_recall, card_offsets, temperature, sensitivity, malignant)
    t = fit(logits, targets)
    point = None if min_recall is None else {
        "label": positive, "min_recall": min_recall, "offsets": [round(float(o), 6) for o in t.offsets],
        "site_with_card": decisions(logits + card_offsets, targets, k),
        "site_after": decisions(logits + t.offsets, targets, k)}
    is_malignant = np.isin(targets, malignant)
    referred = None if t.refer is None else \
        _referred(_risk(logits + t.offsets, temperature, malignant), t.refer, is_malignant)
    return {"kind": PROFILE_KIND, "version": PROFILE_VERSION, "site": site, "fitted_on": source,
            "n_images": int(len(targets)), "counts": counts, "operating_point": point,
            "calibration": {"refer_at_risk": t.refer, "refer_sensitivity": sensitivity, "card_refer_at_risk":
                            cal.get("refer_at_risk")}, "site_referred": referred,
            "cross_validated": _cross_validated(logits, targets, k, fit, temperature, malignant, lesions),
            "note": "thresholds fitted on these photos; the site_* figures are in-sample, cross_validated's are not"}


def write_profile(path: Path, profile: dict, model_file: str, sha256: str) -> dict:
    """Bind the profile to the model's SHA-256 and write it atomically (never half-written);
    returns the profile as written."""
    path = Path(path)
    body = {**profile, "model": {"file": model_file, "sha256": sha256}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    return body


def read_profile(path, model_name: str, sha256: str, n_labels: int) -> dict:
    """A profile written for exactly this model file, else a one-line error saying what to do."""
    path = Path(path)
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeRuntimeError(f"site profile {path} not found; write one with `edge_runtime calibrate`") from None
    except (OSError, ValueError) as exc:
        raise EdgeRuntimeError(f"{path} is not a site profile JSON ({exc}); write it again with "
                               "`edge_runtime calibrate`") from None
    if not isinstance(profile, dict) or profile.get("kind") != PROFILE_KIND:
        raise EdgeRuntimeError(f"{path} is not a site profile; write one with `edge_runtime calibrate`")
    if profile["model"]["sha256"] != sha256:
        raise EdgeRuntimeError(f"{path} was fitted for {profile['model']['file']} (SHA-256 "
                               f"{profile['model']['sha256'][:12]}...), not {model_name} ({sha256[:12]}...); "
                               "run `edge_runtime calibrate` for this model")
    point = profile.get("operating_point")
    if point is not None and len(point["offsets"]) != n_labels:
        raise EdgeRuntimeError(f"{path}: {len(point['offsets'])} offsets for {n_labels} labels; write it again")
    return profile
