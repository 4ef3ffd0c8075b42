"""Per-window scores: point metrics on prices, interval and distribution metrics on log prices.

Every window metric is the mean over the window's steps of a per-step score,
and the per-step scores are functions of their own (``absolute_errors``,
``inside``, ``winkler_scores``): the forecast ledger stores them one step at a
time as prices arrive, and its averages must equal a backtest's windows.

Point metrics (``actual`` a, ``forecast`` f, over the ``horizon`` steps of a window):

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

Interval and distribution metrics take prices and score them on LOG prices
(``l``, ``u``, ``y``: the log lower bound, log upper bound and log actual).
Log prices are scale-free, so a coin priced 3e-8 and one priced 4,000 pool
into one average, and a width reads as a relative spread (0.1 is about 10 %).
Each returns the mean over the steps of the window:

* ``coverage``: the share of steps with lo <= actual <= hi (the same on either scale).
* ``interval_width``: mean (u - l).
* ``winkler_score``: for level L, alpha = 1 - L/100,
  (u - l) + (2/alpha)(l - y)[y < l] + (2/alpha)(y - u)[y > u]: the width, plus
  a penalty for a miss that grows with the level's confidence. Lower is better;
  it rewards a narrow interval only when it still holds the actual.
* ``pinball_loss``: the quantile loss of one quantile forecast q at probability
  tau: tau (y - q) when y >= q, else (1 - tau)(q - y).
* ``crps_from_quantiles``: the continuous ranked probability score estimated
  from a grid of quantiles as twice the mean pinball loss over the grid (the
  CRPS is the integral of twice the pinball loss over tau in (0, 1)).
* ``pit_values``: the probability integral transform, the forecast CDF at the
  actual, interpolated linearly between the grid's quantiles; 0 below the
  lowest and 1 above the highest. A calibrated forecast gives uniform PIT values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = [
    "VOLATILITY_WINDOW",
    "absolute_errors",
    "coverage",
    "crps_from_quantiles",
    "directional_accuracy",
    "inside",
    "interval_width",
    "mae",
    "mase",
    "naive_scale",
    "origin_volatility",
    "pinball_loss",
    "pit_values",
    "rmse",
    "smape",
    "winkler_score",
    "winkler_scores",
]

#: Days of log returns behind an origin's realised volatility: a month, long
#: enough for a stable spread, short enough to tell a calm month from a wild one.
VOLATILITY_WINDOW = 30


def _pair(actual: Any, forecast: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.ndim != 1 or a.shape != f.shape or a.size == 0:
        raise InvalidParameterError(
            f"actual and forecast must be non-empty 1-D arrays of the same length, got shapes {a.shape} and {f.shape}"
        )
    return a, f


# --- point metrics -------------------------------------------------------------


def absolute_errors(actual: Any, forecast: Any) -> np.ndarray:
    """|forecast - actual| at each step, in price units.

    Raises:
        InvalidParameterError: the arrays are empty, not 1-D or of different lengths.
    """
    a, f = _pair(actual, forecast)
    return np.abs(f - a)


def mae(actual: Any, forecast: Any) -> float:
    """Mean absolute error: the mean of ``absolute_errors``.

    Args:
        actual: The observed values.
        forecast: The forecast values, same length.

    Returns:
        mean |forecast - actual|.

    Raises:
        InvalidParameterError: the arrays are empty, not 1-D or of different lengths.
    """
    return float(np.mean(absolute_errors(actual, forecast)))


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


# --- interval and distribution metrics, on log prices ---------------------------


def _log_prices(name: str, values: Any, size: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or (size is not None and arr.size != size):
        raise InvalidParameterError(
            f"{name} must be a non-empty 1-D array{'' if size is None else f' of length {size}'}, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InvalidParameterError(f"{name} must hold finite prices above zero: interval scores use log prices")
    return np.log(arr)


def _bounds(actual: Any, lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = _log_prices("actual", actual)
    low = _log_prices("lower", lower, y.size)
    high = _log_prices("upper", upper, y.size)
    if np.any(low > high):
        raise InvalidParameterError("every lower bound must be at or below its upper bound")
    return y, low, high


def _alpha(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 100.0:
        raise InvalidParameterError(f"interval level {level!r} is outside (0, 100); give a percentage such as 80")
    return 1.0 - level / 100.0


def inside(actual: Any, lower: Any, upper: Any) -> np.ndarray:
    """Whether each step's actual lies inside its interval, bounds included (booleans).

    Raises:
        InvalidParameterError: the arrays do not pair up, hold a price at or below zero, or lower > upper.
    """
    y, low, high = _bounds(actual, lower, upper)
    return (low <= y) & (y <= high)


def coverage(actual: Any, lower: Any, upper: Any) -> float:
    """Share of steps whose actual lies inside its interval, bounds included: the mean of ``inside``.

    Args:
        actual: The observed prices.
        lower: The interval's lower bounds, same length.
        upper: The upper bounds, same length.

    Returns:
        The share, 0 to 1, of steps with lower <= actual <= upper.

    Raises:
        InvalidParameterError: the arrays do not pair up, hold a price at or below zero, or lower > upper.
    """
    return float(np.mean(inside(actual, lower, upper)))


def interval_width(lower: Any, upper: Any) -> float:
    """Mean width of the intervals on log prices: mean (log upper - log lower).

    Raises:
        InvalidParameterError: the arrays do not pair up, hold a price at or below zero, or lower > upper.
    """
    low = _log_prices("lower", lower)
    high = _log_prices("upper", upper, low.size)
    if np.any(low > high):
        raise InvalidParameterError("every lower bound must be at or below its upper bound")
    return float(np.mean(high - low))


def winkler_scores(actual: Any, lower: Any, upper: Any, level: float) -> np.ndarray:
    """The Winkler (interval) score of a central ``level`` % interval at each step, on log prices.

    See ``winkler_score``, their mean.

    Raises:
        InvalidParameterError: the arrays do not pair up, a price at or below zero, lower > upper,
            or a level outside (0, 100).
    """
    alpha = _alpha(level)
    y, low, high = _bounds(actual, lower, upper)
    penalty = (2.0 / alpha) * (np.maximum(low - y, 0.0) + np.maximum(y - high, 0.0))
    return high - low + penalty


def winkler_score(actual: Any, lower: Any, upper: Any, level: float) -> float:
    """Mean Winkler (interval) score of a central ``level`` % interval, on log prices.

    Per step: (u - l) + (2/alpha)(l - y) if y < l, + (2/alpha)(y - u) if y > u,
    with alpha = 1 - level/100 and l, u, y the log bounds and log actual.

    Args:
        actual: The observed prices.
        lower: The interval's lower bounds, same length.
        upper: The upper bounds, same length.
        level: The interval's nominal level in percent, e.g. 80.

    Returns:
        The mean score over the steps; lower is better.

    Raises:
        InvalidParameterError: the arrays do not pair up, a price at or below zero, lower > upper,
            or a level outside (0, 100).
    """
    return float(np.mean(winkler_scores(actual, lower, upper, level)))


def _tau(probability: float) -> float:
    tau = float(probability)
    if not 0.0 < tau < 1.0:
        raise InvalidParameterError(f"a quantile's probability must be in (0, 1), got {probability!r}")
    return tau


def pinball_loss(actual: Any, quantile: Any, probability: float) -> float:
    """Mean pinball (quantile) loss of one quantile forecast, on log prices.

    Per step: tau (y - q) when y >= q, else (1 - tau)(q - y), with y and q the
    log actual and log quantile.

    Args:
        actual: The observed prices.
        quantile: The forecast ``probability`` quantile at each step, same length.
        probability: tau, in (0, 1).

    Returns:
        The mean loss over the steps.

    Raises:
        InvalidParameterError: the arrays do not pair up, hold a price at or below zero, or tau is outside (0, 1).
    """
    tau = _tau(probability)
    y = _log_prices("actual", actual)
    q = _log_prices("quantile", quantile, y.size)
    return float(np.mean(_pinball(y, q, tau)))


def _pinball(y: np.ndarray, q: np.ndarray, tau: float) -> np.ndarray:
    return np.where(y >= q, tau * (y - q), (1.0 - tau) * (q - y))


def _grid(actual: Any, quantiles: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log actual (h,), log quantiles (k, h) and taus (k,), sorted by tau."""
    y = _log_prices("actual", actual)
    taus = np.asarray([_tau(p) for p in probabilities], dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 2 or q.shape != (taus.size, y.size) or taus.size == 0:
        raise InvalidParameterError(
            f"quantiles must have shape (probabilities, steps) = ({taus.size}, {y.size}), got {q.shape}"
        )
    if np.unique(taus).size != taus.size:
        raise InvalidParameterError("each probability of the quantile grid must appear once")
    if not np.all(np.isfinite(q)) or np.any(q <= 0):
        raise InvalidParameterError("quantiles must be finite prices above zero: the grid is scored on log prices")
    order = np.argsort(taus)
    return y, np.log(q[order]), taus[order]


def crps_from_quantiles(actual: Any, quantiles: Any, probabilities: Any) -> float:
    """CRPS estimated from a grid of quantiles: twice the mean pinball loss over the grid, on log prices.

    With quantiles at probabilities tau_1..tau_k, CRPS ~ (2/k) sum_j pinball(y, q_j, tau_j),
    averaged over the steps. An even grid over (0, 1) makes this the midpoint
    rule for CRPS = integral of 2 pinball(tau) over tau; a coarse grid understates
    the tails' share, so compare models on the same grid (the backtest always
    uses one, ``backtest.CRPS_LEVELS``).

    Args:
        actual: The observed prices, shape (h,).
        quantiles: The forecast quantiles, shape (k, h): row j is the tau_j quantile at each step.
        probabilities: tau_1..tau_k, each in (0, 1), any order.

    Returns:
        The mean CRPS estimate over the steps; lower is better.

    Raises:
        InvalidParameterError: shapes that do not match, a price at or below zero, a bad or repeated tau.
    """
    y, q, taus = _grid(actual, quantiles, probabilities)
    losses = np.stack([_pinball(y, q[j], tau) for j, tau in enumerate(taus)])
    return float(2.0 * losses.mean())


def pit_values(actual: Any, quantiles: Any, probabilities: Any) -> np.ndarray:
    """The forecast CDF at each actual, interpolated from a grid of quantiles (the PIT).

    On log prices, between two neighbouring quantiles the CDF runs linearly
    from one tau to the next. Below the lowest quantile the PIT is 0 and above
    the highest 1: the grid says nothing about the tails beyond it. Where
    several quantiles coincide (an interval bound that rests on the point
    forecast), the CDF jumps there, and an actual exactly at that price gets
    the mean of their taus.

    Args:
        actual: The observed prices, shape (h,).
        quantiles: The forecast quantiles, shape (k, h); each column non-decreasing in tau.
        probabilities: tau_1..tau_k, each in (0, 1).

    Returns:
        The PIT value of each step, shape (h,), in [0, 1].

    Raises:
        InvalidParameterError: shapes that do not match, a price at or below zero, a bad or repeated
            tau, or quantiles that decrease as tau grows.
    """
    y, q, taus = _grid(actual, quantiles, probabilities)
    if np.any(np.diff(q, axis=0) < 0):
        raise InvalidParameterError("quantiles must not decrease as their probability grows")
    pit = np.empty(y.size)
    for step in range(y.size):
        column, value = q[:, step], y[step]
        below = int(np.searchsorted(column, value, side="left"))  # quantiles strictly under the actual
        at_or_below = int(np.searchsorted(column, value, side="right"))
        if at_or_below == 0:
            pit[step] = 0.0
        elif below == column.size:
            pit[step] = 1.0
        elif below < at_or_below:  # the actual sits exactly on one or more quantiles
            pit[step] = float(taus[below:at_or_below].mean())
        else:
            x0, x1 = column[below - 1], column[below]
            t0, t1 = taus[below - 1], taus[below]
            pit[step] = t0 + (t1 - t0) * (value - x0) / (x1 - x0)
    return pit


def origin_volatility(train: Any, window: int = VOLATILITY_WINDOW) -> float:
    """Realised volatility at a forecast origin: the std of the last ``window`` daily log returns of ``train``.

    Only training prices enter, so the volatility regime of a window is known
    at its origin. A series with fewer than ``window`` returns uses the ones it has.

    Args:
        train: The training prices, oldest first, all above zero.
        window: How many of the latest one-day log returns to use.

    Returns:
        The sample standard deviation (ddof 1) of those returns; nan with fewer than two returns.
    """
    y = np.asarray(train, dtype=np.float64).reshape(-1)
    if y.size < 3 or np.any(y <= 0):
        return float("nan")
    returns = np.diff(np.log(y[-(window + 1) :]))
    return float(np.std(returns, ddof=1))
