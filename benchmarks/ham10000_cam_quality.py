"""CAM quality on real HAM10000 test images: every Grad-CAM-family method and the exported
fp32/int8 .tflite CAM heads, against HAM10000's lesion masks (energy in lesion, pointing game),
with ROAD and confidence change, per method and per class.

    python benchmarks/ham10000_cam_quality.py [--run runs/benchmarks/ham10000-baseline] [--images 300]

Writes benchmarks/results/ham10000_cam_quality/ (report.md, report.json, localisation.png).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from edgeskin.explain.quality import DEFAULT_METHODS, QualityConfig
from edgeskin.explain.quality_report import cam_quality_report

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/benchmarks/ham10000-baseline")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--road-images", type=int, default=60)
    args = ap.parse_args()
    files = ("mobilenetv3_small_100_fp32.tflite", "mobilenetv3_small_100_int8.tflite",
             "mobilenetv3_small_100_int16x8.tflite")
    md = cam_quality_report(QualityConfig(run=args.run, images=args.images, road_images=args.road_images,
                                          methods=DEFAULT_METHODS, artifacts=files))
    out = HERE / "results" / "ham10000_cam_quality"
    out.mkdir(parents=True, exist_ok=True)
    for f in md.parent.iterdir():
        shutil.copy(f, out / f.name)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
