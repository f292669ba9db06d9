"""Shared fixtures: a small synthetic dataset, helpers to run the CLI, the real HAM10000 path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAM_ROOT = ROOT.parent / "shared" / "data" / "HAM10000"


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


def run_cli(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m edgeskin ARGS` as a user would, capturing output."""
    proc = subprocess.run([sys.executable, "-m", "edgeskin", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeskin {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error contract: non-zero exit, exactly one non-empty stderr line starting 'error:'."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("decode")]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]
