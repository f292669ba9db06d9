"""The ablation's winning row, deployed: each seed's full-int8 .tflite, validated by `edgeskin export`,
scored on the lesion-grouped HAM10000 test split through edge_runtime's LiteRT backend.

    python benchmarks/ham10000_winner.py (--row ROW [--ablation runs/ablation/ham10000] | --chain DIR) [--reuse]
                                         [--calib-images 1000] [--min-recall 0.7] [--clinical] [--ensemble]

Exports `--target tflite --precision int8 --int8-from fp32 --calib-images N` (default 1000) for
every seed run of ROW (unless --reuse and the file exists), then scores torch fp32 and the int8 file side by side on the test
split: balanced accuracy (seed mean, paired-bootstrap 95% CI), melanoma recall and AUC, size.
With --min-recall R the files carry the operating point `edgeskin export --min-recall R` fits on
validation, and both sides are scored with its offsets, as edge_runtime decides. With --clinical
each run first gets its clinical prior (`edgeskin prior`, fitted on its own split), so the file
carries it and the operating point is fitted with it; both sides add it from each test image's
age, sex and body site. With --ensemble the row's seed runs become one model first
(`edgeskin ensemble`, under ABLATION/ensembles/ROW), and that one file is exported and scored.
With --chain DIR the runs are the last generation of an `edgeskin chain` folder instead of a row
(with --ensemble, that generation's own ensemble, which the chain built).
Writes benchmarks/results/ham10000_winner_int8.{json,md} (with --ensemble: ham10000_ensemble_int8;
with --chain: ham10000_chain_int8 and ham10000_chain_ensemble_int8).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeskin.benchmark.ablation import Scored, paired_bootstrap, seed_row
from edgeskin.card import ModelCard
from edgeskin.config import EnsembleConfig, PriorConfig
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.export.calibrate import uncertain_rates
from edgeskin.benchmark.artifacts import int8_tflite
from edgeskin.export.tflite import LiteRTRunner
from edgeskin.export.validate import run_artifact
from edgeskin.fileio import write_json, write_text
from edgeskin.predict import predict_logits, softmax
from edgeskin.train.clinical import card_context_logits, fit_run_prior
from edgeskin.ensemble.build import build_ensemble

HERE = Path(__file__).resolve().parent
SIZE_LIMIT_MB = 5.0


def _export(run: Path, reuse: bool, calib_images: int, min_recall: float | None) -> Path:
    return int8_tflite(run, calib_images, min_recall, reuse, allow_degraded=True)


def score(run: Path, tflite: Path, device_card: ModelCard) -> tuple[Scored, Scored]:
    """(int8 file, torch fp32), both decided as the device decides with the exported card: its
    clinical prior from each test image's context, if it has one, then its operating-point offsets."""
    card = ModelCard.load(run)
    data, split = run_data(run, card)
    test = split.indices("test")
    pixels, y, pre = data.pixels[test], data.targets[test], card.preprocessing
    offsets = np.asarray(device_card.offsets)
    if device_card.clinical:
        offsets = offsets + card_context_logits(device_card.clinical, [data.samples[i] for i in test])
    logits, _ = run_artifact(LiteRTRunner(tflite), pixels, pre.mean, pre.std)
    ref = predict_logits(load_run_model(run, card, torch.device("cpu")), pixels, pre.mean, pre.std,
                         torch.device("cpu"))
    return (Scored(softmax(logits + offsets), y, card.labels, {}),
            Scored(softmax(ref + offsets), y, card.labels, {}))


def ensemble_run(ablation: str, row: str, runs: list[Path], reuse: bool) -> Path:
    """The row's seed runs as one model (`edgeskin ensemble`), built once under ABLATION/ensembles."""
    out = Path(ablation) / "ensembles" / row
    if not (reuse and (out / "model_card.json").is_file()):
        build_ensemble(EnsembleConfig(runs=tuple(map(str, runs)), project=str(out.parent), name=out.name,
                                      exist_ok=True, device="cpu"))
    return out


