"""Class activation maps without autograd, as a module that can be exported with the model.

For a head on a global-average pool, Grad-CAM's channel weights are the gradient of the logit
with respect to the pooled features divided by h*w (the gradient is the same at every position).
Each head supplies that gradient in closed form and applies it as 1x1 convolutions (`cam`), so

    cam_k = sum_c w_kc * A_c        (A = the `cam_layer` feature map)

equals Grad-CAM's map for class k times h*w, before its ReLU: exact, with no backward pass, so it
runs inside an exported ONNX/TFLite graph on the device. SkinClassifier.forward computes it when
`cam_output` is set (`with_cam(model)`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def with_cam(model: nn.Module, on: bool = True) -> nn.Module:
    """Make a SkinClassifier return (logits, cams) from forward (NNCF keeps the same instance)."""
    model.cam_output = on
    return model


def cam_to_heatmap(cam: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """One class's raw CAM (h x w) -> [0, 1] heatmap at image size: ReLU, min-max, bilinear resize,
    in pytorch-grad-cam's order (scale_cam_image) and edge_runtime.heatmap.to_heatmap's."""
    relu = np.maximum(cam, 0).astype(np.float32)
    lo, hi = relu.min(), relu.max()
    if hi <= lo:
        return np.zeros(size_hw, np.float32)
    t = torch.from_numpy((relu - lo) / (hi - lo))[None, None]
    return F.interpolate(t, size=size_hw, mode="bilinear", align_corners=False)[0, 0].numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float(np.array_equal(a, b))
    return float(np.corrcoef(a, b)[0, 1])
