"""statsforecast's automatic ETS, Theta and ARIMA, fitted on log prices.

Each model here is a thin wrapper: the series goes to statsforecast as log
prices, and its forecast comes back through ``exp``. The point forecast is
``exp(mean)`` (the median price when the log forecast is symmetric) and each
bound is ``exp`` of statsforecast's ``lo-L``/``hi-L``: positive by
construction, and a coin at 3e-10 is modelled exactly as one at 3e4 (only the
level of the logs differs). Nothing is re-implemented: the model selection,
estimation and intervals are statsforecast's own (``level=``).

What the wrapper adds, and why:

* A constant series (every log price equal) never reaches statsforecast: there
  is no variance to estimate (its models return zero-width or NaN intervals,
  or fail), so the forecast is the constant and the intervals collapse onto it.
* Bounds are made to nest, ``lo_95 <= lo_80 <= log point <= hi_80 <= hi_95``.
  ETS and ARIMA intervals are analytic and already nest; Theta's come from 200
  simulated paths stored in float32, whose rounding (about 1e-6 of the log
  level) can put a bound a hair across the point. A NaN bound (no variance
  left in a nearly flat series) becomes the narrower bound. Where
  statsforecast's bounds already nest, they are returned unchanged.
* statsforecast's "tiny datasets" refusal becomes ``SeriesTooShortError``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..exceptions import SeriesTooShortError
from .base import Forecaster

__all__ = ["ETSModel", "ThetaModel", "ARIMAModel"]


class _StatsForecastModel(Forecaster):
    """Fit a statsforecast model on log prices; forecast and intervals through ``exp``.

    Subclasses set ``_estimator_name`` (the class in ``statsforecast.models``)
    and ``_estimator_params()`` (its keyword arguments, from the stored params).

    Attributes (after ``fit``):
        estimator_: The fitted statsforecast model, or None for a constant series.
        last_: The last price.
    """

    # Ten points: statsforecast's ETS refuses n <= parameters + 4 (a damped trend has 5), and fewer
    # points than that say nothing about a trend or a smoothing weight in any of the three.
    min_points = 10
    extra = "stats"
    requires = ("statsforecast",)
    # The fitted statsforecast object is not plain data, and the store never pickles; a fit takes milliseconds.
    storable = False
    _estimator_name: str = ""

    def _estimator_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _fit(self, y: np.ndarray) -> None:
        import statsforecast.models

        log_y = np.log(y)
        self.last_ = float(y[-1])
        if np.ptp(log_y) == 0.0:
            self.estimator_ = None
            return
        estimator = getattr(statsforecast.models, self._estimator_name)(**self._estimator_params())
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # statsforecast warns about its optimiser's inner steps; the result is checked when predicting.
                warnings.simplefilter("ignore")
                estimator.fit(log_y)
        except NotImplementedError as exc:
            if "tiny" not in str(exc):
                raise
            raise SeriesTooShortError(
                f"{self.name}: statsforecast's {self._estimator_name} needs more than {y.size} points for "
                f"{self.get_params()}; use a longer history or a simpler model such as 'naive'"
            ) from None
        self.estimator_ = estimator

    @staticmethod
    def _log_forecast(estimator: Any, h: int, levels: tuple[int | float, ...] | None) -> dict[str, np.ndarray]:
        """The fitted ``estimator``'s log-price forecast (callers handle a constant series, which has none)."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            raw = estimator.predict(h, level=list(levels) if levels else None)
        # ARIMA returns pandas Series for its bounds and Theta float32 arrays: one dtype from here on.
        return {key: np.asarray(value, dtype=np.float64).reshape(-1) for key, value in raw.items()}

    def _predict(self, h: int) -> np.ndarray:
        if self.estimator_ is None:
            return np.full(h, self.last_)
        return np.exp(self._log_forecast(self.estimator_, h, None)["mean"])

    def _predict_interval(self, h: int, levels: tuple[int | float, ...]) -> tuple[np.ndarray, dict]:
        if self.estimator_ is None:
            point = np.full(h, self.last_)
            return point, {level: (point.copy(), point.copy()) for level in levels}
        raw = self._log_forecast(self.estimator_, h, levels)
        mean = raw["mean"]
        bounds = {}
        inner_lo, inner_hi = mean, mean
        for level in levels:  # ascending: each level must contain the narrower one
            lo, hi = raw[f"lo-{level}"], raw[f"hi-{level}"]
            lo = np.minimum(np.where(np.isnan(lo), inner_lo, lo), inner_lo)
            hi = np.maximum(np.where(np.isnan(hi), inner_hi, hi), inner_hi)
            bounds[level] = (np.exp(lo), np.exp(hi))
            inner_lo, inner_hi = lo, hi
        return np.exp(mean), bounds


