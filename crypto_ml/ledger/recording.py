"""Writing to the ledger: runs, and forecast records in batches, idempotently.

A forecast step is identified by (coin, model, params hash, origin date, step):
recording the same records again, from a redelivered task or a cycle run
twice for the same day, inserts nothing (``INSERT ... ON CONFLICT DO
NOTHING`` on that key). Rows go in ``BATCH_ROWS`` at a time, one statement
per table per batch, and a batch's forecasts and intervals commit together, so
an interrupted recording leaves whole records behind and a rerun completes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, insert, select, tuple_, update

from ..exceptions import InvalidParameterError
from .database import Ledger, database_errors, insert_new
from .schema import RUN_STATUSES, ForecastInterval, ForecastStep, Run, utc_now

__all__ = ["params_hash", "start_run", "finish_run", "record_forecasts", "RecordCounts", "BATCH_ROWS"]

log = logging.getLogger(__name__)

#: Forecast rows per transaction, written by one statement per table (database.insert_new): big
#: enough that a day of 100 coins x 3 models x 10 steps is one transaction (a commit costs
#: PostgreSQL a disk flush), small enough that SQLite's write lock is held for a fraction of a second.
BATCH_ROWS = 5_000

FORECASTS: Table = ForecastStep.__table__  # type: ignore[assignment]
INTERVALS: Table = ForecastInterval.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]
FORECAST_KEY = ("coin", "model", "params_hash", "origin_date", "step")
RERUN_COMPLETES = "; what was committed before stays, and running the same step again completes it"


@dataclass(frozen=True)
class RecordCounts:
    """What ``record_forecasts`` did.

    Attributes:
        inserted: Forecast steps written now.
        existing: Forecast steps already in the ledger (recorded before, by this run or another).
        skipped: Records not written because their status is not "ok" (failed coins).
    """

    inserted: int
    existing: int
    skipped: int = 0


def params_hash(params: Mapping[str, Any] | None) -> str:
    """The 16-hex-digit identity of a model's parameters: sha256 of their canonical JSON.

    Key order does not matter; ``None`` and ``{}`` (the model's defaults) are the same.
    """
    canonical = json.dumps(dict(params or {}), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def start_run(ledger: Ledger, kind: str, parameters: Mapping[str, Any], data_hash: str | None = None) -> int:
    """Record that a run (a pipeline cycle, a replay, ...) started; its status is "running" until ``finish_run``.

    Args:
        ledger: The open ledger.
        kind: What runs: ``"pipeline"``, ``"replay"``, ...
        parameters: Its settings (models, levels, horizon, data, ...); stored as JSON,
            values that are not JSON (paths, dates) as their strings.
        data_hash: The dataset's ``CryptoLoader.data_hash()``, when known.

    Returns:
        The run's id, for ``record_forecasts`` and ``finish_run``.
    """
    from .. import __version__
    from ..results import library_versions

    if not kind:
        raise InvalidParameterError("a run needs a kind, such as 'pipeline' or 'replay'")
    row = {
        "kind": kind,
        "started_at": utc_now(),
        "status": "running",
        "parameters": _json_safe(parameters),
        "data_hash": data_hash,
        "code_version": __version__,
        "library_versions": library_versions(),
    }
    with database_errors(ledger, "starting a run"), ledger.engine.begin() as connection:
        return int(connection.execute(insert(RUNS).returning(RUNS.c.id), row).scalar_one())


def finish_run(ledger: Ledger, run_id: int, status: str, summary: Mapping[str, Any] | None = None) -> None:
    """Mark a run finished: ``status`` "ok" or "failed", with a JSON summary (counts, failures).

    Raises:
        InvalidParameterError: an unknown status, or no run ``run_id``.
    """
    if status not in RUN_STATUSES or status == "running":
        raise InvalidParameterError(f"a run finishes with status 'ok' or 'failed', not {status!r}")
    values = {"status": status, "finished_at": utc_now(), "summary": None if summary is None else _json_safe(summary)}
    with database_errors(ledger, "finishing a run"), ledger.engine.begin() as connection:
        updated = connection.execute(update(RUNS).where(RUNS.c.id == run_id).values(**values)).rowcount
    if updated != 1:
        raise InvalidParameterError(f"the ledger at {ledger.url} has no run {run_id}; start_run gives the id")


def _json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(dict(value), default=str))
    return result


def record_forecasts(
    ledger: Ledger,
    run_id: int,
    records: Iterable[Mapping[str, Any]],
    params_by_model: Mapping[str, Mapping[str, Any] | None],
) -> RecordCounts:
    """Write forecast records to the ledger: one forecasts row per step, one forecast_intervals row per step and level.

    Args:
        ledger: The open ledger.
        run_id: The run recording them (``start_run``); a step already in the
            ledger keeps the run that first recorded it.
        records: Forecast records as ``forecasting.forecast_batch`` returns them:
            ``coin, model, status, forecast, dates, last_date, levels`` and
            ``lo_<L>``/``hi_<L>`` per level. Only ``status == "ok"`` ones are written.
        params_by_model: Each model's constructor parameters, as the forecast
            used them; their ``params_hash`` is part of the key. A model not in
            it ran with its defaults (``{}``).

    Returns:
        How many steps were inserted, how many were already there, and how many records were skipped.

    Raises:
        InvalidParameterError: an "ok" record without dates (no ``last_date``), or whose lists disagree in length.
        LedgerError: the database failed mid-write; batches committed before stay, and a rerun completes the rest.
    """
    hashes = {model: params_hash(params) for model, params in params_by_model.items()}
    recorded_at = utc_now()
    inserted = existing = skipped = 0
    for batch, n_skipped in _batches(records):
        skipped += n_skipped
        if not batch:
            continue
        rows: list[dict[str, Any]] = []
        intervals: list[tuple[tuple[Any, ...], float, float, float]] = []
        for record in batch:
            rows_of_record, intervals_of_record = _rows(record, hashes, run_id, recorded_at)
            rows.extend(rows_of_record)
            intervals.extend(intervals_of_record)
        with (
            database_errors(ledger, "recording forecasts", RERUN_COMPLETES),
            ledger.engine.begin() as connection,
        ):
            n_inserted = insert_new(connection, FORECASTS, rows, FORECAST_KEY)
            ids = _ids_of(connection, rows)
            insert_new(
                connection,
                INTERVALS,
                [
                    {"forecast_id": ids[key], "level": level, "lower": lower, "upper": upper}
                    for key, level, lower, upper in intervals
                ],
                ("forecast_id", "level"),
            )
        inserted += n_inserted
        existing += len(rows) - n_inserted
    log.info("recorded %d forecast steps (%d already in the ledger, %d records skipped)", inserted, existing, skipped)
    return RecordCounts(inserted=inserted, existing=existing, skipped=skipped)


def _batches(records: Iterable[Mapping[str, Any]]) -> Iterator[tuple[list[Mapping[str, Any]], int]]:
    """Whole "ok" records, about ``BATCH_ROWS`` steps at a time, with the number of other records skipped meanwhile."""
    batch: list[Mapping[str, Any]] = []
    steps = skipped = 0
    for record in records:
        if record.get("status") != "ok":
            skipped += 1
            continue
        batch.append(record)
        steps += len(record["forecast"])
        if steps >= BATCH_ROWS:
            yield batch, skipped
            batch, steps, skipped = [], 0, 0
    if batch or skipped:
        yield batch, skipped


def _rows(
    record: Mapping[str, Any], hashes: Mapping[str, str], run_id: int, recorded_at: dt.datetime
) -> tuple[list[dict[str, Any]], list[tuple[tuple[Any, ...], float, float, float]]]:
    from ..models.base import level_label

    coin, model = record["coin"], record["model"]
    points, dates, origin = record["forecast"], record.get("dates"), record.get("last_date")
    if not origin or not dates:
        raise InvalidParameterError(
            f"the {model} forecast of {coin!r} has no dates (no last_date): the ledger keys forecasts by origin "
            "date; forecast from a dataset with dates"
        )
    if len(dates) != len(points):
        raise InvalidParameterError(
            f"the {model} forecast of {coin!r} has {len(points)} steps but {len(dates)} dates; "
            "it is not a forecast record"
        )
    origin_date = dt.date.fromisoformat(origin)
    hash_ = hashes.get(model) or params_hash(None)
    rows = []
    keys = []
    for step, (point, target) in enumerate(zip(points, dates, strict=True), start=1):
        key = (coin, model, hash_, origin_date, step)
        keys.append(key)
        rows.append(
            {
                "run_id": run_id,
                "coin": coin,
                "model": model,
                "params_hash": hash_,
                "origin_date": origin_date,
                "step": step,
                "target_date": dt.date.fromisoformat(target),
                "point": float(point),
                "recorded_at": recorded_at,
            }
        )
    intervals: list[tuple[tuple[Any, ...], float, float, float]] = []
    for level in record.get("levels") or ():
        label = level_label(level)
        lower, upper = record[f"lo_{label}"], record[f"hi_{label}"]
        if len(lower) != len(points) or len(upper) != len(points):
            raise InvalidParameterError(
                f"the {model} forecast of {coin!r} has {len(points)} steps but its {label}% interval has "
                f"{len(lower)}/{len(upper)} bounds"
            )
        intervals.extend(
            (key, float(level), float(low), float(high)) for key, low, high in zip(keys, lower, upper, strict=True)
        )
    return rows, intervals


def _ids_of(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[tuple[Any, ...], int]:
    """The ids of the forecast steps ``rows`` name (inserted now or before), by key.

    One query per batch: the records' (coin, model, params_hash, origin_date)
    tuples, each standing for all of its steps.
    """
    records = sorted({(row["coin"], row["model"], row["params_hash"], row["origin_date"]) for row in rows})
    columns = [FORECASTS.c[name] for name in FORECAST_KEY]
    query = select(FORECASTS.c.id, *columns).where(tuple_(*columns[:4]).in_(records))
    return {tuple(found[1:]): int(found[0]) for found in connection.execute(query)}
