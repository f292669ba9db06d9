"""Heatmaps from the Grad-CAM family (pytorch-grad-cam), registered by name, plus `edge`: the
in-graph CAM that exported models carry (edgeskin.cam), so both can be scored the same way.
All maps come back in [0, 1] at the input size, hooked on the model's `cam_layer`."""

from __future__ import annotations

import numpy as np
import torch

from edgeskin.cam import cam_to_heatmap, with_cam
from edgeskin.errors import EdgeskinError


def _grad_cam_classes() -> dict:
    from pytorch_grad_cam import (EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM,
                                  XGradCAM)

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
            "scorecam": ScoreCAM, "eigencam": EigenCAM, "hirescam": HiResCAM}


METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "scorecam", "eigencam", "hirescam", "edge")


def check_method(name: str) -> None:
    if name not in METHODS:
        raise EdgeskinError(f"unknown --method {name!r}; choose one of {list(METHODS)}")


def heatmaps(model: torch.nn.Module, x: torch.Tensor, classes: np.ndarray, method: str) -> np.ndarray:
    """N x H x W maps in [0, 1] explaining `classes` (one per image) for normalised inputs x."""
    check_method(method)
    model.eval()
    size = tuple(x.shape[-2:])
    if method == "edge":
        with torch.no_grad():
            _, cams = with_cam(model)(x)
        with_cam(model, False)
        return np.stack([cam_to_heatmap(cams[i, int(k)].numpy(), size) for i, k in enumerate(classes)])
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_cls = _grad_cam_classes()[method]
    with cam_cls(model=model, target_layers=[model.cam_layer]) as cam:
        if method == "scorecam":
            cam.batch_size = 16  # its default (128) forward passes per image is slow on CPU
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in classes])


def energy_in_mask(heat: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the map's total energy inside the lesion (a uniform map scores the mask's area)."""
    total = float(heat.sum())
    return float(heat[mask].sum()) / total if total > 0 else float("nan")


def pointing_game(heat: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's hottest pixel lies on the lesion."""
    return bool(mask.flat[int(np.argmax(heat))])
