"""`Classifier.load(path).predict(image) -> Prediction`: preprocessing, the interpreter, the
card's calibrated softmax, malignant risk, a next-step line and the heatmap."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime.artifact import Artifact, load_artifact
from edge_runtime.backends import open_backend
from edge_runtime.clinical import Context
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.heatmap import overlay, to_heatmap
from edge_runtime.preprocess import CONSTANCY, ImageLike, model_pixels, normalize, open_rgb
from edge_runtime.site import read_profile

CLASSIFIER_TASKS = ("multiclass", "binary")  # edgeskin's classification tasks (edgeskin.data.records.TASKS)
DISCLAIMER = ("Decision support only, not a diagnosis. A dermatologist must examine any lesion that "
              "changes, bleeds, itches or worries the patient, whatever this result says.")


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    confidence: float  # calibrated top probability
    probabilities: dict  # label -> calibrated probability, highest first
    malignant_risk: float  # summed probability of the card's malignant classes
    uncertain: bool  # top probability below the card's threshold, or an out-of-distribution image
    out_of_distribution: bool  # energy score below the card's threshold: unlike the training images
    next_step: str
    heatmap: np.ndarray | None = field(repr=False, default=None)  # [0, 1] at the photo's size
    image: np.ndarray | None = field(repr=False, default=None)  # the RGB photo (uint8)

    def overlay(self) -> Image.Image:
        return overlay(self.image, self.heatmap)

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 4),
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
                "malignant_risk": round(self.malignant_risk, 4), "uncertain": self.uncertain,
                "out_of_distribution": self.out_of_distribution,
                "next_step": self.next_step}


def next_step(risk: float, uncertain: bool, calibration: dict, ood: bool = False) -> str:
    refer = calibration.get("refer_at_risk")
    if refer is not None and risk >= refer:
        sens = calibration.get("refer_sensitivity", 0.9)
        where = calibration.get("refer_fitted_where", "in validation")
        return (f"Refer to a dermatologist: malignant risk {risk:.0%} is at or above the referral threshold "
                f"{refer:.0%} (set to catch {sens:.0%} of malignant lesions {where}).")
    if ood:
        return ("Unusual image for this model (not like the dermoscopy photos it learned from): check it is a "
                "dermoscopic photo of one lesion, or refer to a dermatologist.")
    if uncertain:
        return "Uncertain result: retake the photo (in focus, lesion centred) or refer to a dermatologist."
    return "Below the referral threshold: routine monitoring; refer if the lesion changes."


class Classifier:
    def __init__(self, artifact: Artifact, backend, site: dict | None = None):
        """`site`: a profile from `edge_runtime calibrate` (edge_runtime.site), whose operating
        point and referral threshold replace the card's."""
        self.artifact, self.backend, self.site = artifact, backend, site
        self.calibration = dict(artifact.calibration)
        self.offsets = np.asarray(artifact.offsets, np.float32)
        if site is not None:
            if site.get("operating_point") is not None:
                self.offsets = np.asarray(site["operating_point"]["offsets"], np.float32)
            self.calibration.update({k: site["calibration"][k] for k in ("refer_at_risk", "refer_sensitivity")},
                                    refer_fitted_where=f"at site {site['site']!r}")
        self.temperature = float(self.calibration.get("temperature") or 1.0)
        self.clinical = artifact.clinical
        self._malignant = [artifact.labels.index(k) for k in artifact.malignant_labels]

    @classmethod
    def load(cls, path, threads: int = 4, verify: bool = True, site=None) -> "Classifier":
        artifact = load_artifact(Path(path), verify)
        if artifact.color_constancy not in CONSTANCY:  # fail at load, not on the first photo
            raise EdgeRuntimeError(f"{artifact.path}: its card asks for color_constancy "
                                   f"{artifact.color_constancy!r}; this edge_runtime knows {list(CONSTANCY)} "
                                   "(upgrade edgeskin-runtime)")
        task = artifact.card.get("task", "multiclass")
        if task not in CLASSIFIER_TASKS:
            raise EdgeRuntimeError(f"{artifact.path.name} is a {task!r} model; predict, benchmark and serve need a "
                                   f"classifier (task {' or '.join(CLASSIFIER_TASKS)})")
        backend = open_backend(artifact.path, threads)
        if isinstance(backend.n_scores, int) and backend.n_scores != len(artifact.labels):
            raise EdgeRuntimeError(f"{artifact.path.name} outputs {backend.n_scores} class scores but its card "
                                   f"lists {len(artifact.labels)} labels: the card belongs to another model; copy "
                                   "the card JSON exported with this file")
        profile = None if site is None else read_profile(site, artifact.path.name, artifact.sha256,
                                                         len(artifact.labels))
        return cls(artifact, backend, profile)

    @property
    def describe(self) -> dict:
        """The artifact's description, with the site profile's name and operating point when one is used."""
        d = {**self.artifact.describe, "site": None}
        if self.site is not None:
            point = self.site.get("operating_point")
            d.update(site=self.site["site"], operating_point=d["operating_point"] if point is None else
                     {"label": point["label"], "min_recall": point["min_recall"], "fitted_on": self.site["fitted_on"]})
        return d

    @property
    def has_cam(self) -> bool:
        return getattr(self.backend, "cam", True) is not None

    def infer(self, rgb: Image.Image, with_cam: bool = True, context: Context | None = None):
        """Scores (logits, plus the card's operating-point offsets, which decide the label) and CAM
        for one RGB image: the part a benchmark times."""
        logits, cam = self.raw(rgb, with_cam, context)
        return logits + self.offsets, cam

    def raw(self, rgb: Image.Image, with_cam: bool = False, context: Context | None = None):
        """The model's logits, plus the clinical prior when the card has one (no operating-point
        offsets), and CAM: what a site profile is fitted on. Missing context counts as unknown."""
        a = self.artifact
        if self.clinical is not None and context is not None:
            self.clinical.check(context)  # a bad value fails before the model runs
        x = normalize(model_pixels(rgb, a.input_size, a.color_constancy)[None], a.mean, a.std)
        logits, cam = self.backend.run(x, with_cam)
        if self.clinical is not None:
            logits = logits + self.clinical.log_prior(context or Context())
        return logits, cam

    def predict(self, image: ImageLike, with_cam: bool = True, target: str | None = None,
                context: Context | None = None) -> Prediction:
        """`target`: the class whose heatmap to draw (default: the predicted one). `context`: the
        patient's age, sex and body site, used when the card has a clinical prior (ignored otherwise)."""
        rgb = open_rgb(image)
        logits, cam = self.infer(rgb, with_cam, context)
        z = logits / self.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        labels = self.artifact.labels
        k = int(p.argmax())
        risk = float(p[self._malignant].sum()) if self._malignant else 0.0
        cal = self.calibration
        energy = self.temperature * (z.max() + np.log(np.exp(z - z.max()).sum()))
        ood = cal.get("ood_below") is not None and bool(energy < cal["ood_below"])
        uncertain = bool(p[k] < float(cal.get("uncertain_below") or 0.0)) or ood
        heat = None
        if target is not None and target not in labels:
            raise EdgeRuntimeError(f"unknown target class {target!r}; choose one of {labels}")
        if cam is not None:
            shown = labels.index(target) if target is not None else k
            heat = to_heatmap(cam[shown], (rgb.height, rgb.width))
        ranked = {labels[i]: float(p[i]) for i in np.argsort(-p)}
        return Prediction(labels[k], k, float(p[k]), ranked, risk, uncertain, ood,
                          next_step(risk, uncertain, cal, ood), heat, np.asarray(rgb))
