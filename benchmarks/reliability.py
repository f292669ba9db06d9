"""Reliability report: bad inputs, kills mid-write, fuzzing and load, against one small real model.

    python benchmarks/reliability.py [--work runs/reliability] [--fuzz 10000] [--requests 1000]

Steps: 1. train and export a small int8 classifier on synthetic data; 2. the bad-input matrix;
3. the kill tests; 4. the fuzzers; 5. load on the web page; 6. benchmarks/results/reliability/
report.json and report.md. The same functions run in tests/test_bad_input.py and
tests/test_reliability.py; this script runs them at full size and keeps the figures.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")

from edgeskin.fileio import write_json, write_text  # noqa: E402
from edgeskin.reliability import badinput, faults, fuzz, load, subjects  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "reliability"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/reliability"))
    p.add_argument("--fuzz", type=int, default=10_000, help="fuzz inputs in all (60%% photos, 40%% CSV files)")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    started = time.time()

    # 1. The subject: a small real model (train -> compress -> export int8 .tflite).
    s = subjects.build(args.work)
    # 2. Every kind of bad input, on every surface.
    outcomes = badinput.run_matrix(s)
    # 3. SIGKILL mid-write: training, export, calibration.
    kills = faults.run_all(s, args.work / "faults")
    # 4. Fuzz the decode -> predict path and the CSV readers.
    fuzzed = [fuzz.photos(s.model, args.fuzz * 6 // 10), fuzz.csv_readers(args.fuzz * 4 // 10)]
    # 5. Load on the web page, the upload limit, and loopback by default.
    loaded = load.run_load(s.model, args.requests, args.clients)
    unread, unread_detail = load.oversize_refused_unread(s.model)
    exposed, exposed_detail = load.exposure_announced(s.model)

    # 6. The report.
    matrix = badinput.summary(outcomes)
    report = {
        "date": datetime.date.today().isoformat(),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "model": {"file": s.model.name, "size_mb": round(s.model.stat().st_size / 1e6, 3)},
        **matrix,
        "bad_inputs": [{"name": o.name, "surface": o.surface, "expected": o.expected, "passed": o.passed,
                        "exit": o.code, "message": o.message} for o in outcomes],
        "kill_tests": [asdict(k) for k in kills],
        "fuzz_inputs": sum(f.inputs for f in fuzzed),
        "fuzz_unhandled": sum(f.unhandled for f in fuzzed),
        "fuzz": [asdict(f) for f in fuzzed],
        "load_requests": loaded.requests,
        "load_clients": loaded.clients,
        "load_5xx": loaded.errors_5xx,
        "load_dropped": loaded.dropped,
        "load_status_counts": loaded.status_counts,
        "load_p50_ms": loaded.p50_ms,
        "load_p99_ms": loaded.p99_ms,
        "rss_growth_mb": loaded.rss_growth_mb,
        "rss_trace_mb": loaded.rss_trace_mb,
        "oversize_refused_before_read": {"passed": unread, "detail": unread_detail},
        "loopback_by_default": {"passed": exposed, "detail": exposed_detail},
        "minutes": round((time.time() - started) / 60, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "report.json", report)
    write_text(args.out / "report.md", render(report))
    print(render(report))
    ok = (matrix["bad_input_passed"] == matrix["bad_input_kinds"] and all(k.passed for k in kills)
          and report["fuzz_unhandled"] == 0 and loaded.errors_5xx == 0 and unread and exposed)
    return 0 if ok else 1


def render(r: dict) -> str:
    lines = [
        "# Reliability", "",
        f"{r['date']}, {r['host']['machine']}, Python {r['host']['python']}; model {r['model']['file']} "
        f"({r['model']['size_mb']} MB), trained on synthetic data by `benchmarks/reliability.py`.", "",
        "| check | result |", "|---|---|",
        f"| bad-input kinds passing | {r['bad_input_passed']} / {r['bad_input_kinds']} "
        f"({', '.join(f'{k} {v}' for k, v in r['by_surface'].items())}) |",
        f"| kill tests passing | {sum(k['passed'] for k in r['kill_tests'])} / {len(r['kill_tests'])} |",
        f"| fuzz inputs / unhandled | {r['fuzz_inputs']} / {r['fuzz_unhandled']} |",
        f"| web requests ({r['load_clients']} clients) / 5xx / dropped | {r['load_requests']} / {r['load_5xx']} / "
        f"{r['load_dropped']} |",
        f"| latency p50 / p99 | {r['load_p50_ms']} / {r['load_p99_ms']} ms |",
        f"| server RSS growth | {r['rss_growth_mb']} MB (samples every 100 requests: "
        f"{min(r['rss_trace_mb'])}-{max(r['rss_trace_mb'])} MB) |",
        f"| oversize upload refused before it is read | {r['oversize_refused_before_read']['passed']} |",
        f"| loopback by default, warns otherwise | {r['loopback_by_default']['passed']} |", "",
        "## Kill tests", "", "| test | passed | detail |", "|---|---|---|",
        *[f"| {k['name']} | {k['passed']} | {k['detail']} |" for k in r["kill_tests"]], "",
        "## Fuzzers", "", "| fuzzer | inputs | refused with a product error | unhandled | RSS growth (2nd half) |",
        "|---|---|---|---|---|",
        *[f"| {f['name']} | {f['inputs']} | {f['handled_errors']} | {f['unhandled']} | {f['rss_growth_mb']} MB |"
          for f in r["fuzz"]], "",
        "## Bad inputs", "", "| kind | surface | expected | passed | what the user reads |", "|---|---|---|---|---|",
        *[f"| {b['name']} | {b['surface']} | {b['expected']} | {b['passed']} | "
          f"{b['message'].replace('|', '/')[:140] or '(classified)'} |" for b in r["bad_inputs"]], "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
