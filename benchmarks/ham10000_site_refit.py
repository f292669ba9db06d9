"""Refitting the decision thresholds at an unseen site, on real HAM10000 (`edge_runtime calibrate`).

    python benchmarks/ham10000_site_refit.py [--row sog+2x-epochs] [--min-recall 0.7] [--seeds 0,1,2]
                                            [--epochs 6] [--out runs/holdout/ham10000]

Uses the site-holdout split and runs of benchmarks/ham10000_site_holdout.py (head-and-neck lesions
never trained or validated on; the row is trained here when its runs are missing). Compares the
card's thresholds (fitted on the training sites' validation split, as `edgeskin export
--min-recall` does) with a site profile fitted on half of the held-out site's lesions, each half
decided by the other's profile. Results: benchmarks/results/ham10000_site_refit.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from edgeskin.benchmark.ablation import run_ablation
from edgeskin.benchmark.holdout import HEAD_NECK, HOLDOUT_LEVERS, holdout_config, holdout_manifest
from edgeskin.benchmark.site_refit import run_site_refit
from edgeskin.errors import EdgeskinError

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "HAM10000"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    trained = [lv.name for lv in HOLDOUT_LEVERS if lv.post is None]
    ap.add_argument("--row", default="sog+2x-epochs", choices=trained, help="a trained row of the holdout benchmark")
    ap.add_argument("--min-recall", type=float, default=0.7)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default="runs/holdout/ham10000")
    args = ap.parse_args()
    if not 0.0 < args.min_recall <= 1.0:
        print(f"error: --min-recall {args.min_recall} is not a recall; pass a value in (0, 1]", file=sys.stderr)
        return 2
    cfg = holdout_config(args.data, [args.row], tuple(int(s) for s in args.seeds.split(",")), args.epochs, args.out)
    try:
        holdout_manifest(cfg, lambda s: s.site in HEAD_NECK, f"body sites {', '.join(HEAD_NECK)}")
        run_ablation(cfg)  # trains the row's runs, or reuses finished ones
        run_site_refit(cfg, args.row, args.min_recall)
    except EdgeskinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for suffix in ("json", "md"):
        shutil.copyfile(Path(args.out) / f"site_refit.{suffix}", HERE / "results" / f"ham10000_site_refit.{suffix}")
    print((Path(args.out) / "site_refit.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
