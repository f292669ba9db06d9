"""Atomic writes: temp file beside the target, fsync, rename, fsync the folder. A kill or a full
disk at any moment leaves the old complete file or the new complete one, never a torn one.
edgeskin's own writers (`edgeskin.fileio`) commit through `commit` too, so both sides share it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Iterator

# Fault injection for the kill tests (edgeskin.reliability.faults): a process whose environment
# names a file here ("last.pt", or "last.pt:2" for its second write) SIGKILLs itself after that
# file's temp copy is written and synced and before the rename - the moment a non-atomic writer
# would leave a torn file behind.
KILL_BEFORE_RENAME = "EDGESKIN_FAULT_KILL_BEFORE_RENAME"
_commits: dict[str, int] = {}

UMASK = os.umask(0)
os.umask(UMASK)


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make the fully written `tmp` durable, then atomically put it at `path`."""
    with open(tmp, "rb") as f:  # flushes the data to the disk before the name points at it
        os.fsync(f.fileno())
    if os.environ.get(KILL_BEFORE_RENAME):
        _maybe_kill(Path(path).name)
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def _maybe_kill(name: str) -> None:
    _commits[name] = _commits.get(name, 0) + 1
    for spec in os.environ[KILL_BEFORE_RENAME].split(","):
        target, _, nth = spec.partition(":")
        if target == name and _commits[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX: the folder entry is data too); Windows cannot open folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; commit it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; results should get normal permissions
    try:
        yield Path(tmp)
        commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
