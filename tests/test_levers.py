"""Accuracy levers the ablation compares: balanced-softmax and focal losses, MixUp/CutMix, EMA of
weights, and the post-hoc logit adjustment and per-class offsets fitted on validation."""

import numpy as np
import pytest
import torch

from conftest import TINY
from edgeskin.benchmark.posthoc import fit_class_offsets, pick_tau
from edgeskin.config import TrainConfig
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy
from edgeskin.train import train
from edgeskin.train.engine import FocalLoss, make_loss, make_mixer


def test_balanced_softmax_corrects_for_the_prior_the_loss_sees():
    targets = np.array([0] * 90 + [1] * 10)
    logits = torch.zeros(1, 2)
    y = torch.tensor([1])
    raw = make_loss(TrainConfig(loss="balanced_softmax", balance="none", label_smoothing=0.0), targets, 2,
                    torch.device("cpu"))
    # prior (0.9, 0.1): equal logits mean the rare class is under-scored, so its loss is log(10).
    assert raw(logits, y).item() == pytest.approx(np.log(10), rel=1e-5)
    # An inverse-frequency sampler already balances what the loss sees: nothing left to correct.
    sampled = make_loss(TrainConfig(loss="balanced_softmax", balance="sampler", balance_power=1.0,
                                    label_smoothing=0.0), targets, 2, torch.device("cpu"))
    assert sampled(logits, y).item() == pytest.approx(np.log(2), rel=1e-5)
    # Soft targets (MixUp) work too.
    assert raw(logits, torch.tensor([[0.5, 0.5]])).item() > 0


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_loss_is_cross_entropy_at_gamma_zero_and_down_weights_easy_images(smoothing):
    torch.manual_seed(0)
    logits, y = torch.randn(12, 7) * 3, torch.arange(12) % 7
    weight = torch.rand(7) + 0.5
    soft = torch.nn.functional.one_hot(y, 7).float() * 0.6 + 0.4 / 7
    ce = torch.nn.functional.cross_entropy
    for target in (y, soft):  # class indices and MixUp's soft targets
        for w in (None, weight):
            assert FocalLoss(w, smoothing, gamma=0.0)(logits, target).item() == pytest.approx(
                ce(logits, target, w, label_smoothing=smoothing).item(), rel=1e-5)
    # One image at a time: focal = CE * (1 - p_true)^2, so a confident right answer counts ~nothing.
    easy, hard = torch.tensor([[6.0, 0, 0]]), torch.tensor([[0.0, 2, 0]])
    for x in (easy, hard):
        p = torch.softmax(x, 1)[0, 0].item()
        assert FocalLoss(None, 0.0)(x, torch.tensor([0])).item() == pytest.approx(
            ce(x, torch.tensor([0])).item() * (1 - p) ** 2, rel=1e-5)
    assert FocalLoss(None, 0.0)(easy, torch.tensor([0])) < 1e-4 < FocalLoss(None, 0.0)(hard, torch.tensor([0]))
    assert isinstance(make_loss(TrainConfig(loss="focal", balance="loss"), y.numpy(), 7, torch.device("cpu")),
                      FocalLoss)


def test_mixer_mixes_labels_and_is_off_at_zero():
    assert make_mixer(TrainConfig(mixup=0.0), 7) is None
    torch.manual_seed(0)
    mix = make_mixer(TrainConfig(mixup=1.0), 7)
    x, y = mix(torch.rand(8, 3, 16, 20), torch.arange(8) % 7)
    assert x.shape == (8, 3, 16, 20) and y.shape == (8, 7)
    assert torch.allclose(y.sum(1), torch.ones(8)) and (y.max(1).values < 1).any()


@pytest.mark.parametrize("bad", [dict(loss="dice"), dict(mixup=1.5), dict(ema_decay=0.2),
                                 dict(color_constancy="retinex"), dict(workers=-1)])
def test_bad_lever_values_name_the_option(bad):
    with pytest.raises(EdgeskinError, match=f"--{next(iter(bad)).replace('_', '-')}"):
        TrainConfig(**bad)


def test_ema_run_saves_the_averaged_weights(synth_root, tmp_path):
    cfg = TrainConfig(data=str(synth_root), project=str(tmp_path), epochs=1, ema_decay=0.9, mixup=0.5,
                      loss="balanced_softmax", name="ema", **TINY)
    result = train(cfg)
    state = torch.load(result.run_dir / "last.pt", weights_only=False)
    best = torch.load(result.run_dir / "best.pt", weights_only=False)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items()}  # checkpointed for --resume
    key = next(k for k in best if k.endswith("stages.0.0.weight"))
    # One epoch: the best weights are the EMA's, which differ from the optimiser's raw weights.
    assert torch.equal(best[key], ema[key])
    assert not torch.equal(best[key], state["model"][key])


def test_logit_adjustment_picks_tau_on_validation():
    rng = np.random.default_rng(0)
    y = np.array([0] * 300 + [1] * 30)
    prior = np.array([300, 30]) / 330
    # A model whose logits carry the training prior: the rare class is under-called.
    logits = np.stack([np.zeros(len(y)), (y == 1) * 1.5 - 1.0 + rng.normal(0, 0.8, len(y))], 1) + np.log(prior)
    tau = pick_tau(logits, y, np.log(prior))
    assert tau > 0
    assert balanced_accuracy(y, (logits - tau * np.log(prior)).argmax(1)) > balanced_accuracy(y, logits.argmax(1))


def test_class_thresholds_raise_validation_balanced_accuracy_and_can_overfit():
    """Per-class offsets fitted on one split lift that split's balanced accuracy; on a fresh draw
    of the same classes, a model with no bias gains nothing from them (the ablation row measures
    the real size of that gap)."""
    rng = np.random.default_rng(0)

    def draw(n_rare: int):
        y = np.array([0] * 300 + [1] * 60 + [2] * n_rare)
        logits = np.eye(3)[y] * 1.2 + rng.normal(0, 1.0, (len(y), 3))
        return logits, y
    logits, y = draw(15)
    biased = logits + np.array([0.8, 0.0, -0.8])  # class 0 over-called, the rare class under-called
    offsets = fit_class_offsets(biased, y)
    assert balanced_accuracy(y, (biased + offsets).argmax(1)) > balanced_accuracy(y, biased.argmax(1)) + 0.05
    assert offsets[2] - offsets[0] > 0.5  # it undid the bias, roughly
    # On an unbiased model the search still finds in-sample gains, which a fresh draw does not keep.
    fitted = fit_class_offsets(logits, y)
    assert balanced_accuracy(y, (logits + fitted).argmax(1)) >= balanced_accuracy(y, logits.argmax(1))
    fresh, fy = draw(15)
    gain_in = balanced_accuracy(y, (logits + fitted).argmax(1)) - balanced_accuracy(y, logits.argmax(1))
    gain_out = balanced_accuracy(fy, (fresh + fitted).argmax(1)) - balanced_accuracy(fy, fresh.argmax(1))
    assert gain_out < gain_in
