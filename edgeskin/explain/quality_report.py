"""Write the CAM quality measurements (edgeskin.explain.quality) as Markdown, JSON and a chart."""

from __future__ import annotations

from pathlib import Path

from edgeskin.explain.quality import QualityConfig, measure
from edgeskin.fileio import atomic_path, write_json, write_text

OUT_DIR = Path("explain") / "quality"
COLUMNS = (("energy_in_mask", "energy in lesion"), ("pointing_game", "pointing game"), ("road", "ROAD ↑"),
           ("drop_in_confidence", "drop in conf. ↓"), ("increase_in_confidence", "increase in conf. ↑"),
           ("pearson_vs_gradcam", "r vs torch Grad-CAM"), ("top20_iou_vs_gradcam", "top-20% IoU vs Grad-CAM"))


def _cell(x) -> str:
    return "—" if x is None or x != x else f"{x:.3f}"


def _chart(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["methods"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "energy_in_mask", "energy inside the lesion"),
                           (axes[1], "pointing_game", "pointing game (hottest pixel on lesion)")):
        ax.barh(names, [result["methods"][n]["overall"][key] for n in names], color="tab:blue")
        if key == "energy_in_mask":
            ax.axvline(result["uniform_energy_in_mask"], color="red", ls="--", label="uniform map")
            ax.legend(loc="lower right")
        ax.set(title=title, xlim=(0, 1))
        ax.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def cam_quality_report(cfg: QualityConfig) -> Path:
    result = measure(cfg)
    out = Path(cfg.run) / OUT_DIR
    chart = _chart(result, out / "localisation.png")
    note = " **Synthetic data, not patients.**" if result["synthetic"] else ""
    lines = [f"# CAM quality: {result['backbone']}, {result['n_images']} {result['split']} images", "",
             f"Maps for the class torch fp32 predicts.{note} Localisation against the lesion masks: a uniform map "
             f"puts {result['uniform_energy_in_mask']:.3f} of its energy inside the lesion. ROAD (pytorch-grad-cam, "
             f"MoRF/LeRF combined at 20/50/80%, torch fp32 as the judge) on the first {result['road_images']} images. "
             "`edge: FILE` rows are the CAM heads of exported files, run with LiteRT.", "",
             "| method | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(m["overall"].get(k)) for k, _ in COLUMNS) + " |")
    lines += ["", "Per true class (energy in lesion / pointing game):", "",
              "| method | " + " | ".join(next(iter(result["methods"].values()))["per_class"]) + " |",
              "|---" * (1 + len(next(iter(result["methods"].values()))["per_class"])) + "|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v['energy_in_mask']:.2f} / {v['pointing_game']:.2f}"
                                                 for v in m["per_class"].values()) + " |")
    lines += ["", f"![localisation]({chart.name})", ""]
    write_json(out / "report.json", {k: v for k, v in result.items()})
    return write_text(out / "report.md", "\n".join(lines))
