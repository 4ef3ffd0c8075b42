"""Interval building blocks: EWMA volatility, weighted conformal quantiles and empirical k-day intervals, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_ml.exceptions import InvalidParameterError, SeriesTooShortError
from crypto_ml.models.intervals import (
    central_quantiles,
    conformal_quantiles,
    empirical_intervals,
    ewma_volatility,
    nest_around,
    recency_weights,
)


def test_central_quantiles():
    assert central_quantiles(80) == pytest.approx((0.10, 0.90))
    assert central_quantiles(95) == pytest.approx((0.025, 0.975))


def test_ewma_volatility_is_the_riskmetrics_recursion():
    r = np.array([0.1, -0.2, 0.05])
    v0 = np.mean(r[:2] ** 2)  # warmup 2
    expected = [v0]
    for value in r:
        expected.append(0.9 * expected[-1] + 0.1 * value**2)
    np.testing.assert_allclose(ewma_volatility(r, 0.9, warmup=2), np.sqrt(expected), rtol=1e-14)


def test_ewma_volatility_matches_the_recursion_across_blocks():
    r = np.random.default_rng(1).normal(0, 0.05, 3000)  # longer than one 256-day block
    variance = [np.mean(r[:30] ** 2)]
    for value in r:
        variance.append(0.94 * variance[-1] + 0.06 * value**2)
    np.testing.assert_allclose(ewma_volatility(r, 0.94), np.sqrt(variance), rtol=1e-12)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_ewma_decay_outside_the_unit_interval_is_refused(decay):
    with pytest.raises(InvalidParameterError, match="decay must be in"):
        ewma_volatility(np.ones(5), decay)


def test_recency_weights_halve_with_age():
    np.testing.assert_allclose(recency_weights(3, 0.5), [0.25, 0.5, 1.0])
    np.testing.assert_array_equal(recency_weights(3, None), [1.0, 1.0, 1.0])
    with pytest.raises(InvalidParameterError, match="recency decay"):
        recency_weights(3, 0.0)


def test_conformal_quantile_counts_the_unseen_point():
    # Four equal weights plus the test point's: total 5. The 60 % quantile needs cumulative weight 3: the third score.
    scores = np.array([4.0, 1.0, 3.0, 2.0])
    np.testing.assert_array_equal(conformal_quantiles(scores, np.ones(4), [0.6, 0.8]), [3.0, 4.0])
    # 0.9 * 5 = 4.5 exceeds the four scores' weight: the largest score stands in.
    np.testing.assert_array_equal(conformal_quantiles(scores, np.ones(4), [0.9]), [4.0])


def test_conformal_quantile_leans_on_recent_scores():
    scores = np.array([10.0, 10.0, 10.0, 1.0, 1.0])
    recent = recency_weights(5, 0.1)  # the last two dominate: 0.0001, 0.001, 0.01, 0.1, 1
    assert conformal_quantiles(scores, recent, [0.5])[0] == 1.0
    assert conformal_quantiles(scores, np.ones(5), [0.5])[0] == 10.0


def test_nest_around_keeps_the_point_inside():
    point = np.array([10.0, 10.0])
    low, high = nest_around(point, np.array([0.1, -0.1]), np.array([0.2, -0.05]))
    np.testing.assert_allclose(low, [10.0, 10.0 * np.exp(-0.1)])
    np.testing.assert_allclose(high, [10.0 * np.exp(0.2), 10.0])


def test_empirical_intervals_centre_on_the_median_move():
    log_prices = np.log([1.0, 2.0, 4.0, 8.0, 16.0])  # every one-day move is log 2
    point = np.array([32.0])
    bounds = empirical_intervals(log_prices, point, (80,))
    np.testing.assert_allclose(bounds[80][0], [32.0])
    np.testing.assert_allclose(bounds[80][1], [32.0])
    uncentred = empirical_intervals(log_prices, np.array([16.0]), (80,), centre=False)
    np.testing.assert_allclose(uncentred[80][1], [32.0])  # the benchmark: last price times the move
    np.testing.assert_allclose(uncentred[80][0], [16.0])  # the move is never negative: lo stays at the point


def test_empirical_intervals_need_one_return():
    with pytest.raises(SeriesTooShortError, match="at least 2 points"):
        empirical_intervals(np.log([5.0]), np.array([5.0]), (80,))
