"""Is a model's edge over the benchmark skill or luck? Diebold-Mariano with the HLN correction, and a sign test.

The backtest's loss differentials are pooled over coins at each forecast
origin first (``pool_by_origin``): coins move together, so the coins of one
origin are not independent draws, while origins some days apart are closer to
it. The Diebold-Mariano test then asks whether the mean differential across
origins is zero, with a HAC variance that allows for the overlap of forecasts
``h`` steps ahead (h - 1 autocovariance lags), and the Harvey, Leybourne and
Newbold (1997) small-sample correction with Student-t critical values, since
a backtest has tens of origins, not thousands.

The sign test counts coins instead: on how many did the model's mean loss
beat the benchmark's? Its binomial p-value assumes independent coins, which
crypto coins are not, so it is optimistic; report it as such.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["DMResult", "MIN_ORIGINS", "diebold_mariano", "overlap_lags", "pool_by_origin", "sign_test"]

#: The fewest origins a Diebold-Mariano test is run on: with two, the variance
#: has one degree of freedom and the t distribution has one, too few to mean anything.
MIN_ORIGINS = 3


@dataclass(frozen=True)
class DMResult:
    """The outcome of a Diebold-Mariano test on a loss differential d = loss_model - loss_benchmark.

    Attributes:
        statistic: The HLN-corrected statistic; negative when the model's loss is lower. None when undefined.
        p_value: Two-sided p-value from Student-t with ``origins - 1`` degrees of freedom; None when undefined.
        mean_differential: The mean of d over the origins (None without any origin).
        origins: T, the number of origins the test used.
        lags: The autocovariance lags in the variance (h - 1).
        note: Why the statistic or p-value is missing, or None.
    """

    statistic: float | None
    p_value: float | None
    mean_differential: float | None
    origins: int
    lags: int
    note: str | None = None


def overlap_lags(horizon: int, step: int) -> int:
    """h - 1 with h = ceil(horizon / step): the autocovariances that overlapping test periods add.

    Origins ``step`` days apart whose forecasts run ``horizon`` days share
    ceil(horizon / step) - 1 neighbours' test days, so their losses correlate
    up to that lag; non-overlapping windows (step >= horizon) need none.

    Raises:
        InvalidParameterError: horizon or step below 1.
    """
    if horizon < 1 or step < 1:
        raise InvalidParameterError(f"horizon and step must be >= 1, got {horizon} and {step}")
    return math.ceil(horizon / step) - 1


def diebold_mariano(differentials: Iterable[float], lags: int = 0) -> DMResult:
    """Diebold-Mariano test of equal accuracy with the Harvey-Leybourne-Newbold correction.

    With d_1..d_T in time order, dbar their mean and
    gamma_k = (1/T) sum_{t>k} (d_t - dbar)(d_{t-k} - dbar), the long-run
    variance is V = gamma_0 + 2 sum_{k=1}^{lags} gamma_k and
    DM = dbar / sqrt(V / T). With h = lags + 1 the HLN statistic is
    DM * sqrt((T + 1 - 2h + h(h - 1)/T) / T), compared with Student-t, T - 1 df.

    Args:
        differentials: The loss differential at each origin, oldest first.
        lags: Autocovariance lags, h - 1 (see ``overlap_lags``); 0 for non-overlapping windows.

    Returns:
        A ``DMResult``. Identical losses (every d is 0) give statistic 0 and
        p-value 1. Fewer than ``MIN_ORIGINS`` origins, a variance that is not
        positive, or a correction factor that is not (T too small for h) give
        None, with a note saying which.

    Raises:
        InvalidParameterError: a negative ``lags`` or a non-finite differential.
    """
    from scipy import stats

    d = np.asarray(list(differentials), dtype=np.float64)
    if lags < 0:
        raise InvalidParameterError(f"lags must be >= 0, got {lags}")
    if not np.all(np.isfinite(d)):
        raise InvalidParameterError("every loss differential must be finite")
    origins = int(d.size)
    if origins < MIN_ORIGINS:
        return DMResult(
            None,
            None,
            float(d.mean()) if origins else None,
            origins,
            lags,
            f"{origins} origin(s): the test needs at least {MIN_ORIGINS}; run more --windows",
        )
    mean = float(d.mean())
    if np.all(d == 0):
        return DMResult(0.0, 1.0, 0.0, origins, lags, "identical losses at every origin")
    h = lags + 1
    factor = (origins + 1 - 2 * h + h * (h - 1) / origins) / origins
    if factor <= 0:
        return DMResult(
            None,
            None,
            mean,
            origins,
            lags,
            f"{origins} origins are too few for {h}-step overlapping forecasts; run more --windows",
        )
    centred = d - mean
    variance = float(centred @ centred) / origins
    for k in range(1, min(lags, origins - 1) + 1):
        variance += 2.0 * float(centred[k:] @ centred[:-k]) / origins
    if variance <= 0:
        return DMResult(
            None, None, mean, origins, lags, "the loss differential's long-run variance is not positive; no test"
        )
    statistic = mean / math.sqrt(variance / origins) * math.sqrt(factor)
    p_value = float(2.0 * stats.t.sf(abs(statistic), df=origins - 1))
    return DMResult(float(statistic), p_value, mean, origins, lags)


def pool_by_origin(rows: Iterable[tuple[Any, float]]) -> tuple[list[Any], np.ndarray]:
    """Mean differential over coins at each origin, origins in sorted (time) order.

    Args:
        rows: ``(origin, differential)`` pairs, one per (coin, window); an
            origin is anything that sorts in time order (an ISO date, or a
            window's distance from the end of its series negated).

    Returns:
        The origins, sorted, and the mean differential at each.
    """
    totals: dict[Any, list[float]] = {}
    for origin, value in rows:
        totals.setdefault(origin, []).append(float(value))
    ordered = sorted(totals)
    return ordered, np.array([np.mean(totals[origin]) for origin in ordered], dtype=np.float64)


def sign_test(better: int, compared: int) -> float | None:
    """One-sided binomial p-value of ``better`` wins out of ``compared`` coins, if each were a coin toss.

    Optimistic: it treats coins as independent, and crypto coins move together,
    so the effective number of coins is smaller than ``compared``.

    Args:
        better: Coins where the model's mean loss was below the benchmark's.
        compared: Coins compared.

    Returns:
        P(X >= better) for X ~ Binomial(compared, 1/2); None when nothing was compared.

    Raises:
        InvalidParameterError: counts that are negative or ``better > compared``.
    """
    from scipy import stats

    if compared < 0 or better < 0 or better > compared:
        raise InvalidParameterError(f"need 0 <= better <= compared, got {better} of {compared}")
    if compared == 0:
        return None
    return float(stats.binomtest(int(better), int(compared), 0.5, alternative="greater").pvalue)
