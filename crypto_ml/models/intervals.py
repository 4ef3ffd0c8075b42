"""Building blocks for prediction intervals on log prices, shared by the models.

Every interval here is made on the log scale and mapped back with ``exp``, so
a bound is a positive price by construction: ``point * exp(offset)``.

* ``empirical_intervals``: the spread of the series' own past k-day log
  returns, for k = 1..h. Uncentred around the last price, it is the "naive
  empirical" interval every backtest compares with; centred on its median, it
  is the default interval of models that give only a point forecast.
* ``ewma_volatility``: RiskMetrics' exponentially weighted volatility of log
  returns, known at each day from the days before it.
* ``central_quantiles``: the two tail probabilities of a central interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError, SeriesTooShortError

__all__ = ["central_quantiles", "empirical_intervals", "ewma_volatility", "k_day_returns", "nest_around"]


def central_quantiles(level: float) -> tuple[float, float]:
    """The lower and upper tail probabilities of a central ``level`` % interval: 80 -> (0.10, 0.90)."""
    alpha = 1.0 - float(level) / 100.0
    return alpha / 2.0, 1.0 - alpha / 2.0


def k_day_returns(log_prices: np.ndarray, k: int) -> np.ndarray:
    """Every overlapping k-day log return of the series: ``log p[t + k] - log p[t]``."""
    return log_prices[k:] - log_prices[:-k]


def nest_around(point: np.ndarray, low_offsets: np.ndarray, high_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``point * exp(offset)``, with each offset moved to 0 where it would leave the point outside its interval.

    An empirical quantile can sit on the wrong side of the point (a coin that
    rose every week has no negative weekly return); the interval then starts at
    the point rather than excluding it.
    """
    low = point * np.exp(np.minimum(low_offsets, 0.0))
    high = point * np.exp(np.maximum(high_offsets, 0.0))
    return low, high


def empirical_intervals(
    log_prices: np.ndarray, point: np.ndarray, levels: tuple[Any, ...], *, centre: bool = True
) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """Intervals from the empirical quantiles of the series' own past k-day log returns, k = 1..h.

    Step k's interval is ``point[k-1] * exp(q)`` for the central quantiles q of
    every past k-day log return. Where the series has no k-day return (fewer
    than k + 1 prices), the one-day returns scaled by sqrt(k) stand in.

    Args:
        log_prices: The training series' log prices, oldest first (at least two).
        point: The point forecast, shape ``(h,)``.
        levels: Interval levels in percent.
        centre: Subtract each k's median return, so the spread sits around a
            model's own point forecast. False gives the "naive empirical"
            benchmark: the last price times the raw return quantiles.

    Returns:
        ``{level: (lower, upper)}``, each of shape ``(h,)``.

    Raises:
        SeriesTooShortError: fewer than two prices, so no return has been seen.
    """
    log_prices = np.asarray(log_prices, dtype=np.float64)
    if log_prices.size < 2:
        raise SeriesTooShortError(
            f"a prediction interval needs at least 2 points (one observed return), the series has "
            f"{log_prices.size}; use a longer history")
    h = point.size
    probabilities = sorted({p for level in levels for p in central_quantiles(level)} | {0.5})
    table = np.empty((h, len(probabilities)))
    one_day = k_day_returns(log_prices, 1)
    for k in range(1, h + 1):
        returns = k_day_returns(log_prices, k) if log_prices.size > k else one_day * np.sqrt(k)
        table[k - 1] = np.quantile(returns, probabilities)
    column = {p: i for i, p in enumerate(probabilities)}
    middle = table[:, column[0.5]] if centre else 0.0
    bounds = {}
    for level in levels:
        low_p, high_p = central_quantiles(level)
        bounds[level] = nest_around(point, table[:, column[low_p]] - middle, table[:, column[high_p]] - middle)
    return bounds


def ewma_volatility(log_returns: np.ndarray, decay: float, *, warmup: int = 30) -> np.ndarray:
    """RiskMetrics' EWMA volatility: ``s[t]`` is the forecast of return t's standard deviation from returns before t.

    ``s[t]^2 = decay * s[t-1]^2 + (1 - decay) * r[t-1]^2``, started from the
    mean square of the first ``warmup`` returns. The array has one more entry
    than ``log_returns``: its last value is the volatility of the next, unseen
    day. Returns are not demeaned (RiskMetrics' convention: at a daily scale the
    mean is noise next to the spread).

    Args:
        log_returns: One-day log returns, oldest first (at least one).
        decay: The smoothing factor lambda in (0, 1); RiskMetrics uses 0.94 for daily data.
        warmup: Returns averaged for the starting variance.

    Raises:
        InvalidParameterError: ``decay`` outside (0, 1) or no returns.
    """
    if not 0.0 < decay < 1.0:
        raise InvalidParameterError(f"decay must be in (0, 1), got {decay!r}; RiskMetrics uses 0.94 for daily data")
    r = np.asarray(log_returns, dtype=np.float64)
    if r.size == 0:
        raise InvalidParameterError("ewma_volatility needs at least one return")
    squared = r * r
    variance = np.empty(r.size + 1)
    variance[0] = squared[: max(1, warmup)].mean()
    # A Python loop over a recursion is ~1 µs a step; scipy's lfilter does the same recursion in C.
    from scipy.signal import lfilter

    # v[t] = decay * v[t-1] + (1 - decay) * squared[t-1], v[0] given: an IIR filter with initial state.
    filtered, _ = lfilter([1.0 - decay], [1.0, -decay], squared, zi=[decay * variance[0]])
    variance[1:] = filtered
    # A flat stretch gives variance 0; a floor keeps the standardised returns finite.
    floor = max(float(squared.mean()) * 1e-6, 1e-300)
    return np.sqrt(np.maximum(variance, floor))
