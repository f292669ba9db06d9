"""Site profiles (`edge_runtime calibrate`): a clinic refits the operating point and referral
threshold on its own labelled photos, and predict/benchmark/serve --site use them."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import one_line_error, run_edge
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.site import fit_profile, folds, read_profile

LABELS = ["bcc", "mel", "nv"]
CARD = {"labels": LABELS, "positive_label": "mel", "malignant_labels": ["bcc", "mel"],
        "calibration": {"temperature": 1.5, "refer_at_risk": 0.3, "refer_sensitivity": 0.9},
        "operating_point": {"label": "mel", "min_recall": 0.7, "offsets": [0.0, 0.4, 0.0]}}


def _site(seed=0, n=400, shift=1.5):
    """Logits of a site where melanoma is under-called by `shift` more than where the card was fitted."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += 1.0
    z[y == 1, 1] -= shift
    return z, y


def _recall(z, y, k=1):
    return float(np.mean(z[y == k].argmax(1) == k))


def test_profile_restores_the_target_recall_and_referral_sensitivity_at_the_site():
    z, y = _site()
    card_offsets = np.asarray(CARD["operating_point"]["offsets"])
    assert _recall(z + card_offsets, y) < 0.6  # the card's operating point misses its target here
    p = fit_profile(z, y, CARD, None, "clinic-b", "b.csv")
    off = np.asarray(p["operating_point"]["offsets"])
    assert p["operating_point"]["min_recall"] == 0.7  # the card's own target, refitted
    assert off[0] == off[2] == 0 and _recall(z + off, y) >= 0.7 > _recall(z + off - [0, 2e-4, 0], y)
    assert p["operating_point"]["site_with_card"]["recall"] == round(_recall(z + card_offsets, y), 4)
    assert p["operating_point"]["site_after"]["recall"] == round(_recall(z + off, y), 4)
    # Referral: the threshold refers at least 90% of the site's malignant photos, and is the highest that does.
    e = np.exp((z + off) / 1.5)
    risk = (e[:, :2].sum(1) / e.sum(1))[np.isin(y, [0, 1])]
    t = p["calibration"]["refer_at_risk"]
    assert np.mean(risk >= t) >= 0.9 > np.mean(risk >= t + 1e-3)
    assert p["site_referred"]["malignant"] == round(float(np.mean(risk >= t)), 4)
    all_risk = e[:, :2].sum(1) / e.sum(1)
    assert p["site_referred"]["benign"] == round(float(np.mean(all_risk[y == 2] >= t)), 4)
    assert p["calibration"]["card_refer_at_risk"] == 0.3 and p["counts"] == {k: int(np.sum(y == i))
                                                                           for i, k in enumerate(LABELS)}


def test_without_a_target_the_card_operating_point_is_kept_and_too_few_positives_is_an_error():
    z, y = _site()
    plain = {**CARD, "operating_point": None}
    p = fit_profile(z, y, plain, None, "s", "s.csv")
    assert p["operating_point"] is None and p["calibration"]["refer_at_risk"] is not None
    y_few = np.where((y == 1) & (np.arange(len(y)) > 25), 2, y)  # melanoma only among the first 26 photos
    assert 0 < np.sum(y_few == 1) < 10
    with pytest.raises(EdgeRuntimeError, match=r"few\.csv has \d 'mel' photos; a site profile needs at least 10"):
        fit_profile(z, y_few, CARD, 0.7, "s", "few.csv")


