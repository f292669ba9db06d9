"""Backbones by name (timm + the registered custom CNN), heads, CAM layer, local weights."""

import pytest
import torch

from edgeskin.errors import EdgeskinError
from edgeskin.fileio import sha256_file
from edgeskin.models import CAM_LAYER, build_model

NON_SQUARE = (48, 64)  # (height, width), 3:4 like dermoscopy photos


@pytest.mark.parametrize("backbone", ["mobilenetv3_small_100", "efficientnet_b0", "resnet18", "resnet50",
                                      "densenet121", "edgeskin_cnn_s"])
def test_tested_backbones_build_and_run_non_square(backbone):
    torch.manual_seed(0)
    model = build_model(backbone, 7, input_size=NON_SQUARE).eval()
    x = torch.randn(2, 3, *NON_SQUARE)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert feats.ndim == 4 and feats.shape[1] == model.head.fc.in_features
    # The CAM layer is the exact tensor the head pools: the head on it reproduces the logits.
    assert torch.allclose(model.head(feats), logits, atol=1e-5)


def test_mobilenetv3_post_pool_conv_head_is_removed():
    """timm's MobileNetV3 applies conv_head after pooling; our head pools the CAM layer directly,
    so those dead parameters must not be in the model or its checkpoints."""
    model = build_model("mobilenetv3_small_100", 7, input_size=(64, 64))
    assert isinstance(model.backbone.conv_head, torch.nn.Identity)
    assert not any(k.startswith("backbone.conv_head") for k in model.state_dict())


def test_mlp_head_shape_and_custom_cnn_is_a_timm_model():
    import timm

    assert "edgeskin_cnn_s" in timm.list_models("edgeskin*")
    model = build_model("edgeskin_cnn_s", 2, head="mlp", input_size=NON_SQUARE)
    assert model.head.fc1.out_features == 128 and model.head.fc.out_features == 2
    assert model(torch.randn(3, 3, *NON_SQUARE)).shape == (3, 2)
    assert hasattr(model, CAM_LAYER)


def test_custom_cnn_sizes_are_one_network_at_three_widths():
    import timm

    names = ["edgeskin_cnn_s", "edgeskin_cnn_m", "edgeskin_cnn_l"]
    assert sorted(timm.list_models("edgeskin*")) == sorted(names)
    models = [build_model(n, 7, input_size=NON_SQUARE) for n in names]
    assert [m.backbone.num_features for m in models] == [128, 256, 384]
    sizes = [sum(p.numel() for p in m.parameters()) for m in models]
    assert sizes[0] < sizes[1] < sizes[2] < 5_000_000  # the largest still fits a 5 MB int8 file
    assert models[2](torch.randn(2, 3, *NON_SQUARE)).shape == (2, 7)


def test_unknown_backbone_suggests_names():
    with pytest.raises(EdgeskinError, match=r"unknown backbone 'resnet81'.*did you mean"):
        build_model("resnet81", 7)


def test_local_weights_are_checked_by_sha256_and_loaded(tmp_path):
    torch.manual_seed(1)
    source = build_model("resnet18", 7, input_size=(32, 32))
    path = tmp_path / "resnet18_local.pth"
    torch.save({"state_dict": source.backbone.state_dict()}, path)
    digest = sha256_file(path)
    loaded = build_model("resnet18", 7, input_size=(32, 32), weights=str(path), weights_sha256=digest)
    assert torch.equal(loaded.backbone.conv1.weight, source.backbone.conv1.weight)
    with pytest.raises(EdgeskinError, match="SHA-256"):
        build_model("resnet18", 7, weights=str(path), weights_sha256="0" * 64)
    with pytest.raises(EdgeskinError, match="needs --weights-sha256"):
        build_model("resnet18", 7, weights=str(path))
    with pytest.raises(EdgeskinError, match="no tensor matching"):
        other = tmp_path / "other.pth"
        torch.save({"nothing": torch.zeros(1)}, other)
        build_model("resnet18", 7, weights=str(other), weights_sha256=sha256_file(other))


def test_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    source = build_model("edgeskin_cnn_s", 7, input_size=(32, 32))
    path = tmp_path / "w.safetensors"
    save_file(source.backbone.state_dict(), str(path))
    loaded = build_model("edgeskin_cnn_s", 7, input_size=(32, 32), weights=str(path), weights_sha256=sha256_file(path))
    assert torch.equal(loaded.backbone.stages[0][0].weight, source.backbone.stages[0][0].weight)


def test_hub_pretrained_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EdgeskinError, match="--weights FILE"):
        build_model("resnet18", 7, pretrained=True)
