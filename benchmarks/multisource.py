"""Several clinics, judged on the clinic a model has never seen: leave-one-source-out on HAM10000
(Vienna, Queensland) + ISIC 2019's BCN_20000 (Barcelona) and MSK (New York) part.

    python benchmarks/multisource.py [--ham ../shared/data/HAM10000] [--isic ../shared/data/ISIC2019_BCN_MSK]
                                     [--rows ham-only,all-sources,...] [--seeds 0] [--epochs 8] [--holdouts MSK,...]
                                     [--out runs/multisource] [--winner ROW] [--no-export] [--merge]

Steps:
1. Every row is one recipe (`multi-source` plus the row's overrides). A row trained on several
   sources gets one run per held-out source and seed (`--holdout-source S`: train and validate on
   the others, test on all of S). The `ham-only` row trains once per seed on HAM10000's own
   lesion-grouped split and is tested on HAM's test side and on all of BCN and of MSK.
2. Each (row, held-out source) is scored on the held-out images: balanced accuracy over the classes
   that source has (seed mean, bootstrap 95% CI), melanoma-vs-rest AUC and melanoma recall.
3. The winner is the multi-source row with the best mean validation balanced accuracy (validation
   only: the held-out sources never choose). It is trained once more on all three sources (a
   lesion-grouped split stratified by label within each source), exported to a full-int8 .tflite
   by `edgeskin export` (validated there, with a melanoma operating point fitted on validation),
   and that file is scored with LiteRT on HAM10000's test side; its held-out melanoma AUCs come from
   the winner's leave-one-source-out runs, each exported to int8 the same way.
4. Every multi-source row is set against `ham-only` on each source neither trained on: the
   difference of seed-mean melanoma AUC and balanced accuracy, with a paired bootstrap 95% CI.
Runs are reused when finished and resumed when killed. Writes benchmarks/results/multisource/
report.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.benchmark.artifacts import exported_card, int8_tflite
from edgeskin.benchmark.scored import paired_delta, seed_mean_ci
from edgeskin.card import ModelCard
from edgeskin.recipes import recipe_config
from edgeskin.data.bundle import load_labelled
from edgeskin.data.records import get_task
from edgeskin.evaluate.deploy import deployment_figures
from edgeskin.metrics import balanced_accuracy
from edgeskin.train.runs import card_label_map, load_run_model, run_data
from edgeskin.fileio import write_json, write_text
from edgeskin.predict import predict_logits, resolve_device
from edgeskin.train.reuse import train_or_reuse

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "multisource"
SOURCES = ("HAM10000", "BCN", "MSK")
RECIPE = "multi-source"
MIN_RECALL = 0.75  # the winner file's melanoma operating point (validation recall)


@dataclass(frozen=True)
class Row:
    overrides: dict[str, Any]
    train_sources: tuple[str, ...] = SOURCES
    note: str = ""


ROWS = {
    "ham-only": Row({"vignette_augment": 0.0}, ("HAM10000",), "HAM10000 alone, at the same input size"),
    "all-sources": Row({"vignette_augment": 0.0}, note="the three sources pooled, nothing else (the recipe)"),
    "all-sources+vignette": Row({"vignette_augment": 0.5}, note="+ a simulated black vignette on half the images"),
    "all-sources+resolution": Row({"vignette_augment": 0.0, "resolution_augment": 0.5},
                                  note="+ random down-and-up sampling"),
    "all-sources+source-balanced": Row({"vignette_augment": 0.0, "balance_source": True},
                                       note="+ (source, class)-balanced sampler"),
    "all-sources-colour-constancy": Row({"vignette_augment": 0.0, "color_constancy": "none"},
                                        note="without shades-of-gray colour constancy"),
    "all-sources+strong-augment": Row({"vignette_augment": 0.0, "augment": "strong"},
                                      note="+ strong crop and colour jitter"),
}


def run_config(args, row: str, seed: int, holdout: str | None):
    r = ROWS[row]
    data = tuple(d for d, names in ((f"HAM10000={args.ham}", ("HAM10000",)), (args.isic, ("BCN", "MSK")))
                 if set(names) & set(r.train_sources) or holdout in names)
    name = f"{row}-{'pooled' if holdout is None else 'no-' + holdout}-s{seed}"
    return recipe_config(RECIPE, {**r.overrides, "data": data if len(data) > 1 else data[0], "seed": seed,
                                  "holdout_source": holdout, "epochs": args.epochs, "project": args.out,
                                  "name": name, "exist_ok": True})


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


def score_row(args, row: str) -> list[dict[str, Any]]:
    """Step 1-2 for one row: its runs (trained or reused) and one entry per held-out source."""
    r, labels, out = ROWS[row], get_task("multiclass").labels, []
    if len(r.train_sources) == 1:  # one run per seed, tested on its own test side and every other source
        runs = [train_or_reuse(run_config(args, row, s, None)) for s in args.seeds]
        found: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
        for run in runs:
            for data in (None, args.isic):
                y, lg, src, _ = scores_on(run, data)
                for name in dict.fromkeys(src.tolist()):
                    keep = src == name
                    found.setdefault(name, (y[keep], []))[1].append(lg[keep])
        tests = {name: (found[name], runs) for name in SOURCES if name in found}
        val = [ModelCard.load(run).metrics["val"]["balanced_accuracy"] for run in runs]
    else:
        tests, val = {}, []
        for held in args.holdouts:
            runs = [train_or_reuse(run_config(args, row, s, held)) for s in args.seeds]
            scored = [scores_on(run) for run in runs]
            tests[held] = ((scored[0][0], [s[1] for s in scored]), runs)
            val += [ModelCard.load(run).metrics["val"]["balanced_accuracy"] for run in runs]
    for held, ((y, per_seed), runs) in tests.items():
        own = len(r.train_sources) == 1 and held in r.train_sources
        trained = list(r.train_sources) if len(r.train_sources) == 1 else [s for s in r.train_sources if s != held]
        out.append({"row": row, "train_sources": trained, "test_source": held, "seeds": list(args.seeds),
                    "protocol": "the source's own lesion-grouped test side" if own else "all of a source never trained on",
                    **summarise(y, per_seed, labels), "val_balanced_accuracy": float(np.mean(val)),
                    "runs": [str(p) for p in runs], "note": r.note})
    return out


def held_out_scores(args, entry: dict[str, Any]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(labels, per-seed logits, ids) of one report entry on its held-out source, in one image order."""
    per_seed, y, ids = [], None, None
    for run in map(Path, entry["runs"]):
        # a one-source row met the other sources as external sets; a multi-source row's test side is the held-out one
        ext = args.isic if len(ROWS[entry["row"]].train_sources) == 1 and entry["test_source"] != "HAM10000" else None
        yy, lg, src, ii = scores_on(run, ext)
        keep = src == entry["test_source"]
        order = np.argsort(ii[keep], kind="stable")
        yy, lg, ii = yy[keep][order], lg[keep][order], ii[keep][order]
        if ids is not None and not np.array_equal(ids, ii):
            raise ValueError(f"{run}: its {entry['test_source']} images differ from the row's other seeds")
        y, ids = yy, ii
        per_seed.append(lg)
    return y, per_seed, ids