class ETSModel(_StatsForecastModel):
    """statsforecast's ``AutoETS`` on log prices: exponential smoothing, its form chosen by AICc.

    Args:
        season_length: Observations per seasonal cycle; 1 (no season) for daily
            crypto prices, 7 for a weekly pattern.
        model: The ETS form as three letters (error, trend, season), ``Z`` for
            "choose". The default ``"AZZ"`` fixes an additive error, the only one
            that means anything on log prices: a multiplicative error scales
            with the log level, whose size and sign depend on the currency unit
            (statsforecast even refuses it for a coin below 1), so ``"ZZZ"``
            would pick a different model for the same returns quoted in cents.
        damped: Force (True) or forbid (False) a damped trend; None lets AICc choose.

    Attributes (after ``fit``):
        estimator_: The fitted ``AutoETS``; ``estimator_.model_["method"]`` names the chosen form.
    """

    name = "ets"
    description = "statsforecast AutoETS (exponential smoothing, form chosen by AICc) on log prices"
    interval_method = "statsforecast AutoETS analytic intervals on log prices, exp'ed"
    _estimator_name = "AutoETS"

    def __init__(self, *, season_length: int = 1, model: str = "AZZ", damped: bool | None = None) -> None:
        self.season_length = season_length
        self.model = model
        self.damped = damped

    def _estimator_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, "model": self.model, "damped": self.damped}


class ThetaModel(_StatsForecastModel):
    """statsforecast's ``AutoTheta`` on log prices: the Theta method (M3's winner), its variant chosen by MSE.

    Args:
        season_length: Observations per seasonal cycle; 1 for daily crypto prices.
        decomposition_type: How a seasonal cycle is removed first,
            ``"multiplicative"`` or ``"additive"`` (unused when ``season_length`` is 1).
        model: ``"STM"``, ``"OTM"``, ``"DSTM"`` or ``"DOTM"`` (standard, optimised,
            and their dynamic forms); None chooses among them.

    Its intervals are statsforecast's quantiles of 200 simulated paths, and
    statsforecast 2.1 draws the same 200 normal samples (seed 0) for every
    series: their 97.5 % quantile is 1.74 rather than 1.96, so the upper 95 %
    bound sits too close and a random walk's next price falls inside about 92 %
    of the time (80 % intervals are on target). ``theta+conformal`` calibrates
    them on the coin's own errors.

    Attributes (after ``fit``):
        estimator_: The fitted ``AutoTheta``.
    """

    name = "theta"
    description = "statsforecast AutoTheta (the Theta method, variant chosen by MSE) on log prices"
    interval_method = "statsforecast AutoTheta simulated intervals on log prices, exp'ed (95 % under-covers)"
    _estimator_name = "AutoTheta"

    def __init__(
        self, *, season_length: int = 1, decomposition_type: str = "multiplicative", model: str | None = None
    ) -> None:
        self.season_length = season_length
        self.decomposition_type = decomposition_type
        self.model = model

    def _estimator_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, "decomposition_type": self.decomposition_type, "model": self.model}


class ARIMAModel(_StatsForecastModel):
    """statsforecast's ``AutoARIMA`` on log prices: Hyndman-Khandakar stepwise search by AICc.

    Args:
        season_length: Observations per seasonal cycle; 1 for daily crypto prices.
        d: Order of differencing; None lets the KPSS test choose (log prices
            of a coin almost always need 1).
        max_p: Largest autoregressive order searched.
        max_q: Largest moving-average order searched.
        stepwise: The stepwise search (fast); False fits every model up to the
            maximum orders.
        approximation: Select on the conditional sum of squares, then fit the
            chosen model by maximum likelihood: faster on long series.
        allowdrift: Consider a drift term (a trend in the log price) when d = 1.

    Attributes (after ``fit``):
        estimator_: The fitted ``AutoARIMA``.
    """

    name = "arima"
    description = "statsforecast AutoARIMA (stepwise search by AICc) on log prices"
    interval_method = "statsforecast AutoARIMA analytic intervals on log prices, exp'ed"
    _estimator_name = "AutoARIMA"

    def __init__(
        self,
        *,
        season_length: int = 1,
        d: int | None = None,
        max_p: int = 5,
        max_q: int = 5,
        stepwise: bool = True,
        approximation: bool = False,
        allowdrift: bool = True,
    ) -> None:
        self.season_length = season_length
        self.d = d
        self.max_p = max_p
        self.max_q = max_q
        self.stepwise = stepwise
        self.approximation = approximation
        self.allowdrift = allowdrift

    def _estimator_params(self) -> dict[str, Any]:
        return {
            "season_length": self.season_length,
            "d": self.d,
            "max_p": self.max_p,
            "max_q": self.max_q,
            "stepwise": self.stepwise,
            "approximation": self.approximation,
            "allowdrift": self.allowdrift,
        }