@dataclass(frozen=True)
class Picked:
    name: str  # the row, or the chain's last generation
    base: str  # the recipe the overrides apply to
    overrides: dict[str, Any]
    members: list[Path]  # the seed runs, in seed order
    runs: dict[str, Path]  # what is exported and scored: the members, or their one ensemble


def row_runs(ablation: str, name: str, ensemble: bool, reuse: bool) -> Picked | None:
    table = json.loads((Path(ablation) / "ablation.json").read_text())
    row = next((r for r in table["rows"] if r["name"] == name), None)
    if row is None or row["post"]:
        print(f"--row {name!r}: choose a trained row of {ablation}: "
              f"{[r['name'] for r in table['rows'] if not r['post']]}", file=sys.stderr)
        return None
    runs = {seed: Path(info["run"]) for seed, info in row["per_seed"].items()}
    members = list(runs.values())
    if ensemble:
        runs = {f"seeds {', '.join(runs)} as one": ensemble_run(ablation, name, members, reuse)}
    return Picked(name, table["base"], row["overrides"], members, runs)


def chain_runs(chain: Path, ensemble: bool) -> Picked | None:
    summary = chain / "chain.json"
    if not summary.is_file():
        print(f"--chain {chain}: no chain.json there; pass a folder `edgeskin chain` wrote", file=sys.stderr)
        return None
    s = json.loads(summary.read_text())
    cfg, last = s["config"], s["generations"][-1]
    if len(s["generations"]) < len(cfg["generations"]):
        print(f"--chain {chain}: generation {last['index']} of {len(cfg['generations'])} is the last one done; "
              "scoring it (`edgeskin chain --resume` trains the rest)", file=sys.stderr)
    seeds = [str(x) for x in cfg["seeds"]]
    members = [Path(r) for r in last["runs"]]
    runs = dict(zip(seeds, members))
    if ensemble:
        runs = {f"seeds {', '.join(seeds)} as one": Path(last["ensemble"])}
    return Picked(f"{chain.name}, generation {last['index']}", cfg["recipe"], cfg["overrides"], members, runs)


