"""Steps 0-2 of a training run, shared by `train`, `pretrain`, `chain` and the ablation: check the
options without touching the data, then load the images and make (or read) the lesion-grouped split.
Its own module so that `pretrain` can use it without importing the training loop, which imports
`pretrain` for its leak check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeskin.config import TrainConfig
from edgeskin.data.bundle import LabelledImages, load_labelled
from edgeskin.data.records import get_task
from edgeskin.data.split import Split, make_split, read_manifest, source_holdout_split, source_strata
from edgeskin.errors import EdgeskinError


# Step 0: options that can be checked without touching the data --------------------------------

def check_options(cfg: TrainConfig) -> None:
    """Fail in a second on a typo, not after decoding ten thousand images."""
    from edgeskin.data.transforms import get_augment
    from edgeskin.models.factory import check_backbone, check_head

    get_task(cfg.task)
    get_augment(cfg.augment)
    check_backbone(cfg.backbone)
    check_head(cfg.head)
    for option, value in (("--split-manifest", cfg.split_manifest), ("--weights", cfg.weights)):
        if value and not Path(value).is_file():
            raise EdgeskinError(f"{option} {value} does not exist; pass an existing file")
    for run in cfg.teacher:
        if not (Path(run) / "model_card.json").is_file():
            raise EdgeskinError(f"--teacher {run} has no model_card.json; pass a finished `edgeskin train` run")
    if cfg.weights and not cfg.weights_sha256:
        raise EdgeskinError(f"--weights {cfg.weights} needs --weights-sha256 (get it with `sha256sum {cfg.weights}`)")


# Step 1-2: data and split -------------------------------------------------------------------

def load_data(cfg: TrainConfig) -> LabelledImages:
    """The images a run trains on (its --max-images subset, its colour constancy and label map)."""
    return load_labelled(cfg.data, get_task(cfg.task), cfg.input_size, cfg.max_images, cfg.seed,
                         color_constancy=cfg.color_constancy, label_map=cfg.label_map)


def prepare_data(cfg: TrainConfig) -> tuple[LabelledImages, Split]:
    data = load_data(cfg)
    if cfg.split_manifest:
        try:
            split, keep = read_manifest(cfg.split_manifest, data.samples, data.digests)
        except EdgeskinError as e:
            if cfg.max_images is None:
                raise
            # Each --seed draws its own --max-images subset, so another seed's manifest names images
            # this one did not load (`edgeskin chain` shares one subset for this reason).
            raise EdgeskinError(f"{e}, and leave out --max-images {cfg.max_images}: the manifest already "
                                f"picks the images, and --seed {cfg.seed} draws another subset") from None
        data = data.subset(keep)
        _check_holdout(cfg, data, split)
    elif cfg.holdout_source:
        split = source_holdout_split(data.samples, source_strata(data.targets, data.sources), data.digests,
                                     cfg.holdout_source, cfg.seed, cfg.val_fraction)
    else:
        # Pooled sources: stratified by label within each source (one source: by label alone).
        split = make_split(data.samples, source_strata(data.targets, data.sources), data.digests, cfg.seed,
                           cfg.val_fraction, cfg.test_fraction)
    if len(split.indices("train")) == 0 or len(split.indices("val")) == 0:
        raise EdgeskinError("the split has an empty train or val side; add images or check --split-manifest")
    if cfg.clinical:
        from edgeskin.train.clinical import check_context

        check_context(cfg.data, [data.samples[i] for i in split.indices("train")])
    return data, split


def _check_holdout(cfg: TrainConfig, data: LabelledImages, split: Split) -> None:
    """A reused manifest with --holdout-source (a chain's later generations) must test on that source."""
    if cfg.holdout_source:
        trained = {data.samples[i].source for i in np.flatnonzero(np.asarray(split.assignment) != "test")}
        if cfg.holdout_source in trained:
            raise EdgeskinError(f"--split-manifest {cfg.split_manifest} trains or validates on source "
                                f"{cfg.holdout_source!r}, which --holdout-source holds out; pass a manifest "
                                "written by a run with the same --holdout-source")
