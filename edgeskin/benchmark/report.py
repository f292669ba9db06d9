"""The benchmark report: Markdown table + JSON + plots (accuracy vs latency Pareto chart per
device, size vs accuracy), with the latency method stated above the table."""

from __future__ import annotations

import re
from pathlib import Path

from edgeskin.fileio import atomic_path, write_json, write_text

COLUMNS = ("device", "artifact", "status", "MB", "bal. acc.", "Δ pp vs torch", "{pos} recall", "macro AUC", "ECE",
           "agreement", "CAM r", "p50 / p90 ms", "p50 / p90 ms + CAM", "img/s", "peak RSS MB", "cold start ms",
           "speed-up vs torch", "GMAC/s (% of peak)")


def _f(x, fmt="{:.3f}", none="—"):
    return none if x is None else fmt.format(x)


def _peak_key(target: str) -> str | None:
    """The probe that ran through the same interpreter and arithmetic: torch, or LiteRT fp32/int8.
    None for ONNX Runtime (no probe through it) and int16x8 (XNNPACK cannot run it)."""
    if target.startswith("torch"):
        return "torch_fp32"
    if target.startswith("onnx"):
        return None
    return {"int8": "int8", "fp32": "fp32", "fp16": "fp32"}.get(target.rsplit("-", 1)[-1])


def build_rows(card, quality: dict, rows: list[dict]) -> list[dict]:
    """One flat record per (device, artifact): quality of the file, timing on the device."""
    torch_e2e = {r["device"]: r["timing"]["end_to_end_without_cam"]["p50_ms"] for r in rows if r["target"] == "torch-fp32"}
    ref_ba = quality["torch-fp32"]["balanced_accuracy"]
    out = []
    for r in rows:
        q, t = quality[r["target"]], r["timing"]
        e2e, cam = t["end_to_end_without_cam"], t.get("end_to_end_with_cam")
        # The model alone is not timed where the runtime hides it (MediaPipe's ImageClassifier).
        model_s = t["inference"]["p50_ms"] / 1000 if t.get("inference") else None
        gmacs = (card.macs / model_s / 1e9) if card.macs and model_s else None
        peak = r.get("peak", {}).get("gmacs", {}).get(_peak_key(r["target"]) or "")
        imported_acc = t.get("accuracy")
        ba = imported_acc["balanced_accuracy"] if imported_acc else q["balanced_accuracy"]
        out.append({
            "device": r["device"], "date": r["date"], "target": r["target"], "status": q["status"],
            "timings_representative": r["representative"], "size_mb": q["size_mb"], "balanced_accuracy": ba,
            "accuracy_measured_on": "this device" if imported_acc else "this host, same file",
            "delta_pp": 100 * (ba - ref_ba), "positive_recall": q["positive_recall"], "auc_macro": q["auc_macro"],
            "ece": q["ece"], "top1_agreement": q["top1_agreement"], "cam_pearson": q["cam_pearson"],
            "p50_ms": e2e["p50_ms"], "p90_ms": e2e["p90_ms"], "p50_cam_ms": cam["p50_ms"] if cam else None,
            "p90_cam_ms": cam["p90_ms"] if cam else None, "throughput": 1 / model_s if model_s else None,
            "peak_rss_mb": t["peak_rss_mb"], "cold_start_ms": t.get("cold_start_ms"),
            "speedup_vs_torch": (torch_e2e[r["device"]] / e2e["p50_ms"]) if r["device"] in torch_e2e else None,
            "gmacs": gmacs, "peak_gmacs": peak, "method": t["method"]})
    return out


