"""Every command in README.md runs as written. The tour's `bash` and `python` blocks run in order,
in a scratch copy of what a user has (the repository's `edge_runtime/` folder), and the device
side is installed with the README's own `pip install ./edge_runtime` into a fresh virtual
environment. The `make` lines run elsewhere: `make test` is CI itself, `make demo` is
tests/test_cli.py::test_demo_main_job."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
# A `make` line of the README -> (file that runs it, text that file must hold).
RUN_ELSEWHERE = {"make demo": ("tests/test_cli.py", 'run_cli("demo"'), "make test": (".ci/run", "make test")}
SERVE_URL = "http://127.0.0.1:8080/"  # `edge_runtime serve`'s default address, as the README says


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def bash_commands() -> list[str]:
    """One entry per command: comments and blank lines dropped, `\\` continuations joined."""
    commands = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def test_the_readme_has_a_tour_and_fits_one_screenful_per_topic():
    assert len(README.read_text().splitlines()) <= 250
    commands = bash_commands()
    for stage in ("edgeskin train", "edgeskin evaluate", "edgeskin compress", "edgeskin export",
                  "edgeskin benchmark", "edgeskin explain", "edge_runtime predict", "edge_runtime serve"):
        assert any(c.startswith(stage) for c in commands), f"the README's tour has no `{stage}`"
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", README.read_text()):
        assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"


def test_make_lines_are_run_elsewhere():
    makes = [c.split("#")[0].strip() for c in bash_commands() if c.startswith("make ")]
    assert makes, "the README's two commands are gone"
    for command in makes:
        assert command in RUN_ELSEWHERE, f"README runs `{command}`, which no test runs; add it to RUN_ELSEWHERE"
        where, needle = RUN_ELSEWHERE[command]
        assert needle in (ROOT / where).read_text(), f"{where} no longer runs `{command}`"


@pytest.fixture(scope="module")
def device_env(tmp_path_factory):
    """A fresh venv for the device side. It sees this environment's packages through a .pth file,
    so `pip install ./edge_runtime` finds numpy, Pillow and LiteRT installed, and installs only
    the runtime itself (into the fresh venv: pip leaves packages outside it alone)."""
    env_dir = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    purelib = next(env_dir.glob("lib/python*/site-packages"))
    (purelib / "edgeskin_host.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path, device_env):
    shutil.copytree(ROOT / "edge_runtime", tmp_path / "edge_runtime",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    path = os.pathsep.join([str(device_env / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {**os.environ, "PATH": path, "NNCF_EXTENSION_LOAD_TIMEOUT": "0"}
    env.pop("PYTHONPATH", None)  # the runtime must come from what `pip install` put in the venv
    for command in bash_commands():
        if command.startswith("make "):
            continue  # test_make_lines_are_run_elsewhere
        if command.startswith("edge_runtime serve"):
            _serve(command, tmp_path, env)
            continue
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1200)
        assert proc.returncode == 0, f"README command failed: {command}\n{(proc.stdout + proc.stderr)[-3000:]}"
        if command.startswith("pip install"):
            installed = subprocess.run(["bash", "-c", "command -v edge_runtime"], env=env, capture_output=True,
                                       text=True).stdout.strip()
            assert installed == str(device_env / "bin" / "edge_runtime"), installed
    for block in blocks("python"):
        proc = subprocess.run([str(device_env / "bin" / "python"), "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README Python block failed:\n{block}\n{proc.stderr[-3000:]}"
    run = tmp_path / "runs" / "train" / "tour"
    for written in ("model_card.json", "eval/test/report.md", "compress/summary.md",
                    "export/edgeskin_cnn_s_int8.tflite", "benchmark/report.md"):
        assert (run / written).is_file(), f"the tour did not write {written}"
    assert list((run / "export").glob("*mediapipe*.tflite")), "no MediaPipe file"
    assert list((tmp_path / "heatmaps").glob("*.png")) and (tmp_path / "lesion_cam.png").is_file()
    assert (tmp_path / "site.json").is_file() and list((run / "explain").rglob("*.png"))


def _serve(command: str, cwd: Path, env: dict) -> None:
    """`edge_runtime serve` runs until stopped: start it, load its page, stop it."""
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, page = time.monotonic() + 60, None
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                page = urllib.request.urlopen(SERVE_URL, timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, f"`{command}` served nothing at {SERVE_URL}: {proc.stdout.read()[-2000:] if proc.poll() is not None else 'still starting'}"
        assert "<form" in page or "<input" in page, page[:500]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
