"""Mask guidance (`edgeskin train --mask-guidance W`): teach the heatmap to sit on the lesion.

The class activation map the device shows (edgeskin.models.heads: classifier weights x last
feature map, no autograd) is also differentiable in training, so the lesion masks that ship with
HAM10000 can supervise it, as "Right for the Right Reasons" (Ross et al., IJCAI 2017) penalises
input gradients outside the annotated region and GAIN (Li et al., CVPR 2018) supervises Grad-CAM.
The penalty is the share of the true class's CAM (a softmax over its cells, see outside_share)
that falls outside the lesion, at the feature map's resolution: the training-time form of the
"energy in lesion" that `edgeskin explain --quality` and the ablation's "CAM in lesion" column
report on upsampled, min-max scaled maps. Only the training split's masks are used, moved with
their images by the same crop, flips and rotation (edgeskin.data.transforms); nothing changes in
the exported graph. On HAM10000 (benchmarks/results/ham10000_ablation.md) weight 1 moved the
deployed CNN's heatmap from 0.42 to 0.64 of its heat on the lesion at the same balanced accuracy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgeskin.data.bundle import LabelledImages
from edgeskin.data.masks import lesion_masks


def outside_share(cams: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean over images of the share of their true class's CAM outside the lesion.

    cams: N x K x h x w; y: N class indices; masks: N x 1 x H x W (0/1), pooled to h x w as the
    fraction of each feature cell inside the lesion. The share is taken of the map's softmax over
    its cells, not of its positive part: that is the same for the map plus any constant, so the
    network cannot escape it by pushing the whole map below zero (the head's bias then carries the
    logit), which blanks the heatmap the device shows. Images whose crop shows no lesion are left
    out (0 when none is left)."""
    cam = cams[torch.arange(len(y), device=cams.device), y].float().flatten(1)
    inside = F.adaptive_avg_pool2d(masks.float(), cams.shape[-2:]).flatten(1)
    share = (torch.softmax(cam, 1) * (1 - inside)).sum(1)
    keep = inside.sum(1) > 0
    return share[keep].mean() if bool(keep.any()) else cam.sum() * 0.0


class MaskGuide:
    """weight x outside_share, added to a batch's loss by edgeskin.train.engine.train_epoch."""

    def __init__(self, weight: float):
        self.weight = weight

    def __call__(self, cams: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.weight * outside_share(cams, y, masks)


def training_masks(data: LabelledImages, index: np.ndarray) -> np.ndarray:
    """The masks of the images at `index`, at their input size; a one-line error names the first
    image without one and the fix."""
    size = data.pixels.shape[1:3]
    return lesion_masks(data.source.root, [data.samples[i].image_id for i in index], size, "--mask-guidance",
                        "train with --mask-guidance 0")