def test_cross_validated_figures_are_out_of_sample():
    # Ten melanomas, the first the hardest to call: a recall target of 1.0 is met in-sample by an
    # offset just above its margin, but the fold holding it was fitted without it and misses it.
    rng = np.random.default_rng(0)
    y = np.array([1] * 10 + [2] * 30 + [0] * 10)
    z = rng.normal(scale=0.1, size=(len(y), 3))
    z[np.arange(len(y)), y] += 3.0
    z[:10, 1] -= np.r_[3.0, np.linspace(0.2, 1.0, 9)] + 3.0  # melanoma margins: 3.x for the first, <= 1.x else
    p = fit_profile(z, y, CARD, 1.0, "s", "s.csv")
    assert p["operating_point"]["site_after"]["recall"] == 1.0
    assert p["cross_validated"]["decisions"]["recall"] == 0.9
    assert list(folds(y)[:10]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # contiguous: a lesion's photos stay together
    # The hardest melanoma photographed twice, listed apart: folded by photo, its twin is in the
    # fitting folds (a leak, recall 1.0); folded by lesion, both photos are missed together.
    z2, y2 = np.vstack([z, z[:1]]), np.r_[y, 1]
    lesions = [f"l{i}" for i in range(len(y))] + ["l0"]
    assert fit_profile(z2, y2, CARD, 1.0, "s", "s.csv")["cross_validated"]["decisions"]["recall"] == 1.0
    grouped = fit_profile(z2, y2, CARD, 1.0, "s", "s.csv", lesions)["cross_validated"]
    assert grouped["grouped_by"] == "lesion_id" and grouped["decisions"]["recall"] == round(9 / 11, 4)
    assert folds(y2, lesions)[0] == folds(y2, lesions)[-1]
    assert grouped["photos_without_lesion_id"] == 0
    # A lesion_id column filled in part: the ids given still keep the twins together, other photos fold alone.
    partial = ["l0"] + [None] * (len(y) - 1) + ["l0"]
    some = fit_profile(z2, y2, CARD, 1.0, "s", "s.csv", partial)["cross_validated"]
    assert some["grouped_by"] == "lesion_id" and some["photos_without_lesion_id"] == len(y) - 1
    assert some["decisions"]["recall"] == round(9 / 11, 4) and list(folds(y2, partial)) == list(folds(y2, lesions))
    unknown = fit_profile(z2, y2, CARD, 1.0, "s", "s.csv", [None] * len(y2))["cross_validated"]
    assert unknown["grouped_by"] == "photo" and unknown["decisions"]["recall"] == 1.0
    # Every melanoma photo of one lesion: a fold would have none to fit on, so it says so, no crash.
    one = [f"l{i}" for i in range(len(y))]
    one[:10] = ["m"] * 10
    single = fit_profile(z, y, CARD, 1.0, "s", "s.csv", one)["cross_validated"]
    assert single["decisions"] is None and "without a positive photo" in single["skipped"]
    # On a large site the same fit holds out of sample: cross-validated ~ in-sample.
    z, y = _site(seed=3, n=4000)
    p = fit_profile(z, y, CARD, 0.7, "s", "s.csv")
    cv, fitted = p["cross_validated"], p["operating_point"]["site_after"]
    assert cv["folds"] == 5 and abs(cv["decisions"]["recall"] - fitted["recall"]) < 0.03
    assert abs(cv["referred"]["malignant"] - p["site_referred"]["malignant"]) < 0.03


def test_profile_is_refused_for_another_model_or_when_it_is_not_one(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"kind": "edge_runtime site profile", "model": {"file": "a.tflite", "sha256": "a" * 64},
                               "operating_point": None}))
    with pytest.raises(EdgeRuntimeError, match=r"fitted for a\.tflite .* not b\.tflite .*edge_runtime calibrate"):
        read_profile(bad, "b.tflite", "b" * 64, 3)
    assert read_profile(bad, "a.tflite", "a" * 64, 3)["operating_point"] is None
    bad.write_text("{not json")
    with pytest.raises(EdgeRuntimeError, match="not a site profile JSON"):
        read_profile(bad, "a.tflite", "a" * 64, 3)


