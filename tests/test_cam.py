"""The in-graph CAM equals Grad-CAM (up to scale) for both heads, checked two ways: against an
autograd Grad-CAM computed here, and against pytorch-grad-cam's GradCAM."""

import numpy as np
import pytest
import torch

from edgeskin.cam import cam_to_heatmap, pearson, with_cam
from edgeskin.models import build_model

SIZE = (48, 64)  # non-square, (height, width)


def _model(backbone, head):
    torch.manual_seed(0)
    model = build_model(backbone, 7, head=head, input_size=SIZE).eval()
    with torch.no_grad():  # random BN statistics, so features are not all alike
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("backbone, head", [("edgeskin_cnn_s", "gap_linear"), ("edgeskin_cnn_s", "mlp"),
                                            ("resnet18", "mlp"), ("mobilenetv3_small_100", "gap_linear")])
def test_cam_equals_autograd_gradcam_times_hw(backbone, head):
    model = _model(backbone, head)
    x = torch.randn(3, 3, *SIZE)
    logits, cams = with_cam(model)(x)
    with_cam(model, False)
    assert torch.allclose(logits, model(x), atol=1e-5)
    feats = model.forward_features(x).detach().requires_grad_(True)
    out = model.head(feats)
    h, w = feats.shape[-2:]
    for k in (0, 4):
        grads, = torch.autograd.grad(out[:, k].sum(), feats, retain_graph=True)
        alpha = grads.mean(dim=(2, 3), keepdim=True)  # Grad-CAM channel weights
        gradcam = (alpha * feats).sum(1)  # before ReLU
        assert torch.allclose(cams[:, k], gradcam * h * w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("head", ["gap_linear", "mlp"])
def test_heatmap_matches_pytorch_grad_cam(head):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _model("edgeskin_cnn_s", head)
    x = torch.randn(4, 3, *SIZE)
    with torch.no_grad():
        _, cams = with_cam(model)(x)
    with_cam(model, False)  # Grad-CAM needs the plain logits output
    rs = []
    with GradCAM(model=model, target_layers=[model.cam_layer]) as gradcam:
        for k in range(7):
            ref = gradcam(input_tensor=x, targets=[ClassifierOutputTarget(k)] * len(x))
            for i in range(len(x)):
                if ref[i].std() > 0:  # all-negative maps are zero after Grad-CAM's ReLU
                    rs.append(pearson(cam_to_heatmap(cams[i, k].detach().numpy(), SIZE), ref[i]))
    assert len(rs) > 10 and min(rs) > 0.99, (len(rs), min(rs))


def test_heatmap_post_processing():
    heat = cam_to_heatmap(np.array([[-1.0, 0.0], [1.0, 3.0]]), (4, 4))
    assert heat.shape == (4, 4) and heat.min() == 0.0 and heat.max() == 1.0
    assert not cam_to_heatmap(np.full((2, 2), -1.0), (4, 4)).any()


def test_runtime_heatmap_equals_torch_post_processing():
    """edge_runtime's matrix-product upsampling is torch's bilinear (align_corners=False), so the
    device's heatmap is edgeskin's, non-square and down-sized targets included."""
    from edge_runtime.heatmap import to_heatmap

    rng = np.random.default_rng(0)
    for shape, size in (((7, 7), (450, 600)), ((3, 5), (150, 200)), ((12, 9), (31, 17)), ((5, 5), (3, 2))):
        cam = rng.normal(size=shape).astype(np.float32)
        device, torch_side = to_heatmap(cam, size), cam_to_heatmap(cam, size)
        assert device.shape == size and device.dtype == np.float32
        assert np.abs(device - torch_side).max() < 1e-5
    assert not to_heatmap(np.full((4, 4), 0.5, np.float32), (8, 8)).any()  # a flat map is no map
