"""Batched inference of a torch model on decoded uint8 images (shared by train and evaluate)."""

from __future__ import annotations

import platform

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


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype training uses on `device`: bf16 where the GPU has it, else fp16; None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def describe_device(device: torch.device) -> str:
    """The hardware a run trained (or a table was scored) on, as the card and reports record it."""
    if device.type == "cuda":
        dtype = "bf16" if amp_dtype(device) == torch.bfloat16 else "fp16"
        return f"{torch.cuda.get_device_name(device)} GPU (AMP {dtype})"
    name = platform.processor() or platform.machine()
    try:  # Linux names the CPU model; elsewhere the architecture has to do
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} CPU, {torch.get_num_threads()} threads, no GPU"


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
