"""Load on the web page: `edge_runtime serve` in its own process, several clients POSTing a mix of
good and bad photos; status codes, latency percentiles and the server's RSS growth. Also: an
upload over the limit is answered before its body is read, and a non-loopback host is announced.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeskin.reliability.samples import bomb_png, jpeg_bytes, lesion


@dataclass(frozen=True)
class LoadResult:
    requests: int
    clients: int
    status_counts: dict
    errors_5xx: int
    dropped: int  # connections that ended without an answer
    p50_ms: float
    p99_ms: float
    rss_start_mb: float
    rss_end_mb: float
    rss_trace_mb: list  # after every 100 requests

    @property
    def rss_growth_mb(self) -> float:
        """Median RSS of the last third of the samples minus that of the first third: the RSS of a
        threaded server swings by tens of MB with the allocator's arenas, a leak climbs through them."""
        third = max(1, len(self.rss_trace_mb) // 3)
        return round(float(np.median(self.rss_trace_mb[-third:]) - np.median(self.rss_trace_mb[:third])), 1)


@contextmanager
def served(model: Path, host: str = "127.0.0.1") -> Iterator[tuple[subprocess.Popen, int, list[str]]]:
    """`python -m edge_runtime serve MODEL --port 0`: the process, its port and its first lines."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "edge_runtime", "serve", str(model), "--host", host,
                             "--port", "0", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    try:
        port = None
        deadline = time.time() + 120
        while port is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("edge_runtime serve exited: " + "".join(lines))
            lines.append(line)
            found = re.search(r"http://[^:]+:(\d+)/", line)
            port = int(found.group(1)) if found else None
        if host != "127.0.0.1":
            lines.append(proc.stdout.readline())  # the exposure warning follows the address line
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
        yield proc, port, lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _uploads(photo_sizes=((200, 150), (640, 480), (84, 84), (1024, 768))) -> list[tuple[str, bytes]]:
    good = [("photo", jpeg_bytes(lesion(size, seed=i))) for i, size in enumerate(photo_sizes)]
    whole = good[0][1]
    bad = [("text", b"not a photo"), ("truncated", whole[: len(whole) // 3]), ("empty", b""),
           ("bomb", bomb_png()), ("tiny", jpeg_bytes(lesion((8, 8))))]
    return good + bad


def _post(port: int, body: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/octet-stream"})
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException, socket.timeout):
        status = 0
    finally:
        conn.close()
    return status, (time.perf_counter() - start) * 1000


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def run_load(model: Path, requests: int = 1000, clients: int = 4, seed: int = 0) -> LoadResult:
    """`requests` uploads from `clients` threads, 60% good photos of several sizes, 40% bad."""
    uploads = _uploads()
    good = [u for u in uploads if u[0] == "photo"]
    rng = random.Random(seed)
    plan = [rng.choice(good) if rng.random() < 0.6 else rng.choice(uploads[len(good):]) for _ in range(requests)]
    with served(model) as (proc, port, _):
        for _, body in good * 3:  # warm-up: the interpreter and the allocator reach their working size
            _post(port, body)
        start = rss_mb(proc.pid)
        results, trace = [], []
        with ThreadPoolExecutor(clients) as pool:
            for i in range(0, requests, 100):  # RSS after every 100: growth that flattens is the allocator's
                results += list(pool.map(lambda u: _post(port, u[1]), plan[i:i + 100]))
                trace.append(round(rss_mb(proc.pid), 1))
        end = trace[-1]
    statuses = [s for s, _ in results]
    ms = np.array([t for _, t in results])
    counts = {str(k): statuses.count(k) for k in sorted(set(statuses))}
    return LoadResult(requests, clients, counts, sum(500 <= s < 600 for s in statuses), statuses.count(0),
                      round(float(np.percentile(ms, 50)), 2), round(float(np.percentile(ms, 99)), 2),
                      round(start, 1), round(end, 1), trace)


def oversize_refused_unread(model: Path, claimed_mb: int = 64) -> tuple[bool, str]:
    """Claim a `claimed_mb` upload, send 1 kB and wait: the 413 must come without the rest."""
    with served(model) as (_, port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {claimed_mb * 2**20}\r\n\r\n".encode()
                         + b"\0" * 1024)
            try:
                answer = sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                return False, "no answer within 10 s: the server waited for the body"
    status = answer.split("\r\n", 1)[0]
    return " 413 " in status + " ", status


def exposure_announced(model: Path) -> tuple[bool, str]:
    """Loopback by default (no warning); 0.0.0.0 only when asked, and then a warning says so."""
    with served(model) as (_, _, lines):
        quiet = "127.0.0.1" in lines[-1] and not any("warning" in ln for ln in lines)
    with served(model, host="0.0.0.0") as (_, _, lines):
        warned = any("reachable from the network" in ln for ln in lines)
    return quiet and warned, f"default: {'loopback, no warning' if quiet else lines}; 0.0.0.0 warned: {warned}"
