"""Optional extras: a command whose extra is missing stops at once with one line naming the extra
and its pip command, and writes nothing; the checked table is pyproject's."""

import re

import pytest

from conftest import ROOT, TINY, one_line_error, run_cli
from edgeskin.config import TrainConfig
from edgeskin.extras import EXTRAS, installed
from edgeskin.train import train


def test_extras_table_is_pyprojects():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    declared = {name: tuple(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].replace("-", "_") for req in reqs)
                for name, reqs in extras.items() if name != "dev"}
    assert declared == EXTRAS


def test_installed_tells_a_blocked_or_absent_module():
    import sys

    assert installed("numpy") and not installed("edgeskin_no_such_module")
    sys.modules["edgeskin_blocked"] = None  # how Python (and the tests below) mark an import as failing
    try:
        assert not installed("edgeskin_blocked")
    finally:
        del sys.modules["edgeskin_blocked"]


@pytest.fixture(scope="module")
def tiny_run(synth_root, tmp_path_factory):
    cfg = TrainConfig(data=str(synth_root), **TINY, epochs=1, project=str(tmp_path_factory.mktemp("runs")), name="x")
    return train(cfg).run_dir


@pytest.mark.parametrize("args, without, env, needle", [
    (["compress", "--int8"], ("nncf",), {}, "edgeskin compress needs the compress extra (nncf missing): "
                                            "pip install 'edgeskin[compress]'"),
    (["compress", "--prune", "0.3", "--prune-mode", "structured"], ("torch_pruning",), {}, "(torch_pruning missing)"),
    (["export", "--target", "onnx"], ("onnxruntime",), {}, "edgeskin export --target onnx needs the export extra "
                                                            "(onnxruntime missing): pip install 'edgeskin[export]'"),
    (["export", "--target", "tflite"], ("ai_edge_litert",), {}, "(ai_edge_litert missing)"),
    (["export", "--target", "tflite"], ("onnx2tf",), {}, "pip install --no-deps onnx2tf==1.29.24"),
    (["export", "--target", "tflite"], (), {"EDGESKIN_MEDIAPIPE_PYTHON": "/nonexistent/python"},
     "MediaPipe's Python not found at /nonexistent/python"),
    # Before the hint to run `compress --int8` first: that would need the compress extra too.
    (["export", "--target", "onnx", "--precision", "int8"], ("nncf",), {}, "--precision int8 (from the QAT model) "
                                                                          "needs the compress extra (nncf missing)"),
    # benchmark times LiteRT's peak on files onnx2tf writes; an uncompressed run's MACs come from torch-pruning.
    (["benchmark"], ("onnx2tf",), {}, "edgeskin benchmark needs onnx2tf"),
    (["benchmark"], ("torch_pruning",), {}, "edgeskin benchmark needs the compress extra (torch_pruning missing)"),
])
def test_missing_extra_is_one_line_before_any_work(tiny_run, args, without, env, needle):
    for module in without:  # the check must be what fails, not a missing install on this machine
        if not installed(module):
            pytest.skip(f"{module} is not installed here (its extra is left out)")
    before = sorted(p.name for p in tiny_run.iterdir())
    proc = run_cli(args[0], tiny_run, *args[1:], without=without, env=env)
    assert needle in one_line_error(proc)
    assert sorted(p.name for p in tiny_run.iterdir()) == before  # no partial folder either
    # Stopped before its output folder was made (an export made it before converting).
    assert not any((tiny_run / out).exists() for out in ("compress", "export", "benchmark"))


def test_benchmark_of_a_qat_int8_file_needs_nncf_first(exported_tiny):
    run = exported_tiny["run"]
    before = sorted(p.name for p in run.iterdir())
    proc = run_cli("benchmark", run, without=("nncf",))
    assert "int8 file made from the QAT model needs the compress extra (nncf missing)" in one_line_error(proc)
    assert sorted(p.name for p in run.iterdir()) == before
