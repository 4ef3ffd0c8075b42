"""The CoinMarketCap per-coin CSV export: reading its bytes and mapping its header.

A folder dataset holds one export per coin (``Bitcoin Cash.csv``:
``Date,Open,High,Low,Close,Volume,Market Cap``, newest first). The readers
here are shared with long-format CSVs: every column is read as text, the
header is matched onto :data:`~crypto_ml.data.schema.COLUMNS` case- and
spacing-insensitively, and a file that is not a text CSV is a
:class:`~crypto_ml.exceptions.DataFormatError` naming it and the fix.
"""

from __future__ import annotations

import codecs
import gzip
import io
import logging
import warnings
from pathlib import Path

import pandas as pd

from ..exceptions import DataFormatError
from .parsing import _convert
from .quality import _clean, _Parsed
from .schema import _COLUMN_BY_KEY, COLUMNS, REQUIRED_COLUMNS, _header_key

logger = logging.getLogger(__name__)


def _read_csv_bytes(data: bytes, label: str) -> pd.DataFrame:
    """Every column of a CSV as strings ("" for empty cells), header names stripped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        # NUL never occurs in a text CSV; it means a binary file or UTF-16.
        raise DataFormatError(
            f"{label} is not a text CSV file (it contains NUL bytes); replace it with a UTF-8 CSV export or remove it"
        )
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
            frame = pd.read_csv(
                io.BytesIO(data),
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
                skipinitialspace=True,
                index_col=False,
            )
    except pd.errors.ParserWarning:
        raise DataFormatError(
            f"{label} cannot be parsed as CSV (rows have more fields than its header); fix or remove that file"
        ) from None
    except UnicodeDecodeError:
        raise DataFormatError(
            f"{label} is not a text CSV file (it is not valid UTF-8); replace it with a UTF-8 CSV export or remove it"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{label} has no data rows (the file is empty); re-export it or remove it") from None
    except pd.errors.ParserError as exc:
        raise DataFormatError(
            f"{label} cannot be parsed as CSV ({str(exc).strip()}); fix or remove that file"
        ) from None
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


def _decompress(data: bytes, path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path.name} is not a readable gzip file ({exc}); re-compress it") from None
    return data


def _is_utf8(data: bytes) -> bool:
    """Whether ``data`` decodes as UTF-8, checked in pieces so no big string is built."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for begin in range(0, len(view), 1 << 24):
            decoder.decode(view[begin : begin + (1 << 24)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _load_coin_file(path: Path) -> _Parsed:
    """Read, convert and clean one coin file of a folder dataset."""
    label = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{label} cannot be read ({exc.strerror}); check its permissions") from None
    raw = _read_csv_bytes(data, label)
    table = _standardise_columns(raw, label)
    return _clean(_convert(table), table, label)
