"""crypto_ml's benchmarks: run on demand with ``python -m benchmarks``; not tests, never timed in CI.

Each module measures one thing against its alternatives in the same run,
prints a table and writes ``benchmarks/results/<name>.json`` (see
``benchmarks/README.md``). ``BENCHMARKS`` lists them in the order they run:
the in-process ones first, then those that start Celery workers, the
TensorFlow ones last.
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

#: Benchmark name -> module; each module has ``NAME``, ``TITLE`` and ``run(options, **sizes) -> Report``.
BENCHMARKS = {
    "payload": "benchmarks.payload",
    "peer": "benchmarks.peer",
    "intervals": "benchmarks.intervals",
    "overhead": "benchmarks.overhead",
    "dispatch": "benchmarks.dispatch",
    "api_load": "benchmarks.api_load",
    "lstm": "benchmarks.lstm",
    "scaling": "benchmarks.scaling",
}
