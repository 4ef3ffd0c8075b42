"""A finished backtest: its records, how it was made, its summaries and writing it out.

``BacktestRun`` holds one JSON-safe record per (coin, model, window) and the
request behind them. Its point summaries (``summary``, ``by_horizon``,
``per_coin``) are computed here; its comparisons with the benchmark
(``interval_summary``, ``by_regime``, ``significance``, ``calibration``,
``verdicts``) are in ``comparison``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ..models.base import DEFAULT_LEVELS, level_label
from ..results import OUTPUT_FORMATS, RecordsMixin, library_versions, write_with_manifest
from . import comparison
from .backtest import BENCHMARK, METRICS

__all__ = ["BacktestRun", "QUICK_WINDOWS", "RECORD_COLUMNS", "check_output_path", "record_columns"]

#: Windows per coin of a quick run: enough to see that everything runs, too few to judge a model.
QUICK_WINDOWS = 5

_LEADING_COLUMNS = [
    "coin",
    "model",
    "window",
    "status",
    "cutoff",
    "cutoff_date",
    "horizon",
    "step",
    "windows_used",
    "windows_requested",
    "n_points",
    "last_value",
    *METRICS,
    "mase_scale",
    "forecast",
    "actual",
    "abs_errors",
]
_TRAILING_COLUMNS = ["crps", "origin_volatility", "pit", "coverage_grid", "note", "error_type", "error"]


def record_columns(levels: Iterable[int | float] = DEFAULT_LEVELS) -> list[str]:
    """Columns of ``BacktestRun.to_frame`` for a run at ``levels``: the point columns, then per level
    ``lo_L, hi_L, coverage_L, width_L, winkler_L``, then ``crps, origin_volatility, pit, coverage_grid`` and
    the note and error."""
    per_level = [
        f"{kind}_{level_label(level)}" for level in levels for kind in ("lo", "hi", "coverage", "width", "winkler")
    ]
    return [*_LEADING_COLUMNS, *per_level, *_TRAILING_COLUMNS]


#: Columns of ``BacktestRun.to_frame`` at the default levels, one row per (coin, model, window).
RECORD_COLUMNS = record_columns()


@dataclass
class BacktestRun(RecordsMixin):
    """Everything a backtest produced: one record per (coin, model, window), and how it was made.

    Attributes:
        records: The JSON-safe records (see ``backtest_series``), ordered by coin
            (as requested), model (as in ``models``) and window (oldest first).
        models: The models run, the benchmark first unless it was asked for elsewhere.
        horizon: Steps per window.
        windows: Windows requested per coin.
        step: Points between cutoffs.
        engine: The engine that ran the tasks.
        engine_reason: Why that engine.
        data_path: The dataset read.
        data_hash: SHA-256 of the dataset.
        seconds: Wall time of the run.
        started_at: ISO time the run started (UTC).
        params: Every model's full constructor arguments, defaults included.
        coins: The coins requested, normalised.
        transfer: How prices reached the workers (``inline`` or ``reference``).
        data_filters: The loader's ``max_points``, ``from_date`` and ``to_date``.
        command: The command line that made the run, when it came from the CLI.
        levels: The interval levels scored, in percent, ascending.
        quick: A quick run (``QUICK_WINDOWS`` windows): indicative only, too few origins to judge a model.
    """

    records: list[dict[str, Any]]
    models: list[str]
    horizon: int
    windows: int
    step: int
    engine: str
    engine_reason: str
    data_path: str
    data_hash: str | None = None
    seconds: float | None = None
    started_at: str | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    coins: list[str] = field(default_factory=list)
    transfer: str = "inline"
    data_filters: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    levels: tuple[int | float, ...] = DEFAULT_LEVELS
    quick: bool = False

    def to_frame(self):
        """One row per (coin, model, window), columns ``record_columns(self.levels)``.

        The lists (``forecast``, ``actual``, ``abs_errors``, ``lo_L``, ``hi_L``,
        ``pit``) and ``coverage_grid`` are JSON strings (``json.loads`` gives
        them back), so the frame writes to CSV and Parquet alike. A coin that
        could not be backtested has one row per model with an empty ``window``
        and its ``error``.
        """
        import pandas as pd

        columns = record_columns(self.levels)
        labels = [level_label(level) for level in self.levels]
        bounds = [f"{side}_{label}" for label in labels for side in ("lo", "hi")]
        as_json = ["forecast", "actual", "abs_errors", *bounds, "pit", "coverage_grid"]
        rows = []
        for record in self.records:
            row = {column: record.get(column) for column in columns}
            for column in as_json:
                if row[column] is not None:
                    row[column] = json.dumps(row[column])
            rows.append(row)
        frame = pd.DataFrame(rows, columns=columns)
        integers = ("window", "cutoff", "horizon", "step", "windows_used", "windows_requested", "n_points")
        floats = (
            "last_value",
            *METRICS,
            "mase_scale",
            "crps",
            "origin_volatility",
            *(f"{kind}_{label}" for label in labels for kind in ("coverage", "width", "winkler")),
        )
        return frame.astype({**dict.fromkeys(integers, "Int64"), **dict.fromkeys(floats, "float64")})

    def _ok_frame(self):
        """The ok records' metrics as floats (an undefined MASE is NaN)."""
        import pandas as pd

        columns = ["coin", "model", "window", *METRICS, "mase_scale", "abs_errors"]
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in self.ok], columns=columns)
        return frame.astype(dict.fromkeys((*METRICS, "mase_scale"), "float64"))

    def _model_order(self) -> list[str]:
        return list(dict.fromkeys([*self.models, *(r["model"] for r in self.records)]))

    def summary(self):
        """Per model: how many coins and windows succeeded, the metrics' median and mean, and how often it beats naive.

        Medians and means are over every successful (coin, window). The
        benchmark comparison is per coin: a model beats naive on a coin when its
        mean MASE over the windows both succeeded on is lower than naive's
        over the same windows. ``beats_naive_share`` is ``beats_naive_coins``
        over ``compared_coins``; it is NaN for naive itself.

        Returns:
            A DataFrame, one row per model in run order, with ``model, coins,
            windows, failed``, ``median_<metric>`` and ``mean_<metric>`` for each
            metric, ``beats_naive_coins``, ``compared_coins``, ``beats_naive_share``.
        """
        import pandas as pd

        ok = self._ok_frame()
        failed = pd.Series([r["model"] for r in self.failed], dtype=object).value_counts()
        per_coin_window = ok.dropna(subset=["mase"])
        naive = per_coin_window[per_coin_window["model"] == BENCHMARK][["coin", "window", "mase"]]
        rows = []
        for model in self._model_order():
            part = ok[ok["model"] == model]
            row: dict[str, Any] = {
                "model": model,
                "coins": int(part["coin"].nunique()),
                "windows": len(part),
                "failed": int(failed.get(model, 0)),
            }
            for metric in METRICS:
                row[f"median_{metric}"] = part[metric].median()
                row[f"mean_{metric}"] = part[metric].mean()
            mine = per_coin_window[per_coin_window["model"] == model][["coin", "window", "mase"]]
            paired = mine.merge(naive, on=["coin", "window"], suffixes=("", "_naive"))
            by_coin = paired.groupby("coin")[["mase", "mase_naive"]].mean()
            beats = int((by_coin["mase"] < by_coin["mase_naive"]).sum())
            compared = len(by_coin)
            row["beats_naive_coins"] = beats
            row["compared_coins"] = compared
            row["beats_naive_share"] = beats / compared if compared and model != BENCHMARK else float("nan")
            rows.append(row)
        columns = [
            "model",
            "coins",
            "windows",
            "failed",
            *(f"{stat}_{metric}" for metric in METRICS for stat in ("median", "mean")),
            "beats_naive_coins",
            "compared_coins",
            "beats_naive_share",
        ]
        return pd.DataFrame(rows, columns=columns)

    def by_horizon(self):
        """Per model and forecast step (1 = the day after the cutoff): how the error grows with the horizon.

        Returns:
            A DataFrame with ``model, step, n, mean_abs_error, median_abs_error,
            mean_scaled_error, median_scaled_error``. The scaled error is the
            step's absolute error over the window's MASE scale; its mean over the
            steps of a window is that window's MASE. Raw absolute errors mix
            price scales across coins, so compare models on the scaled columns.
        """
        import pandas as pd

        ok = self._ok_frame()
        rows = []
        for record in ok.itertuples(index=False):
            scale = record.mase_scale
            for step, error in enumerate(record.abs_errors, start=1):
                scaled = error / scale if scale and np.isfinite(scale) else float("nan")
                rows.append((record.model, step, error, scaled))
        steps = pd.DataFrame(rows, columns=["model", "step", "abs_error", "scaled_error"])
        order = {model: index for index, model in enumerate(self._model_order())}
        grouped = (
            steps.groupby(["model", "step"], sort=False)
            .agg(
                n=("abs_error", "size"),
                mean_abs_error=("abs_error", "mean"),
                median_abs_error=("abs_error", "median"),
                mean_scaled_error=("scaled_error", "mean"),
                median_scaled_error=("scaled_error", "median"),
            )
            .reset_index()
        )
        grouped = grouped.sort_values(["model", "step"], key=lambda c: c.map(order) if c.name == "model" else c)
        return grouped.reset_index(drop=True)

    def per_coin(self):
        """Per coin and model: windows that succeeded and the mean MASE, sMAPE and directional accuracy.

        Returns:
            A DataFrame with ``coin, model, windows, mean_mase, mean_smape,
            mean_directional_accuracy``, coins in run order.
        """
        ok = self._ok_frame()
        table = ok.groupby(["coin", "model"], sort=False).agg(
            windows=("window", "size"),
            mean_mase=("mase", "mean"),
            mean_smape=("smape", "mean"),
            mean_directional_accuracy=("directional_accuracy", "mean"),
        )
        return table.reset_index()

    def interval_summary(self):
        """Per model and level: coverage, log width, log Winkler score and CRPS, each also against naive.

        See ``comparison.interval_summary``.
        """
        return comparison.interval_summary(self.records, self._model_order(), self.levels)

    def by_regime(self):
        """Coverage per model, level and volatility tercile at the origin (``comparison.by_regime``)."""
        return comparison.by_regime(self.records, self._model_order(), self.levels)

    def significance(self):
        """Diebold-Mariano (HLN) and sign tests against naive, per model and loss (``comparison.significance``)."""
        return comparison.significance(self.records, self._model_order(), self.levels, self.horizon, self.step)

    def calibration(self):
        """Nominal against observed coverage per model over the level grid (``comparison.calibration``)."""
        return comparison.calibration(self.records, self._model_order())

    def verdicts(self):
        """Each model's verdict in words, for its intervals and its point forecast (``comparison.verdicts``)."""
        return comparison.verdicts(self.records, self._model_order(), self.levels, self.horizon, self.step)

    def manifest(self) -> dict[str, Any]:
        """What is needed to repeat the run: the request, the data's hash, seeds, parameters and library versions."""
        seeds = {model: values["seed"] for model, values in self.params.items() if "seed" in values}
        return {
            "kind": "backtest",
            "models": self.models,
            "params": self.params,
            "seeds": seeds,
            "horizon": self.horizon,
            "windows": self.windows,
            "step": self.step,
            "levels": list(self.levels),
            "quick": self.quick,
            "coins": self.coins,
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "transfer": self.transfer,
            "data_path": self.data_path,
            "data_filters": self.data_filters,
            "data_sha256": self.data_hash,
            "command": self.command,
            "started_at": self.started_at,
            "seconds": self.seconds,
            "records": len(self.records),
            "failed": len(self.failed),
            "versions": library_versions(),
        }

    def write(self, path: str | Path) -> Path:
        """Write the records; the format follows the extension (.csv, .json, .parquet).

        CSV and Parquet hold ``to_frame()``; JSON holds ``{"manifest", "records"}``
        with the lists as lists. A manifest is written beside it as
        ``<path>.manifest.json``.

        Raises:
            InvalidParameterError: an unsupported extension.
        """
        path = Path(path)
        check_output_path(path)
        manifest = self.manifest()
        return write_with_manifest(path, manifest, {"manifest": manifest, "records": self.records}, self.to_frame)


def check_output_path(path: str | Path) -> None:
    """Reject an output file whose extension ``BacktestRun.write`` cannot write, before a run starts.

    Raises:
        InvalidParameterError: the extension is not .csv, .json or .parquet.
    """
    name = Path(path).name
    if Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise InvalidParameterError(
            f"cannot write results to {name!r}: use a file ending in {', '.join(OUTPUT_FORMATS)}"
        )
