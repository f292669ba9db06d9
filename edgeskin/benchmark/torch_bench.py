"""The torch fp32 eager baseline, timed with edge_runtime's method (see edge_runtime/bench.py) so
the two are comparable row for row: its own process, the same photo, warm-ups, runs and threads.

    python -m edgeskin.benchmark.torch_bench RUN --image PHOTO [--threads N --runs N --warmup N]
    python -m edgeskin.benchmark.torch_bench RUN --image PHOTO --once   # the cold-start child
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edge_runtime.bench import peak_rss_mb, percentiles, timed  # the same statistics as the device side


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--image", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from edge_runtime.preprocess import model_pixels, normalize, open_rgb
    from edgeskin.cam import cam_to_heatmap, with_cam
    from edgeskin.card import ModelCard
    from edgeskin.train.runs import load_run_model

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    card = ModelCard.load(args.run)
    model = load_run_model(Path(args.run), card, torch.device("cpu")).eval()
    load_s = time.perf_counter() - t
    pre = card.preprocessing
    rgb = open_rgb(args.image)

    def predict(cam: bool):
        x = torch.from_numpy(normalize(model_pixels(rgb, pre.input_size, pre.color_constancy)[None], pre.mean, pre.std)).permute(0, 3, 1, 2)
        with torch.inference_mode():
            out = with_cam(model, cam)(x)
        logits = out[0] if cam else out
        p = torch.softmax(logits, 1)[0].numpy()
        if cam:
            cam_to_heatmap(out[1][0, int(p.argmax())].numpy(), (rgb.height, rgb.width))
        return p

    if args.once:
        print(json.dumps({"label": card.labels[int(predict(False).argmax())]}))
        return 0
    x = torch.from_numpy(normalize(model_pixels(rgb, pre.input_size, pre.color_constancy)[None], pre.mean, pre.std)).permute(0, 3, 1, 2)
    with_cam(model, False)

    def infer():
        with torch.inference_mode():
            model(x)

    t = time.perf_counter()
    infer()
    first_s = time.perf_counter() - t
    for _ in range(args.warmup):
        infer()
    result = {"load_ms": 1000 * load_s, "first_inference_ms": 1000 * first_s,
              "inference": percentiles(timed(infer, args.runs)),
              "end_to_end_without_cam": percentiles(timed(lambda: predict(False), args.runs)),
              "end_to_end_with_cam": percentiles(timed(lambda: predict(True), args.runs)),
              "peak_rss_mb": peak_rss_mb(),
              "method": {"warmup": args.warmup, "runs": args.runs, "threads": args.threads,
                         "interpreter": f"torch {torch.__version__} eager", "delegate": "CPU (ATen)",
                         "input_dtype": "float32"}}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeskin.benchmark.torch_bench", args.run, "--image", args.image,
                    "--once", "--threads", str(args.threads)], check=True, capture_output=True)
    result["cold_start_ms"] = 1000 * (time.perf_counter() - t)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
