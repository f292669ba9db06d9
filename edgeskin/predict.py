"""Batched inference of a torch model on decoded uint8 images (shared by train and evaluate)."""

from __future__ import annotations

import numpy as np
import torch

from edgeskin.data.transforms import normalize
from edgeskin.errors import EdgeskinError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EdgeskinError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, pixels: np.ndarray, mean, std, device: torch.device,
                   batch_size: int = 128) -> np.ndarray:
    model.eval()
    m = torch.tensor(mean, dtype=torch.float32, device=device)
    s = torch.tensor(std, dtype=torch.float32, device=device)
    out = []
    for start in range(0, len(pixels), batch_size):
        x = torch.from_numpy(pixels[start:start + batch_size]).to(device).permute(0, 3, 1, 2)
        out.append(model(normalize(x, m, s)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
