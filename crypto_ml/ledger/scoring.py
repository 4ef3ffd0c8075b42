"""Scoring the ledger: every forecast step whose target date now has a price gets its score.

Per step, with the backtest's own per-step metrics (``evaluation.metrics``):
the absolute error (``absolute_errors``) and, per interval level, whether the
actual fell inside (``inside``) and the interval score on log prices
(``winkler_scores``). A backtest window's mae, coverage and winkler_score are
the means of these same numbers, so averaging the ledger's scores over the
same forecasts gives the backtest's metrics: one computation, used by both.

The actual is the coin's price ON the target date. A step whose target date
is past the coin's last price waits for a later cycle; one whose date is
inside the history but has no price (a gap, an unknown coin) is counted as
missing. A price at or below zero has no log, so such a step gets its
absolute error but no interval scores.

Scoring is idempotent: a step is scored once (``INSERT ... ON CONFLICT DO
NOTHING`` on its id), and scoring again finds nothing new. Work goes coins
in groups of about ``BATCH_ROWS`` steps, each group in one transaction.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection, Select, Table, and_, func, select

from ..evaluation.metrics import absolute_errors, inside, winkler_scores
from ..exceptions import CryptoMLError
from .database import Ledger, database_errors, insert_new
from .recording import BATCH_ROWS, RERUN_COMPLETES
from .schema import ForecastInterval, ForecastStep, IntervalScore, Score, utc_now

__all__ = ["score_matured", "ScoreCounts", "PriceSource", "actual_prices"]

log = logging.getLogger(__name__)

FORECASTS: Table = ForecastStep.__table__  # type: ignore[assignment]
INTERVALS: Table = ForecastInterval.__table__  # type: ignore[assignment]
SCORES: Table = Score.__table__  # type: ignore[assignment]
INTERVAL_SCORES: Table = IntervalScore.__table__  # type: ignore[assignment]


class DatedPrices(Protocol):
    """Anything with ``CryptoLoader.get_dated_prices``."""

    def get_dated_prices(self, name: str) -> tuple[np.ndarray, np.ndarray]: ...


#: Where actual prices come from: a loader, or a function of the coin giving (dates, prices), oldest first.
PriceSource = Callable[[str], tuple[np.ndarray, np.ndarray]] | DatedPrices


@dataclass(frozen=True)
class ScoreCounts:
    """What ``score_matured`` did.

    Attributes:
        scored: Forecast steps scored now.
        waiting: Steps whose target date has no price yet (after the coin's last price, or after ``as_of``).
        missing_actual: Steps whose target date lies within the coin's history but has no price
            (a gap in the dates, a missing value, or a coin the prices do not have).
        non_positive_actual: Of the steps scored, those whose actual was at or below zero:
            they have an absolute error but no interval scores (log prices need a positive price).
    """

    scored: int
    waiting: int
    missing_actual: int
    non_positive_actual: int = 0


def score_matured(ledger: Ledger, prices: PriceSource, *, as_of: dt.date | str | None = None) -> ScoreCounts:
    """Score every unscored forecast step whose target date has an actual price.

    Args:
        ledger: The open ledger.
        prices: A ``CryptoLoader`` (its ``get_dated_prices``), or a function
            ``coin -> (dates, prices)`` with dates as datetime64 (any unit) or
            ISO strings, oldest first.
        as_of: Score only steps whose target date is on or before this day (a
            replay scoring with the prices it has seen by then); None: every
            date the prices have.

    Returns:
        How many steps were scored, are waiting for their price, or have none.

    Raises:
        LedgerError: the database failed; the coins committed before stay scored, and a rerun completes the rest.
    """
    cutoff = None if as_of is None else np.datetime64(dt.date.fromisoformat(str(as_of)), "D")
    lookup = _price_lookup(prices)
    totals = np.zeros(4, dtype=np.int64)
    with database_errors(ledger, "scoring forecasts", RERUN_COMPLETES):
        with ledger.reading() as connection:
            pending = connection.execute(
                _unscored(select(FORECASTS.c.coin, func.count())).group_by(FORECASTS.c.coin).order_by(FORECASTS.c.coin)
            ).all()
        for coins in _chunks([(coin, int(count)) for coin, count in pending]):
            # Read prices before the transaction: on SQLite it holds the write lock, and a loader may parse files.
            actual_by_coin = {coin: lookup(coin) for coin in coins}
            with ledger.engine.begin() as connection:
                totals += _score_coins(connection, actual_by_coin, cutoff)
    counts = ScoreCounts(*(int(n) for n in totals))
    log.info(
        "scored %d forecast steps (%d waiting for a price, %d without one, %d without interval scores)",
        counts.scored,
        counts.waiting,
        counts.missing_actual,
        counts.non_positive_actual,
    )
    return counts


def actual_prices(prices: PriceSource, coin: str) -> tuple[np.ndarray, np.ndarray]:
    """The coin's (dates as datetime64[D], prices as float64) from ``prices``; empty arrays when it has none."""
    return _price_lookup(prices)(coin)


def _price_lookup(prices: PriceSource) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    read: Callable[[str], tuple[Any, Any]] = prices.get_dated_prices if hasattr(prices, "get_dated_prices") else prices

    def lookup(coin: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            dates, values = read(coin)
        except (KeyError, CryptoMLError) as exc:  # UnknownCoinError, or a coin whose file no longer parses
            log.warning("no prices to score %s with: %s", coin, exc)
            return np.empty(0, dtype="datetime64[D]"), np.empty(0)
        days = np.asarray(dates).astype("datetime64[D]")
        return days, np.asarray(values, dtype=np.float64)

    return lookup


def _chunks(pending: list[tuple[str, int]]) -> Iterator[list[str]]:
    """Coins in groups of about ``BATCH_ROWS`` unscored steps: one transaction each (a commit costs
    PostgreSQL a disk flush, so one per coin would dominate a cycle's scoring)."""
    chunk: list[str] = []
    rows = 0
    for coin, count in pending:
        if chunk and rows + count > BATCH_ROWS:
            yield chunk
            chunk, rows = [], 0
        chunk.append(coin)
        rows += count
    if chunk:
        yield chunk


def _unscored(query: Select[Any]) -> Select[Any]:
    """``query`` over forecasts, limited to the steps with no score yet (an anti-join on scores)."""
    return query.outerjoin(SCORES, SCORES.c.forecast_id == FORECASTS.c.id).where(SCORES.c.forecast_id.is_(None))


def _score_coins(
    connection: Connection, actual_by_coin: dict[str, tuple[np.ndarray, np.ndarray]], cutoff: np.datetime64 | None
) -> np.ndarray:
    """Score the matured steps of these coins; returns [scored, waiting, missing, non-positive]."""
    coins = list(actual_by_coin)
    steps = connection.execute(
        _unscored(select(FORECASTS.c.coin, FORECASTS.c.id, FORECASTS.c.target_date, FORECASTS.c.point))
        .where(FORECASTS.c.coin.in_(coins))
        .order_by(FORECASTS.c.coin, FORECASTS.c.id)
    ).all()
    ready_ids, ready_points, ready_actual = [], [], []
    n_waiting = n_missing = 0
    for coin, group in itertools.groupby(steps, key=lambda row: row[0]):
        rows = list(group)
        ids = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
        targets = np.array([row[2] for row in rows], dtype="datetime64[D]")
        points = np.fromiter((row[3] for row in rows), dtype=np.float64, count=len(rows))
        actual, waiting = _actual_on(actual_by_coin[coin], targets, cutoff)
        ready = ~waiting & np.isfinite(actual)
        n_waiting += int(np.count_nonzero(waiting))
        n_missing += int(np.count_nonzero(~waiting & ~ready))
        ready_ids.append(ids[ready])
        ready_points.append(points[ready])
        ready_actual.append(actual[ready])
    if not ready_ids or not sum(part.size for part in ready_ids):
        return np.array([0, n_waiting, n_missing, 0])
    ids, points, actual = (np.concatenate(parts) for parts in (ready_ids, ready_points, ready_actual))
    order = np.argsort(ids)
    ids, points, actual = ids[order], points[order], actual[order]
    scored_at = utc_now()
    errors = absolute_errors(actual, points)
    n_scored = 0
    for start in range(0, ids.size, BATCH_ROWS):
        part = slice(start, start + BATCH_ROWS)
        n_scored += insert_new(
            connection,
            SCORES,
            [
                {"forecast_id": int(i), "actual": float(a), "abs_error": float(e), "scored_at": scored_at}
                for i, a, e in zip(ids[part], actual[part], errors[part], strict=True)
            ],
            ("forecast_id",),
        )
    positive = actual > 0
    _score_intervals(connection, coins, ids[positive], actual[positive])
    return np.array([n_scored, n_waiting, n_missing, int(np.count_nonzero(~positive))])


def _actual_on(
    history: tuple[np.ndarray, np.ndarray], targets: np.ndarray, cutoff: np.datetime64 | None
) -> tuple[np.ndarray, np.ndarray]:
    """The price on each target date (nan where there is none), and whether the date is still to come.

    A date after the coin's last price (or after ``cutoff``) is still to come; an
    unknown coin has no last price, and its steps are missing rather than waiting.
    """
    dates, values = history
    if not dates.size:
        return np.full(targets.size, np.nan), np.zeros(targets.size, dtype=bool)
    position = np.minimum(np.searchsorted(dates, targets), dates.size - 1)
    actual = np.where(dates[position] == targets, values[position], np.nan)
    waiting = targets > dates[-1]
    if cutoff is not None:
        waiting |= targets > cutoff
    return actual, waiting


def _score_intervals(connection: Connection, coins: list[str], ids: np.ndarray, actual: np.ndarray) -> None:
    """Score the intervals of the steps ``ids`` (sorted), whose positive ``actual`` prices are given."""
    if not ids.size:
        return
    # The coins' intervals without interval scores: a superset of those of ``ids`` (a step waiting
    # for its price has intervals too), narrowed to ``ids`` below. One query, not one per step.
    query = (
        select(INTERVALS.c.forecast_id, INTERVALS.c.level, INTERVALS.c.lower, INTERVALS.c.upper)
        .join(FORECASTS, FORECASTS.c.id == INTERVALS.c.forecast_id)
        .outerjoin(
            INTERVAL_SCORES,
            and_(
                INTERVAL_SCORES.c.forecast_id == INTERVALS.c.forecast_id,
                INTERVAL_SCORES.c.level == INTERVALS.c.level,
            ),
        )
        .where(FORECASTS.c.coin.in_(coins), INTERVAL_SCORES.c.forecast_id.is_(None))
    )
    rows = connection.execute(query).all()
    if not rows:
        return
    forecast_ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    levels = np.fromiter((row[1] for row in rows), dtype=np.float64, count=len(rows))
    lower = np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows))
    upper = np.fromiter((row[3] for row in rows), dtype=np.float64, count=len(rows))
    position = np.minimum(np.searchsorted(ids, forecast_ids), ids.size - 1)
    mine = ids[position] == forecast_ids
    scored_rows: list[dict[str, Any]] = []
    for level in np.unique(levels[mine]):
        take = mine & (levels == level)
        y = actual[position[take]]
        hits = inside(y, lower[take], upper[take])
        scores = winkler_scores(y, lower[take], upper[take], float(level))
        scored_rows.extend(
            {"forecast_id": int(i), "level": float(level), "inside": bool(h), "interval_score": float(s)}
            for i, h, s in zip(forecast_ids[take], hits, scores, strict=True)
        )
    for start in range(0, len(scored_rows), BATCH_ROWS):
        insert_new(connection, INTERVAL_SCORES, scored_rows[start : start + BATCH_ROWS], ("forecast_id", "level"))
