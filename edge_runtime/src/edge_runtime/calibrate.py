"""`edge_runtime calibrate MODEL --data DATA`: run the model on a clinic's labelled photos and write
a site profile (edge_runtime.site says what it holds and how it is fitted). Its own module because
it runs the classifier, and the classifier reads profiles: site.py stays below both."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bench import label_indices, labelled_images
from edge_runtime.classifier import Classifier
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.preprocess import open_rgb
from edge_runtime.site import check_min_recall, fit_profile, write_profile


def calibrate(model, data, out, min_recall: float | None = None, site: str | None = None, threads: int = 4,
              verify: bool = True) -> dict:
    """Run the model on the site's labelled photos (a CSV path,label[,age,sex,site,lesion_id] or class
    folders), fit a profile and write it to `out`. With a clinical prior in the card, the
    thresholds are fitted on logits + prior, as predictions will be decided. Returns the profile as written."""
    out, data = Path(out), Path(data)
    check_min_recall(min_recall)  # before running every photo
    if out.suffix != ".json":
        raise EdgeRuntimeError(f"--out {out} should be a .json file, e.g. {out.with_suffix('.json').name}")
    if not out.parent.is_dir():
        raise EdgeRuntimeError(f"--out {out}: folder {out.parent} does not exist; create it first")
    clf = Classifier.load(model, threads, verify)
    items = labelled_images(data)
    targets = label_indices(clf, items, data)
    logits = np.stack([clf.raw(open_rgb(it.path), False, it.context)[0] for it in items]).astype(np.float64)
    # A partly filled lesion_id column still groups the photos it names (it used to be ignored).
    lesions = [it.lesion for it in items] if any(it.lesion for it in items) else None
    profile = fit_profile(logits, targets, clf.artifact.card, min_recall, site or data.stem, str(data), lesions)
    return write_profile(out, profile, clf.artifact.path.name, clf.artifact.sha256)
