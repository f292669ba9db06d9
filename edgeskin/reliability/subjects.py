"""The small real model every reliability check runs against: synthetic data, a short training
run, an int8 .tflite with its card (the real train -> export path, minutes on a CPU)."""

from __future__ import annotations

from pathlib import Path

from edgeskin.reliability.badinput import Subjects
from edgeskin.reliability.samples import image


def build(work: Path, epochs: int = 2) -> Subjects:
    """Train and export into work/model, once; the cases get work/cases as their scratch folder."""
    from edgeskin.compress.pipeline import compress
    from edgeskin.config import CompressConfig, ExportConfig, TrainConfig
    from edgeskin.data.synthetic import SyntheticSpec, generate
    from edgeskin.export import export
    from edgeskin.train import train

    base = work / "model"
    data = base / "data"
    if not (data / "images").is_dir():
        generate(data, SyntheticSpec(n_images=280, seed=0))
    run = base / "runs" / "tiny"
    if not (run / "model_card.json").is_file():
        train(TrainConfig(data=str(data), backbone="edgeskin_cnn_s", input_size=(32, 48), epochs=epochs,
                          batch_size=16, device="cpu", project=str(base / "runs"), name="tiny", exist_ok=True))
    model = next(iter(sorted(run.glob("export/*int8*.tflite"))), None)
    if model is None:
        compress(CompressConfig(run=str(run), int8=True, epochs=1, calib_images=16, device="cpu"))
        model = export(ExportConfig(run=str(run), target="tflite", precision="int8", calib_images=32,
                                    allow_degraded=True)).artifact
    cases = work / "cases"
    cases.mkdir(parents=True, exist_ok=True)
    return Subjects(cases, image(base / "photo.jpg"), run, data, Path(model))
