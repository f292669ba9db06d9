"""Validate an exported file by running it with its real runtime on the run's validation split
and comparing with torch: top-1 agreement, max logit difference, balanced accuracy against the
fp32 torch model, and the exported CAM against pytorch-grad-cam's Grad-CAM on the torch model."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from edgeskin.cam import cam_to_heatmap, pearson
from edgeskin.progress import progress
from edgeskin.data.transforms import normalize
from edgeskin.metrics import balanced_accuracy
from edgeskin.predict import predict_logits


@dataclass(frozen=True)
class Tolerances:
    min_agreement: float
    max_logit_diff: float | None  # None: not checked (int8 rounds logits by design)
    min_cam_pearson: float
    max_ba_drop_pp: float  # balanced accuracy vs the fp32 torch model, percentage points


TOLERANCES = {
    "fp32": Tolerances(min_agreement=0.99, max_logit_diff=1e-3, min_cam_pearson=0.99, max_ba_drop_pp=0.5),
    "fp16": Tolerances(min_agreement=0.99, max_logit_diff=2e-2, min_cam_pearson=0.99, max_ba_drop_pp=0.5),
    "int8": Tolerances(min_agreement=0.97, max_logit_diff=None, min_cam_pearson=0.9, max_ba_drop_pp=1.0),
    "int16x8": Tolerances(min_agreement=0.97, max_logit_diff=None, min_cam_pearson=0.9, max_ba_drop_pp=1.0),
}


@dataclass(frozen=True)
class Validation:
    status: str  # "validated" or "validation failed"
    metrics: dict
    failures: list[str] = field(default_factory=list)
    scores: np.ndarray | None = field(default=None, repr=False)  # the file's first output per image


def _normalised(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 NHWC -> the float NCHW input the card describes (the training normalisation)."""
    return normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.tensor(mean), torch.tensor(std)).numpy()


def run_artifact(runner, pixels: np.ndarray, mean, std, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    starts = progress(range(0, len(pixels), batch), f"run {getattr(runner, 'name', 'artifact')}", unit="batch")
    outs = [runner(_normalised(pixels[i:i + batch], mean, std)) for i in starts]
    cams = None if outs[0][1] is None else np.concatenate([o[1] for o in outs])
    return np.concatenate([o[0] for o in outs]), cams


def gradcam_reference(model: torch.nn.Module, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model.cpu().eval(), target_layers=[model.cam_layer]) as cam:
        return cam(input_tensor=torch.from_numpy(x), targets=[ClassifierOutputTarget(int(k)) for k in classes])


def _cam_pearsons(cams, fp32, pixels, pred, pre, cam_images: int) -> list[float]:
    if cams is None:  # a file without a CAM head (MediaPipe's): nothing to compare
        return []
    n_cam = min(cam_images, len(pixels))
    gc = gradcam_reference(fp32, _normalised(pixels[:n_cam], pre.mean, pre.std), pred[:n_cam])
    return [pearson(cam_to_heatmap(cams[i, pred[i]], pre.input_size), gc[i]) for i in range(n_cam) if gc[i].std() > 0]


def validate(runner, source: torch.nn.Module, fp32: torch.nn.Module, pixels: np.ndarray, targets: np.ndarray,
             card, precision: str, cam_images: int = 64, scores: str = "logits", input_norm=None,
             ref: np.ndarray | None = None) -> Validation:
    """`scores`: what the file's first output holds; "probabilities" are compared with torch's
    softmax. `input_norm`: the (mean, std) the file takes, when not the card's. `ref`: the source
    model's logits on `pixels`, when the caller already has them."""
    pre, tol = card.preprocessing, TOLERANCES[precision]
    logits, cams = run_artifact(runner, pixels, *(input_norm or (pre.mean, pre.std)))
    if ref is None:
        ref = predict_logits(source, pixels, pre.mean, pre.std, torch.device("cpu"))
    ref32 = ref if source is fp32 else predict_logits(fp32, pixels, pre.mean, pre.std, torch.device("cpu"))
    if scores == "probabilities":
        ref = torch.softmax(torch.from_numpy(ref), 1).numpy()
    pred = logits.argmax(1)
    rs = _cam_pearsons(cams, fp32, pixels, pred, pre, cam_images)
    m = {"n": int(len(targets)), "balanced_accuracy": balanced_accuracy(targets, pred),
         "torch_fp32_balanced_accuracy": balanced_accuracy(targets, ref32.argmax(1)),
         "top1_agreement": float(np.mean(pred == ref.argmax(1))),
         "max_logit_diff": float(np.abs(logits - ref).max()), "scores": scores,
         "cam_pearson_mean": float(np.mean(rs)) if rs else None,
         "cam_pearson_min": float(np.min(rs)) if rs else None, "cam_images": len(rs)}
    drop = 100 * (m["torch_fp32_balanced_accuracy"] - m["balanced_accuracy"])
    failures = []
    if m["top1_agreement"] < tol.min_agreement:
        failures.append(f"top-1 agreement {m['top1_agreement']:.3f} < {tol.min_agreement}")
    if tol.max_logit_diff is not None and m["max_logit_diff"] > tol.max_logit_diff:
        failures.append(f"max logit difference {m['max_logit_diff']:.2e} > {tol.max_logit_diff:.0e}")
    if cams is not None and not (rs and m["cam_pearson_mean"] >= tol.min_cam_pearson):
        failures.append(f"CAM Pearson r {m['cam_pearson_mean'] or float('nan'):.3f} < {tol.min_cam_pearson}")
    if drop > tol.max_ba_drop_pp:
        failures.append(f"balanced accuracy {drop:.1f} pp below torch fp32 (limit {tol.max_ba_drop_pp} pp)")
    m["balanced_accuracy_drop_pp"] = drop
    m["tolerances"] = vars(tol)
    return Validation("validation failed" if failures else "validated", m, failures, logits)
