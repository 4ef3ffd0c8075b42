"""A loader's whole dataset turned into an entry's arrays, while the data's hash is checked beside it.

A tidy Parquet long table is read in three columns; anything else goes coin by
coin through the loader. Whichever way, the arrays hold exactly what :meth:`CryptoLoader.get_dated_prices`
returns for every coin, and each failing coin's error type and message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import exceptions
from .entry import _Arrays

if TYPE_CHECKING:
    from ..loader import CryptoLoader

__all__ = ["Uncacheable"]


class Uncacheable(Exception):
    """The dataset cannot be stored as arrays faithfully (an unexpected error type); the caller uses the loader."""


def _build(loader: CryptoLoader, verify: Callable[[], None] | None) -> _Arrays:
    """Parse the whole dataset through ``loader``, while ``verify`` hashes the file in a thread."""
    problem: list[BaseException] = []

    def check() -> None:
        try:
            verify()  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - handed to the building thread below
            problem.append(exc)

    checker = threading.Thread(target=check, name="crypto-ml-dataset-hash") if verify is not None else None
    if checker is not None:
        checker.start()
    try:
        arrays = _parse(loader)
    except BaseException:
        if checker is not None:
            checker.join()
            if problem:  # the data is not the producer's: that is what the caller must hear
                raise problem[0] from None
        raise
    if checker is not None:
        checker.join()
        if problem:
            raise problem[0]
    return arrays


def _parse(loader: CryptoLoader) -> _Arrays:
    """Every coin's dates and prices, exactly as ``loader`` returns them: by the quick path when it applies."""
    quick = _parse_simple_parquet(loader)
    return quick if quick is not None else _parse_each_coin(loader)


