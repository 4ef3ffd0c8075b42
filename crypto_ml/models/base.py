"""The contract every forecasting model keeps.

``__init__`` only stores keyword arguments. ``fit(y)`` validates the series,
learns, stores what it learned in attributes ending in ``_`` and returns
``self``. Then:

* ``predict(h)`` returns the point forecast: a float64 array of length ``h``,
  every value finite and strictly positive. A model whose fit implies a price
  at or below zero raises ``NonPositiveForecastError`` for that series; the
  output is never clipped.
* ``predict_interval(h, levels=(80, 95))`` returns a ``Forecast``: the same
  point forecast plus a central prediction interval per level (statsforecast's
  ``level=``). Each interval holds ``level`` percent of the predictive
  distribution, and they nest around the point:
  ``0 < lo_95 <= lo_80 <= point <= hi_80 <= hi_95``. Every registered model
  gives intervals. Models compute them on log prices (or from a
  distribution of positive prices), so they are positive by construction;
  ``predict_interval`` checks the nesting and raises on a model bug.

Subclasses implement ``_fit(y)`` and ``_predict(h)``, and may override
``_predict_interval(h, levels)``. The default interval is
``intervals.empirical_intervals``: the spread of the training series' own
past k-day log returns, centred on the model's point forecast.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..exceptions import (
    DataFormatError,
    InvalidParameterError,
    NonPositiveForecastError,
    NotFittedError,
    SeriesTooShortError,
)

__all__ = [
    "Forecaster",
    "Forecast",
    "DEFAULT_LEVELS",
    "validate_series",
    "validate_prices",
    "build_forecast",
    "validate_horizon",
    "validate_levels",
    "level_label",
    "interval_columns",
]

#: Interval levels (percent) when none are asked for: the two a risk desk reads first, as statsforecast shows.
DEFAULT_LEVELS: tuple[int, ...] = (80, 95)


def validate_series(y: Any, min_points: int, model_name: str) -> np.ndarray:
    """Return ``y`` as a 1-D finite float64 array with at least ``min_points`` values.

    Raises:
        DataFormatError: ``y`` is not 1-D or holds NaN/inf.
        SeriesTooShortError: fewer than ``min_points`` values.
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1:
        raise DataFormatError(f"{model_name}: expected a 1-D series of prices, got shape {arr.shape}")
    if arr.size < min_points:
        raise SeriesTooShortError(
            f"{model_name} needs at least {min_points} points, the series has {arr.size}; "
            "use a longer history or a simpler model such as 'naive'"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise DataFormatError(
            f"{model_name}: the series holds {bad} NaN or infinite value(s); clean or drop them first"
        )
    return arr


def validate_prices(y: Any, min_points: int, model_name: str) -> np.ndarray:
    """``validate_series``, and every price strictly positive: intervals are computed on log prices.

    Raises:
        DataFormatError: as ``validate_series``, or a price at or below zero.
        SeriesTooShortError: fewer than ``min_points`` values.
    """
    arr = validate_series(y, min_points, model_name)
    if np.any(arr <= 0):
        bad = int(np.count_nonzero(arr <= 0))
        raise DataFormatError(
            f"{model_name}: the series holds {bad} price(s) at or below zero; prices must be "
            "positive (intervals are computed on log prices), so drop or fix those rows"
        )
    return arr


def validate_horizon(h: Any) -> int:
    """Return ``h`` as a positive int.

    Raises:
        InvalidParameterError: ``h`` is not an integer >= 1.
    """
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise InvalidParameterError(f"horizon must be an integer >= 1, got {h!r}")
    return int(h)


def validate_levels(levels: Any) -> tuple[int | float, ...]:
    """Interval levels as a sorted tuple of unique percentages, each strictly between 0 and 100.

    Accepts a sequence of numbers or one comma-separated string (``"50,80,95"``).
    Whole numbers come back as ``int`` so that column names read ``lo_80``, not ``lo_80.0``.

    Raises:
        InvalidParameterError: no levels, a level that is not a number, or one outside (0, 100).
    """
    if levels is None:
        return DEFAULT_LEVELS
    if isinstance(levels, str):
        levels = [part for part in levels.split(",") if part.strip()]
    if isinstance(levels, (int, float)) and not isinstance(levels, bool):
        levels = [levels]
    if not isinstance(levels, Iterable):
        raise InvalidParameterError(f"levels must be a list of percentages such as 80,95, got {levels!r}")
    parsed: set[int | float] = set()
    for raw in levels:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"interval level {raw!r} is not a number; give percentages such as 80,95"
            ) from None
        if not (0 < value < 100) or not math.isfinite(value):
            raise InvalidParameterError(f"interval level {raw!r} is outside (0, 100); give percentages such as 80,95")
        parsed.add(int(value) if value.is_integer() else value)
    if not parsed:
        raise InvalidParameterError("give at least one interval level, e.g. 80,95")
    return tuple(sorted(parsed))


