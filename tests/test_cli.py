"""The crypto-ml command, run as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_ml.cli import cli
from crypto_ml.config import bundled_data_dir


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def crypto_ml(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m crypto_ml`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "crypto_ml", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def test_forecast_the_bundled_sample_as_a_subprocess():
    done = crypto_ml("forecast", "--engine", "local")
    assert done.returncode == 0, done.stderr
    assert "ewma forecast, 10 days ahead" in done.stdout
    assert "80% range" in done.stdout and "95% range" in done.stdout
    for csv in bundled_data_dir().glob("*.csv"):
        assert csv.stem.lower().replace(" ", "_") in done.stdout
    assert (
        "model ewma (the default, CRYPTO_ML_MODEL: calibrated intervals in the README's backtest; "
        "choose another with --model)"
    ) in done.stderr
    assert "8 of 8 coins forecast with ewma on the local engine" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_terminal_table_shows_each_level_as_a_range_of_the_last_day(tmp_path):
    out = tmp_path / "f.csv"
    result = invoke(
        "forecast",
        "--engine",
        "local",
        "--model",
        "naive",
        "--coins",
        "rivencoin",
        "-H",
        "3",
        "--levels",
        "50,80,95",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "model naive (--model)" in result.output
    frame = pd.read_csv(out)
    assert list(frame.columns[5:12]) == ["forecast", "lo_50", "hi_50", "lo_80", "hi_80", "lo_95", "hi_95"]
    last = frame.iloc[-1]
    assert 0 < last["lo_95"] <= last["lo_50"] <= last["forecast"] <= last["hi_50"] <= last["hi_95"]
    for level in (50, 80, 95):
        assert f"{level}% range" in result.output
        assert f"{last[f'lo_{level}']:.4g}–{last[f'hi_{level}']:.4g}" in result.output


def test_the_model_named_in_the_environment_says_so():
    result = invoke("forecast", "--engine", "local", "-q", "--coins", "rivencoin", env={"CRYPTO_ML_MODEL": "drift"})
    assert result.exit_code == 0, result.output
    assert "model drift (CRYPTO_ML_MODEL; choose another with --model)" in result.output


def test_a_model_whose_extra_is_missing_exits_2_naming_the_extra(monkeypatch):
    from crypto_ml.models import MODEL_REGISTRY

    monkeypatch.setitem(MODEL_REGISTRY, "phantom", "jobs:PhantomModel")
    result = CliRunner().invoke(cli, ["forecast", "--engine", "local", "--model", "phantom"])
    assert result.exit_code == 2
    assert "error: model 'phantom' needs crypto_ml_no_such_module" in result.output
    assert "install the 'phantom' extra: pip install 'crypto-ml[phantom]'" in result.output
    trained = CliRunner().invoke(cli, ["train", "--engine", "local", "--model", "phantom"])
    assert trained.exit_code == 2 and "pip install 'crypto-ml[phantom]'" in trained.output


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_out_writes_every_coin_and_a_manifest(tmp_path, suffix):
    out = tmp_path / f"f{suffix}"
    result = invoke("forecast", "--engine", "local", "--model", "drift", "--horizon", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    if suffix == ".json":
        coins = {r["coin"] for r in json.loads(out.read_text())["results"]}
    else:
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert (frame.groupby("coin")["step"].max() == 3).all()
        coins = set(frame["coin"])
    assert len(coins) == 8
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["model"] == "drift" and len(manifest["data_sha256"]) == 64


def test_broken_files_are_reported_by_name_with_exit_code_1(synth_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(synth_dir, folder)
    (folder / "Empty.csv").write_text("")
    (folder / "Junk.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    done = crypto_ml("forecast", "--engine", "local", "--data", str(folder), "--out", str(tmp_path / "f.csv"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "failed empty: DataFormatError" in done.stderr
    assert "failed junk: DataFormatError" in done.stderr
    assert "12 of 14 coins forecast" in done.stderr
    frame = pd.read_csv(tmp_path / "f.csv")
    assert set(frame.loc[frame["status"] == "failed", "coin"]) == {"empty", "junk"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "prophet"], "error: unknown model 'prophet'; valid models are: arima, drift, ets, ewma"),
        (["--levels", "80,100"], "error: interval level '100' is outside (0, 100)"),
        (["--horizon", "0"], "error: horizon must be an integer >= 1, got 0"),
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--out", "f.xlsx"], "error: cannot write results to 'f.xlsx'"),
        (["--param", "window"], "is not KEY=VALUE"),
        (["--engine", "spark"], "'spark' is not one of"),
    ],
)
def test_bad_requests_exit_2_with_one_line_and_no_traceback(args, message):
    done = crypto_ml("forecast", "--engine", "local", *args) if "--engine" not in args else crypto_ml("forecast", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_environment_setting_is_a_clear_error():
    result = invoke("forecast", env={"CRYPTO_ML_ENGINE": "spark"})
    assert result.exit_code == 2
    assert "CRYPTO_ML_ENGINE='spark'" in result.output


def test_params_and_coins_flags(tmp_path):
    out = tmp_path / "f.json"
    result = invoke(
        "forecast",
        "--engine",
        "local",
        "--coins",
        "rivencoin,the_quill",
        "--param",
        "window=30",
        "--horizon",
        "2",
        "--out",
        str(out),
        "--model",
        "linear",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert [r["coin"] for r in document["results"]] == ["rivencoin", "the_quill"]
    assert document["manifest"]["params"] == {"window": 30}


def test_data_dir_from_environment_and_flag_overrides_it(synth_dir):
    from_env = invoke("forecast", "--engine", "local", "-q", env={"CRYPTO_ML_DATA_DIR": str(synth_dir)})
    assert "12 of 12 coins" in from_env.output
    overridden = invoke(
        "forecast",
        "--engine",
        "local",
        "-q",
        "--data",
        str(bundled_data_dir()),
        env={"CRYPTO_ML_DATA_DIR": str(synth_dir)},
    )
    assert "8 of 8 coins" in overridden.output


def test_unknown_coin_is_reported_with_a_suggestion():
    result = invoke("forecast", "--engine", "local", "--coins", "rivencoin,rivencion")
    assert result.exit_code == 1
    assert "failed rivencion: UnknownCoinError" in result.output and "rivencoin" in result.output


def test_models_lists_every_model_with_its_intervals_and_extra(monkeypatch):
    from crypto_ml.models import MODEL_REGISTRY

    monkeypatch.setitem(MODEL_REGISTRY, "phantom", "jobs:PhantomModel")
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│ ")}
    for name in ("naive", "drift", "linear", "svr_linear", "svr_rbf", "svr_poly", "lstm", "phantom"):
        assert name in rows or f"{name} (default)" in rows, name
    assert "random walk" in rows["naive"] and "naive empirical" in rows["naive"]
    assert "built in" in rows["linear"]
    assert "phantom: missing — pip install 'crypto-ml[phantom]'" in rows["phantom"]
    assert "deep: installed" in rows["lstm"] or "deep: missing — pip install 'crypto-ml[deep]'" in rows["lstm"]
    assert "Any model+conformal (e.g. linear+conformal" in result.output


def test_data_list_show_and_synth(tmp_path):
    listing = invoke("data", "list")
    assert listing.exit_code == 0 and "8 of 8 coins load" in listing.output
    shown = invoke("data", "show", "Rivencoin", "--rows", "3")
    assert shown.exit_code == 0 and "Close" in shown.output and "rows from" in shown.output
    made = invoke("data", "synth", "3", str(tmp_path / "s"), "--seed", "1")
    assert made.exit_code == 0 and len(list((tmp_path / "s").glob("*.csv"))) == 3
    missing = invoke("data", "show", "rivencion")
    assert missing.exit_code == 2 and "rivencoin" in missing.output


def test_help_and_version():
    assert crypto_ml("--help").returncode == 0
    assert "0.1.0" in invoke("--version").output


@pytest.mark.realdata
def test_real_dataset_forecast_covers_all_100_coins(real_data_dir, tmp_path):
    out = tmp_path / "f.csv"
    done = crypto_ml(
        "forecast", "--engine", "local", "--data", str(real_data_dir), "--model", "linear", "--out", str(out)
    )
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    frame = pd.read_csv(out)
    assert frame["coin"].nunique() == 100
    failed = frame.loc[frame["status"] == "failed"]
    assert failed["error"].notna().all()
    assert (done.returncode == 0) == failed.empty


@pytest.mark.realdata
def test_real_dataset_list_reports_duplicates_and_the_summary_file(real_data_dir):
    result = invoke("data", "list", "--data", str(real_data_dir))
    assert "100 of 100 coins load; 80553 rows" in result.output
    assert "nexus, siacoin are byte-identical" in result.output
    assert "skipped 100 List.csv" in result.output


@pytest.mark.broker
@pytest.mark.realdata
def test_real_dataset_through_two_celery_workers(start_worker, real_data_dir, tmp_path):
    from test_engines_celery import task_totals

    w1, w2 = start_worker("cli1"), start_worker("cli2")
    before = task_totals([w1.node, w2.node])
    out = tmp_path / "f.csv"
    done = crypto_ml(
        "forecast", "--engine", "celery", "--data", str(real_data_dir), "--out", str(out), "--batch-size", "5"
    )
    assert done.returncode in (0, 1), done.stderr
    assert "on the celery engine" in done.stderr and "Traceback" not in done.stderr
    assert pd.read_csv(out)["coin"].nunique() == 100
    after = task_totals([w1.node, w2.node])
    assert all(after[n] > before[n] for n in after), (before, after)
