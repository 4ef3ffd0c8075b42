"""The :class:`CryptoLoader` facade: one dataset, folder or long-format file, each coin parsed once.

It finds the coins, caches each one's parsed rows (or its failure), applies
the date bounds and point limit, and builds the quality report; reading,
parsing and cleaning live in the sibling modules.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import logging
import os
from datetime import date, datetime
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..exceptions import DataFormatError, InvalidParameterError, UnknownCoinError
from .coinmarketcap import _decompress, _load_coin_file
from .long_table import (
    _arrow_long_table,
    _csv_symbols,
    _LongTable,
    _parquet_column,
    _parquet_layout,
    _read_long_table,
    _read_parquet,
    _release_arrow_memory,
    _Span,
    _symbol_ids,
)
from .quality import CoinReport, DataReport, _clean, _Failure, _gap_stats, _Parsed
from .schema import COLUMNS, LONG_SUFFIXES, _header_key, normalize_name
from .store import PriceStore, is_price_store

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

# The header of any CSV fits in this many bytes; enough to tell a summary file from a coin.
_HEADER_PEEK_BYTES = 4096


def _date_bound(value: object, argument: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            try:
                stamp = pd.to_datetime(value.strip(), format="ISO8601")
            except pd.errors.OutOfBoundsDatetime:
                # pandas 2 parses strings at ns resolution (1677..2262); a bound such as
                # 1600-01-01 still means "from the start", so keep it at a coarser unit.
                stamp = pd.Timestamp(datetime.fromisoformat(value.strip()))
        elif isinstance(value, (date, datetime, pd.Timestamp, np.datetime64)):
            stamp = pd.Timestamp(value)
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterError(
            f"{argument}={value!r} is not a date; give an ISO date such as 2017-01-31, or a date/datetime"
        ) from None
    if pd.isna(stamp):
        raise InvalidParameterError(f"{argument}={value!r} is not a date; give an ISO date such as 2017-01-31")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    # Bounds are whole days, inclusive: every row is a midnight.
    return stamp.normalize()


def _ns_day(stamp: pd.Timestamp) -> np.datetime64:
    """A date bound as datetime64[ns], for searching a coin's dates.

    Loaded dates lie in 1678-01-01 .. 2262-01-01 (see :func:`_to_ns_midnight`),
    so a bound beyond that range is clamped just outside it rather than
    overflowing the ns unit; comparisons with the data come out the same.
    """
    day = stamp.to_datetime64().astype("datetime64[D]")
    day = min(max(day, np.datetime64("1677-12-31")), np.datetime64("2262-01-02"))
    return day.astype("datetime64[ns]")


def check_selection(
    max_points: object, from_date: object, to_date: object
) -> tuple[int | None, pd.Timestamp | None, pd.Timestamp | None]:
    """A selection (``max_points``, ``from_date``, ``to_date``) checked and normalised, as every loader keeps it.

    Raises:
        InvalidParameterError: ``max_points`` < 1 or not an integer, a bad date, or ``from_date`` after ``to_date``.
    """
    if max_points is not None and (
        isinstance(max_points, bool) or not isinstance(max_points, Integral) or max_points < 1
    ):
        raise InvalidParameterError(f"max_points={max_points!r} must be an integer >= 1 (or None for all rows)")
    low, high = _date_bound(from_date, "from_date"), _date_bound(to_date, "to_date")
    if low is not None and high is not None and low > high:
        raise InvalidParameterError(f"from_date {low.date()} is after to_date {high.date()}")
    return (None if max_points is None else int(max_points)), low, high


def selected_rows(
    dates: np.ndarray, max_points: int | None, from_date: pd.Timestamp | None, to_date: pd.Timestamp | None
) -> tuple[int, int]:
    """The rows ``[low, high)`` of one coin's sorted, unique dates that a checked selection keeps."""
    low, high = 0, len(dates)
    if from_date is not None:
        low = int(np.searchsorted(dates, _ns_day(from_date), side="left"))
    if to_date is not None:
        high = int(np.searchsorted(dates, _ns_day(to_date), side="right"))
    high = max(low, high)
    if max_points is not None:
        low = max(low, high - max_points)
    return low, high


