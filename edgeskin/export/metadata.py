"""TFLite metadata in the format MediaPipe's ImageClassifier reads, embedded by MediaPipe's own
writer (run in its separate environment; see mediapipe_tool.py for why).

What goes in: NormalizationOptions (the card's mean/std, scaled to 0-255 pixels as MediaPipe
applies them), the label file on the classification tensor, a description of each output, and
the full model card as a packed `model_card.json`. A packed .tflite is also a zip archive, so
`read_packed` reads the card and labels back with the standard library alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

from edgeskin.errors import EdgeskinError

TOOL = Path(__file__).with_name("mediapipe_tool.py")
DEFAULT_PYTHON = Path.home() / ".cache" / "edgeskin" / "mediapipe" / "bin" / "python"


def mediapipe_python() -> str:
    python = os.environ.get("EDGESKIN_MEDIAPIPE_PYTHON") or str(DEFAULT_PYTHON)
    if not Path(python).is_file():
        raise EdgeskinError(f"MediaPipe's Python not found at {python}; run scripts/venv.sh (it builds that "
                            "environment) or set EDGESKIN_MEDIAPIPE_PYTHON to a Python with mediapipe==0.10.21")
    return python


def run_tool(*args: str) -> str:
    proc = subprocess.run([mediapipe_python(), str(TOOL), *args], capture_output=True, text=True,
                          env={**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EdgeskinError(f"MediaPipe {args[0]} failed on {Path(args[1]).name}: {tail[0][:300]}")
    return proc.stdout


def embed_metadata(path: Path, card: dict, outputs: list[dict], input_norm=None) -> None:
    """Rewrite the .tflite at `path` with metadata. `outputs` lists the model's output tensors in
    their order, each {"name", "role": "scores" | "feature", "description"}. `input_norm`: the
    (mean, std) of the file's input when it is not the card's (the MediaPipe file takes pixels/255)."""
    pre = card["preprocessing"]
    mean, std = input_norm or (pre["mean"], pre["std"])
    if len(set(mean)) == 1 and len(set(std)) == 1:  # one value for all channels: MediaPipe's form
        mean, std = mean[:1], std[:1]
    spec = {"name": f"edgeskin {card['backbone']} {card['task']}",
            "description": f"Skin-lesion classifier ({', '.join(card['labels'])}); input RGB "
                           f"{pre['input_size'][0]}x{pre['input_size'][1]}, NHWC.",
            "mean": [255.0 * m for m in mean], "std": [255.0 * s for s in std],
            "labels": list(card["labels"]), "outputs": outputs, "card": card}
    with tempfile.TemporaryDirectory(prefix="edgeskin-meta-") as tmp:
        spec_path, out = Path(tmp) / "spec.json", Path(tmp) / "with_metadata.tflite"
        spec_path.write_text(json.dumps(spec))
        run_tool("write", str(path), str(out), str(spec_path))
        out.replace(path)


def show_metadata(path: Path) -> dict:
    """The embedded metadata as MediaPipe's MetadataDisplayer reads it."""
    return json.loads(run_tool("show", str(path)))


class ImageClassifierRunner:
    """Runs a MediaPipe file through MediaPipe's own ImageClassifier, as validate() runs the
    others: NCHW pixels/255 in, (scores, None) out (no CAM). The images go in at the model's input
    size, so MediaPipe reads the embedded normalisation and runs the file without resizing."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, x) -> tuple:
        import numpy as np
        from PIL import Image

        pixels = np.clip(np.rint(np.asarray(x).transpose(0, 2, 3, 1) * 255), 0, 255).astype(np.uint8)
        with tempfile.TemporaryDirectory(prefix="edgeskin-mp-") as tmp:
            paths = [os.path.join(tmp, f"{i}.png") for i in range(len(pixels))]
            for p, image in zip(paths, pixels):
                Image.fromarray(image).save(p)  # lossless: the file sees exactly these pixels
            lines = run_tool("classify", str(self.path), *paths).splitlines()
        scores = np.zeros((len(pixels), len(json.loads(lines[0])["categories"])), np.float32)
        for i, line in enumerate(lines):
            for c in json.loads(line)["categories"]:
                scores[i, c["index"]] = c["score"]
        return scores, None


def read_packed(path: Path) -> dict:
    """The packed model card and labels, read with zipfile (no MediaPipe, no TensorFlow)."""
    if not zipfile.is_zipfile(path):
        raise EdgeskinError(f"{path} carries no packed metadata; export it again with edgeskin export")
    with zipfile.ZipFile(path) as zf:
        return {"model_card": json.loads(zf.read("model_card.json")),
                "labels": zf.read("labels.txt").decode().split()}
