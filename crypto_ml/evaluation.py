"""Walk-forward backtests: every model's forecasts scored against what happened, and against the random walk.

For each coin, a backtest picks ``windows`` cutoffs rolling forward so that the
last test period ends at the last price (rolling-origin evaluation, as in
statsforecast's ``cross_validation``). At each cutoff it fits each model on the
prices before the cutoff, forecasts ``horizon`` steps and scores the forecast
against the prices that followed. The random walk (``naive``) always runs
too: for daily crypto prices it is the benchmark to beat.

No look-ahead, by construction: every fit gets a fresh model object and its own
copy of ``prices[:cutoff]``. A copy, not a slice: a numpy slice is a view
whose ``.base`` is the whole series, so a model handed a view could read the
test period. Models that scale their inputs do it inside ``fit``, on what
they were given.

Records are JSON-safe dicts, one per (coin, model, window), so the same plain
function runs in the local process pool and behind the broker. A model that
fails on one window is a ``failed`` record for that window; a coin too short
for any window is a ``failed`` record per model with ``window`` None. A metric
that is undefined is None in the record, and ``note`` says why.

Metrics (``actual`` a, ``forecast`` f, over the ``horizon`` steps of a window):

* ``mae``: mean |f - a|, in the coin's price units.
* ``rmse``: sqrt(mean (f - a)^2), in price units; punishes large misses.
* ``smape``: mean of 200 |f - a| / (|a| + |f|), 0 to 200; 0/0 counts as 0.
* ``mase``: mae divided by the mean absolute one-day change of the training
  prices (the in-sample one-step random walk's error). Scale-free, so coins
  priced 1e-8 and 4,000 compare; below 1, the forecast erred less than a
  typical day's move.
* ``directional_accuracy``: the share of steps whose forecast lies on the same
  side of the last training price as the actual (both flat counts as the same
  side). The random walk forecasts no move at all, so it scores 0 unless the
  price stays exactly flat.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import CryptoMLError, DataFormatError, InvalidParameterError, SeriesTooShortError
from .records import failure_record
from .references import load_dated_series
from .models import get_model, resolve_name
from .models.base import validate_horizon, validate_series
from .results import RecordsMixin, library_versions, write_with_manifest

__all__ = [
    "BENCHMARK",
    "METRICS",
    "MIN_TRAIN_POINTS",
    "RECORD_COLUMNS",
    "BacktestRun",
    "backtest_batch",
    "backtest_series",
    "check_output_path",
    "coin_failures",
    "date_windows",
    "directional_accuracy",
    "library_versions",
    "mae",
    "mase",
    "naive_scale",
    "rmse",
    "rolling_origin_cutoffs",
    "smape",
    "validate_request",
    "with_benchmark",
]

log = logging.getLogger(__name__)

#: The model every other one is compared with; always part of a backtest run.
BENCHMARK = "naive"

#: Per-window metrics, in the order tables show them.
METRICS = ("mae", "rmse", "smape", "mase", "directional_accuracy")

#: The fewest training prices any window gets: the MASE scale is the mean
#: one-day change of the training prices, which needs two of them.
MIN_TRAIN_POINTS = 2

OUTPUT_FORMATS = (".csv", ".json", ".parquet")

#: Columns of ``BacktestRun.to_frame``, one row per (coin, model, window).
RECORD_COLUMNS = [
    "coin", "model", "window", "status", "cutoff", "cutoff_date", "horizon", "step", "windows_used",
    "windows_requested", "n_points", "last_value", *METRICS, "mase_scale", "forecast", "actual", "abs_errors",
    "note", "error_type", "error",
]
_LIST_COLUMNS = ("forecast", "actual", "abs_errors")

_FLAT_SCALE_NOTE = ("mase undefined: the training prices never change, so the in-sample random walk's "
                    "error (the MASE scale) is 0")


# --- metrics ---------------------------------------------------------------


def _pair(actual: Any, forecast: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.ndim != 1 or a.shape != f.shape or a.size == 0:
        raise InvalidParameterError(
            f"actual and forecast must be non-empty 1-D arrays of the same length, got shapes {a.shape} "
            f"and {f.shape}")
    return a, f


def mae(actual: Any, forecast: Any) -> float:
    """Mean absolute error.

    Args:
        actual: The observed values.
        forecast: The forecast values, same length.

    Returns:
        mean |forecast - actual|.

    Raises:
        InvalidParameterError: the arrays are empty, not 1-D or of different lengths.
    """
    a, f = _pair(actual, forecast)
    return float(np.mean(np.abs(f - a)))


def rmse(actual: Any, forecast: Any) -> float:
    """Root mean squared error: sqrt(mean (forecast - actual)^2).

    Raises:
        InvalidParameterError: the arrays are empty, not 1-D or of different lengths.
    """
    a, f = _pair(actual, forecast)
    return float(np.sqrt(np.mean((f - a) ** 2)))


def smape(actual: Any, forecast: Any) -> float:
    """Symmetric mean absolute percentage error on the 0-200 scale.

    Each step contributes 200 |f - a| / (|a| + |f|); a step where both are 0
    was forecast exactly and contributes 0 (rather than the undefined 0/0).

    Raises:
        InvalidParameterError: the arrays are empty, not 1-D or of different lengths.
    """
    a, f = _pair(actual, forecast)
    denominator = np.abs(a) + np.abs(f)
    ratio = np.divide(np.abs(f - a), denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(200.0 * np.mean(ratio))


def naive_scale(train: Any) -> float:
    """The MASE denominator: mean |y[t] - y[t-1]| over the training prices.

    Returns:
        The in-sample one-step random walk's mean absolute error; nan when
        ``train`` has fewer than two values.
    """
    y = np.asarray(train, dtype=np.float64).reshape(-1)
    if y.size < 2:
        return float("nan")
    return float(np.mean(np.abs(np.diff(y))))


def mase(actual: Any, forecast: Any, train: Any) -> float:
    """Mean absolute scaled error: MAE over the in-sample one-step naive MAE of ``train``.

    Args:
        actual: The observed values of the test period.
        forecast: The forecast values, same length.
        train: The training prices the forecast was made from, oldest first.

    Returns:
        The scaled error; nan when the scale is 0 (flat training prices) or
        undefined (fewer than two training prices), because no finite number
        would compare with other windows.

    Raises:
        InvalidParameterError: ``actual`` and ``forecast`` do not pair up.
    """
    error = mae(actual, forecast)
    scale = naive_scale(train)
    if not np.isfinite(scale) or scale == 0:
        return float("nan")
    return error / scale


def directional_accuracy(actual: Any, forecast: Any, last_value: float) -> float:
    """Share of steps where the forecast moved the same way as the actual from the last training price.

    Args:
        actual: The observed values of the test period.
        forecast: The forecast values, same length.
        last_value: The last training price, the origin of both moves.

    Returns:
        The share, 0 to 1, of steps with sign(forecast - last) == sign(actual - last).

    Raises:
        InvalidParameterError: ``actual`` and ``forecast`` do not pair up.
    """
    a, f = _pair(actual, forecast)
    return float(np.mean(np.sign(f - last_value) == np.sign(a - last_value)))


# --- windows ---------------------------------------------------------------


def _positive_int(value: Any, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(f"{name} must be an integer >= 1, got {value!r}; {hint}")
    return int(value)


def rolling_origin_cutoffs(
    n_points: int, horizon: int, windows: int, step: int | None = None, *, min_train: int = MIN_TRAIN_POINTS
) -> list[int]:
    """Cutoffs of a walk-forward backtest: window ``k`` trains on ``[:cutoff_k]`` and tests on the next ``horizon``.

    The last window's test period ends at the last point; earlier windows
    start ``step`` points apart. When the series cannot hold every requested
    window, the ones that fit are returned (the most recent ones) and the
    shortfall is logged; callers record ``len(result)`` as the windows used.

    Args:
        n_points: Length of the series.
        horizon: Steps each window forecasts and is scored on.
        windows: How many windows are wanted.
        step: Points between consecutive cutoffs; None uses ``horizon``, so
            test periods do not overlap.
        min_train: The fewest training points any window may have.

    Returns:
        Cutoffs in increasing order: the number of training points of each window.

    Raises:
        InvalidParameterError: ``horizon``, ``windows``, ``step`` or ``min_train`` is not an integer >= 1.
        SeriesTooShortError: not even one window fits; the message says how many points are needed.
    """
    horizon = validate_horizon(horizon)
    windows = _positive_int(windows, "windows", "ask for at least one backtest window")
    step = horizon if step is None else _positive_int(step, "step", "leave it out to step by the horizon")
    min_train = _positive_int(min_train, "min_train", "a model needs at least one point to train on")
    n_points = int(n_points)
    room = n_points - horizon - min_train
    if room < 0:
        raise SeriesTooShortError(
            f"a backtest with horizon {horizon} needs at least {min_train + horizon} points ({min_train} to train "
            f"on and {horizon} to test), the series has {n_points}; use a shorter --horizon or a longer history"
        )
    fits = room // step + 1
    used = min(windows, fits)
    if used < windows:
        log.info("only %d of %d windows fit in %d points (horizon %d, step %d, min_train %d)",
                 used, windows, n_points, horizon, step, min_train)
    last = n_points - horizon
    return [last - back * step for back in range(used - 1, -1, -1)]


# --- running a backtest ------------------------------------------------------


def with_benchmark(models: Sequence[str]) -> list[str]:
    """The models with the benchmark (``naive``) first if it was not asked for; duplicates dropped."""
    ordered = list(dict.fromkeys(models))
    return ordered if BENCHMARK in ordered else [BENCHMARK, *ordered]


def validate_request(
    models: str | Sequence[str],
    horizon: Any,
    windows: Any,
    step: Any = None,
    params: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[str], int, int, int, dict[str, dict[str, Any]]]:
    """Check a backtest request up front, before anything is sent to workers.

    Args:
        models: Model names (or one comma-separated string); aliases are resolved.
        horizon: Steps per window, >= 1.
        windows: Windows per coin, >= 1.
        step: Points between cutoffs, >= 1; None means ``horizon``.
        params: ``{model: {parameter: value}}``.

    Returns:
        ``(models with the benchmark, horizon, windows, step, params by resolved model name)``.

    Raises:
        UnknownModelError: a model name is not registered (every name is checked).
        InvalidParameterError: a bad horizon, windows or step, no models, parameters for a
            model that is not in the run, or a parameter a model does not accept.
    """
    if isinstance(models, str):
        models = [name for name in models.split(",") if name.strip()]
    if not models:
        raise InvalidParameterError("no models to backtest; name at least one, e.g. --models drift,linear")
    names = with_benchmark([resolve_name(name) for name in models])
    horizon = validate_horizon(horizon)
    windows = _positive_int(windows, "windows", "ask for at least one backtest window")
    step = horizon if step is None else _positive_int(step, "step", "leave it out to step by the horizon")
    resolved: dict[str, dict[str, Any]] = {}
    for name, values in (params or {}).items():
        key = resolve_name(name)
        if key not in names:
            raise InvalidParameterError(
                f"parameters given for {name!r}, which is not among the models ({', '.join(names)}); "
                f"add it to the models or drop its parameters")
        if not isinstance(values, dict):
            raise InvalidParameterError(f"parameters for {name!r} must be a mapping of name to value, got {values!r}")
        resolved[key] = dict(values)
        get_model(key, **resolved[key])  # rejects a parameter the model does not accept
    return names, horizon, windows, step, resolved


def _iso_dates(dates: Any, n_points: int) -> list[str]:
    try:
        days = np.asarray(dates, dtype="datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"dates must be ISO dates (YYYY-MM-DD) or date objects: {exc}") from None
    if days.shape != (n_points,):
        raise DataFormatError(f"{days.size} dates were given for {n_points} prices; give one date per price")
    return days.astype(str).tolist()


def _failed(base: dict[str, Any], coin: str, model: str, error: BaseException | str) -> dict[str, Any]:
    return {**base, **failure_record(coin, model, error)}


def backtest_series(
    coin: str,
    prices: Any,
    models: Sequence[str],
    horizon: int,
    windows: int,
    step: int | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    dates: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Walk-forward backtest of each model on one price series.

    Every window of every model gets a fresh model object fitted on a fresh
    copy of ``prices[:cutoff]``; the prices after the cutoff are only used to
    score. All models get the same windows: the earliest cutoff leaves enough
    training points for the most demanding model (its ``min_points``).

    Args:
        coin: The coin's name, echoed in every record.
        prices: 1-D prices, oldest first.
        models: Registered model names.
        horizon: Steps each window forecasts.
        windows: Windows wanted; fewer are used when the series is short
            (``windows_used`` in each record says how many).
        step: Points between cutoffs; None uses ``horizon``.
        params: ``{model: {parameter: value}}`` constructor arguments.
        dates: One date per price (ISO strings or date objects), to date the
            windows; ``cutoff_date`` is the date of the last training price.

    Returns:
        One record per (model, window), models in the given order and windows
        oldest first: ``status: "ok"`` with the metrics, ``forecast``,
        ``actual`` and ``abs_errors``, or ``status: "failed"`` with
        ``error_type`` and ``error``. A series that cannot be backtested at
        all (too short, not finite) gives one failed record per model with
        ``window`` None. Never raises for a bad series or a failing model.
    """
    if isinstance(models, str):
        models = [models]
    params = params or {}
    base: dict[str, Any] = {"coin": coin, "window": None, "cutoff": None, "cutoff_date": None,
                            "horizon": horizon, "step": step, "windows_used": 0, "windows_requested": windows,
                            "n_points": None}
    try:
        horizon = validate_horizon(horizon)
        step = horizon if step is None else step
        y = validate_series(prices, 1, f"backtest of {coin}")
        base.update(horizon=horizon, step=step, n_points=int(y.size))
        days = _iso_dates(dates, y.size) if dates is not None else None
        min_train = max([MIN_TRAIN_POINTS, *(_min_points(name, params) for name in models)])
        cutoffs = rolling_origin_cutoffs(y.size, horizon, windows, step, min_train=min_train)
    except CryptoMLError as exc:
        return [_failed({**base, "model": name}, coin, name, exc) for name in models]
    except Exception as exc:  # noqa: BLE001 - one coin's failure must not sink the batch
        log.warning("unexpected error preparing the backtest of %s", coin, exc_info=True)
        return [_failed({**base, "model": name}, coin, name, exc) for name in models]

    base["windows_used"] = len(cutoffs)
    records = []
    for name in models:
        for window, cutoff in enumerate(cutoffs, start=1):
            where = {**base, "model": name, "window": window, "cutoff": cutoff,
                     "cutoff_date": days[cutoff - 1] if days else None}
            records.append(_backtest_window(where, y, name, params.get(name) or {}))
    return records


