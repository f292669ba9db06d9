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

from edgeskin.benchmark import multisource as ms
from edgeskin.benchmark.artifacts import int8_tflite
from edgeskin.card import ModelCard
from edgeskin.recipes import recipe_config
from edgeskin.data.records import get_task
from edgeskin.evaluate.deploy import deployment_figures
from edgeskin.fileio import write_json, write_text
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


def score_row(args, row: str) -> list[dict[str, Any]]:
    """Step 1-2 for one row: its runs (trained or reused) and one entry per held-out source."""
    r, labels, out = ROWS[row], get_task("multiclass").labels, []
    if len(r.train_sources) == 1:  # one run per seed, tested on its own test side and every other source
        runs = [train_or_reuse(run_config(args, row, s, None)) for s in args.seeds]
        found: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
        for run in runs:
            for data in (None, args.isic):
                y, lg, src, _ = ms.scores_on(run, data)
                for name in dict.fromkeys(src.tolist()):
                    keep = src == name
                    found.setdefault(name, (y[keep], []))[1].append(lg[keep])
        tests = {name: (found[name], runs) for name in SOURCES if name in found}
        val = [ModelCard.load(run).metrics["val"]["balanced_accuracy"] for run in runs]
    else:
        tests, val = {}, []
        for held in args.holdouts:
            runs = [train_or_reuse(run_config(args, row, s, held)) for s in args.seeds]
            scored = [ms.scores_on(run) for run in runs]
            tests[held] = ((scored[0][0], [s[1] for s in scored]), runs)
            val += [ModelCard.load(run).metrics["val"]["balanced_accuracy"] for run in runs]
    for held, ((y, per_seed), runs) in tests.items():
        own = len(r.train_sources) == 1 and held in r.train_sources
        trained = list(r.train_sources) if len(r.train_sources) == 1 else [s for s in r.train_sources if s != held]
        out.append({"row": row, "train_sources": trained, "test_source": held, "seeds": list(args.seeds),
                    "protocol": "the source's own lesion-grouped test side" if own else "all of a source never trained on",
                    **ms.summarise(y, per_seed, labels), "val_balanced_accuracy": float(np.mean(val)),
                    "runs": [str(p) for p in runs], "note": r.note})
    return out


def winner_int8(args, winner: str, rows: list[dict]) -> dict[str, Any]:
    """Step 3: the winner trained on everything, exported, scored as the device decides (offsets)."""
    labels = get_task("multiclass").labels
    run = train_or_reuse(run_config(args, winner, args.seeds[0], None))
    tflite = int8_tflite(run, 500, MIN_RECALL)
    y, lg, src, card = ms.tflite_logits(run, tflite)
    ham = src == "HAM10000"
    f = deployment_figures(y[ham], lg[ham], labels, "mel", card.offsets)
    boot = ms.summarise(y[ham], [lg[ham] + np.asarray(card.offsets)], labels)
    holdout_auc, holdout_ba = {}, {}
    for r in rows:
        if r["row"] == winner and r["test_source"] not in r["train_sources"]:
            hold = Path(r["runs"][0])
            yh, lh, _, hcard = ms.tflite_logits(hold, int8_tflite(hold, 500, MIN_RECALL))
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


def render(report: dict[str, Any]) -> str:
    return ms.render(report, beside_current_winner())


def external_of(args, entry: dict[str, Any]) -> str | None:
    """A one-source row met the other sources as external sets; a multi-source row's test side is the held-out one."""
    return args.isic if len(ROWS[entry["row"]].train_sources) == 1 and entry["test_source"] != "HAM10000" else None


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
    report["paired_vs_ham_only"] = ms.paired_rows(rows, lambda entry: external_of(args, entry))  # step 4
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
