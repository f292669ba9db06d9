"""A small from-scratch CNN, registered the timm way so `--backbone edgeskin_cnn_s` just works.

Plain conv-BN-ReLU stages (ops every converter and int8 kernel supports): fast on 2 CPU cores,
for the demo and tests. It follows timm's backbone interface (num_features, forward_features,
forward_head, reset_classifier).
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class SkinCNN(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, **_: object):
        super().__init__()
        chans = (in_chans, *widths)
        self.stages = nn.Sequential(*[_stage(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.num_features = widths[-1]
        self.drop_rate = drop_rate
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = nn.functional.dropout(x.mean((2, 3)), self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(widths, pretrained: bool, **kwargs) -> SkinCNN:
    if pretrained:
        raise ValueError("edgeskin_cnn models have no published weights; use --weights FILE")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return SkinCNN(widths=widths, **kwargs)


@register_model
def edgeskin_cnn_s(pretrained: bool = False, **kwargs) -> SkinCNN:
    return _create((16, 32, 64, 128), pretrained, **kwargs)


@register_model
def edgeskin_cnn_m(pretrained: bool = False, **kwargs) -> SkinCNN:
    return _create((32, 64, 128, 256), pretrained, **kwargs)



@register_model
def edgeskin_cnn_l(pretrained: bool = False, **kwargs) -> SkinCNN:
    # 1.5x cnn_m's width (2.25x its MACs, 2.6 M parameters: a 2.6 MB int8 file, inside a 5 MB budget).
    return _create((48, 96, 192, 384), pretrained, **kwargs)
