"""``ewma``: the random walk's point forecast with intervals scaled to current volatility.

On daily crypto prices the point forecast that is hard to beat is "tomorrow
equals today"; what a model can add is how far the price may move. This one
prices that with three pieces, each known to help on its own:

1. **RiskMetrics volatility.** An exponentially weighted moving average of
   squared daily log returns (``decay`` 0.94, RiskMetrics' daily value) says
   how volatile the coin is now.
2. **Filtered historical simulation.** Every past k-day log return, divided by
   the volatility known when it started and by sqrt(k), is a standardised
   move; their empirical quantiles, times today's volatility, give the k-day
   interval. Heavy tails come from the data, not from a Normal assumption.
   The quantiles are weighted conformal quantiles with recent moves weighing
   more (``recency``), which corrects coverage after a regime change, the
   role Adaptive Conformal Inference plays for a stream of forecasts.
3. **Shrinkage to the unconditional spread.** Volatility clusters but also
   mean-reverts, and a quiet coin can jump: scaling by today's EWMA alone
   under-covers quiet coins and over-covers wild ones. The interval's log
   half-width is the geometric blend ``blend`` of the volatility-scaled width
   and the plain empirical width of all past k-day moves.

The defaults were chosen on walk-forward origins of the real dataset that
precede the ones the README's backtest reports, so that backtest scores them
out of sample.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidParameterError
from .base import Forecaster
from .intervals import conformal_quantiles, ewma_volatility, recency_weights

__all__ = ["EWMAModel"]


class EWMAModel(Forecaster):
    """Random-walk point forecast; intervals from EWMA volatility and filtered historical simulation.

    Args:
        decay: RiskMetrics' lambda for the EWMA of squared daily log returns
            (0.94 for daily data: the volatility forgets half its memory in about
            11 days).
        recency: Weight decay per day of past standardised moves in the
            quantiles; 0.99 halves a move's weight in about 70 days. None
            weighs all of history equally.
        blend: Share, in log space, of the volatility-scaled half-width against
            the unconditional empirical one: 1 is pure filtered historical
            simulation, 0 the plain empirical interval of past k-day moves.
        warmup: Returns averaged to start the EWMA.
    """

    name = "ewma"
    # Enough daily returns for the EWMA to settle and for 10-day moves to have a spread.
    min_points = 20
    description = "random walk with intervals from EWMA volatility (RiskMetrics) and filtered historical simulation"
    interval_method = "EWMA-scaled, recency-weighted conformal quantiles of past k-day moves"

    def __init__(
        self, *, decay: float = 0.94, recency: float | None = 0.99, blend: float = 0.55, warmup: int = 30
    ) -> None:
        self.decay = decay
        self.recency = recency
        self.blend = blend
        self.warmup = warmup

    def _check_params(self) -> None:
        if not 0.0 <= self.blend <= 1.0:
            raise InvalidParameterError(f"ewma: blend must be in [0, 1], got {self.blend!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 1:
            raise InvalidParameterError(f"ewma: warmup must be an integer >= 1, got {self.warmup!r}")
        recency_weights(1, self.recency)  # validates recency

    def _fit(self, y: np.ndarray) -> None:
        self._check_params()
        returns = np.diff(np.log(y))
        self.last_ = float(y[-1])
        # volatility_[t]: the EWMA volatility of return t from the returns before it; the last is tomorrow's.
        self.volatility_ = ewma_volatility(returns, self.decay, warmup=self.warmup)

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)

    def _predict_interval(self, h, levels):
        point = np.full(h, self.last_)
        probabilities = np.array([float(level) / 100.0 for level in levels])
        half_widths = self.half_widths(h, probabilities)
        bounds = {}
        for column, level in enumerate(levels):
            width = half_widths[:, column]
            bounds[level] = (point * np.exp(-width), point * np.exp(width))
        return point, bounds

    def half_widths(self, h: int, probabilities: np.ndarray) -> np.ndarray:
        """Log half-widths of the central intervals, shape ``(h, len(probabilities))``."""
        returns = np.diff(self.log_prices_)
        volatility = self.volatility_
        cumulative = np.concatenate([[0.0], np.cumsum(returns)])
        widths = np.empty((h, probabilities.size))
        for k in range(1, h + 1):
            if returns.size >= k:
                moves = cumulative[k:] - cumulative[:-k]  # moves[t]: returns t .. t+k-1
                start_volatility = volatility[: moves.size]
            else:  # no k-day move observed yet: one-day moves, scaled by sqrt(k), stand in
                moves = returns * np.sqrt(k)
                start_volatility = volatility[: returns.size]
            scale = np.sqrt(k)
            standardised = np.abs(moves) / (start_volatility * scale)
            # Each move is dated by the day it ended: the latest ended today, and weighs 1.
            weights = recency_weights(moves.size, self.recency)
            filtered = conformal_quantiles(standardised, weights, probabilities) * volatility[-1] * scale
            unconditional = np.quantile(np.abs(moves), probabilities)
            widths[k - 1] = filtered**self.blend * unconditional ** (1.0 - self.blend)
        return widths
