"""Tests for crypto_ml.data.store: the price store's layout, manifest, atomic commits and upstream corrections."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

from crypto_ml.data.exchange import Candles
from crypto_ml.data.store import MANIFEST, PriceStore, is_price_store
from crypto_ml.exceptions import PriceStoreError


def candles(first: str, days: int, price: float = 100.0) -> Candles:
    day = np.arange(np.datetime64(first, "D"), np.datetime64(first, "D") + days)
    # A price per calendar day, so overlapping calls agree on the days they share.
    close = price * np.exp(0.001 * (day.astype(np.int64) - 19_000))
    return Candles(
        day=day, open=close * 0.99, high=close * 1.02, low=close * 0.97, close=close, volume=np.full(days, 10.0)
    )


def live_files(store: PriceStore) -> set[str]:
    return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*.parquet")}


def test_one_file_per_symbol_and_year_with_a_manifest_that_describes_each(tmp_path):
    store = PriceStore(tmp_path / "prices")
    summary = store.write("binance", "BTC/USDT", candles("2023-12-30", 5), since="2023-01-01")
    assert (summary.new_rows, summary.replaced_rows, summary.files_written) == (5, 0, 2)
    assert is_price_store(store.root)
    entries = store.entries()
    assert [(e["year"], e["rows"], e["first"], e["last"]) for e in entries] == [
        (2023, 2, "2023-12-30", "2023-12-31"),
        (2024, 3, "2024-01-01", "2024-01-03"),
    ]
    for entry in entries:
        data = (store.root / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["path"].startswith("binance/BTC-USDT/")
    assert live_files(store) == {e["path"] for e in entries}
    table = store.read()
    assert table.column_names == ["exchange", "symbol", "date", "open", "high", "low", "close", "volume", "fetched_at"]
    assert table.num_rows == 5 and set(table.column("symbol").to_pylist()) == {"BTC/USDT"}


def test_writing_the_same_candles_again_changes_nothing(tmp_path):
    store = PriceStore(tmp_path)
    store.write("binance", "ETH/USDT", candles("2024-01-01", 40), since="2024-01-01")
    manifest = (tmp_path / MANIFEST).read_bytes()
    summary = store.write("binance", "ETH/USDT", candles("2024-01-20", 21), since="2024-01-01")
    assert (summary.new_rows, summary.replaced_rows, summary.files_written) == (0, 0, 0)
    assert (tmp_path / MANIFEST).read_bytes() == manifest


def test_new_days_rewrite_only_their_year(tmp_path):
    store = PriceStore(tmp_path)
    store.write("binance", "ETH/USDT", candles("2023-12-01", 40), since="2023-01-01")
    old_2023 = store.entries()[0]
    store.write("binance", "ETH/USDT", candles("2023-12-01", 41), since="2023-01-01")
    entries = store.entries()
    assert entries[0] == old_2023  # December 2023 untouched
    assert entries[1]["last"] == "2024-01-10" and entries[1]["rows"] == 10
    assert len(live_files(store)) == 2  # the superseded 2024 file is gone


def test_a_candle_changed_upstream_is_replaced_and_logged(tmp_path, caplog):
    store = PriceStore(tmp_path)
    store.write("binance", "ETH/USDT", candles("2024-01-01", 10), since="2024-01-01")
    changed = candles("2024-01-01", 10)
    changed.close[4] = 555.5
    with caplog.at_level(logging.WARNING, logger="crypto_ml.data"):
        summary = store.write("binance", "ETH/USDT", changed, since="2024-01-01")
    assert (summary.new_rows, summary.replaced_rows) == (0, 1)
    assert "binance ETH/USDT 2024-01-05: changed upstream" in caplog.text and "555.5" in caplog.text
    assert store.read().column("close").to_pylist()[4] == 555.5
    assert store.read().num_rows == 10


def test_a_write_killed_before_its_commit_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    from crypto_ml.data import store as store_module

    store = PriceStore(tmp_path)
    store.write("binance", "BTC/USDT", candles("2024-01-01", 10), since="2024-01-01")
    before = store.read().drop(["fetched_at"])
    manifest = (tmp_path / MANIFEST).read_bytes()
    real_write = store_module.write_atomic

    def die_at_the_manifest(path, data):
        if path.name == MANIFEST:
            raise KeyboardInterrupt("killed between the data files and the commit")
        real_write(path, data)

    monkeypatch.setattr(store_module, "write_atomic", die_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        store.write("binance", "BTC/USDT", candles("2024-01-01", 20), since="2024-01-01")
    assert (tmp_path / MANIFEST).read_bytes() == manifest
    assert store.read().drop(["fetched_at"]).equals(before)  # the new file is there, but nobody reads it
    assert len(live_files(store)) == 2
    monkeypatch.setattr(store_module, "write_atomic", real_write)
    store.write("binance", "BTC/USDT", candles("2024-01-01", 20), since="2024-01-01")
    assert store.read().num_rows == 20 and len(live_files(store)) == 1  # the orphan is swept


def test_a_changed_or_missing_file_is_refused_by_name(tmp_path):
    store = PriceStore(tmp_path)
    store.write("binance", "BTC/USDT", candles("2024-01-01", 5), since="2024-01-01")
    path = tmp_path / store.entries()[0]["path"]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(PriceStoreError, match=r"BTC-USDT/2024-\w+\.parquet changed since it was written"):
        store.read()
    path.unlink()
    with pytest.raises(PriceStoreError, match=r"is listed in .* but cannot be read"):
        store.read()


def test_a_folder_that_is_not_a_store_is_not_taken_for_one(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"name": "someone else's"}))
    assert not is_price_store(tmp_path)
    with pytest.raises(PriceStoreError, match="not a crypto_ml price store"):
        PriceStore(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PriceStoreError, match="is a file"):
        PriceStore(tmp_path / "file")


def test_the_hash_follows_the_content(tmp_path):
    store = PriceStore(tmp_path)
    store.write("binance", "BTC/USDT", candles("2024-01-01", 5), since="2024-01-01")
    before = store.data_hash()
    store.write("binance", "BTC/USDT", candles("2024-01-01", 5), since="2024-01-01")
    assert store.data_hash() == before  # the same candles fetched again
    store.write("binance", "BTC/USDT", candles("2024-01-01", 6), since="2024-01-01")
    assert store.data_hash() != before


def test_coverage_remembers_the_earliest_since(tmp_path):
    store = PriceStore(tmp_path)
    store.write("binance", "BTC/USDT", candles("2024-01-01", 5), since="2023-06-01")
    store.write("binance", "BTC/USDT", candles("2024-01-01", 5), since="2024-01-01")
    assert store.covered_since("binance", "BTC/USDT") == "2023-06-01"
    store.write("binance", "BTC/USDT", candles("2024-01-01", 5), since="2020-01-01")
    assert store.covered_since("binance", "BTC/USDT") == "2020-01-01"
    assert store.covered_since("binance", "ETH/USDT") is None
