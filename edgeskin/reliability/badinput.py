"""The bad-input matrix: every kind of bad input a clinic or a training box meets, each given to
the surface that meets it (the `edgeskin` and `edge_runtime` command lines, the Python API, the
web page) and judged by one contract: a one-line error that names the file or value, a non-zero
exit (a 4xx on the web), and nothing new left in the working folder. Images that are unusual
but valid (16-bit, CMYK, palette, EXIF-rotated...) must instead be classified.

tests/test_bad_input.py runs each case; benchmarks/reliability.py counts them in its report.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgeskin.reliability import samples as mk


@dataclass(frozen=True)
class Subjects:
    """What the cases are given: a scratch folder, a good photo, a trained run with its data and
    the int8 .tflite exported from it (beside its card JSON)."""
    work: Path
    photo: Path
    run: Path
    data: Path
    model: Path
    server: str = ""  # base URL of `edge_runtime serve` on `model`, for the web cases


@dataclass(frozen=True)
class Call:
    """One attempt: which surface, its arguments, and what the error must name."""
    surface: str  # "edgeskin" | "edge_runtime" | "api" | "web"
    args: tuple = ()
    names: str = ""  # the file or value the one-line error must contain ("" for a case that must succeed)
    api: Callable[[], object] | None = None
    body: bytes | None = None  # the web upload
    query: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "error": must be refused clearly; "ok": unusual but valid, must be classified
    build: Callable[[Subjects], Call]


@dataclass
class Outcome:
    name: str
    surface: str
    expected: str
    code: int
    message: str
    lines: int
    names_value: bool
    left_behind: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        if self.expected == "ok":
            return self.code == 0
        return (self.code != 0 and self.lines == 1 and self.names_value and not self.left_behind
                and "unexpected" not in self.message)


def run_case(case: Case, s: Subjects) -> Outcome:
    """Build the case's input in a fresh folder of its own under s.work, run it, check the contract."""
    work = s.work / case.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    s = replace(s, work=work)
    call = case.build(s)
    before = _files(s.work)
    code, text = _invoke(call, s)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    message = lines[-1] if lines else ""
    left = sorted(str(p.relative_to(s.work)) for p in _files(s.work) - before)
    return Outcome(case.name, call.surface, case.kind, code, message, len(lines),
                   bool(call.names) and call.names in message, left)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _invoke(call: Call, s: Subjects) -> tuple[int, str]:
    """(exit code, what the user reads): stderr for the command lines, the error JSON on the web."""
    if call.surface == "web":
        req = urllib.request.Request(s.server + "/predict" + call.query, data=call.body, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=60):
                return 0, ""
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}").get("error", "")
    if call.surface == "api":
        from edge_runtime.errors import EdgeRuntimeError
        try:
            call.api()
        except EdgeRuntimeError as exc:
            return 2, str(exc)
        return 0, ""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        if call.surface == "edgeskin":
            from edgeskin.cli import main
            try:
                main([str(a) for a in call.args])
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
        else:
            from edge_runtime.cli import main as edge_main
            code = edge_main([str(a) for a in call.args])
    return code, err.getvalue() if code else ""


def _predict(path: Path, s: Subjects, names: str | None = None) -> Call:
    return Call("edge_runtime", ("predict", s.model, path), path.name if names is None else names)


def _api(s: Subjects, image) -> Call:
    from edge_runtime.classifier import Classifier
    return Call("api", names="arrays must be", api=lambda: Classifier.load(s.model, threads=1).predict(image))


def _train_csv(s: Subjects, name: str, text: str, names: str, *extra: str) -> Call:
    csv = mk.write(s.work / name, text.encode("utf-8"))
    return Call("edgeskin", ("train", "--data", csv, *extra, "--epochs", "1", "--project", s.work / "runs"), names)


def _bench_csv(s: Subjects, name: str, data: bytes, names: str = "") -> Call:
    return Call("edge_runtime", ("benchmark", s.model, "--data", mk.write(s.work / name, data), "--runs", "1",
                                 "--warmup", "0", "--no-cold", "--threads", "1"), names)


def _with_card(s: Subjects, name: str, model_bytes: bytes | None = None, **card_changes) -> Path:
    """A copy of the model (or other bytes) beside a copy of its card JSON, the card changed as given."""
    out = s.work / name
    out.write_bytes(s.model.read_bytes() if model_bytes is None else model_bytes)
    side = json.loads(s.model.with_name(s.model.name + ".json").read_text())
    side["model_card"].update(card_changes)
    if model_bytes is not None:
        from edge_runtime.artifact import sha256_file
        side["artifact"]["sha256"] = sha256_file(out)
    out.with_name(out.name + ".json").write_text(json.dumps(side))
    return out


def _site_of_other_model(s: Subjects) -> Call:
    profile = mk.write(s.work / "site.json", json.dumps({
        "kind": "edge_runtime site profile", "version": 1, "site": "clinic", "model": {
            "file": "other.tflite", "sha256": "0" * 64}}).encode())
    return Call("edge_runtime", ("predict", s.model, s.photo, "--site", profile), "site.json")


