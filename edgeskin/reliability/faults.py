"""Kill tests: SIGKILL training, export and calibration at the worst moment of a write (its temp
file written, the rename not yet done: edge_runtime.atomic's fault hook) and from outside at a
random moment, then check that every artifact is the old complete file or the new complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.atomic import KILL_BEFORE_RENAME
from edgeskin.fileio import sha256_file
from edgeskin.reliability.badinput import Subjects

TRAIN = ["--backbone", "edgeskin_cnn_s", "--input-size", "32x48", "--batch-size", "16", "--patience", "50",
         "--device", "cpu"]


@dataclass(frozen=True)
class KillTest:
    name: str
    passed: bool
    detail: str


def _run(argv: list, kill_at: str | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, KILL_BEFORE_RENAME: kill_at} if kill_at else os.environ
    return subprocess.run([sys.executable, *map(str, argv)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


def train_checkpoint(s: Subjects, work: Path, epochs: int = 3) -> KillTest:
    """Killed while replacing last.pt after epoch 2: last.pt is epoch 1's, whole, and --resume
    finishes with the same weights as a run never killed."""
    import torch

    base = ["-m", "edgeskin", "train", "--data", s.data, *TRAIN, "--epochs", epochs, "--project", work]
    full = _run([*base, "--name", "full"])
    killed = _run([*base, "--name", "killed"], kill_at="last.pt:2")
    if full.returncode or not _killed(killed):
        return KillTest("train-checkpoint", False, f"runs ended {full.returncode}/{killed.returncode}")
    left = torch.load(work / "killed" / "last.pt", weights_only=False)["epoch"]
    resumed = _run(["-m", "edgeskin", "train", "--resume", work / "killed"])
    a = torch.load(work / "full" / "last.pt", weights_only=False)["model"]
    b = torch.load(work / "killed" / "last.pt", weights_only=False)["model"]
    same = resumed.returncode == 0 and all(torch.equal(a[k], b[k]) for k in a)
    return KillTest("train-checkpoint", left == 1 and same,
                    f"last.pt after the kill: epoch {left} (whole); resumed weights identical: {same}")


def export_model(s: Subjects, work: Path) -> list[KillTest]:
    """Killed while replacing the .tflite, then while replacing its card JSON: the first leaves
    the old pair, which runs; the second a new file beside the old card, which edge_runtime
    refuses by SHA-256 (it never runs a model with another model's card)."""
    run = work / "run"
    shutil.copytree(s.run, run, dirs_exist_ok=True)
    model = run / "export" / s.model.name
    side = model.with_name(model.name + ".json")
    before = {p: sha256_file(p) for p in (model, side)}
    export = ["-m", "edgeskin", "export", run, "--target", "tflite", "--precision", "int8", "--calib-images", "32",
              "--allow-degraded"]
    out = []
    first = _run(export, kill_at=model.name)
    same = {p: sha256_file(p) == d for p, d in before.items()}
    ok = _predicts(model, s.photo)
    out.append(KillTest("export-tflite", _killed(first) and all(same.values()) and ok == "",
                        f"killed: {_killed(first)}; old .tflite and card kept: {all(same.values())}; runs: {ok or 'yes'}"))
    second = _run(export, kill_at=side.name)
    refused = _predicts(model, s.photo)
    out.append(KillTest("export-card", _killed(second) and "does not match its card" in refused,
                        f"killed: {_killed(second)}; edge_runtime says: {refused or 'ran it'}"))
    return out


def _predicts(model: Path, photo: Path) -> str:
    """'' when edge_runtime classifies the photo with this model, else its one-line error."""
    proc = _run(["-m", "edge_runtime", "predict", model, photo, "--json"], timeout=300)
    return "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]


def calibration(s: Subjects, work: Path) -> KillTest:
    """Killed while replacing a site profile: the old one stays, whole and usable."""
    profile = work / "site.json"
    calibrate = ["-m", "edge_runtime", "calibrate", s.model, "--data", s.data / "labels.csv", "--out", profile,
                 "--threads", "1"]
    first = _run(calibrate)
    if first.returncode:
        return KillTest("calibrate-profile", False, first.stderr.strip()[-300:])
    before = sha256_file(profile)
    killed = _run(calibrate, kill_at=profile.name)
    kept = sha256_file(profile) == before and "operating_point" in json.loads(profile.read_text())
    usable = _run(["-m", "edge_runtime", "predict", s.model, s.photo, "--site", profile], timeout=300).returncode == 0
    return KillTest("calibrate-profile", _killed(killed) and kept and usable,
                    f"killed: {_killed(killed)}; old profile kept whole: {kept}; still usable: {usable}")


def train_random_kills(s: Subjects, work: Path, kills: int = 3, epochs: int = 4, seed: int = 0) -> KillTest:
    """SIGKILL from outside at random moments (no hook): after each, every checkpoint present loads."""
    import random

    import torch

    rng, bad = random.Random(seed), []
    cmd = [sys.executable, "-m", "edgeskin", "train", "--data", str(s.data), *TRAIN, "--epochs", str(epochs),
           "--project", str(work), "--name", "r", "--exist-ok"]
    for i in range(kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(4.0, 12.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for ckpt in ("last.pt", "best.pt"):
            path = work / "r" / ckpt
            if path.exists():
                try:
                    torch.load(path, weights_only=False)
                except Exception as exc:  # a torn file: exactly what this test exists to catch
                    bad.append(f"kill {i}: {ckpt} {type(exc).__name__}")
    return KillTest("train-random-sigkill", not bad, "; ".join(bad) or f"{kills} kills, every checkpoint whole")


def run_all(s: Subjects, work: Path) -> list[KillTest]:
    out = []
    for name, fn in (("train", train_checkpoint), ("export", export_model), ("calibrate", calibration),
                     ("random", train_random_kills)):
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        result = fn(s, folder)
        out.extend(result if isinstance(result, list) else [result])
    return out
