"""An ablation: one row per training lever, every row trained on the same split with the same seeds.

Steps: 1. one lesion-grouped split manifest for every run; 2. train each (row, seed) that has no
finished run yet (a killed ablation resumes where it stopped); 3. score each run's best weights
on the test split, applying a row's inference-time lever (post-hoc logit adjustment tuned on
validation only, flip TTA, the melanoma operating point, or the clinical-context prior fitted on
the training split's age, sex and body site, its weight picked on validation); 4. write
ablation.json + ablation.md after every run, so a partial table is never lost.

Seed means come with a paired bootstrap: the same resampled test images for every seed, so the
interval is for the mean balanced accuracy, not for one lucky seed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from edge_runtime.preprocess import color_constancy

from edgeskin.benchmark.ablation_report import render_markdown
from edgeskin.benchmark.posthoc import POST_LEVERS, clinical_of, fit_class_offsets, min_recall_of, pick_tau
from edgeskin.benchmark.scored import Scored, ensemble_row, paired_bootstrap, seed_row  # noqa: F401  (re-exported)
from edgeskin.card import ModelCard
from edgeskin.config import TrainConfig
from edgeskin.recipes import recipe_config
from edgeskin.data.bundle import LabelledImages
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.split import MANIFEST_FILE, Split, read_manifest, write_manifest
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import classification_metrics
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.evaluate.shift import SHIFTS, shifted
from edgeskin.fileio import atomic_path, sha256_file, write_json, write_text
from edgeskin.train.checkpoint import CONFIG
from edgeskin.train.reuse import train_or_reuse, train_side_by_side
from edgeskin.predict import describe_device, predict_logits, resolve_device, softmax

SCORE_VERSION = 3  # bump when scoring changes (shifts, TTA, tau grid, clinical fit): cached scores are redone


@dataclass(frozen=True)
class Lever:
    """A row: `overrides` of the base recipe's TrainConfig fields, and/or an inference-time `post`
    lever applied to the runs of row `reuse` (so it costs no training). `teacher`: an earlier row
    whose runs (all seeds) are the ensemble each of this row's runs is distilled from."""
    name: str
    group: str
    overrides: dict[str, Any] = field(default_factory=dict)
    post: str | None = None
    reuse: str | None = None
    teacher: str | None = None

    def __post_init__(self) -> None:
        if (self.post is not None and self.post not in POST_LEVERS and min_recall_of(self.post) is None
                and clinical_of(self.post) is None):
            raise EdgeskinError(f"lever {self.name!r}: unknown post {self.post!r}; choose one of {list(POST_LEVERS)}")


