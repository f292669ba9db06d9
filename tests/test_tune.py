"""`edgeskin tune`: an Optuna study that survives a kill mid-trial, and a best config `train --config` runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import one_line_error, run_cli

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")


def _tune(synth_root, project, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgeskin", "tune", "--data", str(synth_root), "--backbone", "edgeskin_cnn_s",
            "--input-size", "32x48", "--epochs", "4", "--batch-size", "16", "--device", "cpu", "--trials", "3",
            "--params", "lr,label_smoothing,width", "--pruner", "none", "--heartbeat", "1", "--study", "s",
            "--project", str(project), *extra]


def test_study_killed_mid_trial_resumes(synth_root, tmp_path):
    env = {**os.environ, "EDGESKIN_PROGRESS_S": "3600"}
    study_dir = tmp_path / "studies" / "s"
    proc = subprocess.Popen(_tune(synth_root, tmp_path / "studies"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    killed_run = study_dir / "trials" / "trial-1"
    deadline = time.time() + 300
    while not (killed_run / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed_run / "last.pt").exists() and not (killed_run / "model_card.json").exists(), "not mid-trial"
    assert not (study_dir / "best_config.json").exists()
    time.sleep(2.5)  # two missed heartbeats: the trial counts as dead
    resumed = subprocess.run(_tune(synth_root, tmp_path / "studies"), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1/3 trials finished" in resumed.stdout

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{study_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1, states
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 1)
    assert retry.params == study.trials[1].params  # the killed trial's parameters, tried again
    assert retry.user_attrs["run"] == str(killed_run)  # ... continuing its run folder
    assert json.loads((killed_run / "model_card.json").read_text())["metrics"]["epochs_run"] == 4
    report = json.loads((study_dir / "report.json").read_text())
    assert report["best"]["number"] == study.best_trial.number
    assert (study_dir / "history.png").stat().st_size > 1000 and "## Parameter importance" in (
        study_dir / "report.md").read_text()

    best = json.loads((study_dir / "best_config.json").read_text())
    assert best["lr"] == pytest.approx(study.best_trial.params["lr"])
    assert best["backbone"] == study.best_trial.params["width"] and "project" not in best
    run_cli("train", "--config", study_dir / "best_config.json", "--epochs", "1", "--project", tmp_path / "again",
            "--name", "best", check=True)
    again = json.loads((tmp_path / "again" / "best" / "config.json").read_text())
    assert {k: again[k] for k in best if k != "epochs"} == {k: v for k, v in best.items() if k != "epochs"}
    assert again["epochs"] == 1  # an explicit option overrides the file


@pytest.mark.parametrize("args, message", [
    (["--params", "lr,depth"], "invalid --params depth; choose from lr,weight_decay"),
    (["--trials", "0"], "invalid --trials 0; use 1 or more"),
    (["--params", "width", "--backbone", "resnet18"], "--params width: backbone 'resnet18' has no width family"),
    (["--storage", "nosuchdb://x"], "--storage nosuchdb://x:"),
])
def test_bad_tune_options(synth_root, tmp_path, args, message):
    proc = run_cli("tune", "--data", synth_root, "--epochs", "1", "--project", tmp_path / "p", *args)
    assert message in one_line_error(proc)
    assert not list((tmp_path / "p").glob("*/trials/*"))


@pytest.mark.parametrize("content, name, message", [
    (None, "missing.json", "--config {path}: no such file"),
    ('{"lr": 0.01, "learning_rate": 2}', "c.json", "--config {path}: unknown option 'learning_rate'; valid ones"),
    ("{lr: [", "c.yaml", "--config {path} is not valid YAML"),
    ("[1, 2]", "c.json", "--config {path} holds a list"),
    ('{"lr": -1}', "c.json", "invalid --lr -1"),
])
def test_bad_config_file(tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    proc = run_cli("train", "--config", path, "--project", tmp_path / "runs")
    assert message.format(path=path) in one_line_error(proc)
    assert not (tmp_path / "runs").exists()


def test_yaml_config_file(synth_root, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {synth_root}\nbackbone: edgeskin_cnn_s\ninput_size: [32, 48]\nepochs: 1\nlr: 0.004\n")
    run_cli("train", "--config", path, "--batch-size", "16", "--device", "cpu", "--project", tmp_path / "r",
            "--name", "y", check=True)
    saved = json.loads((tmp_path / "r" / "y" / "config.json").read_text())
    assert saved["lr"] == 0.004 and saved["input_size"] == [32, 48] and saved["batch_size"] == 16


def test_tune_without_its_extra(tmp_path):
    proc = run_cli("tune", "--project", tmp_path / "p", without=("optuna",))
    assert "edgeskin tune needs the tune extra (optuna missing): pip install 'edgeskin[tune]'" in one_line_error(proc)
    assert not (tmp_path / "p").exists()
