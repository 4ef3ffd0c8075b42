"""The plain task functions, without any engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crypto_ml.forecasting import forecast_batch, forecast_series
from crypto_ml.models import MODEL_REGISTRY, get_model
from crypto_ml.records import failure_record, forecast_dates


def test_forecast_series_ok_record_is_json_safe_and_dated():
    y = [1.0, 2.0, 3.0, 4.0]
    record = forecast_series("line", y, "linear", 3, last_date="2017-12-30")
    assert record["status"] == "ok"
    expected = get_model("linear").fit(y).predict_interval(3)
    np.testing.assert_allclose(record["forecast"], expected.point)
    assert record["dates"] == ["2017-12-31", "2018-01-01", "2018-01-02"]
    assert record["last_price"] == 4.0 and record["n_obs"] == 4
    assert json.loads(json.dumps(record)) == record


def test_records_carry_the_default_80_and_95_intervals_around_the_point():
    y = np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.05, 120)))
    record = forecast_series("c", y, "drift", 5)
    assert record["levels"] == [80, 95]
    expected = get_model("drift").fit(y).predict_interval(5, (80, 95)).to_record()
    for key in ("forecast", "lo_80", "hi_80", "lo_95", "hi_95"):
        np.testing.assert_allclose(record[key], expected[key])
    lo95, lo80, point, hi80, hi95 = (np.array(record[k]) for k in ("lo_95", "lo_80", "forecast", "hi_80", "hi_95"))
    assert np.all(lo95 > 0) and np.all(lo95 <= lo80) and np.all(lo80 <= point)
    assert np.all(point <= hi80) and np.all(hi80 <= hi95) and np.all(hi80 > lo80)


def test_levels_choose_the_interval_columns():
    y = np.linspace(10.0, 20.0, 60)
    record = forecast_series("c", y, "naive", 2, levels="95,50,80")
    assert record["levels"] == [50, 80, 95]
    assert {"lo_50", "hi_50", "lo_80", "hi_80", "lo_95", "hi_95"} <= set(record)
    batch = forecast_batch({"model": "naive", "horizon": 2, "levels": [97.5], "series": [{"coin": "c", "prices": y}]})[
        0
    ]
    assert batch["levels"] == [97.5] and "lo_97.5" in batch and "lo_80" not in batch
    bad = forecast_series("c", y, "naive", 2, levels=[0, 80])
    assert bad["error_type"] == "InvalidParameterError" and "outside (0, 100)" in bad["error"]


def test_a_model_whose_extra_is_missing_fails_each_coin_naming_the_extra(monkeypatch):
    monkeypatch.setitem(MODEL_REGISTRY, "phantom", "jobs:PhantomModel")
    record = forecast_series("c", [1.0, 2.0, 3.0], "phantom", 2)
    assert record["status"] == "failed" and record["error_type"] == "MissingDependencyError"
    assert "install the 'phantom' extra: pip install 'crypto-ml[phantom]'" in record["error"]


def test_too_short_series_is_a_failure_record_not_an_exception():
    record = forecast_series("neblio", [1.0], "linear", 10)
    assert record["status"] == "failed"
    assert record["error_type"] == "SeriesTooShortError"
    assert "needs at least 2 points, the series has 1" in record["error"]


def test_bad_inputs_become_failure_records():
    assert forecast_series("x", [1.0, np.nan, 2.0], "naive", 2)["error_type"] == "DataFormatError"
    assert forecast_series("x", [1.0, 2.0], "nope", 2)["error_type"] == "UnknownModelError"
    assert forecast_series("x", [1.0, 2.0], "naive", 0)["error_type"] == "InvalidParameterError"
    assert forecast_series("x", [1.0, 2.0], "linear", 2, {"C": 1})["error_type"] == "InvalidParameterError"


def test_unexpected_library_error_is_contained(caplog):
    # sklearn rejects C <= 0 with its own ValueError: still one coin's failure, logged with traceback.
    record = forecast_series("x", np.arange(1.0, 50.0), "svr_rbf", 2, {"C": -1.0})
    assert record["status"] == "failed" and "C" in record["error"]
    assert any("unexpected error forecasting x" in r.message for r in caplog.records)


def test_batch_keeps_order_and_isolates_failures():
    payload = {
        "model": "drift",
        "horizon": 2,
        "params": {},
        "series": [
            {"coin": "a", "prices": [1.0, 2.0, 3.0], "last_date": "2017-01-01"},
            {"coin": "short", "prices": [5.0]},
            {"coin": "b", "prices": np.array([10.0, 8.0])},
        ],
    }
    records = forecast_batch(payload)
    assert [r["coin"] for r in records] == ["a", "short", "b"]
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    # drift on log prices: the mean daily log return carried forward
    np.testing.assert_allclose(records[0]["forecast"], [3.0 * 3.0**0.5, 9.0])
    np.testing.assert_allclose(records[2]["forecast"], [6.4, 5.12])
    assert records[2]["dates"] is None


def test_failure_record_shape():
    assert failure_record("c", "m", ValueError("boom")) == {
        "coin": "c",
        "model": "m",
        "status": "failed",
        "error_type": "ValueError",
        "error": "boom",
    }


@pytest.mark.parametrize("last, expected", [(None, None), ("2016-02-28", ["2016-02-29", "2016-03-01"])])
def test_forecast_dates(last, expected):
    assert forecast_dates(last, 2) == expected


def test_batch_by_reference_reads_the_dataset_and_checks_its_hash(synth_dir):
    from crypto_ml.data_loader import CryptoLoader
    from crypto_ml.references import dataset_reference

    loader = CryptoLoader(synth_dir, max_points=100)
    coin = loader.get_crypto_names()[0]
    reference = dataset_reference(loader)
    assert reference["max_points"] == 100 and len(reference["sha256"]) == 64
    payload = {"model": "naive", "horizon": 2, "data": reference, "series": [{"coin": coin}, {"coin": "nope"}]}
    ok, missing = forecast_batch(payload)
    assert ok["status"] == "ok" and ok["n_obs"] == 100
    assert ok["forecast"] == [loader.get_prices(coin)[-1]] * 2
    assert missing["error_type"] == "UnknownCoinError"


def test_reference_to_different_data_fails_loudly(synth_dir):
    reference = {"path": str(synth_dir), "sha256": "0" * 64}
    record = forecast_batch({"model": "naive", "horizon": 1, "data": reference, "series": [{"coin": "x"}]})[0]
    assert record["error_type"] == "DataFormatError"
    assert "differs from the producer's" in record["error"]


def test_reference_to_missing_data_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(tmp_path / "absent"))
    reference = {"path": str(tmp_path / "gone"), "sha256": None}
    record = forecast_batch({"model": "naive", "horizon": 1, "data": reference, "series": [{"coin": "x"}]})[0]
    assert record["error_type"] == "DataFormatError"
    assert "cannot read the producer's data" in record["error"] and "--transfer inline" in record["error"]
