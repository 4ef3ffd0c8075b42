"""Long-format tables (``.csv``, ``.csv.gz``, ``.parquet``): one row per coin and day.

Columns ``symbol, date, close`` and optionally ``open, high, low, volume,
market_cap``; each normalised symbol is one coin. :func:`_read_long_table`
reads, converts and checks the whole file once and groups its rows by coin
(:class:`_LongTable`); a coin with nothing to clean is then a slice of the
sorted columns (:class:`_Span`), and the others are cleaned one by one by
:func:`~crypto_ml.data.quality._clean`. Listing the coins reads only the
symbol column (:func:`_csv_symbols`, or one Parquet column).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..exceptions import DataFormatError
from .coinmarketcap import _column_targets, _decompress, _is_utf8, _read_csv_bytes, _standardise_columns
from .parsing import _convert_columns, _is_text
from .quality import _log_kept
from .schema import COLUMNS, NUMERIC_COLUMNS, normalize_name

if TYPE_CHECKING:
    # pyarrow is imported where it is used, so importing this module stays cheap.
    import pyarrow as pa

logger = logging.getLogger(__name__)


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
            _log_kept(
                label,
                0,
                int(np.isnan(self.columns["Volume"][start:stop]).sum()),
                int(np.isnan(self.columns["Market Cap"][start:stop]).sum()),
                self.columns["Date"][start:stop],
            )
        return _Span(self, start, stop)

    def rows(self, number: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A coin's converted rows in file order and their raw Date and Close, as :func:`_clean` takes them."""
        start, stop = int(self.starts[number]), int(self.stops[number])
        # Only a coin that needs cleaning comes here, and a table with one keeps both.
        assert self.permutation is not None and self.extra is not None
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
    if not all(_is_text(c.type) or (pa.types.is_dictionary(c.type) and _is_text(c.type.value_type)) for c in chunks):
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
    lookup = np.array(
        [first.setdefault(normalize_name(v), len(first)) if v else -1 for v in values] + [-1], dtype=np.int64
    )
    ids = np.concatenate(
        [
            lookup[(c.indices.fill_null(len(values)) if c.null_count else c.indices).to_numpy(zero_copy_only=False)]
            for c in chunks
        ]
    )
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
    header = pd.read_csv(
        io.BytesIO(data),
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        skipinitialspace=True,
        index_col=False,
        nrows=0,
    )
    names = [str(column).strip() for column in header.columns]
    position = _column_targets(names, label, extra=("symbol",))["symbol"]
    # Positional names: pyarrow keeps the header's spaces, pandas strips them.
    columns = [f"c{i}" for i in range(len(names))]
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
        convert_options=pacsv.ConvertOptions(
            include_columns=[columns[position]], column_types={columns[position]: pa.string()}
        ),
    )
    symbols = table.column(0).dictionary_encode()
    # pandas (skipinitialspace) unquotes ` "Bitcoin Cash"`; pyarrow keeps the quotes.
    if len(symbols) == 0 or any(pc.any(pc.match_substring(chunk.dictionary, '"')).as_py() for chunk in symbols.chunks):
        return None
    return symbols


def _read_long_table(path: Path) -> _LongTable:
    """Read, convert and check the whole long-format file; each coin is then a slice of it."""
    label = path.name
    raw: pd.DataFrame | pa.Table | None
    if path.name.lower().endswith(".parquet"):
        # pyarrow directly rather than pandas.read_parquet: only the needed
        # columns are read, and none is turned into Python objects.
        schema, fields = _parquet_layout(path, label)
        table = _read_parquet(path, label, list(fields.values()), schema)
        columns: dict[str, object] = {
            target: _parquet_column(table, field, schema.field(field).type) for target, field in fields.items()
        }
        n = table.num_rows
        raw = table.select([fields["Date"], fields["Close"]])
        del table  # the columns above keep what is still needed
        _release_arrow_memory()  # the decompression buffers, kept by Arrow's allocator otherwise
    else:
        frame = _standardise_columns(
            _read_csv_bytes(_decompress(path.read_bytes(), path), label), label, extra=("symbol",)
        )
        columns, n = {name: frame[name] for name in frame.columns}, len(frame)
        raw = frame.loc[:, ["Date", "Close"]]
    return _build_long_table(columns, n, raw, label)


def _arrow_long_table(table: pa.Table, label: str) -> _LongTable:
    """:func:`_read_long_table` for a long table already in memory (a price store's files, a user's DataFrame).

    The columns are matched, converted and checked exactly as a Parquet file's are,
    so the same rows give the same coins, warnings and errors whatever their source.
    """
    names = [str(name) for name in table.column_names]
    targets = _column_targets([name.strip() for name in names], label, extra=("symbol",))
    fields = {target: names[position] for target, position in targets.items()}
    columns: dict[str, object] = {
        target: _parquet_column(table, field, table.schema.field(field).type) for target, field in fields.items()
    }
    raw = table.select([fields["Date"], fields["Close"]])
    return _build_long_table(columns, table.num_rows, raw, label)


def _build_long_table(
    columns: dict[str, object], n: int, raw: pd.DataFrame | pa.Table | None, label: str
) -> _LongTable:
    """Group and check a long table's standardised columns: the part every source shares."""
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
    grouped = {name: (converted.pop(name) if everything_clean else converted[name])[permutation] for name in COLUMNS}
    extra = (
        None
        if everything_clean
        else {name: values for name, values in converted.items() if name not in COLUMNS and name != "_row"}
    )
    return _LongTable(
        names=names,
        index={name: i for i, name in enumerate(names)},
        starts=starts,
        stops=stops,
        clean=clean,
        columns=grouped,
        layout=layout,
        permutation=None if everything_clean else permutation,
        extra=extra,
        raw=raw,
        warnings=found,
    )
