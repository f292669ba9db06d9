"""`edgeskin train --folds K`: lesion-grouped, class-stratified K-fold cross-validation.

Numbered steps: 1. the data and K splits (each image tested once, no lesion on two sides of any
fold) -> 2. one `edgeskin train` run per fold, from its own split manifest (checkpoint selection
on that fold's validation side) -> 3. each fold's test side scored by `edgeskin evaluate` ->
4. kfold.json / kfold.md with per-fold figures and mean ± std. One split's bootstrap interval
says how the figure moves with other test images; the folds' spread says how it moves with
another split and another training set too.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeskin.config import EvalConfig, TrainConfig
from edgeskin.data.split import kfold_splits, source_strata, write_manifest
from edgeskin.errors import EdgeskinError
from edgeskin.evaluate.run import evaluate
from edgeskin.fileio import write_json, write_text
from edgeskin.train import train
from edgeskin.train.checkpoint import new_run_dir
from edgeskin.train.prepare import check_options, load_data

REPORT_JSON, REPORT_MD = "kfold.json", "kfold.md"
FIGURES = ("balanced_accuracy", "auc_macro", "mel_auc", "mel_recall")


@dataclass(frozen=True)
class KFoldResult:
    out_dir: Path
    folds: list[dict[str, Any]]
    mean: dict[str, float]
    std: dict[str, float]
    report: Path


def train_folds(cfg: TrainConfig, k: int) -> KFoldResult:
    if cfg.split_manifest or cfg.holdout_source:
        raise EdgeskinError("--folds makes its own splits; drop --split-manifest/--holdout-source")
    check_options(cfg)
    # Step 1: data and folds, before any folder exists (bad input fails first).
    data = load_data(cfg)
    splits = kfold_splits(data.samples, source_strata(data.targets, data.sources), data.digests, k, cfg.seed,
                          cfg.val_fraction)
    out = new_run_dir(cfg.project, cfg.name, cfg.exist_ok)
    out.mkdir(parents=True, exist_ok=cfg.exist_ok)
    folds = []
    for i, split in enumerate(splits):
        # Step 2: the fold's run, on the images its manifest names (max_images is already applied).
        manifest = write_manifest(out / f"fold-{i}-split.csv", data.samples, data.digests, split,
                                  data.task.labels, data.targets)
        run = train(dataclasses.replace(cfg, split_manifest=str(manifest), max_images=None, project=str(out),
                                        name=f"fold-{i}", exist_ok=True)).run_dir
        # Step 3: its test side, as `edgeskin evaluate` scores it.
        m = evaluate(EvalConfig(run=str(run), device=cfg.device)).metrics
        folds.append(_fold_figures(i, run, m, data.task.positive_label))
        print(f"edgeskin train --folds: fold {i + 1}/{k} test balanced accuracy {folds[-1]['balanced_accuracy']:.4f}")
    # Step 4: the report.
    mean = {f: _stat(statistics.fmean, folds, f) for f in FIGURES}
    std = {f: _stat(statistics.stdev, folds, f) for f in FIGURES}
    write_json(out / REPORT_JSON, {"k": k, "recipe": cfg.recipe, "seed": cfg.seed, "data": cfg.data,
                                   "protocol": "StratifiedGroupKFold by lesion (and identical bytes), stratified "
                                   "by label within source; each fold's checkpoint chosen on its validation side",
                                   "folds": folds, "mean": mean["balanced_accuracy"], "std": std["balanced_accuracy"],
                                   "mean_by_figure": mean, "std_by_figure": std})
    report = write_text(out / REPORT_MD, _markdown(cfg, k, folds, mean, std))
    print(f"edgeskin train --folds: test balanced accuracy {mean['balanced_accuracy']:.4f} "
          f"± {std['balanced_accuracy']:.4f} over {k} folds; {report}")
    return KFoldResult(out, folds, mean, std, report)


def _fold_figures(i: int, run: Path, m: dict, positive: str) -> dict[str, Any]:
    mel = m["per_class"].get("mel", {})
    return {"fold": i, "run": str(run), "n_test": m["n"], "balanced_accuracy": m["balanced_accuracy"],
            "balanced_accuracy_ci95": (m.get("ci95") or {}).get("balanced_accuracy"), "auc_macro": m["auc_macro"],
            "mel_auc": mel.get("auc"), "mel_recall": mel.get("recall"),
            "positive": positive, "positive_sensitivity": m["positive"]["sensitivity"]}


def _stat(fn, folds: list[dict], key: str) -> float | None:
    values = [f[key] for f in folds if f[key] is not None]
    return float(fn(values)) if len(values) >= 2 else None


def _markdown(cfg: TrainConfig, k: int, folds: list[dict], mean: dict, std: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [f"# {k}-fold cross-validation" + (f": recipe `{cfg.recipe}`" if cfg.recipe else ""), "",
             f"Data `{cfg.data}`, seed {cfg.seed}, {cfg.epochs} epochs a fold. Folds are grouped by lesion and "
             "stratified by label; every image is tested once, by the fold model that never trained on it.", "",
             "| fold | test images | bal. acc. [95% CI] | macro AUC | mel AUC | mel recall |", "|---|---|---|---|---|---|"]
    for f in folds:
        ci = f["balanced_accuracy_ci95"]
        ci_text = f" [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else ""
        lines.append(f"| {f['fold']} | {f['n_test']} | {fmt(f['balanced_accuracy'])}{ci_text} | {fmt(f['auc_macro'])} "
                     f"| {fmt(f['mel_auc'])} | {fmt(f['mel_recall'])} |")
    lines.append("| **mean ± std** | | " + " | ".join(f"**{fmt(mean[x])}** ± {fmt(std[x])}" for x in FIGURES) + " |")
    return "\n".join(lines) + "\n"
