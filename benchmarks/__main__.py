"""``python -m benchmarks [--quick] [--only NAME,...] [--out DIR]``: run the benchmarks, print and save each.

Exit status: 0 when every benchmark ran (missed targets are reported, not
failures: these are measurements, not tests), 1 when one raised, 2 for a bad
command line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import BENCHMARKS
from .harness import DEFAULT_CACHE, DEFAULT_OUT, Options, Report, machine_line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run crypto_ml's benchmarks; print a table and write JSON for each."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a smoke run in about two minutes; figures are only indicative",
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="NAME,...",
        help=f"run only these, in this order (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where <name>.json goes (default: %(default)s)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("CRYPTO_ML_BENCH_CACHE") or DEFAULT_CACHE),
        help="where generated datasets are kept between runs (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile each benchmark's own process with pyinstrument into <out>/<name>.profile.txt",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.names = names
    return args


def run_one(name: str, options: Options, profile: bool = False) -> Report:
    """Run one benchmark; an exception becomes the report's ``error`` instead of ending the run."""
    module = importlib.import_module(BENCHMARKS[name])
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    try:
        report = module.run(options)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not stop the others
        report = Report(name, module.TITLE, options)
        report.error = f"{type(exc).__name__}: {exc}"
        report.extra["traceback"] = traceback.format_exc()
    finally:
        if profiler is not None:
            profiler.stop()
            options.out.mkdir(parents=True, exist_ok=True)
            (options.out / f"{name}.profile.txt").write_text(profiler.output_text(unicode=False, color=False))
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Wide tables stay readable when the output goes to a file or a CI log.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM unwinds like Ctrl-C, so every worker a benchmark started is stopped
    # (workers run in their own session: nothing else would end them).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    console.print(f"[bold]machine[/]: {machine_line()}", highlight=False)
    options = Options(quick=args.quick, out=args.out, cache=args.cache, console=console)
    summary = Table(title="benchmarks" + (" (quick)" if args.quick else ""), title_justify="left")
    for column in ("benchmark", "status", "targets met", "targets missed", "seconds", "results"):
        summary.add_column(column)
    failed = False
    for name in args.names:
        console.rule(name)
        report = run_one(name, options, args.profile)
        report.show(console)
        path = report.write()
        document = report.to_dict()
        met = sum(1 for t in report.targets if t["met"] is True)
        missed = sum(1 for t in report.targets if t["met"] is False)
        status = "error" if report.error else "skipped" if report.skipped and not report.rows else "ran"
        failed |= bool(report.error)
        summary.add_row(name, status, str(met), str(missed), f"{document['seconds']:.0f}", str(path))
    console.rule()
    console.print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