def _old_run(s: Subjects) -> Call:
    old = s.work / "old_run"
    shutil.copytree(s.run, old)
    card = json.loads((old / "model_card.json").read_text())
    card["schema"] = card["schema"] - 1
    (old / "model_card.json").write_text(json.dumps(card))
    return Call("edgeskin", ("evaluate", old, "--device", "cpu"), "schema")


def _labels(s: Subjects, rows: list[tuple[str, str]], header: str = "path,label,lesion_id") -> str:
    return header + "\n" + "".join(f"{p},{lab},{p}\n" for p, lab in rows)


def _good_rows(s: Subjects, n: int = 14) -> list[tuple[str, str]]:
    photos = sorted((s.data / "images").glob("*.jpg"))[:n]
    labels = ("nv", "mel", "bkl", "bcc", "akiec", "df", "vasc")
    return [(str(p), labels[i % len(labels)]) for i, p in enumerate(photos)]


CASES: list[Case] = [
    # Files that are not (whole) images.
    Case("corrupt-jpeg", "error", lambda s: _predict(mk.write(s.work / "corrupt.jpg", mk.corrupt_header(s.photo)), s)),
    Case("truncated-jpeg", "error", lambda s: _predict(mk.write(s.work / "cut.jpg", s.photo.read_bytes()[:400]), s)),
    Case("zero-byte-file", "error", lambda s: _predict(mk.write(s.work / "empty.jpg", b""), s)),
    Case("text-file", "error", lambda s: _predict(mk.write(s.work / "notes.txt", b"not a photo\n"), s)),
    Case("wrong-extension", "error", lambda s: _predict(mk.write(s.work / "report.jpg", b"%PDF-1.4\n%\xe2\xe3\n"), s)),
    Case("html-named-png", "error", lambda s: _predict(mk.write(s.work / "page.png", b"<html></html>"), s)),
    Case("folder-as-photo", "error", lambda s: _predict(mk.folder(s.work / "photos_dir"), s)),
    Case("missing-photo", "error", lambda s: _predict(s.work / "nowhere.jpg", s)),
    Case("dangling-symlink", "error", lambda s: _predict(mk.dangling(s.work / "link.jpg"), s)),
    Case("decompression-bomb", "error", lambda s: _predict(mk.write(s.work / "bomb.png", mk.bomb_png()), s)),
    Case("one-pixel-image", "error", lambda s: _predict(mk.image(s.work / "dot.png", (1, 1)), s)),
    Case("extreme-aspect", "error", lambda s: _predict(mk.image(s.work / "strip.png", (2000, 100)), s)),
    # Unusual but valid photos: classified like any other.
    Case("16-bit-png", "ok", lambda s: _predict(mk.image(s.work / "deep.png", mode="I;16"), s)),
    Case("cmyk-jpeg", "ok", lambda s: _predict(mk.image(s.work / "cmyk.jpg", mode="CMYK"), s)),
    Case("rgba-png", "ok", lambda s: _predict(mk.image(s.work / "rgba.png", mode="RGBA"), s)),
    Case("palette-png", "ok", lambda s: _predict(mk.image(s.work / "palette.png", mode="P"), s)),
    Case("grayscale-jpeg", "ok", lambda s: _predict(mk.image(s.work / "gray.jpg", mode="L"), s)),
    Case("exif-rotated-jpeg", "ok", lambda s: _predict(mk.exif_rotated(s.work / "rotated.jpg"), s)),
    Case("png-named-jpg", "ok", lambda s: _predict(mk.image(s.work / "really_png.jpg", fmt="PNG"), s)),
    # The Python API.
    Case("api-float-array", "error", lambda s: _api(s, np.zeros((48, 32, 3), np.float32))),
    Case("api-two-channel-array", "error", lambda s: _api(s, np.zeros((48, 32, 2), np.uint8))),
    # CSV manifests for training.
    Case("csv-unknown-label", "error", lambda s: _train_csv(
        s, "unknown_label.csv", _labels(s, [*_good_rows(s), (_good_rows(s, 15)[-1][0], "melanoma")]), "melanoma")),
    Case("csv-missing-column", "error", lambda s: _train_csv(
        s, "no_label.csv", "path,lesion_id\n" + "".join(f"{p},{p}\n" for p, _ in _good_rows(s)), "label")),
    Case("csv-duplicate-image", "error", lambda s: _train_csv(
        s, "twice.csv", _labels(s, [*_good_rows(s), _good_rows(s)[0]]), Path(_good_rows(s)[0][0]).stem)),
    Case("csv-non-numeric-age", "error", lambda s: _train_csv(
        s, "ages.csv", "path,label,lesion_id,age\n" + "".join(
            f"{p},{lab},{p},{'fifty' if i == 3 else 50}\n" for i, (p, lab) in enumerate(_good_rows(s))), "fifty")),
    Case("csv-empty-class", "error", lambda s: _train_csv(
        s, "one_class.csv", _labels(s, [(p, "nv") for p, _ in _good_rows(s)]), "akiec")),
    Case("csv-too-few-images", "error", lambda s: _train_csv(
        s, "tiny.csv", _labels(s, _good_rows(s)), "largest class")),
    Case("csv-missing-image", "error", lambda s: _train_csv(
        s, "gone.csv", _labels(s, [*_good_rows(s), (str(s.work / "gone.jpg"), "nv")]), "gone.jpg")),
    Case("csv-not-utf8", "error", lambda s: Call("edgeskin", (
        "train", "--data", mk.write(s.work / "latin1.csv", "path,label\nbild_ä.jpg,nv\n".encode("latin-1")),
        "--project", s.work / "runs"), "latin1.csv")),
    Case("csv-header-only", "error", lambda s: _train_csv(s, "header.csv", "path,label,lesion_id\n", "header.csv")),
    Case("data-path-missing", "error", lambda s: Call("edgeskin", (
        "train", "--data", s.work / "no_such_folder", "--project", s.work / "runs"), "no_such_folder")),
    # CSVs for the device's benchmark: what a spreadsheet writes must read the same.
    Case("csv-bom-crlf", "ok", lambda s: _bench_csv(s, "excel.csv", ("\ufeff" + _labels(s, _good_rows(s, 7)).replace(
        "\n", "\r\n")).encode("utf-8"))),
    Case("bench-csv-unknown-label", "error", lambda s: _bench_csv(
        s, "bench.csv", _labels(s, [*_good_rows(s, 6), (_good_rows(s)[0][0], "mole")]).encode(), "mole")),
    Case("bench-csv-bad-age", "error", lambda s: _bench_csv(s, "bench_age.csv", (
        "path,label,age,sex,site\n" + "".join(f"{p},{lab},{'n/a' if i == 2 else 40},female,back\n"
                                              for i, (p, lab) in enumerate(_good_rows(s, 7)))).encode(), "n/a")),
    # Model files.
    Case("model-missing", "error", lambda s: Call("edge_runtime", ("predict", s.work / "model.tflite", s.photo),
                                                  "model.tflite")),
    Case("model-truncated", "error", lambda s: Call("edge_runtime", (
        "predict", _with_card(s, "cut.tflite", s.model.read_bytes()[:2048]), s.photo), "cut.tflite")),
    Case("model-not-a-model", "error", lambda s: Call("edge_runtime", (
        "predict", _with_card(s, "noise.tflite", os.urandom(4096)), s.photo), "noise.tflite")),
    Case("model-changed-after-export", "error", lambda s: Call("edge_runtime", (
        "predict", mk.appended(s.model, s.work / "changed.tflite"), s.photo), "changed.tflite")),
    Case("model-unknown-format", "error", lambda s: Call("edge_runtime", (
        "predict", mk.write(s.work / "model.pt", b"\x80\x02"), s.photo), "model.pt")),
    Case("segmenter-as-classifier", "error", lambda s: Call("edge_runtime", (
        "predict", _with_card(s, "seg.tflite", task="segment"), s.photo), "segment")),
    Case("card-of-other-model", "error", lambda s: Call("edge_runtime", (
        "predict", _with_card(s, "mislabelled.tflite", labels=["nv", "mel"]), s.photo), "mislabelled.tflite")),
    Case("site-profile-of-other-model", "error", _site_of_other_model),
    # Run folders.
    Case("run-from-older-layout", "error", _old_run),
    Case("run-folder-missing", "error", lambda s: Call("edgeskin", ("export", s.work / "no_run", "--target", "tflite"),
                                                       "no_run")),
    # The web page.
    Case("web-empty-upload", "error", lambda s: Call("web", body=b"", names="empty upload")),
    Case("web-text-upload", "error", lambda s: Call("web", body=b"hello", names="uploaded file")),
    Case("web-truncated-upload", "error", lambda s: Call("web", body=s.photo.read_bytes()[:300],
                                                         names="uploaded file")),
    Case("web-bomb-upload", "error", lambda s: Call("web", body=mk.bomb_png(), names="uploaded file")),
]


def run_matrix(s: Subjects, cases: list[Case] | None = None) -> list[Outcome]:
    """Every case, with `edge_runtime serve` on s.model in a thread for the web ones."""
    from edge_runtime.server import make_server

    server = make_server(s.model, port=0, threads=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = replace(s, server=f"http://127.0.0.1:{server.server_address[1]}")
        with contextlib.redirect_stdout(io.StringIO()):  # the server's request log
            return [run_case(c, s) for c in (CASES if cases is None else cases)]
    finally:
        server.shutdown()
        server.server_close()


def summary(outcomes: list[Outcome]) -> dict:
    """The report's view: how many kinds, how many passed, and each failure's message."""
    return {"bad_input_kinds": len(outcomes), "bad_input_passed": sum(o.passed for o in outcomes),
            "by_surface": {k: sum(o.surface == k for o in outcomes) for k in sorted({o.surface for o in outcomes})},
            "failures": [{"name": o.name, "code": o.code, "message": o.message, "left_behind": o.left_behind}
                         for o in outcomes if not o.passed]}

