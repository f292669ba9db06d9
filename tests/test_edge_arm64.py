"""The arm64 lane: edge_runtime's predict and benchmark inside an emulated Debian bookworm arm64
userland (Raspberry Pi OS stand-in, ../shared/tools/arm64-userland.sh) on the exported int8 file.
Its int8 outputs must equal the x86 run exactly. Timings under emulation mean nothing and are not
checked. The first build of the userland takes ~10 minutes and is cached under ~/.cache/edgeskin."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

TOOL = ROOT.parent / "shared" / "tools" / "arm64-userland.sh"
pytestmark = pytest.mark.slow
if not TOOL.is_file():
    pytest.skip(f"{TOOL} not found (it lives in ../shared on dev machines and CI)", allow_module_level=True)

RAW = ("import json, sys\nfrom PIL import Image\nfrom edge_runtime import Classifier\n"
       "clf = Classifier.load(sys.argv[1])\n"
       "logits, cam = clf.infer(Image.open(sys.argv[2]).convert('RGB'))\n"
       "print(json.dumps({'logits': logits.tolist(), 'cam': cam.tolist()}))\n")


@pytest.fixture(scope="module")
def userland():
    """Build (first run only) the userland and its wheels, on their own: the build's log goes to
    stdout, and on a cold cache it would otherwise come before a test command's JSON."""
    proc = subprocess.run(["bash", str(TOOL), "setup"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and "ok aarch64" in proc.stdout, (proc.stdout + proc.stderr)[-2000:]


@pytest.fixture(scope="module")
def device_dir(userland, exported_tiny, synth_root, tmp_path_factory):
    """What goes on the device: the runtime's source, the int8 file with its card, a photo."""
    d = tmp_path_factory.mktemp("device")
    shutil.copytree(ROOT / "edge_runtime" / "src", d / "edge_runtime" / "src")
    model = exported_tiny["tflite_int8"]
    shutil.copy(model, d / "model.tflite")
    shutil.copy(model.with_name(model.name + ".json"), d / "model.tflite.json")
    shutil.copy(sorted(synth_root.rglob("*.jpg"))[0], d / "photo.jpg")
    (d / "raw.py").write_text(RAW)
    return d


def _arm(device_dir, *cmd):
    env = {**os.environ, "ARM_PROJECT_DIR": str(device_dir), "ARM_PYTHONPATH": "/work/edge_runtime/src"}
    proc = subprocess.run(["bash", str(TOOL), "run", *cmd], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _x86(device_dir, *cmd):
    env = {**os.environ, "PYTHONPATH": str(device_dir / "edge_runtime" / "src")}
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, check=True,
                          cwd=device_dir).stdout


def test_int8_outputs_on_arm64_equal_x86(device_dir):
    arm = json.loads(_arm(device_dir, "python3", "/work/raw.py", "/work/model.tflite", "/work/photo.jpg"))
    x86 = json.loads(_x86(device_dir, "raw.py", "model.tflite", "photo.jpg"))
    assert arm["logits"] == x86["logits"] and arm["cam"] == x86["cam"]  # bit-identical int8 arithmetic
    arm_cli = json.loads(_arm(device_dir, "python3", "-m", "edge_runtime", "predict", "/work/model.tflite",
                              "/work/photo.jpg", "--json"))
    x86_cli = json.loads(_x86(device_dir, "-m", "edge_runtime", "predict", "model.tflite", "photo.jpg", "--json"))
    assert {k: v for k, v in arm_cli.items() if k != "image"} == {k: v for k, v in x86_cli.items() if k != "image"}


def test_benchmark_runs_on_arm64(device_dir):
    r = json.loads(_arm(device_dir, "python3", "-m", "edge_runtime", "benchmark", "/work/model.tflite",
                        "--runs", "3", "--warmup", "1", "--threads", "1", "--json"))
    assert r["device"]["machine"] == "aarch64" and r["model"]["verified"]
    assert r["inference"]["p50_ms"] > 0 and r["cold_start_ms"] > 0 and r["method"]["input_dtype"] == "int8"
