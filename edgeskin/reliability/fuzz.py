"""Fuzzers (hypothesis as the generator): photo bytes through decode -> preprocess -> predict, and
CSV text through edgeskin's and edge_runtime's readers. Every input must end in a result or in the
product's own one-line error (EdgeskinError / EdgeRuntimeError); anything else is counted as
unhandled, with its first message kept. Memory is sampled before and after: it must stay flat.
"""

from __future__ import annotations

import gc
import os
import io
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from edgeskin.reliability.load import rss_mb
from edgeskin.reliability.samples import jpeg_bytes, lesion


@dataclass
class FuzzResult:
    name: str
    inputs: int = 0
    handled_errors: int = 0  # refused with the product's own error
    unhandled: int = 0
    examples: list[str] = field(default_factory=list)  # the first few unhandled, for the report
    rss_growth_mb: float = 0.0

    def record(self, fn, *args) -> None:
        from edge_runtime.errors import EdgeRuntimeError
        from edgeskin.errors import EdgeskinError

        self.inputs += 1
        try:
            fn(*args)
        except (EdgeRuntimeError, EdgeskinError):
            self.handled_errors += 1
        except Exception as exc:  # what the fuzzer is for: count it, keep the first few
            self.unhandled += 1
            if len(self.examples) < 5:
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                self.examples.append(f"{type(exc).__name__}: {exc} ({Path(frame.filename).name}:{frame.lineno})")


def _fuzz(strategy, n: int, seed: int, body):
    """`body` over n examples of `strategy`, reproducibly (a fixed seed, no example database)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    return with_seed(seed)(settings(max_examples=n, database=None, deadline=None,
                                    suppress_health_check=list(HealthCheck))(given(strategy)(body)))


def _seeds() -> list[bytes]:
    """Valid files to mutate: the formats a phone or a dermatoscope exports."""
    img = lesion((120, 90))
    out = [jpeg_bytes(img)]
    for fmt in ("PNG", "BMP", "TIFF", "WEBP", "GIF"):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def photos(model: Path, n: int = 6000) -> FuzzResult:
    """Mutated photo files (bit flips, cuts, splices of the valid seeds) and generated images of
    random size, mode and format, each through Classifier.predict as bytes."""
    from hypothesis import strategies as st

    from edge_runtime.classifier import Classifier

    clf, seeds, result = Classifier.load(model, threads=1), _seeds(), FuzzResult("photos")

    def predict(data: bytes) -> None:
        p = clf.predict(data)
        assert abs(sum(p.probabilities.values()) - 1) < 1e-3 and p.heatmap is not None

    mutated = st.tuples(st.sampled_from(range(len(seeds))), st.lists(st.tuples(
        st.integers(0, 10**6), st.integers(0, 255)), max_size=12), st.integers(0, 10**6), st.binary(max_size=64))

    def mutate(spec) -> bytes:
        k, flips, cut, splice = spec
        data = bytearray(seeds[k])
        for pos, value in flips:
            data[pos % len(data)] = value
        cut = cut % (len(data) + 1)
        return bytes(data[:cut]) + splice if cut < len(data) // 2 else bytes(data)

    generated = st.tuples(st.integers(1, 400), st.integers(1, 400), st.sampled_from(["RGB", "L", "RGBA", "P", "CMYK",
                                                                                     "I;16", "1", "LA"]),
                          st.sampled_from(["PNG", "JPEG", "TIFF", "BMP", "WEBP"]), st.integers(0, 2**31))

    def encode(spec) -> bytes:
        w, h, mode, fmt, seed = spec
        arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        img = img.convert("L").convert(mode) if mode in ("I;16", "1", "LA") else img.convert(mode)
        buf = io.BytesIO()
        try:
            img.save(buf, format=fmt)
        except (OSError, ValueError):  # a mode this format cannot hold: send it as PNG
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()

    inputs = st.one_of(mutated.map(mutate), generated.map(encode), st.binary(max_size=2048))
    _measured(lambda seed: _fuzz(inputs, n // 2, seed, lambda data: result.record(predict, data)), result)
    return result


def _measured(make, result: FuzzResult) -> None:
    """Two halves with different seeds; the RSS growth over the second half is reported (the
    first half loads libraries and fills caches; growth after that is a leak)."""
    make(0)()
    gc.collect()
    start = rss_mb(os.getpid())
    make(1)()
    gc.collect()
    result.rss_growth_mb = round(rss_mb(os.getpid()) - start, 2)


def csv_readers(n: int = 4000) -> FuzzResult:
    """Random CSV text (real column names, random cells, BOMs, CRLF, quotes, bytes that are not
    UTF-8) through edgeskin's read_dataset and edge_runtime's labelled_images."""
    from hypothesis import strategies as st

    from edge_runtime.bench import labelled_images
    from edgeskin.data.readers import read_dataset

    columns = ["path", "label", "lesion_id", "age", "sex", "site", "source", "image_id", "dx", "localization", "x"]
    cell = st.one_of(st.sampled_from(["nv", "mel", "scc", "", "55", "-3", "1e9", "nan", "fifty", "a.jpg",
                                      "/nonexistent/b.png", '"quoted, cell"', "ä"]), st.text(max_size=12))
    table = st.tuples(st.lists(st.sampled_from(columns), min_size=0, max_size=7),
                      st.lists(st.lists(cell, max_size=8), max_size=6), st.booleans(), st.booleans(),
                      st.binary(max_size=8))
    folder = Path(tempfile.mkdtemp(prefix="edgeskin-fuzz-csv-"))
    result = FuzzResult("csv")

    def write(spec) -> Path:
        header, rows, bom, crlf, junk = spec
        nl = "\r\n" if crlf else "\n"
        text = ("\ufeff" if bom else "") + ",".join(header) + nl + nl.join(",".join(r) for r in rows) + nl
        path = folder / "fuzz.csv"
        path.write_bytes(text.encode("utf-8") + (junk if len(rows) % 2 else b""))
        return path

    def both(path: Path) -> None:
        result.record(read_dataset, path)
        result.record(labelled_images, path)

    _measured(lambda seed: _fuzz(table.map(write), n // 4, seed, both), result)
    return result
