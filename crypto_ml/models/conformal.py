"""The calibration layer: conformal prediction intervals around any model's point forecast.

``get_model("linear+conformal")`` keeps ``linear``'s point forecast and
replaces its interval with one calibrated on ``linear``'s own out-of-sample
errors:

1. **Rolling origins inside the training data only.** The base model is
   refitted at ``origins`` cutoffs ``spacing`` days apart, the last one ``h``
   days before the end of the training series, each on a fresh copy of the
   prices before its cutoff, and forecasts ``h`` days. Nothing after the end
   of the training series is ever read, so a backtest that fits this model at
   an origin cannot see that origin's future.
2. **Volatility-scaled scores, per horizon step.** Each error is taken on log
   prices and divided by the EWMA volatility known at its cutoff and by
   sqrt(k), so a calm month and a wild one give comparable scores; step k's
   quantile comes from step k's scores only.
3. **Adaptive weighting.** The quantiles are weighted conformal quantiles
   with recent origins weighing more (``recency``): after a regime change the
   new errors dominate within weeks, which is what Adaptive Conformal
   Inference does for a stream of forecasts.

The interval at step k is ``point * exp(+-q_k * sigma_now * sqrt(k))``: positive,
symmetric in log space, and nested across levels. Its cost is ``origins``
extra fits of the base model per interval forecast: negligible for ``linear``,
seconds for the SVRs on long series, and minutes for the LSTM (lower
``origins`` there).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..exceptions import CryptoMLError, InvalidParameterError, SeriesTooShortError
from .base import Forecaster
from .intervals import conformal_quantiles, ewma_volatility, recency_weights

__all__ = ["ConformalModel", "MIN_ORIGINS"]

log = logging.getLogger(__name__)

#: Fewest calibration origins whose errors make an interval; fewer cannot speak for a 95 % level at all.
MIN_ORIGINS = 5


class ConformalModel(Forecaster):
    """A registered model's point forecast with conformal intervals from its own rolling-origin errors.

    Args:
        base: The registered model whose point forecast is calibrated.
        base_params: The base model's constructor arguments.
        origins: Calibration cutoffs inside the training data (the most recent ones).
        spacing: Days between calibration cutoffs.
        decay: RiskMetrics' lambda for the EWMA volatility that scales the errors.
        recency: Weight decay per day of an origin's errors (0.99 halves a weight in
            about 70 days); None weighs every origin equally.
    """

    description = "any model's point forecast with conformal intervals from its own rolling-origin errors"
    # Calibration refits the base model on the data it is given, so there is nothing worth storing.
    storable = False
    interval_method = "conformal: volatility-scaled, recency-weighted rolling-origin errors"

    def __init__(
        self,
        *,
        base: str = "naive",
        base_params: dict[str, Any] | None = None,
        origins: int = 40,
        spacing: int = 2,
        decay: float = 0.94,
        recency: float | None = 0.99,
    ) -> None:
        self.base = base
        self.base_params = base_params
        self.origins = origins
        self.spacing = spacing
        self.decay = decay
        self.recency = recency

    @classmethod
    def wrapping(cls, base: str, **params: Any) -> ConformalModel:
        """``base`` wrapped: parameters the calibration layer knows are its own, the rest go to ``base``.

        Raises:
            InvalidParameterError: a parameter neither accepts (named with what each accepts).
        """
        from .registry import get_model

        own = {key: params.pop(key) for key in list(params) if key in cls.param_names() and key != "base"}
        base_params = {**(own.pop("base_params", None) or {}), **params}
        get_model(base, **base_params)  # rejects a parameter the base does not accept, with the list it does
        return cls(base=base, base_params=base_params or None, **own)

    @property
    def name(self) -> str:  # type: ignore[override]
        from .registry import CONFORMAL_SUFFIX

        return f"{self.base}{CONFORMAL_SUFFIX}"

    def _base_model(self) -> Forecaster:
        from .registry import get_model

        if self.base.endswith("+conformal"):
            raise InvalidParameterError(f"{self.base!r} is already calibrated; wrap the plain model instead")
        return get_model(self.base, **(self.base_params or {}))

    @property
    def min_points(self) -> int:  # type: ignore[override]
        # The base model's minimum at the first origin, then room for MIN_ORIGINS cutoffs and a 10-day horizon.
        return int(self._base_model().min_points) + (MIN_ORIGINS - 1) * int(self.spacing) + 10

    def _check_params(self) -> None:
        for name in ("origins", "spacing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"conformal: {name} must be an integer >= 1, got {value!r}")
        if self.origins < MIN_ORIGINS:
            raise InvalidParameterError(f"conformal: origins must be at least {MIN_ORIGINS}, got {self.origins!r}")
        recency_weights(1, self.recency)

    def _fit(self, y: np.ndarray) -> None:
        self._check_params()
        self.base_model_ = self._base_model().fit(y)
        self.prices_ = y.copy()
        self.volatility_ = ewma_volatility(np.diff(np.log(y)), self.decay)

    def _predict(self, h: int) -> np.ndarray:
        return self.base_model_.predict(h)

    def calibration_cutoffs(self, h: int) -> list[int]:
        """The training cutoffs whose next ``h`` prices are all known, the most recent ``origins`` of them."""
        n = self.prices_.size
        first = int(self._base_model().min_points)
        last = n - h
        cutoffs = list(range(last, first - 1, -int(self.spacing)))[: int(self.origins)]
        return sorted(cutoffs)

    def scores(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Standardised absolute log errors, shape ``(origins, h)``, and each origin's cutoff.

        Raises:
            SeriesTooShortError: fewer than ``MIN_ORIGINS`` origins produced a forecast.
        """
        log_prices = np.log(self.prices_)
        rows, used = [], []
        for cutoff in self.calibration_cutoffs(h):
            try:
                # A copy: the base model must not reach the prices after its cutoff through a view.
                point = self._base_model().fit(self.prices_[:cutoff].copy()).predict(h)
            except CryptoMLError as exc:  # that origin has no forecast; the others still calibrate
                log.debug("%s: no calibration forecast at cutoff %d: %s", self.name, cutoff, exc)
                continue
            errors = np.abs(log_prices[cutoff : cutoff + h] - np.log(point))
            # volatility_[cutoff - 1]: the volatility of the first unseen return, from returns before the cutoff.
            rows.append(errors / (self.volatility_[cutoff - 1] * np.sqrt(np.arange(1, h + 1))))
            used.append(cutoff)
        if len(used) < MIN_ORIGINS:
            raise SeriesTooShortError(
                f"{self.name} needs at least {MIN_ORIGINS} calibration origins with a {h}-day forecast inside the "
                f"training data, got {len(used)} from {self.prices_.size} points; use a longer history, a shorter "
                "horizon or a smaller spacing"
            )
        return np.asarray(rows), np.asarray(used)

    def _predict_interval(self, h, levels):
        point = self._checked_point(self.base_model_.predict(h), h)
        scores, cutoffs = self.scores(h)
        # An origin's errors weigh by how long ago its cutoff was.
        weights = recency_weights(self.prices_.size, self.recency)[cutoffs - 1]
        probabilities = np.array([float(level) / 100.0 for level in levels])
        sigma_now = self.volatility_[-1] * np.sqrt(np.arange(1, h + 1))
        bounds: dict[Any, tuple[np.ndarray, np.ndarray]] = {level: (np.empty(h), np.empty(h)) for level in levels}
        for step in range(h):
            quantiles = conformal_quantiles(scores[:, step], weights, probabilities)
            for column, level in enumerate(levels):
                width = quantiles[column] * sigma_now[step]
                bounds[level][0][step] = point[step] * np.exp(-width)
                bounds[level][1][step] = point[step] * np.exp(width)
        return point, bounds
