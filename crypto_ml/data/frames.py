"""Prices already in memory: a long-format pandas DataFrame as a long table, and as a file workers can read.

A notebook user should not have to write a file to forecast. The frame goes
through the same column matching, conversion and checks as a long-format
Parquet file (:func:`~crypto_ml.data.long_table._arrow_long_table`), so it gets
the same repairs, warnings and errors. statsforecast's ``unique_id, ds, y``
columns are accepted as ``symbol, date, close``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..exceptions import DataFormatError, InvalidParameterError
from .files import write_atomic

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["frame_to_arrow", "frame_hash", "write_frame_file", "STATSFORECAST_COLUMNS"]

#: statsforecast's long format, and the columns it stands for here.
STATSFORECAST_COLUMNS = {"unique_id": "symbol", "ds": "date", "y": "close"}


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table with ``symbol, date, close, ...`` columns, ready for the long-table checks.

    Raises:
        InvalidParameterError: ``frame`` is not a DataFrame.
        DataFormatError: it has no rows, or neither ``symbol/date/close`` nor ``unique_id/ds/y``.
    """
    import pyarrow as pa

    if not isinstance(frame, pd.DataFrame):
        raise InvalidParameterError(f"from_frame takes a pandas DataFrame in long format, got {type(frame).__name__}")
    if any(name is not None for name in frame.index.names) and not isinstance(frame.index, pd.RangeIndex):
        # Coins or dates kept in the index (e.g. after a groupby) are columns to us.
        frame = frame.reset_index()
    lowered = {str(column).strip().lower(): column for column in frame.columns}
    if "symbol" not in lowered and set(STATSFORECAST_COLUMNS) <= set(lowered):
        frame = frame.rename(columns={lowered[old]: new for old, new in STATSFORECAST_COLUMNS.items()})
    if not len(frame):
        raise DataFormatError("the DataFrame has no rows; pass one row per coin and day")
    frame = frame.rename(columns=lambda column: str(column))
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Mixed objects (numbers beside "-" or "n/a") cannot become one Arrow type: as
        # text they go through the same parsing a CSV's cells do, and bad ones are named.
        text = frame.copy()
        for column in text.select_dtypes(include="object").columns:
            text[column] = text[column].map(_as_text)
        return pa.Table.from_pandas(text, preserve_index=False)


def _as_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def frame_hash(table: pa.Table) -> str:
    """sha256 of a table's rows and schema, as Arrow's IPC stream writes them."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def write_frame_file(table: pa.Table, folder: Path, digest: str) -> Path:
    """Write ``table`` to ``folder/<digest>.parquet`` once (atomically), and return the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.parquet"
    if not path.exists():  # named by content: an existing file already holds these rows
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(path, sink.getvalue().to_pybytes())
    return path
