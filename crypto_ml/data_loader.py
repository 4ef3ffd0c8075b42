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

A long-format file is converted and checked as a whole, once, on the first coin
asked for (listing the coins reads only its symbol column). Coins with nothing
to clean are then slices of its sorted columns; the others are cleaned one by
one, with the same rules, warnings and errors as coin files.
"""

from __future__ import annotations

import codecs
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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .exceptions import DataFormatError, InvalidParameterError, UnknownCoinError

if TYPE_CHECKING:
    # pyarrow is imported where it is used, so importing this module stays cheap.
    import pyarrow as pa

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
    """A long-format file converted and checked once, its rows grouped by coin.

    Coin ``names[i]`` is rows ``starts[i]:stops[i]`` of the grouped order. A
    coin flagged in ``clean`` has nothing for :func:`_clean` to fix (every Date
    and Close valid, Close positive, no junk, no Excel serials, dates strictly
    monotonic) and is stored oldest first, so its frame is a slice of
    ``columns``. Any other coin keeps its file order and goes through
    :func:`_clean`: ``permutation`` maps grouped rows to file rows, ``extra``
    holds the rest of the :func:`_convert_columns` output in file order, and
    ``raw`` the raw Date and Close to quote. The three are ``None`` when every
    coin is clean.
    """

    names: list[str]
    index: dict[str, int]
    starts: np.ndarray
    stops: np.ndarray
    clean: np.ndarray
    #: The :data:`COLUMNS` arrays, in grouped order.
    columns: dict[str, np.ndarray]
    #: The :func:`_convert_columns` column names, in its order.
    layout: list[str]
    permutation: np.ndarray | None
    extra: dict[str, np.ndarray] | None
    #: Date and Close as read: a pandas frame (CSV) or a pyarrow table (Parquet).
    raw: pd.DataFrame | pa.Table | None
    warnings: list[str]

    def span(self, number: int, label: str) -> _Span:
        """A clean coin's rows; logs at INFO what :func:`_clean` would have logged for it."""
        start, stop = int(self.starts[number]), int(self.stops[number])
        if logger.isEnabledFor(logging.INFO):
            _log_kept(label, 0, int(np.isnan(self.columns["Volume"][start:stop]).sum()),
                      int(np.isnan(self.columns["Market Cap"][start:stop]).sum()), self.columns["Date"][start:stop])
        return _Span(self, start, stop)

    def rows(self, number: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A coin's converted rows in file order and their raw Date and Close, as :func:`_clean` takes them."""
        start, stop = int(self.starts[number]), int(self.stops[number])
        source = self.permutation[start:stop]
        columns = {}
        for name in self.layout:
            if name in self.columns:
                columns[name] = self.columns[name][start:stop]
            elif name == "_row":
                # Positions in the raw rows fetched below.
                columns[name] = np.arange(stop - start)
            else:
                columns[name] = self.extra[name][source]
        # Indexed by file row, as when the coin was cut from one frame of the whole file.
        return pd.DataFrame(columns, index=source), _raw_rows(self.raw, source)


@dataclass
class _Span:
    """A clean long-format coin: rows ``start:stop`` of its table's columns, oldest first."""

    table: _LongTable
    start: int
    stop: int


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


def _column_targets(columns: list, label: str, *, extra: tuple[str, ...] = ()) -> dict[str, int]:
    """Which column (by position) holds each of :data:`COLUMNS` (plus ``extra``), in file order.

    Matching is case- and spacing-insensitive.

    Raises:
        DataFormatError: two columns mean the same thing, or ``extra``, Date or Close is missing.
    """
    wanted = dict(_COLUMN_BY_KEY)
    wanted.update({name.lower(): name for name in extra})
    targets: dict[str, int] = {}
    for position, column in enumerate(columns):
        target = wanted.get(_header_key(column))
        if target is None:
            continue
        if target in targets:
            raise DataFormatError(f"{label} has two columns that mean {target!r}; keep one of them")
        targets[target] = position
    missing = [name for name in (*extra, *REQUIRED_COLUMNS) if name not in targets]
    if missing:
        expected = ", ".join((*extra, *(c.lower().replace(" ", "_") for c in COLUMNS)) if extra else COLUMNS)
        raise DataFormatError(
            f"{label} lacks the column(s) {', '.join(missing)}; its header is "
            f"{', '.join(map(str, columns)) or '(empty)'}, expected {expected} "
            "(Open, High, Low, Volume and Market Cap are optional)"
        )
    return targets


def _standardise_columns(frame: pd.DataFrame, label: str, *, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rename columns to :data:`COLUMNS` (plus ``extra``), case- and spacing-insensitively.

    Missing optional columns are not added here; :func:`_convert` fills them with NaN.
    """
    targets = _column_targets(list(frame.columns), label, extra=extra)
    table = frame.iloc[:, list(targets.values())]
    table.columns = list(targets)
    return table


def _parse_dates(raw) -> tuple[np.ndarray, np.ndarray]:
    """Dates as datetime64[ns] midnights (NaT where unparseable) and a mask of Excel serials.

    ``raw`` is a pandas Series, or a pyarrow array straight from a Parquet file:
    its date and timestamp columns are converted natively, with no detour
    through Python objects or strings.
    """
    import pyarrow as pa

    if isinstance(raw, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_date(raw.type) or pa.types.is_timestamp(raw.type):
            # Arrow stores aware timestamps in UTC: the same wall clock the pandas
            # branch below converts them to.
            return _to_ns_midnight(raw.to_numpy(zero_copy_only=False)), np.zeros(len(raw), dtype=bool)
        if _is_text(raw.type) or pa.types.is_dictionary(raw.type) and _is_text(raw.type.value_type):
            return _parse_text_dates(raw)
        raw = raw.to_pandas()
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
    return _parse_text_dates(pa.array(raw, from_pandas=True))


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _parse_text_dates(text) -> tuple[np.ndarray, np.ndarray]:
    """Date strings, each distinct one parsed once: plain ISO days by a fast path, the rest as before.

    A long file repeats each date once per coin (10 million rows may hold a few
    thousand distinct strings; Parquet even stores them that way), so the
    strings are dictionary-encoded and only the distinct ones are parsed, by
    :func:`_iso_days` and then, for whatever it leaves, by the multi-format
    :func:`_parse_date_strings`. Both treat each string on its own, so parsing
    the distinct ones gives every row the value it would get alone.

    Args:
        text: A pyarrow string, large_string or dictionary-of-string (chunked) array.
    """
    import pyarrow as pa

    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    chunks = [chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode() for chunk in chunks]
    if not chunks:
        return np.zeros(0, dtype="datetime64[ns]"), np.zeros(0, dtype=bool)
    chunks = pa.chunked_array(chunks).unify_dictionaries().chunks
    values = chunks[0].dictionary
    # One slot more than there are values: the index of null rows (NaT, not Excel).
    out = np.full(len(values) + 1, np.datetime64("NaT"), dtype="datetime64[ns]")
    excel = np.zeros(len(values) + 1, dtype=bool)
    iso, days = _iso_days(values)
    out[:-1][iso] = _to_ns_midnight(days[iso])
    rest = np.flatnonzero(~iso)
    if rest.size:
        # As pandas would have given them: the default string dtype of the pandas in use.
        out[rest], excel[rest] = _parse_date_strings(values.take(pa.array(rest)).to_pandas())
    indices = np.concatenate([(chunk.indices.fill_null(len(values)) if chunk.null_count else chunk.indices)
                              .to_numpy(zero_copy_only=False) for chunk in chunks])
    return out[indices], excel[indices]


# Positions of the digits in "YYYY-MM-DD".
_ISO_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9])
# Strings the ISO fast path converts at a time: keeps its temporaries to some tens of MB.
_ISO_BLOCK = 1 << 20
# For years 0..9999: day number (since 1970-01-01) of 1 January, and leap years.
_YEAR_START = (np.arange(10_000) - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
_LEAP_YEAR = (np.arange(10_000) % 4 == 0) & ((np.arange(10_000) % 100 != 0) | (np.arange(10_000) % 400 == 0))
# By month number; 0 and 13 stand for any invalid month and have no days.
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0])
_DAYS_BEFORE_MONTH = np.concatenate(([0], np.cumsum(_MONTH_DAYS[:-1])))


def _iso_days(text) -> tuple[np.ndarray, np.ndarray]:
    """Which strings are exactly ``YYYY-MM-DD`` naming a real calendar day, and that day.

    The long format's normal case, read straight from the Arrow string buffers
    with numpy. Anything else -- surrounding spaces, a time part, another
    format, 2017-02-30 -- is left for :func:`_parse_date_strings`, which decides
    it exactly as before. Arrow's ``strptime`` is not used: it accepts 2017-9-1
    and rolls 2017-02-30 over to March 2, both of which the multi-format parser
    rejects, so its answers would need checking anyway.

    Args:
        text: A pyarrow string or large_string (chunked) array.

    Returns:
        A boolean mask, and datetime64[D] days (meaningless where the mask is False).
    """
    import pyarrow as pa

    masks, values = [np.zeros(0, dtype=bool)], [np.zeros(0, dtype="datetime64[D]")]
    for chunk in text.chunks if isinstance(text, pa.ChunkedArray) else [text]:
        for begin in range(0, len(chunk), _ISO_BLOCK):
            ok, day = _iso_block(chunk.slice(begin, _ISO_BLOCK))
            masks.append(ok)
            values.append(day)
    return np.concatenate(masks), np.concatenate(values)


def _iso_block(chunk) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_iso_days` for one (possibly sliced) pyarrow string array."""
    import pyarrow as pa

    n = len(chunk)
    ok = np.zeros(n, dtype=bool)
    day = np.zeros(n, dtype="datetime64[D]")
    _, offsets, data = chunk.buffers()
    if data is None:  # every string is empty or null
        return ok, day
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=width, count=chunk.offset + n + 1)[chunk.offset:]
    data = np.frombuffer(data, dtype=np.uint8)
    candidate = np.diff(offsets) == 10
    if chunk.null_count:
        candidate &= chunk.is_valid().to_numpy(zero_copy_only=False)
    if candidate.all():
        # Every string has 10 bytes, so they lie end to end: a view, no copy.
        rows = slice(None)
        chars = data[offsets[0]:offsets[-1]].reshape(n, 10)
    else:
        rows = np.flatnonzero(candidate)
        chars = data[offsets[rows][:, None] + np.arange(10)]
    digits = chars[:, _ISO_DIGITS] - np.uint8(48)  # a byte below "0" wraps around to > 9
    shaped = (digits.max(axis=1, initial=0) <= 9) & (chars[:, 4] == 45) & (chars[:, 7] == 45)  # 45 is "-"
    d = digits.T.astype(np.int64)
    # Where a row is not shaped these are garbage; clipping keeps the lookups in range.
    year = np.minimum(((d[0] * 10 + d[1]) * 10 + d[2]) * 10 + d[3], 9999)
    month = np.minimum(d[4] * 10 + d[5], 13)
    dom = d[6] * 10 + d[7]
    leap = _LEAP_YEAR[year]
    ok[rows] = shaped & (dom >= 1) & (dom <= _MONTH_DAYS[month] + (leap & (month == 2)))
    day[rows] = (_YEAR_START[year] + _DAYS_BEFORE_MONTH[month] + (leap & (month > 2)) + dom - 1).view("datetime64[D]")
    return ok, day


def _parse_date_strings(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The multi-format parser: CoinMarketCap month names, any ISO 8601 form, Excel serials."""
    n = len(raw)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    excel = np.zeros(n, dtype=bool)
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
    days = values.astype("datetime64[D]", copy=False)
    # datetime64[ns] spans 1677-09-22 .. 2262-04-11; anything beyond is a bad
    # date, not an overflow error.
    inside = (days >= np.datetime64("1678-01-01")) & (days <= np.datetime64("2262-01-01"))
    if inside.all():
        # A multiplication: several times faster than numpy's unit conversion.
        return (days.view(np.int64) * _DAY_NS).view("datetime64[ns]")
    out = np.full(values.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    out[inside] = days[inside].astype("datetime64[ns]")
    return out


def _typed_numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column (e.g. from Parquet) as floats, and a mask of infinite values."""
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    junk = np.isinf(values)
    return np.where(junk, np.nan, values), junk


def _arrow_floats(column) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_typed_numbers` for a pyarrow floating-point column, without the pandas detour."""
    values = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)  # nulls become NaN
    junk = np.isinf(values)
    # to_numpy may hand back Arrow's read-only memory: replace, do not write in place.
    return (np.where(junk, np.nan, values) if junk.any() else values), junk


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
    """Typed columns for a table with standardised names, plus the raw values needed for messages."""
    return pd.DataFrame(_convert_columns({name: table[name] for name in table.columns}, len(table)))


def _convert_columns(table: dict, n: int) -> dict[str, np.ndarray]:
    """:func:`_convert` as a dict of arrays, for columns given as pandas Series or pyarrow arrays.

    Works on one coin file or a whole long-format table at once, so a long file
    with thousands of coins is converted in a few vectorised passes.
    """
    import pyarrow as pa

    dates, excel = _parse_dates(table["Date"])
    columns: dict[str, object] = {"Date": dates}
    junk: dict[str, np.ndarray] = {}
    floats = {name: _arrow_floats(column) for name, column in table.items()
              if name in NUMERIC_COLUMNS and not isinstance(column, pd.Series) and pa.types.is_floating(column.type)}
    # Other Parquet columns go through pandas, as pandas.read_parquet would give them.
    series = {name: column if isinstance(column, pd.Series) else column.to_pandas()
              for name, column in table.items() if name in NUMERIC_COLUMNS and name not in floats}
    present = [name for name in NUMERIC_COLUMNS if name in series]
    numeric = [name for name in present if pd.api.types.is_numeric_dtype(series[name].dtype)
               and not pd.api.types.is_bool_dtype(series[name].dtype)]
    text = [name for name in present if name not in numeric]
    if text:
        # One pass over all text columns stacked end to end: the string
        # operations cost mostly per call, not per value, on files this small.
        values, bad = _text_numbers([series[name] for name in text])
        for i, name in enumerate(text):
            columns[name], junk[name] = values[i * n:(i + 1) * n], bad[i * n:(i + 1) * n]
    for name in NUMERIC_COLUMNS:
        if name in text:
            continue
        if name in floats:
            columns[name], junk[name] = floats[name]
        elif name in numeric:
            columns[name], junk[name] = _typed_numbers(series[name])
        else:
            columns[name] = np.full(n, np.nan)
            junk[name] = np.zeros(n, dtype=bool)
    # Each row's position in `table`, to quote its raw text in warnings without
    # carrying (and slicing) the text itself through cleaning.
    columns["_row"] = np.arange(n)
    columns["_excel"] = excel
    for name, mask in junk.items():
        columns[f"_junk_{name}"] = mask
    return columns


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

    clean = frame.loc[:, list(COLUMNS)].reset_index(drop=True)
    _log_kept(label, int(frame["_excel"].sum()), int(frame["Volume"].isna().sum()),
              int(frame["Market Cap"].isna().sum()), clean["Date"].to_numpy())
    return _Parsed(frame=clean, dropped_rows=dropped, warnings=found)


def _log_kept(label: str, excel: int, no_volume: int, no_cap: int, dates: np.ndarray) -> None:
    """Log at INFO the routine facts about a coin's kept rows (shared by :func:`_clean` and clean long coins)."""
    if excel:
        logger.info("%s: converted %d Excel serial date(s)", label, excel)
    if no_volume or no_cap:
        logger.info("%s: %d row(s) without Volume, %d without Market Cap (kept as NaN)", label, no_volume, no_cap)
    gaps, missing_days = _gap_stats(dates)
    if gaps:
        logger.info("%s: %d gap(s) in the dates, %d missing day(s) in all (not filled)", label, gaps, missing_days)


# --- Long format ------------------------------------------------------------------


def _symbol_ids(symbols) -> tuple[np.ndarray, list[str]]:
    """Each row's coin number (-1 for a row without a symbol) and the sorted coin names.

    Symbols that differ only in case or spacing are one coin. A text column is
    grouped through a dictionary (free when Parquet stored it as one), so each
    distinct symbol is stripped and normalised once, not once per row.

    Args:
        symbols: The symbol column, as a pandas Series or a pyarrow (chunked) array.
    """
    import pyarrow as pa

    if isinstance(symbols, pd.Series):
        if not pd.api.types.is_string_dtype(symbols.dtype) or symbols.dtype == object:
            return _symbol_ids_pandas(symbols)
        symbols = pa.array(symbols, from_pandas=True)
    chunks = symbols.chunks if isinstance(symbols, pa.ChunkedArray) else [symbols]
    if not all(_is_text(c.type) or pa.types.is_dictionary(c.type) and _is_text(c.type.value_type) for c in chunks):
        return _symbol_ids_pandas(symbols.to_pandas())
    chunks = [c if pa.types.is_dictionary(c.type) else c.dictionary_encode() for c in chunks]
    if not chunks:
        return np.zeros(0, dtype=np.int64), []
    # One dictionary for all chunks (Parquet gives one per row group), so each
    # distinct symbol is stripped and normalised once.
    chunks = pa.chunked_array(chunks).unify_dictionaries().chunks
    # Stripped by the same pandas call as a whole column would be, so the rules match exactly.
    values = chunks[0].dictionary.to_pandas().fillna("").str.strip().tolist()
    first: dict[str, int] = {}  # normalised name -> its number in order of first appearance
    lookup = np.array([first.setdefault(normalize_name(v), len(first)) if v else -1 for v in values] + [-1],
                      dtype=np.int64)
    ids = np.concatenate([lookup[(c.indices.fill_null(len(values)) if c.null_count else c.indices)
                                 .to_numpy(zero_copy_only=False)] for c in chunks])
    # Number the names that have rows in sorted order; slot len(first) stays -1 for "no symbol".
    used = np.zeros(len(first) + 1, dtype=bool)
    used[ids] = True
    names = sorted(name for name, number in first.items() if used[number])
    rank = np.full(len(first) + 1, -1, dtype=np.int64)
    rank[[first[name] for name in names]] = np.arange(len(names))
    return rank[ids], names


def _symbol_ids_pandas(symbols: pd.Series) -> tuple[np.ndarray, list[str]]:
    """:func:`_symbol_ids` for symbols that are not text (numbers, mixed objects)."""
    if not pd.api.types.is_string_dtype(symbols.dtype):
        symbols = symbols.astype("str")
    symbols = symbols.fillna("").str.strip()
    keep = np.flatnonzero((symbols != "").to_numpy(dtype=bool))
    # Group rows by integer ids, not strings, so millions of rows sort quickly.
    codes, uniques = pd.factorize(symbols.iloc[keep])
    names, name_of_code = np.unique([normalize_name(u) for u in uniques], return_inverse=True)
    ids = np.full(len(symbols), -1, dtype=np.int64)
    ids[keep] = name_of_code[codes]
    return ids, names.tolist()


def _group_coins(ids: np.ndarray, count: int, converted: dict[str, np.ndarray]):
    """Group rows by coin and find the coins :func:`_clean` would leave untouched.

    A coin is clean when none of its rows has a bad Date, a missing or
    non-positive Close, a junk value or an Excel serial date, and its dates are
    strictly rising or strictly falling (so there are no duplicates and no
    shuffling). All coins are checked at once, with whole-column numpy passes.

    Long files usually hold each coin in one run of rows, so the work is done
    per run (a stable sort of runs, not of rows) and on the file's own order.

    Args:
        ids: Each row's coin number, -1 for rows without a symbol.
        count: How many coins there are.
        converted: The :func:`_convert_columns` columns.

    Returns:
        ``starts``, ``stops``, ``clean`` (per coin) and the permutation of file
        rows that groups the coins in number order: rows in file order, except
        that a clean newest-first coin is reversed so every clean coin is
        oldest first.
    """
    n = len(ids)
    # Runs of rows with one id, in file order, then stably sorted by id.
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    run_start = np.concatenate(([0], change))
    run_stop = np.concatenate((change, [n]))
    run_id = ids[run_start]
    by = np.argsort(run_id, kind="stable")
    by = by[run_id[by] >= 0]
    run_start, run_stop, run_id = run_start[by], run_stop[by], run_id[by]
    length = run_stop - run_start
    counts = np.bincount(run_id, weights=length, minlength=count).astype(np.int64)
    stops = np.cumsum(counts)
    starts = stops - counts
    order = np.arange(int(length.sum())) + np.repeat(run_start - (np.cumsum(length) - length), length)

    dirty = np.zeros(count, dtype=bool)
    # NaN > 0 is False, so a missing Close is caught with the non-positive ones.
    flagged = np.isnat(converted["Date"]) | ~(converted["Close"] > 0) | converted["_excel"]
    for name in NUMERIC_COLUMNS:
        flagged |= converted[f"_junk_{name}"]
    flagged &= ids >= 0
    dirty[ids[flagged]] = True
    # Date steps between neighbouring rows of a coin: inside each run, then
    # from the end of one run to the start of the coin's next run.
    dates = converted["Date"].view(np.int64)
    inner = (ids[1:] == ids[:-1]) & (ids[1:] >= 0)
    step_ids, step = ids[1:][inner], np.diff(dates)[inner]
    joined = run_id[1:] == run_id[:-1]
    step_ids = np.concatenate((step_ids, run_id[1:][joined]))
    step = np.concatenate((step, dates[run_start[1:][joined]] - dates[run_stop[:-1][joined] - 1]))
    rising, falling = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    rising[step_ids[step > 0]] = True
    falling[step_ids[step < 0]] = True
    dirty[step_ids[step == 0]] = True
    clean = ~(dirty | rising & falling)

    reverse = np.flatnonzero(clean & falling)
    if reverse.size:
        size = counts[reverse]
        position = np.arange(int(size.sum())) + np.repeat(starts[reverse] - (np.cumsum(size) - size), size)
        order[position] = order[np.repeat(starts[reverse] + stops[reverse] - 1, size) - position]
    return starts, stops, clean, order


def _raw_rows(raw: pd.DataFrame | pa.Table, rows: np.ndarray) -> pd.DataFrame:
    """The raw Date and Close values at file rows ``rows``, as pandas would have read them.

    ``raw`` is a pandas frame (CSV), or a pyarrow table of the two columns (Parquet).
    """
    if isinstance(raw, pd.DataFrame):
        return raw.iloc[rows]
    import pyarrow as pa

    part = raw.take(pa.array(rows))
    for position, column in enumerate(part.columns):
        if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
            # Read as a dictionary only for speed (see _read_parquet): decode it.
            value_type = column.type.value_type
            part = part.set_column(position, part.field(position).with_type(value_type), column.cast(value_type))
    # The schema's pandas metadata comes along, so dtypes are those pandas.read_parquet gives.
    frame = part.to_pandas()
    frame.columns = ["Date", "Close"]
    return frame


def _parquet_column(table, field: str, kind):
    """One Parquet column, left in Arrow where it is converted natively, else as pandas would read it.

    Text (read dictionary-encoded), floating-point and date/timestamp columns
    stay in Arrow. Anything else goes through ``to_pandas`` with the file's
    pandas metadata, giving the dtype pandas.read_parquet gives (a Categorical,
    a nullable ``Int64``, ...), so the conversion rules are the same as before.
    """
    import pyarrow as pa

    if _is_text(kind) or pa.types.is_floating(kind) or pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return table.column(field)
    return table.select([field]).to_pandas().iloc[:, 0]


def _unreadable_parquet(label: str, exc: Exception) -> DataFormatError:
    return DataFormatError(f"{label} is not a readable Parquet file ({exc}); re-export it or pass another --data")


def _parquet_layout(path: Path, label: str):
    """A Parquet file's schema, and the field that holds each standard column.

    Columns are matched as :func:`pandas.read_parquet` would show them: names
    stripped, and the index columns pandas wrote left out (it reads them back
    as the index).

    Returns:
        The pyarrow schema and ``{standard name: field name}``.

    Raises:
        DataFormatError: the file cannot be read, or lacks a needed column.
    """
    import pyarrow.parquet as pq

    try:
        # The dataset reader, as pandas.read_parquet uses: the same errors, word for word.
        schema = pq.ParquetDataset(str(path)).schema
        metadata = schema.pandas_metadata or {}
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise _unreadable_parquet(label, exc) from None
    index = {column for column in metadata.get("index_columns", []) if isinstance(column, str)}
    fields = [name for name in schema.names if name not in index]
    targets = _column_targets([str(name).strip() for name in fields], label, extra=("symbol",))
    return schema, {target: fields[position] for target, position in targets.items()}


def _read_parquet(path: Path, label: str, columns: list[str], schema):
    """Read ``columns`` of a Parquet file as a pyarrow table; text columns come dictionary-encoded.

    A dictionary-encoded column is read as indices into its distinct values
    (Parquet usually stores it so): no per-row strings are built, and a symbol
    or date column of millions of rows has only thousands of values to convert.
    """
    import pyarrow.parquet as pq

    dictionary = [name for name in columns if _is_text(schema.field(name).type)]
    try:
        return pq.read_table(str(path), columns=columns, read_dictionary=dictionary or None)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise _unreadable_parquet(label, exc) from None


def _release_arrow_memory() -> None:
    """Hand what Arrow's allocator freed back to the system.

    Its allocator keeps freed memory for reuse: after reading a
    10-million-row file it held 1.6 GB that nothing used. A worker process
    keeps its loader, and Celery replaces a process whose peak memory passed
    CRYPTO_ML_WORKER_MAX_MEMORY_MB, so that memory would make every task start cold.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _decompress(data: bytes, path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path.name} is not a readable gzip file ({exc}); re-compress it") from None
    return data


def _csv_symbols(data: bytes, label: str):
    """A long-format CSV's symbol column, read with pyarrow alone; None when in doubt.

    None means the file has something pandas and pyarrow might read
    differently (no data rows, a malformed row, a quote inside a symbol, bytes
    that are not UTF-8, ...): the caller then does the full pandas read, which
    lists the coins or raises exactly as before.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    end = data.find(b"\n")
    first_line = data if end < 0 else data[:end]
    if b"\x00" in data or not first_line.strip() or b'"' in first_line or not _is_utf8(data):
        return None
    header = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8",
                         skipinitialspace=True, index_col=False, nrows=0)
    names = [str(column).strip() for column in header.columns]
    position = _column_targets(names, label, extra=("symbol",))["symbol"]
    # Positional names: pyarrow keeps the header's spaces, pandas strips them.
    columns = [f"c{i}" for i in range(len(names))]
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
        convert_options=pacsv.ConvertOptions(include_columns=[columns[position]],
                                             column_types={columns[position]: pa.string()}),
    )
    symbols = table.column(0).dictionary_encode()
    # pandas (skipinitialspace) unquotes ` "Bitcoin Cash"`; pyarrow keeps the quotes.
    if len(symbols) == 0 or any(pc.any(pc.match_substring(chunk.dictionary, '"')).as_py()
                                for chunk in symbols.chunks):
        return None
    return symbols


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` decodes as UTF-8, checked in pieces so no big string is built."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for begin in range(0, len(view), 1 << 24):
            decoder.decode(view[begin:begin + (1 << 24)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


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
        # A long-format file's coin names, from its symbol column alone (see get_crypto_names).
        self._names: list[str] | None = None
        self._cache: dict[str, _Parsed | _Span | _Failure] = {}
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
            _release_arrow_memory()
        return self._table

    def _read_long(self) -> _LongTable:
        """Read, convert and check the whole long-format file; each coin is then a slice of it."""
        path, label = self.data_path, self.data_path.name
        raw: pd.DataFrame | pa.Table
        if path.name.lower().endswith(".parquet"):
            # pyarrow directly rather than pandas.read_parquet: only the needed
            # columns are read, and none is turned into Python objects.
            schema, fields = _parquet_layout(path, label)
            table = _read_parquet(path, label, list(fields.values()), schema)
            columns: dict[str, object] = {target: _parquet_column(table, field, schema.field(field).type)
                                          for target, field in fields.items()}
            n = table.num_rows
            raw = table.select([fields["Date"], fields["Close"]])
            del table  # the columns above keep what is still needed
            _release_arrow_memory()  # the decompression buffers, kept by Arrow's allocator otherwise
        else:
            frame = _standardise_columns(_read_csv_bytes(_decompress(path.read_bytes(), path), label), label,
                                         extra=("symbol",))
            columns, n = {name: frame[name] for name in frame.columns}, len(frame)
            raw = frame.loc[:, ["Date", "Close"]]
        if n == 0:
            raise DataFormatError(f"{label} has no data rows (only a header); re-export it or pass another --data")
        ids, names = _symbol_ids(columns.pop("symbol"))
        found: list[str] = []
        absent = int((ids < 0).sum())
        if absent:
            message = f"dropped {absent} row(s) without a symbol"
            logger.warning("%s: %s", label, message)
            found.append(message)
        converted = _convert_columns(columns, n)
        del columns
        starts, stops, clean, permutation = _group_coins(ids, len(names), converted)
        everything_clean = bool(clean.all())
        layout = list(converted)
        if everything_clean:
            # Nothing to quote or re-clean: free the file's own columns, and each
            # converted column once gathered, so the peak stays near one copy of the data.
            raw = None
        # One gather per column puts each coin's rows together, oldest first when clean.
        grouped = {name: (converted.pop(name) if everything_clean else converted[name])[permutation]
                   for name in COLUMNS}
        extra = None if everything_clean else {name: values for name, values in converted.items()
                                                if name not in COLUMNS and name != "_row"}
        return _LongTable(names=names, index={name: i for i, name in enumerate(names)}, starts=starts,
                          stops=stops, clean=clean, columns=grouped, layout=layout,
                          permutation=None if everything_clean else permutation, extra=extra,
                          raw=raw, warnings=found)

    def _read_long_names(self) -> list[str]:
        """The coins of a long-format file from its symbol column alone.

        Anything unusual (a missing column, a corrupt file, a CSV that pyarrow
        and pandas might read differently) is left to the full read, which lists
        the coins or raises exactly as it always did.
        """
        path, label = self.data_path, self.data_path.name
        try:
            if path.name.lower().endswith(".parquet"):
                schema, fields = _parquet_layout(path, label)
                symbol = fields["symbol"]
                symbols = _parquet_column(_read_parquet(path, label, [symbol], schema), symbol,
                                          schema.field(symbol).type)
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
            return UnknownCoinError(f"{name!r} is not a coin in {self.data_path}: {skipped[key]}. "
                                    "Run `crypto-ml data list` to see all coins.")
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else f" in {self.data_path}."
        return UnknownCoinError(f"unknown coin {key!r}{hint} Run `crypto-ml data list` to see all coins.")

    def _parsed(self, name: str) -> _Parsed | _Span:
        """A coin parsed once: cleaned (:class:`_Parsed`), or a clean long-format coin's rows (:class:`_Span`)."""
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

    def _parse(self, name: str, key: str) -> _Parsed | _Span | _Failure:
        if self._long:
            table = self._long_table()
            number = table.index.get(key)
            if number is None:
                raise self._unknown(name, key, table.names)
            label = f"{self.data_path.name} [{key}]"
            if table.clean[number]:
                # Checked in _read_long: nothing for _clean to drop, sort or warn about.
                return table.span(number, label)
            loader = lambda: _clean(*table.rows(number), label)  # noqa: E731
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

    def _select_span(self, span: _Span) -> pd.DataFrame:
        """:meth:`_select` for a clean long-format coin: binary search and slicing on its sorted arrays."""
        low, high = self._span_bounds(span)
        # The dict constructor copies, so callers may modify the frame without touching the table.
        return pd.DataFrame({name: span.table.columns[name][low:high] for name in COLUMNS})

    def _span_bounds(self, span: _Span) -> tuple[int, int]:
        """The rows of the table's columns that :meth:`_select` would keep of a clean coin."""
        dates = span.table.columns["Date"][span.start:span.stop]
        low, high = 0, len(dates)
        if self.from_date is not None:
            low = int(np.searchsorted(dates, _ns_day(self.from_date), side="left"))
        if self.to_date is not None:
            high = int(np.searchsorted(dates, _ns_day(self.to_date), side="right"))
        high = max(low, high)
        if self.max_points is not None:
            low = max(low, high - self.max_points)
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
        return (np.array(frame["Date"].to_numpy(), dtype="datetime64[ns]", order="C"),
                np.array(frame["Close"].to_numpy(dtype=np.float64), dtype=np.float64, order="C"))

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
            coins = [self._coin_report(name, str(self.data_path)) for name in table.names]
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