class CryptoLoader:
    """Reads a dataset of coin price histories, parsing each coin once.

    Args:
        data_path: A directory of CoinMarketCap CSVs (one per coin), a
            long-format ``.csv``/``.csv.gz``/``.parquet`` file, or a price store
            folder written by ``crypto-ml data fetch``. None reads
            ``crypto_ml.config.get_settings().resolved_data_dir()``. For a
            DataFrame in memory, use :meth:`from_frame`.
        max_points: Keep only the most recent N rows of each coin (after the
            date bounds). None keeps all.
        from_date: First date to keep, inclusive (ISO string, date, datetime or Timestamp).
        to_date: Last date to keep, inclusive.

    Raises:
        DataFormatError: ``data_path`` does not exist, or is a file of an unknown type.
        InvalidParameterError: ``max_points`` < 1 or not an integer, a bad date,
            or ``from_date`` after ``to_date``.

    Attributes:
        data_path: The resolved dataset path; None for a loader made by :meth:`from_frame`.
    """

    def __init__(self, data_path=None, max_points=None, from_date=None, to_date=None) -> None:
        if data_path is None:
            from ..config import get_settings

            data_path = get_settings().resolved_data_dir()
        if isinstance(data_path, pd.DataFrame):
            raise InvalidParameterError(
                "CryptoLoader(path) reads files; for a DataFrame use CryptoLoader.from_frame(frame)"
            )
        if not isinstance(data_path, (str, os.PathLike)) or not str(data_path):
            raise InvalidParameterError(f"data_path must be a folder or a file path, got {data_path!r}")
        path = Path(os.path.expanduser(data_path))
        if not path.exists():
            raise DataFormatError(
                f"data path {str(path)!r} does not exist; pass --data PATH or set "
                "CRYPTO_ML_DATA_DIR to a folder of coin CSVs or a long-format file"
            )
        # A price store is a folder, but read as one long table: its files are a symbol's years.
        self._store = PriceStore(path) if path.is_dir() and is_price_store(path) else None
        self._long = not path.is_dir() or self._store is not None
        if not path.is_dir() and not path.name.lower().endswith(LONG_SUFFIXES):
            raise DataFormatError(
                f"{str(path)!r} is neither a folder nor a .csv, .csv.gz or .parquet file; "
                "pass --data PATH or set CRYPTO_ML_DATA_DIR to a folder of coin CSVs "
                "or a long-format file"
            )
        self.data_path: Path | None = path
        self._frame: pa.Table | None = None
        self._set_selection(max_points, from_date, to_date)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, max_points=None, from_date=None, to_date=None) -> CryptoLoader:
        """A loader over prices already in memory: a long-format DataFrame, one row per coin and day.

        The columns are ``symbol, date, close`` (optionally ``open, high, low, volume,
        market_cap``), or statsforecast's ``unique_id, ds, y``. The rows go through
        the same checks, repairs, warnings and errors as a long-format file.

        Args:
            frame: The prices.
            max_points, from_date, to_date: As for :class:`CryptoLoader`.

        Raises:
            DataFormatError: a needed column is missing, or the frame has no rows.
            InvalidParameterError: ``frame`` is not a DataFrame, or a bad selection.
        """
        from .frames import frame_to_arrow

        loader = cls.__new__(cls)
        loader._frame = frame_to_arrow(frame)
        loader._store = None
        loader._long = True
        loader.data_path = None
        loader._set_selection(max_points, from_date, to_date)
        loader._long_table()  # a missing column or bad rows show now, not on the first forecast
        return loader

    def _set_selection(self, max_points, from_date, to_date) -> None:
        self.max_points, self.from_date, self.to_date = check_selection(max_points, from_date, to_date)
        self._files: dict[str, list[Path]] | None = None
        self._skipped: list[tuple[str, str]] = []
        self._table: _LongTable | None = None
        # A long-format file's coin names, from its symbol column alone (see get_crypto_names).
        self._names: list[str] | None = None
        self._cache: dict[str, _Parsed | _Span | _Failure] = {}
        self._duplicates: tuple[list[list[str]], list[str]] | None = None

    def until(self, to_date: object) -> CryptoLoader:
        """The same dataset seen as it was on ``to_date``: only prices up to that day (inclusive).

        The new loader shares this one's parsed coins (each is parsed in full once and
        only the selection differs), so stepping through history day by day, as
        ``crypto-ml pipeline replay`` does, reads every file once rather than once a day.
        ``from_date`` and ``max_points`` are kept.

        Raises:
            InvalidParameterError: a bad date, or one before this loader's ``from_date``.
        """
        import copy

        max_points, from_date, day = check_selection(self.max_points, self.from_date, to_date)
        # Read what every view needs here, once, so the views share it instead of each reading it.
        if self._long:
            self._long_table()
        else:
            self._scan()
        view = copy.copy(self)  # shallow: the scan, the long table and the parse cache are shared
        view.max_points, view.from_date, view.to_date = max_points, from_date, day
        return view

    @property
    def source(self) -> str:
        """What the data is, for messages and reports: the path, or ``<DataFrame>``."""
        return "<DataFrame>" if self.data_path is None else str(self.data_path)

    @property
    def _label(self) -> str:
        return "DataFrame" if self.data_path is None else self.data_path.name

    def persist(self, folder: str | os.PathLike[str]) -> CryptoLoader:
        """This loader's data in a file another process can read; a file-backed loader is returned as is.

        A DataFrame becomes ``FOLDER/<sha256>.parquet``, written once and atomically.

        Celery workers read data by reference (path and hash), so prices that exist
        only in this process's memory are written first.
        """
        if self.data_path is not None:
            return self
        from .frames import write_frame_file

        path = write_frame_file(self._frame, Path(folder), self.data_hash())
        return CryptoLoader(path, max_points=self.max_points, from_date=self.from_date, to_date=self.to_date)

    def size_bytes(self) -> int:
        """The dataset's size: bytes on disk (every file of a folder or store), or in memory for a DataFrame."""
        if self._frame is not None:
            return int(self._frame.nbytes)
        assert self.data_path is not None
        if self.data_path.is_file():
            return self.data_path.stat().st_size
        return sum(path.stat().st_size for path in self.data_path.rglob("*") if path.is_file())

    def __repr__(self) -> str:
        if self.data_path is None:
            return f"CryptoLoader.from_frame(<{self._frame.num_rows if self._frame is not None else 0} rows>)"
        return f"CryptoLoader({str(self.data_path)!r})"

    # --- discovery ---

    def _scan(self) -> dict[str, list[Path]]:
        """Coin files by normalised name (directory layout), scanned once."""
        if self._files is not None:
            return self._files
        files: dict[str, list[Path]] = {}
        skipped: list[tuple[str, str]] = []
        for entry in sorted(os.scandir(self.data_path), key=lambda e: e.name):
            reason = self._skip_reason(entry)
            if reason:
                logger.info("%s: skipped (%s)", entry.name, reason)
                skipped.append((entry.name, reason))
                continue
            files.setdefault(normalize_name(Path(entry.name).stem), []).append(Path(entry.path))
        self._files, self._skipped = files, skipped
        return files

    @staticmethod
    def _skip_reason(entry: os.DirEntry) -> str | None:
        if entry.name.startswith("."):
            return "hidden file"
        if entry.name.startswith("~$"):
            return "editor lock file"
        if not entry.is_file():
            return "a folder or special file, not a coin file"
        if Path(entry.name).suffix.lower() != ".csv":
            return "not a .csv file"
        try:
            with open(entry.path, "rb") as handle:
                head = handle.read(_HEADER_PEEK_BYTES)
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        # Only the header decides; a broken body is the coin's problem, reported on load.
        line = head.decode("utf-8-sig", errors="replace").splitlines()[:1]
        header = {_header_key(c) for c in next(csv.reader(line), [])} if line else set()
        if {"name", "market cap"} <= header and "date" not in header:
            return "summary file, not a coin"
        return None

    def _long_table(self) -> _LongTable:
        if self._table is None:
            if self._frame is not None:
                self._table = _arrow_long_table(self._frame, self._label)
            elif self._store is not None:
                self._table = _arrow_long_table(self._store_table(), self._label)
            else:
                assert self.data_path is not None  # neither a DataFrame nor a store: a long-format file
                self._table = _read_long_table(self.data_path)
            _release_arrow_memory()
        return self._table

    def _store_table(self) -> pa.Table:
        """A price store's candles as one long table; each symbol is a coin (``exchange:symbol`` if several)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        assert self._store is not None
        table = self._store.read()
        if table.num_rows == 0:
            raise DataFormatError(
                f"the price store {self.data_path} holds no candles yet; run `crypto-ml data fetch --store ...` first"
            )
        symbol = table.column("symbol")
        if len(pc.unique(table.column("exchange"))) > 1:
            symbol = pc.binary_join_element_wise(table.column("exchange"), symbol, ":")
        return pa.table(
            {
                "symbol": symbol,
                "date": table.column("date"),
                **{name: table.column(name) for name in ("open", "high", "low", "close", "volume")},
            }
        )

    def _read_long_names(self) -> list[str]:
        """The coins of a long-format file from its symbol column alone.

        Anything unusual (a missing column, a corrupt file, a CSV that pyarrow
        and pandas might read differently) is left to the full read, which lists
        the coins or raises exactly as it always did.
        """
        if self.data_path is None or self._store is not None:
            return list(self._long_table().names)  # already in memory, or a few small files
        path, label = self.data_path, self.data_path.name
        try:
            if path.name.lower().endswith(".parquet"):
                schema, fields = _parquet_layout(path, label)
                symbol = fields["symbol"]
                symbols = _parquet_column(
                    _read_parquet(path, label, [symbol], schema), symbol, schema.field(symbol).type
                )
            else:
                symbols = _csv_symbols(_decompress(path.read_bytes(), path), label)
        except Exception:  # noqa: BLE001 - the full read below reports the problem as it always did
            symbols = None
        if symbols is None or len(symbols) == 0:
            return list(self._long_table().names)
        return _symbol_ids(symbols)[1]

    def get_crypto_names(self) -> list[str]:
        """Sorted normalised names of the coins in the dataset.

        Cheap for a folder: only file names and headers are read, so a coin file
        that is broken is still listed and fails on :meth:`get_df`. Cheap for a
        long-format file too: only its symbol column is read, and the whole
        table is read on the first :meth:`get_df` or :meth:`report`.

        Returns:
            Names such as ``["bitcoin", "bitcoin_cash", ...]``.

        Raises:
            DataFormatError: a long-format file cannot be read at all.
        """
        if self._long:
            if self._table is not None:
                return list(self._table.names)
            if self._names is None:
                self._names = self._read_long_names()
            return list(self._names)
        return sorted(self._scan())

    # --- loading ---

    def _unknown(self, name: object, key: str, names: list[str]) -> UnknownCoinError:
        skipped = {normalize_name(Path(file).stem): reason for file, reason in self._skipped}
        if key in skipped:
            return UnknownCoinError(
                f"{name!r} is not a coin in {self.data_path}: {skipped[key]}. "
                "Run `crypto-ml data list` to see all coins."
            )
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else f" in {self.source}."
        return UnknownCoinError(f"unknown coin {key!r}{hint} Run `crypto-ml data list` to see all coins.")

    def _parsed(self, name: str) -> _Parsed | _Span:
        """A coin parsed once: cleaned (:class:`_Parsed`), or a clean long-format coin's rows (:class:`_Span`)."""
        if not isinstance(name, str):
            raise UnknownCoinError(
                f"a coin name must be a string, got {name!r}. Run `crypto-ml data list` to see all coins."
            )
        key = normalize_name(name)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._parse(name, key)
            self._cache[key] = cached
        if isinstance(cached, _Failure):
            # A fresh exception each time, so tracebacks do not chain across calls.
            raise type(cached.error)(str(cached.error))
        return cached

    def _parse(self, name: str, key: str) -> _Parsed | _Span | _Failure:
        if self._long:
            table = self._long_table()
            number = table.index.get(key)
            if number is None:
                raise self._unknown(name, key, table.names)
            label = f"{self._label} [{key}]"
            if table.clean[number]:
                # Checked in _read_long_table: nothing for _clean to drop, sort or warn about.
                return table.span(number, label)
            loader = lambda: _clean(*table.rows(number), label)  # noqa: E731
        else:
            files = self._scan()
            if key not in files:
                raise self._unknown(name, key, sorted(files))
            paths = files[key]
            if len(paths) > 1:
                return _Failure(
                    DataFormatError(
                        f"coin {key!r} is ambiguous: {', '.join(p.name for p in paths)} all normalise to it; "
                        "rename or remove all but one"
                    )
                )
            loader = lambda: _load_coin_file(paths[0])  # noqa: E731
        try:
            return loader()
        except DataFormatError as exc:
            logger.debug("cannot load %s: %s", key, exc)
            return _Failure(exc)

    def _select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows inside the loader's date bounds and point limit, as a new frame."""
        if self.from_date is not None or self.to_date is not None:
            dates = frame["Date"]
            keep = np.ones(len(frame), dtype=bool)
            if self.from_date is not None:
                keep &= (dates >= self.from_date).to_numpy()
            if self.to_date is not None:
                keep &= (dates <= self.to_date).to_numpy()
            frame = frame[keep]
        if self.max_points is not None:
            frame = frame.iloc[-self.max_points :]
        # A new frame: with copy-on-write, callers may modify it without touching the cache.
        return frame.reset_index(drop=True)

    def _select_span(self, span: _Span) -> pd.DataFrame:
        """:meth:`_select` for a clean long-format coin: binary search and slicing on its sorted arrays."""
        low, high = self._span_bounds(span)
        # The dict constructor copies, so callers may modify the frame without touching the table.
        return pd.DataFrame({name: span.table.columns[name][low:high] for name in COLUMNS})

    def _span_bounds(self, span: _Span) -> tuple[int, int]:
        """The rows of the table's columns that :meth:`_select` would keep of a clean coin."""
        dates = span.table.columns["Date"][span.start : span.stop]
        low, high = selected_rows(dates, self.max_points, self.from_date, self.to_date)
        return span.start + low, span.start + high

    def get_df(self, name: str) -> pd.DataFrame:
        """One coin's daily prices, oldest first.

        Args:
            name: The normalised name (``"bitcoin_cash"``) or the raw file stem
                or symbol (``"Bitcoin Cash"``).

        Returns:
            A frame with exactly the columns ``Date`` (datetime64[ns] midnights,
            ascending, unique), ``Open, High, Low, Close, Volume, Market Cap``
            (float64, NaN where missing) and a RangeIndex. It may be empty when
            the date bounds exclude every row. Gaps in the dates are not filled.

        Raises:
            UnknownCoinError: no such coin; the message suggests close names.
            DataFormatError: the coin's data cannot be loaded; the message names
                the file, the problem and the fix.
        """
        parsed = self._parsed(name)
        if isinstance(parsed, _Span):
            return self._select_span(parsed)
        return self._select(parsed.frame)

    def get_prices(self, name: str) -> np.ndarray:
        """One coin's Close prices as a writable, C-contiguous float64 array, oldest first.

        Raises:
            UnknownCoinError: no such coin.
            DataFormatError: the coin's data cannot be loaded.
        """
        return self.get_dated_prices(name)[1]

    def get_dated_prices(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """One coin's dates and Close prices, oldest first: :meth:`get_df`'s two columns without the frame.

        A worker forecasting thousands of coins needs only these; building each
        frame cost more than a linear fit.

        Returns:
            ``(dates, prices)``: datetime64[ns] midnights and float64 prices, as
            writable C-contiguous copies the caller owns.

        Raises:
            UnknownCoinError: no such coin.
            DataFormatError: the coin's data cannot be loaded.
        """
        parsed = self._parsed(name)
        if isinstance(parsed, _Span):
            low, high = self._span_bounds(parsed)
            columns = parsed.table.columns
            return columns["Date"][low:high].copy(), columns["Close"][low:high].copy()
        frame = self._select(parsed.frame)
        return (
            np.array(frame["Date"].to_numpy(), dtype="datetime64[ns]", order="C"),
            np.array(frame["Close"].to_numpy(dtype=np.float64), dtype=np.float64, order="C"),
        )

    # --- reporting ---

    def _coin_files(self) -> list[tuple[str, Path]]:
        """(name, file) of every coin file, sorted by file name."""
        files = self._scan()
        return sorted(((name, path) for name, paths in files.items() for path in paths), key=lambda t: t[1].name)

    def _find_duplicates(self) -> tuple[list[list[str]], list[str]]:
        """Groups of byte-identical coin files; computed and logged once."""
        if self._duplicates is not None:
            return self._duplicates
        by_digest: dict[str, list[str]] = {}
        for name, path in self._coin_files():
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue  # the coin's own load reports an unreadable file
            by_digest.setdefault(digest, []).append(name)
        groups = sorted(sorted(names) for names in by_digest.values() if len(names) > 1)
        messages = []
        for group in groups:
            message = f"{' and '.join(group)} have byte-identical files; one is probably mislabelled"
            logger.warning("%s", message)
            messages.append(message)
        self._duplicates = (groups, messages)
        return self._duplicates

    def _coin_report(self, name: str, source: str) -> CoinReport:
        report = CoinReport(name=name, source=source)
        try:
            parsed = self._parsed(name)
        except DataFormatError as exc:
            report.error_type, report.error = type(exc).__name__, str(exc)
            return report
        except Exception as exc:
            logger.warning("unexpected error loading %s from %s", name, source, exc_info=True)
            report.error_type, report.error = type(exc).__name__, str(exc)
            return report
        if isinstance(parsed, _Span):
            frame, total = self._select_span(parsed), parsed.stop - parsed.start
        else:
            frame, total = self._select(parsed.frame), len(parsed.frame)
            report.dropped_rows = parsed.dropped_rows
            report.warnings = list(parsed.warnings)
        report.rows = len(frame)
        if len(frame):
            report.first_date = frame["Date"].iloc[0].date().isoformat()
            report.last_date = frame["Date"].iloc[-1].date().isoformat()
            report.gaps, report.missing_days = _gap_stats(frame["Date"].to_numpy())
        elif total:
            report.warnings.append("no rows between from_date/to_date")
        return report

    def report(self) -> DataReport:
        """Load every coin and describe the dataset: rows, dates, gaps, problems.

        Never raises for a bad coin: its ``error_type`` and ``error`` are set.

        Returns:
            A :class:`DataReport` with one :class:`CoinReport` per coin file (a
            name shared by two files appears twice, both failed), byte-identical
            file groups and the skipped files.

        Raises:
            DataFormatError: a long-format file cannot be read at all.
        """
        if self._long:
            table = self._long_table()
            coins = [self._coin_report(name, self.source) for name in table.names]
            return DataReport(path=self.source, coins=coins, warnings=list(table.warnings))
        coins = [
            self._coin_report(name, str(path))
            for name, path in sorted(self._coin_files(), key=lambda t: (t[0], t[1].name))
        ]
        duplicates, messages = self._find_duplicates()
        by_name = {coin.name: coin for coin in coins}
        for group, message in zip(duplicates, messages, strict=True):
            for name in group:
                if message not in by_name[name].warnings:
                    by_name[name].warnings.append(message)
        return DataReport(
            path=str(self.data_path),
            coins=coins,
            duplicates=[list(g) for g in duplicates],
            skipped=list(self._skipped),
            warnings=list(messages),
        )

    def data_hash(self) -> str:
        """SHA-256 (hex) of the dataset, for run manifests.

        Covers every coin file's name and bytes, in file-name order (or the
        single long-format file), so renaming or editing a coin changes it and
        adding a README does not. A price store hashes its manifest's file
        hashes; a DataFrame, its rows.
        """
        if self._store is not None:
            return self._store.data_hash()
        if self._frame is not None:
            from .frames import frame_hash

            return frame_hash(self._frame)
        digest = hashlib.sha256()
        paths = [path for _, path in self._coin_files()] if not self._long else []
        if self._long:
            assert self.data_path is not None  # a long-format file: stores and frames returned above
            paths = [self.data_path]
        for path in paths:
            name = path.name.encode("utf-8")
            # Length prefixes keep (name, bytes) pairs unambiguous when concatenated.
            digest.update(len(name).to_bytes(8, "big") + name)
            digest.update(path.stat().st_size.to_bytes(8, "big"))
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()
