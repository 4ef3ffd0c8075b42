"""Rolling-origin backtests: cutoffs, records by hand (points and intervals), no look-ahead, requests."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from crypto_ml.evaluation.backtest import (
    CRPS_LEVELS,
    backtest_batch,
    backtest_series,
    rolling_origin_cutoffs,
    validate_request,
)
from crypto_ml.evaluation.metrics import coverage, interval_width, winkler_score
from crypto_ml.exceptions import InvalidParameterError, SeriesTooShortError, UnknownModelError
from crypto_ml.models import MODEL_REGISTRY

import jobs


@pytest.fixture
def registered_test_models(monkeypatch):
    """The models of tests/jobs.py, registered for this test only."""
    for name, cls in (
        ("spy", "SpyModel"),
        ("peeking", "PeekingModel"),
        ("mutating", "MutatingModel"),
        ("fussy", "FussyModel"),
    ):
        monkeypatch.setitem(MODEL_REGISTRY, name, f"jobs:{cls}")
    jobs.SpyModel.fitted.clear()
    jobs.PeekingModel.peeked.clear()


@pytest.fixture
def random_walk() -> np.ndarray:
    # Continuous random values: no price repeats, so "contains a later value" is unambiguous.
    return 100.0 + np.cumsum(np.random.default_rng(3).normal(0, 1, 60))


# --- cutoffs -----------------------------------------------------------------


def test_cutoffs_end_at_the_last_point_and_step_by_the_horizon():
    assert rolling_origin_cutoffs(20, 3, 4) == [8, 11, 14, 17]  # the last test period is [17:20]
    assert rolling_origin_cutoffs(20, 3, 3, step=1) == [15, 16, 17]
    assert rolling_origin_cutoffs(5, 3, 1) == [2]  # 2 to train on, 3 to test: just fits


def test_cutoffs_use_the_windows_that_fit():
    # 10 points, horizon 3, at least 2 to train on: cutoffs 7 and 4 fit; 1 would leave one training point
    assert rolling_origin_cutoffs(10, 3, 5) == [4, 7]
    assert rolling_origin_cutoffs(10, 3, 5, min_train=5) == [7]


def test_cutoffs_of_a_series_too_short_say_what_is_needed():
    with pytest.raises(SeriesTooShortError, match=r"needs at least 5 points .2 to train on and 3 to test.*has 4"):
        rolling_origin_cutoffs(4, 3, 1)


@pytest.mark.parametrize("args", [(20, 0, 1), (20, 3, 0), (20, 3, 2, 0), (20, 3, 2.5)])
def test_cutoffs_reject_bad_arguments(args):
    with pytest.raises(InvalidParameterError, match="must be an integer >= 1"):
        rolling_origin_cutoffs(*args)


# --- backtest_series ---------------------------------------------------------


def test_backtest_series_on_a_ramp_by_hand():
    # prices 1..30, horizon 3, 2 windows: cutoffs 24 and 27. Naive repeats the last price c, the actuals
    # are c+1, c+2, c+3: errors 1, 2, 3, MAE 2, one-day changes all 1, so MASE 2.
    prices = np.arange(1.0, 31.0)
    dates = pd.date_range("2017-01-01", periods=30, freq="D").strftime("%Y-%m-%d").tolist()
    records = backtest_series("ramp", prices, ["naive", "drift"], horizon=3, windows=2, dates=dates)
    assert [(r["model"], r["window"], r["cutoff"]) for r in records] == [
        ("naive", 1, 24),
        ("naive", 2, 27),
        ("drift", 1, 24),
        ("drift", 2, 27),
    ]
    naive, drift = records[1], records[3]
    assert naive["forecast"] == [27.0] * 3 and naive["actual"] == [28.0, 29.0, 30.0]
    assert naive["abs_errors"] == [1.0, 2.0, 3.0]
    assert naive["mae"] == 2.0 and naive["mase"] == 2.0 and naive["mase_scale"] == 1.0
    assert naive["rmse"] == pytest.approx(math.sqrt(14 / 3))
    assert naive["directional_accuracy"] == 0.0  # naive forecasts no move; the ramp always moves
    assert drift["directional_accuracy"] == 1.0  # the ramp rises, and so does drift's geometric line
    assert naive["cutoff_date"] == "2017-01-27"  # the date of the last training price, prices[26]
    assert all(r["windows_used"] == 2 and r["windows_requested"] == 2 and r["n_points"] == 30 for r in records)
    json.dumps(records, allow_nan=False)  # strict JSON: an undefined metric is None, never NaN


def test_a_short_series_uses_the_windows_that_fit_and_says_so():
    records = backtest_series("small", np.arange(1.0, 11.0), ["naive"], horizon=3, windows=5)
    assert [r["cutoff"] for r in records] == [4, 7]
    assert {(r["windows_used"], r["windows_requested"]) for r in records} == {(2, 5)}


def test_a_series_too_short_for_any_window_is_one_failed_record_per_model():
    records = backtest_series("tiny", [1.0, 2.0, 3.0], ["naive", "drift"], horizon=3, windows=2)
    assert [(r["model"], r["status"], r["window"], r["error_type"]) for r in records] == [
        ("naive", "failed", None, "SeriesTooShortError"),
        ("drift", "failed", None, "SeriesTooShortError"),
    ]
    assert "needs at least 5 points" in records[0]["error"]


def test_windows_leave_room_for_the_most_demanding_model():
    # svr_rbf needs 3 points: the earliest cutoff leaves 3, for every model alike
    records = backtest_series("c", np.arange(1.0, 10.0), ["naive", "svr_rbf"], horizon=3, windows=5)
    assert sorted({r["cutoff"] for r in records}) == [3, 6]
    assert all(r["status"] == "ok" for r in records)


def test_a_model_failing_on_one_window_fails_only_that_window(registered_test_models):
    prices = np.arange(1.0, 31.0)
    records = backtest_series(
        "ramp", prices, ["fussy", "naive"], horizon=3, windows=3, params={"fussy": {"fail_above": 23.5}}
    )
    fussy = [r for r in records if r["model"] == "fussy"]
    assert [r["status"] for r in fussy] == ["ok", "failed", "failed"]  # last training prices 21, 24, 27
    assert fussy[1]["error_type"] == "RuntimeError" and "24.0 is above 23.5" in fussy[1]["error"]
    assert fussy[1]["window"] == 2 and fussy[1]["cutoff"] == 24
    assert all(r["status"] == "ok" for r in records if r["model"] == "naive")


def test_flat_training_prices_leave_mase_undefined_with_a_note():
    records = backtest_series("stable", [1.0] * 10 + [1.1, 1.2], ["naive"], horizon=2, windows=1)
    assert records[0]["status"] == "ok" and records[0]["mase"] is None and records[0]["mase_scale"] == 0.0
    assert "training prices never change" in records[0]["note"]
    assert records[0]["mae"] == pytest.approx(0.15)


def test_bad_prices_or_dates_fail_the_coin_not_the_caller():
    nan = backtest_series("holes", [1.0, float("nan"), 3.0, 4.0, 5.0], ["naive"], horizon=1, windows=1)
    assert nan[0]["status"] == "failed" and nan[0]["error_type"] == "DataFormatError"
    dated = backtest_series("dates", [1.0, 2.0, 3.0, 4.0], ["naive"], horizon=1, windows=1, dates=["2017-01-01"])
    assert dated[0]["error_type"] == "DataFormatError" and "1 dates were given for 4 prices" in dated[0]["error"]


# --- no look-ahead, by construction --------------------------------------------


def test_every_fit_sees_exactly_the_prices_before_its_cutoff(registered_test_models, random_walk):
    records = backtest_series("walk", random_walk, ["spy"], horizon=5, windows=4)
    cutoffs = [r["cutoff"] for r in records]
    assert cutoffs == [40, 45, 50, 55]
    assert len(jobs.SpyModel.fitted) == 4
    for fitted, cutoff in zip(jobs.SpyModel.fitted, cutoffs, strict=True):
        np.testing.assert_array_equal(fitted, random_walk[:cutoff])
        assert not np.isin(random_walk[cutoff:], fitted).any()  # not one later price, anywhere in the input


def test_the_task_payload_path_fits_on_the_past_only_too(registered_test_models, random_walk):
    payload = {
        "models": ["spy"],
        "params": {},
        "horizon": 5,
        "windows": 2,
        "step": 3,
        "series": [{"coin": "walk", "prices": random_walk.tolist()}],
    }
    records = backtest_batch(payload)
    assert [r["cutoff"] for r in records] == [52, 55]
    assert [f.size for f in jobs.SpyModel.fitted] == [52, 55]
    np.testing.assert_array_equal(jobs.SpyModel.fitted[0], random_walk[:52])


def test_a_model_that_peeks_past_its_data_cannot_score_perfectly(registered_test_models, random_walk):
    # The cheat works when it is handed a slice: proof that it would catch a harness that slices.
    cheat = jobs.PeekingModel().fit(random_walk[:40])
    np.testing.assert_array_equal(cheat.predict(5), random_walk[40:45])
    jobs.PeekingModel.peeked.clear()

    records = backtest_series("walk", random_walk, ["peeking"], horizon=5, windows=4)
    assert jobs.PeekingModel.peeked == []
    assert all(r["status"] == "ok" and r["mae"] > 0 for r in records)
    assert all(r["forecast"] == [r["last_value"]] * 5 for r in records)  # all it could do: repeat the last price


def test_a_model_that_overwrites_its_input_corrupts_nothing_else(registered_test_models, random_walk):
    original = random_walk.copy()
    alone = backtest_series("walk", random_walk, ["naive"], horizon=5, windows=3)
    mixed = backtest_series("walk", random_walk, ["mutating", "naive"], horizon=5, windows=3)
    np.testing.assert_array_equal(random_walk, original)
    assert [r for r in mixed if r["model"] == "naive"] == alone
    # The vandal's intervals come from the log prices taken before it fitted, so even its own windows score.
    vandal = [r for r in mixed if r["model"] == "mutating"]
    assert [(r["status"], r["cutoff"]) for r in vandal] == [("ok", r["cutoff"]) for r in alone]
    assert all(0 < lo <= hi for r in vandal for lo, hi in zip(r["lo_95"], r["hi_95"], strict=True))


# --- requests ------------------------------------------------------------------


def test_validate_request_adds_the_benchmark_and_checks_every_name():
    models, horizon, windows, step, params = validate_request("drift, linear", 7, 3, None, {"linear": {"window": 30}})
    assert models == ["naive", "drift", "linear"] and (horizon, windows, step) == (7, 3, 7)
    assert params == {"linear": {"window": 30}}
    assert validate_request(["linear", "naive"], 1, 1)[0] == ["linear", "naive"]  # asked for: kept where asked
    with pytest.raises(UnknownModelError, match="'prophet'"):
        validate_request(["drift", "prophet"], 10, 5)
    with pytest.raises(InvalidParameterError, match="windows must be an integer >= 1, got 0"):
        validate_request(["drift"], 10, 0)
    with pytest.raises(InvalidParameterError, match="'svr_rbf', which is not among the models"):
        validate_request(["drift"], 10, 2, None, {"svr_rbf": {"C": 1}})
    with pytest.raises(InvalidParameterError, match="does not accept bogus"):
        validate_request(["linear"], 10, 2, None, {"linear": {"bogus": 1}})


def test_heavy_models_anywhere_in_a_backtest_route_it_to_the_heavy_queue(monkeypatch):
    from crypto_ml.engines.celery import queue_for_payload
    from crypto_ml.models import registry

    monkeypatch.setattr(registry, "HEAVY_MODELS", frozenset({"deepnet"}))
    assert queue_for_payload({"models": ["naive", "drift"]}) == "crypto_ml.light"
    assert queue_for_payload({"models": ["naive", "deepnet"]}) == "crypto_ml.heavy"
    assert queue_for_payload({"model": "deepnet"}) == "crypto_ml.heavy"


def test_the_backtest_task_is_registered_under_the_name_the_celery_engine_sends():
    from crypto_ml.celery_app import app

    app.loader.import_default_modules()
    assert f"crypto_ml.{backtest_batch.__name__}" in app.tasks


def test_drift_is_exact_on_a_geometric_series():
    prices = 2.0 * np.exp(0.05 * np.arange(40))
    drift = backtest_series("geo", prices, ["drift"], horizon=4, windows=1)[0]
    assert drift["mae"] == pytest.approx(0.0, abs=1e-9) and drift["directional_accuracy"] == 1.0


# --- interval scores in the records ----------------------------------------------


@pytest.fixture
def half_speed() -> np.ndarray:
    """17 prices rising 0.1 a day in log, then 3 rising 0.05 a day: the actuals land inside naive's intervals."""
    return np.exp(np.concatenate([0.1 * np.arange(17), 1.6 + 0.05 * np.arange(1, 4)]))


