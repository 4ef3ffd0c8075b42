"""The seed's linear regression of price on the time index."""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidParameterError
from .base import Forecaster

__all__ = ["LinearModel"]


class LinearModel(Forecaster):
    """Ordinary least squares of price on time (scikit-learn ``LinearRegression``), extrapolated.

    The seed's line, unchanged where it stays positive. A falling coin's line
    can cross zero within the horizon (the quick start once printed a negative
    price): that coin now fails with ``NonPositiveForecastError`` and the
    reason, never a clipped price. ``log_prices=True`` fits an exponential
    trend instead, which is never at or below zero but extrapolates a coin's
    growth rate rather than its growth.

    Args:
        window: Fit on the last ``window`` points only; None uses the whole
            history, as the seed did.
        log_prices: Fit log prices and exponentiate the line; False (the default)
            fits raw prices as the seed did.
    """

    name = "linear"
    min_points = 2
    description = "the seed's least-squares trend line on the time index; refuses a coin whose line crosses zero"

    def __init__(self, *, window: int | None = None, log_prices: bool = False) -> None:
        self.window = window
        self.log_prices = log_prices

    def _fit(self, y: np.ndarray) -> None:
        from sklearn.linear_model import LinearRegression

        if self.window is not None and (not isinstance(self.window, int) or self.window < 2):
            raise InvalidParameterError(f"linear: window must be an int >= 2 or None, got {self.window!r}")
        if self.window is not None:
            y = y[-self.window :]
        if self.log_prices:
            y = np.log(y)
        t = np.arange(y.size, dtype=np.float64).reshape(-1, 1)
        with _trusted_input():
            self.regressor_ = LinearRegression().fit(t, y)
        self.n_fit_ = y.size

    def _predict(self, h: int) -> np.ndarray:
        t_future = np.arange(self.n_fit_, self.n_fit_ + h, dtype=np.float64).reshape(-1, 1)
        with _trusted_input():
            trend = self.regressor_.predict(t_future)
        return np.exp(trend) if self.log_prices else trend


def _trusted_input():
    """scikit-learn without its per-call input checks: a quarter of a fit's cost on 1,000 points.

    Safe here: ``Forecaster.fit`` has already checked the series (1-D,
    finite, long enough), the time index is built above, and LinearRegression is
    constructed with its defaults, so there is nothing left for them to catch.
    """
    import sklearn

    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)
