"""Parsing dates and numbers as real exports write them.

Dates: CoinMarketCap month names (``Sep 22, 2017``, ``June 4, 2017``), any ISO
8601 form (plain ``YYYY-MM-DD`` days by a numpy fast path on the Arrow
buffers), Excel serial days, and native Parquet date/timestamp columns; every
date becomes a datetime64[ns] midnight. Numbers: thousands separators, ``$``,
surrounding spaces and the missing-value tokens (``-``, ``null``, ...).
:func:`_convert_columns` turns a standardised table into typed columns plus
the masks :mod:`crypto_ml.data.quality` needs to clean it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from .schema import NUMERIC_COLUMNS

logger = logging.getLogger(__name__)

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
_DAY_NS = np.int64(86_400 * 10**9)


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
        if _is_text(raw.type) or (pa.types.is_dictionary(raw.type) and _is_text(raw.type.value_type)):
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
    if not pd.api.types.is_string_dtype(raw.dtype) or (raw.dtype == object and not _all_strings(raw)):
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
    indices = np.concatenate(
        [
            (chunk.indices.fill_null(len(values)) if chunk.null_count else chunk.indices).to_numpy(zero_copy_only=False)
            for chunk in chunks
        ]
    )
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
    width: type[np.integer] = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=width, count=chunk.offset + n + 1)[chunk.offset :]
    data = np.frombuffer(data, dtype=np.uint8)
    candidate = np.diff(offsets) == 10
    if chunk.null_count:
        candidate &= chunk.is_valid().to_numpy(zero_copy_only=False)
    if candidate.all():
        # Every string has 10 bytes, so they lie end to end: a view, no copy.
        rows: slice | np.ndarray = slice(None)
        chars = data[offsets[0] : offsets[-1]].reshape(n, 10)
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

    def fill(mask: np.ndarray, parse: Callable[[pd.Series], np.ndarray]) -> None:
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

        def by_format(part: pd.Series, fmt: str = fmt) -> np.ndarray:
            return pd.to_datetime(part, format=fmt, errors="coerce").to_numpy()

        fill(worded & todo, by_format)
    iso = todo & text.str.match(_ISO_PREFIX).to_numpy(dtype=bool)
    # utc=True lets naive and offset timestamps mix; offsets are converted to UTC.
    fill(
        iso,
        lambda part: pd.to_datetime(part, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None).to_numpy(),
    )
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

    chunks: list[pa.Array] = []
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
    columns: dict[str, np.ndarray] = {"Date": dates}
    junk: dict[str, np.ndarray] = {}
    floats = {
        name: _arrow_floats(column)
        for name, column in table.items()
        if name in NUMERIC_COLUMNS and not isinstance(column, pd.Series) and pa.types.is_floating(column.type)
    }
    # Other Parquet columns go through pandas, as pandas.read_parquet would give them.
    series = {
        name: column if isinstance(column, pd.Series) else column.to_pandas()
        for name, column in table.items()
        if name in NUMERIC_COLUMNS and name not in floats
    }
    present = [name for name in NUMERIC_COLUMNS if name in series]
    numeric = [
        name
        for name in present
        if pd.api.types.is_numeric_dtype(series[name].dtype) and not pd.api.types.is_bool_dtype(series[name].dtype)
    ]
    text = [name for name in present if name not in numeric]
    if text:
        # One pass over all text columns stacked end to end: the string
        # operations cost mostly per call, not per value, on files this small.
        values, bad = _text_numbers([series[name] for name in text])
        for i, name in enumerate(text):
            columns[name], junk[name] = values[i * n : (i + 1) * n], bad[i * n : (i + 1) * n]
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
