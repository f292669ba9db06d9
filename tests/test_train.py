"""Training: card contents, honest split, determinism, and kill-then-resume equivalence."""

import json
import sys

import numpy as np
import pytest
import torch

from conftest import TINY, full_killed_resumed
from edgeskin.card import ModelCard
from edgeskin.config import TrainConfig
from edgeskin.fileio import sha256_file
from edgeskin.train import train



def _cfg(synth_root, tmp_path, **kw):
    return TrainConfig(data=str(synth_root), project=str(tmp_path), **{**TINY, "epochs": 2, **kw})


def test_run_writes_card_checkpoint_and_honest_split(synth_root, tmp_path):
    result = train(_cfg(synth_root, tmp_path, name="a"))
    run = result.run_dir
    card = ModelCard.load(run)
    assert card.labels == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc") and card.positive_label == "mel"
    assert card.preprocessing.input_size == (32, 48) and card.cam_layer == "cam_layer"
    assert len(card.preprocessing.mean) == 3 and all(0 < s < 1 for s in card.preprocessing.std)
    assert card.weights["sha256"] == sha256_file(run / "best.pt")
    assert card.data["synthetic"] is True
    assert 0 <= card.metrics["val"]["balanced_accuracy"] <= 1
    rows = [ln.split(",") for ln in (run / "split.csv").read_text().splitlines()[1:]]
    side_of_lesion = {}
    for r in rows:  # image_id,split,label,dx,lesion_id,...
        assert side_of_lesion.setdefault(r[4], r[1]) == r[1]
    assert sum(sum(c.values()) for c in card.split.counts.values()) == len(rows)


def test_same_seed_same_weights_and_split_manifest_reuse(synth_root, tmp_path):
    a = train(_cfg(synth_root, tmp_path, name="a", epochs=1))
    b = train(_cfg(synth_root, tmp_path, name="b", epochs=1, split_manifest=str(a.run_dir / "split.csv"),
                   seed=0))
    wa, wb = torch.load(a.run_dir / "best.pt"), torch.load(b.run_dir / "best.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a.run_dir / "split.csv").read_text() == (b.run_dir / "split.csv").read_text()


@pytest.mark.parametrize("overrides", [dict(balance="loss", balance_power=1.0), dict(balance="none", head="mlp"),
                                       dict(task="binary", augment="strong")])
def test_training_options_run(synth_root, tmp_path, overrides):
    result = train(_cfg(synth_root, tmp_path, epochs=1, **overrides))
    card = ModelCard.load(result.run_dir)
    assert card.head == overrides.get("head", "gap_linear")
    assert len(card.labels) == (2 if overrides.get("task") == "binary" else 7)


def test_time_budget_replans_epochs(synth_root, tmp_path):
    result = train(_cfg(synth_root, tmp_path, epochs=50, max_minutes=0.001))
    assert result.epochs_run == 1


def test_killed_and_resumed_run_ends_with_identical_weights(synth_root, tmp_path):
    epochs = 6
    args = ["--data", synth_root, "--backbone", "edgeskin_cnn_s", "--input-size", "32x48", "--batch-size", "16",
            "--epochs", epochs, "--patience", "50", "--device", "cpu"]
    assert full_killed_resumed("train", args, tmp_path, "model_card.json") < epochs
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=False)
    assert resumed["epoch"] == full["epoch"] == epochs
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [h["val_balanced_accuracy"] for h in full["history"]] == \
        [h["val_balanced_accuracy"] for h in resumed["history"]]
    card = json.loads((tmp_path / "killed" / "model_card.json").read_text())
    assert card["weights"]["sha256"] == sha256_file(tmp_path / "killed" / "best.pt")
    # Equal weights, equal bytes: the card's SHA-256 is the uninterrupted run's.
    assert card["weights"]["sha256"] == sha256_file(tmp_path / "full" / "best.pt")
    assert np.isclose(card["metrics"]["val"]["balanced_accuracy"],
                      json.loads((tmp_path / "full" / "model_card.json").read_text())["metrics"]["val"]["balanced_accuracy"])


def _loader_start_method(workers: int):
    from edgeskin.train.engine import make_loader

    cfg = TrainConfig(**{**TINY, "workers": workers})
    loader = make_loader(cfg, np.zeros((8, 32, 48, 3), np.uint8), np.arange(8) % 2, 2, epoch=0)
    context = loader.multiprocessing_context
    return None if context is None else context.get_start_method()


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the Linux start method")
def test_loader_workers_fork_even_inside_a_spawned_process():
    """A spawned process (the ablation's side-by-side runs) defaults to spawn, which would send every
    epoch's workers a pickled copy of all decoded images: on an H100 that made an epoch take 110 s."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    assert _loader_start_method(0) is None  # no workers, no processes
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_loader_start_method, 2).result() == "fork"