@dataclass(frozen=True)
class AblationConfig:
    data: str
    recipe: str
    levers: tuple[Lever, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    base: dict[str, Any] = field(default_factory=dict)  # fields every row shares (epochs, size...)
    out: str = "runs/ablation"
    split_seed: int = 0
    bootstrap: int = 1000
    notes: tuple[str, ...] = ()  # printed under the table (e.g. rows left out, and why)
    parallel: int = 1  # seeds of one row trained side by side (one GPU holds several small runs)
    workers: int = 0  # loader processes per run (a GPU run needs them to be fed; they cost CPU cores)


# Step 1: one split for every run ---------------------------------------------------------------

def shared_split(cfg: AblationConfig) -> Path:
    from edgeskin.train.prepare import prepare_data

    path = Path(cfg.out) / MANIFEST_FILE
    if not path.is_file():
        tcfg = recipe_config(cfg.recipe, {**cfg.base, "data": cfg.data, "seed": cfg.split_seed})
        data, split = prepare_data(tcfg)
        write_manifest(path, data.samples, data.digests, split, data.task.labels, data.targets)
    return path


# Step 2: train (or reuse) one run ---------------------------------------------------------------

def run_config(cfg: AblationConfig, lever: Lever, seed: int, manifest: Path) -> TrainConfig:
    runs = Path(cfg.out) / "runs"
    teacher = {"teacher": tuple(str(runs / f"{lever.teacher}-s{s}") for s in cfg.seeds)} if lever.teacher else {}
    return recipe_config(cfg.recipe, {**cfg.base, **lever.overrides, **teacher, "data": cfg.data, "seed": seed,
                                      "split_manifest": str(manifest), "project": str(Path(cfg.out) / "runs"),
                                      "name": f"{lever.name}-s{seed}", "exist_ok": True, "workers": cfg.workers})


# Step 3: score a run, with the row's inference-time lever ----------------------------------------

def _flip_tta(predict: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray) -> np.ndarray:
    """Mean softmax over identity, horizontal, vertical and both flips (4 forward passes)."""
    views = [pixels, pixels[:, :, ::-1], pixels[:, ::-1], pixels[:, ::-1, ::-1]]
    return np.mean([softmax(predict(np.ascontiguousarray(v))) for v in views], 0)


@dataclass(frozen=True)
class RowModel:
    """A run's model with its row's inference-time lever: `probs_of(pixels)` takes images before
    colour constancy (the device applies it), `data` holds them so."""
    card: ModelCard
    data: LabelledImages
    split: Split
    probs_of: Callable[[np.ndarray], np.ndarray]
    extra: dict[str, Any]


@dataclass(frozen=True)
class SplitImages:
    data: LabelledImages
    split: Split


@lru_cache(maxsize=1)
def _split_images(data: str, task: str, size_hw: tuple[int, int], manifest: str) -> SplitImages:
    """Every run of one input size sees the same images and the shared split: decode and split them
    once, not once per (row, seed). Before colour constancy: shifts act before the device's."""
    images = load_labelled(data, get_task(task), size_hw, require_all_classes=False, progress=False)
    split, keep = read_manifest(manifest, images.samples, images.digests)
    return SplitImages(images.subset(keep), split)


def run_images(run_dir: Path, card: ModelCard, manifest: Path) -> SplitImages:
    """A run's images (before colour constancy) and split; test order is the order scores are in."""
    tcfg = TrainConfig.load(run_dir / CONFIG)
    if tcfg.max_images is not None:  # a per-seed subset: not shared between runs
        return SplitImages(*run_data(run_dir, card, constancy=False))
    return _split_images(tcfg.data, card.task, tuple(card.preprocessing.input_size), str(manifest))


def _probabilities(run_dir: Path, post: str | None, device: torch.device, manifest: Path) -> RowModel:
    card = ModelCard.load(run_dir)
    model = load_run_model(run_dir, card, device)
    images = run_images(run_dir, card, manifest)
    data, split = images.data, images.split
    pre = card.preprocessing

    def logits(px: np.ndarray) -> np.ndarray:
        return predict_logits(model, color_constancy(px, pre.color_constancy), pre.mean, pre.std, device)
    extra: dict[str, Any] = {}
    if post == "tta":
        extra["forward_passes"] = 4
        return RowModel(card, data, split, lambda px: _flip_tta(logits, px), extra)
    if post == "logit_adjust":
        val = split.indices("val")
        counts = np.array([card.split.counts["train"].get(k, 0) for k in card.labels], np.float64)
        log_prior = np.log(np.maximum(counts / counts.sum(), 1e-12))
        extra["tau"] = pick_tau(logits(data.pixels[val]), data.targets[val], log_prior)
        return RowModel(card, data, split, lambda px: softmax(logits(px) - extra["tau"] * log_prior), extra)
    if post == "class_thresholds":
        val = split.indices("val")
        offsets = fit_class_offsets(logits(data.pixels[val]), data.targets[val])
        extra["offsets"] = offsets.tolist()
        return RowModel(card, data, split, lambda px: softmax(logits(px) + offsets), extra)
    min_recall = min_recall_of(post)
    if min_recall is not None:  # the operating point `edgeskin export --min-recall` fits
        from edgeskin.export.calibrate import operating_point

        val = split.indices("val")
        point = operating_point(logits(data.pixels[val]), data.targets[val], card.labels, card.positive_label,
                                min_recall, "validation split")
        offsets = np.asarray(point["offsets"])
        extra["offset"] = float(offsets.max())
        return RowModel(card, data, split, lambda px: softmax(logits(px) + offsets), extra)
    clinical = clinical_of(post)
    if clinical is not None:
        return _clinical_row(card, data, split, logits, extra, *clinical)
    return RowModel(card, data, split, lambda px: softmax(logits(px)), extra)


def _clinical_row(card: ModelCard, data: LabelledImages, split: Split, logits, extra: dict,
                  recorded: bool, min_recall: float | None) -> RowModel:
    """The clinical-context prior `edgeskin train --clinical` fits (edgeskin.train.clinical), added
    to the test images' logits: with their recorded context, or with none (`recorded` False); then,
    with `min_recall`, the operating point fitted on the validation logits with the prior.
    Context is per image, so it scores the test split only, in order."""
    from edgeskin.export.calibrate import operating_point
    from edgeskin.train.clinical import context_logits, fit_clinical_prior

    part = {name: split.indices(name) for name in ("train", "val", "test")}
    samples = {name: [data.samples[i] for i in idx] for name, idx in part.items()}
    val, val_logits = part["val"], logits(data.pixels[part["val"]])
    fit = fit_clinical_prior(samples["train"], data.targets[part["train"]], len(card.labels),
                             samples["val"], data.targets[val], val_logits)
    extra["clinical_scale"] = fit.prior.scale
    offsets = np.zeros(len(card.labels))
    if min_recall is not None:
        point = operating_point(val_logits + context_logits(fit.prior, samples["val"]), data.targets[val],
                                card.labels, card.positive_label, min_recall, "validation split + clinical prior")
        offsets = np.asarray(point["offsets"])
        extra["offset"] = float(offsets.max())
    test = samples["test"] if recorded else [replace(s, age=None, sex=None, site=None) for s in samples["test"]]
    added = context_logits(fit.prior, test) + offsets

    def probs_of(px: np.ndarray) -> np.ndarray:
        if len(px) != len(added):
            raise EdgeskinError("the clinical lever scores the test split (its context is per image)")
        return softmax(logits(px) + added)
    return RowModel(card, data, split, probs_of, extra)


def score_run(run_dir: Path, post: str | None, device: torch.device, manifest: Path) -> Scored:
    """Test-split probabilities with the row's lever, plus the same under each simulated device shift.
    Cached in the run folder, keyed by its weights, the split and SCORE_VERSION, so re-running an
    ablation to add a row does not re-score every finished run."""
    key = {"version": SCORE_VERSION, "post": post, "weights": ModelCard.load(run_dir).weights["sha256"],
           "manifest": sha256_file(manifest)}
    if clinical_of(post) is not None:  # only the clinical rows are redone when the prior's fit changes
        from edgeskin.train.clinical import PRIOR_RULE

        key["prior_rule"] = PRIOR_RULE
    cache = run_dir / f"scores-{post or 'plain'}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            meta = json.loads(str(z["meta"]))
            if meta["key"] == key:
                return Scored(z["probs"], z["targets"], tuple(meta["labels"]), meta["extra"])
    scored = _score(run_dir, post, device, manifest)
    meta = {"key": key, "labels": list(scored.labels), "extra": scored.extra}
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, probs=scored.probs, targets=scored.targets, meta=np.array(json.dumps(meta)))
    return scored


