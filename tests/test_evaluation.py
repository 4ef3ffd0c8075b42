"""The evaluation package as a whole: its public names, backtests through the manager, the engines and the CLI.

The modules' own tests are in test_metrics, test_significance, test_backtest, test_comparison and test_run.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import crypto_ml.evaluation as evaluation
from crypto_ml.data_loader import CryptoLoader
from crypto_ml.evaluation import BacktestRun, backtest_batch, backtest_series
from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.manager import CryptoManager
from crypto_ml.references import dataset_reference


def crypto_ml(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m crypto_ml`` in a real subprocess."""
    return subprocess.run([sys.executable, "-m", "crypto_ml", *args], capture_output=True, text=True, timeout=300)


def test_every_name_the_single_module_had_is_still_importable_from_the_package():
    old = [
        "BENCHMARK",
        "METRICS",
        "MIN_TRAIN_POINTS",
        "RECORD_COLUMNS",
        "BacktestRun",
        "backtest_batch",
        "backtest_series",
        "check_output_path",
        "coin_failures",
        "date_windows",
        "directional_accuracy",
        "library_versions",
        "mae",
        "mase",
        "naive_scale",
        "rmse",
        "rolling_origin_cutoffs",
        "smape",
        "validate_request",
        "with_benchmark",
    ]
    assert set(old) <= set(evaluation.__all__)
    assert all(hasattr(evaluation, name) for name in evaluation.__all__)
    assert evaluation.backtest_batch.__module__ == "crypto_ml.evaluation.backtest"  # what the task wrapper calls


@pytest.fixture
def folder_with_short_coin(synth_dir, tmp_path):
    """The synthetic coins plus ``Shortcoin``: 6 days, too few for a backtest of 5 days ahead."""
    folder = tmp_path / "coins"
    shutil.copytree(synth_dir, folder)
    source = sorted(folder.glob("*.csv"))[0].read_text().splitlines()
    (folder / "Shortcoin.csv").write_text("\n".join(source[:7]) + "\n")  # header + the 6 newest rows
    return folder


# --- through the manager and the local engine ------------------------------------


@pytest.fixture(scope="module")
def synth_run(synth_dir) -> BacktestRun:
    return CryptoManager(CryptoLoader(synth_dir), engine="local", workers=2).backtest(
        ["drift", "ewma"], horizon=5, windows=3
    )


def test_manager_backtest_matches_backtesting_each_coin_directly(synth_run, synth_dir):
    loader = CryptoLoader(synth_dir)
    names = loader.get_crypto_names()
    assert synth_run.models == ["naive", "drift", "ewma"]
    assert synth_run.coins == names and not synth_run.failed
    assert len(synth_run.records) == len(names) * 3 * 3
    assert synth_run.engine == "local" and len(synth_run.data_hash) == 64
    for coin in names[:3]:
        frame = loader.get_df(coin)
        expected = backtest_series(
            coin,
            frame["Close"].to_numpy(),
            ["naive", "drift", "ewma"],
            5,
            3,
            dates=frame["Date"].dt.strftime("%Y-%m-%d").tolist(),
        )
        assert [r for r in synth_run.records if r["coin"] == coin] == expected


def test_run_interval_tables(synth_run):
    intervals = synth_run.interval_summary()
    assert len(intervals) == 3 * 2 and intervals["windows"].eq(36).all()
    naive = intervals[intervals["model"] == "naive"]
    assert naive["winkler_vs_naive"].eq(1.0).all() and naive["coverage"].between(0, 1).all()
    tests = synth_run.significance()
    assert set(tests["loss"]) == {"mase", "winkler_80", "winkler_95", "crps"} and tests["origins"].eq(3).all()
    assert set(synth_run.verdicts()["model"]) == {"naive", "drift", "ewma"}
    calibration = synth_run.calibration()
    assert set(calibration["level"]) == {10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98}
    assert synth_run.by_regime()["windows"].groupby(synth_run.by_regime()["model"]).sum().eq(36 * 2).all()


def test_run_tables(synth_run):
    summary = synth_run.summary()
    assert list(summary["model"]) == ["naive", "drift", "ewma"]
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


def test_a_short_coin_and_an_unknown_coin_fail_alone(folder_with_short_coin):
    loader = CryptoLoader(folder_with_short_coin)
    coins = [loader.get_crypto_names()[0], "shortcoin", "nosuchcoin"]
    run = CryptoManager(loader, engine="local", workers=2).backtest("drift", horizon=5, windows=2, coins=coins)
    by_coin = {coin: [r for r in run.records if r["coin"] == coin] for coin in ("shortcoin", "nosuchcoin")}
    assert [(r["model"], r["window"], r["error_type"]) for r in by_coin["shortcoin"]] == [
        ("naive", None, "SeriesTooShortError"),
        ("drift", None, "SeriesTooShortError"),
    ]
    assert "needs at least 7 points" in by_coin["shortcoin"][0]["error"]
    assert [(r["model"], r["error_type"]) for r in by_coin["nosuchcoin"]] == [
        ("naive", "UnknownCoinError"),
        ("drift", "UnknownCoinError"),
    ]
    ok = [r for r in run.records if r["coin"] == coins[0]]
    assert len(ok) == 4 and all(r["status"] == "ok" and r["cutoff_date"] for r in ok)
    frame = run.to_frame()
    assert frame.loc[frame["coin"] == "shortcoin", "window"].isna().all()


