"""Readers for the three layouts, and one-line errors for every kind of bad input."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from edgeskin.data.bundle import load_labelled
from edgeskin.data.images import load_image
from edgeskin.data.readers import read_dataset
from edgeskin.data.records import TASKS, get_task
from edgeskin.errors import EdgeskinError


def _img(path, size=(40, 30), colour=(200, 120, 90)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _manifest(path, rows, header=("path", "label", "lesion_id")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_ham_layout_finds_images_anywhere_below_root_at_any_resolution(tmp_path):
    # The official release splits images over two folders and ships them at 600x450.
    _img(tmp_path / "part_1" / "ISIC_1.jpg", (600, 450))
    _img(tmp_path / "part_2" / "ISIC_2.jpg", (600, 450))
    _manifest(tmp_path / "HAM10000_metadata.csv",
              [["HAM_1", "ISIC_1", "mel", "histo", "50", "male", "back"],
               ["HAM_1", "ISIC_2", "mel", "histo", "50", "male", "back"]],
              header=("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"))
    src = read_dataset(tmp_path)
    assert src.format == "ham10000" and not src.synthetic
    assert [s.lesion_id for s in src.samples] == ["HAM_1", "HAM_1"]
    assert src.samples[1].path.parent.name == "part_2"
    assert src.samples[0].age == 50.0 and src.samples[0].site == "back"
    data = load_labelled(str(tmp_path), get_task("binary"), (32, 48), require_all_classes=False, progress=False)
    assert data.pixels.shape == (2, 32, 48, 3) and data.targets.tolist() == [1, 1]


def test_csv_manifest_relative_paths_and_optional_columns(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png")
    m = _manifest(tmp_path / "list.csv", [["imgs/a.png", "nv", "L1"], ["imgs/b.png", "malignant", ""]])
    src = read_dataset(m)
    assert src.format == "manifest"
    assert [s.lesion_id for s in src.samples] == ["L1", "b"]  # no lesion_id: the image is its own group
    assert TASKS["binary"].target(src.samples[0].dx, "x") == 0
    assert TASKS["binary"].target(src.samples[1].dx, "x") == 1


def test_image_folder_tree(tmp_path):
    for label in ("mel", "nv"):
        for i in range(2):
            _img(tmp_path / label / f"img{i}.jpg")
    src = read_dataset(tmp_path)
    assert src.format == "folder"
    assert sorted(s.dx for s in src.samples) == ["mel", "mel", "nv", "nv"]
    assert len({s.image_id for s in src.samples}) == 4  # same file names in two folders stay distinct


def test_rgba_grayscale_16bit_and_exif_are_converted():
    import io

    def enc(img, fmt="PNG", **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    assert load_image(enc(Image.new("RGBA", (20, 10), (255, 0, 0, 255))), (10, 20), "x")[0, 0].tolist() == [255, 0, 0]
    assert load_image(enc(Image.new("L", (20, 10), 77)), (10, 20), "x").shape == (10, 20, 3)
    sixteen = Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16))
    assert load_image(enc(sixteen), (10, 20), "x").min() == 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: a portrait photo stored landscape
    rotated = load_image(enc(Image.new("RGB", (40, 20), (0, 0, 255)), "JPEG", exif=exif), (40, 20), "x")
    assert rotated.shape == (40, 20, 3)


@pytest.mark.parametrize("case", ["missing_path", "not_csv", "empty_csv", "missing_columns", "unknown_label",
                                  "missing_image", "duplicate_id", "empty_folder"])
def test_bad_input_is_one_line_error_naming_the_culprit(tmp_path, case):
    if case == "missing_path":
        target, needle = tmp_path / "nope", "nope"
    elif case == "not_csv":
        target, needle = _img(tmp_path / "x.jpg"), "x.jpg"
    elif case == "empty_csv":
        (tmp_path / "e.csv").write_text("")
        target, needle = tmp_path / "e.csv", "e.csv"
    elif case == "missing_columns":
        target, needle = _manifest(tmp_path / "m.csv", [["a.jpg"]], header=("file",)), "label"
    elif case == "unknown_label":
        _img(tmp_path / "a.jpg")
        target, needle = _manifest(tmp_path / "m.csv", [["a.jpg", "melanomaa", ""]]), "melanomaa"
    elif case == "missing_image":
        target, needle = _manifest(tmp_path / "m.csv", [["gone.jpg", "nv", ""]]), "gone.jpg"
    elif case == "duplicate_id":
        _img(tmp_path / "a" / "x.jpg")
        _img(tmp_path / "b" / "x.jpg")
        target, needle = _manifest(tmp_path / "m.csv", [["a/x.jpg", "nv", ""], ["b/x.jpg", "nv", ""]]), "'x'"
    else:
        (tmp_path / "empty").mkdir()
        target, needle = tmp_path / "empty", "no images"
    with pytest.raises(EdgeskinError) as err:
        load_labelled(str(target), get_task("multiclass"), (16, 16), require_all_classes=False, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and needle in msg


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "not_image", "empty_file"])
def test_undecodable_files_name_the_file(tmp_path, kind):
    good = _img(tmp_path / "good.jpg", (64, 48))
    bad = tmp_path / "bad.jpg"
    data = good.read_bytes()
    bad.write_bytes({"corrupt": data[:20] + b"\x00" * 200 + data[220:], "truncated": data[: len(data) // 2],
                     "not_image": b"%PDF-1.4 not an image", "empty_file": b""}[kind])
    m = _manifest(tmp_path / "m.csv", [["good.jpg", "nv", ""], ["bad.jpg", "nv", ""]])
    with pytest.raises(EdgeskinError, match="bad.jpg"):
        load_labelled(str(m), get_task("multiclass"), (16, 16), require_all_classes=False, progress=False)


def test_empty_class_is_refused_for_training(tmp_path):
    _img(tmp_path / "nv" / "a.jpg")
    with pytest.raises(EdgeskinError, match=r"no images.*--task binary"):
        load_labelled(str(tmp_path), get_task("binary"), (16, 16), progress=False)


def test_synthetic_name_reads_embedded_default():
    src = read_dataset("synthetic")
    assert src.synthetic and len(src.samples) == 1400
    shutil.rmtree(src.root)  # keep the session cache small


def test_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    import edgeskin.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100)  # a 40x30 image stands in for a decompression bomb
    path = _img(tmp_path / "big.png")
    with pytest.raises(EdgeskinError, match=r"big.png is 40x30 pixels, above the 100 limit"):
        images.load_image(path.read_bytes(), (16, 16), str(path))
