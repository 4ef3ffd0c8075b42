"""Benchmarks every other model must beat: the random walk and its drift variant."""

from __future__ import annotations

import numpy as np

from .base import Forecaster
from .intervals import empirical_intervals

__all__ = ["NaiveModel", "DriftModel"]


class NaiveModel(Forecaster):
    """Random walk: every future value equals the last observed one.

    Its interval is the "naive empirical" benchmark of every backtest: the last
    price times the empirical quantiles of all past k-day log returns, k = 1..h.
    """

    name = "naive"
    # Two prices: the interval needs one observed return.
    min_points = 2
    description = "random walk: tomorrow equals today; the benchmark to beat"
    interval_method = "naive empirical: last price x quantiles of past k-day returns"

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        self.last_ = float(y[-1])

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)

    def _predict_interval(self, h, levels):
        point = np.full(h, self.last_)
        return point, empirical_intervals(self.log_prices_, point, levels, centre=False)


class DriftModel(Forecaster):
    """Random walk with drift, on log prices: the geometric line through the first and last prices, extended.

    ``log p[T + k] = log p[T] + k * (log p[T] - log p[0]) / (T - 1)``: the mean
    daily log return carried forward. The seed-era additive line went below zero
    for a coin that had fallen enough; a geometric one never does.
    """

    name = "drift"
    min_points = 2
    description = "random walk with drift: the mean daily log return carried forward"

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        self.last_ = float(y[-1])
        self.log_slope_ = float((np.log(y[-1]) - np.log(y[0])) / (y.size - 1))

    def _predict(self, h: int) -> np.ndarray:
        return self.last_ * np.exp(self.log_slope_ * np.arange(1, h + 1))
