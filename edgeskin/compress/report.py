"""Measure one compression stage and write the summary table (JSON + Markdown)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from edgeskin.metrics import classification_metrics, quick_metrics
from edgeskin.fileio import write_json, write_text
from edgeskin.predict import predict_logits, softmax

SUMMARY = "summary"


def macs_and_params(model: nn.Module, input_size, device) -> tuple[int, int]:
    import torch_pruning as tp

    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, 3, *input_size, device=device))
    model.train(was_training)
    return int(macs), int(params)


def deployed_weight_bytes(model: nn.Module, int8: bool) -> int:
    """Bytes of the weights at deployment precision: int8 conv/linear weights plus one fp32 scale
    per output channel; everything else (biases, norms) fp32. Exact zeros count as stored."""
    total = 0
    for p in model.parameters():
        total += p.numel() + 4 * p.shape[0] if int8 and p.ndim >= 2 else 4 * p.numel()
    return total


def state_dict_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def measure(stage: str, model: nn.Module, float_model: nn.Module, data, idx, card, device, int8: bool,
            pruning: dict | None = None) -> dict:
    """One table row. `float_model` is the architecture the int8 model simulates (for MACs/size)."""
    pre = card.preprocessing
    val = quick_metrics(data.targets[idx["val"]],
                        softmax(predict_logits(model, data.pixels[idx["val"]], pre.mean, pre.std, device)))
    probs = softmax(predict_logits(model, data.pixels[idx["test"]], pre.mean, pre.std, device))
    m = classification_metrics(data.targets[idx["test"]], probs, card.labels, card.positive_label, bootstrap=0)
    macs, params = macs_and_params(float_model, pre.input_size, device)
    nonzero = sum(int((p != 0).sum()) for p in float_model.parameters())
    test = {"balanced_accuracy": m["balanced_accuracy"], "auc_macro": m["auc_macro"],
            "positive_sensitivity": m["positive"]["sensitivity"], "n": m["n"]}
    return {"stage": stage, "precision": "int8 (simulated)" if int8 else "fp32", "val": val, "test": test,
            "params": params, "nonzero_params": nonzero, "macs": macs,
            "weights_mb": round(deployed_weight_bytes(float_model, int8) / 1e6, 3), "pruning": pruning}


def _table(rows: list[dict], positive: str) -> str:
    base = rows[0]
    head = (f"| stage | precision | test bal. acc. | Δ vs fp32 (pp) | {positive} recall | macro AUC | val bal. acc. "
            "| params | non-zero | MMACs | weights MB | MACs × | size × |")
    lines = [head, "|" + "|".join(["---"] * 13) + "|"]
    for r in rows:
        t = r["test"]
        lines.append(
            f"| {r['stage']} | {r['precision']} | {t['balanced_accuracy']:.3f} | "
            f"{100 * (t['balanced_accuracy'] - base['test']['balanced_accuracy']):+.1f} | "
            f"{t['positive_sensitivity']:.3f} | {t['auc_macro']:.3f} | {r['val']['balanced_accuracy']:.3f} | "
            f"{r['params']:,} | {r['nonzero_params']:,} | {r['macs'] / 1e6:.1f} | {r['weights_mb']:.2f} | "
            f"{r['macs'] / base['macs']:.2f} | {r['weights_mb'] / base['weights_mb']:.2f} |")
    return "\n".join(lines)


def write_summary(out: Path, rows: list[dict], card, cfg) -> str:
    title = f"# Compression of {card.backbone} ({card.task}), {card.preprocessing.input_size[0]}x" \
            f"{card.preprocessing.input_size[1]} px"
    n_test = rows[0]["test"]["n"]
    notes = [
        f"Metrics on the lesion-grouped test split ({n_test} images); rows kept by validation balanced accuracy.",
        "int8 rows are simulated int8 in torch (NNCF fake quantization: weights symmetric per-channel, "
        "activations asymmetric per-tensor).",
        "weights MB: parameters at deployed precision (int8 weights + fp32 per-channel scales). "
        "Magnitude pruning leaves zeros in dense tensors: fewer non-zero parameters, same MACs and no "
        "speed-up by itself; structured pruning removes channels (fewer MACs).",
        f"Fine-tuning: {cfg.epochs} epochs per stage, at {cfg.prune_lr_scale:g} × the training LR after pruning "
        f"and {cfg.lr_scale:g} × for QAT; PTQ statistics from {cfg.calib_images} training images.",
    ]
    text = "\n\n".join([title, _table(rows, card.positive_label), *notes]) + "\n"
    write_json(out / f"{SUMMARY}.json", {"run_card_sha256": card.weights["sha256"], "rows": rows,
                                         "config": {k: v for k, v in vars(cfg).items()}})
    write_text(out / f"{SUMMARY}.md", text)
    return text
