"""Knowledge distillation from an ensemble of finished runs (edgeskin.train.distill)."""

import shutil
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY, one_line_error, run_cli
from edgeskin.benchmark.ablation import AblationConfig, Lever, run_ablation, run_config
from edgeskin.cli import cli
from edgeskin.config import TrainConfig
from edgeskin.errors import EdgeskinError
from edgeskin.models import build_model
from edgeskin.train import train
from edgeskin.train.distill import Distiller, TeacherModel



def _teacher(size, mean, std) -> TeacherModel:
    torch.manual_seed(0)
    model = build_model("edgeskin_cnn_s", 7, "gap_linear", size).eval()
    return TeacherModel(model, size, torch.tensor(mean), torch.tensor(std))


@pytest.mark.parametrize("teacher_size", [(32, 48), (40, 56)])
def test_teacher_sees_the_batch_in_its_own_preprocessing(teacher_size):
    """The student's normalised batch is un-normalised, resized and re-normalised for the teacher."""
    t = _teacher(teacher_size, [0.6, 0.5, 0.4], [0.2, 0.25, 0.3])
    s_mean, s_std = torch.tensor([0.3, 0.4, 0.5]), torch.tensor([0.1, 0.1, 0.1])
    pixels = torch.rand(4, 3, 32, 48)
    d = Distiller([t], alpha=1.0, temperature=2.0, mean=s_mean, std=s_std)
    x = (pixels - s_mean.view(1, -1, 1, 1)) / s_std.view(1, -1, 1, 1)
    seen = pixels if teacher_size == (32, 48) else torch.nn.functional.interpolate(
        pixels, size=teacher_size, mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        want = torch.softmax(t.model((seen - t.mean.view(1, -1, 1, 1)) / t.std.view(1, -1, 1, 1)) / 2.0, dim=1)
    assert torch.allclose(d.teacher_probs(x), want, atol=1e-5)
    # A student that already outputs the teacher's logits has nothing left to learn (KL = 0)...
    with torch.no_grad():
        logits = t.model((seen - t.mean.view(1, -1, 1, 1)) / t.std.view(1, -1, 1, 1))
    assert d(torch.tensor(5.0), logits, x).item() == pytest.approx(0.0, abs=1e-5)
    # ...and one that does not is pulled towards it; alpha 0.5 halves the label loss.
    half = Distiller([t], alpha=0.5, temperature=2.0, mean=s_mean, std=s_std)
    assert half(torch.tensor(5.0), logits, x).item() == pytest.approx(2.5, abs=1e-5)
    assert d(torch.tensor(0.0), torch.zeros_like(logits), x).item() > 1e-3


def test_ensemble_averages_the_teachers_probabilities():
    a = _teacher((32, 48), [0.5] * 3, [0.25] * 3)
    torch.manual_seed(1)
    b = TeacherModel(build_model("edgeskin_cnn_s", 7, "gap_linear", (32, 48)).eval(), (32, 48), a.mean, a.std)
    x = torch.randn(2, 3, 32, 48)
    one = [Distiller([t], 0.5, 3.0, a.mean, a.std).teacher_probs(x) for t in (a, b)]
    both = Distiller([a, b], 0.5, 3.0, a.mean, a.std).teacher_probs(x)
    assert torch.allclose(both, (one[0] + one[1]) / 2, atol=1e-6)
    assert torch.allclose(both.sum(1), torch.ones(2), atol=1e-5)


@pytest.fixture(scope="module")
def teacher_run(synth_root, tmp_path_factory):
    project = tmp_path_factory.mktemp("teachers")
    return train(TrainConfig(data=str(synth_root), project=str(project), epochs=2, name="t", **TINY)).run_dir


def test_distilled_run_trains_from_the_cli_and_differs_from_plain(synth_root, teacher_run, tmp_path):
    manifest = str(teacher_run / "split.csv")
    common = ["train", "--data", str(synth_root), "--backbone", "edgeskin_cnn_s", "--input-size", "32x48",
              "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--project", str(tmp_path),
              "--split-manifest", manifest]
    runner = CliRunner()
    plain = runner.invoke(cli, common + ["--name", "plain"])
    assert plain.exit_code == 0, plain.output
    kd = runner.invoke(cli, common + ["--name", "kd", "--teacher", str(teacher_run), "--teacher", str(teacher_run),
                                      "--distill-alpha", "0.7"])
    assert kd.exit_code == 0, kd.output
    saved = TrainConfig.load(tmp_path / "kd" / "config.json")
    assert saved.teacher == (str(teacher_run), str(teacher_run)) and saved.distill_alpha == 0.7
    history = {n: torch.load(tmp_path / n / "last.pt", weights_only=False)["history"][0]["train_loss"]
               for n in ("plain", "kd")}
    assert history["plain"] != pytest.approx(history["kd"], rel=1e-3)  # the soft term is in the loss


def test_teacher_trained_on_the_students_test_images_is_refused(synth_root, teacher_run, tmp_path):
    # Another seed draws another split, so the teacher's training side holds this run's val/test images.
    cfg = TrainConfig(data=str(synth_root), project=str(tmp_path), epochs=1, seed=5, teacher=(str(teacher_run),),
                      **TINY)
    with pytest.raises(EdgeskinError, match=r"--teacher .*val/test images.*--split-manifest"):
        train(cfg)
    assert not (tmp_path / "exp").exists()  # refused before the run folder is made
    # A teacher without its split manifest cannot be checked for leakage, so it is refused too.
    shutil.copytree(teacher_run, tmp_path / "t-copy")
    (tmp_path / "t-copy" / "split.csv").unlink()
    with pytest.raises(EdgeskinError, match=r"--teacher .*t-copy has no split.csv"):
        train(replace(cfg, teacher=(str(tmp_path / "t-copy"),)))


@pytest.mark.parametrize("bad, match", [(dict(color_constancy="shades_of_gray"), "--color-constancy"),
                                        (dict(loss="balanced_softmax"), "--loss")])
def test_teacher_with_other_preprocessing_or_objective_is_refused(synth_root, teacher_run, tmp_path, bad, match):
    cfg = TrainConfig(data=str(synth_root), project=str(tmp_path), epochs=1, teacher=(str(teacher_run),),
                      split_manifest=str(teacher_run / "split.csv"), **{**TINY, **bad})
    with pytest.raises(EdgeskinError, match=f"{match} .*same setting"):
        train(cfg)


def test_bad_distillation_options_fail_in_one_line(tmp_path):
    with pytest.raises(EdgeskinError, match="--distill-alpha"):
        TrainConfig(distill_alpha=0.0)
    with pytest.raises(EdgeskinError, match="--distill-temperature"):
        TrainConfig(distill_temperature=-1.0)
    line = one_line_error(run_cli("train", "--data", "synthetic", "--teacher", tmp_path / "nope"))
    assert f"--teacher {tmp_path / 'nope'} has no model_card.json" in line


def test_ablation_distils_each_seed_from_an_earlier_rows_ensemble(tmp_path):
    levers = (Lever("a", "reference"), Lever("kd", "distillation", teacher="a"))
    cfg = AblationConfig(data="synthetic", recipe="demo", levers=levers, seeds=(0, 1), out=str(tmp_path))
    tcfg = run_config(cfg, levers[1], 1, tmp_path / "split.csv")
    assert tcfg.teacher == (str(tmp_path / "runs" / "a-s0"), str(tmp_path / "runs" / "a-s1"))
    assert tcfg.name == "kd-s1"
    with pytest.raises(EdgeskinError, match="not an earlier trained row"):
        run_ablation(AblationConfig(data="synthetic", recipe="demo", levers=levers[::-1], out=str(tmp_path)))
