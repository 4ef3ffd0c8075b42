"""What every benchmark shares: its options, the machine it ran on, and its report as a table and as JSON.

A benchmark builds a :class:`Report`: parameters, rows of measurements,
targets (a value, a comparison and a threshold, with the gap when missed) and
notes. ``Report.show`` prints it with rich; ``Report.write`` writes
``<out>/<name>.json`` with the machine description, so figures from different
runs can be compared knowing where they came from.
"""

from __future__ import annotations

import json
import math
import operator
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["REPO_ROOT", "Options", "Report", "best_of", "machine", "machine_line", "median", "percentile", "rate"]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Results go here unless --out says otherwise (git-ignored).
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
#: Generated datasets are kept here between runs: the 10,000-series file takes
#: seconds to generate and is byte-for-byte the same for the same seed.
DEFAULT_CACHE = DEFAULT_OUT / "cache"

# Libraries whose versions explain a figure. Read from package metadata, so
# describing the machine never imports TensorFlow (seconds and ~850 MB).
LIBRARIES = (
    "crypto-ml",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "celery",
    "kombu",
    "redis",
    "tensorflow",
    "keras",
    "statsforecast",
    "rich",
)

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass
class Options:
    """How a benchmark run was asked for.

    Args:
        quick: Small sizes, for a smoke run; figures are then only indicative.
        out: Where ``<name>.json`` (and worker logs, profiles) go.
        cache: Where generated datasets are kept between runs.
        console: Where tables are printed.
    """

    quick: bool = False
    out: Path = DEFAULT_OUT
    cache: Path = DEFAULT_CACHE
    console: Console = field(default_factory=Console)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = Path(self.cache)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The machine and software a figure was measured on.

    The load average is recorded because on a shared machine it says more about
    a figure's noise than anything else.
    """
    from kombu.utils.url import maybe_sanitize_url

    from crypto_ml.config import get_settings

    settings = get_settings()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "memory_gib": _memory_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "broker_url": maybe_sanitize_url(settings.broker_url),
        "result_backend": maybe_sanitize_url(settings.result_backend),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line describing the machine, printed before the tables so a pasted result carries it."""
    info = info or machine()
    libraries = ", ".join(f"{name} {version}" for name, version in info["libraries"].items() if version)
    return (
        f"{info['cpu']}, {info['cores_usable']}/{info['cores']} cores, {info['memory_gib']} GiB RAM, "
        f"load {' '.join(map(str, info['load_average']))}; Python {info['python']} on {info['os']}; "
        f"{libraries}; broker {info['broker_url']}, backend {info['result_backend']}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def best_of(function: Callable[[], Any], number: int, rounds: int = 5) -> float:
    """Seconds per call of ``function``: the best of ``rounds`` rounds of ``number`` calls.

    The best round, as ``timeit`` recommends: on a busy machine the other
    rounds measure the neighbours, not the code.
    """
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def rate(count: float, seconds: float) -> float:
    """Items per second, NaN (written as null) when nothing was timed."""
    return count / seconds if seconds > 0 else math.nan


def _json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars to numbers, NaN and infinities to null, paths to strings."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 0.01 or magnitude == 0:
            return f"{value:.3f}"
        return f"{value:.2e}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Report:
    """The figures of one benchmark run.

    Args:
        name: Short name; the JSON file is ``<name>.json``.
        title: One line saying what is measured.
        options: The run's options.
        parameters: Sizes and settings that make the run repeatable.
    """

    def __init__(self, name: str, title: str, options: Options, parameters: dict[str, Any] | None = None) -> None:
        self.name = name
        self.title = title
        self.options = options
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.columns: list[tuple[str, str]] = []
        self.rows: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self.skipped: str | None = None
        self.error: str | None = None
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._clock = time.perf_counter()
        self._machine_start = machine()

    def set_columns(self, *columns: tuple[str, str]) -> None:
        """The table's columns: ``(row key, header)`` pairs, in order."""
        self.columns = list(columns)

    def add_row(self, **values: Any) -> dict[str, Any]:
        """Append a row of measurements (keys as in ``set_columns``; extra keys go to the JSON only)."""
        self.rows.append(values)
        return values

    def note(self, text: str) -> None:
        """A line printed under the table and kept in the JSON."""
        self.notes.append(text)

    def skip(self, reason: str) -> Report:
        """Mark the benchmark (or what is left of it) as not run, with the reason."""
        self.skipped = reason
        return self

    def target(self, name: str, value: float | None, op: str, threshold: float, unit: str = "×") -> dict[str, Any]:
        """Check a figure against its target and record the gap when it is missed.

        Args:
            name: What the figure is, e.g. ``"celery / local"``.
            value: The measured figure; None or NaN means it could not be measured.
            op: ``">="``, ``"<="``, ``">"`` or ``"<"``.
            threshold: The target.
            unit: Printed after numbers.

        Returns:
            The recorded target: ``value``, ``target``, ``met`` (None when not
            measured) and ``gap`` (how far from the threshold, signed so that
            positive means short of it).
        """
        measured = value is not None and math.isfinite(value)
        met = _COMPARE[op](value, threshold) if measured else None
        gap = None
        if measured:
            gap = (threshold - value) if op in (">=", ">") else (value - threshold)
        entry = {
            "name": name,
            "value": value,
            "op": op,
            "threshold": threshold,
            "unit": unit,
            "met": met,
            "gap": gap,
            "gap_percent": (100 * gap / threshold) if gap is not None and threshold else None,
        }
        self.targets.append(entry)
        return entry

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: what ran, where, with what, and every figure."""
        return _json_safe(
            {
                "benchmark": self.name,
                "title": self.title,
                "quick": self.options.quick,
                "started_at": self.started_at,
                "seconds": round(time.perf_counter() - self._clock, 3),
                "machine": self._machine_start,
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "parameters": self.parameters,
                "columns": [{"key": key, "header": header} for key, header in self.columns],
                "rows": self.rows,
                "targets": self.targets,
                "notes": [Text.from_markup(note).plain for note in self.notes],  # colours are for the terminal
                "skipped": self.skipped,
                "error": self.error,
                **self.extra,
            }
        )

    def write(self, out: Path | None = None) -> Path:
        """Write ``<out>/<name>.json`` (strict JSON: no NaN) and return its path."""
        folder = Path(out or self.options.out)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return path

    def show(self, console: Console | None = None) -> None:
        """Print the table, the targets and the notes."""
        console = console or self.options.console
        suffix = " [yellow](quick: small sizes, noisy)[/]" if self.options.quick else ""
        if self.rows and self.columns:
            table = Table(title=f"{self.name}: {self.title}{suffix}", title_justify="left")
            for _, header in self.columns:
                table.add_column(header, justify="left" if header == self.columns[0][1] else "right")
            for row in self.rows:
                table.add_row(*(_format(row.get(key)) for key, _ in self.columns))
            console.print(table)
        else:
            console.print(f"[bold]{self.name}[/]: {self.title}{suffix}")
        for entry in self.targets:
            value = _format(entry["value"])
            goal = f"{entry['op']} {_format(float(entry['threshold']))}{entry['unit']}"
            if entry["met"] is None:
                console.print(f"  [yellow]target not measured[/] {entry['name']}: {goal}")
            elif entry["met"]:
                console.print(f"  [green]target met[/]    {entry['name']} = {value}{entry['unit']} ({goal})")
            else:
                console.print(
                    f"  [red]target MISSED[/] {entry['name']} = {value}{entry['unit']} ({goal}); "
                    f"short by {_format(abs(entry['gap']))}{entry['unit']} "
                    f"({abs(entry['gap_percent'] or 0):.0f}% of the target)"
                )
        for text in self.notes:
            console.print(f"  - {text}", highlight=False)
        if self.skipped:
            console.print(f"  [yellow]skipped[/]: {self.skipped}")
        if self.error:
            console.print(f"  [red]error[/]: {self.error}")


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else math.nan
