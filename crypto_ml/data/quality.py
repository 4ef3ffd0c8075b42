"""Cleaning one coin's rows, and the data-quality report.

:func:`_clean` drops bad rows, resolves duplicates and row order, and logs
what it did (routine facts at INFO, anything dropped or unexplained at
WARNING); :class:`CoinReport` and :class:`DataReport` record the same for
:meth:`~crypto_ml.data.CryptoLoader.report`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..exceptions import DataFormatError
from .parsing import _DAY_NS
from .schema import COLUMNS, NUMERIC_COLUMNS

logger = logging.getLogger(__name__)

# How many bad values a warning quotes: enough to recognise the problem.
_EXAMPLES = 3


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
        warn(
            f"dropped {count} row(s) with an unparseable Date (first: {examples}); "
            "expected dates like 'Sep 22, 2017' or 2017-09-22"
        )
        frame, dropped = frame[~bad_date], dropped + count
    close = frame["Close"].to_numpy()
    bad_close = np.isnan(close)
    if bad_close.any():
        count = int(bad_close.sum())
        warn(
            f"dropped {count} row(s) with a missing or non-numeric Close "
            f"(first: {_examples(raw['Close'], frame['_row'].to_numpy()[bad_close])})"
        )
        frame, dropped = frame[~bad_close], dropped + count
    close = frame["Close"].to_numpy()
    not_positive = close <= 0
    if not_positive.any():
        count = int(not_positive.sum())
        first = frame[not_positive].iloc[0]
        warn(
            f"dropped {count} row(s) with Close <= 0 (e.g. {first['Close']:g} on {first['Date'].date()}); "
            "a price must be positive"
        )
        frame, dropped = frame[~not_positive], dropped + count
    if frame.empty:
        raise DataFormatError(
            f"{label} has no valid rows: all {total} rows have a bad Date or Close "
            "(see the warnings above); fix the file or remove it"
        )

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
        warn(
            f"{min(rising, falling)} row(s) out of order (the file is neither newest- nor oldest-first); sorted by Date"
        )
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
    _log_kept(
        label,
        int(frame["_excel"].sum()),
        int(frame["Volume"].isna().sum()),
        int(frame["Market Cap"].isna().sum()),
        clean["Date"].to_numpy(),
    )
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
