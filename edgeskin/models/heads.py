"""Classification heads, registered by name.

`gap_linear` (default): global-average-pool + linear, so the class activation map
(CAM = classifier weights x last feature map) equals Grad-CAM up to scale, with no gradients.
`mlp`: pool -> Linear(C, 128) -> ReLU -> Dropout -> Linear(128, classes), the seeds' head
(C = 512 on ResNet-18). Its CAM weights are the head's Jacobian at the pooled features.

Every head has `cam(features) -> N x K x h x w`: its logit gradient with respect to the pooled
features applied to the feature map, i.e. Grad-CAM x h*w before ReLU, without autograd (edgeskin.cam).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    HEADS[fn.__name__] = fn
    return fn


class GapLinearHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))

    def cam(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-class maps N x K x h x w: the classifier weights as a 1x1 convolution over the
        features (sum_c w_kc A_c). Convolutions convert cleanly to NHWC runtimes."""
        return F.conv2d(feats, self.fc.weight[:, :, None, None])


class MlpHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0, hidden: int = 128):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.act(self.fc1(torch.flatten(self.pool(x), 1)))))

    def cam(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-class maps with the head's exact Jacobian at the pooled features p,
        fc . diag(ReLU'(fc1 p)) . fc1, applied as 1x1 convolutions: fc(g * fc1(A)), g the active
        hidden units. g depends on the image, so the weights are per sample."""
        active = (self.fc1(torch.flatten(self.pool(feats), 1)) > 0).to(feats.dtype)  # N x H
        hidden = F.conv2d(feats, self.fc1.weight[:, :, None, None]) * active[:, :, None, None]
        return F.conv2d(hidden, self.fc.weight[:, :, None, None])


@register_head
def gap_linear(in_features: int, num_classes: int, drop_rate: float = 0.0) -> nn.Module:
    return GapLinearHead(in_features, num_classes, drop_rate)


@register_head
def mlp(in_features: int, num_classes: int, drop_rate: float = 0.0) -> nn.Module:
    return MlpHead(in_features, num_classes, drop_rate)
