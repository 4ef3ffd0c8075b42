"""GARCH(1,1) with Student-t shocks on daily log returns: a volatility model whose intervals widen after big moves.

The point forecast is the random walk (the last price), or the last price
carried forward at the fitted mean return with ``mean="constant"``: at a daily
scale a coin's mean return is noise next to its spread, so the volatility is
what the model is for. The ``arch`` package estimates the parameters; the
forecast distribution is simulated here, in NumPy, from those few numbers, so
a fitted model holds only floats (which the model store can save) and the
simulation is seeded.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from ..exceptions import InvalidParameterError
from .base import Forecaster
from .intervals import central_quantiles, ewma_volatility, nest_around

__all__ = ["GARCHModel"]

log = logging.getLogger(__name__)

#: arch's advice: returns in percent, so that the optimiser works on numbers near 1.
RETURN_SCALE = 100.0
#: A series whose daily log returns spread less than this (a ten-millionth of a percent, far below any
#: exchange's tick) has no volatility to model: its intervals collapse onto the point.
ZERO_SPREAD = 1e-9
#: RiskMetrics' daily decay: the fallback when the GARCH likelihood cannot be maximised.
FALLBACK_DECAY = 0.94

_MEANS = ("zero", "constant")
_DISTS = ("t", "normal")


class GARCHModel(Forecaster):
    """GARCH(1,1) fitted by ``arch`` on daily log returns (in percent), with seeded simulated intervals.

    The returns ``r[t] = mu + e[t]``, ``e[t] = sigma[t] * z[t]``, with
    ``sigma[t]^2 = omega + alpha * e[t-1]^2 + beta * sigma[t-1]^2`` and ``z``
    standardised Student-t (or normal) shocks, are fitted by maximum
    likelihood (``arch.arch_model``). ``mu`` is 0 unless ``mean="constant"``.

    Intervals are for the cumulative log return to each step: the first step's
    distribution is known exactly (a scaled Student-t), so its bounds are its
    quantiles; later steps come from ``simulations`` paths of the fitted
    recursion, drawn in antithetic pairs (``z`` and ``-z``) so that the simulated
    distribution is exactly symmetric about the point forecast, which therefore
    lies inside every interval. Bounds are ``point * exp(quantile)``: positive,
    and scale-free (a coin at 3e-10 gets the same relative intervals as one at
    3e4).

    Two cases do not go through the likelihood:

    * Returns that barely move (spread below ``ZERO_SPREAD``, e.g. a constant
      series): there is nothing to estimate, the intervals collapse onto the
      point. ``method_`` is ``"degenerate"``.
    * The optimiser fails or does not converge (short or mostly flat series):
      rather than fail the coin, the model falls back to RiskMetrics' EWMA
      volatility, which is the GARCH(1,1) with ``omega = 0``, ``alpha = 0.06``,
      ``beta = 0.94`` and normal shocks, simulated the same way. A warning is
      logged and ``method_`` is ``"riskmetrics"``.

    Args:
        mean: ``"zero"`` (the default: the point is the last price) or
            ``"constant"`` (a fitted mean daily log return, carried forward).
        dist: The shocks' distribution: ``"t"`` (Student-t, fat tails, the
            default) or ``"normal"``.
        simulations: Paths simulated for steps 2 and later (rounded down to an
            even number for the antithetic pairs); at least 100. 2,000 paths put
            a 95 % bound within about 2 % of its exact value.
        seed: Seed of the simulation; the same seed gives the same intervals.
            None draws fresh entropy (not repeatable).

    Attributes:
        method_: ``"garch"``, ``"riskmetrics"`` (the fallback) or ``"degenerate"``.
        mu_, omega_, alpha_, beta_: The fitted parameters, in daily log-return units.
        nu_: The Student-t degrees of freedom, None for normal shocks.
        next_variance_: The variance of the next day's log return.
        last_: The last price.
    """

    name = "garch"
    # 29 returns for 4 parameters: fewer and the likelihood is too flat to say anything.
    min_points = 30
    description = "GARCH(1,1) volatility with Student-t shocks (arch) on daily log returns; random-walk point"
    interval_method = "quantiles of seeded simulated GARCH-t cumulative log returns (step 1 exact)"
    extra = "stats"
    requires = ("arch",)

    def __init__(self, *, mean: str = "zero", dist: str = "t", simulations: int = 2000, seed: int | None = 0) -> None:
        self.mean = mean
        self.dist = dist
        self.simulations = simulations
        self.seed = seed

    def _check_params(self) -> None:
        if self.mean not in _MEANS:
            raise InvalidParameterError(f"garch: mean must be one of {', '.join(_MEANS)}, got {self.mean!r}")
        if self.dist not in _DISTS:
            raise InvalidParameterError(f"garch: dist must be one of {', '.join(_DISTS)}, got {self.dist!r}")
        if (
            isinstance(self.simulations, bool)
            or not isinstance(self.simulations, (int, np.integer))
            or self.simulations < 100
        ):
            raise InvalidParameterError(f"garch: simulations must be an int >= 100, got {self.simulations!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise InvalidParameterError(f"garch: seed must be an int or None, got {self.seed!r}")

    def _fit(self, y: np.ndarray) -> None:
        self._check_params()
        returns = np.diff(np.log(y))
        self.last_ = float(y[-1])
        constant = self.mean == "constant"
        self.mu_ = float(returns.mean()) if constant else 0.0
        # The spread the volatility model would explain: around the mean if one is fitted, around 0 if not.
        spread = float(returns.std()) if constant else float(np.sqrt(np.mean(returns * returns)))
        self.nu_: float | None = None
        if spread < ZERO_SPREAD:
            self.method_ = "degenerate"
            self.omega_ = self.alpha_ = self.beta_ = self.next_variance_ = 0.0
            return
        if not self._fit_garch(returns):
            log.warning(
                "garch: the likelihood could not be maximised for this %d-point series; "
                "falling back to RiskMetrics EWMA volatility (decay %.2f)",
                y.size,
                FALLBACK_DECAY,
            )
            self.method_ = "riskmetrics"
            self.omega_, self.alpha_, self.beta_, self.nu_ = 0.0, 1.0 - FALLBACK_DECAY, FALLBACK_DECAY, None
            self.next_variance_ = float(ewma_volatility(returns - self.mu_, FALLBACK_DECAY)[-1] ** 2)

    def _fit_garch(self, returns: np.ndarray) -> bool:
        """Maximise the GARCH likelihood; store the parameters in log-return units and say whether it worked."""
        from arch import arch_model

        # rescale=True: a coin much calmer or wilder than a percent a day is moved by a power of ten
        # (res.scale) so that the optimiser still sees numbers near 1.
        model = arch_model(
            RETURN_SCALE * returns,
            mean="Constant" if self.mean == "constant" else "Zero",
            vol="GARCH",
            p=1,
            q=1,
            dist="t" if self.dist == "t" else "normal",
            rescale=True,
        )
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                # Convergence is judged from the result's flag below, not from warnings.
                warnings.simplefilter("ignore")
                result = model.fit(disp="off", show_warning=False)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            return False
        params = result.params
        scale = RETURN_SCALE * float(result.scale)
        omega, alpha, beta = float(params["omega"]), float(params["alpha[1]"]), float(params["beta[1]"])
        # One-day-ahead variance from the last shock and the last conditional variance.
        last_shock = float(np.asarray(result.resid)[-1])
        last_variance = float(np.asarray(result.conditional_volatility)[-1]) ** 2
        next_variance = omega + alpha * last_shock**2 + beta * last_variance
        values = [omega, alpha, beta, next_variance] + ([float(params["nu"])] if self.dist == "t" else [])
        if result.convergence_flag != 0 or not all(math.isfinite(v) for v in values) or next_variance <= 0:
            return False
        self.method_ = "garch"
        self.mu_ = float(params["mu"]) / scale if self.mean == "constant" else 0.0
        self.omega_ = omega / scale**2
        self.alpha_, self.beta_ = alpha, beta
        self.nu_ = float(params["nu"]) if self.dist == "t" else None
        self.next_variance_ = next_variance / scale**2
        return True

    def _predict(self, h: int) -> np.ndarray:
        # The median of the cumulative log return is h * mu (the shocks are symmetric).
        return self.last_ * np.exp(self.mu_ * np.arange(1, h + 1))

    def _predict_interval(self, h: int, levels: tuple[int | float, ...]) -> tuple[np.ndarray, dict]:
        point = self._predict(h)
        if self.method_ == "degenerate":
            return point, {level: (point.copy(), point.copy()) for level in levels}
        probabilities = sorted({p for level in levels for p in central_quantiles(level)})
        column = {p: i for i, p in enumerate(probabilities)}
        table = np.empty((h, len(probabilities)))
        table[0] = self._standard_quantiles(np.asarray(probabilities)) * math.sqrt(self.next_variance_)
        if h > 1:
            table[1:] = np.quantile(self._simulate_shock_sums(h)[1:], probabilities, axis=1).T
        return point, {
            level: nest_around(
                point, table[:, column[central_quantiles(level)[0]]], table[:, column[central_quantiles(level)[1]]]
            )
            for level in levels
        }

    def _standard_quantiles(self, probabilities: np.ndarray) -> np.ndarray:
        """Quantiles of the unit-variance shock ``z``."""
        from scipy.special import ndtri, stdtrit

        if self.nu_ is None:
            return ndtri(probabilities)
        return stdtrit(self.nu_, probabilities) * math.sqrt((self.nu_ - 2.0) / self.nu_)

    def _simulate_shock_sums(self, h: int) -> np.ndarray:
        """``(h, paths)``: the sum of the shocks ``e`` up to each step, along seeded antithetic paths.

        One step is drawn after another from the same generator, so the first
        ``k`` steps of an ``h``-step forecast are those of a ``k``-step one.
        """
        rng = np.random.default_rng(self.seed)
        half = int(self.simulations) // 2
        variance = np.full(half, self.next_variance_)
        total = np.zeros(half)
        sums = np.empty((h, 2 * half))
        for step in range(h):
            if self.nu_ is None:
                z = rng.standard_normal(half)
            else:
                z = rng.standard_t(self.nu_, half) * math.sqrt((self.nu_ - 2.0) / self.nu_)
            shock = np.sqrt(variance) * z
            total += shock
            # The mirrored path (-z) has the same variances and the opposite sum.
            sums[step, :half] = total
            sums[step, half:] = -total
            variance = self.omega_ + self.alpha_ * shock * shock + self.beta_ * variance
        return sums
