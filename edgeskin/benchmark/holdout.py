"""A pseudo-external test inside one dataset: hold whole groups (body sites) out of training.

A triage device meets another clinic and another dermoscope. HAM10000 alone cannot show that, but
it can keep every image of some body sites (head and neck by default: other lesion types, thinner
sun-damaged skin, other lighting) out of training and validation. Steps: 1. a split whose test
side is an ordinary lesion-grouped part of the other sites plus every held-out image
(`holdout_split`); 2. the ablation trains and scores its rows on that split; 3. each run's test
scores are divided into the two parts, so the in-distribution vs held-out gap comes from the same
runs and the same seeds; 4. holdout.json + holdout.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeskin.benchmark.ablation import (AblationConfig, Lever, Scored, paired_bootstrap, run_ablation, run_images,
                                         score_run, seed_row)
from edgeskin.card import ModelCard
from edgeskin.recipes import recipe_config
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import Sample, get_task
from edgeskin.data.split import MANIFEST_FILE, holdout_split, widen_to_groups, write_manifest
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import write_json, write_text
from edgeskin.predict import resolve_device

HEAD_NECK = ("face", "scalp", "ear", "neck")
HELD_FILE = "held_out.json"
PARTS = ("in_distribution", "held_out")
MEAN_KEYS = ("balanced_accuracy", "mel_recall", "mel_auc", "auc_macro")
BSM = {"loss": "balanced_softmax"}
SOG = {**BSM, "color_constancy": "shades_of_gray"}
HOLDOUT_LEVERS = (
    Lever("balanced-softmax", "objective", BSM),
    # The robustness lever: does colour constancy narrow the gap to unseen sites?
    Lever("shades-of-gray", "robustness", SOG),
    Lever("sog+2x-epochs", "training length", {**SOG, "epochs": 12}),
    # The ablation's winning levers: does distillation's gain, and the melanoma operating point
    # fitted on validation (in-distribution sites only), carry over to sites never seen?
    Lever("sog+2x+distill", "distillation", {**SOG, "epochs": 12}, teacher="sog+2x-epochs"),
    Lever("sog+2x+distill+mel-op", "operating point", post="min_recall=0.7", reuse="sog+2x+distill"),
    # Age, sex and body site as a prior (`train --clinical`). The held-out body sites were never in
    # training, so there they count as missing: only age and sex can help at the unseen sites.
    Lever("sog+2x+clinical", "clinical context", post="clinical", reuse="sog+2x-epochs"),
    Lever("sog+2x+clinical+mel-op", "clinical context", post="clinical+min_recall=0.7", reuse="sog+2x-epochs"),
)


def holdout_config(data: str, rows: list[str], seeds: tuple[int, ...], epochs: int, out: str) -> AblationConfig:
    """The holdout benchmark's rows, on the ablation's recipe, input size and length."""
    return AblationConfig(data=data, recipe="ham-edge-int8", levers=tuple(lv for lv in HOLDOUT_LEVERS if lv.name in rows),
                          seeds=seeds, base={"input_size": (96, 128), "epochs": epochs, "patience": 99}, out=out)


def holdout_manifest(cfg: AblationConfig, held_of: Callable[[Sample], bool], what: str) -> Path:
    """Step 1: OUT/split.csv, shared by every run, and OUT/held_out.json (which test images are held out)."""
    out = Path(cfg.out)
    path, held_path = out / MANIFEST_FILE, out / HELD_FILE
    if path.is_file() and held_path.is_file():
        return path
    tcfg = recipe_config(cfg.recipe, {**cfg.base, "data": cfg.data, "seed": cfg.split_seed})
    task = get_task(tcfg.task)
    data = load_labelled(tcfg.data, task, tcfg.input_size, require_all_classes=False, progress=False)
    held = np.array([held_of(s) for s in data.samples])
    if not held.any():
        raise EdgeskinError(f"no image in {tcfg.data} matches {what}; check the values (HAM10000's "
                            f"localization column, e.g. {', '.join(HEAD_NECK)})")
    held = widen_to_groups(data.samples, data.digests, held)
    split = holdout_split(data.samples, data.targets, data.digests, held, cfg.split_seed,
                          tcfg.val_fraction, tcfg.test_fraction)
    # held_out.json first: a split.csv without it is re-made, never used with a stale list.
    write_json(held_path, {"what": what, "image_ids": [s.image_id for s, h in zip(data.samples, held) if h]})
    return write_manifest(path, data.samples, data.digests, split, task.labels, data.targets)


def _part_masks(run_dir: Path, manifest: Path, held_ids: set[str]) -> dict[str, np.ndarray]:
    images = run_images(run_dir, ModelCard.load(run_dir), manifest)
    held = np.array([images.data.samples[i].image_id in held_ids for i in images.split.indices("test")])
    return {"in_distribution": ~held, "held_out": held}


def score_parts(cfg: AblationConfig, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Step 3: every row's (cached) test scores, divided into the in-distribution and held-out parts."""
    out = Path(cfg.out)
    manifest, held_ids = out / MANIFEST_FILE, set(json.loads((out / HELD_FILE).read_text())["image_ids"])
    device = resolve_device(recipe_config(cfg.recipe, cfg.base).device)
    rows = []
    for row in result["rows"]:
        scored: dict[str, list[Scored]] = {p: [] for p in PARTS}
        per_seed: dict[str, dict[str, Any]] = {}
        for seed, r in row["per_seed"].items():
            s = score_run(Path(r["run"]), row["post"], device, manifest)
            for part, mask in _part_masks(Path(r["run"]), manifest, held_ids).items():
                scored[part].append(Scored(s.probs[mask], s.targets[mask], s.labels, {}))
                per_seed.setdefault(seed, {})[part] = seed_row(scored[part][-1])
        parts = {p: {"n": int(len(scored[p][0].targets)),
                     "mean": {k: float(np.mean([per_seed[s][p][k] for s in per_seed])) for k in MEAN_KEYS},
                     "per_class_recall": {lab: _mean_or_none([per_seed[s][p]["per_class_recall"][lab] for s in per_seed])
                                          for lab in scored[p][0].labels},
                     "balanced_accuracy_ci95": paired_bootstrap(scored[p], cfg.bootstrap) if cfg.bootstrap else None}
                 for p in PARTS}
        rows.append({"name": row["name"], "group": row["group"], "seeds": row["seeds"], "parts": parts,
                     "train_minutes": row["mean"].get("train_minutes"), "per_seed": per_seed})
    return rows


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]  # None: the class has no images in that part
    return float(np.mean(kept)) if kept else None