def test_cross_fitted_site_profile_restores_what_the_card_promised_on_a_shifted_site():
    """The benchmark's step 2 (edgeskin.benchmark.site_refit.cross_fit): thresholds fitted on one
    half of a shifted site's lesions decide the other half better than the card's."""
    from edgeskin.benchmark.site_refit import cross_fit

    val_z, val_y = _site(seed=1, shift=0.0)
    fitted = fit_profile(val_z, val_y, {**CARD, "operating_point": None}, 0.7, "training sites", "val")
    card = {**CARD, "operating_point": fitted["operating_point"],
            "calibration": {"temperature": 1.5, "refer_sensitivity": 0.9,
                            "refer_at_risk": fitted["calibration"]["refer_at_risk"]}}
    z, y = _site(seed=2, n=600, shift=1.5)
    lesions = np.arange(len(y)) // 2  # two photos per lesion: a lesion never straddles the halves
    r = cross_fit(z, y, lesions, card, seed=0)
    assert r["card"]["mel_recall"] < 0.6 <= r["site"]["mel_recall"]
    assert r["card"]["malignant_referred"] < 0.85 <= r["site"]["malignant_referred"]
    # The card's thresholds do not depend on the halves: every image decided once gives the whole-site figure.
    assert r["card"]["mel_recall"] == pytest.approx(_recall(z + card["operating_point"]["offsets"], y))


@pytest.fixture(scope="module")
def site_csv(synth_root, tmp_path_factory):
    """The synthetic images as a clinic's labelled photos: a CSV with path,label,lesion_id."""
    from edgeskin.data.readers import read_dataset

    path = tmp_path_factory.mktemp("site") / "clinic.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "lesion_id"])
        w.writerows((s.path, s.dx, s.lesion_id) for s in read_dataset(synth_root).samples)
    return path


