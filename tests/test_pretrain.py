"""`edgeskin pretrain`: SimCLR on the train side only, a weights file `train --weights` loads whole,
and a guard against pre-training on the images a run later validates or tests on."""

import json
import math

import pytest
import torch

from conftest import full_killed_resumed, load_script, one_line_error, run_cli
from edgeskin.config import PretrainConfig, TrainConfig
from edgeskin.recipes import pretrain_config
from edgeskin.data.split import read_manifest
from edgeskin.errors import EdgeskinError
from edgeskin.fileio import sha256_file
from edgeskin.models import build_model
from edgeskin.train import train
from edgeskin.train.pretrain import META_KEY, pretrain

# Non-square, as the HAM source's aspect ratio.
TINY = dict(backbone="edgeskin_cnn_s", input_size=(32, 48), batch_size=16)


@pytest.fixture(scope="module")
def pretrained(synth_root, tmp_path_factory):
    cfg = PretrainConfig(data=str(synth_root), epochs=2, project=str(tmp_path_factory.mktemp("pre")), **TINY)
    return cfg, pretrain(cfg)


def test_pretrain_writes_weights_that_train_loads_whole(pretrained):
    cfg, result = pretrained
    record = json.loads((result.run_dir / "pretrain.json").read_text())
    assert record["sha256"] == result.sha256 == sha256_file(result.weights)
    assert len(result.loss_history) == 2 and all(math.isfinite(v) and v > 0 for v in result.loss_history)
    assert 0 <= result.knn_before <= 1 and 0 <= result.knn_after <= 1
    saved = torch.load(result.weights, weights_only=True)
    # Every backbone tensor of a fresh model comes from the file (load_weights alone would skip a
    # mismatched key silently), and pre-training moved them away from the seeded random init.
    fresh = build_model(cfg.backbone, 7, input_size=cfg.input_size).backbone.state_dict()
    loaded = build_model(cfg.backbone, 7, input_size=cfg.input_size, weights=str(result.weights),
                         weights_sha256=result.sha256).backbone.state_dict()
    assert set(loaded) == set(saved["state_dict"])
    assert all(torch.equal(loaded[k], saved["state_dict"][k]) for k in loaded)
    assert any(not torch.equal(fresh[k], loaded[k]) for k in loaded if fresh[k].is_floating_point())


def test_pretrain_reads_only_the_train_side(pretrained, synth_root):
    cfg, result = pretrained
    from edgeskin.data.bundle import load_labelled
    from edgeskin.data.records import get_task

    data = load_labelled(str(synth_root), get_task("multiclass"), cfg.input_size, progress=False)
    split, _ = read_manifest(result.run_dir / "split.csv", data.samples, data.digests)
    seen = set(torch.load(result.weights, weights_only=True)[META_KEY]["train_digests"])
    train_side = {data.digests[i] for i in split.indices("train")}
    assert seen == train_side
    assert not seen & {data.digests[i] for i in (*split.indices("val"), *split.indices("test"))}


def test_train_starts_from_the_weights_on_the_pretrain_split(pretrained, synth_root, tmp_path):
    cfg, result = pretrained
    run = train(TrainConfig(data=str(synth_root), epochs=1, project=str(tmp_path), name="ft", **TINY,
                            weights=str(result.weights), weights_sha256=result.sha256,
                            split_manifest=str(result.run_dir / "split.csv")))
    assert (run.run_dir / "best.pt").is_file()


def test_train_refuses_weights_that_saw_its_held_out_images(pretrained, synth_root, tmp_path):
    _, result = pretrained
    # Another seed draws another split: some of its validation/test images were pre-trained on.
    with pytest.raises(EdgeskinError, match=r"pre-trained on \d+ of this run's validation/test images"):
        train(TrainConfig(data=str(synth_root), epochs=1, seed=5, project=str(tmp_path / "runs"), **TINY,
                          weights=str(result.weights), weights_sha256=result.sha256))
    assert not (tmp_path / "runs").exists()


def test_pretrain_config_takes_the_recipe_fields_then_explicit_options():
    cfg = pretrain_config("ham-edge-robust", {"epochs": 5, "input_size": None})
    assert (cfg.backbone, cfg.input_size, cfg.color_constancy, cfg.epochs) == \
        ("edgeskin_cnn_m", (96, 128), "shades_of_gray", 5)
    assert pretrain_config("ham-edge-robust", {"backbone": "edgeskin_cnn_s"}).backbone == "edgeskin_cnn_s"
    assert pretrain_config(None, {}) == PretrainConfig()


@pytest.mark.parametrize("args, needle", [
    (["--temperature", "0"], "--temperature 0.0"),
    (["--crop-scale", "2"], "--crop-scale 2.0"),
    (["--batch-size", "500"], "--batch-size 500 is larger than the"),
    (["--backbone", "resnet81"], "resnet81"),
    (["--max-minutes", "-1"], "--max-minutes -1.0"),
    (["--resume", "RUN", "--epochs", "3"], "drop --data --epochs --input-size --project"),
])
def test_bad_pretrain_options_fail_in_one_line_and_write_nothing(synth_root, tmp_path, args, needle):
    args = [str(tmp_path / "runs" / "exp") if a == "RUN" else a for a in args]
    proc = run_cli("pretrain", "--data", synth_root, "--input-size", "32x48", *args, "--project", tmp_path / "runs")
    assert needle in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_pretrain_without_the_pretrain_extra_names_it_and_writes_nothing(synth_root, tmp_path):
    proc = run_cli("pretrain", "--data", synth_root, "--input-size", "32x48", "--project", tmp_path / "runs",
                   without=("lightly",))
    assert "pip install 'edgeskin[pretrain]'" in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_resume_of_a_folder_pretrain_did_not_write_names_it(tmp_path):
    assert "--resume needs a run directory written by `edgeskin pretrain`" in \
        one_line_error(run_cli("pretrain", "--resume", tmp_path / "nothing"))


