"""GARCHModel on series whose answer is known: a simulated GARCH(1,1)-t path, flat series, tiny prices."""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest

from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.models import get_model
from crypto_ml.models.intervals import ewma_volatility

from conftest import skip_or_fail

# The process the path is drawn from: 3 % daily volatility on average, persistent, fat-tailed.
ALPHA, BETA, NU = 0.08, 0.90, 5.0
OMEGA = 0.03**2 * (1.0 - ALPHA - BETA)
N_FIT, N_EVAL = 4000, 6000


@pytest.fixture(autouse=True, scope="module")
def needs_arch():
    # Module scope: it must run before the module-scoped fixtures that fit models.
    if importlib.util.find_spec("arch") is None:
        skip_or_fail("arch is not installed; install the stats extra: pip install -e '.[stats]'")


def simulate_garch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Prices from a zero-mean GARCH(1,1) with standardised Student-t shocks, and each return's true variance."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(NU, n) * math.sqrt((NU - 2.0) / NU)
    variance = np.empty(n)
    returns = np.empty(n)
    v = OMEGA / (1.0 - ALPHA - BETA)
    for t in range(n):
        variance[t] = v
        returns[t] = math.sqrt(v) * z[t]
        v = OMEGA + ALPHA * returns[t] ** 2 + BETA * v
    return 50.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)])), variance


@pytest.fixture(scope="module")
def path():
    return simulate_garch(N_FIT + N_EVAL, seed=11)


@pytest.fixture(scope="module")
def fitted(path):
    prices, _ = path
    return get_model("garch").fit(prices[: N_FIT + 1])


def rolling_forecasts(model, prices: np.ndarray, h: int):
    """Intervals from every origin after the fit, with the fitted parameters kept and the state filtered forward.

    Refitting at each of 6,000 origins would take ten minutes; the parameters of
    a 4,000-day fit barely move in the next days, so the state (last price, next
    day's variance) is advanced by the fitted recursion instead.
    """
    state = copy.copy(model)
    log_prices = np.log(prices)
    forecasts = []
    for origin in range(N_FIT, N_FIT + N_EVAL - h + 1):
        if origin > N_FIT:
            shock = log_prices[origin] - log_prices[origin - 1] - state.mu_
            state.next_variance_ = state.omega_ + state.alpha_ * shock**2 + state.beta_ * state.next_variance_
            state.last_ = float(prices[origin])
        forecasts.append((origin, state.predict_interval(h)))
    return forecasts


def coverage(forecasts, prices: np.ndarray, step: int, level: int, origins=None) -> float:
    hits = []
    for origin, forecast in forecasts:
        if origins is not None and origin not in origins:
            continue
        lo, hi = forecast.interval(level)
        actual = prices[origin + step]
        hits.append(lo[step - 1] <= actual <= hi[step - 1])
    return 100.0 * float(np.mean(hits))


def test_recovers_the_parameters_of_the_process(fitted):
    assert fitted.method_ == "garch"
    assert fitted.alpha_ == pytest.approx(ALPHA, abs=0.03)
    assert fitted.beta_ == pytest.approx(BETA, abs=0.04)
    assert 3.5 < fitted.nu_ < 8.0
    assert math.sqrt(fitted.omega_ / (1 - fitted.alpha_ - fitted.beta_)) == pytest.approx(0.03, rel=0.15)
    assert fitted.mu_ == 0.0


def test_one_day_intervals_cover_at_their_level_over_6000_origins(fitted, path):
    prices, variance = path
    one_day = rolling_forecasts(fitted, prices, h=1)
    for level in (80, 95):
        assert coverage(one_day, prices, 1, level) == pytest.approx(level, abs=2.0)
    # The point of GARCH: after a burst of volatility the intervals widen, so coverage roughly holds on
    # the wildest fifth of days too, where the fixed-width naive empirical interval (the quantiles of
    # all past daily returns) covers far fewer.
    wild = set((N_FIT + np.flatnonzero(variance[N_FIT:] >= np.quantile(variance[N_FIT:], 0.8))).tolist())
    past = np.diff(np.log(prices[: N_FIT + 1]))
    for level, garch_band, fixed_shortfall in ((80, 4.0, 8.0), (95, 2.0, 3.0)):
        low, high = np.exp(np.quantile(past, [0.5 - level / 200, 0.5 + level / 200]))
        fixed = 100.0 * np.mean([low <= prices[o + 1] / prices[o] <= high for o in sorted(wild)])
        assert coverage(one_day, prices, 1, level, wild) == pytest.approx(level, abs=garch_band)
        assert fixed < level - fixed_shortfall