def latency(files: dict[str, Path], threads: int = 2, runs: int = 100, rounds: int = 2) -> dict[str, Any]:
    """Each file's p50 latency through edge_runtime (interpreter alone, and end to end with the CAM
    heatmap), measured in turns in this one process, so the ratios compare like with like."""
    from edge_runtime.bench import benchmark

    seen: dict[str, list[dict]] = {name: [] for name in files}
    for _ in range(rounds):
        for name, path in files.items():
            seen[name].append(benchmark(path, threads=threads, runs=runs, warmup=10, cold=False))
    out = {name: {"file": str(files[name]), "size_mb": round(files[name].stat().st_size / 2**20, 3),
                  "inference_p50_ms": float(np.median([r["inference"]["p50_ms"] for r in rs])),
                  "end_to_end_with_cam_p50_ms": float(np.median([r["end_to_end_with_cam"]["p50_ms"] for r in rs]))}
           for name, rs in seen.items()}
    return {"threads": threads, "runs": runs, "rounds": rounds, "files": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--row", help="a trained row of the ablation table")
    src.add_argument("--chain", help="an `edgeskin chain` folder: its last generation's runs")
    ap.add_argument("--ablation", default="runs/ablation/ham10000")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--calib-images", type=int, default=1000, help="training images calibrating the int8 files")
    ap.add_argument("--min-recall", type=float, default=None,
                    help="export each file with this melanoma operating point (edgeskin export --min-recall)")
    ap.add_argument("--clinical", action="store_true",
                    help="fit each run's clinical prior first (edgeskin prior); the files carry it")
    ap.add_argument("--ensemble", action="store_true",
                    help="the row's seeds as one model (edgeskin ensemble): one file, scored once")
    args = ap.parse_args()
    picked = chain_runs(Path(args.chain), args.ensemble) if args.chain else \
        row_runs(args.ablation, args.row, args.ensemble, args.reuse)
    if picked is None:
        return 2
    runs = picked.runs
    seeds, int8s, fp32s = {}, [], []
    for seed, run in runs.items():
        if args.clinical and not (args.reuse and ModelCard.load(run).clinical):
            fit_run_prior(PriorConfig(run=str(run), device="cpu"))
        tflite = _export(run, args.reuse, args.calib_images, args.min_recall)
        exported = json.loads(Path(f"{tflite}.json").read_text())
        device_card = ModelCard.from_dict(exported["model_card"])
        q, f = score(run, tflite, device_card)
        point = exported["model_card"].get("operating_point")
        seeds[seed] = {"run": str(run), "file": str(tflite), "size_mb": round(tflite.stat().st_size / 2**20, 3),
                       "mel_offset": max(point["offsets"]) if point else 0.0,
                       "clinical_scale": device_card.clinical["scale"] if device_card.clinical else None,
                       "export_status": exported["status"], "export_failures": exported["failures"],
                       "val_top1_agreement": exported["validation"]["top1_agreement"],
                       "int8": seed_row(q), "torch_fp32": seed_row(f),
                       "test_top1_agreement": float(np.mean(q.probs.argmax(1) == f.probs.argmax(1))),
                       # log-probabilities: the int8 logits + offsets up to a constant per image
                       "uncertain": uncertain_rates(np.log(q.probs), q.targets, exported["model_card"]["calibration"])}
        int8s.append(q)
        fp32s.append(f)
    mean = lambda key, src: float(np.mean([s[src][key] for s in seeds.values()]))  # noqa: E731
    result = {"row": picked.name, "chain": args.chain, "recipe_overrides": picked.overrides, "base": picked.base,
              "seeds": seeds,
              "calib_images": args.calib_images, "min_recall": args.min_recall, "clinical": args.clinical,
              "ensemble": len(picked.members) if args.ensemble else None,  # networks in the one file
              "int8": {"balanced_accuracy": mean("balanced_accuracy", "int8"),
                       "balanced_accuracy_ci95": paired_bootstrap(int8s, 1000),
                       "mel_recall": mean("mel_recall", "int8"), "mel_auc": mean("mel_auc", "int8")},
              "torch_fp32": {"balanced_accuracy": mean("balanced_accuracy", "torch_fp32"),
                             "balanced_accuracy_ci95": paired_bootstrap(fp32s, 1000),
                             "mel_recall": mean("mel_recall", "torch_fp32")},
              "size_limit_mb": SIZE_LIMIT_MB}
    if args.ensemble:  # the one file against one member's own int8 file: what the ensemble costs on a device
        member = picked.members[0]
        result["latency"] = latency({"ensemble": Path(seeds[next(iter(seeds))]["file"]),
                                     "one member": _export(member, args.reuse, args.calib_images, None)})
    out = HERE / "results" / {(False, False): "ham10000_winner_int8", (False, True): "ham10000_ensemble_int8",
                              (True, False): "ham10000_chain_int8",
                              (True, True): "ham10000_chain_ensemble_int8"}[(bool(args.chain), args.ensemble)]
    write_json(out.with_suffix(".json"), result)
    write_text(out.with_suffix(".md"), render(result))
    print(render(result))
    return 0


def render(r: dict) -> str:
    q, f = r["int8"], r["torch_fp32"]
    over = f"One file ({r['ensemble']} networks)" if r.get("ensemble") else f"Mean of seeds {list(r['seeds'])}"
    what = ("`edgeskin chain` {}" if r.get("chain") else "Ablation row `{}`") + (
        ", its seeds as one model (`edgeskin ensemble`)" if r.get("ensemble") else "")
    what = what if r.get("chain") or r.get("ensemble") else "Winning ablation row `{}`"
    lines = [f"# {what.format(r['row'])}: full-int8 .tflite on the HAM10000 test split", "",
             f"{over}: int8 balanced accuracy **{q['balanced_accuracy']:.3f}** "
             f"[{q['balanced_accuracy_ci95'][0]:.3f}–{q['balanced_accuracy_ci95'][1]:.3f}] "
             f"(torch fp32 {f['balanced_accuracy']:.3f}), melanoma recall {q['mel_recall']:.3f}, "
             f"melanoma AUC {q['mel_auc']:.3f}. Goal: ≥ 0.75 balanced accuracy, melanoma recall ≥ 0.70, "
             f"≤ {r['size_limit_mb']:g} MB. Each file calibrated on {r['calib_images']} training images and "
             "validated by `edgeskin export` on the validation split (agreement ≥ 0.97, CAM r ≥ 0.9, "
             "balanced accuracy within 1.0 pp of torch).", ""]
    if r.get("min_recall") is not None:
        lines += [f"Operating point: `edgeskin export --min-recall {r['min_recall']}` added to each file's card the "
                  "smallest melanoma logit offset that reaches that melanoma recall on the validation split; "
                  "edge_runtime adds it before deciding, and both columns below are scored with it.", ""]
    if r.get("clinical"):  # its weight per run: 0 where validation found the context no help
        lines += ["Clinical prior: each run's prior (`edgeskin prior`: age, sex and body site, fitted on its training "
                  "split, its weight on validation) is in each file's card; edge_runtime adds it from the photo's "
                  "context, both columns below add it from each test image's recorded context, and the operating "
                  "point was fitted with it.", ""]
    prior = r.get("clinical")
    lines += ["| seed | export | size MB | mel offset | " + ("prior weight | " if prior else "") + "int8 bal. acc. | "
              "fp32 bal. acc. | int8 mel recall | int8 mel AUC | test top-1 agreement | flagged uncertain | "
              "right when flagged / kept |",
              "|---" * (12 if prior else 11) + "|"]
    for seed, s in r["seeds"].items():
        weight = f"{s['clinical_scale']:g} | " if prior else ""
        lines.append(f"| {seed} | {s['export_status']} | {s['size_mb']:.2f} | {s.get('mel_offset', 0.0):.3f} | {weight}"
                     f"{s['int8']['balanced_accuracy']:.3f} | "
                     f"{s['torch_fp32']['balanced_accuracy']:.3f} | {s['int8']['mel_recall']:.3f} | "
                     f"{s['int8']['mel_auc']:.3f} | {s['test_top1_agreement']:.3f} | {_flagged(s)} |")
    if r.get("latency"):
        lat = r["latency"]
        one, ens = lat["files"]["one member"], lat["files"]["ensemble"]
        lines += ["", f"Latency on this host through edge_runtime ({lat['threads']} threads, p50 of {lat['runs']} "
                  f"runs, median of {lat['rounds']} turns taken alternately in one process): the one file "
                  f"{ens['inference_p50_ms']:.2f} ms for the interpreter and "
                  f"{ens['end_to_end_with_cam_p50_ms']:.2f} ms end to end with the heatmap, against one member's "
                  f"own int8 file at {one['inference_p50_ms']:.2f} and {one['end_to_end_with_cam_p50_ms']:.2f} ms: "
                  f"{ens['inference_p50_ms'] / one['inference_p50_ms']:.2f}× and "
                  f"{ens['end_to_end_with_cam_p50_ms'] / one['end_to_end_with_cam_p50_ms']:.2f}×; "
                  f"{ens['size_mb']:.2f} MB against {one['size_mb']:.2f} MB."]
    lines += ["", "Flagged uncertain: the share of test photos whose top probability (at the card's temperature) is "
              "below the card's `uncertain_below`, fitted on validation where a logistic fit of right-or-wrong on "
              "confidence crosses 50%; edge_runtime shows those as \"uncertain\" with a retake-or-refer next step. "
              "Right when flagged / kept: the top class's accuracy on those photos and on the rest."]
    return "\n".join(lines) + "\n"


def _flagged(s: dict) -> str:
    u = s.get("uncertain")
    if not u:
        return "– | –"
    right = ["–" if u[k] is None else f"{u[k]:.2f}" for k in ("right_when_flagged", "right_when_kept")]
    return f"{u['flagged']:.0%} | {right[0]} / {right[1]}"


if __name__ == "__main__":
    sys.exit(main())