def test_calibrate_then_predict_and_benchmark_use_the_site_thresholds(exported_tiny, site_csv, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    from edge_runtime import Classifier

    model, prof = exported_tiny["tflite_int8"], tmp_path / "clinic.json"
    # On the device: torch, TensorFlow and edgeskin blocked outright, so importing one would fail.
    code = ("import sys\n"
            "for m in ('torch', 'tensorflow', 'tf_keras', 'jax', 'edgeskin', 'sklearn'): sys.modules[m] = None\n"
            "from edge_runtime.cli import main\n"
            f"sys.exit(main(['calibrate', {str(model)!r}, '--data', {str(site_csv)!r}, '--out', {str(prof)!r}, "
            "'--min-recall', '0.95', '--site-name', 'clinic-b']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "mel recall" in proc.stdout and "--site" in proc.stdout and "(5-fold)" in proc.stdout
    p = json.loads(prof.read_text())
    assert p["site"] == "clinic-b" and p["n_images"] == 240 and p["operating_point"]["site_after"]["recall"] >= 0.95
    assert p["cross_validated"]["grouped_by"] == "lesion_id"  # the CSV's lesion_id column
    assert p["cross_validated"]["photos_without_lesion_id"] == 0 and "no lesion_id" not in proc.stdout
    plain, sited = Classifier.load(model), Classifier.load(model, site=prof)
    assert sited.describe["site"] == "clinic-b" and sited.describe["operating_point"]["min_recall"] == 0.95
    assert sited.calibration["refer_at_risk"] == p["calibration"]["refer_at_risk"]
    first = next(csv.DictReader(open(site_csv)))["path"]
    from PIL import Image
    rgb = Image.open(first).convert("RGB")
    raw = plain.raw(rgb)[0]
    np.testing.assert_allclose(sited.infer(rgb, with_cam=False)[0], raw + p["operating_point"]["offsets"], atol=1e-6)
    # The device, measured on the same photos with the profile, sees exactly the recall calibrate reported.
    bench = run_edge("benchmark", model, "--data", site_csv, "--site", prof, "--runs", "2", "--warmup", "0",
                     "--no-cold", "--json", check=True)
    r = json.loads(bench.stdout)
    assert r["model"]["site"] == "clinic-b"
    assert r["accuracy"]["recall"]["mel"] == pytest.approx(p["operating_point"]["site_after"]["recall"], abs=1e-4)
    assert r["accuracy"]["balanced_accuracy"] == pytest.approx(
        p["operating_point"]["site_after"]["balanced_accuracy"], abs=1e-4)
    out = json.loads(run_edge("predict", model, first, "--json", "--site", prof, check=True).stdout)
    assert out["label"] == plain.artifact.labels[int(np.argmax(raw + p["operating_point"]["offsets"]))]
    _served_with_profile(model, prof, first, sited)


def test_calibrate_with_lesion_ids_filled_in_part_groups_those_it_has(exported_tiny, site_csv, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the export extra is not installed")
    rows = list(csv.DictReader(open(site_csv)))
    for r in rows[::2]:
        r["lesion_id"] = ""
    part, prof = tmp_path / "part.csv", tmp_path / "part.json"
    with open(part, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    proc = run_edge("calibrate", exported_tiny["tflite_int8"], "--data", part, "--out", prof, check=True)
    blank = len(rows[::2])
    assert f"{blank} photos have no lesion_id and were folded alone" in proc.stdout
    cv = json.loads(prof.read_text())["cross_validated"]
    assert cv["grouped_by"] == "lesion_id" and cv["photos_without_lesion_id"] == blank


def _served_with_profile(model, prof, photo, sited):
    """`serve --site`: a real local HTTP server answers with the site's decision and says where
    its referral threshold was fitted when it refers."""
    import threading
    import urllib.request

    from edge_runtime.server import make_server

    srv = make_server(model, "127.0.0.1", 0, threads=1, site=prof)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/", timeout=60).read().decode()
        assert "thresholds of site clinic-b" in page  # the clinician sees which thresholds decide
        req = urllib.request.Request(f"http://127.0.0.1:{srv.server_address[1]}/predict",
                                     data=open(photo, "rb").read(), method="POST")
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
    finally:
        srv.shutdown()
        srv.server_close()
    expected = sited.predict(photo)
    assert answer["label"] == expected.label and answer["next_step"] == expected.next_step
    if expected.malignant_risk >= sited.calibration["refer_at_risk"]:
        assert "at site 'clinic-b'" in answer["next_step"]


def test_calibrate_bad_input_is_one_line_and_writes_nothing(exported_tiny, site_csv, tmp_path):
    model, prof = exported_tiny["tflite_int8"], tmp_path / "p.json"
    assert "--min-recall 1.5" in one_line_error(run_edge("calibrate", model, "--data", site_csv, "--out", prof,
                                                         "--min-recall", "1.5"))
    odd = tmp_path / "odd.csv"
    odd.write_text(f"path,label\n{next(csv.DictReader(open(site_csv)))['path']},melanoma\n")
    assert "['melanoma'] are not classes" in one_line_error(run_edge("calibrate", model, "--data", odd, "--out", prof))
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    assert "empty.csv lists no images" in one_line_error(run_edge("calibrate", model, "--data", empty, "--out", prof))
    assert "should be a .json file" in one_line_error(run_edge("calibrate", model, "--data", site_csv, "--out",
                                                               tmp_path / "p.txt"))
    missing = tmp_path / "no" / "p.json"
    assert "does not exist" in one_line_error(run_edge("calibrate", model, "--data", site_csv, "--out", missing))
    assert not prof.exists() and not list(tmp_path.glob(".p.json*"))
    # A profile fitted for the int8 file is refused by the fp32 file.
    run_edge("calibrate", exported_tiny["tflite_int8"], "--data", site_csv, "--out", prof, check=True)
    line = one_line_error(run_edge("predict", exported_tiny["tflite_fp32"], odd, "--site", prof))
    assert "p.json was fitted for" in line and "run `edge_runtime calibrate` for this model" in line
