"""Mask guidance (edgeskin.train.guide): the lesion masks supervise the CAM the device shows."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import TINY, one_line_error, run_cli
from edgeskin.config import TrainConfig
from edgeskin.data.masks import lesion_masks
from edgeskin.data.readers import read_dataset
from edgeskin.data.transforms import Augment, ArrayDataset, normalize, train_transform
from edgeskin.errors import EdgeskinError
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.card import ModelCard
from edgeskin.train import train
from edgeskin.explain.quality import cam_localisation
from edgeskin.train.guide import outside_share

GUIDED = {**TINY, "epochs": 4, "seed": 0}


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / max(int((a | b).sum()), 1))


@pytest.mark.parametrize("size", [(48, 64), (48, 48)])
def test_masks_follow_their_images_through_crop_flips_and_rotation(size):
    """An off-centre lesion drawn into the red channel: after every random crop, flip and turn,
    the mask served with the image still covers the same pixels (a flip or turn applied to one
    of them only would move it to the other side). Square inputs also get 90-degree turns."""
    h, w = size
    masks = np.zeros((3, h, w), bool)
    masks[:, 2:h // 2, 3:w // 2 + 2] = True
    pixels = np.zeros((3, h, w, 3), np.uint8)
    pixels[..., 0] = masks * 255
    geometric = train_transform(Augment(jitter=0.0), size)
    ds = ArrayDataset(pixels, np.zeros(3, int), geometric, masks)
    moved, ious = 0, []
    for i in range(60):
        x, _, m = ds[i % 3]
        assert x.dtype == m.dtype == torch.uint8 and m.shape == (1, h, w) and type(m) is torch.Tensor
        ious.append(_iou(x[0] > 127, m[0] > 0))
        moved += _iou(m[0] > 0, torch.from_numpy(masks[0])) < 0.5
    assert min(ious) > 0.8 and np.mean(ious) > 0.9, ious
    assert moved > 10  # the augmentation did move the lesion: the agreement above is not trivial


def test_outside_share_is_the_true_class_cam_mass_outside_the_lesion():
    cams = torch.zeros(4, 3, 2, 2)
    masks = torch.zeros(4, 1, 4, 4)
    masks[:, :, :2, :2] = 1  # the lesion is the top-left feature cell
    cams[0, 1, 0, 0] = 50.0  # all of class 1's mass inside
    cams[1, 2, 1, 1] = 50.0  # all outside
    cams[2, 0, 0, 0], cams[2, 0, 0, 1] = 50.0, 50.0  # half inside
    cams[3, 1, 1, 1] = 50.0  # another class's map: image 3's true-class map is flat, 3/4 outside
    y = torch.tensor([1, 2, 0, 0])
    share = outside_share(cams, y, masks)
    assert share.item() == pytest.approx((0.0 + 1.0 + 0.5 + 0.75) / 4, abs=1e-6)
    # the same map shifted below zero (a blank heatmap on the device) scores the same: no escape
    assert outside_share(cams - 100.0, y, masks).item() == pytest.approx(share.item(), abs=1e-6)
    # a crop that shows no lesion is left out
    masks[1] = 0
    assert outside_share(cams, y, masks).item() == pytest.approx((0.0 + 0.5 + 0.75) / 3, abs=1e-6)
    # the gradient moves mass inwards: it lowers the map outside, raises it inside
    cams = torch.zeros(1, 1, 2, 2, requires_grad=True)
    outside_share(cams, torch.tensor([0]), masks[:1]).backward()
    assert cams.grad[0, 0, 0, 1] > 0 and cams.grad[0, 0, 0, 0] < 0


def test_a_blank_heatmap_counts_as_none_on_the_lesion():
    """A map with no positive evidence shows nothing on the device: it scores 0, not NaN (which
    an average would skip), and is counted as blank."""
    from edgeskin.models import build_model

    torch.manual_seed(0)
    model = build_model("edgeskin_cnn_s", 3, "gap_linear", (32, 48)).eval()
    x = torch.randn(4, 3, 32, 48)
    masks = np.zeros((4, 32, 48), bool)
    masks[:, 8:24, 12:36] = True
    live = cam_localisation(model, x, masks)
    with torch.no_grad():  # features are ReLU outputs, so all-negative weights give all-negative maps
        model.head.fc.weight.copy_(-model.head.fc.weight.abs() - 1e-3)
    blank = cam_localisation(model, x, masks)
    assert live["cam_blank"] == 0 and live["cam_in_lesion"] > 0
    assert blank == {"cam_in_lesion": 0.0, "cam_pointing_game": 0.0, "cam_blank": 1.0,
                     "uniform_in_lesion": pytest.approx(masks.mean())}


def _localisation(run_dir) -> dict:
    """What the ablation reports: the shown heatmap (predicted class) against the validation masks."""
    card = ModelCard.load(run_dir)
    data, split = run_data(run_dir, card)
    idx = split.indices("val")
    masks = lesion_masks(data.source.root, [data.samples[i].image_id for i in idx], card.preprocessing.input_size)
    pre = card.preprocessing
    x = normalize(torch.from_numpy(data.pixels[idx]).permute(0, 3, 1, 2), torch.tensor(pre.mean), torch.tensor(pre.std))
    return cam_localisation(load_run_model(run_dir, card, torch.device("cpu")), x, masks)


def test_mask_guidance_moves_the_heatmap_onto_the_lesion(synth_root, tmp_path):
    """Same seed, same data: the guided run's heatmaps on held-out images put more of their heat
    on the lesion than the unguided run's, and no more of them are blank (a map pushed below
    zero shows nothing: the loss must not reward that)."""
    base = TrainConfig(data=str(synth_root), project=str(tmp_path), **GUIDED)
    plain = _localisation(train(replace(base, name="plain")).run_dir)
    guided_dir = train(replace(base, name="guided", mask_guidance=2.0)).run_dir
    assert TrainConfig.load(guided_dir / "config.json").mask_guidance == 2.0
    guided = _localisation(guided_dir)
    assert guided["cam_in_lesion"] > plain["cam_in_lesion"] + 0.05, (plain, guided)
    assert guided["cam_blank"] <= plain["cam_blank"] + 0.02, (plain, guided)


def test_mask_guidance_options_fail_in_one_line(synth_root, tmp_path):
    with pytest.raises(EdgeskinError, match="--mask-guidance -1.0"):
        TrainConfig(mask_guidance=-1.0)
    with pytest.raises(EdgeskinError, match="with --mixup 0.5"):
        TrainConfig(mask_guidance=1.0, mixup=0.5)
    # images without masks (an image-folder tree of the synthetic photos, masks left behind):
    # the first is named, with the fix, before a run folder exists
    tree = tmp_path / "tree"
    for s in read_dataset(synth_root).samples:
        (tree / s.dx).mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, tree / s.dx / s.path.name)
    proc = run_cli("train", "--data", str(tree), "--mask-guidance", "1", "--epochs", "1",
                   "--project", str(tmp_path / "runs"), cwd=tmp_path)
    line = one_line_error(proc)
    assert "--mask-guidance needs <image_id>_segmentation.png" in line and "no lesion mask for" in line
    assert line.endswith("add them or train with --mask-guidance 0")
    assert not (tmp_path / "runs").exists()
