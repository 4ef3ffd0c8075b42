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
        # Ordinary least squares of y on t = 0..n-1, in closed form. scikit-learn's fit gives the same line
        # but runs its input checks on every call, which cost 0.2 ms a fit (3/4 of it) once narwhals is
        # installed (the stats extra brings it); the series was already checked by Forecaster.fit.
        t = np.arange(y.size, dtype=np.float64)
        t_centred = t - t.mean()
        slope = float(np.dot(t_centred, y - y.mean()) / np.dot(t_centred, t_centred))
        # Still a LinearRegression, so the model store saves and loads it as before (skops).
        regressor = LinearRegression()
        regressor.coef_ = np.array([slope])
        regressor.intercept_ = float(y.mean() - slope * t.mean())
        regressor.n_features_in_ = 1
        self.regressor_ = regressor
        self.n_fit_ = y.size

    def _predict(self, h: int) -> np.ndarray:
        t_future = np.arange(self.n_fit_, self.n_fit_ + h, dtype=np.float64)
        trend = self.regressor_.intercept_ + self.regressor_.coef_[0] * t_future
        return np.exp(trend) if self.log_prices else trend
