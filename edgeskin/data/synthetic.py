"""The embedded default dataset: seeded, synthetic dermoscopy-like images with exact masks.

SYNTHETIC DATA, for first runs and tests only: it says nothing about real lesions. Each of the
seven HAM10000 classes is drawn with the visible traits dermatologists use (ABCD rule and
class-specific structures), varied per image so the classes overlap and the task is learnable
but not trivial:

| class | shape, border            | colour and structures                               |
|-------|--------------------------|-----------------------------------------------------|
| nv    | small, round, smooth      | one even brown                                      |
| mel   | large, asymmetric, ragged | variegated: dark brown, black, blue-grey, red       |
| bkl   | medium, sharp border      | tan, bright milia-like dots and dark fissures       |
| bcc   | medium, lobulated         | pink-pearly, red branching vessels, blue-grey nests |
| akiec | medium, blurred border    | red-pink with white-yellow scale                    |
| df    | small, round              | brown ring around a white centre                    |
| vasc  | small-medium              | red-purple lacunae                                  |

Every image also gets its own skin tone, low-frequency texture, hairs and a dermoscope vignette.
The dataset is written in the HAM10000 layout (metadata CSV with lesion_id, images/, masks) so the
same reader serves real and synthetic data; some lesions get a second, re-shot image, as in HAM.
`labels.csv` lists the same images as path,label,lesion_id, the CSV edge_runtime's tools read.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from edgeskin.data.records import HAM_LABELS

GENERATOR_VERSION = 2
MARKER_FILE = "edgeskin_synthetic.json"  # readers flag a dataset as synthetic when this exists
METADATA_FILE = "synthetic_metadata.csv"
# The same labels as the device tools read them (`edge_runtime benchmark/calibrate --data`: path,label).
LABELS_FILE = "labels.csv"
MASK_DIR = "segmentations"

# Class mix: imbalanced like HAM10000 (nv dominates) but with every class learnable.
CLASS_MIX = {"nv": 0.34, "mel": 0.14, "bkl": 0.14, "bcc": 0.11, "akiec": 0.10, "df": 0.085, "vasc": 0.085}
SECOND_VIEW_FRACTION = 0.2
# Naevi that look dysplastic and melanomas that look early, so nv and mel overlap as in reality.
ATYPICAL_FRACTION = 0.3
# Lesions whose colours and structures mimic a look-alike class (the shape still follows the true
# class), the confusions dermatologists know: so no model reaches 100% on this set.
MIMIC_FRACTION = 0.25
MIMICS = {"nv": "mel", "mel": "bkl", "bkl": "mel", "bcc": "akiec", "akiec": "bcc", "df": "nv", "vasc": "bcc"}  # lesions photographed twice, to exercise lesion-grouped splits


@dataclass(frozen=True)
class SyntheticSpec:
    n_images: int = 1400
    seed: int = 0
    width: int = 200  # HAM10000's downsampled 200x150, so the demo is non-square like real data
    height: int = 150

    def cache_name(self) -> str:
        return f"synthetic-v{GENERATOR_VERSION}-n{self.n_images}-s{self.seed}-{self.width}x{self.height}"


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """Smooth noise in [-1, 1]: a small random grid upsampled bilinearly."""
    grid = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR)
    return np.asarray(img)


def _lesion_mask(rng, label, atypical, h, w, yy, xx) -> tuple[np.ndarray, float, float, float]:
    """Polar-radius shape r(theta); asymmetry and ragged borders grow with the class's traits."""
    size = {"nv": 0.22, "mel": 0.36, "bkl": 0.28, "bcc": 0.27, "akiec": 0.28, "df": 0.18, "vasc": 0.22}[label]
    size *= {"nv": 1.3, "mel": 0.7}.get(label, 1.0) if atypical else 1.0
    base = min(h, w) * size * rng.uniform(0.8, 1.2)
    asym = {"mel": 0.35, "bkl": 0.15, "bcc": 0.2, "akiec": 0.2}.get(label, 0.05) * rng.uniform(0.5, 1.3)
    asym *= {"nv": 4.0, "mel": 0.5}.get(label, 1.0) if atypical else 1.0
    ragged = {"mel": 0.12, "bcc": 0.08, "akiec": 0.07, "bkl": 0.04}.get(label, 0.015) * rng.uniform(0.5, 1.4)
    cy = h / 2 + rng.uniform(-0.12, 0.12) * h
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.hypot(yy - cy, xx - cx)
    radius = 1 + asym * np.cos(theta - rng.uniform(0, 2 * np.pi))
    radius += 0.12 * rng.uniform(0, 1) * np.cos(2 * (theta - rng.uniform(0, np.pi)))  # ellipticity
    for k in range(3, 9):
        radius += ragged * rng.normal() / np.sqrt(k - 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r < base * radius, cy, cx, base


def _paint(rng, label, atypical, cy, cx, base, yy, xx, h, w) -> np.ndarray:
    """Colour the lesion according to its class; returns the per-pixel lesion colour (RGB floats)."""
    tex = _lowfreq(rng, h, w, cells=10)
    col = np.empty((h, w, 3), np.float32)
    brown = np.array([120, 75, 45]) * rng.uniform(0.8, 1.15)
    r_norm = np.hypot(yy - cy, xx - cx) / base
    if label == "nv" and not atypical:
        col[:] = brown + 10 * tex[..., None]
    elif label == "nv":  # dysplastic-looking naevus: two browns, larger, less symmetric
        zones = _lowfreq(rng, h, w, cells=5) > 0
        col[:] = np.where(zones[..., None], brown, brown * 0.6) + 10 * tex[..., None]
    elif label == "mel":
        palette = np.array([[70, 40, 25], [25, 18, 15], [95, 100, 125], [150, 60, 55], [120, 75, 45]], np.float32)
        if atypical:  # early melanoma: smaller, only browns and black
            palette = palette[[0, 1, 4, 0, 4]]
        zones = np.digitize(_lowfreq(rng, h, w, cells=7), [-0.45, -0.15, 0.15, 0.45])
        col[:] = palette[rng.permutation(5)][zones] + 12 * tex[..., None]
    elif label == "bkl":
        col[:] = np.array([165, 125, 85]) * rng.uniform(0.85, 1.1) + 15 * tex[..., None]
        fissure = np.abs(np.sin(xx / rng.uniform(3, 6) + 3 * tex)) < 0.12
        col[fissure] *= 0.6
        for _ in range(rng.integers(4, 10)):  # milia-like cysts
            py, px = cy + rng.normal(0, base / 2.5), cx + rng.normal(0, base / 2.5)
            col[np.hypot(yy - py, xx - px) < rng.uniform(1.5, 3)] = (235, 230, 200)
    elif label == "bcc":
        col[:] = np.array([215, 150, 150]) * rng.uniform(0.9, 1.05) + 10 * tex[..., None]
        for _ in range(rng.integers(1, 4)):  # blue-grey ovoid nests
            py, px = cy + rng.normal(0, base / 3), cx + rng.normal(0, base / 3)
            col[np.hypot((yy - py) / 1.5, xx - px) < rng.uniform(3, 6)] = (95, 100, 125)
    elif label == "akiec":
        col[:] = np.array([200, 95, 85]) * rng.uniform(0.9, 1.1) + 12 * tex[..., None]
        scale = _lowfreq(rng, h, w, cells=25) > rng.uniform(0.25, 0.5)
        col[scale] = (235, 220, 170)
    elif label == "df":
        ring = np.clip((r_norm - 0.2) / 0.5, 0, 1)
        col[:] = (1 - ring[..., None]) * np.array([235, 225, 210]) + ring[..., None] * brown
    elif label == "vasc":
        col[:] = np.array([150, 40, 60]) * rng.uniform(0.85, 1.1)
        lac = _lowfreq(rng, h, w, cells=14) > 0.1
        col[lac] = np.array([90, 20, 70]) * rng.uniform(0.8, 1.2)
    return np.clip(col, 0, 255)


def _draw_vessels(rng, canvas: Image.Image, cy, cx, base) -> None:
    """Arborising red vessels (bcc): random branching polylines."""
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 5)):
        y, x, ang = cy + rng.normal(0, base / 3), cx + rng.normal(0, base / 3), rng.uniform(0, 2 * np.pi)
        for _ in range(rng.integers(4, 9)):
            ny, nx = y + np.sin(ang) * base / 4, x + np.cos(ang) * base / 4
            draw.line([(x, y), (nx, ny)], fill=(175, 25, 35), width=1)
            y, x, ang = ny, nx, ang + rng.normal(0, 0.7)


