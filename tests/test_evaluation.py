"""Walk-forward backtests: metrics by hand, cutoffs, no look-ahead, runs through the engines and the CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import jobs
import numpy as np
import pandas as pd
import pytest

from crypto_ml.data_loader import CryptoLoader
from crypto_ml.evaluation import (
    BacktestRun,
    backtest_batch,
    backtest_series,
    directional_accuracy,
    mae,
    mase,
    rmse,
    rolling_origin_cutoffs,
    smape,
    validate_request,
)
from crypto_ml.exceptions import InvalidParameterError, SeriesTooShortError, UnknownModelError
from crypto_ml.references import dataset_reference
from crypto_ml.manager import CryptoManager
from crypto_ml.models import MODEL_REGISTRY


def crypto_ml(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m crypto_ml`` in a real subprocess."""
    return subprocess.run([sys.executable, "-m", "crypto_ml", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def registered_test_models(monkeypatch):
    """The models of tests/jobs.py, registered for this test only."""
    for name, cls in (("spy", "SpyModel"), ("peeking", "PeekingModel"), ("mutating", "MutatingModel"),
                      ("fussy", "FussyModel")):
        monkeypatch.setitem(MODEL_REGISTRY, name, f"jobs:{cls}")
    jobs.SpyModel.fitted.clear()
    jobs.PeekingModel.peeked.clear()


@pytest.fixture
def random_walk() -> np.ndarray:
    # Continuous random values: no price repeats, so "contains a later value" is unambiguous.
    return 100.0 + np.cumsum(np.random.default_rng(3).normal(0, 1, 60))


@pytest.fixture
def folder_with_short_coin(synth_dir, tmp_path):
    """The synthetic coins plus ``Shortcoin``: 6 days, too few for a backtest of 5 days ahead."""
    folder = tmp_path / "coins"
    shutil.copytree(synth_dir, folder)
    source = sorted(folder.glob("*.csv"))[0].read_text().splitlines()
    (folder / "Shortcoin.csv").write_text("\n".join(source[:7]) + "\n")  # header + the 6 newest rows
    return folder


# --- metrics, against values computed by hand ------------------------------


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
    with pytest.raises(SeriesTooShortError, match="needs at least 5 points .2 to train on and 3 to test.*has 4"):
        rolling_origin_cutoffs(4, 3, 1)


@pytest.mark.parametrize("args", [(20, 0, 1), (20, 3, 0), (20, 3, 2, 0), (20, 3, 2.5)])
def test_cutoffs_reject_bad_arguments(args):
    with pytest.raises(InvalidParameterError, match="must be an integer >= 1"):
        rolling_origin_cutoffs(*args)


# --- backtest_series ---------------------------------------------------------


def test_backtest_series_on_a_ramp_by_hand():
    # prices 1..30, horizon 3, 2 windows: cutoffs 24 and 27. Drift is exact on a ramp. Naive repeats the
    # last price c, the actuals are c+1, c+2, c+3: errors 1, 2, 3, MAE 2, one-day changes all 1, so MASE 2.
    prices = np.arange(1.0, 31.0)
    dates = pd.date_range("2017-01-01", periods=30, freq="D").strftime("%Y-%m-%d").tolist()
    records = backtest_series("ramp", prices, ["naive", "drift"], horizon=3, windows=2, dates=dates)
    assert [(r["model"], r["window"], r["cutoff"]) for r in records] == [
        ("naive", 1, 24), ("naive", 2, 27), ("drift", 1, 24), ("drift", 2, 27)]
    naive, drift = records[1], records[3]
    assert naive["forecast"] == [27.0] * 3 and naive["actual"] == [28.0, 29.0, 30.0]
    assert naive["abs_errors"] == [1.0, 2.0, 3.0]
    assert naive["mae"] == 2.0 and naive["mase"] == 2.0 and naive["mase_scale"] == 1.0
    assert naive["rmse"] == pytest.approx(math.sqrt(14 / 3))
    assert naive["directional_accuracy"] == 0.0  # naive forecasts no move; the ramp always moves
    assert drift["mae"] == pytest.approx(0.0, abs=1e-12) and drift["directional_accuracy"] == 1.0
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
        ("naive", "failed", None, "SeriesTooShortError"), ("drift", "failed", None, "SeriesTooShortError")]
    assert "needs at least 5 points" in records[0]["error"]


def test_windows_leave_room_for_the_most_demanding_model():
    # svr_rbf needs 3 points: the earliest cutoff leaves 3, for every model alike
    records = backtest_series("c", np.arange(1.0, 10.0), ["naive", "svr_rbf"], horizon=3, windows=5)
    assert sorted({r["cutoff"] for r in records}) == [3, 6]
    assert all(r["status"] == "ok" for r in records)


def test_a_model_failing_on_one_window_fails_only_that_window(registered_test_models):
    prices = np.arange(1.0, 31.0)
    records = backtest_series("ramp", prices, ["fussy", "naive"], horizon=3, windows=3,
                              params={"fussy": {"fail_above": 23.5}})
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
    payload = {"models": ["spy"], "params": {}, "horizon": 5, "windows": 2, "step": 3,
               "series": [{"coin": "walk", "prices": random_walk.tolist()}]}
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
    assert [r["actual"] for r in mixed if r["model"] == "mutating"] == [r["actual"] for r in alone]


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
    from crypto_ml.celery_engine import queue_for_payload
    from crypto_ml.models import registry

    monkeypatch.setattr(registry, "HEAVY_MODELS", frozenset({"deepnet"}))
    assert queue_for_payload({"models": ["naive", "drift"]}) == "crypto_ml.light"
    assert queue_for_payload({"models": ["naive", "deepnet"]}) == "crypto_ml.heavy"
    assert queue_for_payload({"model": "deepnet"}) == "crypto_ml.heavy"


def test_the_backtest_task_is_registered_under_the_name_the_celery_engine_sends():
    from crypto_ml.celery_app import app

    app.loader.import_default_modules()
    assert f"crypto_ml.{backtest_batch.__name__}" in app.tasks


# --- through the manager and the local engine ------------------------------------


@pytest.fixture(scope="module")
def synth_run(synth_dir) -> BacktestRun:
    return CryptoManager(CryptoLoader(synth_dir), engine="local", workers=2).backtest(
        ["drift", "linear"], horizon=5, windows=3)


def test_manager_backtest_matches_backtesting_each_coin_directly(synth_run, synth_dir):
    loader = CryptoLoader(synth_dir)
    names = loader.get_crypto_names()
    assert synth_run.models == ["naive", "drift", "linear"]
    assert synth_run.coins == names and not synth_run.failed
    assert len(synth_run.records) == len(names) * 3 * 3
    assert synth_run.engine == "local" and len(synth_run.data_hash) == 64
    for coin in names[:3]:
        frame = loader.get_df(coin)
        expected = backtest_series(coin, frame["Close"].to_numpy(), ["naive", "drift", "linear"], 5, 3,
                                   dates=frame["Date"].dt.strftime("%Y-%m-%d").tolist())
        assert [r for r in synth_run.records if r["coin"] == coin] == expected


def test_run_tables(synth_run):
    summary = synth_run.summary()
    assert list(summary["model"]) == ["naive", "drift", "linear"]
    assert (summary["coins"] == 12).all() and (summary["windows"] == 36).all()
    assert math.isnan(summary.loc[0, "beats_naive_share"])
    assert summary["compared_coins"].tolist() == [12, 12, 12]
    by_step = synth_run.by_horizon()
    assert len(by_step) == 3 * 5 and by_step["n"].eq(36).all()
    # the mean over the steps of the scaled errors is the mean MASE
    naive = by_step[by_step["model"] == "naive"]["mean_scaled_error"].mean()
    assert naive == pytest.approx(summary.loc[0, "mean_mase"])
    per_coin = synth_run.per_coin()
    assert len(per_coin) == 12 * 3 and per_coin["windows"].eq(3).all()


def _record(coin, model, window, value, status="ok"):
    if status != "ok":
        return {"coin": coin, "model": model, "window": window, "status": "failed",
                "error_type": "RuntimeError", "error": "boom"}
    # horizon 2, MASE scale 1: both steps' errors equal the MASE
    return {"coin": coin, "model": model, "window": window, "status": "ok", "mae": value, "rmse": value,
            "smape": 10 * value, "mase": value, "mase_scale": 1.0, "directional_accuracy": 0.5,
            "abs_errors": [value, value], "forecast": [0.0, 0.0], "actual": [value, value]}


def test_summary_math_on_a_constructed_run():
    records = [
        # a: naive mean 2.0, m mean 1.5 -> m beats naive
        _record("a", "naive", 1, 1.0), _record("a", "naive", 2, 3.0),
        _record("a", "m", 1, 1.0), _record("a", "m", 2, 2.0),
        # b: naive 1.0, m 2.0 -> no
        _record("b", "naive", 1, 1.0), _record("b", "naive", 2, 1.0),
        _record("b", "m", 1, 2.0), _record("b", "m", 2, 2.0),
        # c: m failed window 2, so only window 1 is compared: m 1.0 vs naive 0.5 -> no
        # (against naive's mean over both windows, 2.25, it would wrongly count as a win)
        _record("c", "naive", 1, 0.5), _record("c", "naive", 2, 4.0), _record("c", "m", 1, 1.0),
        _record("c", "m", 2, None, status="failed"),
    ]
    run = BacktestRun(records=records, models=["naive", "m"], horizon=2, windows=2, step=2, engine="local",
                      engine_reason="test", data_path="-")
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


def test_a_short_coin_and_an_unknown_coin_fail_alone(folder_with_short_coin):
    loader = CryptoLoader(folder_with_short_coin)
    coins = [loader.get_crypto_names()[0], "shortcoin", "nosuchcoin"]
    run = CryptoManager(loader, engine="local", workers=2).backtest("drift", horizon=5, windows=2, coins=coins)
    by_coin = {coin: [r for r in run.records if r["coin"] == coin] for coin in ("shortcoin", "nosuchcoin")}
    assert [(r["model"], r["window"], r["error_type"]) for r in by_coin["shortcoin"]] == [
        ("naive", None, "SeriesTooShortError"), ("drift", None, "SeriesTooShortError")]
    assert "needs at least 7 points" in by_coin["shortcoin"][0]["error"]
    assert [(r["model"], r["error_type"]) for r in by_coin["nosuchcoin"]] == [
        ("naive", "UnknownCoinError"), ("drift", "UnknownCoinError")]
    ok = [r for r in run.records if r["coin"] == coins[0]]
    assert len(ok) == 4 and all(r["status"] == "ok" and r["cutoff_date"] for r in ok)
    frame = run.to_frame()
    assert frame.loc[frame["coin"] == "shortcoin", "window"].isna().all()


def test_by_reference_gives_the_same_records_as_inline(synth_dir, synth_run):
    loader = CryptoLoader(synth_dir)
    coin = loader.get_crypto_names()[1]
    payload = {"models": ["naive", "drift", "linear"], "params": {}, "horizon": 5, "windows": 3, "step": 5,
               "data": dataset_reference(loader), "series": [{"coin": coin}, {"coin": "nosuchcoin"}]}
    records = backtest_batch(payload)
    assert records[:-3] == [r for r in synth_run.records if r["coin"] == coin]  # dated by the worker itself
    assert [r["error_type"] for r in records[-3:]] == ["UnknownCoinError"] * 3

    by_reference = CryptoManager(loader, engine="local", workers=2).backtest(
        ["drift", "linear"], horizon=5, windows=3, coins=[coin], transfer="reference")
    assert by_reference.transfer == "reference"
    assert by_reference.records == [r for r in synth_run.records if r["coin"] == coin]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_write_records_and_manifest(synth_run, tmp_path, suffix):
    out = synth_run.write(tmp_path / f"b{suffix}")
    if suffix == ".json":
        document = json.loads(out.read_text())
        assert len(document["records"]) == len(synth_run.records)
        assert document["manifest"]["models"] == ["naive", "drift", "linear"]
    else:
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert {"coin", "model", "window", "mase", "smape", "cutoff_date"} <= set(frame.columns)
        assert len(frame) == len(synth_run.records)
        assert len(json.loads(frame.loc[0, "forecast"])) == 5
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["kind"] == "backtest" and manifest["data_sha256"] == synth_run.data_hash
    assert manifest["params"]["linear"] == {"window": None} and manifest["versions"]["numpy"] == np.__version__
    assert (manifest["horizon"], manifest["windows"], manifest["step"]) == (5, 3, 5)


def test_write_rejects_an_unknown_extension(synth_run, tmp_path):
    with pytest.raises(InvalidParameterError, match="'b.xlsx'"):
        synth_run.write(tmp_path / "b.xlsx")


# --- the command line ----------------------------------------------------------------


def test_cli_backtest_of_the_bundled_sample(tmp_path):
    out = tmp_path / "b.csv"
    done = crypto_ml("backtest", "--engine", "local", "--models", "drift", "--horizon", "3", "--windows", "2",
                     "--out", str(out), "--report", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    assert "against the random walk" in done.stdout and "beats naive" in done.stdout
    assert "32 of 32 windows backtested over 8 coins and 2 models on the local engine" in done.stderr
    frame = pd.read_csv(out)
    assert {"coin", "model", "mase"} <= set(frame.columns)
    assert frame["coin"].nunique() == 8 and set(frame["model"]) == {"naive", "drift"}
    manifest = json.loads((tmp_path / "b.csv.manifest.json").read_text())
    assert manifest["command"].startswith("crypto-ml backtest --models drift --horizon 3 --windows 2")
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "forecasts.png").is_file()


def test_cli_backtest_exits_1_and_names_each_failure(folder_with_short_coin, tmp_path):
    out = tmp_path / "b.json"
    done = crypto_ml("backtest", "--engine", "local", "--data", str(folder_with_short_coin), "--models", "drift",
                     "--horizon", "5", "--windows", "2", "--out", str(out))
    assert done.returncode == 1
    assert "failed shortcoin (naive, drift): SeriesTooShortError: a backtest with horizon 5 needs at least 7" \
        in done.stderr
    assert "Traceback" not in done.stderr
    failed = [r for r in json.loads(out.read_text())["records"] if r["status"] == "failed"]
    assert {r["coin"] for r in failed} == {"shortcoin"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "drift,prophet"], "error: unknown model 'prophet'; valid models are:"),
        (["--horizon", "0"], "error: horizon must be an integer >= 1, got 0"),
        (["--windows", "0"], "error: windows must be an integer >= 1, got 0"),
        (["--out", "b.xlsx"], "error: cannot write results to 'b.xlsx'"),
        (["--param", "C=10"], "use MODEL.KEY=VALUE"),
    ],
)
def test_cli_backtest_bad_requests_exit_2(args, message, tmp_path):
    out = [] if "--out" in args else ["--out", str(tmp_path / "b.csv")]
    done = crypto_ml("backtest", "--engine", "local", *out, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "b.csv").exists()


