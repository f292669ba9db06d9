"""Named training recipes (a registry of tiny builders, like timm's `register_model`): each returns
the TrainConfig fields it sets, and explicit CLI options override them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from edgeskin.config import PretrainConfig, TrainConfig
from edgeskin.errors import EdgeskinError

# Named recipes: each returns the TrainConfig fields it sets; explicit CLI options override them.
RECIPES: dict[str, Callable[[], dict[str, Any]]] = {}


def register_recipe(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    RECIPES[fn.__name__.replace("_", "-")] = fn
    return fn


@register_recipe
def demo() -> dict[str, Any]:
    """The README's first command: the embedded synthetic set, small CNN, about two minutes on 2 cores."""
    return dict(data="synthetic", backbone="edgeskin_cnn_s", input_size=(96, 128), epochs=14,
                batch_size=32, lr=3e-3, patience=6, name="demo")


@register_recipe
def ham_mobile() -> dict[str, Any]:
    """HAM10000 7-class, from scratch at 128 px: the edge default (mobilenetv3_small, GAP+linear)."""
    return dict(backbone="mobilenetv3_small_100", input_size=(128, 128), epochs=30, batch_size=64,
                lr=2e-3, balance="sampler", balance_power=0.5, label_smoothing=0.1, name="ham-mobile")


@register_recipe
def ham_edge_int8() -> dict[str, Any]:
    """ham-mobile with a plain conv-BN-ReLU backbone whose full-int8 .tflite keeps its decisions
    (HAM10000: 0.997 top-1 agreement; MobileNetV3-Small, with or without hard-swish/SE, 0.96)."""
    return {**ham_mobile(), "backbone": "edgeskin_cnn_m", "name": "ham-edge-int8"}


@register_recipe
def ham_edge_robust() -> dict[str, Any]:
    """The HAM10000 ablation's winner on 2 CPU cores (benchmarks/results/ham10000_ablation.md):
    ham-edge-int8's int8-exact CNN at 96x128 (the source's aspect ratio) with balanced-softmax
    loss and shades-of-gray colour constancy, 18 epochs. The winning row is a distillation chain:
    seeds 0-2 at --epochs 12, again at --epochs 12 with `--teacher` on those three runs, then this
    recipe (18 epochs) twice, each time with `--teacher` on the three runs before, with the clinical
    prior (the patient's age, sex and body site; `--no-clinical` for data that records none);
    exported with `--min-recall 0.7` (melanoma operating point). `edgeskin chain --recipe
    ham-edge-robust` trains that chain (CHAINS). Give it more --epochs on a GPU."""
    return {**ham_edge_int8(), "input_size": (96, 128), "epochs": 18, "patience": 99,
            "loss": "balanced_softmax", "color_constancy": "shades_of_gray", "clinical": True,
            "name": "ham-edge-robust"}


@register_recipe
def multi_source() -> dict[str, Any]:
    """Several clinics in one run: pass each with --data (e.g. HAM10000 and ISIC 2019's BCN_20000 +
    MSK part, whose `source` column tells BCN from MSK). ham-edge-int8's int8-exact CNN at 80x80, the
    lowest common resolution (ISIC 2019's images are 84x84, so none is upsampled and sharpness does
    not give the source away), balanced-softmax loss, shades-of-gray colour constancy and scc joined
    to akiec (HAM's akiec includes intraepithelial carcinoma). 8 epochs, as measured on CPU: give it
    more --epochs on a GPU. Its levers were measured leave-one-source-out
    (benchmarks/results/multisource/report.md); the simulated vignette (`--vignette-augment 0.5`)
    tied with plain pooling on validation, so it stays off."""
    return {**ham_edge_int8(), "input_size": (80, 80), "epochs": 8, "patience": 99, "loss": "balanced_softmax",
            "color_constancy": "shades_of_gray", "label_map": ("scc=akiec",), "name": "multi-source"}


# A recipe's distillation chain (`edgeskin chain --recipe NAME`): each generation's epochs.
CHAINS: dict[str, tuple[int, ...]] = {"ham-edge-robust": (12, 12, 18, 18)}


@register_recipe
def densenet121_7class() -> dict[str, Any]:
    """The seeds' DenseNet121 7-class setup: 224 px, class-weighted loss, AdamW + cosine."""
    return dict(backbone="densenet121", input_size=(224, 224), epochs=30, batch_size=32, lr=1e-3,
                balance="loss", balance_power=1.0, label_smoothing=0.0, name="densenet121-7class")


@register_recipe
def sresnet_binary() -> dict[str, Any]:
    """The seeds' S-ResNet binary setup: ResNet-18 + MLP head (512->128), weighted sampler,
    label smoothing, AdamW + cosine, benign vs malignant."""
    return dict(task="binary", backbone="resnet18", head="mlp", input_size=(128, 128), epochs=30,
                batch_size=64, lr=1e-3, balance="sampler", balance_power=1.0, label_smoothing=0.1,
                drop_rate=0.3, name="sresnet-binary")


def recipe_config(recipe: str | None, overrides: dict[str, Any], config_file: str | None = None) -> TrainConfig:
    """A TrainConfig from a recipe's fields, then a --config file's, then the options the user
    gave explicitly."""
    fields: dict[str, Any] = {}
    if recipe is not None:
        if recipe not in RECIPES:
            raise EdgeskinError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
        fields.update(RECIPES[recipe](), recipe=recipe)
    if config_file is not None:
        fields.update(config_file_fields(config_file))
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**fields)


# Where a run goes is the command line's business, so a run's own config.json can seed a new run.
PLACE_FIELDS = ("project", "name", "exist_ok", "split_manifest")


def config_file_fields(path: str) -> dict[str, Any]:
    """The TrainConfig fields in a JSON or YAML file (`edgeskin tune`'s best_config.json, a run's
    config.json, or one written by hand), less PLACE_FIELDS."""
    import yaml  # timm's dependency

    p, kind = Path(path), "YAML" if Path(path).suffix.lower() in (".yaml", ".yml") else "JSON"
    if not p.is_file():
        raise EdgeskinError(f"--config {path}: no such file; give a JSON or YAML file of train options")
    try:
        text = p.read_text(encoding="utf-8-sig")
        raw = yaml.safe_load(text) if kind == "YAML" else json.loads(text)
    except (ValueError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgeskinError(f"--config {path} is not valid {kind} ({reason}); fix the file") from None
    if not isinstance(raw, dict):
        raise EdgeskinError(f"--config {path} holds a {type(raw).__name__}; it must map option names to values")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise EdgeskinError(f"--config {path}: unknown option {unknown[0]!r}; valid ones are {sorted(names - set(PLACE_FIELDS))}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k not in PLACE_FIELDS}


def pretrain_config(recipe: str | None, overrides: dict[str, Any]) -> PretrainConfig:
    """A PretrainConfig from the fields a training recipe shares with it (data, backbone, input
    size, colour constancy, split), then the options the user gave explicitly."""
    names = {f.name for f in dataclasses.fields(PretrainConfig)} - {"epochs", "batch_size", "lr", "weight_decay",
                                                                     "max_minutes", "project", "name", "exist_ok"}
    fields = {k: v for k, v in recipe_config(recipe, {}).to_dict().items() if k in names} if recipe else {}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    fields["input_size"] = tuple(fields.get("input_size", PretrainConfig.input_size))
    return PretrainConfig(**fields)
