"""The README's main job: every stage of edgeskin on the embedded synthetic dataset, in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeskin.config import EvalConfig
from edgeskin.recipes import recipe_config


@dataclass(frozen=True)
class DemoConfig:
    project: str = "runs"
    epochs: int | None = None  # None: the demo recipe's own
    device: str = "auto"


@dataclass(frozen=True)
class DemoResult:
    run_dir: Path
    report: Path
    balanced_accuracy: float
    compress_summary: Path
    tflite: Path
    tflite_status: str
    heatmap_png: Path
    benchmark: Path


def run_demo(cfg: DemoConfig) -> DemoResult:
    from edgeskin.benchmark import benchmark
    from edgeskin.compress.pipeline import compress
    from edgeskin.config import BenchmarkConfig, CompressConfig, ExportConfig
    from edgeskin.evaluate import evaluate
    from edgeskin.export import export
    from edgeskin.train import train

    print("edgeskin demo: 1/6 train on the embedded SYNTHETIC dataset (not patient data)")
    trained = train(recipe_config("demo", dict(project=cfg.project, epochs=cfg.epochs, device=cfg.device,
                                               exist_ok=True)))
    print("edgeskin demo: 2/6 evaluate on the lesion-grouped test split")
    ev = evaluate(EvalConfig(run=str(trained.run_dir), split="test", device=cfg.device))
    m = ev.metrics
    print(f"\ntest balanced accuracy {m['balanced_accuracy']:.3f} "
          f"[{m['ci95']['balanced_accuracy'][0]:.3f}-{m['ci95']['balanced_accuracy'][1]:.3f}], "
          f"macro AUC {m['auc_macro']:.3f}, {m['positive']['label']} sensitivity {m['positive']['sensitivity']:.3f} "
          f"(chance: {1 / len(m['per_class']):.3f})")
    print("edgeskin demo: 3/6 compress: INT8 post-training quantization, then quantization-aware training")
    squeezed = compress(CompressConfig(run=str(trained.run_dir), int8=True, epochs=2, calib_images=100,
                                       device=cfg.device))
    print("edgeskin demo: 4/6 export the QAT model to full-integer int8 .tflite and validate it with LiteRT")
    exported = export(ExportConfig(run=str(trained.run_dir), target="tflite", precision="int8", allow_degraded=True))
    print("edgeskin demo: 5/6 run the .tflite with edge_runtime (numpy + LiteRT, as on a device) on a test image")
    prediction, heatmap_png = _edge_predict(trained.run_dir, exported.artifact)
    print("edgeskin demo: 6/6 benchmark: accuracy vs latency vs memory, torch fp32 against the int8 .tflite")
    bench = benchmark(BenchmarkConfig(run=str(trained.run_dir), targets=("torch-fp32", "tflite-int8"), threads=(1,),
                                      runs=20, warmup=3, cam_images=32))
    print(f"results: {trained.run_dir}")
    print(f"  model card  {trained.run_dir / 'model_card.json'}")
    print(f"  checkpoint  {trained.run_dir / trained.card.weights['file']}")
    print(f"  evaluation  {ev.files['markdown']} (+ metrics.json, confusion_matrix.png, roc.png)")
    print(f"  int8 model  {squeezed.variants['qat_int8']} (QAT; table in {squeezed.out_dir / 'summary.md'})")
    v = exported.validation
    print(f"  int8 tflite {exported.artifact} ({exported.status}: top-1 agreement {v['top1_agreement']:.3f}, "
          f"CAM r {v['cam_pearson_mean']:.3f}, balanced accuracy {v['balanced_accuracy']:.3f} on val)")
    print(f"  on device   edge_runtime predict {exported.artifact.name} -> {prediction.label} "
          f"{prediction.confidence:.0%}, heatmap {heatmap_png}")
    print(f"  benchmark   {bench.markdown} (+ report.json, {', '.join(p.name for p in bench.plots)})")
    return DemoResult(trained.run_dir, ev.files["markdown"], m["balanced_accuracy"], squeezed.out_dir / "summary.md",
                      exported.artifact, exported.status, heatmap_png, bench.markdown)


def _edge_predict(run_dir: Path, artifact: Path):
    """What `edge_runtime predict MODEL IMAGE --cam-out DIR` does, on the first test image."""
    from edge_runtime import Classifier

    from edgeskin.card import ModelCard
    from edgeskin.fileio import atomic_path
    from edgeskin.train.runs import run_data

    data, split = run_data(run_dir, ModelCard.load(run_dir))
    photo = data.samples[split.indices("test")[0]].path
    prediction = Classifier.load(artifact).predict(photo)
    out = run_dir / "edge" / f"{Path(photo).stem}_cam.png"
    with atomic_path(out) as tmp:
        prediction.overlay().save(tmp, format="PNG")
    return prediction, out