def test_by_reference_gives_the_same_records_as_inline(synth_dir, synth_run):
    loader = CryptoLoader(synth_dir)
    coin = loader.get_crypto_names()[1]
    payload = {
        "models": ["naive", "drift", "ewma"],
        "params": {},
        "horizon": 5,
        "windows": 3,
        "step": 5,
        "data": dataset_reference(loader),
        "series": [{"coin": coin}, {"coin": "nosuchcoin"}],
    }
    records = backtest_batch(payload)
    assert records[:-3] == [r for r in synth_run.records if r["coin"] == coin]  # dated by the worker itself
    assert [r["error_type"] for r in records[-3:]] == ["UnknownCoinError"] * 3

    by_reference = CryptoManager(loader, engine="local", workers=2).backtest(
        ["drift", "ewma"], horizon=5, windows=3, coins=[coin], transfer="reference"
    )
    assert by_reference.transfer == "reference"
    assert by_reference.records == [r for r in synth_run.records if r["coin"] == coin]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_write_records_and_manifest(synth_run, tmp_path, suffix):
    out = synth_run.write(tmp_path / f"b{suffix}")
    if suffix == ".json":
        document = json.loads(out.read_text())
        assert len(document["records"]) == len(synth_run.records)
        assert document["manifest"]["models"] == ["naive", "drift", "ewma"]
    else:
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert {"coin", "model", "window", "mase", "smape", "cutoff_date"} <= set(frame.columns)
        assert len(frame) == len(synth_run.records)
        assert len(json.loads(frame.loc[0, "forecast"])) == 5
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["kind"] == "backtest" and manifest["data_sha256"] == synth_run.data_hash
    assert manifest["params"]["ewma"]["decay"] == 0.94 and manifest["versions"]["numpy"] == np.__version__
    assert (manifest["horizon"], manifest["windows"], manifest["step"]) == (5, 3, 5)
    assert manifest["levels"] == [80, 95] and manifest["quick"] is False


def test_write_rejects_an_unknown_extension(synth_run, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"'b.xlsx'"):
        synth_run.write(tmp_path / "b.xlsx")


# --- the command line ----------------------------------------------------------------


def test_cli_backtest_of_the_bundled_sample(tmp_path):
    out = tmp_path / "b.csv"
    done = crypto_ml(
        "backtest",
        "--engine",
        "local",
        "--models",
        "drift",
        "--horizon",
        "3",
        "--windows",
        "2",
        "--out",
        str(out),
        "--report",
        str(tmp_path / "report"),
    )
    assert done.returncode == 0, done.stderr
    assert "against the random walk" in done.stdout and "beats naive" in done.stdout
    assert "32 of 32 windows backtested over 8 coins and 2 models on the local engine" in done.stderr
    frame = pd.read_csv(out)
    assert {"coin", "model", "mase"} <= set(frame.columns)
    assert frame["coin"].nunique() == 8 and set(frame["model"]) == {"naive", "drift"}
    manifest = json.loads((tmp_path / "b.csv.manifest.json").read_text())
    assert manifest["command"].startswith("crypto-ml backtest --models drift --horizon 3 --windows 2")
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "forecasts.png").is_file()


def test_cli_backtest_prints_every_table_without_out(tmp_path):
    done = crypto_ml(
        "backtest",
        "--engine",
        "local",
        "--models",
        "drift",
        "--horizon",
        "3",
        "--quick",
        "--levels",
        "50,90",
        "--coins",
        "the_quill,halcyon_pay,kelvin_token",
    )
    assert done.returncode == 0, done.stderr
    assert "quick mode: 5 windows, indicative only" in done.stdout
    assert "up to 5 windows per coin" in done.stdout
    for text in (
        "beats naive",
        "Winkler vs naive",
        "CRPS vs naive",
        "90%",
        "50%",
        "DM-HLN",
        "winkler_90",
        "sign p (optimistic)",
        "naive: benchmark",
        "drift: intervals",
    ):
        assert text in done.stdout, text
    assert "results in" not in done.stderr


def test_cli_backtest_exits_1_and_names_each_failure(folder_with_short_coin, tmp_path):
    out = tmp_path / "b.json"
    done = crypto_ml(
        "backtest",
        "--engine",
        "local",
        "--data",
        str(folder_with_short_coin),
        "--models",
        "drift",
        "--horizon",
        "5",
        "--windows",
        "2",
        "--out",
        str(out),
    )
    assert done.returncode == 1
    assert (
        "failed shortcoin (naive, drift): SeriesTooShortError: a backtest with horizon 5 needs at least 7"
        in done.stderr
    )
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
        (["--levels", "80,100"], "error: interval level '100' is outside (0, 100)"),
        (["--quick", "--windows", "7"], "--quick runs 5 windows"),
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
    from crypto_ml.engines.celery import CeleryEngine

    start_worker("backtest", concurrency=2)
    loader = CryptoLoader(synth_dir)
    local = CryptoManager(loader, engine="local", workers=2).backtest(["drift", "svr_rbf"], horizon=5, windows=2)
    remote = CryptoManager(loader, engine=CeleryEngine()).backtest(["drift", "svr_rbf"], horizon=5, windows=2)
    assert remote.engine == "celery" and not remote.failed
    assert remote.records == local.records


@pytest.mark.realdata
def test_real_dataset_backtest_covers_every_coin(real_data_dir):
    loader = CryptoLoader(real_data_dir)
    run = CryptoManager(loader, engine="local").backtest(["drift", "ewma"], horizon=10, windows=2)
    assert len(run.coins) == 100
    for coin in run.coins:
        records = [r for r in run.records if r["coin"] == coin]
        assert {r["model"] for r in records} == {"naive", "drift", "ewma"}, coin
        assert all(r["status"] == "ok" or r["error"] for r in records), coin
    failed_coins = {r["coin"] for r in run.failed}
    assert failed_coins == {"neblio"}  # 11 rows: too few for 10 days ahead and ewma's 20 to train on
    assert run.summary().set_index("model").loc["drift", "coins"] == 99
