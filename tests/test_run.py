"""BacktestRun: summaries on a constructed run, the frame with its interval columns, the manifest."""

from __future__ import annotations

import json

import pytest

from crypto_ml.evaluation.run import RECORD_COLUMNS, BacktestRun, record_columns


def _record(coin, model, window, value, status="ok"):
    if status != "ok":
        return {
            "coin": coin,
            "model": model,
            "window": window,
            "status": "failed",
            "error_type": "RuntimeError",
            "error": "boom",
        }
    # horizon 2, MASE scale 1: both steps' errors equal the MASE
    return {
        "coin": coin,
        "model": model,
        "window": window,
        "status": "ok",
        "mae": value,
        "rmse": value,
        "smape": 10 * value,
        "mase": value,
        "mase_scale": 1.0,
        "directional_accuracy": 0.5,
        "abs_errors": [value, value],
        "forecast": [0.0, 0.0],
        "actual": [value, value],
    }


def test_summary_math_on_a_constructed_run():
    records = [
        # a: naive mean 2.0, m mean 1.5 -> m beats naive
        _record("a", "naive", 1, 1.0),
        _record("a", "naive", 2, 3.0),
        _record("a", "m", 1, 1.0),
        _record("a", "m", 2, 2.0),
        # b: naive 1.0, m 2.0 -> no
        _record("b", "naive", 1, 1.0),
        _record("b", "naive", 2, 1.0),
        _record("b", "m", 1, 2.0),
        _record("b", "m", 2, 2.0),
        # c: m failed window 2, so only window 1 is compared: m 1.0 vs naive 0.5 -> no
        # (against naive's mean over both windows, 2.25, it would wrongly count as a win)
        _record("c", "naive", 1, 0.5),
        _record("c", "naive", 2, 4.0),
        _record("c", "m", 1, 1.0),
        _record("c", "m", 2, None, status="failed"),
    ]
    run = BacktestRun(
        records=records,
        models=["naive", "m"],
        horizon=2,
        windows=2,
        step=2,
        engine="local",
        engine_reason="test",
        data_path="-",
    )
    summary = run.summary().set_index("model")
    assert summary.loc["m", "beats_naive_coins"] == 1 and summary.loc["m", "compared_coins"] == 3
    assert summary.loc["m", "beats_naive_share"] == pytest.approx(1 / 3)
    assert summary.loc["m", "windows"] == 5 and summary.loc["m", "failed"] == 1 and summary.loc["m", "coins"] == 3
    assert summary.loc["m", "median_mase"] == 2.0 and summary.loc["m", "mean_mase"] == pytest.approx(8 / 5)
    assert summary.loc["naive", "median_mase"] == 1.0 and summary.loc["naive", "mean_mase"] == pytest.approx(10.5 / 6)
    assert summary.loc["m", "mean_smape"] == pytest.approx(16.0)
    per_coin = run.per_coin().set_index(["coin", "model"])
    assert per_coin.loc[("c", "m"), "windows"] == 1 and per_coin.loc[("a", "naive"), "mean_mase"] == 2.0
    by_step = run.by_horizon().set_index(["model", "step"])
    assert by_step.loc[("m", 1), "mean_abs_error"] == pytest.approx(8 / 5)
    assert by_step.loc[("naive", 2), "median_scaled_error"] == 1.0


def test_frame_has_the_interval_columns_of_the_runs_levels():
    record = {
        "coin": "a",
        "model": "naive",
        "window": 1,
        "status": "ok",
        "forecast": [1.0],
        "actual": [1.5],
        "lo_90": [0.5],
        "hi_90": [2.0],
        "coverage_90": 1.0,
        "width_90": 1.386,
        "winkler_90": 1.386,
        "crps": 0.2,
        "pit": [0.7],
        "coverage_grid": {"90": 1.0},
        "origin_volatility": 0.05,
    }
    run = BacktestRun(
        records=[record],
        models=["naive"],
        horizon=1,
        windows=1,
        step=1,
        engine="local",
        engine_reason="test",
        data_path="-",
        levels=(90,),
        quick=True,
    )
    frame = run.to_frame()
    assert list(frame.columns) == record_columns((90,))
    assert {"lo_90", "hi_90", "coverage_90", "width_90", "winkler_90", "crps", "pit"} <= set(frame.columns)
    assert json.loads(frame.loc[0, "hi_90"]) == [2.0] and json.loads(frame.loc[0, "coverage_grid"]) == {"90": 1.0}
    assert frame.loc[0, "winkler_90"] == pytest.approx(1.386) and "lo_80" in RECORD_COLUMNS
    manifest = run.manifest()
    assert manifest["levels"] == [90] and manifest["quick"] is True
