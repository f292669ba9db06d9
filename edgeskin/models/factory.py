"""Build a SkinClassifier: timm backbone features -> `cam_layer` (identity) -> edgeskin head.

The named identity `cam_layer` marks exactly the tensor the head pools, so CAM and Grad-CAM
(pytorch-grad-cam target layer) always hook the right activation, whatever the backbone.
"""

from __future__ import annotations

import difflib
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import edgeskin._compat  # noqa: F401  (torchvision import on CPU torch)

import timm
import torch
from torch import nn

import edgeskin.models.cnn  # noqa: F401  (registers edgeskin_cnn_* with timm)
from edgeskin.errors import EdgeskinError
from edgeskin.models.heads import HEADS

if TYPE_CHECKING:
    from edgeskin.card import ModelCard

CAM_LAYER = "cam_layer"


class SkinClassifier(nn.Module):
    """forward -> logits; with `cam_output = True`, forward -> (logits, per-class CAMs N x K x h x w).

    The CAM lives in forward itself (not in a wrapper) so that NNCF's quantizers, which hook the
    model's forward, stay active when an int8 model is exported with its CAM head.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, context: "ContextBranch | None" = None):
        super().__init__()
        self.backbone = backbone
        self.cam_layer = nn.Identity()
        self.head = head
        self.context = context
        self.cam_output = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.backbone.forward_features(x))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        feats = self.forward_features(x)
        logits = self.head(feats)
        if self.context is not None:
            logits = logits + self.context(context, x.shape[0])
        if not self.cam_output:
            return logits
        return logits, self.head.cam(feats)  # see edgeskin.cam


class ContextBranch(nn.Module):
    """The patient-context vector (edge_runtime.fusion) -> a small MLP -> class logits, added to the
    image head's: with the gap_linear head this is exactly a classifier over [pooled image
    features, context embedding] concatenated, split into its two blocks. Split, because the
    context block is constant over the image, so the CAM (the image block over the feature map)
    is the same whatever context is fed, and Grad-CAM on the image still checks it.
    `context=None` feeds the all-missing vector: every caller that has no context (Grad-CAM,
    NNCF's tracing) gets what the network learned for "nothing recorded"."""

    def __init__(self, dim: int, num_classes: int, missing, hidden: int = 32):
        super().__init__()
        self.dim = dim
        self.embed = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)
        self.register_buffer("missing", torch.as_tensor(missing, dtype=torch.float32).view(1, dim))

    def forward(self, context: torch.Tensor | None, n: int) -> torch.Tensor:
        if context is None:
            context = self.missing.expand(n, self.dim)
        return self.fc(self.embed(context))


class Members(nn.Module):
    """N backbones side by side on the same image, their feature maps concatenated on channels.

    With a gap_linear head over the concatenation whose weights are the members' [W_1 ... W_N] / N
    and whose bias is their mean, the logits are exactly the mean of the members' logits, and the
    head's CAM is the mean of their CAMs: an ensemble is one SkinClassifier, so export, the CAM head,
    Grad-CAM and edge_runtime need nothing new (edgeskin.ensemble.build builds those weights).
    """

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(nets)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.forward_features(x) for m in self.members], dim=1)


def check_backbone(name: str) -> None:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"did you mean {close}?" if close else "see timm.list_models() for the valid names"
        raise EdgeskinError(f"unknown backbone {name!r}; {hint}")


def check_head(name: str) -> None:
    if name not in HEADS:
        raise EdgeskinError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")


def _strip_unused(backbone: nn.Module, input_size: tuple[int, int]) -> int:
    """Replace top-level children that forward_features never calls (timm's own pooling,
    classifier, MobileNetV3's post-pool conv_head) by Identity; return the feature channels.
    They would otherwise hold dead parameters in every checkpoint and exported file."""
    called: set[str] = set()
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: called.add(n))
             for name, m in backbone.named_children()]
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        feats = backbone.forward_features(torch.zeros(1, 3, *input_size))
    backbone.train(was_training)
    for h in hooks:
        h.remove()
    for name, child in list(backbone.named_children()):
        if name not in called and any(True for _ in child.parameters()):
            setattr(backbone, name, nn.Identity())
    if feats.ndim != 4:
        raise EdgeskinError(f"backbone features have shape {tuple(feats.shape)}; edgeskin needs a CNN (N,C,H,W) map")
    return int(feats.shape[1])


def load_weights(backbone: nn.Module, path: str | Path, sha256: str | None) -> None:
    """Load a local backbone checkpoint after checking its SHA-256 (no hub needed)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeskinError(f"weights file {path} does not exist; pass a local .pth/.safetensors file")
    if not sha256:
        raise EdgeskinError(f"--weights {path} needs --weights-sha256 (get it with `sha256sum {path}`)")
    # One read: the bytes loaded are the bytes whose hash was checked (the file cannot change in
    # between), and a large checkpoint is read from disk once, not twice.
    blob = path.read_bytes()
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256.lower():
        raise EdgeskinError(f"{path} has SHA-256 {actual}, not the expected {sha256}; the file is not the one you meant")
    if path.suffix == ".safetensors":
        from safetensors.torch import load

        state = load(blob)
    else:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise EdgeskinError(f"{path} has no tensor matching backbone {type(backbone).__name__}; wrong architecture?")
    backbone.load_state_dict(usable, strict=False)


def _feature_net(backbone: str, input_size, pretrained: bool, weights: str | None,
                 weights_sha256: str | None) -> tuple[nn.Module, int]:
    """A timm backbone without its own head (unused parts stripped), and its feature channels."""
    try:
        net = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
    except Exception as exc:  # timm raises many types when the hub is unreachable
        if not pretrained:
            raise
        raise EdgeskinError(
            f"cannot fetch timm pretrained weights for {backbone!r} ({type(exc).__name__}); "
            "offline? pass --weights FILE --weights-sha256 HEX instead"
        ) from None
    if weights:
        load_weights(net, weights, weights_sha256)
    return net, _strip_unused(net, tuple(input_size))


def build_model(backbone: str, num_classes: int, head: str = "gap_linear", input_size=(128, 128),
                drop_rate: float = 0.0, pretrained: bool = False, weights: str | None = None,
                weights_sha256: str | None = None, members: int = 1, context: dict | None = None) -> SkinClassifier:
    """One network, or with `members` > 1 that many side by side (Members), as an ensemble run's card says.
    `context`: a ContextEncoding's dict (edge_runtime.fusion) for a fused image + metadata network."""
    check_backbone(backbone)
    check_head(head)
    parts = [_feature_net(backbone, input_size, pretrained, weights, weights_sha256) for _ in range(members)]
    net = parts[0][0] if members == 1 else Members([p for p, _ in parts])
    branch = None
    if context is not None:
        from edge_runtime.fusion import ContextEncoding

        enc = ContextEncoding.from_dict(context)
        branch = ContextBranch(enc.dim, num_classes, enc.encode(None))
    return SkinClassifier(net, HEADS[head](sum(c for _, c in parts), num_classes, drop_rate), branch)


def model_for_card(card: "ModelCard") -> SkinClassifier:
    """The untrained network a model card describes (load its weights next)."""
    return build_model(card.backbone, len(card.labels), card.head, card.preprocessing.input_size,
                       members=card.members)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
