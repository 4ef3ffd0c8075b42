"""Benchmarks every other model must beat: the random walk and its drift variant."""

from __future__ import annotations

import numpy as np

from .base import Forecaster

__all__ = ["NaiveModel", "DriftModel"]


class NaiveModel(Forecaster):
    """Random walk: every future value equals the last observed one."""

    name = "naive"
    min_points = 1

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        self.last_ = float(y[-1])

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)


class DriftModel(Forecaster):
    """Random walk with drift: the line through the first and last observations, extended."""

    name = "drift"
    min_points = 2

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        self.last_ = float(y[-1])
        self.slope_ = float((y[-1] - y[0]) / (y.size - 1))

    def _predict(self, h: int) -> np.ndarray:
        return self.last_ + self.slope_ * np.arange(1, h + 1)