def _markdown_row(x: dict) -> str:
    rep = "" if x["timings_representative"] else " (emulated: timings not representative)"
    roof = _f(x["gmacs"], "{:.2f}") + (f" ({100 * x['gmacs'] / x['peak_gmacs']:.0f}%)" if x["gmacs"] and x["peak_gmacs"] else "")
    cells = [x["device"] + rep, x["target"], x["status"], _f(x["size_mb"], "{:.2f}"), _f(x["balanced_accuracy"]),
             _f(x["delta_pp"], "{:+.1f}"), _f(x["positive_recall"]), _f(x["auc_macro"]), _f(x["ece"]),
             _f(x["top1_agreement"]), _f(x["cam_pearson"]), f"{x['p50_ms']:.2f} / {x['p90_ms']:.2f}",
             "—" if x["p50_cam_ms"] is None else f"{x['p50_cam_ms']:.2f} / {x['p90_cam_ms']:.2f}",
             _f(x["throughput"], "{:.0f}"), _f(x["peak_rss_mb"], "{:.0f}"), _f(x["cold_start_ms"], "{:.0f}"),
             _f(x["speedup_vs_torch"], "{:.2f}×"), roof]
    return "| " + " | ".join(cells) + " |"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _plots(out: Path, records: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for device in dict.fromkeys(r["device"] for r in records):
        pts = sorted((r for r in records if r["device"] == device), key=lambda r: r["p50_ms"])
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter([r["p50_ms"] for r in pts], [r["balanced_accuracy"] for r in pts])
        for r in pts:
            ax.annotate(r["target"], (r["p50_ms"], r["balanced_accuracy"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        front, best = [], -1.0  # Pareto frontier: no other file is both faster and more accurate
        for r in pts:
            if r["balanced_accuracy"] > best:
                front.append(r)
                best = r["balanced_accuracy"]
        ax.plot([r["p50_ms"] for r in front], [r["balanced_accuracy"] for r in front], "--", color="gray")
        ax.set(xscale="log", xlabel="end-to-end latency p50 (ms, log)", ylabel="balanced accuracy",
               title=f"accuracy vs latency: {device}"[:70])
        fig.tight_layout()
        paths.append(_save(fig, out / f"pareto_{_slug(device)}.png"))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = {r["target"]: r for r in records}
    for t, r in seen.items():
        ax.scatter(r["size_mb"], r["balanced_accuracy"])
        ax.annotate(t, (r["size_mb"], r["balanced_accuracy"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="size on disk (MB)", ylabel="balanced accuracy", title="size vs accuracy")
    fig.tight_layout()
    paths.append(_save(fig, out / "size_vs_accuracy.png"))
    plt.close(fig)
    return paths


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def write_report(out: Path, card, cfg, quality: dict, rows: list[dict]) -> tuple[Path, list[Path]]:
    records = build_rows(card, quality, rows)
    plots = _plots(out, records)
    methods = {(r["device"], r["method"]["interpreter"], r["method"]["delegate"], r["method"]["threads"],
                r["method"]["warmup"], r["method"]["runs"]) for r in records}
    header = [c.format(pos=card.positive_label) for c in COLUMNS]
    synthetic = " **Synthetic data, not patients.**" if card.data.get("synthetic") else ""
    lines = [f"# Benchmark: {card.backbone} ({card.preprocessing.input_size[0]}x{card.preprocessing.input_size[1]}), "
             f"{card.task}", "",
             f"Accuracy on the run's lesion-grouped {cfg.split} split ({quality['torch-fp32'].get('n', '')} images "
             f"re-run through each file's own runtime).{synthetic} Δ and speed-up are against torch fp32 eager on the "
             "same split and device. agreement = top-1 agreement with the torch model the file came from; CAM r = "
             "Pearson r of the file's CAM head against pytorch-grad-cam's Grad-CAM on torch fp32.", "",
             "Latency: each file in its own process, the same photo, end-to-end (resize + normalise + model + "
             "softmax; `+ CAM` adds the heatmap at the photo's size); img/s from the model alone. Roofline: MACs per "
             f"image ({_f(card.macs and card.macs / 1e6, '{:.0f}')}M) ÷ model-alone p50, against the interpreter's "
             "measured peak on a large 1x1 convolution.", "", "Method per device:"]
    lines += [f"- {d}: {i}, delegate {dl}, {th} threads, {w} warm-ups, {n} timed runs" for d, i, dl, th, w, n in
              sorted(methods, key=str)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [_markdown_row(r) for r in records]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    md = write_text(out / "report.md", "\n".join(lines))
    write_json(out / "report.json", {"card": {"backbone": card.backbone, "labels": list(card.labels),
                                              "macs": card.macs, "input_size": list(card.preprocessing.input_size)},
                                     "split": cfg.split, "rows": records,
                                     "failures": {t: q["failures"] for t, q in quality.items() if q["failures"]}})
    return md, plots