def _score(run_dir: Path, post: str | None, device: torch.device, manifest: Path) -> Scored:
    rm = _probabilities(run_dir, post, device, manifest)
    card, probs_of, extra = rm.card, rm.probs_of, rm.extra
    test = rm.split.indices("test")
    px, y = rm.data.pixels[test], rm.data.targets[test]
    per_shift = {}
    for name in SHIFTS:
        m = classification_metrics(y, probs_of(shifted(px, name)), card.labels, card.positive_label, bootstrap=0)
        per_shift[name] = {"balanced_accuracy": m["balanced_accuracy"],
                           "mel_auc": m["per_class"][card.positive_label]["auc"]}
    if post is None:  # the heatmap's place is a property of the weights, not of an inference lever
        extra.update(_localisation(run_dir, card, color_constancy(px, card.preprocessing.color_constancy), rm))
    extra.update(epochs=card.metrics.get("epochs_run"), train_minutes=card.metrics.get("train_minutes"),
                 val_balanced_accuracy=card.metrics["val"]["balanced_accuracy"], shift=per_shift,
                 shift_balanced_accuracy=float(np.mean([v["balanced_accuracy"] for v in per_shift.values()])),
                 shift_mel_auc=float(np.mean([v["mel_auc"] for v in per_shift.values()])))
    return Scored(probs_of(px), y, card.labels, extra)


def _localisation(run_dir: Path, card: ModelCard, px: np.ndarray, rm: RowModel) -> dict[str, float]:
    """edgeskin.explain.quality.cam_localisation on the test images, when the data has lesion masks."""
    from edgeskin.data.masks import lesion_masks
    from edgeskin.data.transforms import normalize
    from edgeskin.explain.quality import cam_localisation

    test = rm.split.indices("test")
    try:
        masks = lesion_masks(rm.data.source.root, [rm.data.samples[i].image_id for i in test], px.shape[1:3])
    except EdgeskinError:
        return {}
    pre = card.preprocessing
    x = normalize(torch.from_numpy(px).permute(0, 3, 1, 2), torch.tensor(pre.mean), torch.tensor(pre.std))
    return cam_localisation(load_run_model(run_dir, card, torch.device("cpu")), x, masks)


def summarise(lever: Lever, per_seed: dict[int, dict[str, Any]], scored: Sequence[Scored], n_boot: int) -> dict:
    keys = ("balanced_accuracy", "mel_recall", "mel_auc", "auc_macro", "ece", "shift_balanced_accuracy",
            "shift_mel_auc", "cam_in_lesion", "train_minutes", "epochs")
    mean = {k: float(np.mean([r[k] for r in per_seed.values() if r.get(k) is not None]))
            for k in keys if any(r.get(k) is not None for r in per_seed.values())}
    mean["train_hardware"] = " / ".join(sorted({r["train_hardware"] for r in per_seed.values()
                                                if r.get("train_hardware")})) or None
    return {"name": lever.name, "group": lever.group, "overrides": lever.overrides, "post": lever.post,
            "reuse": lever.reuse, "teacher": lever.teacher, "seeds": sorted(per_seed), "mean": mean,
            "balanced_accuracy_ci95": paired_bootstrap(scored, n_boot) if scored and n_boot else None,
            "per_seed": {str(k): v for k, v in per_seed.items()}}


