"""The real-HAM10000 benchmark table (`edgeskin benchmark`) and the edge_runtime-vs-torch ratios.

    python benchmarks/ham10000_benchmark.py [--run runs/benchmarks/ham10000-baseline] [--reuse]

Needs the baseline run with its exported files (benchmarks/ham10000_export.py). Runs
`edgeskin benchmark` on this host at 1 and 4 threads (--targets: which files), plus the int8
file's row from the emulated arm64 userland when ../shared/tools is present, unless --reuse (then
it summarises the report already in RUN/benchmark). Copies the report and plots to benchmarks/results/ham10000_benchmark/
and writes ratios.md: int8 TFLite through edge_runtime against torch fp32 eager, same photo,
same threads, side by side in one run; with a MediaPipe int8 file in --targets, also MediaPipe's
ImageClassifier against edge_runtime on the same int8 network.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARM_TOOL = HERE.parent.parent / "shared" / "tools" / "arm64-userland.sh"
TARGETS = "torch-fp32,onnx-fp32,tflite-fp32,tflite-fp16,tflite-int8,tflite-int16x8"


def _arm64_row(run: Path, out: Path) -> list[str]:
    if not ARM_TOOL.is_file():
        return []
    backbone = json.loads((run / "model_card.json").read_text())["backbone"]
    model = f"/work/{run}/export/{backbone}_int8.tflite"
    env = {**os.environ, "ARM_PROJECT_DIR": str(HERE.parent), "ARM_PYTHONPATH": "/work/edge_runtime/src"}
    proc = subprocess.run(["bash", str(ARM_TOOL), "run", "python3", "-m", "edge_runtime", "benchmark", model, "--runs",
                           "5", "--warmup", "1", "--threads", "4", "--json", "--emulated", "--device-name",
                           "arm64 bookworm, emulated (qemu cortex-a72)"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"arm64 row skipped: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return []
    out.write_text(proc.stdout)
    return ["--import", str(out)]


def ratios(report: dict) -> list[str]:
    lines = ["| device | latency ratio (torch p50 ÷ int8 p50) | + CAM | peak RSS ratio (torch ÷ int8) | "
             "cold-start ratio (torch ÷ int8) |", "|---|---|---|---|---|"]
    for device in dict.fromkeys(r["device"] for r in report["rows"]):
        rows = {r["target"]: r for r in report["rows"] if r["device"] == device}
        if {"torch-fp32", "tflite-int8"} <= set(rows):
            t, q = rows["torch-fp32"], rows["tflite-int8"]
            lines.append(f"| {device} | {t['p50_ms'] / q['p50_ms']:.2f}× ({t['p50_ms']:.2f} vs {q['p50_ms']:.2f} ms) | "
                         f"{t['p50_cam_ms'] / q['p50_cam_ms']:.2f}× | {t['peak_rss_mb'] / q['peak_rss_mb']:.2f}× "
                         f"({t['peak_rss_mb']:.0f} vs {q['peak_rss_mb']:.0f} MB) | "
                         f"{t['cold_start_ms'] / q['cold_start_ms']:.2f}× ({t['cold_start_ms']:.0f} vs "
                         f"{q['cold_start_ms']:.0f} ms) |")
    return lines


def mediapipe_ratios(report: dict) -> list[str]:
    """The int8 network through MediaPipe's ImageClassifier (float in, scores out, the Android task
    API) against edge_runtime's full-integer file, per device of this host."""
    pairs = []
    for device in dict.fromkeys(r["device"] for r in report["rows"]):
        rows = {r["target"]: r for r in report["rows"] if r["device"] == device}
        if {"mediapipe-int8", "tflite-int8"} <= set(rows):
            pairs.append((device, rows["mediapipe-int8"], rows["tflite-int8"]))
    if not pairs:
        return []
    lines = ["", "## MediaPipe ImageClassifier against edge_runtime (the same int8 network)", "",
             "| device | end-to-end ratio (MediaPipe p50 ÷ edge_runtime p50) | peak RSS (MediaPipe vs edge_runtime) | "
             "cold start (MediaPipe vs edge_runtime) | bal. acc. (MediaPipe vs edge_runtime) |", "|---|---|---|---|---|"]
    for device, m, e in pairs:
        lines.append(f"| {device} | {m['p50_ms'] / e['p50_ms']:.2f}× ({m['p50_ms']:.2f} vs {e['p50_ms']:.2f} ms) | "
                     f"{m['peak_rss_mb']:.0f} vs {e['peak_rss_mb']:.0f} MB | {m['cold_start_ms']:.0f} vs "
                     f"{e['cold_start_ms']:.0f} ms | {m['balanced_accuracy']:.3f} vs {e['balanced_accuracy']:.3f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/benchmarks/ham10000-baseline")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--out", default="ham10000_benchmark", help="folder name under benchmarks/results")
    ap.add_argument("--targets", default=TARGETS, help="edgeskin benchmark --targets (add mediapipe-int8)")
    args = ap.parse_args()
    run = Path(args.run)
    out = HERE / "results" / args.out
    if not args.reuse:
        extra = _arm64_row(run, run / "arm64_int8.json")
        subprocess.run([sys.executable, "-m", "edgeskin", "benchmark", str(run), "--targets", args.targets,
                        "--threads", "1,4", *extra], check=True)
    src = run / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, out / f.name)
    report = json.loads((src / "report.json").read_text())
    (out / "ratios.md").write_text("\n".join([
        "# edge_runtime int8 .tflite against torch fp32 eager (HAM10000 model, this host)", "",
        "Same model, same photo, same threads, each in its own process, measured side by side in one "
        "`edgeskin benchmark` run (see report.md for the method). Ratios above 1 favour edge_runtime.", "",
        *ratios(report), *mediapipe_ratios(report), ""]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
