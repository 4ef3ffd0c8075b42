"""Helpers shared by the tests of crypto_ml.data (tests/test_data_*.py): CoinMarketCap-style files, long frames."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_ml.data import CryptoLoader
from crypto_ml.exceptions import DataFormatError

#: Every module of crypto_ml.data logs under this logger.
LOGGER = "crypto_ml.data"
HEADER = "Date,Open,High,Low,Close,Volume,Market Cap"


def from_data(record: logging.LogRecord) -> bool:
    """Whether a log record comes from crypto_ml.data or one of its modules."""
    return record.name == LOGGER or record.name.startswith(LOGGER + ".")


# --- CoinMarketCap-style files ---------------------------------------------------------


def cmc_date(day: pd.Timestamp, full_month: bool = False) -> str:
    """A quoted CoinMarketCap date: "Sep 22, 2017" (or "June 4, 2017"), day unpadded below 10."""
    month = day.strftime("%B" if full_month else "%b")
    return f'"{month} {day.day}, {day.year}"'


def cmc_row(
    day: pd.Timestamp | str, close: float | str, volume: str = '"1,194,830,000"', cap: str = '"60,152,300,000"'
) -> str:
    stamp = day if isinstance(day, str) else cmc_date(day)
    return f"{stamp},{close},{close},{close},{close},{volume},{cap}"


def daily_rows(n: int, end: str = "2017-09-22", start_price: float = 100.0) -> list[str]:
    """n consecutive days ending on `end`, newest first (as CMC exports), Close rising by 1 a day."""
    days = pd.date_range(end=end, periods=n, freq="D")
    return [cmc_row(day, start_price + i) for i, day in reversed(list(enumerate(days)))]


def write_coin(
    folder: Path, name: str, rows: list[str], *, header: str = HEADER, newline: str = "\n", bom: bool = False
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = newline.join([header, *rows]) + newline
    path = folder / f"{name}.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def load_error(folder: Path, name: str) -> str:
    with pytest.raises(DataFormatError) as info:
        CryptoLoader(folder).get_df(name)
    return str(info.value)


# --- Logs ------------------------------------------------------------------------------


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if from_data(r) and r.levelno == logging.WARNING]


def infos_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if from_data(r) and r.levelno == logging.INFO]


# --- Long format -----------------------------------------------------------------------


def long_frame() -> pd.DataFrame:
    days = pd.date_range(end="2017-09-22", periods=6, freq="D")
    return pd.DataFrame(
        {
            "symbol": ["Bitcoin Cash"] * 6 + ["ETH"] * 4,
            "date": [d.strftime("%Y-%m-%d") for d in days] + [d.strftime("%Y-%m-%d") for d in days[2:]],
            "close": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 1.0, 2.0, 3.0, 4.0],
            "volume": [100.0] * 10,
        }
    )


def iso_days(n: int, end: str = "2017-09-22") -> list[str]:
    return [day.strftime("%Y-%m-%d") for day in pd.date_range(end=end, periods=n, freq="D")]


def quirky_long_frame() -> pd.DataFrame:
    """Clean coins in every shape the fast path takes, and coins with each quirk the cleaning handles."""
    rows: list[tuple] = []

    def coin(symbol: str, dates: list, closes: list, volume: object = 100.0) -> None:
        rows.extend((symbol, day, float(close), volume) for day, close in zip(dates, closes, strict=True))

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