def test_naive_interval_scores_by_hand(half_speed):
    # Every past k-day log return is 0.1k, so naive's interval (last price times the return quantiles, kept
    # around the point) is [last, last * e^(0.1k)] at every level. The actual, last * e^(0.05k), is inside:
    # coverage 1, log width mean(0.1, 0.2, 0.3) = 0.2, Winkler = the width (no miss).
    record = backtest_series("c", half_speed, ["naive"], horizon=3, windows=1, levels="80,95")[0]
    last = half_speed[16]
    assert record["status"] == "ok" and record["cutoff"] == 17
    np.testing.assert_allclose(record["lo_80"], [last] * 3)
    np.testing.assert_allclose(record["hi_95"], last * np.exp([0.1, 0.2, 0.3]))
    assert record["coverage_80"] == record["coverage_95"] == 1.0
    assert record["width_80"] == pytest.approx(0.2) and record["winkler_95"] == pytest.approx(0.2)
    # CRPS: the 11 lower quantiles and the median sit at the last price, the 11 upper ones 0.1k above it;
    # the actual is 0.05k above the last price. Pinball: tau * 0.05k below it, (1 - tau) * 0.05k above it.
    # Sum of the lower taus 2.285 (0.45 + 0.40 + ... + 0.05 + 0.025 + 0.01), median 0.5, upper (1 - tau) 2.285:
    # per step 0.05k * 5.07 / 23 quantiles; mean over k = 1..3 of 0.05k is 0.1; CRPS = 2 * 0.1 * 5.07 / 23.
    assert record["crps"] == pytest.approx(2 * 0.1 * 5.07 / 23)
    # PIT: halfway between the median (tau 0.5) and the next quantile (tau 0.55): 0.525
    np.testing.assert_allclose(record["pit"], [0.525] * 3)
    assert record["coverage_grid"] == {str(level): 1.0 for level in CRPS_LEVELS}
    assert record["origin_volatility"] == pytest.approx(0.0, abs=1e-12)  # every daily return is 0.1
    json.dumps(record, allow_nan=False)


