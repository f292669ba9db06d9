import json

import numpy as np
from PIL import Image

from edgeskin.data import synthetic
from edgeskin.data.readers import read_dataset
from edgeskin.data.records import HAM_LABELS


def test_render_is_seeded_and_mask_is_exact_lesion():
    a, ma = synthetic.render_lesion("mel", 123)
    b, mb = synthetic.render_lesion("mel", 123)
    c, _ = synthetic.render_lesion("mel", 124)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)
    assert a.shape == (150, 200, 3) and ma.shape == (150, 200) and ma.dtype == bool
    assert 0.02 < ma.mean() < 0.6  # a lesion, not the whole frame
    # The lesion differs in colour from the skin around it: mask marks what was painted.
    inside, outside = a[ma].mean(0), a[~ma].mean(0)
    assert np.abs(inside - outside).sum() > 30


def test_classes_follow_visible_traits():
    """Melanomas are larger and more irregular than naevi on average (ABCD rule)."""
    def stats(label):
        areas, ragged = [], []
        for s in range(30):
            _, m = synthetic.render_lesion(label, 1000 + s)
            area = m.sum()
            perim = (m ^ np.roll(m, 1, 0)).sum() + (m ^ np.roll(m, 1, 1)).sum()
            areas.append(area)
            ragged.append(perim / np.sqrt(area))
        return np.mean(areas), np.mean(ragged)

    nv_area, nv_ragged = stats("nv")
    mel_area, mel_ragged = stats("mel")
    assert mel_area > 1.5 * nv_area
    assert mel_ragged > nv_ragged


def test_generated_dataset_reads_as_ham_layout_and_is_labelled_synthetic(synth_root):
    src = read_dataset(synth_root)
    assert src.format == "ham10000" and src.synthetic
    assert len(src.samples) == 240
    assert {s.dx for s in src.samples} == set(HAM_LABELS)
    marker = json.loads((synth_root / synthetic.MARKER_FILE).read_text())
    assert marker["synthetic"] is True and "SYNTHETIC" in marker["note"]
    lesions = [s.lesion_id for s in src.samples]
    assert len(set(lesions)) < len(lesions)  # some lesions have two views, as in HAM10000
    s = src.samples[0]
    img = Image.open(s.path)
    mask = Image.open(synth_root / synthetic.MASK_DIR / f"{s.image_id}_segmentation.png")
    assert img.size == mask.size == (200, 150)


def test_non_square_size(tmp_path):
    out = synthetic.generate(tmp_path / "d", synthetic.SyntheticSpec(n_images=3, seed=0, width=64, height=40))
    assert Image.open(next((out / "images").iterdir())).size == (64, 40)
