"""Export the real-HAM10000 run to fp32 and int8 .tflite and score each file on the
lesion-grouped test split with the LiteRT interpreter: balanced accuracy against torch fp32,
top-1 agreement, and CAM Pearson r against pytorch-grad-cam's Grad-CAM on the torch model.

    python benchmarks/ham10000_export.py [--run runs/benchmarks/ham10000-baseline]

Needs the baseline run and its `compress --int8` (benchmarks/ham10000_compress.py). Writes
benchmarks/results/ham10000_export.{json,md}; the files stay in RUN/export.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from edgeskin.card import ModelCard
from edgeskin.compress.pipeline import load_variant
from edgeskin.config import ExportConfig
from edgeskin.evaluate.run import load_run_model, run_data
from edgeskin.export import export
from edgeskin.export.tflite import LiteRTRunner
from edgeskin.export.validate import validate
from edgeskin.fileio import write_json, write_text

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/benchmarks/ham10000-baseline")
    ap.add_argument("--out", default=str(HERE / "results" / "ham10000_export"))
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "compress" / "qat_int8" / "model_card.json").is_file():
        print(f"error: {run}/compress/qat_int8 missing; run benchmarks/ham10000_compress.py first", file=sys.stderr)
        return 2
    card = ModelCard.load(run)
    data, split = run_data(run, card)
    test = data.subset(split.indices("test"))
    fp32 = load_run_model(run, card, torch.device("cpu"))
    qcard, qat = load_variant(run / "compress" / "qat_int8")
    rows = []
    for precision, source, src_card in (("fp32", fp32, card), ("int8", qat, qcard)):
        result = export(ExportConfig(run=str(run), target="tflite", precision=precision, allow_degraded=True))
        on_test = validate(LiteRTRunner(result.artifact), source, fp32, test.pixels, test.targets, src_card,
                           precision, cam_images=200)
        rows.append({"file": result.artifact.name, "precision": precision,
                     "size_mb": round(result.artifact.stat().st_size / 1e6, 3), "val": result.validation,
                     "val_status": result.status, "test": on_test.metrics, "test_status": on_test.status,
                     "test_failures": on_test.failures})
        print(f"{precision}: test {on_test.status} {on_test.metrics['balanced_accuracy']:.3f}")
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"run": str(run), "rows": rows})
    lines = [f"# HAM10000 run exported to TFLite ({card.backbone}, {card.preprocessing.input_size[0]} px)", "",
             "Each file run with the LiteRT interpreter on the lesion-grouped test split "
             f"({rows[0]['test']['n']} images); CAM r against pytorch-grad-cam's Grad-CAM on the torch fp32 model "
             f"({rows[0]['test']['cam_images']} images). int8 = full-integer, calibrated on 200 training images, "
             "from the QAT weights.", "",
             "| file | MB | test bal. acc. | torch fp32 bal. acc. | Δ (pp) | top-1 agreement with its torch source | "
             "CAM r (mean / min) | status (test) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["test"]
        lines.append(f"| {r['file']} | {r['size_mb']:.2f} | {t['balanced_accuracy']:.3f} | "
                     f"{t['torch_fp32_balanced_accuracy']:.3f} | {-t['balanced_accuracy_drop_pp']:+.1f} | "
                     f"{t['top1_agreement']:.3f} | {t['cam_pearson_mean']:.3f} / {t['cam_pearson_min']:.3f} | "
                     f"{r['test_status']}{': ' + '; '.join(r['test_failures']) if r['test_failures'] else ''} |")
    lines += ["", "Reproduce: `python benchmarks/ham10000_export.py`"]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
