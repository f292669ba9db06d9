"""The clinical-context prior: fitted by `edgeskin train --clinical`, carried in the card, added on
the device (edge_runtime, numpy) by predict, benchmark, calibrate and the web page."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import one_line_error, run_cli, run_edge
from edge_runtime.clinical import AGE_EDGES, ClinicalPrior, Context
from edge_runtime.errors import EdgeRuntimeError
from edgeskin.data.records import HAM_LABELS, Sample
from edgeskin.errors import EdgeskinError
from edgeskin.metrics import balanced_accuracy
from edgeskin.train.clinical import context_logits, fit_clinical_prior

SITES = ("back", "face", "foot", "trunk")


def _prior(scale: float = 1.0, n_classes: int = 3) -> ClinicalPrior:
    rng = np.random.default_rng(0)
    n_features = len(SITES) + 2 + len(AGE_EDGES)
    return ClinicalPrior(SITES, ("female", "male"), AGE_EDGES, rng.normal(size=(n_classes, n_features)),
                         rng.normal(size=n_classes), scale)


def test_features_and_bad_values():
    prior = _prior()
    site, sex, age = prior.groups()
    f = prior.features(Context(55.0, "female", "face"))
    assert f[site].tolist() == [0, 1, 0, 0] and f[sex].tolist() == [1, 0]
    assert f[age][5] == 1 and f[age].sum() == 1  # 55 falls in [50, 60)
    assert not prior.features(Context()).any()  # missing fields are all zeros
    assert not prior.features(Context(site="unknown", sex="unknown")).any()  # HAM10000's "unknown" too
    assert prior.features(Context(95.0))[age][-1] == 1  # the last age bin is open
    p = np.exp(prior.log_prior(Context(30.0, "male", "back")) / prior.scale)
    assert abs(p.sum() - 1) < 1e-5  # scale * log of a distribution over the classes
    assert np.allclose(_prior(0.0).log_prior(Context(30.0)), 0)  # weight 0: no prior at all
    for bad, named in ((Context(site="nail"), "body site 'nail'"), (Context(sex="x"), "sex 'x'"),
                       (Context(age=-3), "age -3")):
        with pytest.raises(EdgeRuntimeError, match=named):
            prior.features(bad)


def _samples(n: int, rng, informative: bool) -> tuple[list[Sample], np.ndarray]:
    y = rng.integers(0, 3, n)
    site = y if informative else rng.integers(0, 3, n)
    return [Sample(Path("x.jpg"), f"i{i}", HAM_LABELS[k], f"l{i}", float(rng.integers(20, 80)),
                   "female", SITES[s]) for i, (k, s) in enumerate(zip(y, site))], y


def test_fit_picks_a_weight_on_validation_only_when_context_helps():
    rng = np.random.default_rng(1)
    train, ty = _samples(600, rng, informative=True)
    val, vy = _samples(300, rng, informative=True)
    weak = rng.normal(size=(300, 3))  # an image model that knows little
    fit = fit_clinical_prior(train, ty, 3, val, vy, weak)
    assert fit.prior.scale > 0
    fused = weak + context_logits(fit.prior, val)
    assert balanced_accuracy(vy, fused.argmax(1)) > balanced_accuracy(vy, weak.argmax(1)) + 0.3
    # Picked by the class-balanced log-loss: sklearn's, with each class weighted equally.
    from sklearn.metrics import log_loss

    from edgeskin.predict import softmax
    from edgeskin.train.clinical import balanced_log_loss

    per_image = 1.0 / np.bincount(vy)[vy]
    assert balanced_log_loss(vy, fused) == pytest.approx(log_loss(vy, softmax(fused), sample_weight=per_image),
                                                         rel=1e-6)
    assert fit.val_balanced_log_loss[fit.prior.scale] == min(fit.val_balanced_log_loss.values())
    # Context that says nothing of the class (sites drawn at random): mostly weight 0. Balanced
    # accuracy, which moves in whole images, switched such a prior on in 13 of these 20 draws.
    picked = []
    for seed in range(20):
        r = np.random.default_rng(seed)
        (tr, tr_y), (va, va_y) = _samples(600, r, informative=False), _samples(300, r, informative=False)
        picked.append(fit_clinical_prior(tr, tr_y, 3, va, va_y, np.eye(3)[va_y] + r.normal(size=(300, 3))).prior.scale)
    assert sum(w > 0 for w in picked) <= 6
    # A body site never seen in training counts as missing when scored, not as an error.
    unseen = [Sample(Path("x.jpg"), "u", "akiec", "u", 40.0, "female", "scalp")]
    assert context_logits(fit.prior, unseen).shape == (1, 3)
    # Centring the fields leaves a fully recorded context's prior the logistic model's own.
    from sklearn.linear_model import LogisticRegression

    from edgeskin.train.clinical import C, context_of

    x = np.stack([fit.prior.features(context_of(s)) for s in train])
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(x, ty)
    ctx = context_of(val[0])
    assert np.allclose(fit.prior.log_prior(ctx) / fit.prior.scale,
                       lr.predict_log_proba(fit.prior.features(ctx)[None])[0], atol=1e-4)
    # No context at all: no prior (the image model's own logits); one field: that field's effect.
    assert not fit.prior.log_prior(Context()).any()
    assert fit.prior.log_prior(Context(site=SITES[0])).any()


def _context(row: dict) -> Context:
    return Context(float(row["age"]) if row["age"] else None, row["sex"], row["site"])


def test_train_writes_the_prior_and_export_fits_thresholds_with_it(clinical_model):
    card = json.loads((clinical_model["run"] / "model_card.json").read_text())
    prior = card["clinical"]
    assert set(prior["sites"]) == set(SITES) and prior["sexes"] == ["female", "male"]
    losses = {float(k): v for k, v in prior["val_balanced_log_loss"].items()}
    assert prior["scale"] == min(losses, key=lambda t: (losses[t], t))  # the smallest of the lowest
    assert set(losses) == {float(k) for k in prior["val_balanced_accuracy"]}
    device_card = json.loads(Path(f"{clinical_model['tflite']}.json").read_text())["model_card"]
    assert device_card["clinical"] == prior
    assert "clinical prior" in device_card["operating_point"]["fitted_on"]


def test_device_adds_the_prior_before_offsets(clinical_model):
    from edge_runtime.classifier import Classifier
    from edge_runtime.preprocess import model_pixels, normalize

    clf = Classifier.load(clinical_model["tflite"])
    row = clinical_model["rows"][0]
    rgb = Image.open(row["path"]).convert("RGB")
    ctx = _context(row)
    a = clf.artifact
    plain, _ = clf.backend.run(normalize(model_pixels(rgb, a.input_size, a.color_constancy)[None], a.mean, a.std),
                               False)
    prior = ClinicalPrior.from_dict(clf.artifact.card["clinical"])
    decided, _ = clf.infer(rgb, False, ctx)
    assert np.allclose(decided, plain + prior.log_prior(ctx) + clf.offsets, atol=1e-5)
    assert np.allclose(clf.infer(rgb, False)[0], plain + prior.log_prior(Context()) + clf.offsets, atol=1e-5)


def test_cli_predict_benchmark_and_calibrate_use_the_context(clinical_model, exported_tiny, tmp_path):
    from edge_runtime.classifier import Classifier

    model, row = clinical_model["tflite"], clinical_model["rows"][0]
    other = "face" if row["site"] != "face" else "foot"
    a, b = (json.loads(run_edge("predict", model, row["path"], "--json", "--body-site", s, "--sex", "male",
                                "--age", "70", check=True).stdout) for s in (row["site"], other))
    clf = Classifier.load(model)
    want = clf.predict(row["path"], with_cam=False, context=Context(70.0, "male", row["site"]))
    assert a["probabilities"] == pytest.approx(want.to_dict()["probabilities"], abs=1e-4)
    assert a["probabilities"] != b["probabilities"]  # the body site moved the scores
    err = one_line_error(run_edge("predict", model, row["path"], "--body-site", "nail"))
    assert "'nail'" in err and "face" in err  # names the valid sites
    assert "no clinical prior" in one_line_error(run_edge("predict", exported_tiny["tflite_int8"], row["path"],
                                                          "--age", "50"))
    # benchmark --data and calibrate read age,sex,site from the CSV: decided as Classifier with context
    rows = clinical_model["rows"]
    y = np.array([clf.artifact.labels.index(r["label"]) for r in rows])
    rgbs = [Image.open(r["path"]).convert("RGB") for r in rows]

    def decide(c) -> np.ndarray:
        return np.array([int(np.argmax(c.infer(rgb, False, _context(r))[0])) for rgb, r in zip(rgbs, rows)])
    report = json.loads(run_edge("benchmark", model, "--data", clinical_model["manifest"], "--runs", "2",
                                 "--warmup", "1", "--no-cold", "--json", check=True).stdout)["accuracy"]
    assert report["clinical_context"] is True
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy(y, decide(clf)))
    out = tmp_path / "site.json"
    run_edge("calibrate", model, "--data", clinical_model["manifest"], "--out", out, "--min-recall", "0.6",
             check=True)
    pred = decide(Classifier.load(model, site=out))
    mel = clf.artifact.labels.index("mel")
    assert np.mean(pred[y == mel] == mel) >= 0.6  # the profile's mel target holds on the context-aware logits
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,label,age\n{row['path']},mel,old\n")
    assert "age 'old'" in one_line_error(run_edge("benchmark", model, "--data", bad, "--no-cold"))


def test_web_page_offers_and_sends_the_context(clinical_model):
    from edge_runtime.classifier import Classifier
    from edge_runtime.server import make_server

    server = make_server(clinical_model["tflite"], port=0, threads=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(url + "/").read().decode()
        assert '<select id="site">' in page and '<option value="foot">' in page
        row = clinical_model["rows"][1]
        photo = Path(row["path"]).read_bytes()
        req = urllib.request.Request(f"{url}/predict?age=61&sex=female&site=foot", data=photo, method="POST")
        got = json.loads(urllib.request.urlopen(req).read())
        want = Classifier.load(clinical_model["tflite"]).predict(row["path"], context=Context(61.0, "female", "foot"))
        assert got["probabilities"] == pytest.approx(want.to_dict()["probabilities"], abs=1e-4)
        for query, named in (("site=nail", "nail"), ("age=sixty", "sixty")):
            bad = urllib.request.Request(f"{url}/predict?{query}", data=photo, method="POST")
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(bad)
            assert exc.value.code == 400 and named in json.loads(exc.value.read())["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_prior_fitted_on_a_finished_run_is_the_one_train_fits(clinical_model, exported_tiny, tmp_path):
    # The same run trained without --clinical (CPU training is deterministic): `edgeskin prior`
    # fits, from its best weights, the prior `train --clinical` fitted after training.
    run_cli("train", *clinical_model["train_args"], "--project", tmp_path, "--name", "p", check=True)
    card = tmp_path / "p" / "model_card.json"
    assert json.loads(card.read_text()).get("clinical") is None
    run_cli("prior", tmp_path / "p", "--device", "cpu", check=True)
    fitted = json.loads(card.read_text())["clinical"]
    trained = json.loads((clinical_model["run"] / "model_card.json").read_text())["clinical"]
    got, want = ClinicalPrior.from_dict(fitted), ClinicalPrior.from_dict(trained)
    assert (got.sites, got.sexes, got.scale) == (want.sites, want.sexes, want.scale)
    np.testing.assert_allclose(got.weights, want.weights, atol=1e-6)
    # Scored on the same best weights' validation logits (the weight grid's scores depend on them).
    for key in ("val_balanced_log_loss", "val_balanced_accuracy"):
        assert fitted[key] == pytest.approx(trained[key], abs=1e-9)
    # A run whose data records no context is refused in one line, its card untouched.
    before = (exported_tiny["run"] / "model_card.json").read_bytes()
    err = one_line_error(run_cli("prior", exported_tiny["run"], "--device", "cpu"))
    assert "edgeskin prior" in err and "age,sex,site" in err
    assert (exported_tiny["run"] / "model_card.json").read_bytes() == before


def test_clinical_needs_context_in_the_data(synth_root, tmp_path):
    err = one_line_error(run_cli("train", "--data", synth_root, "--epochs", "1", "--clinical",
                                 "--project", tmp_path, "--device", "cpu"))
    assert "--clinical" in err and "age,sex,site" in err
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_evaluate_and_ablation_score_with_the_recorded_context(clinical_model, tmp_path):
    import torch

    from edgeskin.benchmark.ablation import AblationConfig, Lever, run_ablation
    from edgeskin.card import ModelCard
    from edgeskin.train.runs import load_run_model, run_data
    from edgeskin.predict import predict_logits

    run = clinical_model["run"]
    run_cli("evaluate", run, "--bootstrap", "0", "--device", "cpu", check=True)
    card = ModelCard.load(run)
    data, split = run_data(run, card)
    test = data.subset(split.indices("test"))
    logits = predict_logits(load_run_model(run, card, torch.device("cpu")), test.pixels, card.preprocessing.mean,
                            card.preprocessing.std, torch.device("cpu"))
    fused = logits + context_logits(ClinicalPrior.from_dict(card.clinical), test.samples)
    assert card.metrics["test"]["balanced_accuracy"] == pytest.approx(balanced_accuracy(test.targets, fused.argmax(1)))
    # The ablation's clinical rows: the prior fitted per run, scored with and without the context.
    levers = (Lever("base", "reference"), Lever("ctx", "clinical", post="clinical", reuse="base"),
              Lever("no-ctx", "clinical", post="clinical_unrecorded", reuse="base"),
              Lever("ctx-op", "clinical", post="clinical+min_recall=1.0", reuse="base"))
    cfg = AblationConfig(data=str(clinical_model["manifest"]), recipe="demo", levers=levers, seeds=(0,),
                         base={"input_size": (32, 48), "epochs": 1, "batch_size": 16, "device": "cpu"},
                         out=str(tmp_path / "abl"), bootstrap=0)
    rows = {r["name"]: r["per_seed"]["0"] for r in run_ablation(cfg)["rows"]}
    assert rows["ctx"]["clinical_scale"] == rows["no-ctx"]["clinical_scale"]
    assert rows["ctx"]["train_minutes"] == 0.0
    assert rows["ctx-op"]["offset"] >= 0 and rows["ctx-op"]["mel_recall"] >= rows["ctx"]["mel_recall"]
    with pytest.raises(EdgeskinError, match="unknown post"):
        Lever("bad", "clinical", post="clinical+tta", reuse="base")
    if rows["ctx"]["clinical_scale"] > 0:  # the site follows the label here: the context must show
        assert rows["ctx"]["balanced_accuracy"] > rows["no-ctx"]["balanced_accuracy"]
