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
* ``conformal_quantiles``: weighted split-conformal quantiles of nonnegative
  scores, recent scores weighing more (Barber, Candès, Ramdas and Tibshirani's
  non-exchangeable conformal prediction, 2023), so that coverage recovers
  after a change of regime instead of averaging over all of history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError, SeriesTooShortError

__all__ = [
    "central_quantiles",
    "conformal_quantiles",
    "empirical_intervals",
    "ewma_volatility",
    "k_day_returns",
    "nest_around",
    "recency_weights",
]


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
            f"{log_prices.size}; use a longer history"
        )
    h = point.size
    probabilities = sorted({p for level in levels for p in central_quantiles(level)} | {0.5})
    table = _k_day_quantiles(log_prices, h, np.asarray(probabilities))
    column = {p: i for i, p in enumerate(probabilities)}
    middle = table[:, column[0.5]] if centre else 0.0
    bounds = {}
    for level in levels:
        low_p, high_p = central_quantiles(level)
        bounds[level] = nest_around(point, table[:, column[low_p]] - middle, table[:, column[high_p]] - middle)
    return bounds


def _k_day_quantiles(log_prices: np.ndarray, h: int, probabilities: np.ndarray) -> np.ndarray:
    """Quantiles of the k-day log returns for k = 1..h, shape ``(h, len(probabilities))``, as ``np.quantile``'s
    default (linear interpolation) gives them, in one sort of all h rows instead of h separate calls."""
    n_returns = log_prices.size - 1
    rows = np.full((h, n_returns), np.inf)  # +inf pads each row past its own k-day returns and sorts last
    counts = np.empty(h, dtype=np.int64)
    one_day = k_day_returns(log_prices, 1)
    for k in range(1, h + 1):
        returns = k_day_returns(log_prices, k) if log_prices.size > k else one_day * np.sqrt(k)
        rows[k - 1, : returns.size] = returns
        counts[k - 1] = returns.size
    rows.sort(axis=1)
    position = probabilities[None, :] * (counts[:, None] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, counts[:, None] - 1)
    fraction = position - below
    index = np.arange(h)[:, None]
    low, high = rows[index, below], rows[index, above]
    return low + (high - low) * fraction


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
    # v[t] = decay * v[t-1] + (1 - decay) * squared[t-1], solved in closed form a block at a time:
    # v[start + j] = decay^j * v[start] + (1 - decay) * sum_{i<j} decay^(j-1-i) * squared[start + i].
    # Blocks keep decay^-j far from overflow; a Python loop would cost ~1 µs a day, scipy.signal 1.5 s to import.
    block = 256
    powers = decay ** np.arange(block + 1)
    inverse = decay ** -np.arange(block)
    for start in range(0, r.size, block):
        chunk = squared[start : start + block]
        j = np.arange(1, chunk.size + 1)
        weighted = np.cumsum(chunk * inverse[: chunk.size])  # sum_{i<j} squared[i] * decay^-i
        variance[start + 1 : start + 1 + chunk.size] = (
            powers[j] * variance[start] + (1.0 - decay) * powers[j - 1] * weighted
        )
    # A flat stretch gives variance 0; a floor keeps the standardised returns finite.
    floor = max(float(squared.mean()) * 1e-6, 1e-300)
    return np.sqrt(np.maximum(variance, floor))


def recency_weights(n: int, decay: float | None) -> np.ndarray:
    """Weights of ``n`` scores, oldest first: ``decay ** age`` (the newest weighs 1).

    All ones when ``decay`` is None.
    """
    if decay is None:
        return np.ones(n)
    if not 0.0 < decay <= 1.0:
        raise InvalidParameterError(
            f"recency decay must be in (0, 1], got {decay!r}; 0.99 halves a score's weight in about 70 days"
        )
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)


def conformal_quantiles(scores: np.ndarray, weights: np.ndarray, probabilities: Any) -> np.ndarray:
    """Weighted conformal quantiles of ``scores`` at each probability.

    The quantile is taken over the scores plus the unseen test point's, put at
    +inf with the largest weight: the smallest score ``s`` whose cumulative
    weight reaches ``p`` of the total including the test point. That finite
    sample correction is what makes split-conformal intervals cover at least
    ``p`` on exchangeable data. Where the scores cannot reach ``p`` (too few for
    the level), the largest score stands in rather than an infinite interval,
    and the interval then covers a little less than asked.

    Args:
        scores: Nonnegative scores (e.g. |standardised errors|), any order.
        weights: One positive weight per score.
        probabilities: The coverage probabilities wanted, each in (0, 1).

    Returns:
        One quantile per probability.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    total = cumulative[-1] + float(np.max(weights))
    index = np.searchsorted(cumulative, np.asarray(probabilities, dtype=np.float64) * total, side="left")
    return ordered[np.minimum(index, ordered.size - 1)]
