"""Per-coin results of a run, and writing them to CSV, JSON or Parquet.

A forecast is its point values plus central prediction intervals: for each
level L, ``lo_<L>`` and ``hi_<L>`` lists beside ``forecast``, in the task
records, in ``to_frame()`` and in every output file.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import InvalidParameterError
from .models.base import DEFAULT_LEVELS, interval_columns, level_label

__all__ = ["CoinForecast", "ForecastRun", "TrainRun", "RecordsMixin", "OUTPUT_FORMATS", "library_versions"]

OUTPUT_FORMATS = (".csv", ".json", ".parquet")

# The record keys that hold interval bounds: lo_80, hi_95, lo_97.5, ...
_BOUND_KEY = re.compile(r"^(lo|hi)_\d+(\.\d+)?$")


@dataclass
class CoinForecast:
    """One coin's outcome: a forecast with its prediction intervals, or the reason there is none.

    Attributes:
        forecast: The point forecast, one value per day.
        levels: The interval levels in percent, ascending (empty for a failure).
        intervals: ``{"lo_80": [...], "hi_80": [...], ...}``: the bounds per day, a pair per level.
    """

    coin: str
    model: str
    status: str  # "ok" or "failed"
    forecast: list[float] = field(default_factory=list)
    levels: list[int | float] = field(default_factory=list)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    dates: list[str] | None = None
    last_date: str | None = None
    last_price: float | None = None
    n_obs: int | None = None
    error_type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def interval(self, level: int | float) -> tuple[list[float], list[float]]:
        """``(lower, upper)`` bounds at ``level`` percent, one per day.

        Raises:
            KeyError: no interval at that level; the message lists the ones there are.
        """
        label = level_label(level)
        if f"lo_{label}" not in self.intervals:
            raise KeyError(f"no {label}% interval for {self.coin}; it has {self.levels}")
        return self.intervals[f"lo_{label}"], self.intervals[f"hi_{label}"]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CoinForecast:
        """Build from a task's JSON record: its ``lo_<L>``/``hi_<L>`` lists become ``intervals``;
        keys this version does not know are ignored."""
        known = cls.__dataclass_fields__
        fields = {k: v for k, v in record.items() if k in known}
        bounds = {k: v for k, v in record.items() if _BOUND_KEY.match(k)}
        if bounds:
            fields["intervals"] = {**fields.get("intervals", {}), **bounds}
        return cls(**fields)

    def to_record(self) -> dict[str, Any]:
        """The JSON-safe record, bounds flat beside ``forecast`` as the tasks return them."""
        record = asdict(self)
        intervals = record.pop("intervals")
        ordered: dict[str, Any] = {}
        for key, value in record.items():
            ordered[key] = value
            if key == "forecast":
                ordered.update(intervals)
        return ordered


@dataclass
class ForecastRun:
    """Everything a forecast run produced, one ``CoinForecast`` per requested coin, in order."""

    model: str
    horizon: int
    params: dict[str, Any]
    engine: str
    engine_reason: str
    data_path: str
    results: list[CoinForecast]
    transfer: str = "inline"
    data_hash: str | None = None
    started_at: str | None = None
    seconds: float | None = None
    levels: list[int | float] = field(default_factory=lambda: list(DEFAULT_LEVELS))

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, coin: str) -> CoinForecast:
        for result in self.results:
            if result.coin == coin:
                return result
        raise KeyError(coin)

    @property
    def ok(self) -> list[CoinForecast]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[CoinForecast]:
        return [r for r in self.results if not r.ok]

    def to_frame(self):
        """A tidy DataFrame: one row per (coin, step), with ``lo_<L>``/``hi_<L>`` columns beside
        ``forecast`` for each of the run's levels; a failed coin has one row with its error."""
        import pandas as pd

        bounds = interval_columns(self.levels)
        rows: list[dict[str, Any]] = []
        for r in self.results:
            base = {"coin": r.coin, "model": r.model, "status": r.status}
            if r.ok:
                dates = r.dates or [None] * len(r.forecast)
                for step, (day, value) in enumerate(zip(dates, r.forecast, strict=True), start=1):
                    row = {**base, "step": step, "date": day, "forecast": value}
                    for column in bounds:  # a result without that level (an older record) leaves it empty
                        row[column] = r.intervals[column][step - 1] if column in r.intervals else None
                    rows.append(
                        {**row, "last_date": r.last_date, "last_price": r.last_price, "error_type": None, "error": None}
                    )
            else:
                rows.append(
                    {
                        **base,
                        "step": None,
                        "date": None,
                        "forecast": None,
                        "last_date": r.last_date,
                        "last_price": r.last_price,
                        "error_type": r.error_type,
                        "error": r.error,
                    }
                )
        columns = [
            "coin",
            "model",
            "status",
            "step",
            "date",
            "forecast",
            *bounds,
            "last_date",
            "last_price",
            "error_type",
            "error",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype(
            {
                "step": "Int64",
                "forecast": "float64",
                "last_price": "float64",
                **dict.fromkeys(bounds, "float64"),
            }
        )

    def manifest(self) -> dict[str, Any]:
        """What is needed to repeat the run: inputs, data hash, engine and library versions."""
        return {
            "model": self.model,
            "params": self.params,
            "horizon": self.horizon,
            "levels": self.levels,
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "transfer": self.transfer,
            "data_path": self.data_path,
            "data_sha256": self.data_hash,
            "started_at": self.started_at,
            "seconds": self.seconds,
            "coins": len(self.results),
            "failed": len(self.failed),
            "versions": library_versions(),
        }

    def write(self, path: str | Path) -> Path:
        """Write the results; the format follows the extension (.csv, .json, .parquet).

        Every format carries ``lo_<L>``/``hi_<L>`` beside ``forecast``: as columns in
        CSV and Parquet (``to_frame``), as lists in each JSON result. A manifest is
        written beside it as ``<path>.manifest.json``.

        Raises:
            InvalidParameterError: an unsupported extension.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in OUTPUT_FORMATS:
            raise InvalidParameterError(
                f"cannot write results to {path.name!r}: use a file ending in {', '.join(OUTPUT_FORMATS)}"
            )
        manifest = self.manifest()
        document = {"manifest": manifest, "results": [r.to_record() for r in self.results]}
        return write_with_manifest(path, manifest, document, self.to_frame)


#: Distributions whose versions a run's results depend on, recorded in every manifest and stored model.
RECORDED_LIBRARIES = ("numpy", "pandas", "scikit-learn", "skops", "keras", "tensorflow", "matplotlib")


def library_versions() -> dict[str, str | None]:
    """Versions of Python, crypto_ml and ``RECORDED_LIBRARIES`` (None where not installed).

    Read from package metadata, so asking never imports TensorFlow.
    """
    from importlib import metadata

    from . import __version__

    versions: dict[str, str | None] = {"python": platform.python_version(), "crypto_ml": __version__}
    for dist in RECORDED_LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def write_with_manifest(
    path: Path, manifest: dict[str, Any], document: dict[str, Any], frame: Callable[[], Any]
) -> Path:
    """Write a run as JSON (``document``) or as a table (``frame()``, .csv or .parquet), and
    ``<path>.manifest.json`` beside it. The caller has checked the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        frame().to_csv(path, index=False)
    else:
        frame().to_parquet(path, index=False)
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


class RecordsMixin:
    """``ok`` and ``failed`` views over a run's ``records`` (JSON records with a ``status``)."""

    records: list[dict[str, Any]]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


@dataclass
class TrainRun(RecordsMixin):
    """What a training run stored: one record per coin with its model id, or its failure."""

    model: str
    params: dict[str, Any]
    store: str
    engine: str
    engine_reason: str
    records: list[dict[str, Any]]
    seconds: float | None = None
