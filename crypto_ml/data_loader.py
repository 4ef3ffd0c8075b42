"""Load daily coin prices from CoinMarketCap-style CSV folders or long-format tables.

Two layouts are read:

* a **directory** with one CoinMarketCap export per coin (``Bitcoin Cash.csv``:
  ``Date,Open,High,Low,Close,Volume,Market Cap``, newest first); the file stem,
  normalised by :func:`normalize_name`, is the coin's name;
* a **long-format file** (``.csv``, ``.csv.gz`` or ``.parquet``) with columns
  ``symbol, date, close`` and optionally ``open, high, low, volume, market_cap``;
  each normalised symbol is one coin.

Real exports are messy, so the loader fixes the routine quirks (mixed date
formats, Excel serial dates, thousands separators, ``-`` for missing values,
either row order) and logs them at INFO. Anything it has to drop or cannot
explain (bad dates or prices, duplicated rows, shuffled order, byte-identical
files) is logged at WARNING with counts and the file, and is recorded in the
coin's :class:`CoinReport`. A coin it cannot load raises
:class:`~crypto_ml.exceptions.DataFormatError` for that coin only; the other
coins still load, and :meth:`CryptoLoader.report` lists every failure.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import logging
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import DataFormatError, InvalidParameterError, UnknownCoinError

__all__ = ["CryptoLoader", "CoinReport", "DataReport", "normalize_name", "COLUMNS"]

logger = logging.getLogger(__name__)

#: The columns of every frame :meth:`CryptoLoader.get_df` returns, in this order.
COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume", "Market Cap")
NUMERIC_COLUMNS = COLUMNS[1:]
REQUIRED_COLUMNS = ("Date", "Close")

#: Suffixes that make ``data_path`` a single long-format file.
LONG_SUFFIXES = (".csv.gz", ".csv", ".parquet")

# Tried in this order; CoinMarketCap writes "Sep 22, 2017", and a few of its
# exports switch to full month names ("June 4, 2017") for some rows.
_MONTH_FORMATS = ("%b %d, %Y", "%B %d, %Y")
_ISO_PREFIX = r"^\d{4}-\d{2}-\d{2}"
# An all-digit date is an Excel serial (days since 1899-12-30, Excel's epoch
# after its 1900 leap-year bug). The range 1954-10-03 .. 2119-01-11 covers any
# price date while keeping a bare year such as "2017" from being read as one.
_EXCEL_EPOCH = np.datetime64("1899-12-30", "D")
_EXCEL_SERIAL_MIN, _EXCEL_SERIAL_MAX = 20_000, 80_000
_EXCEL_PATTERN = r"^\d+(?:\.\d+)?$"
# Lower-cased spellings of "no value" in exports (CoinMarketCap writes "-").
_MISSING_TOKENS = frozenset({"", "-", "--", "null", "nan", "none", "n/a", "na"})
# How many bad values a warning quotes: enough to recognise the problem.
_EXAMPLES = 3
# The header of any CSV fits in this many bytes; enough to tell a summary file from a coin.
_HEADER_PEEK_BYTES = 4096
# Canonical (lower-case, single-spaced) header -> output column; "market_cap" and
# "Market Cap" both canonicalise to "market cap".
_COLUMN_BY_KEY = {name.lower(): name for name in COLUMNS}
_DAY_NS = np.int64(86_400 * 10**9)


def normalize_name(raw: str) -> str:
    """The canonical name of a coin: NFKC-normalised, stripped, lower-case, ``_`` for spaces.

    Args:
        raw: A file stem or symbol such as ``"Bitcoin Cash"``.

    Returns:
        The normalised name, e.g. ``"bitcoin_cash"``; ``"I-O Coin"`` gives
        ``"i-o_coin"``. Non-ASCII letters are kept (``"déjà_coin"``).

    Raises:
        InvalidParameterError: ``raw`` is not a string.
    """
    if not isinstance(raw, str):
        raise InvalidParameterError(f"a coin name must be a string, got {raw!r}")
    # NFKC first so that full-width letters and non-breaking spaces fold to their
    # plain forms before lower-casing and whitespace collapsing.
    return re.sub(r"\s+", "_", unicodedata.normalize("NFKC", raw).strip().lower())


@dataclass
class CoinReport:
    """What loading one coin found. JSON-friendly: ``dataclasses.asdict`` serialises it.

    Row counts and dates describe what :meth:`CryptoLoader.get_df` returns, so
    they reflect the loader's ``from_date``, ``to_date`` and ``max_points``.
    """

    name: str
    #: The coin's file, or the long-format file that holds its symbol.
    source: str
    #: Rows kept.
    rows: int = 0
    #: ISO dates (yyyy-mm-dd) of the first and last kept rows.
    first_date: str | None = None
    last_date: str | None = None
    #: Gap INTERVALS: consecutive observations more than one day apart. This is
    #: how the dataset README counts them ("Crown has 16 gaps", 75 days in all).
    gaps: int = 0
    #: Calendar days missing inside those gaps, in all.
    missing_days: int = 0
    #: Rows discarded (bad Date or Close, duplicates); each kind is logged at WARNING.
    dropped_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    #: Set when the coin cannot be loaded: the exception's class name and message.
    error_type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the coin loaded."""
        return self.error_type is None


