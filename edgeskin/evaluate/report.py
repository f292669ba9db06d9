"""Write an evaluation as JSON + Markdown + PNG figures (confusion matrix, ROC curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeskin.fileio import atomic_path, write_json, write_text


def _fmt(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def markdown(m: dict[str, Any], title: str, baseline: dict[str, Any] | None = None) -> str:
    ci = m.get("ci95", {})
    ci_txt = lambda k: f" [{ci[k][0]:.3f}–{ci[k][1]:.3f}]" if k in ci else ""  # noqa: E731
    pos = m["positive"]
    lines = [f"# {title}", "", f"{m['n']} images.", "",
             "| metric | value |", "|---|---|",
             f"| **balanced accuracy** (mean per-class recall) | **{_fmt(m['balanced_accuracy'])}**{ci_txt('balanced_accuracy')} |",
             f"| macro AUC (one-vs-rest) | {_fmt(m['auc_macro'])}{ci_txt('auc_macro')} |",
             f"| {pos['label']} sensitivity | {_fmt(pos['sensitivity'])} |",
             f"| {pos['label']} specificity | {_fmt(pos['specificity'])} |",
             f"| Cohen's kappa | {_fmt(m['cohen_kappa'])} |",
             f"| G-mean of recalls | {_fmt(m['g_mean'])} |",
             f"| expected calibration error | {_fmt(m['ece'])} |",
             f"| accuracy (misleading alone on imbalanced data) | {_fmt(m['accuracy'])} |"]
    if baseline is not None:
        lines += ["", f"Baseline, always predicting `{baseline['label']}` (the training majority): balanced accuracy "
                      f"{_fmt(baseline['balanced_accuracy'])}, accuracy {_fmt(baseline['accuracy'])}."]
    lines += ["", "| class | support | recall | precision | F1 | AUC |", "|---|---|---|---|---|---|"]
    for lab, c in m["per_class"].items():
        lines.append(f"| {lab} | {c['support']} | {_fmt(c['recall'])} | {_fmt(c['precision'])} | "
                     f"{_fmt(c['f1'])} | {_fmt(c['auc'])} |")
    if ci:
        lines += ["", "Intervals: percentile bootstrap 95% over images."]
    return "\n".join(lines) + "\n"


def _save_fig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # row-normalised: the diagonal is recall
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(labels), 0.8 + 0.8 * len(labels)))
    ConfusionMatrixDisplay(norm, display_labels=list(labels)).plot(ax=ax, cmap="Blues", values_format=".2f",
                                                                     colorbar=False)
    ax.set_title("confusion matrix (rows: true, normalised)")
    _save_fig(fig, path)
    plt.close(fig)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for k, lab in enumerate(labels):
        pos = y_true == k
        if 0 < pos.sum() < len(pos):
            RocCurveDisplay.from_predictions(pos, probs[:, k], name=lab, ax=ax, plot_chance_level=(k == 0))
    ax.set_title("ROC, one vs rest")
    _save_fig(fig, path)
    plt.close(fig)


def write_report(out_dir: Path, metrics: dict[str, Any], y_true: np.ndarray, probs: np.ndarray,
                 labels: Sequence[str], title: str, baseline: dict[str, Any] | None = None,
                 extra_markdown: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "metrics.json", "markdown": out_dir / "report.md",
             "confusion": out_dir / "confusion_matrix.png", "roc": out_dir / "roc.png"}
    write_json(paths["json"], {**metrics, "baseline_majority": baseline})
    write_text(paths["markdown"], markdown(metrics, title, baseline) + (f"\n{extra_markdown}" if extra_markdown else ""))
    plot_confusion(metrics["confusion_matrix"], labels, paths["confusion"])
    plot_roc(y_true, probs, labels, paths["roc"])
    return paths
