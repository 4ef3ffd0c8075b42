"""Tests for crypto_ml.data.coinmarketcap: reading CoinMarketCap CSV exports and mapping their headers."""

from __future__ import annotations

import pytest

from crypto_ml.data import COLUMNS, CryptoLoader

from data_helpers import daily_rows, load_error, warnings_of, write_coin

# --- Columns ---------------------------------------------------------------------------


def test_missing_optional_columns_are_nan(tmp_path):
    write_coin(tmp_path, "Coin", ['"Sep 22, 2017",2.5', '"Sep 21, 2017",2.0'], header="date,CLOSE")
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["Close"].tolist() == [2.0, 2.5]
    assert frame[["Open", "High", "Low", "Volume", "Market Cap"]].isna().all().all()


def test_wrong_columns_lists_missing_and_expected(tmp_path):
    write_coin(tmp_path, "Wrong", ["2017-09-22,1.0"], header="Day,Price")
    message = load_error(tmp_path, "wrong")
    assert "Wrong.csv lacks the column(s) Date, Close" in message
    assert "Day, Price" in message and "Date, Open, High, Low, Close, Volume, Market Cap" in message


# --- Bad files -------------------------------------------------------------------------


def test_empty_file(tmp_path):
    (tmp_path / "Empty.csv").write_bytes(b"")
    assert "Empty.csv has no data rows" in load_error(tmp_path, "empty")


def test_header_only_file(tmp_path):
    write_coin(tmp_path, "Header", [])
    assert "Header.csv has no data rows" in load_error(tmp_path, "header")


@pytest.mark.parametrize(
    "junk",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xfe\xfaDate,Close\n\xc3\x28,1\n", "Date,Close\n".encode("utf-16")],
)
def test_binary_junk(tmp_path, junk):
    (tmp_path / "Junk.csv").write_bytes(junk)
    assert "Junk.csv is not a text CSV file" in load_error(tmp_path, "junk")


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


def test_bom_and_crlf(tmp_path, caplog):
    write_coin(tmp_path, "Bom", daily_rows(3), bom=True, newline="\r\n")
    write_coin(tmp_path, "Crlf", daily_rows(3), newline="\r\n")
    loader = CryptoLoader(tmp_path)
    for name in ("bom", "crlf"):
        frame = loader.get_df(name)
        assert list(frame.columns) == list(COLUMNS) and frame["Close"].tolist() == [100.0, 101.0, 102.0]
    assert not warnings_of(caplog)
