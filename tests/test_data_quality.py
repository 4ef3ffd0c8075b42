"""Tests for crypto_ml.data.quality: cleaning each coin, and the report."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest

from crypto_ml.data import CoinReport, CryptoLoader, DataReport

from data_helpers import LOGGER, cmc_date, cmc_row, daily_rows, infos_of, load_error, warnings_of, write_coin

# --- Kept with a warning ---------------------------------------------------------------


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


# --- Dropped rows ----------------------------------------------------------------------


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
    rows = [
        *daily_rows(4),
        cmc_row('"Feb 30, 2017"', 1.0),
        cmc_row('"soon"', 1.0),
        cmc_row('"Sep 1, 2017"', "n/a"),
        cmc_row('"Sep 2, 2017"', "abc"),
    ]
    write_coin(tmp_path, "Coin", rows)
    loader = CryptoLoader(tmp_path)
    assert len(loader.get_df("coin")) == 4
    messages = warnings_of(caplog)
    assert any(
        "dropped 2 row(s) with an unparseable Date" in m and "'Feb 30, 2017'" in m and "'soon'" in m for m in messages
    )
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


# --- The report ------------------------------------------------------------------------


def test_report_is_json_friendly(coins):
    report = CryptoLoader(coins).report()
    assert isinstance(report, DataReport) and all(isinstance(c, CoinReport) for c in report.coins)
    document = json.loads(json.dumps(dataclasses.asdict(report)))
    assert document["path"] == str(coins)
    assert [c["name"] for c in document["coins"]] == ["bitcoin", "bitcoin_cash", "i-o_coin"]
    assert document["coins"][0]["first_date"] == "2017-08-24"
