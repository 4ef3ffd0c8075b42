"""Tests for crypto_ml.data.long_table: long-format CSV, CSV.gz and Parquet files."""

from __future__ import annotations

import dataclasses
import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_ml.data import COLUMNS, CryptoLoader, long_table
from crypto_ml.exceptions import DataFormatError

from data_helpers import LOGGER, from_data, long_frame, quirky_long_frame, warnings_of

# --- Long format -----------------------------------------------------------------------


def test_long_format_csv(tmp_path, caplog):
    frame = long_frame().iloc[::-1]  # any row order within a symbol
    lines = ["Symbol,Date,Close,Volume,Market Cap"]
    lines += [f"{r.symbol},{r.date},{r.close},{r.volume:,.0f},-" for r in frame.itertuples()]
    lines += [",2017-09-22,5.0,1,1"]  # no symbol
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    loader = CryptoLoader(path)
    assert loader.get_crypto_names() == ["bitcoin_cash", "eth"]
    df = loader.get_df("Bitcoin Cash")
    assert list(df.columns) == list(COLUMNS) and df["Date"].dtype == np.dtype("datetime64[ns]")
    assert df["Close"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert df["Market Cap"].isna().all() and (df["Volume"] == 100.0).all() and df["Open"].isna().all()
    np.testing.assert_array_equal(loader.get_prices("eth"), [1.0, 2.0, 3.0, 4.0])
    assert any("dropped 1 row(s) without a symbol" in m for m in warnings_of(caplog))
    report = loader.report()
    assert [c.rows for c in report.coins] == [6, 4] and report.warnings == ["dropped 1 row(s) without a symbol"]
    assert all(c.source == str(path) for c in report.coins)


def test_long_format_csv_gz(tmp_path):
    path = tmp_path / "long.csv.gz"
    path.write_bytes(gzip.compress(long_frame().to_csv(index=False).encode()))
    assert CryptoLoader(path, max_points=2).get_prices("eth").tolist() == [3.0, 4.0]


@pytest.mark.parametrize("typed_dates", [False, True])
def test_long_format_parquet(tmp_path, typed_dates):
    frame = long_frame().rename(columns={"volume": "market_cap"})
    if typed_dates:
        frame["date"] = pd.to_datetime(frame["date"])
    path = tmp_path / "coins.parquet"
    frame.to_parquet(path)
    loader = CryptoLoader(path, from_date="2017-09-20")
    df = loader.get_df("eth")
    assert df["Date"].dt.strftime("%Y-%m-%d").tolist() == ["2017-09-20", "2017-09-21", "2017-09-22"]
    assert df["Close"].tolist() == [2.0, 3.0, 4.0] and (df["Market Cap"] == 100.0).all()
    assert df["Date"].dtype == np.dtype("datetime64[ns]")


def test_long_format_bad_rows_follow_the_same_rules(tmp_path, caplog):
    path = tmp_path / "long.csv"
    path.write_text("symbol,date,close\nA,2017-09-01,1\nA,2017-09-02,0\nA,nope,2\nB,2017-09-01,1\nB,2017-09-01,2\n")
    loader = CryptoLoader(path)
    assert len(loader.get_df("a")) == 1
    assert any("long.csv [a]" in m and "Close <= 0" in m for m in warnings_of(caplog))
    with pytest.raises(DataFormatError, match=r"long.csv \[b\].*conflicting Close.*2017-09-01"):
        loader.get_df("b")
    assert [c.name for c in loader.report().failed] == ["b"]


def test_long_format_without_symbol_column(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("date,close\n2017-09-01,1\n")
    with pytest.raises(DataFormatError, match=r"lacks the column.*symbol"):
        CryptoLoader(path).get_crypto_names()


def test_long_format_corrupt_parquet(tmp_path):
    path = tmp_path / "coins.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match=r"coins.parquet is not a readable Parquet file"):
        CryptoLoader(path).get_crypto_names()


def test_folder_and_long_formats_of_one_synthetic_dataset_agree(tmp_path):
    from crypto_ml.synthetic import generate_dataset

    folder = CryptoLoader(generate_dataset(3, tmp_path / "coins", seed=5, min_points=20, max_points=40))
    long = CryptoLoader(generate_dataset(3, tmp_path / "coins.parquet", seed=5, min_points=20, max_points=40))
    assert folder.get_crypto_names() == long.get_crypto_names()
    for name in folder.get_crypto_names():
        a, b = folder.get_df(name), long.get_df(name)
        pd.testing.assert_series_equal(a["Date"], b["Date"])
        # The CSVs carry 6 significant digits, the Parquet file full precision.
        np.testing.assert_allclose(a["Close"], b["Close"], rtol=1e-5)


# --- Long format: the fast paths -------------------------------------------------------
# A long file is converted and checked once; a coin with nothing to fix is then a slice of
# sorted arrays, and only the others go through the per-coin cleaning. These tests pin that
# the shortcuts change nothing a caller can see.


@pytest.fixture(params=["csv", "parquet"])
def quirky_long(request, tmp_path) -> Path:
    path = tmp_path / f"quirky.{request.param}"
    frame = quirky_long_frame()
    if request.param == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def load_everything(path: Path, caplog, **kwargs) -> tuple[CryptoLoader, dict, dict, list]:
    """Names, every coin's frame (or error), the report and every log line, from a fresh loader."""
    caplog.clear()
    loader = CryptoLoader(path, **kwargs)
    frames: dict[str, object] = {}
    for name in loader.get_crypto_names():
        try:
            frames[name] = loader.get_df(name)
        except DataFormatError as exc:
            frames[name] = f"DataFormatError: {exc}"
            continue
        # The frame-free accessor workers use gives the same two columns.
        dates, prices = loader.get_dated_prices(name)
        np.testing.assert_array_equal(dates, frames[name]["Date"].to_numpy())
        np.testing.assert_array_equal(prices, frames[name]["Close"].to_numpy())
        assert dates.dtype == np.dtype("datetime64[ns]") and prices.dtype == np.float64
    report = dataclasses.asdict(loader.report())
    logs = [(r.levelno, r.getMessage()) for r in caplog.records if from_data(r)]
    return loader, frames, report, logs


@pytest.mark.parametrize(
    "bounds",
    [
        {},
        {"from_date": "2017-09-19", "to_date": "2017-09-21"},
        {"max_points": 2},
        {"from_date": "1600-01-01", "to_date": "2300-01-01"},
    ],
)
def test_long_format_fast_path_matches_the_per_coin_path(quirky_long, monkeypatch, caplog, bounds):
    caplog.set_level(logging.INFO, logger=LOGGER)
    fast, fast_frames, fast_report, fast_logs = load_everything(quirky_long, caplog, **bounds)
    table = fast._table
    assert {name for name, clean in zip(table.names, table.clean, strict=True) if clean} == {
        "rising",
        "falling",
        "gappy",
        "no_volume",
        "month_names",
        "single",
        "interleaved_a",
        "interleaved_b",
    }

    # The path every coin took before: flag an Excel date on every row for the grouping
    # step only, so that no coin counts as clean and each one goes through the cleaning.
    group = long_table._group_coins
    monkeypatch.setattr(
        long_table,
        "_group_coins",
        lambda ids, count, converted: group(ids, count, {**converted, "_excel": np.ones(len(ids), dtype=bool)}),
    )
    slow, slow_frames, slow_report, slow_logs = load_everything(quirky_long, caplog, **bounds)
    assert not slow._table.clean.any()

    assert list(fast_frames) == list(slow_frames)
    for name, frame in fast_frames.items():
        if isinstance(frame, str):
            assert frame == slow_frames[name]
        else:
            pd.testing.assert_frame_equal(frame, slow_frames[name], check_exact=True, obj=name)
    assert fast_report == slow_report
    # The same warnings and INFO lines (gaps, missing Volume, Excel dates), in the same order.
    assert fast_logs == slow_logs
    assert "conflicting Close" in fast_frames["conflict"] and "no valid rows" in fast_frames["only_bad"]


def test_long_format_clean_coin_frames_are_copies(tmp_path):
    path = tmp_path / "long.parquet"
    long_frame().to_parquet(path)
    loader = CryptoLoader(path)
    first = loader.get_df("eth")
    first.loc[0, "Close"] = -1.0
    loader.get_prices("eth")[:] = 0.0
    dates, prices = loader.get_dated_prices("eth")
    dates[:], prices[:] = np.datetime64("2000-01-01"), 0.0
    assert loader.get_df("eth")["Close"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert loader.get_df("eth")["Date"].min() > pd.Timestamp("2000-01-01")
    assert loader._table.clean.all()  # the coins took the fast path


# --- Long format: listing the coins ----------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_long_format_names_read_only_the_symbol_column(tmp_path, suffix):
    frame = long_frame().rename(columns={"symbol": " SYMBOL"})  # matched case- and space-insensitively
    path = tmp_path / f"long{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        data = frame.to_csv(index=False).encode()
        path.write_bytes(gzip.compress(data) if suffix == ".csv.gz" else data)
    loader = CryptoLoader(path)
    assert loader.get_crypto_names() == ["bitcoin_cash", "eth"]
    assert loader._table is None  # the whole table waits for the first get_df
    assert loader.get_df("eth")["Close"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert loader._table is not None and loader.get_crypto_names() == ["bitcoin_cash", "eth"]


def test_long_format_names_fail_as_the_full_read_does(tmp_path):
    frame = long_frame()
    frame.drop(columns="symbol").to_parquet(tmp_path / "no_symbol.parquet")
    frame.set_index("symbol").to_parquet(tmp_path / "symbol_index.parquet")  # pandas reads it back as the index
    frame.iloc[:0].to_parquet(tmp_path / "header_only.parquet")
    (tmp_path / "ragged.csv").write_text("symbol,date,close\nA,2017-09-22,1,9\n")
    (tmp_path / "header_only.csv").write_text("symbol,date,close\n")
    for name, message in [
        ("no_symbol.parquet", "lacks the column.*symbol"),
        ("symbol_index.parquet", "lacks the column.*symbol"),
        ("header_only.parquet", "header_only.parquet has no data rows"),
        ("ragged.csv", "ragged.csv cannot be parsed as CSV"),
        ("header_only.csv", "header_only.csv has no data rows"),
    ]:
        with pytest.raises(DataFormatError, match=message):
            CryptoLoader(tmp_path / name).get_crypto_names()


def test_long_csv_names_agree_with_the_full_read_where_pyarrow_and_pandas_differ(tmp_path):
    # pandas (skipinitialspace) unquotes ` "Bitcoin, Cash"`; pyarrow alone would not.
    path = tmp_path / "long.csv"
    path.write_text('symbol, date, close\n "Bitcoin, Cash", 2017-09-22, 1\nETH, 2017-09-22, 2\n')
    assert CryptoLoader(path).get_crypto_names() == ["bitcoin,_cash", "eth"]
    assert CryptoLoader(path)._long_table().names == ["bitcoin,_cash", "eth"]