def level_label(level: int | float) -> str:
    """How a level is spelled in column names: ``80`` -> ``"80"``, ``97.5`` -> ``"97.5"``."""
    return str(int(level)) if float(level).is_integer() else f"{float(level):g}"


def interval_columns(levels: Iterable[int | float]) -> list[str]:
    """``lo_<L>`` and ``hi_<L>`` for each level, widest last: ``[lo_80, hi_80, lo_95, hi_95]``."""
    return [f"{side}_{level_label(level)}" for level in levels for side in ("lo", "hi")]


@dataclass(frozen=True)
class Forecast:
    """A point forecast with central prediction intervals.

    Attributes:
        point: The point forecast, shape ``(h,)``.
        levels: The interval levels in percent, ascending.
        lower: ``{level: array (h,)}``, the lower bounds.
        upper: ``{level: array (h,)}``, the upper bounds.
    """

    point: np.ndarray
    levels: tuple[int | float, ...]
    lower: dict[int | float, np.ndarray]
    upper: dict[int | float, np.ndarray]

    def interval(self, level: int | float) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` at ``level``.

        Raises:
            InvalidParameterError: the level was not computed.
        """
        for known in self.levels:
            if float(known) == float(level):
                return self.lower[known], self.upper[known]
        raise InvalidParameterError(f"no {level}% interval in this forecast; it has {list(self.levels)}")

    def to_record(self) -> dict[str, list[float]]:
        """JSON-safe columns: ``forecast`` and ``lo_<L>``/``hi_<L>`` lists, as tasks return them."""
        record: dict[str, list[float]] = {"forecast": self.point.tolist()}
        for level in self.levels:
            label = level_label(level)
            record[f"lo_{label}"] = self.lower[level].tolist()
            record[f"hi_{label}"] = self.upper[level].tolist()
        return record


def check_intervals(name: str, point: np.ndarray, lower: dict, upper: dict, levels: tuple) -> None:
    """Raise ``AssertionError`` (a model bug, not a user error) unless the intervals are positive, finite and nest."""
    inner_lo, inner_hi = point, point
    for level in levels:  # ascending: each wider level must contain the narrower one
        lo, hi = lower[level], upper[level]
        if lo.shape != point.shape or hi.shape != point.shape:
            raise AssertionError(f"{name}: {level}% interval has shapes {lo.shape}/{hi.shape} for h={point.size}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise AssertionError(f"{name}: the {level}% interval is not finite")
        # A relative tolerance: bounds computed as exp(log point + 0) may differ from the point in the last ulp.
        slack = 1e-12 * np.abs(point)
        if np.any(lo <= 0) or np.any(lo > inner_lo + slack) or np.any(hi < inner_hi - slack):
            raise AssertionError(
                f"{name}: the {level}% interval does not nest: 0 < lo <= narrower lo <= point <= "
                "narrower hi <= hi fails"
            )
        inner_lo, inner_hi = lo, hi


def build_forecast(name: str, point: np.ndarray, bounds: dict, levels: tuple) -> Forecast:
    """A ``Forecast`` from a checked point and ``{level: (lower, upper)}``, its intervals checked to nest.

    Raises:
        AssertionError: the intervals are not positive, finite and nested (a model bug).
    """
    lower = {level: np.asarray(bounds[level][0], dtype=np.float64).reshape(-1) for level in levels}
    upper = {level: np.asarray(bounds[level][1], dtype=np.float64).reshape(-1) for level in levels}
    check_intervals(name, point, lower, upper, levels)
    return Forecast(point=point, levels=levels, lower=lower, upper=upper)


@functools.cache
def _param_names(init: Callable[..., None]) -> tuple[str, ...]:
    # inspect.signature costs more than a naive fit; get_model runs once per series.
    # Keyed on the class's __init__, not the class: mypy does not see a class object as Hashable.
    sig = inspect.signature(init)
    return tuple(p.name for p in sig.parameters.values() if p.name != "self" and p.kind is p.KEYWORD_ONLY)


class Forecaster:
    """Base class: subclasses implement ``_fit`` and ``_predict``.

    Attributes:
        name: The registry name of the model.
        min_points: The shortest series ``fit`` accepts.
    """

    name: ClassVar[str] = ""
    min_points: ClassVar[int] = 1
    #: One line for ``crypto-ml models``.
    description: ClassVar[str] = ""
    #: How the intervals are made, one phrase for ``crypto-ml models``.
    interval_method: ClassVar[str] = "empirical k-day log returns around the point"
    #: The pip extra the model needs (``pip install 'crypto-ml[<extra>]'``), or None.
    extra: ClassVar[str | None] = None
    #: Modules that extra provides; checked before a run so a missing one is a request error.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Whether the model store can save a fitted one (its learned state is plain data, Keras or scikit-learn).
    storable: ClassVar[bool] = True

    def _fit(self, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, h: int) -> np.ndarray:
        raise NotImplementedError

    def fit(self, y: Any) -> Forecaster:
        """Learn from a price series, oldest value first.

        Args:
            y: 1-D sequence of finite prices.

        Returns:
            self, fitted.

        Raises:
            SeriesTooShortError: ``y`` is shorter than ``min_points``.
            DataFormatError: ``y`` is not 1-D or not finite.
        """
        arr = validate_prices(y, self.min_points, self.name)
        # Kept for the intervals: the spread of past k-day log returns (see intervals.empirical_intervals).
        # Taken before _fit, so a model that changes its own copy of y cannot change its intervals.
        log_prices = np.log(arr)
        self._fit(arr)
        self.log_prices_ = log_prices
        self.n_obs_ = int(arr.size)
        return self

    def predict(self, h: int) -> np.ndarray:
        """Forecast the next ``h`` values after the fitted series.

        Returns:
            A float64 array of shape ``(h,)``, finite and strictly positive.

        Raises:
            NotFittedError: ``fit`` has not been called.
            InvalidParameterError: ``h`` is not an integer >= 1.
            NonPositiveForecastError: the fit implies a price at or below zero (or not finite)
                for this series; fit a log-price model instead.
        """
        self._check_fitted("predict(h)")
        h = validate_horizon(h)
        return self._checked_point(self._predict(h), h)

    def predict_interval(self, h: int, levels: Any = DEFAULT_LEVELS) -> Forecast:
        """Forecast ``h`` values with central prediction intervals at ``levels`` percent.

        Args:
            h: Steps ahead, >= 1.
            levels: Percentages in (0, 100), e.g. ``(80, 95)`` or ``"50,80,95"``.

        Returns:
            A ``Forecast`` whose point equals ``predict(h)`` and whose intervals nest around it:
            ``0 < lo_95 <= lo_80 <= point <= hi_80 <= hi_95``.

        Raises:
            NotFittedError, InvalidParameterError, NonPositiveForecastError: as ``predict``, and for bad levels.
        """
        self._check_fitted("predict_interval(h)")
        h = validate_horizon(h)
        levels = validate_levels(levels)
        point, bounds = self._predict_interval(h, levels)
        return build_forecast(self.name, self._checked_point(point, h), bounds, levels)

    def _predict_interval(self, h: int, levels: tuple[int | float, ...]) -> tuple[np.ndarray, dict]:
        """``(point, {level: (lower, upper)})``; the default spreads the training series' own k-day log
        returns around the point (``intervals.empirical_intervals``)."""
        from .intervals import empirical_intervals

        point = self._checked_point(self._predict(h), h)
        return point, empirical_intervals(self.log_prices_, point, levels)

    def _check_fitted(self, call: str) -> None:
        if not hasattr(self, "n_obs_"):
            raise NotFittedError(f"this {self.name} model is not fitted yet; call fit(y) before {call}")

    def _checked_point(self, values: Any, h: int) -> np.ndarray:
        forecast = np.asarray(values, dtype=np.float64).reshape(-1)
        if forecast.shape != (h,):  # a model bug, not a user error: fail loudly
            raise AssertionError(f"{self.name} returned shape {forecast.shape} for h={h}")
        if not np.all(np.isfinite(forecast)) or np.any(forecast <= 0):
            bad = forecast[~np.isfinite(forecast) | (forecast <= 0)]
            step = int(np.flatnonzero(~np.isfinite(forecast) | (forecast <= 0))[0]) + 1
            raise NonPositiveForecastError(
                f"{self.name} forecasts {bad[0]:.6g} at step {step}: a price must be positive and finite, so this "
                "series cannot be forecast with it; use a log-price model (naive, drift, ewma, garch, ets, theta) "
                "or a shorter history (--max-points)"
            )
        return forecast

    def prepare_state(self) -> None:
        """Make the learned attributes current before they are saved; a no-op unless a model shares state."""

    def training_metrics(self) -> dict[str, Any]:
        """What training measured (losses, epochs), for the model store; empty for closed-form fits."""
        return {}

    @classmethod
    def param_names(cls) -> list[str]:
        """The keyword arguments the constructor accepts."""
        return list(_param_names(cls.__init__))

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored, for manifests and model metadata."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
