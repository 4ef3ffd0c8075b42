"""The seed's support vector regressions of price on the time index, with scaling.

The seed fed raw day numbers and raw prices to ``SVR(C=1e3)``; libsvm then
needs minutes to converge on long series. Scaling time to [0, 1] over the
training range and standardising prices (both from the training data only, so
a backtest cannot peek ahead) makes a fit take milliseconds and keeps ``C``
meaningful across coins whose prices differ by eleven orders of magnitude.
"""

from __future__ import annotations

import warnings

import numpy as np

from .base import Forecaster

__all__ = ["SVRModel", "LinearSVRModel", "RbfSVRModel", "PolySVRModel"]


class SVRModel(Forecaster):
    """scikit-learn ``SVR`` of standardised price on scaled time; subclasses fix the kernel.

    Args:
        C: Regularisation strength. The seed's 1e3 makes libsvm run for
            seconds per noisy series without converging; 100 converges in
            about 0.1 s on 1,600 points and forecasts about the same.
        epsilon: Width of the no-penalty tube, in standard deviations of the price.
        gamma: Kernel coefficient for ``rbf`` and ``poly`` ('scale' or a float).
        degree: Polynomial degree for ``poly``.
        coef0: Constant term of the ``poly`` kernel. The seed's 0 leaves a
            degree-2 kernel with no linear term, so it cannot follow a trend and
            libsvm fails to converge; 1 keeps every lower-order term.
        window: Fit on the last ``window`` points only; None uses the whole history.
        max_iter: libsvm iteration cap, so a pathological series cannot stall a worker;
            -1 means no cap.
        log_prices: Fit log prices and exponentiate the fit, so a forecast is never a
            price at or below zero. False (the default) fits raw prices as the seed
            did, and a coin whose fit reaches zero fails with
            ``NonPositiveForecastError`` and the reason. Not the default because an
            exponentiated extrapolation can explode: ``svr_poly``'s parabola on log
            prices forecast GameCredits at 870 times its price ten days out.
    """

    kernel = "rbf"
    min_points = 3

    def __init__(
        self,
        *,
        C: float = 100.0,
        epsilon: float = 0.05,
        gamma: float | str = "scale",
        degree: int = 2,
        coef0: float = 1.0,
        window: int | None = None,
        max_iter: int = 200_000,
        log_prices: bool = False,
    ) -> None:
        self.C = C
        self.epsilon = epsilon
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.window = window
        self.max_iter = max_iter
        self.log_prices = log_prices

    def _fit(self, y: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.svm import SVR

        if self.window is not None:
            y = y[-self.window :]
        if self.log_prices:
            y = np.log(y)
        self.n_fit_ = y.size
        self.y_mean_ = float(y.mean())
        std = float(y.std())
        # A constant series has std 0; any positive scale gives the same (flat) fit.
        self.y_scale_ = std if std > 0 else 1.0
        t = self._scaled_time(np.arange(y.size))
        self.regressor_ = SVR(
            kernel=self.kernel,
            C=self.C,
            epsilon=self.epsilon,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
            max_iter=self.max_iter,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            self.regressor_.fit(t, (y - self.y_mean_) / self.y_scale_)
        # Reported in the per-coin result rather than lost in worker logs.
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def _scaled_time(self, index: np.ndarray) -> np.ndarray:
        span = max(self.n_fit_ - 1, 1)
        return (index.astype(np.float64) / span).reshape(-1, 1)

    def _predict(self, h: int) -> np.ndarray:
        t_future = self._scaled_time(np.arange(self.n_fit_, self.n_fit_ + h))
        fitted = self.regressor_.predict(t_future) * self.y_scale_ + self.y_mean_
        return np.exp(fitted) if self.log_prices else fitted


class LinearSVRModel(SVRModel):
    """SVR with a linear kernel."""

    name = "svr_linear"
    kernel = "linear"
    description = "the seed's SVR on the time index, linear kernel; refuses a coin whose fit crosses zero"


class RbfSVRModel(SVRModel):
    """SVR with a radial basis function kernel."""

    name = "svr_rbf"
    kernel = "rbf"
    description = "the seed's SVR on the time index, RBF kernel; refuses a coin whose fit crosses zero"


class PolySVRModel(SVRModel):
    """SVR with a polynomial kernel (degree 2 by default, as in the seed)."""

    name = "svr_poly"
    kernel = "poly"
    description = "the seed's SVR on the time index, degree-2 polynomial kernel; refuses a coin whose fit crosses zero"
