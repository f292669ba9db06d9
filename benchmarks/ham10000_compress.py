"""Compression of the real-HAM10000 baseline run: structured pruning + INT8 (PTQ, then QAT).

    python benchmarks/ham10000_compress.py [--run runs/benchmarks/ham10000-baseline] [--prune 0.3]

Needs the run written by benchmarks/ham10000_baseline.py. Writes
benchmarks/results/ham10000_compress.{json,md}; the variants stay in RUN/compress.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from edgeskin.compress.pipeline import compress
from edgeskin.config import CompressConfig
from edgeskin.fileio import write_json, write_text

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/benchmarks/ham10000-baseline")
    ap.add_argument("--prune", type=float, default=0.3)
    ap.add_argument("--prune-mode", default="structured")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "ham10000_compress"))
    args = ap.parse_args()
    if not Path(args.run, "model_card.json").is_file():
        print(f"error: {args.run} has no model_card.json; run benchmarks/ham10000_baseline.py first", file=sys.stderr)
        return 2
    t0 = time.time()
    cfg = CompressConfig(run=args.run, int8=True, prune=args.prune, prune_mode=args.prune_mode, epochs=args.epochs)
    result = compress(cfg)
    minutes = round((time.time() - t0) / 60, 1)
    out = Path(args.out)
    summary = json.loads((result.out_dir / "summary.json").read_text())
    write_json(out.with_suffix(".json"), {**summary, "wall_minutes": minutes, "device": "cpu",
                                          "torch_threads": torch.get_num_threads()})
    header = (f"Run `{args.run}` (the HAM10000 baseline); CPU, {torch.get_num_threads()} threads, "
              f"{minutes} min in all.\n\nReproduce: `python benchmarks/ham10000_compress.py --prune {args.prune} "
              f"--prune-mode {args.prune_mode} --epochs {args.epochs}`\n")
    text = (result.out_dir / "summary.md").read_text()
    title, rest = text.split("\n", 1)
    write_text(out.with_suffix(".md"), f"{title}\n\n{header}{rest}")
    print(f"wrote {out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