def run_holdout(cfg: AblationConfig, held_of: Callable[[Sample], bool], what: str) -> dict[str, Any]:
    manifest = holdout_manifest(cfg, held_of, what)
    result = run_ablation(cfg)
    report = {"what": what, "recipe": cfg.recipe, "base": cfg.base, "seeds": list(cfg.seeds), "data": cfg.data,
              "split_manifest": str(manifest), "hardware": result["hardware"], "notes": list(cfg.notes),
              "rows": score_parts(cfg, result)}
    write_json(Path(cfg.out) / "holdout.json", report)
    write_text(Path(cfg.out) / "holdout.md", render_holdout(report))
    return report


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def render_holdout(report: dict[str, Any]) -> str:
    rows = report["rows"]
    n = rows[0]["parts"] if rows else {p: {"n": 0} for p in PARTS}
    lines = [f"# Pseudo-external test: {report['what']} held out of training", "",
             f"Test images: {n['in_distribution']['n']} in-distribution (the other sites, lesion-grouped) and "
             f"{n['held_out']['n']} held out (never trained or validated on). Mean of seeds {report['seeds']}; "
             f"balanced accuracy with its paired-bootstrap 95% interval. Recipe `{report['recipe']}` with "
             f"{json.dumps(report['base'])}; {report['hardware']}.", "",
             "| row | bal. acc. in-dist. | bal. acc. held out | gap | mel recall in / held | mel AUC in / held "
             "| macro AUC in / held | train min |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        i, h = r["parts"]["in_distribution"], r["parts"]["held_out"]
        ci = [f" [{c[0]:.3f}–{c[1]:.3f}]" if c else "" for c in (i["balanced_accuracy_ci95"], h["balanced_accuracy_ci95"])]
        gap = h["mean"]["balanced_accuracy"] - i["mean"]["balanced_accuracy"]
        lines.append(f"| {r['name']} | {_f(i['mean']['balanced_accuracy'])}{ci[0]} | "
                     f"{_f(h['mean']['balanced_accuracy'])}{ci[1]} | {gap:+.3f} | "
                     + " | ".join(f"{_f(i['mean'][k])} / {_f(h['mean'][k])}" for k in MEAN_KEYS[1:])
                     + f" | {'—' if r['train_minutes'] is None else format(r['train_minutes'], '.1f')} |")
    if rows:
        labels = list(rows[0]["parts"]["held_out"]["per_class_recall"])
        lines += ["", "Per-class recall, in-distribution / held out (— : no images of that class there):", "",
                  "| row | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for r in rows:
            pc = [r["parts"][p]["per_class_recall"] for p in PARTS]
            lines.append(f"| {r['name']} | " + " | ".join(f"{_f(pc[0][lab])} / {_f(pc[1][lab])}" for lab in labels) + " |")
    lines += ["", *report["notes"]]
    return "\n".join(lines).rstrip() + "\n"
