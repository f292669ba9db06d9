"""The `edgeskin` command's shared options: value parsers, and the training options `train` and
`chain` both take (one table, so the two commands cannot drift apart)."""

from __future__ import annotations

import click
from edge_runtime.preprocess import CONSTANCY

from edgeskin.config import BALANCE_MODES, DEVICES, LOSSES

TASK_CHOICES = ("multiclass", "binary")
HEAD_CHOICES = ("gap_linear", "mlp")
AUGMENT_CHOICES = ("none", "light", "standard", "strong")


def parse_ints(ctx, param, value: str | None):
    """'12,12,18,18' -> (12, 12, 18, 18)."""
    if value is None:
        return None
    try:
        return tuple(int(p) for p in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}; use comma-separated whole numbers, e.g. 12,12,18,18") from None


def parse_size(ctx, param, value: str | None):
    """'128' -> (128, 128); '96x128' -> (96, 128) as HEIGHTxWIDTH."""
    if value is None:
        return None
    try:
        parts = [int(p) for p in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise click.BadParameter(f"{value!r}; use SIZE or HEIGHTxWIDTH, e.g. 128 or 96x128")
    return (parts[0], parts[-1])


def parse_data(ctx, param, value: tuple[str, ...]):
    """--data given once -> that value; several times -> a tuple of sources; never -> None."""
    if not value:
        return None
    return value[0] if len(value) == 1 else tuple(value)


# The training options `train` and `chain` share, by parameter name (chain sets CHAIN_SETS itself).
TRAINING = {
    "data": click.option("--data", multiple=True, callback=parse_data,
                         help="HAM10000 folder, CSV manifest (path,label,...), image-folder tree, or 'synthetic'; "
                         "repeat to pool sources (NAME=PATH names one)."),
    "task": click.option("--task", type=click.Choice(TASK_CHOICES),
                         help="multiclass: 7 HAM classes; binary: benign/malignant."),
    "label_map": click.option("--label-map", multiple=True,
                              help="SOURCE=LABEL: a diagnosis the task lacks joins a class, e.g. scc=akiec (repeat)."),
    "holdout_source": click.option("--holdout-source", help="Leave one source out: train and validate on the "
                                   "others, test on all of this one."),
    "balance_source": click.option("--balance-source/--no-balance-source", default=None,
                                   help="The sampler balances every (source, class) cell, not classes alone."),
    "vignette_augment": click.option("--vignette-augment", type=float, help="Probability of a simulated black "
                                     "dermoscope vignette on a training image (0 = off)."),
    "resolution_augment": click.option("--resolution-augment", type=float, help="Probability a training image "
                                       "is downsampled (35-100%%) and back up (0 = off)."),
    "backbone": click.option("--backbone", help="Any timm model name, or edgeskin_cnn_s / _m / _l."),
    "head": click.option("--head", type=click.Choice(HEAD_CHOICES)),
    "input_size": click.option("--input-size", callback=parse_size, help="SIZE or HEIGHTxWIDTH, e.g. 128 or 96x128."),
    "epochs": click.option("--epochs", type=int),
    "batch_size": click.option("--batch-size", type=int),
    "lr": click.option("--lr", type=float),
    "weight_decay": click.option("--weight-decay", type=float),
    "label_smoothing": click.option("--label-smoothing", type=float),
    "balance": click.option("--balance", type=click.Choice(BALANCE_MODES),
                            help="Class imbalance: weighted sampler or loss."),
    "balance_power": click.option("--balance-power", type=float, help="Class weight = frequency^-power."),
    "loss": click.option("--loss", type=click.Choice(LOSSES), help="balanced_softmax adds log class priors "
                         "(balanced error); focal down-weights easy images."),
    "augment": click.option("--augment", type=click.Choice(AUGMENT_CHOICES)),
    "color_constancy": click.option("--color-constancy", type=click.Choice(CONSTANCY), help="White balance every "
                                    "image (shades of gray); the card tells the device to do the same."),
    "mixup": click.option("--mixup", type=float, help="Probability a batch is mixed by MixUp or CutMix (0 = off)."),
    "ema_decay": click.option("--ema-decay", type=float,
                              help="EMA of weights, validated and saved (e.g. 0.998; 0 = off)."),
    "teacher": click.option("--teacher", type=click.Path(), multiple=True, help="A finished run to distil from "
                            "(repeat for an ensemble; same split, constancy and loss)."),
    "distill_alpha": click.option("--distill-alpha", type=float,
                                  help="Weight of the distillation loss (labels get 1 - alpha)."),
    "distill_temperature": click.option("--distill-temperature", type=float,
                                        help="Softmax temperature of the distillation loss."),
    "mask_guidance": click.option("--mask-guidance", type=float, help="Penalise CAM outside the lesion masks "
                                  "(<image_id>_segmentation.png) with this weight (0 = off)."),
    "clinical": click.option("--clinical/--no-clinical", default=None, help="Also fit a prior from the patient's "
                             "age, sex and body site (data columns); the device adds it."),
    "drop_rate": click.option("--drop-rate", type=float),
    "patience": click.option("--patience", type=int, help="Early stopping patience (epochs) on val balanced accuracy."),
    "seed": click.option("--seed", type=int),
    "val_fraction": click.option("--val-fraction", type=float),
    "test_fraction": click.option("--test-fraction", type=float),
    "split_manifest": click.option("--split-manifest", type=click.Path(),
                                   help="Reuse a split.csv from an earlier run."),
    "pretrained": click.option("--pretrained/--no-pretrained", default=None, help="timm hub weights (needs network)."),
    "weights": click.option("--weights", type=click.Path(), help="Local backbone weights file (.pth/.safetensors)."),
    "weights_sha256": click.option("--weights-sha256", help="Expected SHA-256 of --weights."),
    "max_minutes": click.option("--max-minutes", type=float,
                                help="Time budget; epochs are re-planned after the first."),
    "max_images": click.option("--max-images", type=int,
                               help="Train on a lesion-grouped stratified subset of this size."),
    "device": click.option("--device", type=click.Choice(DEVICES)),
    "workers": click.option("--workers", type=int),
}


def with_options(*decorators):
    """Apply click option decorators in the order given (the first is listed first in --help)."""
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply
