"""Tests for crypto_ml.data_loader: generated CoinMarketCap-style folders, long-format files, the real dataset."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from crypto_ml import data_loader
from crypto_ml.config import bundled_data_dir, get_settings
from crypto_ml.data_loader import COLUMNS, CoinReport, CryptoLoader, DataReport, normalize_name
from crypto_ml.exceptions import CryptoMLError, DataFormatError, InvalidParameterError, UnknownCoinError

LOGGER = "crypto_ml.data_loader"
HEADER = "Date,Open,High,Low,Close,Volume,Market Cap"


# --- Fixture helpers -------------------------------------------------------------------


def cmc_date(day: pd.Timestamp, full_month: bool = False) -> str:
    """A quoted CoinMarketCap date: "Sep 22, 2017" (or "June 4, 2017"), day unpadded below 10."""
    month = day.strftime("%B" if full_month else "%b")
    return f'"{month} {day.day}, {day.year}"'


def cmc_row(day: pd.Timestamp | str, close: float | str, volume: str = '"1,194,830,000"',
            cap: str = '"60,152,300,000"') -> str:
    stamp = day if isinstance(day, str) else cmc_date(day)
    return f"{stamp},{close},{close},{close},{close},{volume},{cap}"


def daily_rows(n: int, end: str = "2017-09-22", start_price: float = 100.0) -> list[str]:
    """n consecutive days ending on `end`, newest first (as CMC exports), Close rising by 1 a day."""
    days = pd.date_range(end=end, periods=n, freq="D")
    return [cmc_row(day, start_price + i) for i, day in reversed(list(enumerate(days)))]


def write_coin(folder: Path, name: str, rows: list[str], *, header: str = HEADER, newline: str = "\n",
               bom: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = newline.join([header, *rows]) + newline
    path = folder / f"{name}.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def infos_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


@pytest.fixture
def coins(tmp_path) -> Path:
    """A clean folder: three well-formed coins, names with spaces and hyphens."""
    folder = tmp_path / "coins"
    write_coin(folder, "Bitcoin", daily_rows(30, start_price=3000.0))
    write_coin(folder, "Bitcoin Cash", daily_rows(20, start_price=300.0))
    write_coin(folder, "I-O Coin", daily_rows(10, start_price=0.5))
    return folder


# --- Names -----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("Bitcoin Cash", "bitcoin_cash"),
    ("I-O Coin", "i-o_coin"),
    ("The ChampCoin", "the_champcoin"),
    ("  Bitcoin \t Cash  ", "bitcoin_cash"),
    ("bitcoin_cash", "bitcoin_cash"),
    ("Déjà Coin", "déjà_coin"),
    ("Ｂｉｔｃｏｉｎ", "bitcoin"),  # full-width letters fold under NFKC
    ("Bitcoin\u00a0Cash", "bitcoin_cash"),  # a non-breaking space is still a space
])
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


def test_normalize_name_rejects_non_strings():
    with pytest.raises(InvalidParameterError, match="string"):
        normalize_name(42)


def test_names_are_sorted_normalised_stems(coins):
    assert CryptoLoader(coins).get_crypto_names() == ["bitcoin", "bitcoin_cash", "i-o_coin"]


# --- The frame contract ----------------------------------------------------------------


def test_get_df_columns_dtypes_and_order(coins):
    frame = CryptoLoader(coins).get_df("bitcoin")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["Date"].dtype == np.dtype("datetime64[ns]")
    for column in COLUMNS[1:]:
        assert frame[column].dtype == np.float64, column
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
    assert frame["Date"].is_monotonic_increasing and frame["Date"].is_unique
    assert (frame["Date"] == frame["Date"].dt.normalize()).all()
    assert frame["Date"].iloc[-1] == pd.Timestamp("2017-09-22")
    # The newest-first file is reversed: the oldest day has the lowest Close.
    assert frame["Close"].tolist() == [3000.0 + i for i in range(30)]
    assert frame["Volume"].iloc[0] == 1_194_830_000.0
    assert frame["Market Cap"].iloc[0] == 60_152_300_000.0


def test_get_df_accepts_raw_stem_and_normalised_name(coins):
    loader = CryptoLoader(coins)
    pd.testing.assert_frame_equal(loader.get_df("Bitcoin Cash"), loader.get_df("bitcoin_cash"))
    pd.testing.assert_frame_equal(loader.get_df("  I-O  Coin "), loader.get_df("i-o_coin"))


def test_get_prices_float64_oldest_first_contiguous(coins):
    loader = CryptoLoader(coins)
    prices = loader.get_prices("bitcoin")
    assert prices.dtype == np.float64 and prices.ndim == 1
    assert prices.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(prices, 3000.0 + np.arange(30))
    prices[:] = 0  # callers own their copy
    assert loader.get_prices("bitcoin")[0] == 3000.0


def test_get_df_is_cached_and_isolated(tmp_path, caplog):
    write_coin(tmp_path, "Coin", [*daily_rows(5), cmc_row('"not a date"', 1.0)])
    loader = CryptoLoader(tmp_path)
    caplog.set_level(logging.INFO, logger=LOGGER)
    first = loader.get_df("coin")
    first.loc[0, "Close"] = -1.0  # copy-on-write: the cache must not see this
    second = loader.get_df("coin")
    assert second.loc[0, "Close"] == 100.0
    # Parsed once: the warning about the bad date is not repeated.
    assert len([m for m in warnings_of(caplog) if "unparseable Date" in m]) == 1


# --- Selection -------------------------------------------------------------------------


def test_max_points_keeps_most_recent(coins):
    frame = CryptoLoader(coins, max_points=7).get_df("bitcoin")
    assert len(frame) == 7
    assert frame["Date"].iloc[-1] == pd.Timestamp("2017-09-22")
    assert frame["Date"].iloc[0] == pd.Timestamp("2017-09-16")
    assert isinstance(frame.index, pd.RangeIndex) and frame.index[0] == 0
    assert len(CryptoLoader(coins, max_points=1000).get_df("bitcoin")) == 30


@pytest.mark.parametrize("bound", ["2017-09-10", date(2017, 9, 10), datetime(2017, 9, 10, 15, 30),
                                   pd.Timestamp("2017-09-10"), np.datetime64("2017-09-10")])
def test_date_bounds_are_inclusive_whole_days(coins, bound):
    frame = CryptoLoader(coins, from_date=bound, to_date="2017-09-20").get_df("bitcoin")
    assert frame["Date"].iloc[0] == pd.Timestamp("2017-09-10")
    assert frame["Date"].iloc[-1] == pd.Timestamp("2017-09-20")
    assert len(frame) == 11


def test_max_points_applies_after_date_bounds(coins):
    frame = CryptoLoader(coins, to_date="2017-09-15", max_points=3).get_df("bitcoin")
    assert frame["Date"].dt.strftime("%Y-%m-%d").tolist() == ["2017-09-13", "2017-09-14", "2017-09-15"]


def test_bounds_outside_the_data_give_an_empty_frame(coins):
    loader = CryptoLoader(coins, from_date="2018-01-01")
    frame = loader.get_df("bitcoin")
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert loader.get_prices("bitcoin").shape == (0,)
    coin = next(c for c in loader.report().coins if c.name == "bitcoin")
    assert coin.ok and coin.rows == 0 and coin.first_date is None


def test_report_reflects_selection(coins):
    report = CryptoLoader(coins, max_points=5).report()
    bitcoin = next(c for c in report.coins if c.name == "bitcoin")
    assert (bitcoin.rows, bitcoin.first_date, bitcoin.last_date) == (5, "2017-09-18", "2017-09-22")


@pytest.mark.parametrize("kwargs", [
    {"max_points": 0}, {"max_points": -3}, {"max_points": 2.5}, {"max_points": True}, {"max_points": "10"},
    {"from_date": "not a date"}, {"from_date": "2017-13-01"}, {"to_date": 20170101}, {"to_date": [2017]},
    {"from_date": "2017-09-10", "to_date": "2017-09-01"},
])
def test_invalid_constructor_arguments(coins, kwargs):
    with pytest.raises(InvalidParameterError):
        CryptoLoader(coins, **kwargs)


def test_numpy_integer_max_points_is_accepted(coins):
    assert len(CryptoLoader(coins, max_points=np.int64(4)).get_df("bitcoin")) == 4


def test_missing_path_names_it_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataFormatError) as info:
        CryptoLoader(missing)
    message = str(info.value)
    assert str(missing) in message and "--data" in message and "CRYPTO_ML_DATA_DIR" in message


def test_unknown_file_type_is_rejected(tmp_path):
    path = tmp_path / "prices.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataFormatError, match=r"\.csv, \.csv\.gz or \.parquet"):
        CryptoLoader(path)


def test_default_path_comes_from_settings(coins, monkeypatch):
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(coins))
    get_settings.cache_clear()
    loader = CryptoLoader()
    assert loader.data_path == coins
    assert "bitcoin_cash" in loader.get_crypto_names()


def test_default_path_without_settings_is_the_bundled_sample():
    loader = CryptoLoader()
    assert loader.data_path == bundled_data_dir()
    report = loader.report()
    assert report.coins and not report.failed


# --- Real-world quirks -----------------------------------------------------------------


def test_mixed_date_formats(tmp_path):
    rows = [
        cmc_row('"Sep 22, 2017"', 6.0),
        cmc_row('"Sep 4, 2017"', 5.0),      # unpadded day
        cmc_row('"July 1, 2017"', 4.0),     # full month name
        cmc_row('"June 4, 2017"', 3.0),
        cmc_row("2017-05-02", 2.0),         # ISO
        cmc_row("2017-05-01T13:45:00", 1.5),  # ISO with a time: normalised to midnight
        cmc_row("42093", 1.0),              # Excel serial, 2015-03-30
    ]
    write_coin(tmp_path, "Mixed", rows)
    frame = CryptoLoader(tmp_path).get_df("mixed")
    assert frame["Date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2015-03-30", "2017-05-01", "2017-05-02", "2017-06-04", "2017-07-01", "2017-09-04", "2017-09-22"]
    assert frame["Close"].tolist() == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_unpadded_day_is_parsed(tmp_path):
    write_coin(tmp_path, "Coin", [cmc_row('"Sep 4, 2017"', 1.0), cmc_row('"Sep 3, 2017"', 1.0)])
    assert CryptoLoader(tmp_path).get_df("coin")["Date"].tolist() == [pd.Timestamp("2017-09-03"),
                                                                    pd.Timestamp("2017-09-04")]


def test_excel_serial_date_is_converted_and_logged(tmp_path, caplog):
    # As in Monero.csv: unquoted serial and unquoted numbers, between CMC rows.
    rows = [cmc_row('"Mar 31, 2015"', 0.907059), "42093,0.718821,0.890235,0.71482,0.853188,108069,4993790",
            cmc_row('"Mar 29, 2015"', 0.712153)]
    write_coin(tmp_path, "Monero", rows)
    caplog.set_level(logging.INFO, logger=LOGGER)
    frame = CryptoLoader(tmp_path).get_df("monero")
    row = frame[frame["Date"] == pd.Timestamp("2015-03-30")]
    assert row["Close"].tolist() == [0.853188] and row["Volume"].tolist() == [108069.0]
    assert frame["Date"].diff().dropna().dt.days.tolist() == [1, 1]
    assert any("1 Excel serial" in m for m in infos_of(caplog))
    assert not warnings_of(caplog)


def test_thousands_separators_dollars_and_spaces(tmp_path):
    write_coin(tmp_path, "Coin", [cmc_row('"Sep 22, 2017"', '" 3,630.70 "', volume='"$1,194,830,000"',
                                          cap='" 60,152,300,000 "')])
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert frame.loc[0, "Close"] == 3630.7
    assert frame.loc[0, "Volume"] == 1_194_830_000.0
    assert frame.loc[0, "Market Cap"] == 60_152_300_000.0


@pytest.mark.parametrize("marker", ["-", "", "null", "NaN"])
def test_missing_markers_become_nan_and_rows_are_kept(tmp_path, caplog, marker):
    write_coin(tmp_path, "Coin", [cmc_row('"Sep 22, 2017"', 2.0), cmc_row('"Sep 21, 2017"', 1.0, volume=marker,
                                                                          cap=marker)])
    caplog.set_level(logging.INFO, logger=LOGGER)
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert len(frame) == 2
    assert np.isnan(frame.loc[0, "Volume"]) and np.isnan(frame.loc[0, "Market Cap"])
    assert frame.loc[1, "Volume"] == 1_194_830_000.0
    assert any("1 row(s) without Volume" in m for m in infos_of(caplog))
    assert not warnings_of(caplog)


def test_missing_optional_columns_are_nan(tmp_path):
    write_coin(tmp_path, "Coin", ['"Sep 22, 2017",2.5', '"Sep 21, 2017",2.0'], header="date,CLOSE")
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["Close"].tolist() == [2.0, 2.5]
    assert frame[["Open", "High", "Low", "Volume", "Market Cap"]].isna().all().all()


def test_non_numeric_optional_value_is_kept_as_missing_with_warning(tmp_path, caplog):
    write_coin(tmp_path, "Coin", [cmc_row('"Sep 22, 2017"', 2.0, volume="lots")])
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert len(frame) == 1 and np.isnan(frame.loc[0, "Volume"])
    assert any("non-numeric Volume" in m for m in warnings_of(caplog))


@pytest.mark.parametrize("newest_first", [True, False])
def test_either_monotonic_order_is_normal(tmp_path, caplog, newest_first):
    rows = daily_rows(10)
    write_coin(tmp_path, "Coin", rows if newest_first else rows[::-1])
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert frame["Date"].is_monotonic_increasing and frame["Close"].iloc[0] == 100.0
    assert not warnings_of(caplog)


def test_gaps_are_counted_not_filled(tmp_path, caplog):
    days = ["2017-09-22", "2017-09-21", "2017-09-18", "2017-09-17", "2017-09-10"]
    write_coin(tmp_path, "Gappy", [cmc_row(cmc_date(pd.Timestamp(d)), float(i + 1)) for i, d in enumerate(days)])
    caplog.set_level(logging.INFO, logger=LOGGER)
    loader = CryptoLoader(tmp_path)
    frame = loader.get_df("gappy")
    assert frame["Date"].dt.strftime("%Y-%m-%d").tolist() == days[::-1]  # not filled, not shifted
    assert frame["Close"].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]
    coin = loader.report().coins[0]
    # Two intervals (17th -> 10th, 21st -> 18th) with 6 + 2 missing days.
    assert (coin.gaps, coin.missing_days, coin.rows, coin.dropped_rows) == (2, 8, 5, 0)
    assert any("2 gap(s)" in m and "8 missing day(s)" in m for m in infos_of(caplog))
    assert not warnings_of(caplog)


def test_tiny_prices_are_preserved_exactly(tmp_path):
    write_coin(tmp_path, "Sprouts", [cmc_row('"Sep 22, 2017"', "3.2e-08"), cmc_row('"Sep 21, 2017"', "0.000000032"),
                                     cmc_row('"Sep 20, 2017"', "4.1E-9")])
    prices = CryptoLoader(tmp_path).get_prices("sprouts")
    assert prices.tolist() == [4.1e-09, 3.2e-08, 3.2e-08]
    assert (prices > 0).all()


def test_summary_file_is_skipped(coins, caplog):
    (coins / "100 List.csv").write_text(
        '#,Name,Market Cap,Price,Circulating Supply,Volume (24h),% Change (24h)\r\n'
        '1,Bitcoin,"$60,219,183,594","$3,631.72","16,581,450 BTC","$1,226,800,000",-0.84%\r\n')
    caplog.set_level(logging.INFO, logger=LOGGER)
    loader = CryptoLoader(coins)
    assert "100_list" not in loader.get_crypto_names()
    report = loader.report()
    assert ("100 List.csv", "summary file, not a coin") in report.skipped
    assert not report.failed
    assert any("100 List.csv" in m and "summary" in m for m in infos_of(caplog))
    with pytest.raises(UnknownCoinError, match="summary file"):
        loader.get_df("100 List")


def test_byte_identical_files_are_reported(coins, caplog):
    write_coin(coins, "Nexus", daily_rows(12, start_price=2.0))
    write_coin(coins, "Siacoin", daily_rows(12, start_price=2.0))
    loader = CryptoLoader(coins)
    report = loader.report()
    assert report.duplicates == [["nexus", "siacoin"]]
    message = "nexus and siacoin have byte-identical files; one is probably mislabelled"
    assert message in warnings_of(caplog)
    for name in ("nexus", "siacoin"):
        coin = next(c for c in report.coins if c.name == name)
        assert coin.ok and message in coin.warnings
    pd.testing.assert_frame_equal(loader.get_df("nexus"), loader.get_df("siacoin"))
    loader.report()
    assert warnings_of(caplog).count(message) == 1  # computed and logged once per loader


# --- Bad inputs ------------------------------------------------------------------------


def load_error(folder: Path, name: str) -> str:
    with pytest.raises(DataFormatError) as info:
        CryptoLoader(folder).get_df(name)
    return str(info.value)


def test_empty_file(tmp_path):
    (tmp_path / "Empty.csv").write_bytes(b"")
    assert "Empty.csv has no data rows" in load_error(tmp_path, "empty")


def test_header_only_file(tmp_path):
    write_coin(tmp_path, "Header", [])
    assert "Header.csv has no data rows" in load_error(tmp_path, "header")


@pytest.mark.parametrize("junk", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xfe\xfaDate,Close\n\xc3\x28,1\n",
                                  "Date,Close\n".encode("utf-16")])
def test_binary_junk(tmp_path, junk):
    (tmp_path / "Junk.csv").write_bytes(junk)
    assert "Junk.csv is not a text CSV file" in load_error(tmp_path, "junk")


def test_wrong_columns_lists_missing_and_expected(tmp_path):
    write_coin(tmp_path, "Wrong", ["2017-09-22,1.0"], header="Day,Price")
    message = load_error(tmp_path, "wrong")
    assert "Wrong.csv lacks the column(s) Date, Close" in message
    assert "Day, Price" in message and "Date, Open, High, Low, Close, Volume, Market Cap" in message


@pytest.mark.parametrize("wide_row", [0, 2])
def test_rows_wider_than_the_header_are_a_format_error(tmp_path, wide_row):
    # pandas would otherwise shift the columns (first column as index) or drop the extra fields.
    rows = daily_rows(3)
    rows[wide_row] += ",extra"
    write_coin(tmp_path, "Ragged", rows)
    assert "Ragged.csv cannot be parsed as CSV" in load_error(tmp_path, "ragged")


def test_short_rows_lose_only_their_own_values(tmp_path, caplog):
    write_coin(tmp_path, "Short", [*daily_rows(3), '"Sep 1, 2017",1,1,1'])
    frame = CryptoLoader(tmp_path).get_df("short")
    assert frame["Close"].tolist() == [100.0, 101.0, 102.0]
    assert any("missing or non-numeric Close" in m for m in warnings_of(caplog))


def test_zero_and_negative_prices_are_dropped(tmp_path, caplog):
    rows = daily_rows(5)
    rows[1] = cmc_row('"Sep 21, 2017"', 0)
    rows[3] = cmc_row('"Sep 19, 2017"', -2.5)
    write_coin(tmp_path, "Coin", rows)
    loader = CryptoLoader(tmp_path)
    frame = loader.get_df("coin")
    assert len(frame) == 3 and (frame["Close"] > 0).all()
    assert any("dropped 2 row(s) with Close <= 0" in m and "Coin.csv" in m for m in warnings_of(caplog))
    coin = loader.report().coins[0]
    assert coin.dropped_rows == 2 and any("Close <= 0" in w for w in coin.warnings)


def test_only_bad_prices_is_a_format_error(tmp_path):
    write_coin(tmp_path, "Dead", [cmc_row('"Sep 22, 2017"', 0), cmc_row('"Sep 21, 2017"', "-")])
    assert "Dead.csv has no valid rows" in load_error(tmp_path, "dead")


def test_bad_dates_and_closes_are_dropped_with_examples(tmp_path, caplog):
    rows = [*daily_rows(4), cmc_row('"Feb 30, 2017"', 1.0), cmc_row('"soon"', 1.0), cmc_row('"Sep 1, 2017"', "n/a"),
            cmc_row('"Sep 2, 2017"', "abc")]
    write_coin(tmp_path, "Coin", rows)
    loader = CryptoLoader(tmp_path)
    assert len(loader.get_df("coin")) == 4
    messages = warnings_of(caplog)
    assert any("dropped 2 row(s) with an unparseable Date" in m and "'Feb 30, 2017'" in m and "'soon'" in m
               for m in messages)
    assert any("dropped 2 row(s) with a missing or non-numeric Close" in m and "'abc'" in m for m in messages)
    assert loader.report().coins[0].dropped_rows == 4


def test_exact_duplicate_rows_keep_one(tmp_path, caplog):
    rows = daily_rows(5)
    write_coin(tmp_path, "Coin", [rows[0], *rows, rows[2]])
    loader = CryptoLoader(tmp_path)
    frame = loader.get_df("coin")
    assert len(frame) == 5 and frame["Date"].is_unique
    assert any("dropped 2 exact duplicate row(s)" in m and "Coin.csv" in m for m in warnings_of(caplog))
    assert loader.report().coins[0].dropped_rows == 2


def test_same_date_different_close_is_a_format_error(tmp_path):
    rows = daily_rows(5)
    write_coin(tmp_path, "Coin", [*rows, cmc_row('"Sep 20, 2017"', 999.0)])
    message = load_error(tmp_path, "coin")
    assert "Coin.csv" in message and "conflicting Close" in message and "2017-09-20" in message


def test_same_date_and_close_with_other_differences_keeps_first(tmp_path, caplog):
    rows = daily_rows(3)
    write_coin(tmp_path, "Coin", [*rows, cmc_row('"Sep 22, 2017"', 102.0, volume="-")])
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert len(frame) == 3 and frame["Volume"].iloc[-1] == 1_194_830_000.0
    assert any("repeat a date and Close" in m for m in warnings_of(caplog))


def test_shuffled_rows_are_sorted_with_warning(tmp_path, caplog):
    rows = daily_rows(10)
    shuffled = [rows[i] for i in (3, 0, 7, 1, 9, 2, 5, 4, 8, 6)]
    write_coin(tmp_path, "Coin", shuffled)
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert frame["Close"].tolist() == [100.0 + i for i in range(10)]
    assert any("out of order" in m and "Coin.csv" in m for m in warnings_of(caplog))


def test_bom_and_crlf(tmp_path, caplog):
    write_coin(tmp_path, "Bom", daily_rows(3), bom=True, newline="\r\n")
    write_coin(tmp_path, "Crlf", daily_rows(3), newline="\r\n")
    loader = CryptoLoader(tmp_path)
    for name in ("bom", "crlf"):
        frame = loader.get_df(name)
        assert list(frame.columns) == list(COLUMNS) and frame["Close"].tolist() == [100.0, 101.0, 102.0]
    assert not warnings_of(caplog)


def test_non_ascii_coin_names(tmp_path):
    write_coin(tmp_path, "Déjà Coin", daily_rows(3))
    loader = CryptoLoader(tmp_path)
    assert loader.get_crypto_names() == ["déjà_coin"]
    pd.testing.assert_frame_equal(loader.get_df("Déjà Coin"), loader.get_df("déjà_coin"))


def test_non_csv_files_are_skipped(coins, caplog):
    (coins / "README.md").write_text("# notes\n")
    (coins / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (coins / "prices.xlsx").write_bytes(b"PK\x03\x04")
    (coins / "~$Bitcoin.csv").write_bytes(b"\x00lock")
    (coins / "archive").mkdir()
    caplog.set_level(logging.INFO, logger=LOGGER)
    loader = CryptoLoader(coins)
    assert loader.get_crypto_names() == ["bitcoin", "bitcoin_cash", "i-o_coin"]
    report = loader.report()
    assert dict(report.skipped) == {
        ".DS_Store": "hidden file",
        "README.md": "not a .csv file",
        "archive": "a folder or special file, not a coin file",
        "prices.xlsx": "not a .csv file",
        "~$Bitcoin.csv": "editor lock file",
    }
    assert not report.failed
    assert sum("skipped" in m for m in infos_of(caplog)) == 5


def test_two_files_with_one_name_are_ambiguous(coins):
    write_coin(coins, "bitcoin_cash", daily_rows(5))
    loader = CryptoLoader(coins)
    assert loader.get_crypto_names().count("bitcoin_cash") == 1
    message = load_error(coins, "Bitcoin Cash")
    assert "ambiguous" in message and "Bitcoin Cash.csv" in message and "bitcoin_cash.csv" in message
    failed = loader.report().failed
    assert sorted(Path(c.source).name for c in failed) == ["Bitcoin Cash.csv", "bitcoin_cash.csv"]
    assert {c.error_type for c in failed} == {"DataFormatError"}


def test_mixed_folder_good_coins_load_and_each_broken_one_is_reported(coins):
    (coins / "Empty.csv").write_bytes(b"")
    write_coin(coins, "Header Only", [])
    (coins / "Junk.csv").write_bytes(b"\x00\x01\x02\x03binary")
    write_coin(coins, "Wrong", ["1,2"], header="Day,Price")
    write_coin(coins, "Zero", [cmc_row('"Sep 22, 2017"', 0)])
    write_coin(coins, "Conflict", [cmc_row('"Sep 22, 2017"', 1.0), cmc_row('"Sep 22, 2017"', 2.0)])
    (coins / "README.md").write_text("notes")
    loader = CryptoLoader(coins)
    broken = {"empty", "header_only", "junk", "wrong", "zero", "conflict"}
    assert broken <= set(loader.get_crypto_names())  # listed, so a batch can report them
    report = loader.report()
    reasons = {c.name: c.error for c in report.failed}
    assert set(reasons) == broken
    assert "has no data rows" in reasons["empty"] and "has no data rows" in reasons["header_only"]
    assert "not a text CSV" in reasons["junk"] and "lacks the column(s)" in reasons["wrong"]
    assert "no valid rows" in reasons["zero"] and "conflicting Close" in reasons["conflict"]
    assert all(c.error_type == "DataFormatError" and c.rows == 0 for c in report.failed)
    ok = {c.name for c in report.coins if c.ok}
    assert ok == {"bitcoin", "bitcoin_cash", "i-o_coin"}
    for name in ok:
        assert len(loader.get_df(name)) > 0
    with pytest.raises(DataFormatError, match="Junk.csv"):
        loader.get_df("junk")  # the cached failure raises again


def test_report_is_json_friendly(coins):
    report = CryptoLoader(coins).report()
    assert isinstance(report, DataReport) and all(isinstance(c, CoinReport) for c in report.coins)
    document = json.loads(json.dumps(dataclasses.asdict(report)))
    assert document["path"] == str(coins)
    assert [c["name"] for c in document["coins"]] == ["bitcoin", "bitcoin_cash", "i-o_coin"]
    assert document["coins"][0]["first_date"] == "2017-08-24"


# --- Unknown coins ---------------------------------------------------------------------


def test_unknown_coin_suggests_close_matches(coins):
    loader = CryptoLoader(coins)
    with pytest.raises(UnknownCoinError) as info:
        loader.get_df("bitcon")
    assert isinstance(info.value, KeyError) and isinstance(info.value, CryptoMLError)
    message = str(info.value)
    assert message.startswith("unknown coin 'bitcon'; did you mean: bitcoin")
    assert "bitcoin_cash" in message and "Run `crypto-ml data list` to see all coins." in message


def test_unknown_coin_without_close_match(coins):
    with pytest.raises(UnknownCoinError, match="unknown coin 'zzz'.*crypto-ml data list"):
        CryptoLoader(coins).get_prices("zzz")


# --- Long format -----------------------------------------------------------------------


def long_frame() -> pd.DataFrame:
    days = pd.date_range(end="2017-09-22", periods=6, freq="D")
    return pd.DataFrame({
        "symbol": ["Bitcoin Cash"] * 6 + ["ETH"] * 4,
        "date": [d.strftime("%Y-%m-%d") for d in days] + [d.strftime("%Y-%m-%d") for d in days[2:]],
        "close": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 1.0, 2.0, 3.0, 4.0],
        "volume": [100.0] * 10,
    })


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
    with pytest.raises(DataFormatError, match="lacks the column.*symbol"):
        CryptoLoader(path).get_crypto_names()


def test_long_format_corrupt_parquet(tmp_path):
    path = tmp_path / "coins.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match="coins.parquet is not a readable Parquet file"):
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


def iso_days(n: int, end: str = "2017-09-22") -> list[str]:
    return [day.strftime("%Y-%m-%d") for day in pd.date_range(end=end, periods=n, freq="D")]


def quirky_long_frame() -> pd.DataFrame:
    """Clean coins in every shape the fast path takes, and coins with each quirk the cleaning handles."""
    rows: list[tuple] = []

    def coin(symbol: str, dates: list, closes: list, volume: object = 100.0) -> None:
        rows.extend((symbol, day, float(close), volume) for day, close in zip(dates, closes))

    # Clean: nothing to drop, sort or warn about.
    coin("Rising", iso_days(6), [1, 2, 3, 4, 5, 6])
    coin("Falling", iso_days(5)[::-1], [5, 4, 3, 2, 1])  # newest first, as CoinMarketCap exports
    coin("Gappy", ["2017-09-01", "2017-09-03", "2017-09-10", "2017-09-11"], [1, 2, 3, 4])
    coin("No Volume", iso_days(4), [1, 2, 3, 4], volume=np.nan)
    coin("Month Names", ["Sep 20, 2017", "Sep 21, 2017", "Sep 22, 2017"], [1, 2, 3])
    coin("Single", ["2017-09-22"], [7])
    # Quirks: each sends its coin through the per-coin cleaning.
    coin("Bad Date", [*iso_days(3), "2017-02-30", "soon"], [1, 2, 3, 4, 5])
    coin("Bad Close", iso_days(5), [1, 0, 3, -1, np.nan])
    coin("Duplicate", [*iso_days(3), iso_days(3)[1]], [1, 2, 3, 2])
    coin("Shuffled", [iso_days(4)[i] for i in (2, 0, 3, 1)], [3, 1, 4, 2])
    coin("Conflict", [*iso_days(3), iso_days(3)[0]], [1, 2, 3, 9])
    coin("Excel", ["42093", "2015-03-31"], [1, 2])
    coin("Junk Volume", iso_days(3), [1, 2, 3], volume=np.inf)
    coin("Only Bad", ["2017-09-21", "2017-09-22"], [0, -2])
    # Two clean coins whose rows alternate, so each is many runs of one row; A is spelt two ways.
    for i, day in enumerate(iso_days(4)):
        coin("Interleaved A" if i % 2 else " interleaved  a", [day], [i + 1])
        coin("Interleaved B", [day], [i + 20])
    rows.append(("", "2017-09-22", 1.0, 1.0))  # no symbol
    return pd.DataFrame(rows, columns=["symbol", "date", "close", "volume"])


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
    logs = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    return loader, frames, report, logs


@pytest.mark.parametrize("bounds", [{}, {"from_date": "2017-09-19", "to_date": "2017-09-21"}, {"max_points": 2},
                                    {"from_date": "1600-01-01", "to_date": "2300-01-01"}])
def test_long_format_fast_path_matches_the_per_coin_path(quirky_long, monkeypatch, caplog, bounds):
    caplog.set_level(logging.INFO, logger=LOGGER)
    fast, fast_frames, fast_report, fast_logs = load_everything(quirky_long, caplog, **bounds)
    table = fast._table
    assert {name for name, clean in zip(table.names, table.clean) if clean} == {
        "rising", "falling", "gappy", "no_volume", "month_names", "single", "interleaved_a", "interleaved_b"}

    # The path every coin took before: flag an Excel date on every row for the grouping
    # step only, so that no coin counts as clean and each one goes through the cleaning.
    group = data_loader._group_coins
    monkeypatch.setattr(data_loader, "_group_coins", lambda ids, count, converted: group(
        ids, count, {**converted, "_excel": np.ones(len(ids), dtype=bool)}))
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


def test_iso_fast_path_agrees_with_the_multi_format_parser():
    texts = ["2017-09-22", "2016-02-29", "2000-02-29", "2017-02-29", "1900-02-29", "2017-02-30", "2017-13-01",
             "2017-00-10", "2017-01-00", "2017-9-1", "02017-9-01", "+017-09-01", " 2017-09-22", "2017-09-22 ",
             "2017-09-22T05:00:00", "2017-09-22T23:00:00-05:00", "0000-01-01", "1600-01-01", "1677-09-22",
             "1678-01-01", "2262-01-01", "2262-01-02", "2262-04-11", "9999-12-31", "١٢٣٤-٠٩-٠١", "2017/09/22",
             "Sep 22, 2017", "June 4, 2017", "42093", "2017", "", "-", None]
    values = pd.Series(texts, dtype="str")
    expected_dates, expected_excel = data_loader._parse_date_strings(values)
    assert expected_excel.any() and np.isnat(expected_dates).any() and not np.isnat(expected_dates).all()
    for given in (values, pa.chunked_array([pa.array(texts[:7], pa.large_string()), pa.array(texts[7:], pa.large_string())]),
                  pa.array(["x", *texts]).slice(1)):
        dates, excel = data_loader._parse_dates(given)
        np.testing.assert_array_equal(dates, expected_dates)
        np.testing.assert_array_equal(excel, expected_excel)


def test_long_format_parses_each_non_iso_date_once_and_iso_dates_never(tmp_path, monkeypatch):
    frame = pd.DataFrame({
        "symbol": ["A"] * 6 + ["B"] * 6,
        "date": [*iso_days(4), "Sep 23, 2017", " 2017-09-24 "] * 2,
        "close": np.arange(1.0, 13.0),
    })
    path = tmp_path / "long.parquet"
    frame.to_parquet(path)
    seen: list[str] = []
    parse = data_loader._parse_date_strings
    monkeypatch.setattr(data_loader, "_parse_date_strings", lambda raw: (seen.extend(raw.tolist()), parse(raw))[1])
    dates = CryptoLoader(path).get_df("b")["Date"].dt.strftime("%Y-%m-%d").tolist()
    assert dates == [*iso_days(4), "2017-09-23", "2017-09-24"]
    assert sorted(seen) == [" 2017-09-24 ", "Sep 23, 2017"]


@pytest.mark.parametrize("kind", ["date", "timestamp", "aware timestamp"])
def test_long_parquet_native_dates_are_not_parsed_as_text(tmp_path, monkeypatch, kind):
    frame = long_frame().rename(columns={"volume": "market_cap"})
    frame.iloc[6:].to_parquet(tmp_path / "text.parquet")  # ETH alone, dates as text
    expected = CryptoLoader(tmp_path / "text.parquet").get_df("eth")
    stamps = pd.to_datetime(frame["date"])
    if kind == "date":
        frame["date"] = stamps.dt.date  # Parquet date32
    elif kind == "timestamp":
        frame["date"] = stamps
    else:  # the same instants, seen from New York: the UTC day is kept
        frame["date"] = stamps.dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    frame.iloc[::-1].to_parquet(tmp_path / "native.parquet")

    def text_parser(*args, **kwargs):
        raise AssertionError("a native date column went through string parsing")

    monkeypatch.setattr(data_loader, "_parse_text_dates", text_parser)
    loader = CryptoLoader(tmp_path / "native.parquet")
    pd.testing.assert_frame_equal(loader.get_df("eth"), expected)
    assert loader.get_crypto_names() == ["bitcoin_cash", "eth"] and loader._table.clean.all()


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
    for name, message in [("no_symbol.parquet", "lacks the column.*symbol"),
                          ("symbol_index.parquet", "lacks the column.*symbol"),
                          ("header_only.parquet", "header_only.parquet has no data rows"),
                          ("ragged.csv", "ragged.csv cannot be parsed as CSV"),
                          ("header_only.csv", "header_only.csv has no data rows")]:
        with pytest.raises(DataFormatError, match=message):
            CryptoLoader(tmp_path / name).get_crypto_names()


def test_long_csv_names_agree_with_the_full_read_where_pyarrow_and_pandas_differ(tmp_path):
    # pandas (skipinitialspace) unquotes ` "Bitcoin, Cash"`; pyarrow alone would not.
    path = tmp_path / "long.csv"
    path.write_text('symbol, date, close\n "Bitcoin, Cash", 2017-09-22, 1\nETH, 2017-09-22, 2\n')
    assert CryptoLoader(path).get_crypto_names() == ["bitcoin,_cash", "eth"]
    assert CryptoLoader(path)._long_table().names == ["bitcoin,_cash", "eth"]


# --- Data hash -------------------------------------------------------------------------


def test_data_hash_tracks_coin_files_only(coins):
    first = CryptoLoader(coins).data_hash()
    assert len(first) == 64 and first == CryptoLoader(coins).data_hash()
    (coins / "README.md").write_text("notes")
    (coins / "100 List.csv").write_text("#,Name,Market Cap,Price\n1,Bitcoin,1,1\n")
    assert CryptoLoader(coins).data_hash() == first
    (coins / "I-O Coin.csv").rename(coins / "IO Coin.csv")
    renamed = CryptoLoader(coins).data_hash()
    assert renamed != first
    with open(coins / "Bitcoin.csv", "a") as handle:
        handle.write(cmc_row('"Jan 1, 2017"', 1.0) + "\n")
    assert CryptoLoader(coins).data_hash() not in (first, renamed)


def test_data_hash_of_long_file(tmp_path):
    path = tmp_path / "coins.parquet"
    long_frame().to_parquet(path)
    digest = CryptoLoader(path).data_hash()
    assert len(digest) == 64 and digest == CryptoLoader(path).data_hash()


# --- The real dataset ------------------------------------------------------------------

@pytest.fixture(scope="module")
def top100_loader(real_data_dir) -> CryptoLoader:
    return CryptoLoader(real_data_dir)


@pytest.fixture(scope="module")
def top100_report(top100_loader) -> DataReport:
    return top100_loader.report()


def coin(report: DataReport, name: str) -> CoinReport:
    return next(c for c in report.coins if c.name == name)


@pytest.mark.realdata
def test_real_every_row_of_every_coin_loads(top100_report):
    assert len(top100_report.coins) == 100
    assert not top100_report.failed
    assert sum(c.rows for c in top100_report.coins) == 80_553
    assert all(c.dropped_rows == 0 for c in top100_report.coins)
    assert np.median([c.rows for c in top100_report.coins]) == 954
    last_dates = pd.Series([c.last_date for c in top100_report.coins]).value_counts().to_dict()
    assert last_dates == {"2017-09-22": 93, "2017-09-23": 7}


@pytest.mark.realdata
def test_real_names(top100_loader):
    names = top100_loader.get_crypto_names()
    assert len(names) == 100 and names == sorted(names)
    assert {"bitcoin_cash", "i-o_coin", "the_champcoin", "bitcoin"} <= set(names)
    assert "100_list" not in names and "readme" not in names


@pytest.mark.realdata
def test_real_bitcoin(top100_loader, top100_report):
    frame = top100_loader.get_df("bitcoin")
    assert len(frame) == 1609 and coin(top100_report, "bitcoin").rows == 1609
    assert frame["Date"].iloc[-1] == pd.Timestamp("2017-09-22")
    assert frame["Close"].iloc[-1] == 3630.7
    assert frame["Volume"].iloc[-1] == 1_194_830_000.0
    assert frame["Date"].is_monotonic_increasing and frame["Date"].is_unique


@pytest.mark.realdata
def test_real_neblio_is_the_shortest(top100_report):
    assert coin(top100_report, "neblio").rows == 11
    assert min(c.rows for c in top100_report.coins) == 11


@pytest.mark.realdata
def test_real_monero_excel_serial(top100_loader):
    frame = top100_loader.get_df("monero")
    row = frame[frame["Date"] == pd.Timestamp("2015-03-30")]
    assert row["Close"].tolist() == [0.853188]
    assert (frame["Date"].diff().dropna() > pd.Timedelta(0)).all()


@pytest.mark.realdata
def test_real_sprouts_tiny_prices(top100_loader):
    prices = top100_loader.get_prices("sprouts")
    assert prices.min() == pytest.approx(3.2e-08, rel=1e-12)
    assert (prices > 0).all()


@pytest.mark.realdata
def test_real_gaps_match_the_readme(top100_report):
    # The README's "Crown has 16 gaps" counts gap intervals; they span 75 missing days.
    crown, gambit = coin(top100_report, "crown"), coin(top100_report, "gambit")
    assert (crown.gaps, crown.missing_days) == (16, 75)
    assert (gambit.gaps, gambit.missing_days) == (15, 25)
    assert sum(c.gaps > 0 for c in top100_report.coins) == 25


@pytest.mark.realdata
def test_real_duplicates_and_skipped(top100_report):
    assert top100_report.duplicates == [["nexus", "siacoin"]]
    assert ("100 List.csv", "summary file, not a coin") in top100_report.skipped
    assert ("README.md", "not a .csv file") in top100_report.skipped


@pytest.mark.realdata
def test_real_dash_full_month_dates(top100_loader, top100_report):
    dates = set(top100_loader.get_df("dash")["Date"])
    assert {pd.Timestamp("2017-06-04"), pd.Timestamp("2017-07-01"), pd.Timestamp("2017-09-04")} <= dates
    assert coin(top100_report, "dash").gaps == 0


@pytest.mark.realdata
def test_real_data_hash_is_stable(real_data_dir, top100_loader):
    assert top100_loader.data_hash() == CryptoLoader(real_data_dir).data_hash()

