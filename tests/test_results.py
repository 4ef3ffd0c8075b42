"""Per-coin results and their files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.results import CoinForecast, ForecastRun


@pytest.fixture
def run() -> ForecastRun:
    ok = CoinForecast(coin="bitcoin", model="naive", status="ok", forecast=[10.0, 10.0],
                      dates=["2017-09-23", "2017-09-24"], last_date="2017-09-22", last_price=10.0, n_obs=5)
    bad = CoinForecast(coin="neblio", model="naive", status="failed", error_type="SeriesTooShortError",
                       error="naive needs at least 1 points, the series has 0")
    return ForecastRun(model="naive", horizon=2, params={}, engine="local", engine_reason="test",
                       data_path="/data", results=[ok, bad], data_hash="abc", seconds=0.5)


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


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_table_formats_round_trip(run, tmp_path, suffix):
    path = run.write(tmp_path / f"out{suffix}")
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert set(frame["coin"]) == {"bitcoin", "neblio"}
    assert frame.loc[frame["coin"] == "bitcoin", "forecast"].tolist() == [10.0, 10.0]
    assert frame.loc[frame["coin"] == "neblio", "error"].item().startswith("naive needs")
    manifest = json.loads((tmp_path / f"out{suffix}.manifest.json").read_text())
    assert manifest["data_sha256"] == "abc" and manifest["failed"] == 1
    assert {"python", "numpy", "pandas", "scikit-learn", "crypto_ml"} <= set(manifest["versions"])


def test_write_json_keeps_nested_forecasts(run, tmp_path):
    document = json.loads(run.write(tmp_path / "out.json").read_text())
    assert document["results"][0]["forecast"] == [10.0, 10.0]
    assert document["results"][1]["status"] == "failed"
    assert document["manifest"]["model"] == "naive"


def test_unknown_extension_names_the_supported_ones(run, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"'out.xlsx': use a file ending in .csv, .json, .parquet"):
        run.write(tmp_path / "out.xlsx")


def test_from_record_ignores_unknown_keys():
    result = CoinForecast.from_record({"coin": "a", "model": "m", "status": "ok", "forecast": [1.0], "extra": 1})
    assert result.forecast == [1.0]
