"""How the ledger's models are doing lately: rolling scores, their trend, and drift alerts.

``ledger_report`` reads the scored forecasts whose target dates fall in a
rolling window of the last ``days`` days (ending at the latest scored target
date) and gives, per model:

* the scored forecast steps;
* the MAE relative to naive, on the same forecasts: the sum of the model's
  absolute errors over the (coin, origin date, step) triples naive also has
  scored, divided by the sum of naive's over those triples. A ratio of sums,
  not a mean of per-step ratios: a day when every price moves a lot weighs as
  much as it costs, and a step where naive was exactly right cannot divide by zero;
* per interval level, the coverage (share of actual prices inside) and the
  mean interval (Winkler) score, as ``scoring`` stored them;
* the same numbers over the previous window of equal length, and the change.

A model whose coverage at a level leaves nominal ± ``coverage_band``
percentage points, or whose relative MAE rises above ``mae_threshold``, gets
a ``DriftAlert`` that says so in words. The aggregation runs in the database
(one ``GROUP BY`` per target date and model, for points and for intervals);
the windows are sums of those daily sums, so a report reads a few rows per
model and day however many coins the ledger holds.

The report writes a table (CSV or Parquet), a plot of the rolling numbers
(PNG), and Prometheus metrics (``ledger.prometheus``).
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Select, Table, and_, case, func, select

from ..data.files import write_atomic
from ..evaluation.backtest import BENCHMARK
from ..exceptions import InvalidParameterError
from ..models.base import level_label
from .database import Ledger, database_errors
from .schema import ForecastStep, IntervalScore, Score

__all__ = ["ledger_report", "LedgerReport", "DriftAlert", "MIN_SCORED"]

FORECASTS: Table = ForecastStep.__table__  # type: ignore[assignment]
SCORES: Table = Score.__table__  # type: ignore[assignment]
INTERVAL_SCORES: Table = IntervalScore.__table__  # type: ignore[assignment]

#: Scored steps a window needs before it can raise an alert: with fewer, an 80 % coverage has a
#: sampling error (sqrt(0.8 * 0.2 / n)) above 7 points, wider than the band it is checked against.
MIN_SCORED = 30

#: Windows of history the per-day series (and the plot) cover: the current one and the one before it, whose
#: ends the trend compares. Each more would read another window of scores (the report's main cost on SQLite).
SERIES_WINDOWS = 2

# The sums the database returns per (model, params hash, target date) and, for intervals, per level.
_POINT_SUMS = ("scored", "abs_error", "paired", "paired_error", "naive_error")
_INTERVAL_SUMS = ("count", "inside", "interval_score")


@dataclass(frozen=True)
class DriftAlert:
    """A model whose rolling numbers left their bounds.

    Attributes:
        model: The model's label in the report.
        reason: ``"coverage_<L>"`` (e.g. ``coverage_80``) or ``"relative_mae"``.
        value: The rolling value (coverage as a fraction, or the MAE ratio).
        limit: The bound it crossed (same unit).
        message: The same in words, e.g. "ewma: 80 % coverage 71.2 % over 30 days, below 75 % ...".
    """

    model: str
    reason: str
    value: float
    limit: float
    message: str


@dataclass(frozen=True, eq=False)
class LedgerReport:
    """The rolling scores of every model in the ledger, as ``ledger_report`` computed them.

    Attributes:
        database: The ledger's URL, password masked.
        as_of: The last target date of the window; None when nothing is scored.
        days: The window's length in days.
        levels: The interval levels found, ascending (percent, e.g. 80.0).
        coverage_band: The band (percentage points) around nominal coverage.
        mae_threshold: The relative MAE above which a model is flagged.
        table: One row per model: see ``to_frame``.
        series: One row per (date, model): the rolling numbers of the window ending that day
            (over the days so far where the ledger is younger than a window).
        alerts: The drift alerts, model by model.
        checked: The (model, reason) pairs that had enough scored steps to be checked.
    """

    database: str
    as_of: dt.date | None
    days: int
    levels: tuple[float, ...]
    coverage_band: float
    mae_threshold: float
    table: pd.DataFrame
    series: pd.DataFrame
    alerts: tuple[DriftAlert, ...]
    checked: tuple[tuple[str, str], ...] = ()

    @property
    def window(self) -> tuple[dt.date, dt.date] | None:
        """The first and last target dates of the window (both included)."""
        if self.as_of is None:
            return None
        return self.as_of - dt.timedelta(days=self.days - 1), self.as_of

    @property
    def models(self) -> list[str]:
        return list(self.table["model"])

    def to_frame(self) -> pd.DataFrame:
        """One row per model.

        Columns: ``model``, ``params_hash``, ``window_start``, ``window_end``
        (ISO dates), ``days``; then ``scored``, ``mae``, ``relative_mae``,
        ``paired`` (steps naive also scored), and per level ``coverage_<L>``
        (a fraction) and ``interval_score_<L>``; each number also as
        ``<name>_previous`` (the window before) and ``<name>_change``
        (current minus previous).
        """
        return self.table.copy()

    def write(self, path: str | Path) -> Path:
        """Write ``to_frame`` to ``path``: CSV for ``.csv``, Parquet for ``.parquet``; atomically.

        Raises:
            InvalidParameterError: another suffix.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        frame = self.to_frame()
        if suffix == ".csv":
            data = frame.to_csv(index=False).encode()
        elif suffix in (".parquet", ".pq"):
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            data = buffer.getvalue()
        else:
            raise InvalidParameterError(
                f"cannot write the ledger report as {path.name!r}: name a .csv or .parquet file"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return path

    def plot(self, path: str | Path) -> Path:
        """Draw the rolling coverage per level and the relative MAE per model over time; PNG, written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        _plot(self).savefig(buffer, format="png", dpi=PLOT_DPI)
        write_atomic(path, buffer.getvalue())
        return path

    def prometheus(self) -> str:
        """The report in Prometheus's text exposition format (node_exporter's textfile collector reads it);
        the metrics are listed in ``ledger.prometheus``."""
        from .prometheus import exposition

        return exposition(self)


def ledger_report(
    ledger: Ledger,
    *,
    days: int = 30,
    as_of: dt.date | str | None = None,
    models: Sequence[str] | None = None,
    coverage_band: float | None = None,
    mae_threshold: float | None = None,
    min_scored: int = MIN_SCORED,
) -> LedgerReport:
    """Each model's rolling scores over the last ``days`` days of target dates, their trend, and drift alerts.

    The relative MAE is the sum of the model's absolute errors over the
    (coin, origin date, step) triples that naive also has scored, divided by
    the sum of naive's absolute errors over the same triples (1.0 for naive).

    Args:
        ledger: The open ledger.
        days: The window's length, in days of target dates.
        as_of: The window's last target date; None: the latest scored one.
        models: Report only these models (naive is read anyway, as the benchmark); None: every model.
        coverage_band: Flag a coverage outside nominal ± this many percentage points;
            None: ``CRYPTO_ML_LEDGER_COVERAGE_BAND`` (5).
        mae_threshold: Flag a relative MAE above this; None: ``CRYPTO_ML_LEDGER_MAE_THRESHOLD`` (1.10).
        min_scored: Check a number only when at least this many scored steps make it (a small
            sample's coverage is noise, not drift).

    Returns:
        The report; its table is empty when nothing in the ledger is scored.

    Raises:
        InvalidParameterError: ``days`` below 1, a bad date, or a model the ledger has no forecast of.
        LedgerError: the database cannot be read.
    """
    from ..config import get_settings

    if days < 1:
        raise InvalidParameterError(f"the report window must be at least 1 day, not {days}")
    settings = get_settings()
    band = settings.ledger_coverage_band if coverage_band is None else float(coverage_band)
    threshold = settings.ledger_mae_threshold if mae_threshold is None else float(mae_threshold)
    end = _as_date(as_of)
    wanted = None if models is None else list(dict.fromkeys(models))
    with database_errors(ledger, "reading the scores"), ledger.reading() as connection:
        if wanted is not None:
            _check_models(connection, ledger, wanted)
        if end is None:
            end = connection.execute(
                select(func.max(FORECASTS.c.target_date)).select_from(
                    FORECASTS.join(SCORES, SCORES.c.forecast_id == FORECASTS.c.id)
                )
            ).scalar()
        if end is None:
            return _empty(ledger, days, band, threshold)
        # The series shows SERIES_WINDOWS windows; the first of its days needs days - 1 more before it.
        series_start = end - dt.timedelta(days=SERIES_WINDOWS * days - 1)
        first = series_start - dt.timedelta(days=days - 1)
        points = pd.DataFrame(
            connection.execute(_point_sums(first, end, wanted)).all(),
            columns=["model", "params_hash", "target_date", *_POINT_SUMS],
        )
        intervals = pd.DataFrame(
            connection.execute(_interval_sums(first, end, wanted)).all(),
            columns=["model", "params_hash", "target_date", "level", *_INTERVAL_SUMS],
        )
    return _build(ledger.url, points, intervals, first, series_start, end, days, band, threshold, min_scored)


def _as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidParameterError(f"{value!r} is not a date; give YYYY-MM-DD") from None


def _check_models(connection: Connection, ledger: Ledger, wanted: list[str]) -> None:
    known = {row[0] for row in connection.execute(select(FORECASTS.c.model).distinct())}
    unknown = [model for model in wanted if model not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none: nothing is recorded yet"
        raise InvalidParameterError(
            f"the ledger at {ledger.url} has no forecasts of {', '.join(map(repr, unknown))}; it has: {listed}"
        )


def _in_window(first: dt.date, end: dt.date, models: list[str] | None) -> list[Any]:
    conditions = [FORECASTS.c.target_date >= first, FORECASTS.c.target_date <= end]
    if models is not None:
        conditions.append(FORECASTS.c.model.in_(models))
    return conditions


def _point_sums(first: dt.date, end: dt.date, models: list[str] | None) -> Select[Any]:
    """Per (model, params hash, target date): scored steps, their absolute errors, and the naive-paired sums."""
    # Naive's error on each (coin, origin, step): averaged, in case naive was recorded under more than one
    # params hash (it has no parameters, so every variant forecast the same).
    naive = (
        select(
            FORECASTS.c.coin,
            FORECASTS.c.origin_date,
            FORECASTS.c.step,
            func.avg(SCORES.c.abs_error).label("naive_error"),
        )
        .join(SCORES, SCORES.c.forecast_id == FORECASTS.c.id)
        .where(FORECASTS.c.model == BENCHMARK, *_in_window(first, end, None))
        .group_by(FORECASTS.c.coin, FORECASTS.c.origin_date, FORECASTS.c.step)
        .subquery("naive")
    )
    paired = naive.c.naive_error.is_not(None)
    return (
        select(
            FORECASTS.c.model,
            FORECASTS.c.params_hash,
            FORECASTS.c.target_date,
            func.count(),
            func.sum(SCORES.c.abs_error),
            func.count(naive.c.naive_error),
            func.sum(case((paired, SCORES.c.abs_error), else_=0.0)),
            func.coalesce(func.sum(naive.c.naive_error), 0.0),
        )
        .select_from(
            FORECASTS.join(SCORES, SCORES.c.forecast_id == FORECASTS.c.id).outerjoin(
                naive,
                and_(
                    naive.c.coin == FORECASTS.c.coin,
                    naive.c.origin_date == FORECASTS.c.origin_date,
                    naive.c.step == FORECASTS.c.step,
                ),
            )
        )
        .where(*_in_window(first, end, models))
        .group_by(FORECASTS.c.model, FORECASTS.c.params_hash, FORECASTS.c.target_date)
    )


def _interval_sums(first: dt.date, end: dt.date, models: list[str] | None) -> Select[Any]:
    """Per (model, params hash, target date, level): scored intervals, how many held the actual, their scores."""
    return (
        select(
            FORECASTS.c.model,
            FORECASTS.c.params_hash,
            FORECASTS.c.target_date,
            INTERVAL_SCORES.c.level,
            func.count(),
            func.sum(case((INTERVAL_SCORES.c.inside, 1), else_=0)),
            func.sum(INTERVAL_SCORES.c.interval_score),
        )
        .select_from(FORECASTS.join(INTERVAL_SCORES, INTERVAL_SCORES.c.forecast_id == FORECASTS.c.id))
        .where(*_in_window(first, end, models))
        .group_by(FORECASTS.c.model, FORECASTS.c.params_hash, FORECASTS.c.target_date, INTERVAL_SCORES.c.level)
    )


def _labels(points: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Each (model, params hash) as the report names it: the model, or ``model@hash`` when it ran with several."""
    pairs = sorted(set(zip(points["model"], points["params_hash"], strict=True)))
    variants: dict[str, int] = {}
    for model, _ in pairs:
        variants[model] = variants.get(model, 0) + 1
    # naive first: every other model is compared with it.
    ordered = sorted(pairs, key=lambda pair: (pair[0] != BENCHMARK, pair))
    return {(m, h): m if variants[m] == 1 else f"{m}@{h[:8]}" for m, h in ordered}


def _empty(ledger: Ledger, days: int, band: float, threshold: float) -> LedgerReport:
    return LedgerReport(
        database=ledger.url,
        as_of=None,
        days=days,
        levels=(),
        coverage_band=band,
        mae_threshold=threshold,
        table=pd.DataFrame(columns=["model", "params_hash", "window_start", "window_end", "days", "scored"]),
        series=pd.DataFrame(columns=["date", "model", "scored", "relative_mae"]),
        alerts=(),
    )


def _daily(frame: pd.DataFrame, columns: Iterable[str], dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Daily sums on every date of ``dates`` (0 where the database had no row)."""
    columns = list(columns)
    if frame.empty:
        return pd.DataFrame(0.0, index=dates, columns=columns)
    daily = frame.assign(target_date=pd.to_datetime(frame["target_date"])).groupby("target_date")[columns].sum()
    return daily.astype(float).reindex(dates, fill_value=0.0)


def _ratio(numerator: Any, denominator: Any) -> Any:
    """numerator / denominator, NaN where the denominator is not positive (no steps to average)."""
    if isinstance(denominator, pd.Series):
        return (numerator / denominator).where(denominator > 0)
    return numerator / denominator if denominator > 0 else math.nan


def _numbers(points: pd.Series | pd.DataFrame, intervals: dict[float, Any]) -> dict[str, Any]:
    """The report's numbers from summed points and, per level, summed intervals (a window, or rolling windows)."""
    numbers: dict[str, Any] = {
        "scored": points["scored"],
        "mae": _ratio(points["abs_error"], points["scored"]),
        "relative_mae": _ratio(points["paired_error"], points["naive_error"]),
        "paired": points["paired"],
    }
    # Rolling sums subtract as they slide: a window with no paired step can keep a residue of 1e-16.
    if isinstance(points, pd.DataFrame):
        numbers["relative_mae"] = numbers["relative_mae"].where(points["paired"] > 0)
    elif points["paired"] <= 0:
        numbers["relative_mae"] = math.nan
    for level, sums in intervals.items():
        label = level_label(level)
        numbers[f"coverage_{label}"] = _ratio(sums["inside"], sums["count"])
        numbers[f"interval_score_{label}"] = _ratio(sums["interval_score"], sums["count"])
    return numbers


def _window_numbers(
    daily_points: pd.DataFrame, daily_intervals: dict[float, pd.DataFrame], window: slice
) -> dict[str, Any]:
    """The report's numbers over the days of ``window``: exact sums, where rolling ones could leave residues."""
    return _numbers(daily_points.loc[window].sum(), {lv: d.loc[window].sum() for lv, d in daily_intervals.items()})


def _build(
    database: str,
    points: pd.DataFrame,
    intervals: pd.DataFrame,
    first: dt.date,
    series_start: dt.date,
    end: dt.date,
    days: int,
    band: float,
    threshold: float,
    min_scored: int,
) -> LedgerReport:
    dates = pd.date_range(first, end, freq="D")
    current = slice(pd.Timestamp(end - dt.timedelta(days=days - 1)), pd.Timestamp(end))
    previous = slice(pd.Timestamp(end - dt.timedelta(days=2 * days - 1)), pd.Timestamp(end - dt.timedelta(days=days)))
    levels = tuple(sorted({float(level) for level in intervals["level"]}))
    rows: list[dict[str, Any]] = []
    series_parts: list[pd.DataFrame] = []
    alerts: list[DriftAlert] = []
    checked: list[tuple[str, str]] = []
    for (model, hash_), label in _labels(points).items():
        mine = (points["model"] == model) & (points["params_hash"] == hash_)
        daily_points = _daily(points[mine], _POINT_SUMS, dates)
        mine_intervals = intervals[(intervals["model"] == model) & (intervals["params_hash"] == hash_)]
        daily_intervals = {
            level: _daily(mine_intervals[mine_intervals["level"] == level], _INTERVAL_SUMS, dates)
            for level in levels
            if (mine_intervals["level"] == level).any()
        }
        now = _window_numbers(daily_points, daily_intervals, current)
        before = _window_numbers(daily_points, daily_intervals, previous)
        row: dict[str, Any] = {
            "model": label,
            "params_hash": hash_,
            "window_start": current.start.date().isoformat(),
            "window_end": end.isoformat(),
            "days": days,
        }
        for name, value in now.items():
            row[name] = value
            row[f"{name}_previous"] = before[name]
            row[f"{name}_change"] = value - before[name]
        for name in ("scored", "paired", "scored_previous", "paired_previous", "scored_change", "paired_change"):
            row[name] = int(row[name])
        rows.append(row)
        found, tested = _drift(label, model, now, daily_intervals, current, days, band, threshold, min_scored)
        alerts.extend(found)
        checked.extend(tested)
        rolling = _numbers(
            daily_points.rolling(days, min_periods=1).sum(),
            {lv: d.rolling(days, min_periods=1).sum() for lv, d in daily_intervals.items()},
        )
        part = pd.DataFrame(rolling).loc[pd.Timestamp(series_start) :]
        series_parts.append(part.rename_axis("date").reset_index().assign(model=label))
    table = pd.DataFrame(rows)
    series = pd.concat(series_parts, ignore_index=True) if series_parts else pd.DataFrame()
    if not series.empty:
        series = series[["date", "model", *[c for c in series.columns if c not in ("date", "model")]]]
        series["scored"] = series["scored"].astype(int)
        series["paired"] = series["paired"].astype(int)
    return LedgerReport(
        database=database,
        as_of=end,
        days=days,
        levels=levels,
        coverage_band=band,
        mae_threshold=threshold,
        table=table,
        series=series,
        alerts=tuple(alerts),
        checked=tuple(checked),
    )


def _drift(
    label: str,
    model: str,
    now: dict[str, Any],
    daily_intervals: dict[float, pd.DataFrame],
    current: slice,
    days: int,
    band: float,
    threshold: float,
    min_scored: int,
) -> tuple[list[DriftAlert], list[tuple[str, str]]]:
    """The alerts of one model's current window, and the (model, reason) pairs that had enough steps to check."""
    alerts: list[DriftAlert] = []
    checked: list[tuple[str, str]] = []
    for level, daily in daily_intervals.items():
        count = int(daily.loc[current, "count"].sum())
        coverage = now[f"coverage_{level_label(level)}"]
        if count < min_scored or math.isnan(coverage):
            continue
        reason = f"coverage_{level_label(level)}"
        checked.append((label, reason))
        nominal = level / 100.0
        low, high = nominal - band / 100.0, nominal + band / 100.0
        if low <= coverage <= high:
            continue
        side, limit = ("below", low) if coverage < low else ("above", high)
        alerts.append(
            DriftAlert(
                model=label,
                reason=reason,
                value=float(coverage),
                limit=limit,
                message=(
                    f"{label}: {level_label(level)} % coverage {100 * coverage:.1f} % over {days} days, "
                    f"{side} {100 * limit:g} % ({level_label(level)} % ± {band:g} points; {count} scored steps)"
                ),
            )
        )
    relative = now["relative_mae"]
    if model != BENCHMARK and now["paired"] >= min_scored and not math.isnan(relative):
        checked.append((label, "relative_mae"))
        if relative > threshold:
            alerts.append(
                DriftAlert(
                    model=label,
                    reason="relative_mae",
                    value=float(relative),
                    limit=threshold,
                    message=(
                        f"{label}: MAE {relative:.2f} x naive's over {days} days, above {threshold:g} "
                        f"({int(now['paired'])} steps scored for both)"
                    ),
                )
            )
    return alerts, checked


# --- the plot --------------------------------------------------------------------------------------

#: Dots per inch of the plot: the backtest report's, so the figures match in size and type.
PLOT_DPI = 110
PLOT_SIZE = (10.0, 7.5)
_LEVEL_STYLES = ("-", "--", ":", "-.")


def _plot(report: LedgerReport) -> Any:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    from ..report.plots import _model_colors

    figure = Figure(figsize=PLOT_SIZE, layout="constrained")
    coverage_ax, error_ax = figure.subplots(2, 1, sharex=True)
    series = report.series
    if series.empty:
        coverage_ax.text(0.5, 0.5, "no scored forecasts in the ledger", ha="center", va="center")
        for ax in (coverage_ax, error_ax):
            ax.set_axis_off()
        return figure
    models = report.models
    colors = _model_colors(models)
    for index, level in enumerate(report.levels):
        label = level_label(level)
        style = _LEVEL_STYLES[index % len(_LEVEL_STYLES)]
        coverage_ax.axhspan(level - report.coverage_band, level + report.coverage_band, color="grey", alpha=0.12)
        coverage_ax.axhline(level, color="black", linestyle=style, linewidth=0.8)
        column = f"coverage_{label}"
        for model in models:
            part = series[series["model"] == model]
            if column in part and part[column].notna().any():
                coverage_ax.plot(
                    part["date"],
                    100 * part[column],
                    color=colors.get(model),
                    linestyle=style,
                    label=f"{model} {label} %",
                )
    coverage_ax.set_ylabel(f"coverage over {report.days} days (%)")
    coverage_ax.set_title(
        f"Rolling coverage per level (shaded: nominal ± {report.coverage_band:g} points; the line: nominal)"
    )
    coverage_ax.legend(loc="lower left", fontsize="small", ncol=2)
    coverage_ax.grid(alpha=0.3)
    error_ax.axhline(1.0, color=colors.get(BENCHMARK), linestyle="--", linewidth=1, label="naive")
    error_ax.axhline(report.mae_threshold, color="red", linestyle=":", linewidth=1, label="alert threshold")
    for model in models:
        part = series[series["model"] == model]
        if model != BENCHMARK and part["relative_mae"].notna().any():
            error_ax.plot(part["date"], part["relative_mae"], color=colors.get(model), label=model)
    error_ax.set_ylabel(f"MAE / naive's MAE over {report.days} days")
    error_ax.set_title("Rolling error relative to naive on the same forecasts (below 1 beats naive)")
    error_ax.legend(loc="upper left", fontsize="small")
    error_ax.grid(alpha=0.3)
    if report.window is not None:
        # Where the current window starts: the trend compares the numbers at the two ends of the line.
        for ax in (coverage_ax, error_ax):
            ax.axvline(pd.Timestamp(report.window[0]), color="grey", linewidth=0.8, linestyle="-.")
    locator = AutoDateLocator(maxticks=8)
    error_ax.xaxis.set_major_locator(locator)
    error_ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    figure.suptitle(f"The ledger's models, as of {report.as_of}")
    return figure
