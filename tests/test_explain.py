"""Explanations: every method runs, the CAM of a trained tiny model lands on the lesion (known
synthetic masks), and the explain command writes overlays a person can look at."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error, run_cli
from edgeskin.card import ModelCard
from edgeskin.config import TrainConfig
from edgeskin.data.readers import read_dataset
from edgeskin.data.synthetic import MASK_DIR
from edgeskin.data.transforms import normalize
from edgeskin.train.runs import load_run_model
from edgeskin.explain.maps import METHODS, energy_in_mask, heatmaps, pointing_game
from edgeskin.train import train

SIZE = (48, 64)


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    cfg = TrainConfig(data=str(synth_root), backbone="edgeskin_cnn_s", input_size=SIZE, epochs=10, batch_size=16,
                      lr=3e-3, patience=20, device="cpu", project=str(tmp_path_factory.mktemp("runs")), name="x")
    run = train(cfg).run_dir
    card = ModelCard.load(run)
    return run, card, load_run_model(run, card, torch.device("cpu"))


def _inputs(synth_root, card, n):
    from edgeskin.data.images import load_image

    samples = read_dataset(synth_root).samples[:n]
    pixels = np.stack([load_image(s.path.read_bytes(), SIZE, str(s.path)) for s in samples])
    masks = np.stack([np.asarray(Image.open(synth_root / MASK_DIR / f"{s.image_id}_segmentation.png")
                                 .convert("L").resize((SIZE[1], SIZE[0]), Image.NEAREST)) > 127 for s in samples])
    pre = card.preprocessing
    x = normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.tensor(pre.mean), torch.tensor(pre.std))
    return x, masks


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_unit_range_maps(trained, synth_root, method):
    _, card, model = trained
    x, _ = _inputs(synth_root, card, 2)
    maps = heatmaps(model, x, np.array([0, 4]), method)
    assert maps.shape == (2, *SIZE) and maps.min() >= 0 and maps.max() <= 1 + 1e-6


@pytest.mark.parametrize("method", ["gradcam", "edge"])
def test_cam_of_trained_model_puts_energy_on_the_lesion(trained, synth_root, method):
    _, card, model = trained
    x, masks = _inputs(synth_root, card, 120)
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    maps = heatmaps(model, x, pred, method)
    energy = np.nanmean([energy_in_mask(m, k) for m, k in zip(maps, masks)])
    uniform = masks.mean()  # what a uniform map would score
    hits = np.mean([pointing_game(m, k) for m, k in zip(maps, masks)])
    assert energy > uniform + 0.05, (energy, uniform)
    assert hits > uniform + 0.1, (hits, uniform)


def test_localisation_metrics_on_known_maps():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    inside = mask.astype(float)
    assert energy_in_mask(inside, mask) == 1.0 and pointing_game(inside, mask)
    assert energy_in_mask(np.ones((4, 4)), mask) == 0.25
    assert not pointing_game(1 - inside, mask)


def test_explain_cli_writes_overlays_and_grid(trained, synth_root, tmp_path):
    run, _, _ = trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((synth_root / "images").iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = run_cli("explain", run, folder, "--method", "gradcam++", check=True).stdout
    assert out.count("->") == 3 and "grid:" in out
    overlays = sorted((run / "explain" / "gradcam++").glob("SYN_*.png"))
    assert len(overlays) == 3 and Image.open(overlays[0]).size == (200, 150)  # at the photo's resolution
    assert (run / "explain" / "gradcam++" / "grid.png").stat().st_size > 0
    single = run_cli("explain", run, sorted(folder.iterdir())[0], "--target-class", "mel", check=True).stdout
    assert "map for mel" in single and "grid:" not in single


def test_explain_bad_input(trained, tmp_path):
    run, _, _ = trained
    assert "choose one of" in one_line_error(run_cli("explain", run, tmp_path, "--method", "gradcamm"))
    assert "no images" in one_line_error(run_cli("explain", run, tmp_path))
    assert "does not exist" in one_line_error(run_cli("explain", run, tmp_path / "nope.jpg"))
    img = tmp_path / "a.png"
    Image.new("RGB", (30, 20)).save(img)
    assert "melanoma" in one_line_error(run_cli("explain", run, img, "--target-class", "melanoma"))


def test_quality_report_scores_methods_and_exported_cam_heads(exported_tiny):
    """Localisation against the synthetic masks, ROAD and confidence change per method, and the
    exported files' CAM heads beside torch Grad-CAM."""
    from edgeskin.explain.quality import QualityConfig
    from edgeskin.explain.quality_report import cam_quality_report

    run = exported_tiny["run"]
    md = cam_quality_report(QualityConfig(run=str(run), images=40, road_images=8,
                                          methods=("gradcam", "gradcam++", "edge")))
    result = json.loads(md.with_name("report.json").read_text())
    methods = result["methods"]
    fp32, int8 = "edge: edgeskin_cnn_s_fp32.tflite", "edge: edgeskin_cnn_s_int8.tflite"
    assert {"gradcam", "gradcam++", "edge", fp32, int8} <= set(methods)
    assert methods["gradcam"]["overall"]["energy_in_mask"] > result["uniform_energy_in_mask"]
    assert methods[fp32]["overall"]["pearson_vs_gradcam"] > 0.99  # the exported head is Grad-CAM
    assert methods[fp32]["overall"]["top20_iou_vs_gradcam"] > 0.9
    assert 0.5 < methods[int8]["overall"]["pearson_vs_gradcam"] <= 1.0
    assert len(result["per_image"]["gradcam"]["road"]) == 8
    assert len(result["per_image"]["edge"]["energy_in_mask"]) == result["n_images"] > 8  # the whole test split (34)
    assert set(methods["gradcam"]["per_class"]) <= {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert "uniform map" in md.read_text() and md.with_name("localisation.png").is_file()


def test_quality_report_bad_input(exported_tiny):
    run = exported_tiny["run"]
    assert "--method" in one_line_error(run_cli("explain", run, "--quality", "--methods", "gradcam,magic"))
    assert "--split" in one_line_error(run_cli("explain", run, "--quality", "--split", "train"))
    assert "image or a folder" in one_line_error(run_cli("explain", run))