def test_interval_fields_match_the_metric_functions_on_the_recorded_bounds(random_walk):
    records = backtest_series("walk", random_walk, ["naive", "drift", "linear"], horizon=5, windows=3, levels=[50, 90])
    for r in records:
        assert r["status"] == "ok"
        assert "lo_80" not in r and {"lo_50", "hi_50", "lo_90", "hi_90"} <= set(r)  # the requested levels only
        assert r["coverage_90"] == coverage(r["actual"], r["lo_90"], r["hi_90"])
        assert r["width_50"] == pytest.approx(interval_width(r["lo_50"], r["hi_50"]))
        assert r["winkler_90"] == pytest.approx(winkler_score(r["actual"], r["lo_90"], r["hi_90"], 90))
        assert r["coverage_grid"]["90"] == r["coverage_90"] and "98" in r["coverage_grid"]
        assert len(r["pit"]) == 5 and all(0.0 <= p <= 1.0 for p in r["pit"])
        assert np.all(np.array(r["lo_90"]) <= np.array(r["lo_50"]))  # the intervals nest
    # the volatility at an origin is the same whatever the model
    assert len({(r["window"], r["origin_volatility"]) for r in records}) == 3


def test_a_bad_level_fails_the_coin_with_the_reason():
    records = backtest_series("c", np.arange(1.0, 20.0), ["naive"], horizon=2, windows=1, levels=[120])
    assert records[0]["status"] == "failed" and records[0]["error_type"] == "InvalidParameterError"


def test_the_payload_levels_reach_the_records():
    payload = {
        "models": ["naive"],
        "params": {},
        "horizon": 2,
        "windows": 1,
        "step": None,
        "levels": [90],
        "series": [{"coin": "c", "prices": list(np.arange(1.0, 20.0))}],
    }
    assert {"lo_90", "winkler_90"} <= set(backtest_batch(payload)[0])