# The whole ablation -------------------------------------------------------------------------------

def _check_levers(cfg: AblationConfig) -> None:
    names = [lv.name for lv in cfg.levers]
    if len(set(names)) != len(names):
        raise EdgeskinError(f"lever names must be unique; got {names}")
    for lv in cfg.levers:
        if lv.reuse is not None and lv.reuse not in names[: names.index(lv.name)]:
            raise EdgeskinError(f"lever {lv.name!r} reuses {lv.reuse!r}, which is not an earlier row; "
                                f"run {lv.reuse!r} before it (its finished runs are reused, not retrained)")
        trained_before = [x.name for x in cfg.levers[: names.index(lv.name)] if x.reuse is None]
        if lv.teacher is not None and lv.teacher not in trained_before:
            raise EdgeskinError(f"lever {lv.name!r} distils from {lv.teacher!r}, which is not an earlier trained row; "
                                f"run {lv.teacher!r} and its own teachers before it (finished runs are reused)")


def train_rows(cfg: AblationConfig) -> list[Path]:
    """Steps 1-2 only: train (or reuse) every trained row's runs and score nothing. For a lent GPU
    that has the images but not their lesion masks, or too little time to score: run the
    ablation where the runs are brought back, and it reuses them (device and workers aside)."""
    _check_levers(cfg)
    manifest = shared_split(cfg)
    done = []
    for lever in (lv for lv in cfg.levers if lv.reuse is None):
        done += [train_or_reuse(c) for c in _seed_configs(cfg, lever, manifest).values()]
    return done


def _seed_configs(cfg: AblationConfig, lever: Lever, manifest: Path) -> dict[int, TrainConfig]:
    """Each seed's run config for `lever` (for an inference-time lever, its reused row's); with
    --parallel, a trained row's seeds are first trained side by side."""
    source = next(lv for lv in cfg.levers if lv.name == (lever.reuse or lever.name))
    configs = {seed: run_config(cfg, source, seed, manifest) for seed in cfg.seeds}
    if cfg.parallel > 1 and lever.reuse is None:
        train_side_by_side(list(configs.values()), cfg.parallel)
    return configs


def run_ablation(cfg: AblationConfig) -> dict[str, Any]:
    _check_levers(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = shared_split(cfg)
    device = resolve_device(recipe_config(cfg.recipe, cfg.base).device)
    result: dict[str, Any] = {"recipe": cfg.recipe, "base": cfg.base, "seeds": list(cfg.seeds),
                              "data": cfg.data, "split_manifest": str(manifest), "rows": [],
                              "hardware": describe_device(device), "notes": list(cfg.notes)}
    by_row: dict[str, list[Scored]] = {}
    for lever in cfg.levers:
        per_seed, scored = {}, []
        configs = _seed_configs(cfg, lever, manifest)
        for seed in cfg.seeds:
            run_dir = train_or_reuse(configs[seed])
            s = score_run(run_dir, lever.post, device, manifest)
            trained_on = ModelCard.load(run_dir).metrics.get("train_hardware")
            s = replace(s, extra={**s.extra, "train_hardware": None if lever.reuse else trained_on})
            if lever.reuse:  # inference-time levers cost no training of their own
                s = replace(s, extra={**s.extra, "train_minutes": 0.0, "epochs": 0})
            per_seed[seed], scored = {**seed_row(s), "run": str(run_dir)}, scored + [s]
            rows = [r for r in result["rows"] if r["name"] != lever.name]
            result["rows"] = rows + [summarise(lever, per_seed, scored, cfg.bootstrap)]
            _write(out, result)
        by_row[lever.name] = scored
        ensembles = {}
        if len(scored) > 1:  # what deploying every seed side by side (N x the latency) would score
            ensembles["seed_ensemble"] = ensemble_row(scored)
        if lever.teacher:  # what the students learnt from, scored as one model: do they still beat it?
            ensembles["teacher_ensemble"] = ensemble_row(by_row[lever.teacher])
        if ensembles:
            result["rows"][-1].update(ensembles)
            _write(out, result)
    return result


def _write(out: Path, result: dict) -> None:
    write_json(out / "ablation.json", result)
    write_text(out / "ablation.md", render_markdown(result))
