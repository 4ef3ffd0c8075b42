"""Rolling-origin backtests: every model fitted on the past of each origin and scored on what followed.

For each coin, a backtest picks ``windows`` cutoffs rolling forward so that the
last test period ends at the last price (rolling-origin evaluation, as in
statsforecast's ``cross_validation``). At each cutoff it fits each model on the
prices before the cutoff, forecasts ``horizon`` steps with prediction
intervals and scores them against the prices that followed. The random walk
(``naive``) always runs too: for daily crypto prices its point forecast is the
benchmark to beat, and its interval (the last price times the empirical
quantiles of past k-day log returns) is the benchmark interval.

No look-ahead, by construction: every fit gets a fresh model object and its own
copy of ``prices[:cutoff]``. A copy, not a slice: a numpy slice is a view
whose ``.base`` is the whole series, so a model handed a view could read the
test period. Models that scale their inputs do it inside ``fit``, on what
they were given.

Each window asks the model for its intervals once, at the requested levels
and the fixed ``CRPS_LEVELS`` together; the grid's bounds and the point (as
the median) are the quantiles the CRPS and the PIT are estimated from, so
every model is scored on the same grid whatever levels a run reports.

Records are JSON-safe dicts, one per (coin, model, window), so the same plain
function runs in the local process pool and behind the broker. A model that
fails on one window is a ``failed`` record for that window; a coin too short
for any window is a ``failed`` record per model with ``window`` None. A metric
that is undefined is None in the record, and ``note`` says why. The metrics
themselves are in ``metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import CryptoMLError, DataFormatError, InvalidParameterError, SeriesTooShortError
from ..models import get_model, resolve_name
from ..models.base import Forecast, level_label, validate_horizon, validate_levels, validate_series
from ..models.intervals import central_quantiles
from ..records import failure_record
from ..references import load_dated_series
from .metrics import (
    absolute_errors,
    coverage,
    crps_from_quantiles,
    directional_accuracy,
    interval_width,
    mae,
    mase,
    naive_scale,
    origin_volatility,
    pit_values,
    rmse,
    smape,
    winkler_score,
)

__all__ = [
    "BENCHMARK",
    "CRPS_LEVELS",
    "METRICS",
    "MIN_TRAIN_POINTS",
    "backtest_batch",
    "backtest_series",
    "coin_failures",
    "date_windows",
    "interval_metrics",
    "rolling_origin_cutoffs",
    "validate_request",
    "with_benchmark",
]

log = logging.getLogger(__name__)

#: The model every other one is compared with; always part of a backtest run.
BENCHMARK = "naive"

#: Per-window point metrics, in the order tables show them.
METRICS = ("mae", "rmse", "smape", "mase", "directional_accuracy")

#: The fewest training prices any window gets: the MASE scale is the mean
#: one-day change of the training prices, and the naive interval one observed return; both need two.
MIN_TRAIN_POINTS = 2

#: The central interval levels (percent) whose bounds, with the point as the
#: median, form the quantile grid of the CRPS and the PIT: tau = 0.01, 0.025,
#: 0.05, 0.10, 0.15, ..., 0.90, 0.95, 0.975, 0.99. Every tenth for the body of
#: the distribution, and 95 and 98 so the tails, where crypto's large moves
#: land, are scored too. Fixed, so CRPS compares across runs whatever --levels says.
CRPS_LEVELS: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98)

_FLAT_SCALE_NOTE = (
    "mase undefined: the training prices never change, so the in-sample random walk's error (the MASE scale) is 0"
)


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
        log.info(
            "only %d of %d windows fit in %d points (horizon %d, step %d, min_train %d)",
            used,
            windows,
            n_points,
            horizon,
            step,
            min_train,
        )
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
                f"add it to the models or drop its parameters"
            )
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
    levels: Any = None,
) -> list[dict[str, Any]]:
    """Walk-forward backtest of each model on one price series, point forecasts and intervals.

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
        levels: Interval levels in percent (a sequence or ``"80,95"``); None
            means ``DEFAULT_LEVELS``.

    Returns:
        One record per (model, window), models in the given order and windows
        oldest first: ``status: "ok"`` with the point metrics, ``forecast``,
        ``actual``, ``abs_errors``, the interval scores of ``interval_metrics``
        and ``origin_volatility`` (the std of the last 30 daily log returns
        before the cutoff), or ``status: "failed"`` with ``error_type`` and
        ``error``. A series that cannot be backtested at
        all (too short, not finite) gives one failed record per model with
        ``window`` None. Never raises for a bad series or a failing model.
    """
    if isinstance(models, str):
        models = [models]
    params = params or {}
    base: dict[str, Any] = {
        "coin": coin,
        "window": None,
        "cutoff": None,
        "cutoff_date": None,
        "horizon": horizon,
        "step": step,
        "windows_used": 0,
        "windows_requested": windows,
        "n_points": None,
    }
    try:
        levels = validate_levels(levels)
        horizon = validate_horizon(horizon)
        step = horizon if step is None else step
        y = validate_series(prices, 1, f"backtest of {coin}")
        base.update(horizon=horizon, step=step, n_points=int(y.size))
        days = _iso_dates(dates, y.size) if dates is not None else None
        min_train = max([MIN_TRAIN_POINTS, *(_min_points(name, params) for name in models)])
        cutoffs = rolling_origin_cutoffs(y.size, horizon, windows, step, min_train=min_train)
    except CryptoMLError as exc:
        return [_failed({**base, "model": name}, coin, name, exc) for name in models]
    except Exception as exc:  # one coin's failure must not sink the batch
        log.warning("unexpected error preparing the backtest of %s", coin, exc_info=True)
        return [_failed({**base, "model": name}, coin, name, exc) for name in models]

    base["windows_used"] = len(cutoffs)
    records = []
    for name in models:
        for window, cutoff in enumerate(cutoffs, start=1):
            where = {
                **base,
                "model": name,
                "window": window,
                "cutoff": cutoff,
                "cutoff_date": days[cutoff - 1] if days else None,
            }
            records.append(_backtest_window(where, y, name, params.get(name) or {}, levels))
    return records


def _min_points(name: str, params: dict[str, dict[str, Any]]) -> int:
    """The fewest points ``name`` fits on; a model that cannot be built fails in its own records instead."""
    try:
        return int(get_model(name, **(params.get(name) or {})).min_points)
    except CryptoMLError:
        return MIN_TRAIN_POINTS


def _backtest_window(
    where: dict[str, Any], y: np.ndarray, name: str, params: dict[str, Any], levels: tuple[int | float, ...]
) -> dict[str, Any]:
    """Fit ``name`` on ``y[:cutoff]`` (a copy); score its forecast and intervals on the next ``horizon`` prices."""
    coin, cutoff, horizon = where["coin"], where["cutoff"], where["horizon"]
    try:
        model = resolve_name(name)
        where["model"] = model
        estimator = get_model(model, **params)
        # One call for the reported levels and the CRPS grid: a model's intervals may be costly (a refit per level would
        # not be), and the grid's bounds must come from the same predictive distribution as the reported ones.
        result = estimator.fit(y[:cutoff].copy()).predict_interval(horizon, levels=sorted({*levels, *CRPS_LEVELS}))
        forecast = result.point
        if not np.all(np.isfinite(forecast)):
            raise CryptoMLError(f"{model} produced a non-finite forecast for {coin} at window {where['window']}")
    except CryptoMLError as exc:
        return _failed(where, coin, where["model"], exc)
    except Exception as exc:  # one window's failure stays in its record
        log.warning("unexpected error backtesting %s with %s at window %s", coin, name, where["window"], exc_info=True)
        return _failed(where, coin, where["model"], exc)

    # Scored against y itself, never the array the model held: a model may have changed its copy.
    actual = y[cutoff : cutoff + horizon]
    train = y[:cutoff]
    last_value = float(train[-1])
    scale = naive_scale(train)
    scaled = mase(actual, forecast, train)
    volatility = origin_volatility(train)
    notes = [] if np.isfinite(scaled) else [_FLAT_SCALE_NOTE]
    try:
        scores = interval_metrics(actual, result, levels)
    except InvalidParameterError as exc:  # an actual price at or below zero has no log
        scores, notes = {}, [*notes, f"interval scores undefined: {exc}"]
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
        "abs_errors": absolute_errors(actual, forecast).tolist(),
        **scores,
        "origin_volatility": volatility if np.isfinite(volatility) else None,
        "note": "; ".join(notes) or None,
    }


def interval_metrics(actual: Any, forecast: Forecast, levels: Sequence[int | float]) -> dict[str, Any]:
    """The interval fields of a window's record, JSON-safe.

    Args:
        actual: The observed prices of the test period, shape (h,).
        forecast: The model's ``Forecast``, holding ``levels`` and every level of ``CRPS_LEVELS``.
        levels: The reported levels.

    Returns:
        For each reported level L: ``lo_L`` and ``hi_L`` (lists), ``coverage_L``,
        ``width_L`` (mean log width) and ``winkler_L`` (mean log Winkler score);
        then ``crps`` (twice the mean pinball loss over the ``CRPS_LEVELS``
        quantiles and the point as the median), ``pit`` (a list, the PIT value
        of each step on that grid) and ``coverage_grid`` (``{label: coverage}``
        at every level the forecast holds, for the calibration curve).

    Raises:
        InvalidParameterError: an actual price at or below zero, or a level the forecast lacks.
    """
    fields: dict[str, Any] = {}
    for level in levels:
        label = level_label(level)
        lower, upper = forecast.interval(level)
        fields[f"lo_{label}"] = lower.tolist()
        fields[f"hi_{label}"] = upper.tolist()
    for level in levels:
        label = level_label(level)
        lower, upper = forecast.interval(level)
        fields[f"coverage_{label}"] = coverage(actual, lower, upper)
        fields[f"width_{label}"] = interval_width(lower, upper)
        fields[f"winkler_{label}"] = winkler_score(actual, lower, upper, level)
    probabilities, rows = [0.5], [forecast.point]
    for level in CRPS_LEVELS:
        lower, upper = forecast.interval(level)
        low_tau, high_tau = central_quantiles(level)
        probabilities += [low_tau, high_tau]
        rows += [lower, upper]
    quantiles = np.vstack(rows)
    fields["crps"] = crps_from_quantiles(actual, quantiles, probabilities)
    fields["pit"] = pit_values(actual, quantiles, probabilities).tolist()
    fields["coverage_grid"] = {
        level_label(level): coverage(actual, *forecast.interval(level)) for level in forecast.levels
    }
    return fields


def backtest_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Backtest every series of a batch: the plain task function behind ``crypto_ml.backtest_batch``.

    Args:
        payload: ``{"models": [...], "params": {model: {...}}, "horizon": int,
            "windows": int, "step": int | None, "levels": [...]?, "series": [...]}``
            (no ``levels``: ``DEFAULT_LEVELS``) where each
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
        records.extend(
            backtest_series(
                coin,
                prices,
                models,
                payload["horizon"],
                payload["windows"],
                payload.get("step"),
                params,
                dates,
                payload.get("levels"),
            )
        )
    return records


def coin_failures(
    coin: str, models: Sequence[str], error: BaseException | str, request: dict[str, Any], error_type: str | None = None
) -> list[dict[str, Any]]:
    """One failed record per model for a coin that could not be backtested at all (``window`` None)."""
    base = {
        "coin": coin,
        "window": None,
        "cutoff": None,
        "cutoff_date": None,
        "horizon": request.get("horizon"),
        "step": request.get("step"),
        "windows_used": 0,
        "windows_requested": request.get("windows"),
        "n_points": None,
    }
    return [{**base, **failure_record(coin, name, error, error_type)} for name in models]


def date_windows(records: list[dict[str, Any]], dates: Sequence[str]) -> None:
    """Fill in ``cutoff_date`` (the date of the last training price) where a record lacks it.

    Inline payloads carry prices only, so the producer dates the windows from
    its own copy of the data after the workers return.
    """
    for record in records:
        if record.get("cutoff") and not record.get("cutoff_date"):
            record["cutoff_date"] = dates[record["cutoff"] - 1]
