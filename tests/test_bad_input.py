"""The bad-input matrix (edgeskin.reliability.badinput): every kind is refused with
one line naming the file or value, a non-zero exit (a 4xx on the web) and nothing left behind,
or, for unusual but valid photos, classified."""

from __future__ import annotations

import threading

import pytest

from conftest import one_line_error, run_cli, run_edge
from edgeskin.reliability import badinput
from edgeskin.reliability.samples import image


@pytest.fixture(scope="module")
def subjects(exported_tiny, synth_root, tmp_path_factory):
    from edge_runtime.server import make_server

    work = tmp_path_factory.mktemp("bad_input")
    server = make_server(exported_tiny["tflite_int8"], port=0, threads=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield badinput.Subjects(work, image(work / "photo.jpg"), exported_tiny["run"], synth_root,
                            exported_tiny["tflite_int8"], f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def test_matrix_covers_every_surface_and_thirty_kinds():
    assert len(badinput.CASES) >= 30
    assert len({c.name for c in badinput.CASES}) == len(badinput.CASES)
    assert sum(c.kind == "error" for c in badinput.CASES) >= 30


@pytest.mark.parametrize("case", badinput.CASES, ids=lambda c: c.name)
def test_bad_input(case, subjects):
    outcome = badinput.run_case(case, subjects)
    assert outcome.passed, outcome


def test_one_line_unless_debug(exported_tiny, tmp_path):
    """The real console scripts: one line by default, the traceback only with --debug."""
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    assert "notes.txt" in one_line_error(run_edge("predict", exported_tiny["tflite_int8"], bad))
    debug = run_edge("--debug", "predict", exported_tiny["tflite_int8"], bad)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "notes.txt" in debug.stderr
    assert "no_such_run" in one_line_error(run_cli("export", tmp_path / "no_such_run"))
    debug = run_cli("--debug", "export", tmp_path / "no_such_run")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "EdgeskinError" in debug.stderr
