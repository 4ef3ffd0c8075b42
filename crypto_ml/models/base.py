"""The contract every forecasting model keeps.

``__init__`` only stores keyword arguments. ``fit(y)`` validates the series,
learns, stores what it learned in attributes ending in ``_`` and returns
``self``. ``predict(h)`` returns a float64 array of length ``h``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError, NotFittedError, SeriesTooShortError

__all__ = ["Forecaster", "validate_series", "validate_horizon"]


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
        raise DataFormatError(f"{model_name}: the series holds {bad} NaN or infinite value(s); clean or drop them first")
    return arr


def validate_horizon(h: Any) -> int:
    """Return ``h`` as a positive int.

    Raises:
        InvalidParameterError: ``h`` is not an integer >= 1.
    """
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise InvalidParameterError(f"horizon must be an integer >= 1, got {h!r}")
    return int(h)


@functools.lru_cache(maxsize=None)
def _param_names(cls: type) -> tuple[str, ...]:
    # inspect.signature costs more than a naive fit; get_model runs once per series.
    sig = inspect.signature(cls.__init__)
    return tuple(p.name for p in sig.parameters.values() if p.name != "self" and p.kind is p.KEYWORD_ONLY)


class Forecaster:
    """Base class: subclasses implement ``_fit`` and ``_predict``.

    Attributes:
        name: The registry name of the model.
        min_points: The shortest series ``fit`` accepts.
    """

    name: ClassVar[str] = ""
    min_points: ClassVar[int] = 1

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
        arr = validate_series(y, self.min_points, self.name)
        self._fit(arr)
        self.n_obs_ = int(arr.size)
        return self

    def predict(self, h: int) -> np.ndarray:
        """Forecast the next ``h`` values after the fitted series.

        Raises:
            NotFittedError: ``fit`` has not been called.
            InvalidParameterError: ``h`` is not an integer >= 1.
        """
        if not hasattr(self, "n_obs_"):
            raise NotFittedError(f"this {self.name} model is not fitted yet; call fit(y) before predict(h)")
        h = validate_horizon(h)
        forecast = np.asarray(self._predict(h), dtype=np.float64).reshape(-1)
        if forecast.shape != (h,):  # a model bug, not a user error: fail loudly
            raise AssertionError(f"{self.name} returned shape {forecast.shape} for h={h}")
        return forecast

    def prepare_state(self) -> None:
        """Make the learned attributes current before they are saved; a no-op unless a model shares state."""

    def training_metrics(self) -> dict[str, Any]:
        """What training measured (losses, epochs), for the model store; empty for closed-form fits."""
        return {}

    @classmethod
    def param_names(cls) -> list[str]:
        """The keyword arguments the constructor accepts."""
        return list(_param_names(cls))

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored, for manifests and model metadata."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
