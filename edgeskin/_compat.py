"""Make `import torchvision` work next to the CPU build of torch.

PyPI's torchvision 0.28.0 wheel is built against CUDA. With CPU-only torch its compiled ops
library (`torchvision/_C.so`) fails to load silently, and torchvision's meta registrations then
raise ``RuntimeError: operator torchvision::nms does not exist`` at import time, which also
breaks timm. edgeskin uses none of those detection ops, so defining the two schemas that the
registrations look up is enough. When the real ops load (a matching CPU/CUDA build) the first
import succeeds and this module does nothing.
"""

from __future__ import annotations

import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the torch.library registration alive for the process
shimmed = False


def ensure_torchvision() -> None:
    """Import torchvision, defining the missing op schemas first only if that import fails."""
    global _library, shimmed
    if "torchvision" in sys.modules and not shimmed:
        return
    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # drop the half-initialised package before importing it again
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    shimmed = True
    import torchvision  # noqa: F401,F811


ensure_torchvision()