# --- other engines and the real dataset -----------------------------------------------------


@pytest.mark.broker
def test_celery_and_local_give_the_same_backtest(start_worker, synth_dir):
    from crypto_ml.celery_engine import CeleryEngine

    start_worker("backtest", concurrency=2)
    loader = CryptoLoader(synth_dir)
    local = CryptoManager(loader, engine="local", workers=2).backtest(["drift", "svr_rbf"], horizon=5, windows=2)
    remote = CryptoManager(loader, engine=CeleryEngine()).backtest(["drift", "svr_rbf"], horizon=5, windows=2)
    assert remote.engine == "celery" and not remote.failed
    assert remote.records == local.records


@pytest.mark.realdata
def test_real_dataset_backtest_covers_every_coin(real_data_dir):
    loader = CryptoLoader(real_data_dir)
    run = CryptoManager(loader, engine="local").backtest(["drift", "linear"], horizon=10, windows=2)
    assert len(run.coins) == 100
    for coin in run.coins:
        records = [r for r in run.records if r["coin"] == coin]
        assert {r["model"] for r in records} == {"naive", "drift", "linear"}, coin
        assert all(r["status"] == "ok" or r["error"] for r in records), coin
    failed_coins = {r["coin"] for r in run.failed}
    assert failed_coins == {"neblio"}  # 11 rows: too few for 10 days ahead and 2 to train on
    assert run.summary().set_index("model").loc["drift", "coins"] == 99
