"""Shared fixtures: a small synthetic dataset, helpers to run the CLI, the real HAM10000 path."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HAM_ROOT = ROOT.parent / "shared" / "data" / "HAM10000"
SMALL_MODEL_REPORTS: list[Path] = []  # benchmark reports to show in the terminal summary (CI output)
# TrainConfig fields for a run that trains in seconds on CPU (the smallest CNN, a non-square input).
TINY = dict(backbone="edgeskin_cnn_s", input_size=(32, 48), batch_size=16, lr=3e-3, patience=20, device="cpu")


def load_script(name: str, as_name: str | None = None):
    """benchmarks/NAME.py (a script, not a package module), loaded fresh under `as_name`. It is
    registered in sys.modules first: a dataclass looks its module up there while it is created."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(as_name or name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pytest_terminal_summary(terminalreporter):
    """CI's log shows the small-model benchmark table the demo test wrote."""
    for report in SMALL_MODEL_REPORTS:
        if report.is_file():
            terminalreporter.section(f"small-model benchmark report ({report})")
            terminalreporter.write_line(report.read_text())


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # `--data synthetic` and other caches go to a per-session folder, never the user's ~/.cache.
    os.environ["EDGESKIN_CACHE"] = str(tmp_path_factory.mktemp("edgeskin-cache"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """240 synthetic images (200x150, HAM layout, masks), shared read-only by the whole session."""
    from edgeskin.data.synthetic import SyntheticSpec, generate

    return generate(tmp_path_factory.mktemp("synth") / "data", SyntheticSpec(n_images=240, seed=1))


@pytest.fixture(scope="session")
def ham_root() -> Path:
    if not (HAM_ROOT / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"real HAM10000 not found at {HAM_ROOT} (it lives in ../shared on dev machines and CI)")
    return HAM_ROOT


# `python -m MODULE ARGS` with some modules as if not installed: None in sys.modules makes their
# import fail. argv: the comma-separated modules, then MODULE, then ARGS.
WITHOUT = ("import runpy, sys; sys.modules.update(dict.fromkeys(sys.argv.pop(1).split(','))); "
           "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


def _python_m(module: str, without: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-c", WITHOUT, ",".join(without), module] if without else [sys.executable, "-m", module]


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, without: tuple[str, ...] = (),
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m edgeskin ARGS` as a user would, capturing output; `without`: modules that
    behave as if not installed (an optional extra left out); `env`: variables to add."""
    proc = subprocess.run([*_python_m("edgeskin", without), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeskin {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def full_killed_resumed(command: str, args: list[str], project: Path, finished: str) -> int:
    """Run `edgeskin COMMAND ARGS` to the end as project/full; again as project/killed, SIGKILLed
    once its first last.pt appears (a real kill, mid-run, no clean-up handlers), then `--resume`d
    to the end. Fails if the killed run had already written `finished`. Returns the epochs the
    killed run had checkpointed before the kill."""
    import signal
    import time

    import torch

    cmd = [sys.executable, "-m", "edgeskin", command, *map(str, args), "--project", str(project), "--name"]
    subprocess.run([*cmd, "full"], check=True, capture_output=True)
    killed = project / "killed"
    proc = subprocess.Popen([*cmd, "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed / "last.pt").exists() and not (killed / finished).exists(), "the run ended before the kill"
    done = torch.load(killed / "last.pt", weights_only=False)["epoch"]
    subprocess.run([sys.executable, "-m", "edgeskin", command, "--resume", str(killed)], check=True,
                   capture_output=True)
    return done


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error contract: non-zero exit, exactly one non-empty stderr line starting 'error:'."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("decode")]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def exported_tiny(synth_root, tmp_path_factory) -> dict:
    """A tiny trained run (non-square 32x48 input) compressed to int8 and exported as the files a
    device runs: int8 and fp32 .tflite (with CAM head and metadata) and fp32 .onnx."""
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    from edgeskin.compress.pipeline import compress
    from edgeskin.config import CompressConfig, ExportConfig, TrainConfig
    from edgeskin.export import export
    from edgeskin.train import train

    cfg = TrainConfig(data=str(synth_root), backbone="edgeskin_cnn_s", input_size=(32, 48), epochs=4,
                      batch_size=16, lr=3e-3, device="cpu", project=str(tmp_path_factory.mktemp("runs")), name="e")
    run = train(cfg).run_dir
    compress(CompressConfig(run=str(run), int8=True, epochs=1, calib_images=16, device="cpu"))
    files = {"run": run}
    for target, precision in (("tflite", "int8"), ("tflite", "fp32"), ("onnx", "fp32")):
        result = export(ExportConfig(run=str(run), target=target, precision=precision, calib_images=64,
                                     allow_degraded=True))
        files[f"{target}_{precision}"] = result.artifact
    return files


def run_edge(*args: str, check: bool = False, without: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `python -m edge_runtime ARGS` as a device user would (`without`: as run_cli's)."""
    proc = subprocess.run([*_python_m("edge_runtime", without), *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"edge_runtime {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def clinical_model(synth_root, tmp_path_factory) -> dict:
    """A tiny run trained with --clinical on a CSV whose body site mostly follows the label, then
    exported to a fp32 .tflite: the real train -> card -> export -> device path."""
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    tmp = tmp_path_factory.mktemp("clinical")
    from edgeskin.data.records import HAM_LABELS

    rng = np.random.default_rng(0)
    with open(synth_root / "synthetic_metadata.csv", newline="") as f:
        meta = list(csv.DictReader(f))
    sites = {k: s for k, s in zip(HAM_LABELS, ("face", "back", "trunk", "foot", "back", "trunk", "face"))}
    rows = []
    for r in meta:
        site = sites[r["dx"]] if rng.random() < 0.8 else str(rng.choice(["back", "face", "foot", "trunk"]))
        rows.append({"path": str(synth_root / "images" / f"{r['image_id']}.jpg"), "label": r["dx"],
                     "lesion_id": r["lesion_id"], "age": "" if rng.random() < 0.1 else str(int(rng.integers(20, 85))),
                     "sex": str(rng.choice(["female", "male"])), "site": site})
    manifest = tmp / "clinic.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    train_args = ("--data", manifest, "--backbone", "edgeskin_cnn_s", "--input-size", "32x48", "--epochs", "2",
                  "--batch-size", "16", "--device", "cpu")
    run_cli("train", *train_args, "--clinical", "--project", tmp / "runs", "--name", "c", check=True)
    run = tmp / "runs" / "c"
    run_cli("export", run, "--target", "tflite", "--precision", "fp32", "--min-recall", "0.5", "--allow-degraded",
            check=True)
    tflite = next((run / "export").glob("*.tflite"))
    return {"run": run, "tflite": tflite, "manifest": manifest, "rows": rows, "train_args": train_args}
