"""Pruning, registered by mode. Each returns the pruned model and what was measured.

- magnitude: NNCF's unstructured global magnitude pruning (`nncf.prune`): weights become zeros,
  shapes stay. Smaller when compressed, no faster by itself (dense kernels still multiply zeros).
- structured: torch-pruning removes whole channels (and everything that depends on them), so
  MACs, parameters and latency really drop. NNCF 3.x has no structured pruning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from edgeskin.errors import EdgeskinError

PRUNERS: dict[str, Callable[..., "Pruned"]] = {}


@dataclass
class Pruned:
    model: nn.Module
    info: dict  # mode, ratio, measured sparsity / channel counts
    finalize: Callable[[nn.Module], nn.Module]  # after fine-tuning: bake masks into plain weights


def register(fn):
    PRUNERS[fn.__name__] = fn
    return fn


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over conv and linear weights."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / max(total, 1)


def zero_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, keep-mask) for every conv/linear weight with zeros, to hold sparsity during QAT."""
    return [(m.weight, m.weight.detach() != 0) for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and bool((m.weight == 0).any())]


@register
def magnitude(model: nn.Module, ratio: float, example: torch.Tensor) -> Pruned:
    import nncf
    from nncf.parameters import PruneMode

    try:
        pruned = nncf.prune(model, PruneMode.UNSTRUCTURED_MAGNITUDE_GLOBAL, ratio=ratio, examples_inputs=example)
    except Exception as exc:  # NNCF raises many types when tracing fails
        raise EdgeskinError(f"NNCF could not trace the model for pruning ({type(exc).__name__}: {exc})") from None

    def finalize(m: nn.Module) -> nn.Module:
        # IN_PLACE multiplies the masks into the weights (NATIVE would keep them as hooks).
        return nncf.strip(m, do_copy=False, strip_format=nncf.StripFormat.IN_PLACE, example_input=example)

    return Pruned(pruned, {"mode": "magnitude", "ratio": ratio, "tool": f"nncf {nncf.__version__}"}, finalize)


@register
def structured(model: nn.Module, ratio: float, example: torch.Tensor) -> Pruned:
    import torch_pruning as tp

    channels_before = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=[model.head.fc], round_to=8)
    pruner.step()
    channels_after = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    info = {"mode": "structured", "ratio": ratio, "tool": f"torch-pruning {tp.__version__}",
            "conv_channels_before": channels_before, "conv_channels_after": channels_after}
    return Pruned(model, info, lambda m: m)


def prune(mode: str, model: nn.Module, ratio: float, example: torch.Tensor) -> Pruned:
    if mode not in PRUNERS:
        raise EdgeskinError(f"unknown --prune-mode {mode!r}; choose one of {sorted(PRUNERS)}")
    return PRUNERS[mode](model, ratio, example)