def test_ablation_row_pretrains_its_weights_once_and_pins_them(synth_root, tmp_path):
    from edgeskin.benchmark.ablation import AblationConfig, Lever

    bench = _ablation_module()
    bench.SIMCLR_EPOCHS = {"ssl/x/backbone.pt": 1}  # the committed rows' 25 or 50 epochs, cut for a test
    lever = Lever("ssl", "pre-training", {"weights": "ssl/x/backbone.pt"})
    cfg = AblationConfig(data=str(synth_root), recipe="ham-edge-int8", levers=(lever,), seeds=(0,),
                         base={"input_size": (32, 48), "epochs": 1}, out=str(tmp_path))
    pinned = bench.with_pretrained(lever, cfg)
    weights = tmp_path / "ssl" / "x" / "backbone.pt"
    assert pinned.overrides == {"weights": str(weights), "weights_sha256": sha256_file(weights)}
    # Pre-trained on the shared split every row trains on, so no row's held-out images were seen.
    assert (tmp_path / "ssl" / "x" / "split.csv").read_text() == (tmp_path / "split.csv").read_text()
    before = weights.stat().st_mtime_ns
    assert bench.with_pretrained(lever, cfg) == pinned and weights.stat().st_mtime_ns == before
    assert bench.with_pretrained(pinned, cfg) is pinned
    record = json.loads((tmp_path / "ssl" / "x" / "pretrain.json").read_text())["config"]
    assert (record["backbone"], record["input_size"]) == ("edgeskin_cnn_m", [32, 48])  # the rows' own
    assert record["epochs"] == 1  # the file's own length, from SIMCLR_EPOCHS


def test_every_pretrained_ablation_row_names_a_file_of_known_length():
    bench = _ablation_module()
    named = {lv.overrides["weights"] for lv in bench.LEVERS if "weights" in lv.overrides}
    assert named and named <= set(bench.SIMCLR_EPOCHS)


def test_killed_and_resumed_pretrain_ends_with_identical_weights(synth_root, tmp_path):
    epochs = 6
    args = ["--data", synth_root, "--backbone", "edgeskin_cnn_s", "--input-size", "32x48", "--batch-size", "16",
            "--epochs", epochs, "--device", "cpu"]
    assert full_killed_resumed("pretrain", args, tmp_path, "backbone.pt") < epochs
    # The epochs after the kill drew the views and the learning rates the uninterrupted run drew.
    full, resumed = (json.loads((tmp_path / n / "pretrain.json").read_text()) for n in ("full", "killed"))
    assert resumed["loss_history"] == full["loss_history"] and len(full["loss_history"]) == epochs
    a, b = (torch.load(tmp_path / n / "backbone.pt", weights_only=True)["state_dict"] for n in ("full", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # ...and so the same file: the SHA-256 `train --weights-sha256` pins does not depend on the kill.
    assert sha256_file(tmp_path / "full" / "backbone.pt") == sha256_file(tmp_path / "killed" / "backbone.pt")


def test_pretrain_time_budget_stops_early_and_says_so(synth_root, tmp_path):
    cfg = PretrainConfig(data=str(synth_root), epochs=50, max_minutes=0.0001, project=str(tmp_path), **TINY)
    result = pretrain(cfg)
    record = json.loads((result.run_dir / "pretrain.json").read_text())
    assert len(result.loss_history) == 1 and record["stop_reason"] == "time budget of 0.0001 min reached"
    # The plan (which the learning rate follows) was cut to the budget, and the checkpoint says so.
    assert torch.load(result.run_dir / "last.pt", weights_only=False)["planned_epochs"] == 1


def test_ablation_resumes_a_killed_pretraining(synth_root, tmp_path):
    bench = _ablation_module()
    bench.SIMCLR_EPOCHS = {"ssl/x/backbone.pt": 1}
    from edgeskin.benchmark.ablation import AblationConfig, Lever

    lever = Lever("ssl", "pre-training", {"weights": "ssl/x/backbone.pt"})
    cfg = AblationConfig(data=str(synth_root), recipe="ham-edge-int8", levers=(lever,), seeds=(0,),
                         base={"input_size": (32, 48), "epochs": 1}, out=str(tmp_path))
    bench.with_pretrained(lever, cfg)
    run = tmp_path / "ssl" / "x"
    # As if killed after its last epoch but before the weights were written, with a marker in the
    # saved history: a resumed run keeps it, a restarted one would overwrite it.
    (run / "backbone.pt").unlink()
    state = torch.load(run / "last.pt", weights_only=False)
    torch.save({**state, "history": [123.0]}, run / "last.pt")
    pinned = bench.with_pretrained(lever, cfg)
    assert json.loads((run / "pretrain.json").read_text())["loss_history"] == [123.0]
    assert pinned.overrides["weights_sha256"] == sha256_file(run / "backbone.pt")


def _ablation_module():
    """benchmarks/ham10000_ablation.py, loaded fresh."""
    return load_script("ham10000_ablation")