def _parse_simple_parquet(loader: CryptoLoader) -> _Arrays | None:
    """A Parquet long table whose every coin the loader would slice untouched, read in three columns; else None.

    The loader converts and checks all of a file's columns, but only Date and
    Close reach a forecast, and the other columns can change nothing but a coin's
    cleanliness: a float column only through an infinite value, which its Parquet
    statistics rule out without reading it. So when every other numeric column
    is a float column whose statistics are finite, and each coin is one run of
    rows with valid dates strictly rising and positive Close prices (the
    loader's own conversions decide what is valid), the coins are exactly these
    slices. Anything else (one row group without statistics, a coin in several
    runs or newest first, a bad row) returns None and the loader does the work.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..long_table import _parquet_column, _parquet_layout, _read_parquet
    from ..parsing import _arrow_floats, _parse_dates
    from ..schema import NUMERIC_COLUMNS

    path = loader.data_path
    if path is None or not path.is_file() or not path.name.lower().endswith(".parquet"):
        return None
    try:
        schema, fields = _parquet_layout(path, path.name)
        metadata = pq.ParquetFile(str(path)).metadata
        others = [fields[name] for name in NUMERIC_COLUMNS if name != "Close" and name in fields]
        if not pa.types.is_floating(schema.field(fields["Close"]).type):
            return None
        for name in others:
            if not pa.types.is_floating(schema.field(name).type) or not _finite_statistics(metadata, name):
                return None
        table = _read_parquet(path, path.name, [fields["symbol"], fields["Date"], fields["Close"]], schema)
    except exceptions.CryptoMLError:
        return None  # the loader raises it, word for word
    if table.num_rows == 0:
        return None
    runs = _symbol_runs(_parquet_column(table, fields["symbol"], schema.field(fields["symbol"]).type))
    if runs is None:
        return None
    starts, run_ids, names = runs
    stops = np.append(starts[1:], table.num_rows)
    one_run_each = len(run_ids) == len(names) and run_ids.min() >= 0 and len(np.unique(run_ids)) == len(names)
    if not one_run_each:
        return None
    dates, excel = _parse_dates(_parquet_column(table, fields["Date"], schema.field(fields["Date"]).type))
    close, junk = _arrow_floats(table.column(fields["Close"]))
    del table
    change = starts[1:]
    # Everything the loader flags in Date or Close: NaT, Excel serials, a missing, non-positive or infinite Close.
    if np.isnat(dates).any() or excel.any() or junk.any() or not (close > 0).all():
        return None
    steps = np.diff(dates.view(np.int64))
    steps[change - 1] = 1  # a step from one coin to the next is not a coin's step
    if not (steps > 0).all():
        return None
    order = np.argsort(run_ids)  # coins in name order, each one run of rows, oldest first
    lengths = (stops - starts)[order]
    return _Arrays(
        names=names,
        failures={},
        offsets=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        dates=np.concatenate([dates[starts[i] : stops[i]] for i in order]),
        close=np.concatenate([close[starts[i] : stops[i]] for i in order]),
    )


def _symbol_runs(symbols: Any) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """The runs of rows with one coin: their first rows, their coin numbers and the coin names; None if not simple.

    The same numbers and names as :func:`~crypto_ml.data.long_table._symbol_ids`
    gives the rows, computed from each run's first row only: rows with the same
    dictionary index hold the same symbol. A column that is not dictionary
    encoded or has nulls returns None.
    """
    import pyarrow as pa

    from ..long_table import _symbol_ids

    chunks = symbols.chunks if isinstance(symbols, pa.ChunkedArray) else None
    if not chunks or symbols.null_count or not all(pa.types.is_dictionary(chunk.type) for chunk in chunks):
        return None
    heads, offset = [], 0
    for chunk in chunks:
        if len(chunk):
            indices = chunk.indices.to_numpy(zero_copy_only=False)
            heads.append(np.concatenate(([0], np.flatnonzero(indices[1:] != indices[:-1]) + 1)) + offset)
        offset += len(chunk)
    if not heads:
        return None
    first_rows = np.concatenate(heads)
    head_ids, names = _symbol_ids(symbols.take(pa.array(first_rows)))
    # A run split by a row group boundary, or one coin spelt two ways in a row, is one run.
    keep = np.concatenate(([True], head_ids[1:] != head_ids[:-1]))
    return first_rows[keep], head_ids[keep], names


def _finite_statistics(metadata: Any, column: str) -> bool:
    """Whether every row group's statistics of ``column`` prove it holds no infinite value."""
    position = metadata.schema.names.index(column) if column in metadata.schema.names else None
    if position is None:
        return False
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(position)
        stats = chunk.statistics
        if stats is None:
            return False
        if not stats.has_min_max:
            if stats.has_null_count and stats.null_count == chunk.num_values:
                continue  # nothing but nulls
            return False
        if not (np.isfinite(stats.min) and np.isfinite(stats.max)):
            return False
    return True


def _parse_each_coin(loader: CryptoLoader) -> _Arrays:
    """Every coin through the loader's public API, so the cache holds exactly what it would return."""
    names: list[str] = []
    failures: dict[str, tuple[str, str]] = {}
    dates: list[np.ndarray] = []
    close: list[np.ndarray] = []
    for name in loader.get_crypto_names():
        try:
            coin_dates, coin_close = loader.get_dated_prices(name)
        except exceptions.CryptoMLError as exc:
            kind = type(exc).__name__
            if getattr(exceptions, kind, None) is not type(exc) or isinstance(exc, KeyError):
                # Re-raised from a name and a message, it must be the same class with the same str().
                raise Uncacheable(f"{name}: {kind}") from exc
            failures[name] = (kind, str(exc))
            continue
        names.append(name)
        dates.append(coin_dates)
        close.append(coin_close)
    lengths = np.fromiter((len(d) for d in dates), dtype=np.int64, count=len(dates))
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return _Arrays(
        names=names,
        failures=failures,
        offsets=offsets,
        dates=np.concatenate(dates) if dates else np.zeros(0, dtype="datetime64[ns]"),
        close=np.concatenate(close) if close else np.zeros(0, dtype=np.float64),
    )
