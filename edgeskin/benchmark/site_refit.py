"""Does refitting the thresholds at a new site (`edge_runtime calibrate`) restore what the card promised?

On the site-holdout split (edgeskin.benchmark.holdout: head-and-neck lesions never trained or
validated on), for each run:
1. the card's thresholds, exactly as `edgeskin export --min-recall R` fits them on the validation
   split (training sites): the melanoma operating point, temperature and referral threshold;
2. the held-out site's images divided in two halves by lesion (stratified by class); a site profile
   (edge_runtime.site.fit_profile, the device's own code) fitted on one half decides the other,
   and the other way round, so every held-out image is decided by thresholds fitted without it;
3. melanoma recall, balanced accuracy and the shares of malignant and benign lesions referred, on
   the held-out images with the card's thresholds vs the site's, and for reference with the card's
   on the training sites' own test images; means over seeds -> site_refit.{json,md}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edge_runtime.preprocess import color_constancy
from edge_runtime.site import fit_profile, softmax
from sklearn.model_selection import StratifiedGroupKFold

from edgeskin.benchmark.ablation import AblationConfig, run_images
from edgeskin.benchmark.holdout import HELD_FILE
from edgeskin.card import ModelCard
from edgeskin.recipes import recipe_config
from edgeskin.data.split import MANIFEST_FILE
from edgeskin.metrics import balanced_accuracy
from edgeskin.train.runs import load_run_model
from edgeskin.export.calibrate import device_thresholds
from edgeskin.fileio import write_json, write_text
from edgeskin.predict import predict_logits, resolve_device

SETTINGS = ("card", "site")


@dataclass(frozen=True)
class RunLogits:
    card: ModelCard
    samples: tuple  # every image of the run's data; the indices below point into it
    val_logits: np.ndarray
    val_y: np.ndarray
    test_idx: np.ndarray
    test_logits: np.ndarray
    test_y: np.ndarray


def _logits(run_dir: Path, manifest: Path, device: torch.device) -> RunLogits:
    card = ModelCard.load(run_dir)
    model = load_run_model(run_dir, card, device)
    images = run_images(run_dir, card, manifest)
    pre = card.preprocessing

    def part(name: str):
        idx = images.split.indices(name)
        px = color_constancy(images.data.pixels[idx], pre.color_constancy)
        return idx, predict_logits(model, px, pre.mean, pre.std, device).astype(np.float64), images.data.targets[idx]
    _, val_logits, val_y = part("val")
    return RunLogits(card, images.data.samples, val_logits, val_y, *part("test"))


def _classes(card: dict) -> tuple[int, list[int]]:
    """The positive class's index and the malignant classes' indices of a card dict."""
    labels = list(card["labels"])
    return labels.index(card["positive_label"]), [labels.index(m) for m in card["malignant_labels"]]


def card_thresholds(card: ModelCard, val_logits: np.ndarray, val_y: np.ndarray, min_recall: float) -> dict:
    """Step 1: the thresholds `edgeskin export --min-recall` writes into the card, as the card's dict."""
    return device_thresholds(card, val_logits, val_y, min_recall, "validation split").to_dict()


def _decide(logits, offsets, cal, malignant) -> dict[str, np.ndarray]:
    z = logits + np.asarray(offsets)
    risk = softmax(z, cal["temperature"])[:, malignant].sum(1)
    return {"pred": z.argmax(1), "referred": risk >= cal["refer_at_risk"]}


def _metrics(y, pred, referred, k, malignant) -> dict[str, float]:
    is_mal = np.isin(y, malignant)
    return {"mel_recall": float(np.mean(pred[y == k] == k)), "balanced_accuracy": balanced_accuracy(y, pred),
            "malignant_referred": float(np.mean(referred[is_mal])), "benign_referred": float(np.mean(referred[~is_mal]))}


def cross_fit(logits: np.ndarray, y: np.ndarray, lesions: np.ndarray, card: dict, seed: int) -> dict[str, dict]:
    """Step 2: the site's images decided with the card's thresholds and with a site profile fitted
    on the other half of the site's lesions (halves stratified by class)."""
    k, malignant = _classes(card)
    decided = {name: {"pred": np.full(len(y), -1), "referred": np.zeros(len(y), bool)} for name in SETTINGS}
    folds = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed).split(logits, y, lesions)
    for fit, apply in folds:
        prof = fit_profile(logits[fit], y[fit], card, None, "held-out half", "held-out half")
        site_cal = {**card["calibration"], "refer_at_risk": prof["calibration"]["refer_at_risk"]}
        for name, offsets, cal in (("card", card["operating_point"]["offsets"], card["calibration"]),
                                   ("site", prof["operating_point"]["offsets"], site_cal)):
            d = _decide(logits[apply], offsets, cal, malignant)
            decided[name]["pred"][apply], decided[name]["referred"][apply] = d["pred"], d["referred"]
    return {name: _metrics(y, d["pred"], d["referred"], k, malignant) for name, d in decided.items()}


