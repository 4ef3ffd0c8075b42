"""``ewma``: the random walk with volatility-scaled intervals, checked on series whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.models import get_model

HORIZON = 10


def garch_prices(n: int, seed: int, alpha: float = 0.08, beta: float = 0.9, daily_vol: float = 0.03):
    """A GARCH(1,1) price path with Student-t(5) shocks, and the true volatility of each day's return."""
    rng = np.random.default_rng(seed)
    omega = daily_vol**2 * (1 - alpha - beta)
    shocks = rng.standard_t(5, n) * np.sqrt(3 / 5)  # unit variance
    variance = np.empty(n)
    returns = np.empty(n)
    variance[0] = daily_vol**2
    for t in range(n):
        if t:
            variance[t] = omega + alpha * returns[t - 1] ** 2 + beta * variance[t - 1]
        returns[t] = np.sqrt(variance[t]) * shocks[t]
    prices = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    return prices, np.sqrt(variance)


def rolling_coverage(name: str, prices: np.ndarray, first: int, every: int, levels=(80, 95)):
    """Per origin: whether each level's interval held every step's actual price, and each step's hit."""
    hits = {level: [] for level in levels}
    cutoffs = list(range(first, prices.size - HORIZON, every))
    for cutoff in cutoffs:
        forecast = get_model(name).fit(prices[:cutoff].copy()).predict_interval(HORIZON, levels)
        actual = prices[cutoff : cutoff + HORIZON]
        for level in levels:
            lo, hi = forecast.interval(level)
            hits[level].append((actual >= lo) & (actual <= hi))
    return {level: np.array(rows) for level, rows in hits.items()}, np.array(cutoffs)


def test_point_forecast_is_the_random_walk():
    y = garch_prices(300, seed=1)[0]
    np.testing.assert_array_equal(get_model("ewma").fit(y).predict(5), np.full(5, y[-1]))


@pytest.mark.slow
def test_coverage_is_near_nominal_on_a_long_garch_path():
    prices, _ = garch_prices(6000, seed=7)
    hits, _ = rolling_coverage("ewma", prices, first=500, every=7)
    assert abs(hits[80].mean() - 0.80) < 0.03, hits[80].mean()
    assert abs(hits[95].mean() - 0.95) < 0.02, hits[95].mean()


@pytest.mark.slow
def test_intervals_follow_volatility_where_a_fixed_width_cannot():
    """In the calmest and wildest thirds of origins, ewma stays nearer nominal than the naive empirical interval."""
    prices, true_volatility = garch_prices(6000, seed=11)
    ours, cutoffs = rolling_coverage("ewma", prices, first=500, every=7, levels=(80,))
    naive, _ = rolling_coverage("naive", prices, first=500, every=7, levels=(80,))
    regime = true_volatility[cutoffs]  # the volatility of the first unseen day's return
    calm, wild = regime <= np.quantile(regime, 1 / 3), regime >= np.quantile(regime, 2 / 3)
    for part in (calm, wild):
        assert abs(ours[80][part].mean() - 0.80) < abs(naive[80][part].mean() - 0.80)
    assert abs(ours[80][wild].mean() - 0.80) < 0.07
    # The interval widens with the volatility it saw, so the fixed one over-covers calm days and under-covers wild ones.
    assert naive[80][calm].mean() > 0.85 and naive[80][wild].mean() < 0.75


def test_widths_grow_with_the_horizon_and_with_recent_volatility():
    prices, _ = garch_prices(800, seed=3)
    calm = get_model("ewma").fit(prices).predict_interval(HORIZON)
    width = np.log(calm.upper[80] / calm.lower[80])
    assert np.all(np.diff(width) > -1e-12) and width[-1] > 2 * width[0]
    shocked = prices.copy()
    shocked[-5:] *= np.exp(np.cumsum([0.2, -0.25, 0.3, -0.2, 0.25]))  # five wild days at the end
    wild = get_model("ewma").fit(shocked).predict_interval(HORIZON)
    assert np.all(np.log(wild.upper[80] / wild.lower[80]) > width)


def test_blend_zero_is_the_symmetric_empirical_interval():
    y = garch_prices(400, seed=5)[0]
    forecast = get_model("ewma", blend=0.0).fit(y).predict_interval(2, levels=(80,))
    moves = np.abs(np.diff(np.log(y)))
    half_width = np.quantile(moves, 0.8)
    np.testing.assert_allclose(forecast.upper[80][0], y[-1] * np.exp(half_width))
    np.testing.assert_allclose(forecast.lower[80][0], y[-1] * np.exp(-half_width))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"blend": 1.5}, "blend must be in"),
        ({"warmup": 0}, "warmup"),
        ({"recency": 2.0}, "recency decay"),
        ({"decay": 1.0}, "decay must be"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        get_model("ewma", **params).fit(garch_prices(100, seed=1)[0])