def _mel_auc(y: np.ndarray, logits: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    mel = get_task("multiclass").labels.index("mel")
    return float(roc_auc_score(y == mel, logits[:, mel]))  # rank-only: the logit orders as the softmax does


def paired_rows(args, rows: list[dict[str, Any]], baseline: str = "ham-only", n_boot: int = 1000) -> list[dict]:
    """Step 4: every multi-source row minus the baseline on each source neither trained on, with a
    paired bootstrap (the same resampled images for every seed of both rows)."""
    base = {r["test_source"]: r for r in rows if r["row"] == baseline and r["test_source"] not in r["train_sources"]}
    out = []
    for r in rows:
        if r["row"] == baseline or r["test_source"] not in base or r["test_source"] in r["train_sources"]:
            continue
        if not all((Path(run) / "model_card.json").is_file() for run in r["runs"] + base[r["test_source"]]["runs"]):
            print(f"paired: {r['row']} on {r['test_source']} skipped, its runs are no longer on disk", file=sys.stderr)
            continue
        ya, la, ia = held_out_scores(args, r)
        yb, lb, ib = held_out_scores(args, base[r["test_source"]])
        if not np.array_equal(ia, ib):
            raise ValueError(f"{r['row']} and {baseline} were tested on different {r['test_source']} images")
        out.append({"row": r["row"], "baseline": baseline, "test_source": r["test_source"], "n": int(len(ya)),
                    "seeds": r["seeds"], "baseline_seeds": base[r["test_source"]]["seeds"],
                    "mel_auc": paired_delta(ya, la, lb, _mel_auc, n_boot),
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


def winner_int8(args, winner: str, rows: list[dict]) -> dict[str, Any]:
    """Step 3: the winner trained on everything, exported, scored as the device decides (offsets)."""
    labels = get_task("multiclass").labels
    run = train_or_reuse(run_config(args, winner, args.seeds[0], None))
    tflite = int8_tflite(run, 500, MIN_RECALL)
    y, lg, src, card = tflite_logits(run, tflite)
    ham = src == "HAM10000"
    f = deployment_figures(y[ham], lg[ham], labels, "mel", card.offsets)
    boot = summarise(y[ham], [lg[ham] + np.asarray(card.offsets)], labels)
    holdout_auc, holdout_ba = {}, {}
    for r in rows:
        if r["row"] == winner and r["test_source"] not in r["train_sources"]:
            hold = Path(r["runs"][0])
            yh, lh, _, hcard = tflite_logits(hold, int8_tflite(hold, 500, MIN_RECALL))
            fh = deployment_figures(yh, lh, labels, "mel", hcard.offsets)
            holdout_auc[r["test_source"]], holdout_ba[r["test_source"]] = fh["mel_auc"], fh["balanced_accuracy_present"]
    per_source = {name: deployment_figures(y[src == name], lg[src == name], labels, "mel", card.offsets)
                  for name in dict.fromkeys(src.tolist())}
    return {"row": winner, "run": str(run), "file": str(tflite), "size_mb": round(tflite.stat().st_size / 2**20, 3),
            "ham_test_balanced_accuracy": f["balanced_accuracy_present"], "ham_test_ci95": boot["balanced_accuracy_ci95"],
            "ham_test_mel_recall": f["mel_sensitivity"], "ham_test_mel_auc": f["mel_auc"],
            "holdout_mel_auc": holdout_auc, "holdout_balanced_accuracy": holdout_ba,
            "pooled_test_per_source": per_source, "operating_point_min_recall": MIN_RECALL, "seeds": [args.seeds[0]]}


def beside_current_winner() -> list[str]:
    """The HAM10000-only winner's int8 figures, read from its committed report (another split)."""
    path = HERE / "results" / "ham10000_winner_int8.json"
    if not path.is_file():
        return []
    cur = json.loads(path.read_text())
    lo, hi = cur["int8"]["balanced_accuracy_ci95"]
    return [f"- Beside the HAM10000-only winner `{cur['row']}` (`{path.relative_to(HERE.parent)}`, seeds "
            f"{list(cur['seeds'])}, HAM10000's own lesion-grouped test split, not the pooled one): balanced accuracy "
            f"{cur['int8']['balanced_accuracy']:.3f} [{lo:.3f}–{hi:.3f}], melanoma recall "
            f"{cur['int8']['mel_recall']:.3f}, melanoma AUC {cur['int8']['mel_auc']:.3f}."]


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


def render(report: dict[str, Any]) -> str:
    c = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# Several clinics: leave-one-source-out", "",
             f"Recipe `{RECIPE}` ({report['epochs']} epochs, 80x80, CPU) plus each row's change; each row's "
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
                  *beside_current_winner(),
                  "", "| pooled test side | n | classes | mel AUC | mel sens. | mel spec. | bal. acc. |",
                  "|---|---|---|---|---|---|---|"]
        for name, f in w["pooled_test_per_source"].items():
            lines.append(f"| {name} | {f['n']} | {' '.join(f['classes_present'])} | {c(f['mel_auc'])} "
                         f"| {c(f['mel_sensitivity'])} | {c(f['mel_specificity'])} | {c(f['balanced_accuracy_present'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ham", default=str(HERE.parent.parent / "shared" / "data" / "HAM10000"))
    p.add_argument("--isic", default=str(HERE.parent.parent / "shared" / "data" / "ISIC2019_BCN_MSK"))
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--seeds", default="0")
    p.add_argument("--holdouts", default=",".join(SOURCES), help="Sources held out in turn by multi-source rows.")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--out", default="runs/multisource")
    p.add_argument("--winner", help="Skip the choice (it is still reported): export this row.")
    p.add_argument("--no-export", action="store_true", help="Rows only; no winner file.")
    p.add_argument("--merge", action="store_true", help="Keep the report's other rows (and winner file).")
    p.add_argument("--report-dir", type=Path, default=OUT, help="Where report.{json,md} go.")
    args = p.parse_args()
    args.seeds = tuple(int(s) for s in args.seeds.split(","))
    args.holdouts = tuple(args.holdouts.split(","))
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        p.error(f"unknown row(s) {unknown}; choose from {list(ROWS)}")
    wanted = args.rows.split(",")
    rows = [entry for row in wanted for entry in score_row(args, row)]
    out = args.report_dir
    old = json.loads((out / "report.json").read_text()) if args.merge and (out / "report.json").is_file() else {}
    rows = [r for r in old.get("rows", []) if r["row"] not in wanted] + rows  # --merge: keep the other rows
    report: dict[str, Any] = {"recipe": RECIPE, "epochs": args.epochs, "seeds": list(args.seeds), "rows": rows}
    multi = {r["row"]: r["val_balanced_accuracy"] for r in rows if len(ROWS[r["row"]].train_sources) > 1}
    report["chosen_by_validation"] = max(multi, key=multi.get) if multi else None
    report["paired_vs_ham_only"] = paired_rows(args, rows)
    winner = args.winner or report["chosen_by_validation"]
    if winner and not args.no_export:
        report["winner_int8"] = winner_int8(args, winner, rows)
    elif "winner_int8" in old:
        report["winner_int8"] = old["winner_int8"]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    write_text(out / "report.md", render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
