"""Faults, fuzzing and load (edgeskin.reliability): kills mid-write leave whole files, fuzzed
photos and CSVs end in a result or the product's own error, the web page survives load."""

from __future__ import annotations

import pytest

from edgeskin.reliability import faults, fuzz, load
from edgeskin.reliability.badinput import Subjects
from edgeskin.reliability.samples import image


@pytest.fixture(scope="module")
def subjects(exported_tiny, synth_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("reliability")
    return Subjects(work, image(work / "photo.jpg"), exported_tiny["run"], synth_root, exported_tiny["tflite_int8"])


def test_killed_while_replacing_a_checkpoint_resumes_to_identical_weights(subjects, tmp_path):
    result = faults.train_checkpoint(subjects, tmp_path)
    assert result.passed, result.detail


def test_killed_while_writing_a_site_profile_keeps_the_old_one(subjects, tmp_path):
    result = faults.calibration(subjects, tmp_path)
    assert result.passed, result.detail


@pytest.mark.slow
def test_killed_export_leaves_a_pair_that_runs_or_is_refused(subjects, tmp_path):
    results = faults.export_model(subjects, tmp_path)
    assert [r.name for r in results] == ["export-tflite", "export-card"]
    assert all(r.passed for r in results), [r.detail for r in results]


@pytest.mark.slow
def test_random_sigkills_never_tear_a_checkpoint(subjects, tmp_path):
    result = faults.train_random_kills(subjects, tmp_path, kills=2)
    assert result.passed, result.detail


def test_fuzz_small(subjects):
    """A few hundred inputs in the fast lane; the slow lane runs 10,000."""
    for result in (fuzz.photos(subjects.model, 300), fuzz.csv_readers(200)):
        assert result.inputs >= 200 and result.unhandled == 0, result.examples
        assert result.handled_errors > 0  # the generators do reach the refusals


@pytest.mark.slow
def test_fuzz_ten_thousand_inputs_flat_memory(subjects):
    photos, csvs = fuzz.photos(subjects.model, 6000), fuzz.csv_readers(4000)
    assert photos.inputs + csvs.inputs >= 10_000
    assert photos.unhandled == csvs.unhandled == 0, photos.examples + csvs.examples
    assert photos.rss_growth_mb < 30 and csvs.rss_growth_mb < 30, (photos.rss_growth_mb, csvs.rss_growth_mb)


def test_oversize_upload_is_refused_before_it_is_read(subjects):
    ok, detail = load.oversize_refused_unread(subjects.model)
    assert ok, detail


def test_server_stays_on_loopback_and_warns_when_exposed(subjects):
    ok, detail = load.exposure_announced(subjects.model)
    assert ok, detail


@pytest.mark.slow
def test_web_page_under_load(subjects):
    result = load.run_load(subjects.model, requests=1000, clients=4)
    assert result.errors_5xx == 0 and result.dropped == 0, result.status_counts
    assert set(result.status_counts) == {"200", "400"}  # good photos answered, bad ones refused
    assert result.rss_growth_mb < 100, result.rss_trace_mb
