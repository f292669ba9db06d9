import sys

import torch


def test_torchvision_imports_and_transforms_work():
    import edgeskin._compat as compat
    from torchvision.transforms import v2

    assert "torchvision" in sys.modules
    x = torch.randint(0, 255, (3, 30, 40), dtype=torch.uint8)
    assert v2.RandomResizedCrop((30, 40), antialias=True)(x).shape == (3, 30, 40)
    # Either the real compiled ops loaded, or the shim defined exactly the schemas torchvision needs.
    assert hasattr(torch.ops.torchvision, "nms")
    if compat.shimmed:
        assert compat._library is not None


def test_timm_imports_after_compat():
    import edgeskin._compat  # noqa: F401
    import timm

    assert timm.is_model("mobilenetv3_small_100")
