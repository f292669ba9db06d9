"""Scoring and rendering of the leave-one-source-out benchmark (benchmarks/multisource.py): each
run's scores on its held-out images (cached in the run folder), seed-mean figures with their
bootstrap CI, the paired comparison against a baseline row, the int8 file's LiteRT scores, and
the Markdown report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeskin.benchmark.artifacts import exported_card
from edgeskin.benchmark.scored import paired_delta, seed_mean_ci
from edgeskin.card import ModelCard
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import get_task
from edgeskin.evaluate.deploy import deployment_figures
from edgeskin.metrics import balanced_accuracy
from edgeskin.predict import predict_logits, resolve_device
from edgeskin.train.runs import card_label_map, load_run_model, run_data


def scores_on(run: Path, external: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, logits, sources, ids) of the run's test side, or of all of `external`; cached in the run folder (keyed by the checkpoint's mtime) so
    the paired comparison between rows (step 4) needs no re-inference."""
    cache = run / "scores" / f"{'test' if external is None else Path(external).name}.npz"
    stamp = (run / "best.pt").stat().st_mtime_ns if (run / "best.pt").is_file() else 0
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if int(z["stamp"]) == stamp and "ids" in z:
            return z["y"], z["logits"], z["sources"], z["ids"]
    y, logits, sources, ids = _infer(run, external)
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, y=y, logits=logits, sources=sources.astype(str), ids=ids, stamp=stamp)
    tmp.replace(cache)  # a killed run leaves no half-written cache
    return y, logits, sources.astype(str), ids


def images_of(run: Path, card: ModelCard, external: str | None):
    """The run's test side, or all of `external`, preprocessed as the card says."""
    if external is None:
        data, split = run_data(run, card)
        return data.subset(split.indices("test"))
    return load_labelled(external, get_task(card.task), card.preprocessing.input_size, require_all_classes=False,
                         progress=False, color_constancy=card.preprocessing.color_constancy,
                         label_map=card_label_map(card))


