"""ablation.md: one row per lever, seed means with the paired-bootstrap interval, deltas to row one."""

from __future__ import annotations

import json
from typing import Any


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _what(row: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in row["overrides"].items()]
    if row["post"]:
        parts.append(f"{row['post']} on {row['reuse']}'s runs")
    if row.get("teacher"):
        own = row.get("teacher_ensemble")
        parts.append(f"distilled from the {row['teacher']} ensemble"
                     + (f" (which scores {own['balanced_accuracy']:.3f})" if own else ""))
    return ", ".join(parts) or "base recipe"


def merge_tables(new: dict[str, Any], committed: dict[str, Any], order: list[str],
                 stale_prefix: str = "") -> dict[str, Any]:
    """`new` plus the committed table's rows it did not run (their runs may be gone from this
    machine), in `order`; its notes after the committed ones, less those starting with
    `stale_prefix` (a "not run" line the new rows may make wrong; the new table writes its own).
    Refused when seeds, shared settings or recipe differ: a row is only comparable on the same
    split, seeds and length."""
    for key in ("seeds", "base", "recipe"):
        if json.loads(json.dumps(new[key])) != committed[key]:  # as JSON: a tuple is the list it is saved as
            raise ValueError(f"this run's {key} {new[key]!r} differs from the committed table's {committed[key]!r}")
    by_name = {r["name"]: r for r in committed["rows"]} | {r["name"]: r for r in new["rows"]}
    kept_notes = [n for n in committed.get("notes", []) if not (stale_prefix and n.startswith(stale_prefix))]
    return {**new, "rows": [by_name[n] for n in order if n in by_name],
            "notes": list(dict.fromkeys(kept_notes + new.get("notes", [])))}


def best_row(result: dict[str, Any]) -> dict[str, Any] | None:
    complete = [r for r in result["rows"] if len(r["seeds"]) == len(result["seeds"])]
    return max(complete, key=lambda r: r["mean"]["balanced_accuracy"]) if complete else None


def render_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    ref = rows[0]["mean"]["balanced_accuracy"] if rows else None
    lines = [
        f"# Ablation: recipe `{result['recipe']}` on {result['data']}",
        "",
        f"Seeds {result['seeds']} for every row, one lesion-grouped split (`{result['split_manifest']}`), "
        f"scored on its test side. Shared settings: "
        f"{', '.join(f'{k}={v}' for k, v in result['base'].items()) or 'the recipe as is'}. "
        f"Scored on: {result['hardware']}; each row's runs trained on the hardware in its last column.",
        "",
        "Balanced accuracy is the mean over seeds, with a 95% paired bootstrap interval (the same resampled "
        "test images for every seed). Δ is against the first row. Train minutes are per run; inference-time "
        "levers reuse another row's runs and train nothing. A distilled row's minutes are its student's; "
        "its teacher row's runs (all seeds) come on top. A row with `weights=` starts from an `edgeskin pretrain` "
        "file: its minutes are the fine-tuning's, and the pre-training (once, for all seeds; its minutes are in "
        "the file's pretrain.json) comes on top.",
        "",
        "Under device shift: the same test images as a simulated other device would take them "
        "(warm and cool white balance, under-exposure, defocus; `edgeskin.evaluate.shift`), mean over the four.",
        "",
        "CAM in lesion: the share of the heatmap the device shows (the predicted class's CAM) that falls "
        "inside the test image's lesion mask, as `edgeskin explain --quality` scores it (a uniform map "
        "scores the lesion's area, 0.29 on this test split; a blank map scores 0); rows scored before it "
        "was measured, and inference-time rows (same weights), show –.",
        "",
        "Seeds as one model: the row's seeds deployed side by side, their probabilities (each with the "
        "row's inference-time lever) averaged, at the seeds' count times the latency and size; rows scored "
        "before it was measured show –.",
        "",
        "| row | lever | what changes | balanced acc. [95% CI] | Δ | mel recall | mel AUC | macro AUC | ECE | "
        "bal. acc. under shift | mel AUC under shift | CAM in lesion | seeds as one model | epochs | train min | "
        "seeds | trained on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, ci = r["mean"], r["balanced_accuracy_ci95"]
        ci_s = f" [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else ""
        delta = m["balanced_accuracy"] - ref if ref is not None else None
        lines.append(
            f"| {r['name']} | {r['group']} | {_what(r)} | {m['balanced_accuracy']:.3f}{ci_s} | "
            f"{'+' if delta >= 0 else ''}{delta:.3f} | {_f(m.get('mel_recall'))} | {_f(m.get('mel_auc'))} | "
            f"{_f(m.get('auc_macro'))} | {_f(m.get('ece'))} | {_f(m.get('shift_balanced_accuracy'))} | "
            f"{_f(m.get('shift_mel_auc'))} | {_f(m.get('cam_in_lesion'))} | "
            f"{_f((r.get('seed_ensemble') or {}).get('balanced_accuracy'))} | {_f(m.get('epochs'), 0)} | "
            f"{_f(m.get('train_minutes'), 1)} | {len(r['seeds'])} | {m.get('train_hardware') or '–'} |")
    best = best_row(result)
    if best is not None:
        labels = list(next(iter(best["per_seed"].values()))["per_class_recall"])
        lines += ["", f"## Per-class recall of the best complete row, `{best['name']}` (per seed)", "",
                  "| seed | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for seed, r in best["per_seed"].items():
            lines.append(f"| {seed} | " + " | ".join(_f(r["per_class_recall"][k]) for k in labels) + " |")
    for note in result.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"