def _draw_hairs(rng, canvas: Image.Image, h: int, w: int) -> None:
    draw = ImageDraw.Draw(canvas)
    shade = int(rng.uniform(20, 60))
    for _ in range(rng.poisson(3)):
        pts, y, x, ang = [], rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            pts.append((x, y))
            x, y, ang = x + 9 * np.cos(ang), y + 9 * np.sin(ang), ang + rng.normal(0, 0.15)
        draw.line(pts, fill=(shade, shade - 5 if shade > 5 else 0, 0), width=int(rng.integers(1, 3)))


def render_lesion(label: str, seed: int, h: int = 150, w: int = 200, view: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxWx3) and its exact lesion mask (bool HxW). `view` re-shoots the same lesion."""
    rng = np.random.default_rng(seed)  # lesion identity: shape and colours
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    atypical = rng.uniform() < ATYPICAL_FRACTION
    mask, cy, cx, base = _lesion_mask(rng, label, atypical, h, w, yy, xx)
    look = MIMICS[label] if rng.uniform() < MIMIC_FRACTION else label
    colour = _paint(rng, look, atypical, cy, cx, base, yy, xx, h, w)
    shot = np.random.default_rng([seed, view + 1])  # the photograph: skin, light, hairs, pose
    skin = np.array([228, 185, 160]) * shot.uniform(0.75, 1.05) + shot.normal(0, 6, 3)
    img = skin + 10 * _lowfreq(shot, h, w)[..., None]
    alpha = mask.astype(np.float32)
    if label == "akiec":  # ill-defined border: soft alpha, but the mask stays the lesion itself
        alpha = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))) / 255
    img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if look == "bcc":
        _draw_vessels(rng, canvas, cy, cx, base)
    _draw_hairs(shot, canvas, h, w)
    img = np.asarray(canvas).astype(np.float32)
    vignette = 1 - shot.uniform(0.2, 0.55) * (np.hypot((yy - h / 2) / h, (xx - w / 2) / w) / 0.7) ** 3
    img = img * np.clip(vignette, 0, 1)[..., None] * shot.uniform(0.85, 1.1)
    img += shot.normal(0, shot.uniform(2, 8), img.shape)  # sensor noise
    img = np.clip(img, 0, 255).astype(np.uint8)
    if shot.uniform() < 0.5:  # defocus
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(shot.uniform(0.5, 2.0))))
    if view:  # a re-shot lesion: flipped/rotated like a second dermoscope placement
        k = int(shot.integers(0, 2)) * 2
        img, mask = np.rot90(img, k), np.rot90(mask, k)
        if shot.uniform() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(mask)


def generate(out_dir: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write the dataset in the HAM10000 layout under `out_dir` (atomically: a temp dir, then rename)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / MASK_DIR).mkdir()
    rng = np.random.default_rng(spec.seed)
    labels = list(CLASS_MIX)
    rows, lesion = [], 0
    while len(rows) < spec.n_images:
        label = labels[rng.choice(len(labels), p=list(CLASS_MIX.values()))]
        lesion_seed = int(rng.integers(0, 2**31))
        views = 2 if rng.uniform() < SECOND_VIEW_FRACTION else 1
        for view in range(min(views, spec.n_images - len(rows))):
            image_id = f"SYN_{len(rows):07d}"
            img, mask = render_lesion(label, lesion_seed, spec.height, spec.width, view)
            Image.fromarray(img).save(tmp / "images" / f"{image_id}.jpg", quality=92)
            Image.fromarray(mask).save(tmp / MASK_DIR / f"{image_id}_segmentation.png")
            rows.append({"lesion_id": f"SYNL_{lesion:07d}", "image_id": image_id, "dx": label,
                         "dx_type": "synthetic", "age": "", "sex": "", "localization": ""})
        lesion += 1
    with open(tmp / METADATA_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(tmp / LABELS_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "lesion_id"])
        writer.writerows([f"images/{r['image_id']}.jpg", r["dx"], r["lesion_id"]] for r in rows)
    meta = {"synthetic": True, "generator_version": GENERATOR_VERSION, **asdict(spec),
            "note": "SYNTHETIC dermoscopy-like images generated by edgeskin; not real patient data"}
    (tmp / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def ensure_synthetic(cache_root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """The dataset for `spec`, generated once into `cache_root` and reused afterwards."""
    out = Path(cache_root) / spec.cache_name()
    if not (out / MARKER_FILE).is_file():
        generate(out, spec)
    return out


assert set(CLASS_MIX) == set(HAM_LABELS)
