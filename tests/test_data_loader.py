"""Tests for crypto_ml.data.loader, the CryptoLoader facade: folders, selection, reports, the real dataset."""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_ml.config import bundled_data_dir, get_settings
from crypto_ml.data import COLUMNS, CoinReport, CryptoLoader, DataReport
from crypto_ml.exceptions import CryptoMLError, DataFormatError, InvalidParameterError, UnknownCoinError

from data_helpers import LOGGER, cmc_row, daily_rows, infos_of, load_error, long_frame, warnings_of, write_coin

# --- Names -----------------------------------------------------------------------------


def test_names_are_sorted_normalised_stems(coins):
    assert CryptoLoader(coins).get_crypto_names() == ["bitcoin", "bitcoin_cash", "i-o_coin"]


def test_non_ascii_coin_names(tmp_path):
    write_coin(tmp_path, "Déjà Coin", daily_rows(3))
    loader = CryptoLoader(tmp_path)
    assert loader.get_crypto_names() == ["déjà_coin"]
    pd.testing.assert_frame_equal(loader.get_df("Déjà Coin"), loader.get_df("déjà_coin"))


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


@pytest.mark.parametrize(
    "bound",
    [
        "2017-09-10",
        date(2017, 9, 10),
        datetime(2017, 9, 10, 15, 30),
        pd.Timestamp("2017-09-10"),
        np.datetime64("2017-09-10"),
    ],
)
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_points": 0},
        {"max_points": -3},
        {"max_points": 2.5},
        {"max_points": True},
        {"max_points": "10"},
        {"from_date": "not a date"},
        {"from_date": "2017-13-01"},
        {"to_date": 20170101},
        {"to_date": [2017]},
        {"from_date": "2017-09-10", "to_date": "2017-09-01"},
    ],
)
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


# --- The files of a folder -------------------------------------------------------------


def test_summary_file_is_skipped(coins, caplog):
    (coins / "100 List.csv").write_text(
        "#,Name,Market Cap,Price,Circulating Supply,Volume (24h),% Change (24h)\r\n"
        '1,Bitcoin,"$60,219,183,594","$3,631.72","16,581,450 BTC","$1,226,800,000",-0.84%\r\n'
    )
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
    with pytest.raises(DataFormatError, match=r"Junk\.csv"):
        loader.get_df("junk")  # the cached failure raises again


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
    with pytest.raises(UnknownCoinError, match=r"unknown coin 'zzz'.*crypto-ml data list"):
        CryptoLoader(coins).get_prices("zzz")


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


# --- The compatibility shim ------------------------------------------------------------


def test_data_loader_shim_still_exports_the_public_names():
    # The 2017 seed's interface: `from crypto_ml.data_loader import CryptoLoader`.
    from crypto_ml import data, data_loader

    assert data_loader.__all__ == data.__all__
    for name in data.__all__:
        assert getattr(data_loader, name) is getattr(data, name)
    assert data_loader.CryptoLoader is CryptoLoader


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