@pytest.mark.slow
def test_five_day_intervals_cover_over_overlapping_origins(fitted, path):
    # Overlapping five-day windows of a volatility-clustered series are worth about a fifth as many
    # independent checks (a standard error near 1.2 points at 80 %): a looser band than one day's.
    prices, _ = path
    five_days = rolling_forecasts(fitted, prices, h=5)
    for level in (80, 95):
        assert coverage(five_days, prices, 5, level) == pytest.approx(level, abs=3.0)


@pytest.mark.parametrize("start", [1.0, 4.0], ids=["calm", "after-a-shock"])
def test_multi_day_intervals_cover_independent_futures_of_the_true_process(fitted, start):
    # With the true parameters, the simulated quantiles of each step must hold that share of 20,000
    # futures drawn independently from the process itself, whatever the starting volatility.
    model = copy.copy(fitted)
    model.omega_, model.alpha_, model.beta_, model.nu_ = OMEGA, ALPHA, BETA, NU
    model.next_variance_ = start * OMEGA / (1.0 - ALPHA - BETA)
    h, paths = 10, 20_000
    rng = np.random.default_rng(99)
    v = np.full(paths, model.next_variance_)
    total = np.zeros(paths)
    futures = np.empty((h, paths))
    for step in range(h):
        shock = np.sqrt(v) * rng.standard_t(NU, paths) * math.sqrt((NU - 2.0) / NU)
        total += shock
        futures[step] = model.last_ * np.exp(total)
        v = OMEGA + ALPHA * shock**2 + BETA * v
    forecast = model.predict_interval(h)
    for level in (80, 95):
        lo, hi = forecast.interval(level)
        inside = 100.0 * np.mean((futures >= lo[:, None]) & (futures <= hi[:, None]), axis=1)
        np.testing.assert_allclose(inside, level, atol=1.2)


def test_first_step_is_the_exact_student_t_quantile(fitted):
    from scipy import stats

    forecast = fitted.predict_interval(3, levels=(80, 95))
    sd = math.sqrt(fitted.next_variance_)
    for level in (80, 95):
        q = stats.t.ppf(0.5 + level / 200, fitted.nu_) * math.sqrt((fitted.nu_ - 2) / fitted.nu_) * sd
        lo, hi = forecast.interval(level)
        assert lo[0] == pytest.approx(fitted.last_ * math.exp(-q), rel=1e-9)
        assert hi[0] == pytest.approx(fitted.last_ * math.exp(q), rel=1e-9)


def test_normal_shocks_give_the_normal_quantile():
    prices, _ = simulate_garch(1500, seed=2)
    model = get_model("garch", dist="normal").fit(prices)
    assert model.nu_ is None
    lo, hi = model.predict_interval(1, levels=(95,)).interval(95)
    q = 1.959963984540054 * math.sqrt(model.next_variance_)
    assert lo[0] == pytest.approx(prices[-1] * math.exp(-q), rel=1e-9)
    assert hi[0] == pytest.approx(prices[-1] * math.exp(q), rel=1e-9)


def test_point_is_the_last_price_inside_symmetric_nested_intervals(fitted):
    forecast = fitted.predict_interval(10, levels=(50, 80, 95, 99))
    np.testing.assert_array_equal(forecast.point, fitted.last_)
    previous = (forecast.point, forecast.point)
    for level in forecast.levels:
        lo, hi = forecast.interval(level)
        assert np.all(lo > 0) and np.all(lo <= previous[0]) and np.all(hi >= previous[1])
        # Antithetic paths: the simulated log returns are exactly symmetric about the point.
        np.testing.assert_allclose(np.log(hi / forecast.point), -np.log(lo / forecast.point), rtol=1e-9)
        assert hi[-1] > hi[0] and lo[-1] < lo[0], "the spread of a cumulative return grows with the horizon"
        previous = (lo, hi)


