"""Classification heads, registered by name.

`gap_linear` (default): global-average-pool + linear, so the class activation map
(CAM = classifier weights x last feature map) equals Grad-CAM up to scale, with no gradients.
`mlp`: pool -> Linear(C, 128) -> ReLU -> Dropout -> Linear(128, classes), the seeds' head
(C = 512 on ResNet-18). Its CAM weights are the head's Jacobian at the pooled features.

Every head has `cam_weights(features) -> N x K x C`, the gradient of each logit with respect to
the pooled features; edgeskin.cam turns it into class activation maps without autograd.
"""

from __future__ import annotations

from typing import Callable

import torch
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

    def cam_weights(self, feats: torch.Tensor) -> torch.Tensor:
        """d logit_k / d pooled_c for every class: N x K x C (here the classifier weights)."""
        return self.fc.weight.unsqueeze(0).expand(feats.shape[0], -1, -1)


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

    def cam_weights(self, feats: torch.Tensor) -> torch.Tensor:
        """The head's exact Jacobian at the pooled features, N x K x C: fc . diag(ReLU'(fc1 p)) . fc1.
        It depends on the image (which hidden units are active), so it is computed per sample."""
        active = (self.fc1(torch.flatten(self.pool(feats), 1)) > 0).to(feats.dtype)  # N x H
        return torch.einsum("kh,nh,hc->nkc", self.fc.weight, active, self.fc1.weight)


@register_head
def gap_linear(in_features: int, num_classes: int, drop_rate: float = 0.0) -> nn.Module:
    return GapLinearHead(in_features, num_classes, drop_rate)


@register_head
def mlp(in_features: int, num_classes: int, drop_rate: float = 0.0) -> nn.Module:
    return MlpHead(in_features, num_classes, drop_rate)
