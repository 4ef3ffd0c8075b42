"""Per-window scores against values computed by hand: point metrics on prices, interval metrics on log prices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crypto_ml.evaluation.metrics import (
    absolute_errors,
    coverage,
    crps_from_quantiles,
    directional_accuracy,
    inside,
    interval_width,
    mae,
    mase,
    origin_volatility,
    pinball_loss,
    pit_values,
    rmse,
    smape,
    winkler_score,
    winkler_scores,
)
from crypto_ml.exceptions import InvalidParameterError

e = np.exp  # interval metrics take prices and score log prices: exp(x) is a price whose log is x


# --- point metrics -------------------------------------------------------------


def test_mae_and_rmse_by_hand():
    # errors |f - a| = [1, 0, 2]: MAE = 3/3 = 1; RMSE = sqrt((1 + 0 + 4) / 3) = sqrt(5/3)
    assert mae([1, 2, 3], [2, 2, 5]) == 1.0
    assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))


def test_smape_by_hand_with_zero_over_zero_as_zero():
    # step 1: 200 * 10 / (100 + 110) = 9.5238...; step 2: a = f = 0 is exact, 0; mean = 4.7619...
    assert smape([100, 0], [110, 0]) == pytest.approx(200 * 10 / 210 / 2)
    assert smape([1], [-1]) == 200.0  # the top of the 0-200 scale
    assert smape([0, 0], [0, 0]) == 0.0


def test_mase_is_scaled_by_the_training_random_walk():
    # training one-day changes |12-10|, |11-12|, |14-11| = 2, 1, 3: scale 2; MAE of [14,14] vs [15,13] = 1
    assert mase([15, 13], [14, 14], train=[10, 12, 11, 14]) == 0.5
    assert math.isnan(mase([5, 5], [5, 6], train=[5, 5, 5]))  # flat training prices: scale 0
    assert math.isnan(mase([5], [6], train=[5]))  # one training price: no one-day change at all


def test_directional_accuracy_by_hand():
    # from last = 10: actual moves +, -, 0, +; forecast moves +, +, 0, -: steps 1 and 3 agree
    assert directional_accuracy([11, 9, 10, 12], [12, 11, 10, 9], last_value=10) == 0.5


def test_metrics_reject_arrays_that_do_not_pair_up():
    with pytest.raises(InvalidParameterError, match=r"shapes \(2,\) and \(3,\)"):
        mae([1, 2], [1, 2, 3])
    with pytest.raises(InvalidParameterError, match="non-empty"):
        smape([], [])


# --- interval metrics, on log prices ---------------------------------------------


def test_coverage_counts_the_bounds_as_inside():
    # log actual 0, 1, 3, -1 against [0, 2] at every step: inside (on the bound), inside, above, below
    assert coverage(e([0, 1, 3, -1]), e([0, 0, 0, 0]), e([2, 2, 2, 2])) == 0.5
    assert coverage([5.0], [5.0], [5.0]) == 1.0  # a zero-width interval on the actual covers it


def test_interval_width_is_the_mean_log_width():
    # log widths 2 - 0 = 2 and 1.5 - 1 = 0.5: mean 1.25; a price interval [100, 200] is log(2) wide at any scale
    assert interval_width(e([0, 1]), e([2, 1.5])) == pytest.approx(1.25)
    assert interval_width([100.0], [200.0]) == pytest.approx(math.log(2))
    assert interval_width([1e-8], [2e-8]) == pytest.approx(math.log(2))


def test_winkler_score_by_hand():
    # 80 % interval, alpha 0.2, 2/alpha = 10; log bounds [0, 2] (width 2):
    # y = 1 inside: 2; y = 3 above by 1: 2 + 10 * 1 = 12; y = -0.5 below by 0.5: 2 + 10 * 0.5 = 7. Mean 7.
    assert winkler_score(e([1, 3, -0.5]), e([0, 0, 0]), e([2, 2, 2]), 80) == pytest.approx(7.0)
    # 95 %: 2/alpha = 40; one step 0.25 above [0, 1]: 1 + 40 * 0.25 = 11
    assert winkler_score(e([1.25]), e([0]), e([1]), 95) == pytest.approx(11.0)


def test_per_step_scores_by_hand_and_the_window_metrics_are_their_means():
    # The ledger stores these one step at a time; a backtest window's metric is their mean.
    actual, forecast = e([1, 3, -0.5]), e([1.5, 2, 0])
    np.testing.assert_allclose(absolute_errors(actual, forecast), np.abs(forecast - actual))
    np.testing.assert_array_equal(inside(actual, e([0, 0, 0]), e([2, 2, 2])), [True, False, False])
    np.testing.assert_allclose(winkler_scores(actual, e([0, 0, 0]), e([2, 2, 2]), 80), [2.0, 12.0, 7.0])
    rng = np.random.default_rng(4)
    a, f = np.exp(rng.normal(size=10)), np.exp(rng.normal(size=10))
    low, high = f * 0.8, f * 1.25
    assert mae(a, f) == np.mean(absolute_errors(a, f))
    assert coverage(a, low, high) == np.mean(inside(a, low, high))
    assert winkler_score(a, low, high, 95) == np.mean(winkler_scores(a, low, high, 95))


def test_pinball_loss_by_hand():
    # tau 0.9, log quantile 1: y = 3 above: 0.9 * 2 = 1.8; y = 0 below: 0.1 * 1 = 0.1; mean 0.95
    assert pinball_loss(e([3, 0]), e([1, 1]), 0.9) == pytest.approx(0.95)
    assert pinball_loss(e([1]), e([1]), 0.3) == 0.0


def test_crps_is_twice_the_mean_pinball_loss_over_the_grid():
    # one step, log actual 1; quantiles at tau 0.1, 0.5, 0.9 with log values 0, 0.5, 2:
    # pinball: 0.1 * (1 - 0) = 0.1; 0.5 * (1 - 0.5) = 0.25; (1 - 0.9) * (2 - 1) = 0.1. Mean 0.15, CRPS 0.3.
    quantiles = e([[0.0], [0.5], [2.0]])
    assert crps_from_quantiles(e([1.0]), quantiles, [0.1, 0.5, 0.9]) == pytest.approx(0.3)
    # the order of the grid does not matter
    assert crps_from_quantiles(e([1.0]), quantiles[::-1], [0.9, 0.5, 0.1]) == pytest.approx(0.3)


def test_crps_of_a_sharp_correct_forecast_beats_a_wide_one():
    taus = [0.1, 0.5, 0.9]
    sharp = crps_from_quantiles(e([1.0]), e([[0.9], [1.0], [1.1]]), taus)
    wide = crps_from_quantiles(e([1.0]), e([[0.0], [1.0], [2.0]]), taus)
    assert sharp == pytest.approx(2 * (0.1 * 0.1 + 0 + 0.1 * 0.1) / 3) and wide == pytest.approx(2 * 0.2 / 3)
    assert sharp < wide


def test_pit_interpolates_between_quantiles_and_clips_outside():
    taus = [0.1, 0.5, 0.9]
    quantiles = e(np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [1.0] * 5, [2.0] * 5]))
    # log actuals: 0.5 is halfway from tau 0.1 to 0.5: 0.3; 1.5 halfway from 0.5 to 0.9: 0.7;
    # exactly on the median: 0.5; below the lowest: 0; above the highest: 1
    pit = pit_values(e([0.5, 1.5, 1.0, -1.0, 3.0]), quantiles, taus)
    np.testing.assert_allclose(pit, [0.3, 0.7, 0.5, 0.0, 1.0])


def test_pit_on_quantiles_that_coincide_takes_the_mean_of_their_taus():
    # a lower bound resting on the point: log quantiles 0, 1, 1 at tau 0.1, 0.5, 0.9.
    # On the tie (log 1): mean(0.5, 0.9) = 0.7; at log 0.5: 0.1 + 0.4 * 0.5 = 0.3.
    pit = pit_values(e([1.0, 0.5]), e([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(pit, [0.7, 0.3])


def test_interval_metrics_reject_bad_input():
    with pytest.raises(InvalidParameterError, match="above zero"):
        coverage([1.0, 0.0], [0.5, 0.5], [2.0, 2.0])
    with pytest.raises(InvalidParameterError, match="lower bound must be at or below"):
        interval_width([2.0], [1.0])
    with pytest.raises(InvalidParameterError, match="outside"):
        winkler_score([1.0], [1.0], [1.0], 100)
    with pytest.raises(InvalidParameterError, match=r"in \(0, 1\)"):
        pinball_loss([1.0], [1.0], 1.0)
    with pytest.raises(InvalidParameterError, match="shape"):
        crps_from_quantiles([1.0, 1.0], [[1.0, 1.0]], [0.1, 0.9])
    with pytest.raises(InvalidParameterError, match="must not decrease"):
        pit_values([1.0], [[2.0], [1.0]], [0.1, 0.9])


def test_origin_volatility_is_the_std_of_the_last_daily_log_returns():
    # log prices 0, 0.1, 0, 0.2: returns 0.1, -0.1, 0.2; mean 0.2/3, squared deviations sum 0.04667, / 2 -> var
    prices = e([0.0, 0.1, 0.0, 0.2])
    assert origin_volatility(prices) == pytest.approx(math.sqrt((0.1**2 + 0.1**2 + 0.2**2 - 0.2**2 / 3) / 2))
    # window 2: only the last two returns, -0.1 and 0.2: std (ddof 1) = 0.3 / sqrt(2)
    assert origin_volatility(prices, window=2) == pytest.approx(0.3 / math.sqrt(2))
    assert math.isnan(origin_volatility([1.0, 2.0]))  # one return: no spread