def _infer(run: Path, external: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    card = ModelCard.load(run)
    device = resolve_device("auto")
    data = images_of(run, card, external)
    logits = predict_logits(load_run_model(run, card, device), data.pixels, card.preprocessing.mean,
                            card.preprocessing.std, device)
    return data.targets, logits, data.sources, np.array([f"{x.source}/{x.image_id}" for x in data.samples])


def summarise(y: np.ndarray, per_seed: list[np.ndarray], labels, n_boot: int = 1000) -> dict[str, Any]:
    """Seed-mean figures on one test set, with a bootstrap 95% CI of the seed-mean balanced accuracy."""
    figs = [deployment_figures(y, lg, labels, "mel") for lg in per_seed]
    mean = lambda key: float(np.mean([f[key] for f in figs])) if all(f[key] is not None for f in figs) else None  # noqa: E731
    return {"n": int(len(y)), "classes": figs[0]["classes_present"],
            "balanced_accuracy": mean("balanced_accuracy_present"),
            "balanced_accuracy_ci95": seed_mean_ci(y, [lg.argmax(1) for lg in per_seed], n_boot),
            "balanced_accuracy_restricted": mean("balanced_accuracy_restricted"),
            "per_seed": [round(f["balanced_accuracy_present"], 4) for f in figs],
            "mel_auc": mean("mel_auc"), "mel_recall": mean("mel_sensitivity"), "mel_specificity": mean("mel_specificity"),
            "recall": {k: float(np.mean([f["recall_present"][k] for f in figs])) for k in figs[0]["recall_present"]}}


def held_out_scores(entry: dict[str, Any], external: str | None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(labels, per-seed logits, ids) of one report entry on its held-out source, in one image order;
    `external`: the dataset its runs met that source in (None: their own test side)."""
    per_seed, y, ids = [], None, None
    for run in map(Path, entry["runs"]):
        yy, lg, src, ii = scores_on(run, external)
        keep = src == entry["test_source"]
        order = np.argsort(ii[keep], kind="stable")
        yy, lg, ii = yy[keep][order], lg[keep][order], ii[keep][order]
        if ids is not None and not np.array_equal(ids, ii):
            raise ValueError(f"{run}: its {entry['test_source']} images differ from the row's other seeds")
        y, ids = yy, ii
        per_seed.append(lg)
    return y, per_seed, ids


def mel_auc(y: np.ndarray, logits: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    mel = get_task("multiclass").labels.index("mel")
    return float(roc_auc_score(y == mel, logits[:, mel]))  # rank-only: the logit orders as the softmax does


def paired_rows(rows: list[dict[str, Any]], external_of: Callable[[dict], str | None], baseline: str = "ham-only",
                n_boot: int = 1000) -> list[dict]:
    """Every row minus the baseline on each source neither trained on, with a paired bootstrap
    (the same resampled images for every seed of both rows); `external_of(entry)`: held_out_scores'."""
    base = {r["test_source"]: r for r in rows if r["row"] == baseline and r["test_source"] not in r["train_sources"]}
    out = []
    for r in rows:
        if r["row"] == baseline or r["test_source"] not in base or r["test_source"] in r["train_sources"]:
            continue
        if not all((Path(run) / "model_card.json").is_file() for run in r["runs"] + base[r["test_source"]]["runs"]):
            print(f"paired: {r['row']} on {r['test_source']} skipped, its runs are no longer on disk", file=sys.stderr)
            continue
        ya, la, ia = held_out_scores(r, external_of(r))
        yb, lb, ib = held_out_scores(base[r["test_source"]], external_of(base[r["test_source"]]))
        if not np.array_equal(ia, ib):
            raise ValueError(f"{r['row']} and {baseline} were tested on different {r['test_source']} images")
        out.append({"row": r["row"], "baseline": baseline, "test_source": r["test_source"], "n": int(len(ya)),
                    "seeds": r["seeds"], "baseline_seeds": base[r["test_source"]]["seeds"],
                    "mel_auc": paired_delta(ya, la, lb, mel_auc, n_boot),
                    "balanced_accuracy": paired_delta(ya, la, lb, lambda y, lg: balanced_accuracy(y, lg.argmax(1)),
                                                      n_boot)})
    return out


def tflite_logits(run: Path, tflite: Path, external: str | None = None):
    """The int8 file's logits through LiteRT, on the same images as scores_on, plus the file's card."""
    from edgeskin.export.tflite import LiteRTRunner
    from edgeskin.export.validate import run_artifact

    card = exported_card(tflite)
    data = images_of(run, card, external)
    logits, _ = run_artifact(LiteRTRunner(tflite), data.pixels, card.preprocessing.mean, card.preprocessing.std)
    return data.targets, logits, data.sources, card


def render_paired(paired: list[dict[str, Any]]) -> list[str]:
    if not paired:
        return []
    d = lambda x: f"{x['delta']:+.3f} [{x['ci95'][0]:+.3f} to {x['ci95'][1]:+.3f}]"  # noqa: E731
    lines = ["", "## Against HAM10000 alone, on the clinic neither trained on (paired bootstrap)", "",
             "Row minus `ham-only`, seed means, on the same images; the interval resamples one set of images for "
             "every seed of both rows, so an interval that holds 0 means no measured difference.", "",
             "| row | held-out source | n | seeds (row / ham-only) | Δ mel AUC [95% CI] | Δ bal. acc. [95% CI] |",
             "|---|---|---|---|---|---|"]
    for x in paired:
        lines.append(f"| {x['row']} | {x['test_source']} | {x['n']} | {len(x['seeds'])} / {len(x['baseline_seeds'])} "
                     f"| {d(x['mel_auc'])} | {d(x['balanced_accuracy'])} |")
    return lines


def render(report: dict[str, Any], beside: list[str] | tuple = ()) -> str:
    """The report as Markdown; `beside`: lines setting the winner beside another file."""
    c = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# Several clinics: leave-one-source-out", "",
             f"Recipe `{report['recipe']}` ({report['epochs']} epochs, 80x80, CPU) plus each row's change; each row's "
             "figures are means over its seeds (column `seeds`). A row trained on several sources has one run per held-out source: it trains and "
             "validates on the others and is tested on all of the held-out one. `ham-only` is tested on HAM10000's "
             "own lesion-grouped test side and on all of BCN and MSK. Balanced accuracy is over the classes the "
             "test source has (MSK: nv, mel, bkl), with a bootstrap 95% CI; \"restricted\" takes the argmax among "
             "those classes only.", "",
             "| row | seeds | test source | n | bal. acc. [95% CI] | restricted | mel AUC | mel recall | mel spec. | val bal. acc. |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lo, hi = r["balanced_accuracy_ci95"]
        lines.append(f"| {r['row']} | {len(r['seeds'])} | {r['test_source']}{'' if r['test_source'] not in r['train_sources'] else ' (own test side)'} "
                     f"| {r['n']} | {c(r['balanced_accuracy'])} [{lo:.3f}–{hi:.3f}] | {c(r['balanced_accuracy_restricted'])} "
                     f"| {c(r['mel_auc'])} | {c(r['mel_recall'])} | {c(r['mel_specificity'])} | {c(r['val_balanced_accuracy'])} |")
    lines += render_paired(report.get("paired_vs_ham_only", []))
    w = report.get("winner_int8")
    if w:
        lo, hi = w["ham_test_ci95"]
        lines += ["", f"## The winner as a full-int8 .tflite: `{w['row']}`", "",
                  "Chosen by mean validation balanced accuracy over its leave-one-source-out runs; trained once more "
                  "on all three sources, exported by `edgeskin export --target tflite --precision int8 --min-recall "
                  f"{w['operating_point_min_recall']}`, scored through LiteRT with the file's operating point.", "",
                  f"- HAM10000 test side: balanced accuracy **{w['ham_test_balanced_accuracy']:.3f}** [{lo:.3f}–{hi:.3f}], "
                  f"melanoma recall {c(w['ham_test_mel_recall'])}, melanoma AUC {c(w['ham_test_mel_auc'])}; "
                  f"{w['size_mb']} MB.",
                  "- Held-out melanoma AUC (each source's int8 file from the run that never saw it): "
                  + ", ".join(f"{k} {c(v)}" for k, v in w["holdout_mel_auc"].items()) + ".",
                  *beside,
                  "", "| pooled test side | n | classes | mel AUC | mel sens. | mel spec. | bal. acc. |",
                  "|---|---|---|---|---|---|---|"]
        for name, f in w["pooled_test_per_source"].items():
            lines.append(f"| {name} | {f['n']} | {' '.join(f['classes_present'])} | {c(f['mel_auc'])} "
                         f"| {c(f['mel_sensitivity'])} | {c(f['mel_specificity'])} | {c(f['balanced_accuracy_present'])} |")
    return "\n".join(lines) + "\n"
