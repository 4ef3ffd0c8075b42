"""Per-coin results and their files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.results import CoinForecast, ForecastRun


@pytest.fixture
def run() -> ForecastRun:
    ok = CoinForecast(
        coin="bitcoin",
        model="naive",
        status="ok",
        forecast=[10.0, 10.0],
        levels=[80, 95],
        intervals={"lo_80": [9.0, 8.5], "hi_80": [11.0, 11.5], "lo_95": [8.0, 7.5], "hi_95": [12.0, 13.0]},
        dates=["2017-09-23", "2017-09-24"],
        last_date="2017-09-22",
        last_price=10.0,
        n_obs=5,
    )
    bad = CoinForecast(
        coin="neblio",
        model="naive",
        status="failed",
        error_type="SeriesTooShortError",
        error="naive needs at least 1 points, the series has 0",
    )
    return ForecastRun(
        model="naive",
        horizon=2,
        params={},
        engine="local",
        engine_reason="test",
        data_path="/data",
        results=[ok, bad],
        data_hash="abc",
        seconds=0.5,
    )


def test_lookup_and_partition(run):
    assert run["bitcoin"].ok and not run["neblio"].ok
    assert [r.coin for r in run.ok] == ["bitcoin"] and [r.coin for r in run.failed] == ["neblio"]
    with pytest.raises(KeyError):
        run["dogecoin"]


def test_tidy_frame_has_a_row_per_step_and_one_per_failure(run):
    frame = run.to_frame()
    assert list(frame["coin"]) == ["bitcoin", "bitcoin", "neblio"]
    assert list(frame["step"].iloc[:2]) == [1, 2] and pd.isna(frame["step"].iloc[2])
    assert frame["error_type"].iloc[2] == "SeriesTooShortError"
    assert list(frame.columns[5:10]) == ["forecast", "lo_80", "hi_80", "lo_95", "hi_95"]
    assert frame["lo_95"].iloc[:2].tolist() == [8.0, 7.5] and frame["hi_80"].iloc[:2].tolist() == [11.0, 11.5]
    assert pd.isna(frame["lo_80"].iloc[2])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_table_formats_round_trip(run, tmp_path, suffix):
    path = run.write(tmp_path / f"out{suffix}")
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert set(frame["coin"]) == {"bitcoin", "neblio"}
    assert frame.loc[frame["coin"] == "bitcoin", "forecast"].tolist() == [10.0, 10.0]
    assert frame.loc[frame["coin"] == "bitcoin", "hi_95"].tolist() == [12.0, 13.0]
    assert frame.loc[frame["coin"] == "neblio", "error"].item().startswith("naive needs")
    manifest = json.loads((tmp_path / f"out{suffix}.manifest.json").read_text())
    assert manifest["data_sha256"] == "abc" and manifest["failed"] == 1 and manifest["levels"] == [80, 95]
    assert {"python", "numpy", "pandas", "scikit-learn", "crypto_ml"} <= set(manifest["versions"])


def test_write_json_keeps_nested_forecasts(run, tmp_path):
    document = json.loads(run.write(tmp_path / "out.json").read_text())
    assert document["results"][0]["forecast"] == [10.0, 10.0]
    first = document["results"][0]
    assert list(first)[3:8] == ["forecast", "lo_80", "hi_80", "lo_95", "hi_95"]  # beside the point, as tasks return it
    assert first["lo_80"] == [9.0, 8.5] and first["levels"] == [80, 95] and "intervals" not in first
    assert CoinForecast.from_record(first) == run["bitcoin"]
    assert document["results"][1]["status"] == "failed"
    assert document["manifest"]["model"] == "naive"


def test_unknown_extension_names_the_supported_ones(run, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"'out.xlsx': use a file ending in .csv, .json, .parquet"):
        run.write(tmp_path / "out.xlsx")


def test_from_record_ignores_unknown_keys():
    result = CoinForecast.from_record({"coin": "a", "model": "m", "status": "ok", "forecast": [1.0], "extra": 1})
    assert result.forecast == [1.0] and result.intervals == {}


def test_from_record_picks_up_the_bounds_of_any_level():
    record = {
        "coin": "a",
        "model": "m",
        "status": "ok",
        "forecast": [2.0],
        "levels": [50, 97.5],
        "lo_50": [1.9],
        "hi_50": [2.1],
        "lo_97.5": [1.5],
        "hi_97.5": [2.6],
        "lo_side": [0.0],
    }
    result = CoinForecast.from_record(record)
    assert result.intervals == {"lo_50": [1.9], "hi_50": [2.1], "lo_97.5": [1.5], "hi_97.5": [2.6]}
    assert result.interval(97.5) == ([1.5], [2.6]) and result.interval(50.0) == ([1.9], [2.1])
    with pytest.raises(KeyError, match=r"no 80% interval for a; it has \[50, 97.5\]"):
        result.interval(80)


def test_frame_columns_follow_the_run_levels(run):
    run.levels = [50, 80]
    frame = run.to_frame()
    assert [c for c in frame.columns if c[:3] in ("lo_", "hi_")] == ["lo_50", "hi_50", "lo_80", "hi_80"]
    assert frame["lo_50"].isna().all() and frame["lo_80"].iloc[0] == 9.0  # this result has no 50% bounds
