"""`edgeskin explain RUN IMAGE_OR_DIR --method M`: one overlay PNG per image (at the image's own
resolution), a grid for a folder, and the class each map explains (default: the prediction)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edge_runtime.preprocess import color_constancy

from edgeskin.card import ModelCard
from edgeskin.data.images import load_image, to_rgb
from edgeskin.data.readers import IMAGE_SUFFIXES
from edgeskin.data.transforms import normalize
from edgeskin.errors import EdgeskinError
from edgeskin.train.runs import load_run_model
from edgeskin.explain.maps import check_method, heatmaps
from edgeskin.explain.overlay import overlay, save_grid, save_png
from edgeskin.predict import softmax

MAX_SIDE = 600  # overlays are drawn at the image's resolution, capped for the PNGs


@dataclass(frozen=True)
class ExplainConfig:
    run: str
    inputs: str
    method: str = "gradcam"
    target: str | None = None  # a label of the run; None explains the predicted class


@dataclass(frozen=True)
class ExplainResult:
    out_dir: Path
    rows: list[dict]  # image, predicted, probability, explained class, overlay file
    grid: Path | None


def _image_paths(inputs: Path) -> list[Path]:
    if inputs.is_file():
        return [inputs]
    if inputs.is_dir():
        paths = sorted(p for p in inputs.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if paths:
            return paths
        raise EdgeskinError(f"no images (.jpg/.png/...) directly in {inputs}; pass an image or a folder of images")
    raise EdgeskinError(f"{inputs} does not exist; pass an image file or a folder of images")


def _display(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        rgb = to_rgb(img)
        rgb.thumbnail((MAX_SIDE, MAX_SIDE))
        return np.asarray(rgb)


def explain(cfg: ExplainConfig) -> ExplainResult:
    run = Path(cfg.run)
    card = ModelCard.load(run)
    check_method(cfg.method)
    if cfg.target is not None and cfg.target not in card.labels:
        raise EdgeskinError(f"unknown --target-class {cfg.target!r}; the run's labels are {list(card.labels)}")
    paths = _image_paths(Path(cfg.inputs))
    pre = card.preprocessing
    pixels = color_constancy(np.stack([load_image(p.read_bytes(), pre.input_size, str(p)) for p in paths]),
                             pre.color_constancy)
    model = load_run_model(run, card, torch.device("cpu"))
    x = normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.tensor(pre.mean), torch.tensor(pre.std))
    with torch.no_grad():
        probs = softmax(model(x).numpy())
    classes = np.full(len(paths), card.labels.index(cfg.target)) if cfg.target else probs.argmax(1)
    heat = heatmaps(model, x, classes, cfg.method)
    out = run / "explain" / cfg.method
    rows, tiles, titles = [], [], []
    for i, path in enumerate(paths):
        shown = _display(path)
        big = np.asarray(Image.fromarray((heat[i] * 255).astype(np.uint8)).resize(
            (shown.shape[1], shown.shape[0]), Image.BILINEAR)) / 255.0
        tile = overlay(shown, big)
        file = save_png(tile, out / f"{path.stem}.png")
        pred = card.labels[int(probs[i].argmax())]
        rows.append({"image": str(path), "predicted": pred, "probability": float(probs[i].max()),
                     "explained": card.labels[int(classes[i])], "overlay": str(file)})
        tiles.append(tile)
        titles.append(f"{path.stem}: {pred} {probs[i].max():.2f}")
    grid = save_grid(tiles[:16], titles[:16], out / "grid.png") if len(paths) > 1 else None
    return ExplainResult(out, rows, grid)