@dataclass
class DataReport:
    """A data-quality report over a whole dataset."""

    path: str
    coins: list[CoinReport]
    #: Groups of coin names whose files are byte-identical, e.g. ``[["nexus", "siacoin"]]``.
    duplicates: list[list[str]] = field(default_factory=list)
    #: ``(file name, reason)`` for files that are not coins: summary file, README, non-CSV, ...
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Problems that belong to the dataset rather than to one coin (long-format
    #: rows without a symbol, byte-identical files).
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[CoinReport]:
        """The coins that cannot be loaded."""
        return [coin for coin in self.coins if not coin.ok]


@dataclass
class _Parsed:
    """A coin parsed once and cached: the full cleaned frame and what cleaning did."""

    frame: pd.DataFrame
    dropped_rows: int
    warnings: list[str]


@dataclass
class _Failure:
    """A coin that could not be parsed, cached so the error is not recomputed (or re-logged)."""

    error: DataFormatError


@dataclass
class _LongTable:
    """A long-format file converted once; coins are row positions into ``frame``."""

    frame: pd.DataFrame
    raw: pd.DataFrame
    positions: dict[str, np.ndarray]
    warnings: list[str]


# --- Reading ----------------------------------------------------------------------


def _header_key(column: object) -> str:
    return re.sub(r"[\s_]+", " ", str(column).strip().lower())


def _read_csv_bytes(data: bytes, label: str) -> pd.DataFrame:
    """Every column of a CSV as strings ("" for empty cells), header names stripped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        # NUL never occurs in a text CSV; it means a binary file or UTF-16.
        raise DataFormatError(f"{label} is not a text CSV file (it contains NUL bytes); "
                              "replace it with a UTF-8 CSV export or remove it")
    if not data.strip():
        raise DataFormatError(f"{label} has no data rows (the file is empty); re-export it or remove it")
    try:
        with warnings.catch_warnings():
            # With index_col=False pandas would only warn, and drop the extra
            # fields, when data rows are wider than the header; we cannot tell
            # which columns such rows mean, so it is an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # keep_default_na=False keeps "-", "NaN" and "" as text so the
            # conversion below decides what counts as missing, and counts what it
            # rejects. index_col=False stops pandas from silently turning the
            # first column into the index when rows are wider than the header.
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8",
                                skipinitialspace=True, index_col=False)
    except pd.errors.ParserWarning:
        raise DataFormatError(f"{label} cannot be parsed as CSV (rows have more fields than its header); "
                              "fix or remove that file") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{label} is not a text CSV file (it is not valid UTF-8); "
                              "replace it with a UTF-8 CSV export or remove it") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{label} has no data rows (the file is empty); re-export it or remove it") from None
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{label} cannot be parsed as CSV ({str(exc).strip()}); "
                              "fix or remove that file") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    return frame


def _standardise_columns(frame: pd.DataFrame, label: str, *, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rename columns to :data:`COLUMNS` (plus ``extra``), case- and spacing-insensitively.

    Missing optional columns are not added here; :func:`_convert` fills them with NaN.
    """
    wanted = dict(_COLUMN_BY_KEY)
    wanted.update({name.lower(): name for name in extra})
    rename: dict[str, str] = {}
    for column in frame.columns:
        target = wanted.get(_header_key(column))
        if target is None:
            continue
        if target in rename.values():
            raise DataFormatError(f"{label} has two columns that mean {target!r}; keep one of them")
        rename[column] = target
    missing = [name for name in (*extra, *REQUIRED_COLUMNS) if name not in rename.values()]
    if missing:
        expected = ", ".join((*extra, *(c.lower().replace(" ", "_") for c in COLUMNS)) if extra else COLUMNS)
        raise DataFormatError(
            f"{label} lacks the column(s) {', '.join(missing)}; its header is "
            f"{', '.join(map(str, frame.columns)) or '(empty)'}, expected {expected} "
            "(Open, High, Low, Volume and Market Cap are optional)"
        )
    return frame.loc[:, list(rename)].rename(columns=rename)


def _parse_dates(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dates as datetime64[ns] midnights (NaT where unparseable) and a mask of Excel serials."""
    n = len(raw)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    excel = np.zeros(n, dtype=bool)
    if n == 0:
        return out, excel
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(raw.dt, "tz", None) else raw
        return _to_ns_midnight(values.to_numpy()), excel
    if not pd.api.types.is_string_dtype(raw.dtype) or raw.dtype == object and not _all_strings(raw):
        # Typed values from Parquet (datetime.date objects, mixed objects).
        values = pd.to_datetime(raw, errors="coerce", utc=True).dt.tz_localize(None)
        return _to_ns_midnight(values.to_numpy()), excel
    text = raw.fillna("").astype(str).str.strip()
    # np.array copies: under copy-on-write, to_numpy() can hand back a read-only view.
    todo = np.array(text != "", dtype=bool)

    def fill(mask: np.ndarray, parse) -> None:
        index = np.flatnonzero(mask)
        if index.size == 0:
            return
        parsed = _to_ns_midnight(parse(text.iloc[index]))
        good = ~np.isnat(parsed)
        out[index[good]] = parsed[good]
        todo[index[good]] = False

    # The formats cannot match the same text, so each is tried only on the rows
    # that could match it: a long file of ISO dates skips strptime for month names.
    worded = todo & text.str.match(r"^[^\W\d_]").to_numpy(dtype=bool)
    for fmt in _MONTH_FORMATS:
        fill(worded & todo, lambda part, fmt=fmt: pd.to_datetime(part, format=fmt, errors="coerce").to_numpy())
    iso = todo & text.str.match(_ISO_PREFIX).to_numpy(dtype=bool)
    # utc=True lets naive and offset timestamps mix; offsets are converted to UTC.
    fill(iso, lambda part: pd.to_datetime(part, format="ISO8601", errors="coerce", utc=True)
         .dt.tz_localize(None).to_numpy())
    serial = todo & text.str.match(_EXCEL_PATTERN).to_numpy(dtype=bool)
    if serial.any():
        index = np.flatnonzero(serial)
        days = pd.to_numeric(text.iloc[index], errors="coerce").to_numpy(dtype=np.float64)
        in_range = (days >= _EXCEL_SERIAL_MIN) & (days <= _EXCEL_SERIAL_MAX)
        index, days = index[in_range], np.floor(days[in_range]).astype(np.int64)
        out[index] = (_EXCEL_EPOCH + days.astype("timedelta64[D]")).astype("datetime64[ns]")
        excel[index] = True
    return out, excel


def _all_strings(raw: pd.Series) -> bool:
    return bool(raw.map(lambda v: isinstance(v, str) or v is None or v != v).all())


def _to_ns_midnight(values: np.ndarray) -> np.ndarray:
    """datetime64 of any unit -> datetime64[ns] at midnight; NaT outside the ns range."""
    values = np.asarray(values)
    if values.dtype.kind != "M":
        values = pd.to_datetime(pd.Series(values), errors="coerce").to_numpy()
    days = values.astype("datetime64[D]")
    # datetime64[ns] spans 1677-09-22 .. 2262-04-11; anything beyond is a bad
    # date, not an overflow error.
    inside = (days >= np.datetime64("1678-01-01")) & (days <= np.datetime64("2262-01-01"))
    out = np.full(values.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    out[inside] = days[inside].astype("datetime64[ns]")
    return out


def _typed_numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column (e.g. from Parquet) as floats, and a mask of infinite values."""
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    junk = np.isinf(values)
    return np.where(junk, np.nan, values), junk


def _text_numbers(columns: list[pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """Text columns, stacked end to end, as floats (NaN where missing) and a mask of junk values.

    Junk is a value that is neither a number nor a missing marker (``-``, ``""``,
    ``null``, ``NaN``, ...). Thousands separators, ``$`` and surrounding spaces
    are removed first.
    """
    # pyarrow's string kernels and cast run once over all columns: ~5x faster
    # than the pandas string accessor plus to_numeric on files this small.
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = []
    for column in columns:
        if not pd.api.types.is_string_dtype(column.dtype) or column.dtype == object:
            column = column.astype("str")
        array = pa.array(column, type=pa.large_string(), from_pandas=True)
        # A big column comes back from pandas in several chunks.
        chunks.extend(array.chunks if isinstance(array, pa.ChunkedArray) else [array])
    text = pa.chunked_array(chunks, type=pa.large_string())
    text = pc.utf8_trim_whitespace(text)
    # CMC quotes big numbers with thousands separators ("1,194,830,000"); its
    # summary exports also prefix "$".
    text = pc.utf8_trim_whitespace(pc.replace_substring(pc.replace_substring(text, ",", ""), "$", ""))
    missing = pc.fill_null(pc.is_in(pc.utf8_lower(text), value_set=pa.array(sorted(_MISSING_TOKENS))), True)
    text = pc.if_else(missing, pa.scalar(None, text.type), text)
    try:
        values = pc.cast(text, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        # Some value is not a number: pandas coerces each one separately.
        values = pd.to_numeric(pd.Series(text.to_pandas()), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.array(values, dtype=np.float64)
    missing = np.asarray(missing.to_numpy(), dtype=bool)
    finite = np.isfinite(values)
    junk = ~missing & ~finite
    values[~finite] = np.nan
    return values, junk


def _convert(table: pd.DataFrame) -> pd.DataFrame:
    """Typed columns for a table with standardised names, plus the raw values needed for messages.

    Works on one coin file or a whole long-format table at once, so a long file
    with thousands of coins is converted in a few vectorised passes.
    """
    dates, excel = _parse_dates(table["Date"])
    columns: dict[str, object] = {"Date": dates}
    junk: dict[str, np.ndarray] = {}
    n = len(table)
    present = [name for name in NUMERIC_COLUMNS if name in table.columns]
    numeric = [name for name in present if pd.api.types.is_numeric_dtype(table[name].dtype)
               and not pd.api.types.is_bool_dtype(table[name].dtype)]
    text = [name for name in present if name not in numeric]
    if text:
        # One pass over all text columns stacked end to end: the string
        # operations cost mostly per call, not per value, on files this small.
        values, bad = _text_numbers([table[name] for name in text])
        for i, name in enumerate(text):
            columns[name], junk[name] = values[i * n:(i + 1) * n], bad[i * n:(i + 1) * n]
    for name in NUMERIC_COLUMNS:
        if name in text:
            continue
        if name in numeric:
            columns[name], junk[name] = _typed_numbers(table[name])
        else:
            columns[name] = np.full(n, np.nan)
            junk[name] = np.zeros(n, dtype=bool)
    # Each row's position in `table`, to quote its raw text in warnings without
    # carrying (and slicing) the text itself through cleaning.
    columns["_row"] = np.arange(n)
    columns["_excel"] = excel
    for name, mask in junk.items():
        columns[f"_junk_{name}"] = mask
    return pd.DataFrame(columns)


# --- Cleaning one coin ----------------------------------------------------------


def _examples(raw: pd.Series, rows: np.ndarray) -> str:
    """The first few raw values at positions `rows`, quoted, for a warning."""
    shown = ", ".join(repr(str(v)) for v in raw.iloc[rows[:_EXAMPLES]].tolist())
    return shown + (", ..." if len(rows) > _EXAMPLES else "")


def _gap_stats(dates: np.ndarray) -> tuple[int, int]:
    """(gap intervals, missing calendar days) between sorted unique midnights."""
    if dates.size < 2:
        return 0, 0
    steps = np.diff(dates.astype("datetime64[ns]").astype(np.int64)) // _DAY_NS
    gaps = steps > 1
    return int(gaps.sum()), int((steps[gaps] - 1).sum())


def _clean(converted: pd.DataFrame, raw: pd.DataFrame, label: str) -> _Parsed:
    """Drop bad rows, resolve duplicates and order for one coin; log what was done.

    ``converted`` comes from :func:`_convert` (possibly a subset of its rows);
    ``raw`` is the table it was converted from, used to quote bad values.

    Raises:
        DataFormatError: no rows, no valid rows, or one date with two different Close values.
    """
    total = len(converted)
    if total == 0:
        raise DataFormatError(f"{label} has no data rows (only a header); re-export it or remove it")
    found: list[str] = []

    def warn(message: str) -> None:
        logger.warning("%s: %s", label, message)
        found.append(message)

    frame = converted
    dropped = 0
    bad_date = frame["Date"].isna().to_numpy()
    if bad_date.any():
        count = int(bad_date.sum())
        examples = _examples(raw["Date"], frame["_row"].to_numpy()[bad_date])
        warn(f"dropped {count} row(s) with an unparseable Date (first: {examples}); "
             "expected dates like 'Sep 22, 2017' or 2017-09-22")
        frame, dropped = frame[~bad_date], dropped + count
    close = frame["Close"].to_numpy()
    bad_close = np.isnan(close)
    if bad_close.any():
        count = int(bad_close.sum())
        warn(f"dropped {count} row(s) with a missing or non-numeric Close "
             f"(first: {_examples(raw['Close'], frame['_row'].to_numpy()[bad_close])})")
        frame, dropped = frame[~bad_close], dropped + count
    close = frame["Close"].to_numpy()
    not_positive = close <= 0
    if not_positive.any():
        count = int(not_positive.sum())
        first = frame[not_positive].iloc[0]
        warn(f"dropped {count} row(s) with Close <= 0 (e.g. {first['Close']:g} on {first['Date'].date()}); "
             "a price must be positive")
        frame, dropped = frame[~not_positive], dropped + count
    if frame.empty:
        raise DataFormatError(f"{label} has no valid rows: all {total} rows have a bad Date or Close "
                              "(see the warnings above); fix the file or remove it")

    for name in NUMERIC_COLUMNS:
        junk = frame[f"_junk_{name}"].to_numpy()
        if name != "Close" and junk.any():
            # Optional columns are kept with NaN rather than dropping a valid price.
            warn(f"{int(junk.sum())} non-numeric {name} value(s) read as missing")

    # Newest-first (CMC) and oldest-first are both normal; anything else means
    # the file was shuffled or concatenated, which is worth a look.
    ns = frame["Date"].to_numpy().astype(np.int64)
    steps = np.diff(ns)
    rising, falling = int((steps > 0).sum()), int((steps < 0).sum())
    if rising and falling:
        warn(f"{min(rising, falling)} row(s) out of order (the file is neither newest- nor oldest-first); "
             "sorted by Date")
    frame = frame.sort_values("Date", kind="stable")

    dup_dates = frame["Date"].duplicated(keep=False).to_numpy()
    if dup_dates.any():
        exact = frame.duplicated(subset=list(COLUMNS), keep="first").to_numpy()
        if exact.any():
            count = int(exact.sum())
            warn(f"dropped {count} exact duplicate row(s) (first on {frame['Date'][exact].iloc[0].date()})")
            frame, dropped = frame[~exact], dropped + count
        same_day = frame[frame["Date"].duplicated(keep=False)]
        if not same_day.empty:
            closes = same_day.groupby("Date", sort=True)["Close"].nunique()
            conflicts = closes[closes > 1]
            if not conflicts.empty:
                day = conflicts.index[0]
                values = ", ".join(f"{v:g}" for v in same_day.loc[same_day["Date"] == day, "Close"])
                raise DataFormatError(
                    f"{label} has {len(conflicts)} date(s) with conflicting Close values, first {day.date()} "
                    f"(Close {values}); cannot tell which is right: remove the wrong row(s)"
                )
            repeat = frame["Date"].duplicated(keep="first").to_numpy()
            count = int(repeat.sum())
            warn(f"dropped {count} row(s) that repeat a date and Close but differ in other columns; kept the first")
            frame, dropped = frame[~repeat], dropped + count

    excel = int(frame["_excel"].sum())
    if excel:
        logger.info("%s: converted %d Excel serial date(s)", label, excel)
    no_volume, no_cap = int(frame["Volume"].isna().sum()), int(frame["Market Cap"].isna().sum())
    if no_volume or no_cap:
        logger.info("%s: %d row(s) without Volume, %d without Market Cap (kept as NaN)", label, no_volume, no_cap)
    clean = frame.loc[:, list(COLUMNS)].reset_index(drop=True)
    gaps, missing_days = _gap_stats(clean["Date"].to_numpy())
    if gaps:
        logger.info("%s: %d gap(s) in the dates, %d missing day(s) in all (not filled)", label, gaps, missing_days)
    return _Parsed(frame=clean, dropped_rows=dropped, warnings=found)


def _date_bound(value: object, argument: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            stamp = pd.to_datetime(value.strip(), format="ISO8601")
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


# --- The loader -------------------------------------------------------------------


class CryptoLoader:
    """Reads a dataset of coin price histories, parsing each coin once.

    Args:
        data_path: A directory of CoinMarketCap CSVs (one per coin), or a
            long-format ``.csv``/``.csv.gz``/``.parquet`` file. None reads
            ``crypto_ml.config.get_settings().resolved_data_dir()``.
        max_points: Keep only the most recent N rows of each coin (after the
            date bounds). None keeps all.
        from_date: First date to keep, inclusive (ISO string, date, datetime or Timestamp).
        to_date: Last date to keep, inclusive.

    Raises:
        DataFormatError: ``data_path`` does not exist, or is a file of an unknown type.
        InvalidParameterError: ``max_points`` < 1 or not an integer, a bad date,
            or ``from_date`` after ``to_date``.

    Attributes:
        data_path: The resolved dataset path.
    """

    def __init__(self, data_path=None, max_points=None, from_date=None, to_date=None) -> None:
        if data_path is None:
            from .config import get_settings

            data_path = get_settings().resolved_data_dir()
        if not isinstance(data_path, (str, os.PathLike)) or not str(data_path):
            raise InvalidParameterError(f"data_path must be a folder or a file path, got {data_path!r}")
        path = Path(os.path.expanduser(data_path))
        if not path.exists():
            raise DataFormatError(f"data path {str(path)!r} does not exist; pass --data PATH or set "
                                  "CRYPTO_ML_DATA_DIR to a folder of coin CSVs or a long-format file")
        self._long = not path.is_dir()
        if self._long and not path.name.lower().endswith(LONG_SUFFIXES):
            raise DataFormatError(f"{str(path)!r} is neither a folder nor a .csv, .csv.gz or .parquet file; "
                                  "pass --data PATH or set CRYPTO_ML_DATA_DIR to a folder of coin CSVs "
                                  "or a long-format file")
        if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, Integral)
                                       or max_points < 1):
            raise InvalidParameterError(f"max_points={max_points!r} must be an integer >= 1 (or None for all rows)")
        self.data_path = path
        self.max_points = None if max_points is None else int(max_points)
        self.from_date = _date_bound(from_date, "from_date")
        self.to_date = _date_bound(to_date, "to_date")
        if self.from_date is not None and self.to_date is not None and self.from_date > self.to_date:
            raise InvalidParameterError(f"from_date {self.from_date.date()} is after to_date {self.to_date.date()}")
        self._files: dict[str, list[Path]] | None = None
        self._skipped: list[tuple[str, str]] = []
        self._table: _LongTable | None = None
        self._cache: dict[str, _Parsed | _Failure] = {}
        self._duplicates: tuple[list[list[str]], list[str]] | None = None

    def __repr__(self) -> str:
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
            self._table = self._read_long()
        return self._table

    def _read_long(self) -> _LongTable:
        path, label = self.data_path, self.data_path.name
        if path.name.lower().endswith(".parquet"):
            try:
                raw = pd.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
                raise DataFormatError(f"{label} is not a readable Parquet file ({exc}); "
                                      "re-export it or pass another --data") from None
            raw.columns = [str(c).strip() for c in raw.columns]
        else:
            data = path.read_bytes()
            if path.name.lower().endswith(".gz"):
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as exc:
                    raise DataFormatError(f"{label} is not a readable gzip file ({exc}); re-compress it") from None
            raw = _read_csv_bytes(data, label)
        raw = _standardise_columns(raw, label, extra=("symbol",))
        if raw.empty:
            raise DataFormatError(f"{label} has no data rows (only a header); re-export it or pass another --data")
        symbols = raw["symbol"]
        if not pd.api.types.is_string_dtype(symbols.dtype):
            symbols = symbols.astype("str")
        symbols = symbols.fillna("").str.strip()
        present = (symbols != "").to_numpy(dtype=bool)
        found: list[str] = []
        if not present.all():
            message = f"dropped {int((~present).sum())} row(s) without a symbol"
            logger.warning("%s: %s", label, message)
            found.append(message)
        converted = _convert(raw)
        # Group rows by integer ids, not strings, so millions of rows sort quickly.
        # Symbols that differ only in case or spacing are one coin.
        keep = np.flatnonzero(present)
        codes, uniques = pd.factorize(symbols.iloc[keep])
        names, name_of_code = np.unique([normalize_name(u) for u in uniques], return_inverse=True)
        row_ids = name_of_code[codes]
        order = np.argsort(row_ids, kind="stable")
        bounds = np.cumsum(np.bincount(row_ids, minlength=len(names)))[:-1]
        positions = dict(zip(names.tolist(), np.split(keep[order], bounds)))
        return _LongTable(frame=converted, raw=raw, positions=positions, warnings=found)

    def get_crypto_names(self) -> list[str]:
        """Sorted normalised names of the coins in the dataset.

        Cheap for a folder: only file names and headers are read, so a coin file
        that is broken is still listed and fails on :meth:`get_df`.

        Returns:
            Names such as ``["bitcoin", "bitcoin_cash", ...]``.

        Raises:
            DataFormatError: a long-format file cannot be read at all.
        """
        if self._long:
            return sorted(self._long_table().positions)
        return sorted(self._scan())

    # --- loading ---

    def _unknown(self, name: object, key: str, names: list[str]) -> UnknownCoinError:
        skipped = {normalize_name(Path(file).stem): reason for file, reason in self._skipped}
        if key in skipped:
            return UnknownCoinError(f"{name!r} is not a coin in {self.data_path}: {skipped[key]}. "
                                    "Run `crypto-ml data list` to see all coins.")
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else f" in {self.data_path}."
        return UnknownCoinError(f"unknown coin {key!r}{hint} Run `crypto-ml data list` to see all coins.")

    def _parsed(self, name: str) -> _Parsed:
        if not isinstance(name, str):
            raise UnknownCoinError(f"a coin name must be a string, got {name!r}. "
                                   "Run `crypto-ml data list` to see all coins.")
        key = normalize_name(name)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._parse(name, key)
            self._cache[key] = cached
        if isinstance(cached, _Failure):
            # A fresh exception each time, so tracebacks do not chain across calls.
            raise type(cached.error)(str(cached.error))
        return cached

    def _parse(self, name: str, key: str) -> _Parsed | _Failure:
        if self._long:
            table = self._long_table()
            if key not in table.positions:
                raise self._unknown(name, key, sorted(table.positions))
            rows = table.frame.iloc[table.positions[key]]
            label = f"{self.data_path.name} [{key}]"
            loader = lambda: _clean(rows, table.raw, label)  # noqa: E731
        else:
            files = self._scan()
            if key not in files:
                raise self._unknown(name, key, sorted(files))
            paths = files[key]
            if len(paths) > 1:
                return _Failure(DataFormatError(
                    f"coin {key!r} is ambiguous: {', '.join(p.name for p in paths)} all normalise to it; "
                    "rename or remove all but one"))
            loader = lambda: self._load_file(paths[0])  # noqa: E731
        try:
            return loader()
        except DataFormatError as exc:
            logger.debug("cannot load %s: %s", key, exc)
            return _Failure(exc)

    @staticmethod
    def _load_file(path: Path) -> _Parsed:
        label = path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataFormatError(f"{label} cannot be read ({exc.strerror}); check its permissions") from None
        raw = _read_csv_bytes(data, label)
        table = _standardise_columns(raw, label)
        return _clean(_convert(table), table, label)

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
            frame = frame.iloc[-self.max_points:]
        # A new frame: with copy-on-write, callers may modify it without touching the cache.
        return frame.reset_index(drop=True)

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
        return self._select(self._parsed(name).frame)

    def get_prices(self, name: str) -> np.ndarray:
        """One coin's Close prices as a writable, C-contiguous float64 array, oldest first.

        Raises:
            UnknownCoinError: no such coin.
            DataFormatError: the coin's data cannot be loaded.
        """
        return np.array(self.get_df(name)["Close"].to_numpy(dtype=np.float64), dtype=np.float64, order="C")

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
        except Exception as exc:  # noqa: BLE001 - one unreadable coin must not sink the report
            logger.warning("unexpected error loading %s from %s", name, source, exc_info=True)
            report.error_type, report.error = type(exc).__name__, str(exc)
            return report
        frame = self._select(parsed.frame)
        report.rows = len(frame)
        report.dropped_rows = parsed.dropped_rows
        report.warnings = list(parsed.warnings)
        if len(frame):
            report.first_date = frame["Date"].iloc[0].date().isoformat()
            report.last_date = frame["Date"].iloc[-1].date().isoformat()
            report.gaps, report.missing_days = _gap_stats(frame["Date"].to_numpy())
        elif len(parsed.frame):
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
            coins = [self._coin_report(name, str(self.data_path)) for name in sorted(table.positions)]
            return DataReport(path=str(self.data_path), coins=coins, warnings=list(table.warnings))
        coins = [self._coin_report(name, str(path))
                 for name, path in sorted(self._coin_files(), key=lambda t: (t[0], t[1].name))]
        duplicates, messages = self._find_duplicates()
        by_name = {coin.name: coin for coin in coins}
        for group, message in zip(duplicates, messages):
            for name in group:
                if message not in by_name[name].warnings:
                    by_name[name].warnings.append(message)
        return DataReport(path=str(self.data_path), coins=coins, duplicates=[list(g) for g in duplicates],
                          skipped=list(self._skipped), warnings=list(messages))

    def data_hash(self) -> str:
        """SHA-256 (hex) of the dataset, for run manifests.

        Covers every coin file's name and bytes, in file-name order (or the
        single long-format file), so renaming or editing a coin changes it and
        adding a README does not.
        """
        digest = hashlib.sha256()
        paths = [self.data_path] if self._long else [path for _, path in self._coin_files()]
        for path in paths:
            name = path.name.encode("utf-8")
            # Length prefixes keep (name, bytes) pairs unambiguous when concatenated.
            digest.update(len(name).to_bytes(8, "big") + name)
            digest.update(path.stat().st_size.to_bytes(8, "big"))
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()