def refit_seed(run_dir: Path, manifest: Path, held_ids: set[str], min_recall: float, seed: int,
               device: torch.device) -> dict[str, Any]:
    r = _logits(run_dir, manifest, device)
    card = card_thresholds(r.card, r.val_logits, r.val_y, min_recall)
    logits, y = r.test_logits, r.test_y
    held = np.array([r.samples[i].image_id in held_ids for i in r.test_idx])
    lesions = np.array([r.samples[i].lesion_id for i in r.test_idx[held]])
    k, malignant = _classes(card)
    home = _decide(logits[~held], card["operating_point"]["offsets"], card["calibration"], malignant)
    return {"n": int(held.sum()), "mel": int(np.sum(y[held] == k)), "malignant": int(np.isin(y[held], malignant).sum()),
            "card_at_training_sites": _metrics(y[~held], home["pred"], home["referred"], k, malignant),
            **cross_fit(logits[held], y[held], lesions, card, seed)}


def run_site_refit(cfg: AblationConfig, row: str, min_recall: float) -> dict[str, Any]:
    """Steps 1-3 for one trained row of the holdout benchmark (cfg as ham10000_site_holdout.py builds it)."""
    out = Path(cfg.out)
    manifest, held_ids = out / MANIFEST_FILE, set(json.loads((out / HELD_FILE).read_text())["image_ids"])
    device = resolve_device(recipe_config(cfg.recipe, cfg.base).device)
    per_seed = {}
    for seed in cfg.seeds:
        run_dir = out / "runs" / f"{row}-s{seed}"
        per_seed[str(seed)] = refit_seed(run_dir, manifest, held_ids, min_recall, seed, device)
    keys = list(per_seed[str(cfg.seeds[0])]["card"])
    mean = {name: {m: float(np.mean([r[name][m] for r in per_seed.values()])) for m in keys}
            for name in ("card_at_training_sites", *SETTINGS)}
    report = {"row": row, "min_recall": min_recall, "refer_sensitivity": 0.9, "seeds": list(cfg.seeds),
              "held_out": {k: per_seed[str(cfg.seeds[0])][k] for k in ("n", "mel", "malignant")},
              "mean": mean, "per_seed": per_seed}
    write_json(out / "site_refit.json", report)
    write_text(out / "site_refit.md", render_site_refit(report))
    return report


def render_site_refit(r: dict[str, Any]) -> str:
    h = r["held_out"]
    lines = [f"# Refitting the thresholds at an unseen site (`edge_runtime calibrate`), row `{r['row']}`", "",
             f"Held-out head-and-neck test images: {h['n']} ({h['mel']} melanoma, {h['malignant']} malignant). "
             "Each half (split by lesion) is decided by a site profile fitted on the other half; the card's "
             f"thresholds were fitted on the training sites' validation split, as `edgeskin export --min-recall "
             f"{r['min_recall']}` does. Target: melanoma recall {r['min_recall']}, {r['refer_sensitivity']:.0%} "
             f"of malignant lesions referred. Mean of seeds {r['seeds']}.", "",
             "| thresholds | mel recall | balanced acc. | malignant referred | benign referred |",
             "|---|---|---|---|---|"]
    for name, what in (("card_at_training_sites", "card, on the training sites' test images (reference)"),
                       ("card", "card, on the unseen site"), ("site", "site profile (other half), on the unseen site")):
        m = r["mean"][name]
        lines.append(f"| {what} | {m['mel_recall']:.3f} | {m['balanced_accuracy']:.3f} | "
                     f"{m['malignant_referred']:.3f} | {m['benign_referred']:.3f} |")
    lines += ["", "Per seed (card → site): " + "; ".join(
        f"seed {s}: mel recall {v['card']['mel_recall']:.2f} → {v['site']['mel_recall']:.2f}, malignant referred "
        f"{v['card']['malignant_referred']:.2f} → {v['site']['malignant_referred']:.2f}" for s, v in r["per_seed"].items())]
    return "\n".join(lines) + "\n"
