"""Diebold-Mariano with the HLN correction and the sign test, against hand-computed values and known properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from crypto_ml.evaluation.significance import diebold_mariano, overlap_lags, pool_by_origin, sign_test
from crypto_ml.exceptions import InvalidParameterError


def test_dm_hln_by_hand_without_overlap():
    # d = 1, 2, 3, 4: mean 2.5, gamma0 = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25,
    # DM = 2.5 / sqrt(1.25 / 4) = sqrt(20); HLN factor sqrt((4 + 1 - 2) / 4) = sqrt(3/4); DM* = sqrt(15)
    result = diebold_mariano([1, 2, 3, 4], lags=0)
    assert result.statistic == pytest.approx(math.sqrt(15))
    assert result.p_value == pytest.approx(2 * stats.t.sf(math.sqrt(15), df=3))
    assert (result.mean_differential, result.origins, result.lags, result.note) == (2.5, 4, 0, None)


def test_dm_hln_by_hand_with_one_overlap_lag():
    # h = 2: gamma1 = [(-0.5)(-1.5) + (0.5)(-0.5) + (1.5)(0.5)] / 4 = 0.3125; V = 1.25 + 2 * 0.3125 = 1.875;
    # DM = 2.5 / sqrt(1.875 / 4); HLN factor sqrt((4 + 1 - 4 + 2 * 1 / 4) / 4) = sqrt(0.375); DM* = sqrt(5)
    result = diebold_mariano([1, 2, 3, 4], lags=1)
    assert result.statistic == pytest.approx(math.sqrt(5))
    assert result.p_value == pytest.approx(2 * stats.t.sf(math.sqrt(5), df=3))


def test_identical_losses_are_not_significant():
    result = diebold_mariano([0.0] * 10)
    assert (result.statistic, result.p_value) == (0.0, 1.0) and "identical" in result.note


def test_a_clearly_better_model_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    better = diebold_mariano(-1.0 + 0.3 * rng.standard_normal(30))
    assert better.statistic < 0 and better.p_value < 0.001
    noise = diebold_mariano(rng.standard_normal(30))
    assert noise.p_value > 0.05


def test_too_few_origins_give_no_p_value_and_say_why():
    result = diebold_mariano([1.0, 2.0])
    assert result.p_value is None and result.statistic is None and result.mean_differential == 1.5
    assert "needs at least 3" in result.note
    # T = 3 with h = 3 (lags 2): factor (3 + 1 - 6 + 6/3) / 3 = 0, so no test either
    assert "too few" in diebold_mariano([1.0, 2.0, 4.0], lags=2).note


def test_bad_input_is_rejected():
    with pytest.raises(InvalidParameterError, match="finite"):
        diebold_mariano([1.0, float("nan"), 2.0])
    with pytest.raises(InvalidParameterError, match="lags"):
        diebold_mariano([1.0, 2.0, 3.0], lags=-1)


def test_overlap_lags():
    assert overlap_lags(10, 10) == 0  # windows that do not overlap
    assert overlap_lags(10, 5) == 1
    assert overlap_lags(10, 3) == 3  # ceil(10 / 3) - 1
    assert overlap_lags(1, 7) == 0


def test_pool_by_origin_averages_coins_and_sorts_in_time():
    origins, means = pool_by_origin([("2017-02-01", 1.0), ("2017-01-01", 2.0), ("2017-02-01", 3.0)])
    assert origins == ["2017-01-01", "2017-02-01"]
    np.testing.assert_allclose(means, [2.0, 2.0])


def test_sign_test_by_hand():
    # 4 of 5 coins better: P(X >= 4) = (C(5,4) + C(5,5)) / 32 = 6 / 32
    assert sign_test(4, 5) == pytest.approx(6 / 32)
    assert sign_test(0, 3) == 1.0 and sign_test(0, 0) is None
    with pytest.raises(InvalidParameterError):
        sign_test(3, 2)
