"""Tests for crypto_ml.data.parsing: dates and numbers as real exports write them."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from crypto_ml.data import CryptoLoader, parsing

from data_helpers import LOGGER, cmc_row, infos_of, iso_days, long_frame, warnings_of, write_coin

# --- Dates -----------------------------------------------------------------------------


def test_mixed_date_formats(tmp_path):
    rows = [
        cmc_row('"Sep 22, 2017"', 6.0),
        cmc_row('"Sep 4, 2017"', 5.0),  # unpadded day
        cmc_row('"July 1, 2017"', 4.0),  # full month name
        cmc_row('"June 4, 2017"', 3.0),
        cmc_row("2017-05-02", 2.0),  # ISO
        cmc_row("2017-05-01T13:45:00", 1.5),  # ISO with a time: normalised to midnight
        cmc_row("42093", 1.0),  # Excel serial, 2015-03-30
    ]
    write_coin(tmp_path, "Mixed", rows)
    frame = CryptoLoader(tmp_path).get_df("mixed")
    assert frame["Date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2015-03-30",
        "2017-05-01",
        "2017-05-02",
        "2017-06-04",
        "2017-07-01",
        "2017-09-04",
        "2017-09-22",
    ]
    assert frame["Close"].tolist() == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_unpadded_day_is_parsed(tmp_path):
    write_coin(tmp_path, "Coin", [cmc_row('"Sep 4, 2017"', 1.0), cmc_row('"Sep 3, 2017"', 1.0)])
    assert CryptoLoader(tmp_path).get_df("coin")["Date"].tolist() == [
        pd.Timestamp("2017-09-03"),
        pd.Timestamp("2017-09-04"),
    ]


def test_excel_serial_date_is_converted_and_logged(tmp_path, caplog):
    # As in Monero.csv: unquoted serial and unquoted numbers, between CMC rows.
    rows = [
        cmc_row('"Mar 31, 2015"', 0.907059),
        "42093,0.718821,0.890235,0.71482,0.853188,108069,4993790",
        cmc_row('"Mar 29, 2015"', 0.712153),
    ]
    write_coin(tmp_path, "Monero", rows)
    caplog.set_level(logging.INFO, logger=LOGGER)
    frame = CryptoLoader(tmp_path).get_df("monero")
    row = frame[frame["Date"] == pd.Timestamp("2015-03-30")]
    assert row["Close"].tolist() == [0.853188] and row["Volume"].tolist() == [108069.0]
    assert frame["Date"].diff().dropna().dt.days.tolist() == [1, 1]
    assert any("1 Excel serial" in m for m in infos_of(caplog))
    assert not warnings_of(caplog)


# --- Numbers ---------------------------------------------------------------------------


def test_thousands_separators_dollars_and_spaces(tmp_path):
    write_coin(
        tmp_path,
        "Coin",
        [cmc_row('"Sep 22, 2017"', '" 3,630.70 "', volume='"$1,194,830,000"', cap='" 60,152,300,000 "')],
    )
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert frame.loc[0, "Close"] == 3630.7
    assert frame.loc[0, "Volume"] == 1_194_830_000.0
    assert frame.loc[0, "Market Cap"] == 60_152_300_000.0


@pytest.mark.parametrize("marker", ["-", "", "null", "NaN"])
def test_missing_markers_become_nan_and_rows_are_kept(tmp_path, caplog, marker):
    write_coin(
        tmp_path, "Coin", [cmc_row('"Sep 22, 2017"', 2.0), cmc_row('"Sep 21, 2017"', 1.0, volume=marker, cap=marker)]
    )
    caplog.set_level(logging.INFO, logger=LOGGER)
    frame = CryptoLoader(tmp_path).get_df("coin")
    assert len(frame) == 2
    assert np.isnan(frame.loc[0, "Volume"]) and np.isnan(frame.loc[0, "Market Cap"])
    assert frame.loc[1, "Volume"] == 1_194_830_000.0
    assert any("1 row(s) without Volume" in m for m in infos_of(caplog))
    assert not warnings_of(caplog)


def test_tiny_prices_are_preserved_exactly(tmp_path):
    write_coin(
        tmp_path,
        "Sprouts",
        [
            cmc_row('"Sep 22, 2017"', "3.2e-08"),
            cmc_row('"Sep 21, 2017"', "0.000000032"),
            cmc_row('"Sep 20, 2017"', "4.1E-9"),
        ],
    )
    prices = CryptoLoader(tmp_path).get_prices("sprouts")
    assert prices.tolist() == [4.1e-09, 3.2e-08, 3.2e-08]
    assert (prices > 0).all()


# --- Date fast paths -------------------------------------------------------------------


def test_iso_fast_path_agrees_with_the_multi_format_parser():
    texts = [
        "2017-09-22",
        "2016-02-29",
        "2000-02-29",
        "2017-02-29",
        "1900-02-29",
        "2017-02-30",
        "2017-13-01",
        "2017-00-10",
        "2017-01-00",
        "2017-9-1",
        "02017-9-01",
        "+017-09-01",
        " 2017-09-22",
        "2017-09-22 ",
        "2017-09-22T05:00:00",
        "2017-09-22T23:00:00-05:00",
        "0000-01-01",
        "1600-01-01",
        "1677-09-22",
        "1678-01-01",
        "2262-01-01",
        "2262-01-02",
        "2262-04-11",
        "9999-12-31",
        "١٢٣٤-٠٩-٠١",  # noqa: RUF001 - Arabic-Indic digits, on purpose
        "2017/09/22",
        "Sep 22, 2017",
        "June 4, 2017",
        "42093",
        "2017",
        "",
        "-",
        None,
    ]
    values = pd.Series(texts, dtype="str")
    expected_dates, expected_excel = parsing._parse_date_strings(values)
    assert expected_excel.any() and np.isnat(expected_dates).any() and not np.isnat(expected_dates).all()
    for given in (
        values,
        pa.chunked_array([pa.array(texts[:7], pa.large_string()), pa.array(texts[7:], pa.large_string())]),
        pa.array(["x", *texts]).slice(1),
    ):
        dates, excel = parsing._parse_dates(given)
        np.testing.assert_array_equal(dates, expected_dates)
        np.testing.assert_array_equal(excel, expected_excel)


def test_long_format_parses_each_non_iso_date_once_and_iso_dates_never(tmp_path, monkeypatch):
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 6 + ["B"] * 6,
            "date": [*iso_days(4), "Sep 23, 2017", " 2017-09-24 "] * 2,
            "close": np.arange(1.0, 13.0),
        }
    )
    path = tmp_path / "long.parquet"
    frame.to_parquet(path)
    seen: list[str] = []
    parse = parsing._parse_date_strings
    monkeypatch.setattr(parsing, "_parse_date_strings", lambda raw: (seen.extend(raw.tolist()), parse(raw))[1])
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

    monkeypatch.setattr(parsing, "_parse_text_dates", text_parser)
    loader = CryptoLoader(tmp_path / "native.parquet")
    pd.testing.assert_frame_equal(loader.get_df("eth"), expected)
    assert loader.get_crypto_names() == ["bitcoin_cash", "eth"] and loader._table.clean.all()
