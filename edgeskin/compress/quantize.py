"""INT8 quantization with NNCF: post-training statistics, quantization-aware fine-tuning, and a
checkpoint that restores exactly (NNCF config + state dict, plus the pruned architecture).

Scheme (NNCF preset MIXED): weights symmetric per-channel, activations asymmetric per-tensor,
the TFLite int8 convention, so the exported model keeps what QAT learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeskin.data.transforms import normalize
from edgeskin.errors import EdgeskinError

SCHEME = {"bits": 8, "weights": "symmetric, per-channel", "activations": "asymmetric, per-tensor",
          "preset": "MIXED"}
CHECKPOINT = "model.pt"


def calibration_batches(pixels: np.ndarray, mean, std, n: int, seed: int) -> list[torch.Tensor]:
    """n training images (seeded choice), normalised exactly as in training, one per batch."""
    idx = np.random.default_rng(seed).permutation(len(pixels))[:n]
    m, s = torch.tensor(mean), torch.tensor(std)
    return [normalize(torch.from_numpy(pixels[i]).permute(2, 0, 1)[None], m, s) for i in idx]


def ptq(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    import nncf

    model.eval()
    try:
        return nncf.quantize(model, nncf.Dataset(batches), preset=nncf.QuantizationPreset.MIXED,
                             subset_size=len(batches))
    except Exception as exc:
        raise EdgeskinError(f"NNCF could not quantize the model ({type(exc).__name__}: {exc})") from None


def qat_mode(model: nn.Module) -> None:
    """NNCF's QAT recipe: train mode as usual (BatchNorm stays unfolded and keeps adapting its
    statistics, as in NNCF's resnet18 QAT example) with Dropout turned off (NNCF's QAT guide)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()


def save(path: Path, model: nn.Module, pruned_arch: dict | None, quantized: bool) -> None:
    import nncf.torch

    from edgeskin.train import checkpoint as ckpt

    ckpt.save(path, {"state_dict": model.state_dict(), "pruned_arch": pruned_arch,
                     "nncf_config": nncf.torch.get_config(model) if quantized else None})


def restore(path: Path, fresh: nn.Module) -> nn.Module:
    """Rebuild a compressed model on a freshly built fp32 model of the run's architecture."""
    blob: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    model = fresh
    if blob["pruned_arch"] is not None:
        import torch_pruning as tp

        tp.load_state_dict(model, state_dict=blob["pruned_arch"])
    if blob["nncf_config"] is not None:
        import nncf.torch

        model = nncf.torch.load_from_config(model, blob["nncf_config"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()
