"""A pseudo-external test on real HAM10000: head-and-neck lesions held out of training and validation.

    python benchmarks/ham10000_site_holdout.py [--sites face,scalp,ear,neck] [--rows shades-of-gray,...]
                                              [--seeds 0,1,2] [--epochs 6] [--out runs/holdout/ham10000]
                                              [--merge]

Every image of the held-out body sites goes to test (with its whole lesion); the other sites are
split lesion-grouped as usual. The ablation's rows are trained on that split (same recipe, input
size and length as benchmarks/ham10000_ablation.py) and each run's test scores are reported for
the in-distribution part and the held-out part, so the gap is measured on the same runs. Finished
runs and scores are reused. Results are copied to benchmarks/results/ham10000_site_holdout.{json,md};
with --merge, the rows run now replace theirs in that committed table and its other rows are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from edgeskin.benchmark.ablation_report import merge_tables
from edgeskin.benchmark.holdout import (HEAD_NECK, HOLDOUT_LEVERS as LEVERS, holdout_config, render_holdout,
                                        run_holdout)
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import write_json, write_text

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "HAM10000"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--sites", default=",".join(HEAD_NECK), help="comma-separated HAM10000 localization values")
    ap.add_argument("--rows", default=",".join(lv.name for lv in LEVERS), help="comma-separated row names")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default="runs/holdout/ham10000")
    ap.add_argument("--merge", action="store_true",
                    help="keep the committed table's rows that --rows does not run (same split and seeds)")
    ap.add_argument("--note", action="append", default=[], help="a line printed under the table (repeatable)")
    args = ap.parse_args()
    wanted = args.rows.split(",")
    unknown = sorted(set(wanted) - {lv.name for lv in LEVERS})
    if unknown:
        print(f"unknown rows {unknown}; choose from {[lv.name for lv in LEVERS]}", file=sys.stderr)
        return 2
    sites = tuple(s.strip() for s in args.sites.split(",") if s.strip())
    cfg = holdout_config(args.data, wanted, tuple(int(s) for s in args.seeds.split(",")), args.epochs, args.out)
    cfg = replace(cfg, notes=tuple(args.note))
    results = HERE / "results"
    committed = results / "ham10000_site_holdout.json"
    kept = json.loads(committed.read_text()) if args.merge and committed.is_file() else None
    try:
        report = run_holdout(cfg, lambda s: s.site in sites, f"body sites {', '.join(sites)}")
        if kept is not None:
            report = merge_tables(report, kept, [lv.name for lv in LEVERS])
    except (EdgeskinError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json(Path(args.out) / "holdout.json", report)
    write_text(Path(args.out) / "holdout.md", render_holdout(report))
    for suffix in ("json", "md"):
        shutil.copyfile(Path(args.out) / f"holdout.{suffix}", results / f"ham10000_site_holdout.{suffix}")
    print((Path(args.out) / "holdout.md").read_text())
    return 0 if report["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
