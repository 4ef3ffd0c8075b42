"""ETS, Theta and ARIMA: statsforecast's own answer on log prices, and random walks whose intervals are known."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from crypto_ml.exceptions import SeriesTooShortError
from crypto_ml.models import get_model

from conftest import skip_or_fail

#: Our name -> the statsforecast model it wraps.
WRAPPED = {"ets": "AutoETS", "theta": "AutoTheta", "arima": "AutoARIMA"}
LEVELS = (50, 80, 95)


@pytest.fixture(autouse=True, scope="module")
def needs_statsforecast():
    # Module scope: it must run before the module-scoped fixtures that fit models.
    if importlib.util.find_spec("statsforecast") is None:
        skip_or_fail("statsforecast is not installed; install the stats extra: pip install -e '.[stats]'")


def log_random_walk(n: int, seed: int, sigma: float = 0.03, start: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(sigma * rng.standard_normal(n)))


def bare(name: str, log_y: np.ndarray, h: int, levels, **params) -> dict[str, np.ndarray]:
    """statsforecast called directly on the log series, as its documentation shows."""
    import statsforecast.models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(statsforecast.models, WRAPPED[name])(**params).fit(log_y)
        return model.predict(h, level=list(levels))


@pytest.mark.parametrize("name", list(WRAPPED))
def test_equals_statsforecast_on_log_prices_exped(name):
    y = log_random_walk(300, seed=1)
    ours = get_model(name).fit(y).predict_interval(10, levels=LEVELS)
    params = get_model(name)._estimator_params()
    theirs = bare(name, np.log(y), 10, LEVELS, **params)
    np.testing.assert_array_equal(ours.point, np.exp(np.asarray(theirs["mean"], dtype=np.float64)))
    np.testing.assert_array_equal(get_model(name).fit(y).predict(10), ours.point)
    for level in LEVELS:
        np.testing.assert_array_equal(ours.lower[level], np.exp(np.asarray(theirs[f"lo-{level}"], dtype=np.float64)))
        np.testing.assert_array_equal(ours.upper[level], np.exp(np.asarray(theirs[f"hi-{level}"], dtype=np.float64)))


def test_parameters_reach_statsforecast():
    y = log_random_walk(300, seed=2) * np.exp(0.01 * np.arange(300))  # a clear trend in the logs
    ets = get_model("ets", model="ANN").fit(y)
    assert ets.estimator_.model_["method"] == "ETS(A,N,N)"
    arima = get_model("arima", d=1, max_p=0, max_q=0).fit(y)
    assert arima.estimator_.model_["arma"][:2] == (0, 0) and arima.estimator_.model_["arma"][5] == 1
    theta = get_model("theta", model="STM").fit(y)
    assert theta.estimator_.model_["modeltype"] == "STM"


def one_step_coverage(name: str, params: dict, paths: int, n: int = 60) -> dict[int, float]:
    """Percent of ``paths`` Gaussian log random walks whose next price falls in the one-step interval."""
    hits = {80: 0, 95: 0}
    for seed in range(paths):
        y = log_random_walk(n + 1, seed=1000 + seed)
        forecast = get_model(name, **params).fit(y[:-1]).predict_interval(1)
        for level in hits:
            lo, hi = forecast.interval(level)
            hits[level] += bool(lo[0] <= y[-1] <= hi[0])
    return {level: 100.0 * count / paths for level, count in hits.items()}


COVERAGE_CASES = [
    pytest.param("ets", {}, 80, id="ets-80"),
    pytest.param("ets", {}, 95, id="ets-95"),
    pytest.param("theta", {}, 80, id="theta-80"),
    pytest.param(
        "theta",
        {},
        95,
        id="theta-95",
        marks=pytest.mark.xfail(
            strict=True,
            reason=(
                "statsforecast 2.1's Theta draws the same 200 normal samples (seed 0) for every series; their 97.5 % "
                "quantile is 1.74, not 1.96, so the upper 95 % bound is too close and coverage is ~92 %"
            ),
        ),
    ),
    # ARIMA(0,1,0) is the true model of a random walk; the full stepwise search costs ~0.4 s a series,
    # too slow for a thousand paths (the equality test above covers it).
    pytest.param("arima", {"d": 1, "max_p": 0, "max_q": 0, "allowdrift": False}, 80, id="arima010-80"),
    pytest.param("arima", {"d": 1, "max_p": 0, "max_q": 0, "allowdrift": False}, 95, id="arima010-95"),
]


@pytest.fixture(scope="module")
def covered():
    """One-step coverage per model, computed once for both levels."""
    cache: dict[tuple, dict[int, float]] = {}

    def get(name: str, params: dict) -> dict[int, float]:
        key = (name, tuple(sorted(params.items())))
        if key not in cache:
            cache[key] = one_step_coverage(name, params, paths=1000)
        return cache[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name, params, level", COVERAGE_CASES)
def test_one_step_intervals_cover_a_random_walk_at_their_level(covered, name, params, level):
    # 1,000 paths: a standard error of 1.3 points at 80 %, 0.7 at 95 %.
    assert covered(name, params)[level] == pytest.approx(level, abs=3.0 if level == 80 else 2.0)


@pytest.mark.parametrize("name", list(WRAPPED))
def test_intervals_are_positive_and_nest_at_many_levels(name):
    forecast = get_model(name).fit(log_random_walk(200, seed=4)).predict_interval(10, levels=(50, 80, 95, 99))
    inner = (forecast.point, forecast.point)
    for level in forecast.levels:
        lo, hi = forecast.interval(level)
        assert np.all(lo > 0) and np.all(lo <= inner[0]) and np.all(hi >= inner[1])
        assert np.all(lo < forecast.point) and np.all(hi > forecast.point), "a random walk has no zero-width interval"
        inner = (lo, hi)


@pytest.mark.parametrize("name", list(WRAPPED))
def test_constant_series_forecasts_the_constant_with_degenerate_intervals(name):
    model = get_model(name).fit(np.full(50, 3e-10))
    assert model.estimator_ is None
    forecast = model.predict_interval(5)
    np.testing.assert_array_equal(forecast.point, 3e-10)
    for level in forecast.levels:
        lo, hi = forecast.interval(level)
        np.testing.assert_array_equal(lo, 3e-10)
        np.testing.assert_array_equal(hi, 3e-10)


def test_theta_float32_bounds_never_cross_the_point():
    # A nearly flat coin at 3e-10: log price -21.9, moves of 1e-9. Theta's float32 bounds round to
    # about 2e-6 of the log level, above the point itself; they are pulled back onto the point.
    rng = np.random.default_rng(0)
    y = 3e-10 * np.exp(np.cumsum(1e-9 * rng.standard_normal(100)))
    forecast = get_model("theta").fit(y).predict_interval(3)
    for level in forecast.levels:
        lo, hi = forecast.interval(level)
        assert np.all(lo <= forecast.point) and np.all(hi >= forecast.point)
        np.testing.assert_allclose(hi, forecast.point, rtol=1e-5)


@pytest.mark.parametrize("name", list(WRAPPED))
def test_tiny_prices_keep_their_scale_and_relative_intervals(name):
    y = log_random_walk(300, seed=5)
    big = get_model(name).fit(y).predict_interval(10)
    tiny = get_model(name).fit(y * 3e-12).predict_interval(10)
    np.testing.assert_allclose(tiny.point / 3e-12, big.point, rtol=1e-2)
    for level in (80, 95):
        # The log level moves by log(3e-12) = -26.5; the models' selection and fit are (nearly) level-free.
        np.testing.assert_allclose(tiny.upper[level] / tiny.point, big.upper[level] / big.point, rtol=1e-2)
        np.testing.assert_allclose(tiny.lower[level] / tiny.point, big.lower[level] / big.point, rtol=1e-2)


@pytest.mark.parametrize("name", list(WRAPPED))
def test_deterministic(name):
    y = log_random_walk(200, seed=6)
    a = get_model(name).fit(y).predict_interval(7).to_record()
    b = get_model(name).fit(y).predict_interval(7).to_record()
    assert a == b


def test_statsforecasts_tiny_dataset_refusal_is_series_too_short():
    # A weekly-seasonal ETS with a trend has 11 parameters; statsforecast wants more than 15 points.
    with pytest.raises(SeriesTooShortError, match="AutoETS needs more than 10 points"):
        get_model("ets", model="AAA", season_length=7).fit(log_random_walk(10, seed=7))
