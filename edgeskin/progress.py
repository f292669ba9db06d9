"""Progress you can watch: a tqdm bar (rate, ETA) on a terminal; elsewhere - a CI log, nohup, a
pipe - a plain line every EVERY_S seconds and one at the end, since a bar's carriage returns turn
a log file into one unreadable line and a disabled bar says nothing for an hour."""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
EVERY_S = float(os.environ.get("EDGESKIN_PROGRESS_S", 30))


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             leave: bool = False, enabled: bool = True):
    """`iterable` with progress shown on stderr (a bar on a TTY, plain lines otherwise). Under
    torchrun only rank 0 shows it: N bars on one terminal are unreadable."""
    if not enabled or os.environ.get("RANK", "0") != "0":
        return _Quiet(iterable)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave)
    return Lines(iterable, desc, total, unit)


class _Quiet:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **_):
        pass


class Lines:
    """tqdm's interface where edgeskin uses it (iteration, set_postfix), printed as plain lines:
    'epoch 3/18: 120/560 batches (21%), 4.1 it/s, 1m47s left, loss=1.231'."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, unit: str, every_s: float | None = None):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.every_s = EVERY_S if every_s is None else every_s
        self.postfix = ""
        self.lines: list[str] = []  # what was printed, for tests

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, n: int, start: float, done: bool) -> str:
        elapsed = max(time.perf_counter() - start, 1e-9)
        rate = n / elapsed
        parts = [f"{n}/{self.total} {self.unit} ({n / self.total:.0%})" if self.total else f"{n} {self.unit}",
                 f"{rate:.1f} {self.unit}/s"]
        if self.total and not done and rate > 0:
            parts.append(f"{_clock((self.total - n) / rate)} left")
        elif done:
            parts.append(f"in {_clock(elapsed)}")
        return f"{self.desc}: {', '.join(parts)}" + (f", {self.postfix}" if self.postfix else "")

    def __iter__(self) -> Iterator[T]:
        start = last = time.perf_counter()
        n = 0
        for item in self.iterable:
            yield item
            n += 1
            now = time.perf_counter()
            if now - last >= self.every_s:
                self._emit(self._line(n, start, False))
                last = now
        if n and time.perf_counter() - start >= self.every_s:  # a short loop needs no closing line
            self._emit(self._line(n, start, True))

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
