"""Train once, predict many: the train task function and forecasting from the store."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from crypto_ml.data_loader import CryptoLoader
from crypto_ml.manager import CryptoManager
from crypto_ml.model_store import ModelStore
from crypto_ml.training import forecast_from_store, series_sha256, train_batch

FAST_LSTM = {"epochs": 2, "window": 8, "units": [4, 4], "min_windows": 3}


def prices(n: int = 200, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (50.0 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))).tolist()


def test_train_batch_stores_each_coin_and_reports_failures(tmp_path):
    payload = {
        "model": "linear",
        "params": {},
        "store": str(tmp_path),
        "series": [
            {"coin": "a", "prices": prices(), "last_date": "2017-09-22"},
            {"coin": "short", "prices": [1.0], "last_date": "2017-09-22"},
        ],
    }
    ok, short = train_batch(payload)
    assert ok["status"] == "ok" and ok["model_id"].startswith("linear/a/") and ok["metrics"]["fit_seconds"] >= 0
    assert ModelStore(tmp_path).metadata(ok["model_id"])["data"]["series_sha256"] == series_sha256(prices())
    assert short["status"] == "failed" and short["error_type"] == "SeriesTooShortError"


def test_from_store_forecast_equals_the_fitted_model(tmp_path):
    y = prices()
    record = train_batch(
        {
            "model": "svr_rbf",
            "params": {},
            "store": str(tmp_path),
            "series": [{"coin": "a", "prices": y, "last_date": "2017-09-22"}],
        }
    )[0]
    (result,) = forecast_from_store(
        {
            "model": "svr_rbf",
            "horizon": 5,
            "store": str(tmp_path),
            "series": [{"coin": "a", "prices": y, "last_date": "2017-09-22"}],
        }
    )
    from crypto_ml.models import get_model

    np.testing.assert_array_equal(result["forecast"], get_model("svr_rbf").fit(y).predict(5))
    assert result["model_id"] == record["model_id"] and result["dates"][0] == "2017-09-23"
    # The stored model's own intervals, as fitting it now would give them.
    expected = get_model("svr_rbf").fit(y).predict_interval(5, (50, 80)).to_record()
    (wide,) = forecast_from_store(
        {
            "model": "svr_rbf",
            "horizon": 5,
            "store": str(tmp_path),
            "levels": [50, 80],
            "series": [{"coin": "a", "prices": y}],
        }
    )
    assert wide["levels"] == [50, 80] and "lo_95" not in wide
    for key in ("lo_50", "hi_50", "lo_80", "hi_80"):
        np.testing.assert_allclose(wide[key], expected[key])
    assert {"lo_80", "hi_80", "lo_95", "hi_95"} <= set(result)


def test_a_missing_extra_fails_each_coin_naming_the_extra(tmp_path, monkeypatch):
    from crypto_ml.models import MODEL_REGISTRY

    monkeypatch.setitem(MODEL_REGISTRY, "phantom", "jobs:PhantomModel")
    (record,) = train_batch({"model": "phantom", "store": str(tmp_path), "series": [{"coin": "a", "prices": prices()}]})
    assert record["error_type"] == "MissingDependencyError"
    assert "install the 'phantom' extra: pip install 'crypto-ml[phantom]'" in record["error"]
    (served,) = forecast_from_store(
        {"model": "phantom", "horizon": 2, "store": str(tmp_path), "series": [{"coin": "a", "prices": prices()}]}
    )
    assert served["error_type"] == "MissingDependencyError"


def test_time_index_models_refuse_data_they_were_not_trained_on(tmp_path):
    train_batch({"model": "linear", "store": str(tmp_path), "series": [{"coin": "a", "prices": prices()}]})
    newer = prices(210)
    (result,) = forecast_from_store(
        {
            "model": "linear",
            "horizon": 3,
            "store": str(tmp_path),
            "series": [{"coin": "a", "prices": newer, "last_date": "2017-10-02"}],
        }
    )
    assert result["error_type"] == "IncompatibleModelError"
    assert "extrapolates its training series, so retrain it" in result["error"]


def test_no_stored_model_is_a_per_coin_failure(tmp_path):
    (result,) = forecast_from_store(
        {"model": "lstm", "horizon": 3, "store": str(tmp_path), "series": [{"coin": "neblio", "prices": prices(11)}]}
    )
    assert (
        result["error_type"] == "ModelStoreError" and "crypto-ml train --model lstm --coins neblio" in result["error"]
    )


@pytest.mark.deep
def test_lstm_from_store_serves_newer_data_and_checks_params(tmp_path):
    y = prices(120)
    train_batch({"model": "lstm", "params": FAST_LSTM, "store": str(tmp_path), "series": [{"coin": "a", "prices": y}]})
    model, _ = ModelStore(tmp_path).load(ModelStore(tmp_path).latest("lstm", "a"))
    newer = prices(130, seed=5)
    (result,) = forecast_from_store(
        {"model": "lstm", "horizon": 4, "store": str(tmp_path), "series": [{"coin": "a", "prices": newer}]}
    )
    point = model.forecast_from(np.asarray(newer), 4)
    np.testing.assert_allclose(result["forecast"], point)
    # Intervals spread from the current series' own returns, around the forecast from it.
    from crypto_ml.models.intervals import empirical_intervals

    bounds = empirical_intervals(np.log(newer), point, (80, 95))
    np.testing.assert_allclose(result["lo_95"], bounds[95][0], rtol=1e-6)
    np.testing.assert_allclose(result["hi_80"], bounds[80][1], rtol=1e-6)
    assert np.all(np.array(result["lo_95"]) > 0)
    (wrong,) = forecast_from_store(
        {
            "model": "lstm",
            "horizon": 4,
            "store": str(tmp_path),
            "params": {"window": 30},
            "series": [{"coin": "a", "prices": newer}],
        }
    )
    assert wrong["error_type"] == "IncompatibleModelError" and "trained with window=8" in wrong["error"]


@pytest.mark.deep
def test_manager_trains_then_forecasts_from_the_store(tmp_path, synth_dir):
    manager = CryptoManager(CryptoLoader(synth_dir), engine="local")
    trained = manager.train("lstm", params=FAST_LSTM, store=tmp_path)
    assert len(trained.ok) == 12 and not trained.failed
    run = manager.send_tasks("lstm", from_store=True, store=tmp_path, verbose=False)
    assert len(run.ok) == 12
    store = ModelStore(tmp_path)
    for result in run:
        model, _ = store.load(store.latest("lstm", result.coin))
        np.testing.assert_allclose(result.forecast, model.predict(10), rtol=1e-6)


@pytest.mark.deep
@pytest.mark.slow
def test_cli_train_then_forecast_from_store(tmp_path):
    store = str(tmp_path / "store")
    common = ["--engine", "local", "--store", store, "--model", "lstm"]
    trained = subprocess.run(
        [sys.executable, "-m", "crypto_ml", "train", *common, "-p", "epochs=2", "--coins", "rivencoin,the_quill"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    assert "2 of 2 lstm models trained" in trained.stderr
    forecast = subprocess.run(
        [
            sys.executable,
            "-m",
            "crypto_ml",
            "forecast",
            "--from-store",
            *common,
            "--coins",
            "rivencoin,the_quill,argent-x",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert forecast.returncode == 1  # argent-x has no stored model
    assert "2 of 3 coins forecast with lstm" in forecast.stderr
    assert "failed argent-x: ModelStoreError: no stored lstm model for argent-x" in forecast.stderr


@pytest.mark.broker
@pytest.mark.deep
@pytest.mark.realdata
@pytest.mark.slow
def test_real_coins_train_and_forecast_from_store_through_celery(start_worker, real_data_dir, tmp_path):
    """Issue 4's acceptance: every coin long enough gets a stored LSTM and a forecast; the rest are reported."""
    start_worker("deep1")
    start_worker("deep2")
    store = str(tmp_path / "store")
    common = ["--model", "lstm", "--engine", "celery", "--data", str(real_data_dir), "--store", store]
    trained = subprocess.run(
        [sys.executable, "-m", "crypto_ml", "train", *common, "-p", "epochs=1", "--max-points", "300"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "Traceback" not in trained.stderr
    loader = CryptoLoader(real_data_dir)
    too_short = {c for c in loader.get_crypto_names() if loader.get_prices(c).size < 60}
    assert "neblio" in too_short
    reported = set(re.findall(r"failed (\S+): SeriesTooShortError", trained.stderr))
    assert reported == too_short
    assert f"{100 - len(too_short)} of 100 lstm models trained on the celery engine" in trained.stderr
    forecast = subprocess.run(
        [sys.executable, "-m", "crypto_ml", "forecast", "--from-store", *common, "--out", str(tmp_path / "f.csv")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert f"{100 - len(too_short)} of 100 coins forecast with lstm on the celery engine" in forecast.stderr
    assert set(re.findall(r"failed (\S+): ModelStoreError", forecast.stderr)) == too_short
