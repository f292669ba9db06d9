"""`edgeskin compress RUN`, as numbered steps ending in one table (the NNCF examples' shape):

1. load the run (card, best weights, its own split and preprocessing)      -> row `fp32`
2. prune (magnitude or structured) and fine-tune                           -> row `pruned`
3. post-training INT8 quantization (NNCF statistics on training images)   -> row `ptq_int8`
4. quantization-aware fine-tuning from the PTQ start point                -> row `qat_int8`
5. the same PTQ + QAT on the pruned model                                  -> row `pruned_qat_int8`
6. the table: metrics on the lesion-grouped test split, size, MACs, ratios against fp32

INT8 rows are simulated int8 in torch (NNCF fake quantization), as deployed after export.
Everything is written to RUN/compress only when all steps succeed.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeskin.card import ModelCard
from edgeskin.compress import prune as pruning
from edgeskin.compress import quantize as q
from edgeskin.compress.finetune import FineTuneSetup, finetune
from edgeskin.compress.report import measure, write_summary
from edgeskin.config import CompressConfig, TrainConfig
from edgeskin.data.split import SPLITS
from edgeskin.train.runs import load_run_model, run_data
from edgeskin.extras import require
from edgeskin.fileio import sha256_file
from edgeskin.models import model_for_card
from edgeskin.predict import resolve_device
from edgeskin.train import checkpoint as ckpt

OUT_DIR = "compress"


@dataclass(frozen=True)
class CompressResult:
    out_dir: Path
    rows: list[dict]
    variants: dict[str, Path]  # stage -> folder with model.pt and model_card.json


def _save_variant(out: Path, stage: str, model, card: ModelCard, row: dict, pruned_arch, pruning_info,
                  quant: dict | None) -> Path:
    folder = out / stage
    folder.mkdir(parents=True)
    q.save(folder / q.CHECKPOINT, model, pruned_arch, quantized=quant is not None)
    metrics = {"val": row["val"], "test": row["test"], "compressed_from": str(card.weights["sha256"])}
    card.replace(quantization=quant, pruning=pruning_info, macs=row["macs"], num_params=row["params"],
                 weights={"file": q.CHECKPOINT, "sha256": sha256_file(folder / q.CHECKPOINT)},
                 metrics=metrics).save(folder)
    return folder


def compress(cfg: CompressConfig) -> CompressResult:
    run = Path(cfg.run)
    card = ModelCard.load(run)  # Step 1: the run and the compress extra, checked before any work
    require("edgeskin compress", "compress")
    import torch_pruning as tp
    tcfg = TrainConfig.load(run / ckpt.CONFIG)
    device = resolve_device(cfg.device)
    fp32 = load_run_model(run, card, device)
    pre = card.preprocessing
    data, split = run_data(run, card)
    idx = {s: split.indices(s) for s in SPLITS}
    example = torch.zeros(1, 3, *pre.input_size, device=device)
    setup = FineTuneSetup(data, idx, tcfg, cfg.epochs, pre.mean, pre.std, device)

    tmp = run / f".{OUT_DIR}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        rows, variants = [measure("fp32", fp32, fp32, data, idx, card, device, int8=False)], {}
        bases = [("", fp32, None, None)]  # (prefix, fp32-like model, tp architecture, pruning info)
        if cfg.prune is not None:  # Step 2
            pr = pruning.prune(cfg.prune_mode, copy.deepcopy(fp32), cfg.prune, example)
            finetune(pr.model, setup, tcfg.lr * cfg.prune_lr_scale, set_mode=lambda m: m.train(),
                     label="prune fine-tune")
            model = pr.finalize(pr.model)
            info = {**pr.info, "sparsity": round(pruning.weight_sparsity(model), 4)}
            arch = tp.state_dict(model) if cfg.prune_mode == "structured" else None
            rows.append(measure("pruned", model, model, data, idx, card, device, int8=False, pruning=info))
            variants["pruned"] = _save_variant(tmp, "pruned", model, card, rows[-1], arch, info, None)
            bases.append(("pruned_", model, arch, info))
        if cfg.int8:  # Steps 3-5: every base (fp32, and the pruned model when asked) gets PTQ then QAT
            for prefix, base, arch, info in bases:
                rows += _int8_stages(prefix, base, arch, info, cfg, setup, card, tmp, variants)
        summary = write_summary(tmp, rows, card, cfg)  # Step 6
        final = run / OUT_DIR
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(summary)
    return CompressResult(final, rows, {k: final / v.name for k, v in variants.items()})


def _int8_stages(prefix, base, arch, pruning_info, cfg, setup: FineTuneSetup, card, out, variants) -> list[dict]:
    """PTQ then QAT of `base` (fp32 or pruned); returns their two rows."""
    data, idx, device = setup.data, setup.idx, setup.device
    batches = q.calibration_batches(data.pixels[idx["train"]], setup.mean, setup.std, cfg.calib_images,
                                    setup.tcfg.seed)
    rows = []
    model = q.ptq(copy.deepcopy(base), [b.to(device) for b in batches])
    magnitude = pruning_info is not None and pruning_info["mode"] == "magnitude"
    masks = pruning.zero_masks(model) if magnitude else []
    quant = {**q.SCHEME, "method": "PTQ", "calibration_images": len(batches), "tool": _nncf_version()}
    rows.append(measure(f"{prefix}ptq_int8", model, base, data, idx, card, device, int8=True,
                        pruning=pruning_info))
    variants[f"{prefix}ptq_int8"] = _save_variant(out, f"{prefix}ptq_int8", model, card, rows[-1], arch,
                                                  pruning_info, quant)

    def keep_zeros() -> None:  # magnitude-pruned weights stay zero while QAT updates the rest
        with torch.no_grad():
            for weight, mask in masks:
                weight.mul_(mask)

    best = finetune(model, setup, setup.tcfg.lr * cfg.lr_scale, set_mode=q.qat_mode, label=f"{prefix}QAT",
                    after_step=keep_zeros)
    quant = {**quant, "method": "QAT", "qat_epochs": cfg.epochs, "qat_best_epoch": best["epoch"]}
    rows.append(measure(f"{prefix}qat_int8", model, base, data, idx, card, device, int8=True,
                        pruning=pruning_info))
    variants[f"{prefix}qat_int8"] = _save_variant(out, f"{prefix}qat_int8", model, card, rows[-1], arch,
                                                  pruning_info, quant)
    return rows


def _nncf_version() -> str:
    import nncf

    return f"nncf {nncf.__version__}"


def load_variant(folder: str | Path, device: str = "cpu") -> tuple[ModelCard, torch.nn.Module]:
    """A compressed variant, restored exactly from its model.pt (NNCF config + state dict)."""
    folder = Path(folder)
    card = ModelCard.load(folder)
    fresh = model_for_card(card)
    return card, q.restore(folder / card.weights["file"], fresh).to(device)
