"""Export the real-HAM10000 run to every file the benchmark compares, each validated with its
own runtime on the validation split, and tabulate the validations.

    python benchmarks/ham10000_export.py [--run runs/benchmarks/ham10000-baseline] [--reuse]

Needs the baseline run (and its `compress --int8` for --with-qat). Files: fp32 .onnx; fp32, fp16,
int8 and int16x8 .tflite; the int8 MediaPipe .tflite. int8 starts from the fp32 weights
(--int8-from fp32), which agreed better with torch than the QAT start; --with-qat also exports the
QAT start as the .onnx int8 file. With --reuse it only tabulates the card JSONs already in
RUN/export. Writes benchmarks/results/ham10000_export.{json,md}; the test-split numbers and
timings are in ham10000_benchmark.py's report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from edgeskin.fileio import write_json, write_text

HERE = Path(__file__).resolve().parent
EXPORTS = (("onnx", "fp32", []), ("tflite", "fp32", []), ("tflite", "fp16", []),
           ("tflite", "int8", ["--int8-from", "fp32", "--calib-images", "300"]),
           ("tflite", "int16x8", ["--calib-images", "300"]),
           ("mediapipe", "int8", ["--int8-from", "fp32", "--calib-images", "300"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/benchmarks/ham10000-baseline")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--with-qat", action="store_true")
    ap.add_argument("--out", default="ham10000_export", help="file name under benchmarks/results")
    args = ap.parse_args()
    run = Path(args.run)
    jobs = list(EXPORTS) + ([("onnx", "int8", [])] if args.with_qat else [])
    if not args.reuse:
        for target, precision, extra in jobs:
            subprocess.run([sys.executable, "-m", "edgeskin", "export", str(run), "--target", target,
                            "--precision", precision, "--allow-degraded", *extra], check=True)
    rows = []
    for card_json in sorted((run / "export").glob("*.json")):
        d = json.loads(card_json.read_text())
        v = d["validation"]
        rows.append({"file": d["artifact"]["file"], "status": d["status"], "failures": d["failures"],
                     "size_mb": (run / "export" / d["artifact"]["file"]).stat().st_size / 1e6,
                     "quantization": d["model_card"].get("quantization"), "validation": v})
    out = HERE / "results" / args.out
    write_json(out.with_suffix(".json"), {"run": str(run), "rows": rows})
    backbone = json.loads((run / "model_card.json").read_text())["backbone"]
    lines = [f"# HAM10000 run exported ({backbone}): validation of every file", "",
             f"Each file run with its own runtime (LiteRT, ONNX Runtime) on the lesion-grouped validation split "
             f"({rows[0]['validation']['n']} images); agreement with the torch model it came from; CAM r against "
             "pytorch-grad-cam's Grad-CAM on torch fp32. Test-split numbers and timings: "
             "benchmarks/ham10000_benchmark.py's report for the same run.", "",
             "| file | MB | val bal. acc. | torch fp32 | Δ (pp) | top-1 agreement | CAM r | status |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r["validation"]
        cam = "— (no CAM output)" if v["cam_pearson_mean"] is None else f"{v['cam_pearson_mean']:.3f}"
        lines.append(f"| {r['file']} | {r['size_mb']:.2f} | {v['balanced_accuracy']:.3f} | "
                     f"{v['torch_fp32_balanced_accuracy']:.3f} | {-v['balanced_accuracy_drop_pp']:+.1f} | "
                     f"{v['top1_agreement']:.3f} | {cam} | {r['status']}"
                     f"{': ' + '; '.join(r['failures']) if r['failures'] else ''} |")
    lines += ["", f"Reproduce: `python benchmarks/ham10000_export.py --run {run} --out {args.out}`"]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
