"""TFLite metadata and MediaPipe's ImageClassifier, run under MediaPipe's own interpreter.

mediapipe==0.10.21 pins numpy<2 and protobuf<5, which TensorFlow 2.21 cannot share a process or
an environment with, so edgeskin runs this file as a script with the Python of a separate
environment (scripts/mediapipe-venv.sh) instead of importing it. It uses only the standard
library and mediapipe. Its metadata writer is MediaPipe's, the one whose NormalizationOptions and
label file the ImageClassifier task reads (1.2.2's writer is broken).

    python mediapipe_tool.py write IN OUT SPEC.json   # embed metadata (+ model_card.json)
    python mediapipe_tool.py show MODEL               # the embedded metadata as JSON
    python mediapipe_tool.py classify MODEL IMAGE...  # ImageClassifier results as JSON lines
    python mediapipe_tool.py bench MODEL IMAGE THREADS RUNS WARMUP  # classify timings as JSON
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def write(src: str, dst: str, spec_path: str) -> None:
    """SPEC: mean/std for 0-255 pixels, labels, name, description, outputs (tensor order:
    'scores' = the classification tensor, anything else = a described feature tensor), card."""
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    with open(spec_path) as f:
        spec = json.load(f)
    with open(src, "rb") as f:
        model = bytearray(f.read())
    writer = metadata_writer.MetadataWriter.create(model)
    writer.add_general_info(spec["name"], spec["description"])
    writer.add_image_input(spec["mean"], spec["std"])
    labels = metadata_writer.Labels().add(spec["labels"])
    for output in spec["outputs"]:  # in the order of the model's output tensors
        if output["role"] == "scores":
            writer.add_classification_output(labels, name=output["name"], description=output["description"])
        else:
            writer.add_feature_output(name=output["name"], description=output["description"])
    content, _ = writer.populate()
    # The model card rides along as one more packed file (the .tflite is also a zip archive), so a
    # runtime without MediaPipe or TensorFlow reads it with zipfile.
    with tempfile.TemporaryDirectory() as tmp:
        card = os.path.join(tmp, "model_card.json")
        with open(card, "w") as f:
            json.dump(spec["card"], f, indent=2)
        populator = metadata.MetadataPopulator.with_model_buffer(content)
        populator.load_metadata_buffer(metadata.get_metadata_buffer(content))
        populator.load_associated_files([card])
        populator.populate()
        content = populator.get_model_buffer()
    with open(dst, "wb") as f:
        f.write(content)


def show(path: str) -> None:
    from mediapipe.tasks.python.metadata import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(path)
    print(json.dumps({"metadata": json.loads(displayer.get_metadata_json()),
                      "packed_files": sorted(displayer.get_packed_associated_file_list())}))


def classify(path: str, images: list[str]) -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path), max_results=-1)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in images:
            result = classifier.classify(mp.Image.create_from_file(image))
            cats = result.classifications[0].categories
            print(json.dumps({"image": image, "categories": [
                {"label": c.category_name, "index": c.index, "score": c.score} for c in cats]}))


def _peak_rss_mb() -> float:
    """This process's own peak, as edge_runtime.bench measures it: VmHWM on Linux, else getrusage."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def bench(path: str, image: str, threads: str, runs: str, warmup: str) -> None:
    """ImageClassifier.classify timed as edge_runtime times a file end to end (resize, normalise,
    model, scores) on one decoded photo. MediaPipe's Python API sets no thread count, so this
    process is pinned to THREADS cores first (Linux), before MediaPipe starts its workers."""
    import time

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:int(threads)])
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    t = time.perf_counter()
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path), max_results=-1)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        load = time.perf_counter() - t
        photo = mp.Image.create_from_file(image)
        t = time.perf_counter()
        classifier.classify(photo)
        first = time.perf_counter() - t
        for _ in range(int(warmup)):
            classifier.classify(photo)
        seconds = []
        for _ in range(int(runs)):
            t = time.perf_counter()
            classifier.classify(photo)
            seconds.append(time.perf_counter() - t)
    # Raw seconds: edgeskin takes their percentiles with edge_runtime's own function, as for every row.
    print(json.dumps({"load_ms": 1000 * load, "first_inference_ms": 1000 * first, "seconds": seconds,
                      "peak_rss_mb": _peak_rss_mb(), "method": {
                          "interpreter": f"MediaPipe ImageClassifier {mp.__version__}",
                          "delegate": "CPU (its Python API sets no thread count: process pinned to that many cores)",
                          "threads": int(threads), "warmup": int(warmup), "runs": int(runs)}}))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "write":
        write(*args)
    elif command == "show":
        show(*args)
    elif command == "classify":
        classify(args[0], args[1:])
    elif command == "bench":
        bench(*args)
    else:
        sys.exit(f"unknown command {command!r}; choose write, show, classify or bench")