def _min_points(name: str, params: dict[str, dict[str, Any]]) -> int:
    """The fewest points ``name`` fits on; a model that cannot be built fails in its own records instead."""
    try:
        return int(get_model(name, **(params.get(name) or {})).min_points)
    except CryptoMLError:
        return MIN_TRAIN_POINTS


def _backtest_window(where: dict[str, Any], y: np.ndarray, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fit ``name`` on ``y[:cutoff]`` (a copy) and score its forecast against the next ``horizon`` prices."""
    coin, cutoff, horizon = where["coin"], where["cutoff"], where["horizon"]
    try:
        model = resolve_name(name)
        where["model"] = model
        estimator = get_model(model, **params)
        forecast = estimator.fit(y[:cutoff].copy()).predict(horizon)
        if not np.all(np.isfinite(forecast)):
            raise CryptoMLError(f"{model} produced a non-finite forecast for {coin} at window {where['window']}")
    except CryptoMLError as exc:
        return _failed(where, coin, where["model"], exc)
    except Exception as exc:  # noqa: BLE001 - one window's failure stays in its record
        log.warning("unexpected error backtesting %s with %s at window %s", coin, name, where["window"],
                    exc_info=True)
        return _failed(where, coin, where["model"], exc)

    # Scored against y itself, never the array the model held: a model may have changed its copy.
    actual = y[cutoff : cutoff + horizon]
    train = y[:cutoff]
    last_value = float(train[-1])
    scale = naive_scale(train)
    scaled = mase(actual, forecast, train)
    return {
        **where,
        "status": "ok",
        "last_value": last_value,
        "mae": mae(actual, forecast),
        "rmse": rmse(actual, forecast),
        "smape": smape(actual, forecast),
        "mase": scaled if np.isfinite(scaled) else None,
        "directional_accuracy": directional_accuracy(actual, forecast, last_value),
        "mase_scale": scale if np.isfinite(scale) else None,
        "forecast": forecast.tolist(),
        "actual": actual.tolist(),
        "abs_errors": np.abs(forecast - actual).tolist(),
        "note": None if np.isfinite(scaled) else _FLAT_SCALE_NOTE,
    }


def backtest_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Backtest every series of a batch: the plain task function behind ``crypto_ml.backtest_batch``.

    Args:
        payload: ``{"models": [...], "params": {model: {...}}, "horizon": int,
            "windows": int, "step": int | None, "series": [...]}`` where each
            series is ``{"coin", "prices", "dates"?, "last_date"?}`` (inline), or
            just ``{"coin"}`` when the payload also has ``"data"``: a dataset
            reference from ``references.dataset_reference`` (the worker then
            reads prices and dates itself and checks the data's hash).

    Returns:
        Every series' records, in the payload's order (see ``backtest_series``).
    """
    models = list(payload["models"])
    params = payload.get("params") or {}
    records: list[dict[str, Any]] = []
    for item in payload["series"]:
        coin = item["coin"]
        if "prices" in item:
            prices, dates = item["prices"], item.get("dates")
        else:
            try:
                prices, dates = load_dated_series(payload["data"], coin)
            except CryptoMLError as exc:
                records.extend(coin_failures(coin, models, exc, payload))
                continue
        records.extend(backtest_series(coin, prices, models, payload["horizon"], payload["windows"],
                                       payload.get("step"), params, dates))
    return records


def coin_failures(coin: str, models: Sequence[str], error: BaseException | str, request: dict[str, Any],
                  error_type: str | None = None) -> list[dict[str, Any]]:
    """One failed record per model for a coin that could not be backtested at all (``window`` None)."""
    base = {"coin": coin, "window": None, "cutoff": None, "cutoff_date": None, "horizon": request.get("horizon"),
            "step": request.get("step"), "windows_used": 0, "windows_requested": request.get("windows"),
            "n_points": None}
    return [{**base, **failure_record(coin, name, error, error_type)} for name in models]


def date_windows(records: list[dict[str, Any]], dates: Sequence[str]) -> None:
    """Fill in ``cutoff_date`` (the date of the last training price) where a record lacks it.

    Inline payloads carry prices only, so the producer dates the windows from
    its own copy of the data after the workers return.
    """
    for record in records:
        if record.get("cutoff") and not record.get("cutoff_date"):
            record["cutoff_date"] = dates[record["cutoff"] - 1]


# --- the run and its summaries ----------------------------------------------


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

    def to_frame(self):
        """One row per (coin, model, window), columns ``RECORD_COLUMNS``.

        ``forecast``, ``actual`` and ``abs_errors`` are JSON strings
        (``json.loads`` gives the list back), so the frame writes to CSV and
        Parquet alike. A coin that could not be backtested has one row per
        model with an empty ``window`` and its ``error``.
        """
        import pandas as pd

        rows = []
        for record in self.records:
            row = {column: record.get(column) for column in RECORD_COLUMNS}
            for column in _LIST_COLUMNS:
                if row[column] is not None:
                    row[column] = json.dumps(row[column])
            rows.append(row)
        frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
        integers = ("window", "cutoff", "horizon", "step", "windows_used", "windows_requested", "n_points")
        floats = ("last_value", *METRICS, "mase_scale")
        return frame.astype({**{c: "Int64" for c in integers}, **{c: "float64" for c in floats}})

    def _ok_frame(self):
        """The ok records' metrics as floats (an undefined MASE is NaN)."""
        import pandas as pd

        columns = ["coin", "model", "window", *METRICS, "mase_scale", "abs_errors"]
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in self.ok], columns=columns)
        return frame.astype({c: "float64" for c in (*METRICS, "mase_scale")})

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
            row: dict[str, Any] = {"model": model, "coins": int(part["coin"].nunique()), "windows": len(part),
                                   "failed": int(failed.get(model, 0))}
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
        columns = ["model", "coins", "windows", "failed",
                   *(f"{stat}_{metric}" for metric in METRICS for stat in ("median", "mean")),
                   "beats_naive_coins", "compared_coins", "beats_naive_share"]
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
        grouped = steps.groupby(["model", "step"], sort=False).agg(
            n=("abs_error", "size"),
            mean_abs_error=("abs_error", "mean"),
            median_abs_error=("abs_error", "median"),
            mean_scaled_error=("scaled_error", "mean"),
            median_scaled_error=("scaled_error", "median"),
        ).reset_index()
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
            f"cannot write results to {name!r}: use a file ending in {', '.join(OUTPUT_FORMATS)}")
