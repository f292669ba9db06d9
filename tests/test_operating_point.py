"""The operating point (`edgeskin export --min-recall R`): the smallest melanoma logit offset that
reaches recall R on validation, written into the exported card and applied by edge_runtime."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import one_line_error, run_cli
from edgeskin.errors import EdgeskinError
from edgeskin.export.calibrate import operating_point

LABELS = ("bcc", "mel", "nv")


def _recall(logits, y, offsets):
    return float(np.mean((logits + offsets)[y == 1].argmax(1) == 1))


@pytest.mark.parametrize("r", [0.5, 0.8, 1.0])
def test_smallest_offset_that_reaches_the_recall(r):
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(300, 3)), rng.integers(0, 3, 300)
    logits[y == 1, 1] -= 0.5  # melanoma under-called, as on HAM10000
    point = operating_point(logits, y, LABELS, "mel", r, "validation")
    off = np.asarray(point["offsets"])
    assert off[0] == off[2] == 0 and off[1] > 0
    assert _recall(logits, y, off) >= r > _recall(logits, y, off - [0, 2e-4, 0])  # smallest, to 1e-4
    assert point["validation_before"]["recall"] == round(_recall(logits, y, 0), 4) < r
    assert point["validation_after"]["recall"] == round(_recall(logits, y, off), 4)
    assert point["label"] == "mel" and point["min_recall"] == r and point["fitted_on"] == "validation"


def test_recall_already_met_needs_no_offset_and_no_melanoma_is_an_error():
    logits = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = np.array([1, 0, 1])
    assert operating_point(logits, y, LABELS, "mel", 1.0, "v")["offsets"] == [0.0, 0.0, 0.0]
    with pytest.raises(EdgeskinError, match="no 'mel' images"):
        operating_point(logits, np.array([0, 0, 2]), LABELS, "mel", 0.7, "validation split")


def test_export_writes_it_and_edge_runtime_decides_by_it(exported_tiny, synth_root, tmp_path):
    """The same weights exported with and without --min-recall: the device's logits differ by
    exactly the card's offsets, and its label is the argmax of the offset logits."""
    pytest.importorskip("onnxruntime")
    from edge_runtime import Classifier
    from edgeskin.config import ExportConfig
    from edgeskin.data.readers import read_dataset
    from edgeskin.export import export

    run = tmp_path / "run"
    shutil.copytree(exported_tiny["run"], run)
    result = export(ExportConfig(run=str(run), target="onnx", precision="fp32", min_recall=1.0,
                                 allow_degraded=True))
    card = json.loads(result.card_json.read_text())["model_card"]
    point, k = card["operating_point"], card["labels"].index("mel")
    assert point["validation_after"]["recall"] == 1.0 and point["offsets"][k] > 0
    assert [o for i, o in enumerate(point["offsets"]) if i != k] == [0.0] * (len(card["labels"]) - 1)
    assert "operating point" not in json.dumps(card["calibration"])  # calibration is its own entry
    with_op, plain = Classifier.load(result.artifact), Classifier.load(exported_tiny["onnx_fp32"])
    assert with_op.artifact.describe["operating_point"] == {"label": "mel", "min_recall": 1.0}
    assert plain.describe["networks"] == 1  # one trained run (an `edgeskin ensemble` file says its count)
    images = sorted({s.dx: s.path for s in read_dataset(synth_root).samples}.values())  # one per class
    for path in images:
        rgb = Image.open(path).convert("RGB")
        a, b = with_op.infer(rgb, with_cam=False)[0], plain.infer(rgb, with_cam=False)[0]
        np.testing.assert_allclose(a, b + np.asarray(point["offsets"]), atol=1e-5)
        assert with_op.predict(path).label == card["labels"][int(np.argmax(b + point["offsets"]))]


def test_bad_min_recall_is_one_line(exported_tiny):
    run = exported_tiny["run"]
    assert "--min-recall 1.5" in one_line_error(run_cli("export", run, "--min-recall", "1.5"))
    line = one_line_error(run_cli("export", run, "--target", "mediapipe", "--min-recall", "0.7"))
    assert "MediaPipe" in line and "--target tflite" in line


def test_card_offsets_that_do_not_match_its_labels_are_refused(tmp_path):
    from edge_runtime.artifact import Artifact
    from edge_runtime.errors import EdgeRuntimeError

    def artifact(point):
        return Artifact(tmp_path / "m.tflite", {"labels": ["mel", "nv", "bkl"], "operating_point": point},
                        None, "0" * 64, False)
    assert artifact(None).offsets == [0.0, 0.0, 0.0]  # no operating point: plain argmax
    assert artifact({"offsets": [0.5, 0.0, 0.0]}).offsets == [0.5, 0.0, 0.0]
    with pytest.raises(EdgeRuntimeError, match=r"m\.tflite: its card's operating point has 2 offsets for 3 labels"):
        artifact({"offsets": [0.5, 0.0]}).offsets
