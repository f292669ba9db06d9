"""Reproducible baseline on the real HAM10000: train from scratch on CPU, evaluate on the
lesion-grouped test split, and write the result next to the always-`nv` baseline.

    python benchmarks/ham10000_baseline.py [--data ../shared/data/HAM10000] [--minutes 25]

Writes benchmarks/results/ham10000_baseline.{json,md}. The run directory (weights, card,
split manifest, full evaluation report with plots) goes to runs/benchmarks/ham10000-baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from edgeskin.config import EvalConfig

from edgeskin.recipes import recipe_config
from edgeskin.evaluate import evaluate
from edgeskin.fileio import write_json, write_text
from edgeskin.train import train

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "HAM10000"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--recipe", default="ham-mobile")
    ap.add_argument("--minutes", type=float, default=25.0, help="training time budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "ham10000_baseline"))
    ap.add_argument("--reuse-run", help="re-evaluate this finished run instead of training (regenerates the report)")
    args = ap.parse_args()
    if not Path(args.data, "HAM10000_metadata.csv").is_file():
        print(f"error: no HAM10000_metadata.csv in {args.data}; pass --data", file=sys.stderr)
        return 2
    t0 = time.time()
    if args.reuse_run:
        from edgeskin.card import ModelCard
        from edgeskin.config import TrainConfig
        from edgeskin.train import TrainResult

        cfg = TrainConfig.load(Path(args.reuse_run) / "config.json")
        card = ModelCard.load(args.reuse_run)
        state = torch.load(Path(args.reuse_run) / "last.pt", map_location="cpu", weights_only=False)
        reason = "early stop" if state["bad_epochs"] >= cfg.patience else "epochs done"
        trained = TrainResult(Path(args.reuse_run), card, state["best_epoch"], state["epoch"], reason)
    else:
        cfg = recipe_config(args.recipe, dict(data=args.data, max_minutes=args.minutes, seed=args.seed,
                                              project="runs/benchmarks", name="ham10000-baseline", exist_ok=True))
        trained = train(cfg)
    result = evaluate(EvalConfig(run=str(trained.run_dir), split="test"))
    m = result.metrics
    record = {
        "what": "from-scratch training on real HAM10000, lesion-grouped test split",
        "recipe": args.recipe, "config": cfg.to_dict(),
        "hardware": {"cpu": _cpu_name(), "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(),
                     "device": "cpu", "torch": torch.__version__},
        "budget_minutes": args.minutes, "train_minutes": trained.card.metrics["train_minutes"],
        "epochs_run": trained.epochs_run, "best_epoch": trained.best_epoch, "stop_reason": trained.stop_reason,
        "wall_minutes": round((time.time() - t0) / 60, 1),
        "split_counts": trained.card.split.counts,
        "val": trained.card.metrics["val"],
        "test": {k: m[k] for k in ("n", "balanced_accuracy", "auc_macro", "accuracy", "cohen_kappa", "g_mean",
                                   "ece", "positive", "ci95")},
        "test_per_class": m["per_class"],
        "baseline_always_majority": json.loads((result.out_dir / "metrics.json").read_text())["baseline_majority"],
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), record)
    report = (result.out_dir / "report.md").read_text()
    header = (f"# HAM10000 baseline: {cfg.backbone}, {cfg.input_size[0]}x{cfg.input_size[1]} px, from scratch\n\n"
              f"Recipe `{args.recipe}`, seed {args.seed}; CPU ({record['hardware']['cpu']}, "
              f"{record['hardware']['torch_threads']} threads), budget {args.minutes:g} min: "
              f"{record['epochs_run']} epochs in {record['train_minutes']} min (best epoch {record['best_epoch']}; "
              f"{record['stop_reason']}).\n\nSplit (images, grouped by lesion_id; per-class counts in the JSON): "
              + "; ".join(f"{s}: {sum(c.values())}" for s, c in record["split_counts"].items())
              + f"\n\nReproduce: `python benchmarks/ham10000_baseline.py --minutes {args.minutes:g}`\n\n")
    write_text(out.with_suffix(".md"), header + report.split("\n", 1)[1])
    print(f"wrote {out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
