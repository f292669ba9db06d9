"""`edgeskin benchmark`: accuracy against latency and memory, per artifact and device."""

from edgeskin.benchmark.run import BenchmarkResult, benchmark

__all__ = ["benchmark", "BenchmarkResult"]
