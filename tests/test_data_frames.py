"""Tests for crypto_ml.data.frames: prices in a DataFrame, checked like a file, forecast without writing one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crypto_ml.data import CryptoLoader
from crypto_ml.exceptions import DataFormatError, InvalidParameterError
from crypto_ml.manager import CryptoManager


def long_frame(days: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    dates = pd.date_range("2024-01-01", periods=days)
    return pd.DataFrame(
        {
            "symbol": np.repeat(["BTC", "ETH"], days),
            "date": np.tile(dates, 2),
            "close": np.exp(np.cumsum(rng.normal(0, 0.02, 2 * days))) * 100,
        }
    )


def test_a_frame_reads_like_the_same_rows_in_a_parquet_file(tmp_path):
    frame = long_frame()
    frame.to_parquet(tmp_path / "prices.parquet")
    from_file, from_frame = CryptoLoader(tmp_path / "prices.parquet"), CryptoLoader.from_frame(frame)
    assert from_frame.get_crypto_names() == from_file.get_crypto_names() == ["btc", "eth"]
    for coin in ("btc", "eth"):
        pd.testing.assert_frame_equal(from_frame.get_df(coin), from_file.get_df(coin))
    assert from_frame.data_path is None and from_frame.source == "<DataFrame>"


def test_statsforecasts_columns_and_an_index_are_accepted():
    frame = long_frame().rename(columns={"symbol": "unique_id", "date": "ds", "close": "y"})
    expected = CryptoLoader.from_frame(long_frame()).get_prices("eth")
    np.testing.assert_array_equal(CryptoLoader.from_frame(frame).get_prices("eth"), expected)
    indexed = frame.set_index(["unique_id", "ds"])
    np.testing.assert_array_equal(CryptoLoader.from_frame(indexed).get_prices("eth"), expected)


def test_bad_rows_get_the_same_repairs_and_reports_as_a_file():
    frame = long_frame().astype({"close": object})
    frame.loc[5, "close"] = "-"
    frame.loc[7, "close"] = -3.0
    report = CryptoLoader.from_frame(frame).report()
    btc = report.coins[0]
    assert btc.rows == 118 and btc.dropped_rows == 2 and btc.source == "<DataFrame>"
    assert any("non-numeric Close (first: '-')" in w for w in btc.warnings)
    assert any("Close <= 0" in w for w in btc.warnings)


def test_a_frame_without_prices_or_rows_is_refused_at_once():
    with pytest.raises(DataFormatError, match="close"):
        CryptoLoader.from_frame(long_frame().rename(columns={"close": "price"}))
    with pytest.raises(DataFormatError, match="no rows"):
        CryptoLoader.from_frame(long_frame().iloc[:0])
    with pytest.raises(InvalidParameterError, match="takes a pandas DataFrame"):
        CryptoLoader.from_frame({"symbol": ["a"]})
    with pytest.raises(InvalidParameterError, match=r"use CryptoLoader\.from_frame"):
        CryptoLoader(long_frame())


def test_send_tasks_forecasts_a_frame_on_the_local_engine():
    run = CryptoManager(engine="local", workers=1).send_tasks("ewma", horizon=5, data=long_frame(), verbose=False)
    assert [r.coin for r in run] == ["btc", "eth"] and all(r.ok for r in run)
    assert run.data_path == "<DataFrame>"
    assert all(len(r.forecast) == 5 and r.last_date == "2024-04-29" for r in run)


def test_persisting_a_frame_writes_one_file_named_by_its_content(tmp_path):
    loader = CryptoLoader.from_frame(long_frame())
    first, second = loader.persist(tmp_path), loader.persist(tmp_path)
    assert first.data_path == second.data_path and first.data_path.name == f"{loader.data_hash()}.parquet"
    assert list(tmp_path.iterdir()) == [first.data_path]
    np.testing.assert_array_equal(first.get_prices("btc"), loader.get_prices("btc"))


@pytest.mark.broker
def test_celery_gets_a_frame_by_reference_from_the_store(start_worker, tmp_path, monkeypatch):
    from crypto_ml.config import get_settings

    monkeypatch.setenv("CRYPTO_ML_PRICE_STORE", str(tmp_path / "prices"))
    get_settings.cache_clear()
    start_worker("frames1")
    local = CryptoManager(engine="local", workers=1).send_tasks("ewma", data=long_frame(), verbose=False)
    remote = CryptoManager(engine="celery").send_tasks("ewma", data=long_frame(), verbose=False, transfer="reference")
    assert remote.transfer == "reference"
    assert [r.to_record() for r in remote] == [r.to_record() for r in local]
    assert len(list((tmp_path / "prices" / "frames").glob("*.parquet"))) == 1