def test_same_seed_same_intervals_and_a_shorter_horizon_is_a_prefix(path):
    prices, _ = path
    y = prices[:600]
    a = get_model("garch", seed=3).fit(y).predict_interval(10)
    b = get_model("garch", seed=3).fit(y).predict_interval(10)
    c = get_model("garch", seed=4).fit(y).predict_interval(10)
    short = get_model("garch", seed=3).fit(y).predict_interval(4)
    assert a.to_record() == b.to_record()
    np.testing.assert_array_equal(a.upper[95][:4], short.upper[95])
    assert a.upper[95][0] == c.upper[95][0], "step 1 is exact, whatever the seed"
    assert not np.array_equal(a.upper[95][1:], c.upper[95][1:])


def test_constant_mean_carries_the_mean_return_forward():
    rng = np.random.default_rng(5)
    returns = 0.01 + 0.001 * rng.standard_normal(800)  # a steady 1 % a day, barely noisy
    prices = np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    model = get_model("garch", mean="constant").fit(prices)
    assert model.mu_ == pytest.approx(0.01, abs=2e-4)
    forecast = model.predict_interval(5)
    np.testing.assert_allclose(forecast.point, prices[-1] * np.exp(model.mu_ * np.arange(1, 6)), rtol=1e-12)
    lo, hi = forecast.interval(95)
    assert np.all(lo < forecast.point) and np.all(forecast.point < hi)


@pytest.mark.parametrize(
    "prices", [np.full(200, 7.25), 7.25 * np.exp(1e-12 * np.sin(np.arange(200)))], ids=["constant", "near-constant"]
)
def test_a_flat_series_gives_degenerate_intervals(prices):
    model = get_model("garch").fit(prices)
    assert model.method_ == "degenerate"
    forecast = model.predict_interval(5)
    np.testing.assert_array_equal(forecast.point, prices[-1])
    for level in forecast.levels:
        lo, hi = forecast.interval(level)
        np.testing.assert_array_equal(lo, forecast.point)
        np.testing.assert_array_equal(hi, forecast.point)


def test_falls_back_to_riskmetrics_when_the_likelihood_fails():
    # Two moves in 100 days: the likelihood has no interior maximum and arch reports failure.
    returns = np.r_[np.zeros(95), 1e-3, 0.0, 0.0, -1e-3]
    prices = 2.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    model = get_model("garch").fit(prices)
    assert model.method_ == "riskmetrics"
    assert (model.omega_, model.alpha_, model.beta_, model.nu_) == (0.0, pytest.approx(0.06), 0.94, None)
    assert model.next_variance_ == pytest.approx(ewma_volatility(returns, 0.94)[-1] ** 2, rel=1e-12)
    forecast = model.predict_interval(3)
    lo, hi = forecast.interval(95)
    assert np.all(lo < forecast.point) and np.all(forecast.point < hi)


def test_tiny_prices_get_the_same_relative_intervals(path):
    prices, _ = path
    y = prices[:500]
    big = get_model("garch").fit(y).predict_interval(10)
    tiny = get_model("garch").fit(y * 3e-12).predict_interval(10)
    assert tiny.point[0] == pytest.approx(3e-12 * y[-1], rel=1e-12)
    for level in (80, 95):
        np.testing.assert_allclose(tiny.lower[level] / tiny.point, big.lower[level] / big.point, rtol=1e-6)
        np.testing.assert_allclose(tiny.upper[level] / tiny.point, big.upper[level] / big.point, rtol=1e-6)


def test_a_fitted_model_holds_only_plain_values_and_survives_the_model_store(fitted, tmp_path):
    from crypto_ml.model_store import ModelStore

    for attr, value in vars(fitted).items():
        if attr.endswith("_") and attr != "log_prices_":
            assert value is None or isinstance(value, (bool, int, float, str)), attr
    store = ModelStore(tmp_path / "store")
    loaded, _ = store.load(store.save(fitted, coin="sim", data={"n_obs": fitted.n_obs_}, metrics={}))
    assert loaded.predict_interval(10).to_record() == fitted.predict_interval(10).to_record()


@pytest.mark.parametrize(
    "params", [{"mean": "ar"}, {"dist": "skewt"}, {"simulations": 10}, {"simulations": 2.5}, {"seed": "x"}]
)
def test_bad_parameters_are_named(params):
    with pytest.raises(InvalidParameterError, match=next(iter(params))):
        get_model("garch", **params).fit(simulate_garch(100, seed=1)[0])
