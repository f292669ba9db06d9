"""`edgeskin explain RUN --quality`: how good the heatmaps are, over a labelled split.

For every method (the Grad-CAM family, `edge` = the in-graph CAM) and every exported .tflite's
CAM head, on the same images and for the class torch fp32 predicts:
- localisation against the lesion masks (HAM10000's, or the synthetic set's): fraction of map
  energy inside the lesion (a uniform map scores the lesion's area) and the pointing game;
- faithfulness with pytorch-grad-cam's metrics, the torch fp32 model as the judge: ROAD
  (combined MoRF/LeRF, higher is better) on the first `road_images`, and the drop/increase in
  confidence when the image is multiplied by the map;
- for the deployed files: Pearson r and top-20% overlap (IoU) against torch Grad-CAM, so a user
  sees whether conversion or int8 changed the explanation.
Per method overall and per true class; Markdown + JSON + a bar chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_runtime.heatmap import HOT_FRACTION
from edgeskin.cam import cam_to_heatmap, pearson
from edgeskin.card import ModelCard
from edgeskin.data.masks import lesion_masks
from edgeskin.errors import EdgeskinError
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.explain.maps import check_method, energy_in_mask, heatmaps, pointing_game
from edgeskin.export.validate import _normalised

DEFAULT_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "hirescam", "edge")
HOT = HOT_FRACTION  # "the hottest region": the same top 20% the overlays outline


@dataclass(frozen=True)
class QualityConfig:
    run: str
    split: str = "test"
    images: int = 200
    road_images: int = 50
    methods: tuple[str, ...] = DEFAULT_METHODS
    artifacts: tuple[str, ...] | None = None  # exported .tflite files to score; None: all in RUN/export
    seed: int = 0

    def __post_init__(self) -> None:
        for m in self.methods:
            check_method(m)
        if self.split not in ("val", "test") or self.images < 1:
            raise EdgeskinError(f"--split {self.split!r} / --images {self.images}: use val|test and >= 1 image")


def cam_localisation(model: torch.nn.Module, x: torch.Tensor, masks: np.ndarray, batch: int = 256) -> dict:
    """The in-graph CAM (`edge`, what the device shows) for each image's predicted class against its
    lesion mask: mean energy in lesion and pointing-game hit rate, as the quality report scores them,
    except that a blank map (no positive evidence anywhere) counts as none on the lesion, and the
    share of blank maps is reported: a map trained towards the lesion must not get there by going blank."""
    energy, hits, blank = [], [], []
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        with torch.no_grad():
            pred = model(xb).argmax(1).numpy()
        for heat, mask in zip(heatmaps(model, xb, pred, "edge"), masks[start:start + batch]):
            blank.append(not heat.any())
            energy.append(0.0 if blank[-1] else energy_in_mask(heat, mask))
            hits.append(not blank[-1] and pointing_game(heat, mask))
    return {"cam_in_lesion": float(np.mean(energy)), "cam_pointing_game": float(np.mean(hits)),
            "cam_blank": float(np.mean(blank)), "uniform_in_lesion": float(masks.mean())}


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = HOT) -> float:
    """IoU of the two maps' hottest `fraction` of pixels."""
    ta, tb = a >= np.quantile(a, 1 - fraction), b >= np.quantile(b, 1 - fraction)
    return float((ta & tb).sum() / max((ta | tb).sum(), 1))


def _faithfulness(model, x: torch.Tensor, heat: np.ndarray, pred: np.ndarray, road_n: int) -> dict:
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    targets = [ClassifierOutputSoftmaxTarget(int(k)) for k in pred]
    out = {"drop_in_confidence": [], "increase_in_confidence": [], "road": []}
    for s in range(0, len(x), 32):
        sl = slice(s, s + 32)
        out["drop_in_confidence"] += list(DropInConfidence()(x[sl], heat[sl], targets[sl], model).ravel())
        out["increase_in_confidence"] += list(IncreaseInConfidence()(x[sl], heat[sl], targets[sl], model).ravel())
    road = ROADCombined(percentiles=[20, 50, 80])
    for s in range(0, road_n, 16):
        sl = slice(s, min(s + 16, road_n))
        out["road"] += list(road(x[sl], heat[sl], targets[sl], model).ravel())
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _score(heat: np.ndarray, masks: np.ndarray, faith: dict, reference: np.ndarray | None) -> dict:
    per_image = {"energy_in_mask": np.array([energy_in_mask(h, m) for h, m in zip(heat, masks)]),
                 "pointing_game": np.array([pointing_game(h, m) for h, m in zip(heat, masks)], float), **faith}
    if reference is not None:
        per_image["pearson_vs_gradcam"] = np.array([pearson(h, r) for h, r in zip(heat, reference)])
        per_image["top20_iou_vs_gradcam"] = np.array([top_overlap(h, r) for h, r in zip(heat, reference)])
    return per_image


def _artifact_heat(path: Path, pixels: np.ndarray, pred: np.ndarray, pre) -> np.ndarray:
    from edgeskin.export.tflite import LiteRTRunner
    from edgeskin.export.validate import run_artifact

    _, cams = run_artifact(LiteRTRunner(path), pixels, pre.mean, pre.std)
    return np.stack([cam_to_heatmap(cams[i, k], pre.input_size) for i, k in enumerate(pred)])


def _summarise(per_image: dict, targets: np.ndarray, labels) -> dict:
    overall = {k: float(np.nanmean(v)) for k, v in per_image.items()}
    per_class = {labels[c]: {k: float(np.nanmean(v[targets[: len(v)] == c])) for k, v in per_image.items()
                             if (targets[: len(v)] == c).any()} for c in np.unique(targets)}
    return {"overall": overall, "per_class": per_class}


def measure(cfg: QualityConfig) -> dict:
    run = Path(cfg.run)
    card = ModelCard.load(run)
    pre = card.preprocessing
    data, split = run_data(run, card)
    idx = split.indices(cfg.split)
    idx = np.sort(np.random.default_rng(cfg.seed).permutation(idx)[: cfg.images])
    subset = data.subset(idx)
    masks = lesion_masks(Path(data.source.root), [s.image_id for s in subset.samples], pre.input_size)
    model = load_run_model(run, card, torch.device("cpu")).eval()
    x = torch.from_numpy(_normalised(subset.pixels, pre.mean, pre.std))
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    road_n = min(cfg.road_images, len(idx))
    maps = {m: heatmaps(model, x, pred, m) for m in cfg.methods}
    gradcam = maps["gradcam"] if "gradcam" in maps else heatmaps(model, x, pred, "gradcam")
    rows = {m: _score(h, masks, _faithfulness(model, x, h, pred, road_n), None) for m, h in maps.items()}
    found = sorted((run / "export").glob("*.tflite")) if (run / "export").is_dir() else []
    files = [f for f in found if not f.name.endswith("_mediapipe.tflite")
             and (cfg.artifacts is None or f.name in cfg.artifacts)]
    for f in files:
        h = _artifact_heat(f, subset.pixels, pred, pre)
        rows[f"edge: {f.name}"] = _score(h, masks, _faithfulness(model, x, h, pred, road_n), gradcam)
    uniform = float(masks.mean(axis=(1, 2)).mean())  # a flat map's energy-in-mask
    return {"n_images": len(idx), "road_images": road_n, "split": cfg.split, "uniform_energy_in_mask": uniform,
            "synthetic": bool(card.data.get("synthetic")), "backbone": card.backbone,
            "methods": {name: _summarise(v, subset.targets, card.labels) for name, v in rows.items()},
            "per_image": {name: {k: v.tolist() for k, v in r.items()} for name, r in rows.items()}}

