"""The calibration layer: conformal intervals from a model's own rolling-origin errors, without look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_ml.evaluation import backtest_series
from crypto_ml.exceptions import SeriesTooShortError
from crypto_ml.models import MODEL_REGISTRY, get_model

import jobs

HORIZON = 10


def random_walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50.0 * np.exp(np.cumsum(rng.standard_t(5, n) * 0.02))


def coverage(name: str, paths: int, n: int, level: int = 80, **params) -> float:
    """Share of steps inside the interval, one origin per independent path."""
    hits = []
    for seed in range(paths):
        y = random_walk(n + HORIZON, seed)
        forecast = get_model(name, **params).fit(y[:n]).predict_interval(HORIZON, (level,))
        lo, hi = forecast.interval(level)
        hits.append((y[n:] >= lo) & (y[n:] <= hi))
    return float(np.mean(hits))


@pytest.mark.slow
def test_conformal_naive_covers_near_nominal_on_random_walks():
    assert abs(coverage("naive+conformal", paths=300, n=300) - 0.80) < 0.04
    assert abs(coverage("naive+conformal", paths=300, n=300, level=95) - 0.95) < 0.03


@pytest.mark.slow
def test_conformal_repairs_a_model_whose_own_interval_is_wrong():
    """linear's trend line is biased on a random walk; errors measured out of sample price that bias in."""
    own = coverage("linear", paths=200, n=300, window=30)
    calibrated = coverage("linear+conformal", paths=200, n=300, window=30)
    assert abs(calibrated - 0.80) < 0.05
    assert abs(calibrated - 0.80) < abs(own - 0.80)


def test_point_forecast_is_the_base_models():
    y = random_walk(200, 1)
    np.testing.assert_array_equal(
        get_model("linear+conformal").fit(y).predict(HORIZON), get_model("linear").fit(y).predict(HORIZON)
    )


def test_calibration_origins_stay_inside_the_training_data():
    model = get_model("naive+conformal", origins=6, spacing=3).fit(random_walk(100, 2))
    assert model.calibration_cutoffs(HORIZON) == [75, 78, 81, 84, 87, 90]  # the last one's forecast ends at day 100
    scores, cutoffs = model.scores(HORIZON)
    assert scores.shape == (6, HORIZON) and list(cutoffs) == [75, 78, 81, 84, 87, 90]


def test_too_short_for_the_origins_is_a_clear_error():
    model = get_model("naive+conformal").fit(random_walk(40, 3)[:20])  # its minimum: enough for 10 days ahead
    model.predict_interval(HORIZON)
    with pytest.raises(SeriesTooShortError, match="needs at least 5 calibration origins with a 15-day forecast"):
        model.predict_interval(15)


@pytest.fixture
def spy_and_peeker(monkeypatch):
    monkeypatch.setitem(MODEL_REGISTRY, "spy", "jobs:SpyModel")
    monkeypatch.setitem(MODEL_REGISTRY, "peeking", "jobs:PeekingModel")
    jobs.SpyModel.fitted.clear()
    jobs.PeekingModel.peeked.clear()


def test_a_backtest_of_a_calibrated_model_never_shows_it_the_future(spy_and_peeker):
    """Every series the base model is fitted on, calibration included, is a prefix of its window's training data."""
    y = random_walk(160, 4)
    records = backtest_series("walk", y, ["spy+conformal"], horizon=5, windows=3, levels=(80,))
    cutoffs = [r["cutoff"] for r in records if r["status"] == "ok"]
    assert len(cutoffs) == 3, records
    assert jobs.SpyModel.fitted, "the spy saw nothing"
    longest = max(cutoffs)
    for seen in jobs.SpyModel.fitted:
        assert seen.size <= longest and np.array_equal(seen, y[: seen.size])
    # A window's calibration fits end where its own training data ends.
    first_window = [seen.size for seen in jobs.SpyModel.fitted if seen.size <= min(cutoffs)]
    assert max(first_window) == min(cutoffs)

    peeked = backtest_series("walk", y, ["peeking+conformal"], horizon=5, windows=3, levels=(80,))
    assert jobs.PeekingModel.peeked == []
    assert all(r["status"] == "ok" for r in peeked)
