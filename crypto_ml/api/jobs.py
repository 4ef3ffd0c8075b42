"""The job store: API jobs, their progress and their results, in the ledger's database.

A job is created ``queued`` by the request that submits it, then planned,
sent and collected by a ``runner.JobRunner`` (``running``), and ends
``succeeded``, ``failed`` (the job as a whole could not run: its error says
why) or ``cancelled``. A job that succeeded may still hold failed coins: a
failure on one coin stays local, as everywhere in crypto_ml.

Results are stored as they are collected, one row per record, unique per
(job, record key): storing the same records again, after a restart or a
redelivered task, adds nothing. That, not the result backend (which expires
results), is where a finished job's results live.

The stored ``request`` is what the routes normalised; the runner reads from it:

* forecast: ``coins`` (a list, or None / ``"all"`` for every coin), ``model``, ``horizon``,
  ``levels``, ``params``, ``from_store``;
* backtest: ``coins``, ``models``, ``horizon``, ``windows``, ``step``, ``levels``, ``params``.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, bindparam, func, insert, select, update

from ..exceptions import InvalidParameterError, TooManyJobsError, UnknownJobError
from ..ledger.database import Ledger, database_errors, insert_new
from ..ledger.schema import utc_now
from .keys import ApiKey
from .schema import JOB_KINDS, ApiKeyRow, Job, JobResult, JobTask

__all__ = [
    "JOB_KINDS",
    "ACTIVE",
    "TERMINAL",
    "POSITION_STRIDE",
    "RETRY_AFTER_SECONDS",
    "create_job",
    "job_document",
    "list_jobs",
    "cancel_job",
    "store_records",
    "store_job_records_in",
    "status_url",
]

#: Statuses of a job still in progress: they count against the key's concurrent jobs, and a runner collects them.
ACTIVE = ("queued", "running")
#: Statuses a job ends in.
TERMINAL = ("succeeded", "failed", "cancelled")

#: A result's position is the coin's place in the request times this, plus the record's place among the
#: coin's: room for a million records per coin (a backtest has models x windows of them).
POSITION_STRIDE = 1_000_000

#: Seconds a client over its concurrent-job limit is told to wait: a small forecast job takes about that.
RETRY_AFTER_SECONDS = 5

#: The most jobs one page of ``list_jobs`` returns.
MAX_PAGE = 100

JOBS: Table = Job.__table__  # type: ignore[assignment]
TASKS: Table = JobTask.__table__  # type: ignore[assignment]
RESULTS: Table = JobResult.__table__  # type: ignore[assignment]
KEYS: Table = ApiKeyRow.__table__  # type: ignore[assignment]

#: One stored record: (record key, coin, position, status, record).
StoredRecord = tuple[str, str, int, str, dict[str, Any]]

# The statements every request runs, built once with bound parameters: SQLAlchemy then reuses their
# compiled form without rebuilding them and their cache keys on each call (measured: a third of
# ``create_job``'s CPU went to building its INSERT).

#: The key's row, locked: two submits of one key take turns.
_LOCK_KEY = select(KEYS.c.revoked_at).where(KEYS.c.id == bindparam("key_id")).with_for_update()

#: How many jobs of the key are queued or running.
_ACTIVE_JOBS = (
    select(func.count())
    .select_from(JOBS)
    .where(JOBS.c.api_key_id == bindparam("key_id"), JOBS.c.status.in_(ACTIVE))
    .scalar_subquery()
)

_NEW_JOB_COLUMNS = (
    "id",
    "api_key_id",
    "kind",
    "status",
    "request",
    "total",
    "done",
    "created_at",
    "owner",
    "heartbeat_at",
)

#: The new job, inserted only while the key is under its limit. The count and the insert are one
#: statement, run after the lock: the lock is held one round trip less, and every submit of a key
#: waits on it. (Not in the locking statement itself: on PostgreSQL that one's snapshot predates
#: the wait, and would miss the job of the submit it waited for.)
_INSERT_IF_ROOM = (
    insert(JOBS)
    .from_select(
        list(_NEW_JOB_COLUMNS),
        select(*(bindparam(column, type_=JOBS.c[column].type) for column in _NEW_JOB_COLUMNS)).where(
            bindparam("max_active") > _ACTIVE_JOBS
        ),
    )
    .returning(JOBS.c.id)
)

#: A job of a key, by id.
_JOB_OF_KEY = select(JOBS).where(JOBS.c.id == bindparam("job_id"), JOBS.c.api_key_id == bindparam("key_id"))

#: A job's records in request order.
_RECORDS = (
    select(RESULTS.c.status, RESULTS.c.record)
    .where(RESULTS.c.job_id == bindparam("job_id"))
    .order_by(RESULTS.c.position, RESULTS.c.id)
)


def status_url(job_id: str) -> str:
    """Where a client follows the job: ``/v1/jobs/<id>``."""
    return f"/v1/jobs/{job_id}"


def create_job(
    ledger: Ledger, key: ApiKey, kind: str, request: dict[str, Any], total: int, *, owner: str, max_active: int
) -> str:
    """Store a new job, ``queued``, if the key is under its limit of active jobs.

    The count and the insert are one transaction (one statement, after the lock); on PostgreSQL it locks the
    key's row first (SQLite lets one writer in at a time anyway), so two
    submits at the same moment cannot both pass the limit.

    Args:
        ledger: The open ledger.
        key: The key submitting it (``auth``), the job's owner for every later call.
        kind: ``"forecast"`` or ``"backtest"``.
        request: The normalised request, JSON-safe (see the module's docstring).
        total: Coins the job covers (the runner corrects it once planned).
        owner: The runner that will collect it (``JobRunner.owner``): it starts at once, without
            waiting for a lease to run out.
        max_active: Jobs the key may have queued or running at once.

    Returns:
        The job's id (32 hex digits).

    Raises:
        TooManyJobsError: the key has ``max_active`` jobs queued or running already.
        InvalidParameterError: an unknown kind, a negative total, or a key no longer active.
    """
    if kind not in JOB_KINDS:
        raise InvalidParameterError(f"unknown job kind {kind!r}; use one of: {', '.join(JOB_KINDS)}")
    if total < 0:
        raise InvalidParameterError(f"a job covers zero or more coins, not {total!r}")
    job_id = uuid.uuid4().hex
    now = utc_now()
    row = {
        "id": job_id,
        "api_key_id": key.id,
        "kind": kind,
        "status": "queued",
        "request": request,
        "total": total,
        "done": 0,
        "created_at": now,
        "owner": owner,
        "heartbeat_at": now,
    }
    with database_errors(ledger, "creating a job"), ledger.engine.begin() as connection:
        found = connection.execute(_LOCK_KEY, {"key_id": key.id}).first()
        if found is None or found.revoked_at is not None:
            raise InvalidParameterError(f"API key {key.name!r} is revoked; create a new one with `crypto-ml apikey`")
        if connection.execute(_INSERT_IF_ROOM, {**row, "key_id": key.id, "max_active": max_active}).first() is None:
            count = connection.execute(select(_ACTIVE_JOBS), {"key_id": key.id}).scalar_one()
            raise TooManyJobsError(
                f"API key {key.name!r} has {count} jobs queued or running, its limit; "
                "wait for one to finish or cancel one",
                retry_after=RETRY_AFTER_SECONDS,
            )
    return job_id


def job_document(ledger: Ledger, job_id: str, key_id: int, *, with_results: bool | None = None) -> dict[str, Any]:
    """The job as ``GET /v1/jobs/{id}`` shows it.

    Args:
        ledger: The open ledger.
        job_id: The job's id.
        key_id: The caller's key: another key's job is reported as missing.
        with_results: Include ``results`` and ``failures``; None includes them once the job is terminal.

    Returns:
        ``job_id, kind, status, request, progress {done, total}, created_at, started_at, finished_at,
        seconds, error, status_url, results, failures``: timestamps in ISO 8601 UTC, ``seconds`` from
        submission to the end (or to now), ``results``/``failures`` the records in request order
        (None when not included).

    Raises:
        UnknownJobError: no such job for this key.
    """
    with database_errors(ledger, "reading a job"), ledger.reading(autocommit=True) as connection:
        row = _job_row(connection, job_id, key_id)
        document = _document(row)
        if with_results is None:
            with_results = row.status in TERMINAL
        if with_results:
            document["results"], document["failures"] = _results(connection, job_id)
    return document


def list_jobs(
    ledger: Ledger, key_id: int, *, limit: int = 20, before: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The key's jobs, newest first, a page at a time, without their results.

    Args:
        ledger: The open ledger.
        key_id: The caller's key.
        limit: Jobs per page, 1 to 100.
        before: The cursor a previous page returned: the jobs older than that one.

    Returns:
        The page's job documents, and the cursor of the next page (None when this is the last).

    Raises:
        InvalidParameterError: ``limit`` out of range, or a cursor that is not one of the key's jobs.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidParameterError(f"limit must be between 1 and {MAX_PAGE}, got {limit!r}")
    query = select(JOBS).where(JOBS.c.api_key_id == key_id)
    with database_errors(ledger, "listing jobs"), ledger.reading(autocommit=True) as connection:
        if before is not None:
            cursor = connection.execute(
                select(JOBS.c.created_at).where(JOBS.c.id == before, JOBS.c.api_key_id == key_id)
            ).first()
            if cursor is None:
                raise InvalidParameterError(
                    f"cursor {before!r} is not a job of this API key; pass the next_cursor of the previous page"
                )
            # (created_at, id) is a total order, so jobs created in the same microsecond are neither lost nor repeated.
            query = query.where(
                (JOBS.c.created_at < cursor.created_at)
                | ((JOBS.c.created_at == cursor.created_at) & (JOBS.c.id < before))
            )
        rows = connection.execute(query.order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc()).limit(limit + 1)).all()
    page = [_document(row) for row in rows[:limit]]
    return page, (page[-1]["job_id"] if len(rows) > limit else None)


def cancel_job(ledger: Ledger, job_id: str, key_id: int) -> tuple[dict[str, Any], list[str]]:
    """Cancel a job that is queued or running; a finished job stays as it is (cancelling is idempotent).

    Results already stored stay, and show in the document.

    Returns:
        The job's document, and the ids of its tasks not yet collected, for the caller to revoke
        (``app.control.revoke``): planned ones included, as a runner may be sending them right now.

    Raises:
        UnknownJobError: no such job for this key.
    """
    with database_errors(ledger, "cancelling a job"), ledger.engine.begin() as connection:
        _job_row(connection, job_id, key_id)
        cancelled = connection.execute(
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE))
            .values(status="cancelled", finished_at=utc_now())
        ).rowcount
        task_ids: list[str] = []
        if cancelled:
            task_ids = list(
                connection.execute(
                    select(TASKS.c.task_id)
                    .where(TASKS.c.job_id == job_id, TASKS.c.state != "collected")
                    .order_by(TASKS.c.batch_index)
                ).scalars()
            )
    return job_document(ledger, job_id, key_id), task_ids


def store_records(ledger: Ledger, job_id: str, records: Sequence[StoredRecord]) -> int:
    """Store result records of a job, each once, and update its progress.

    Args:
        ledger: The open ledger.
        job_id: The job.
        records: ``(record_key, coin, position, status, record)`` tuples; a record key already
            stored for the job is skipped, whatever the record now says.

    Returns:
        How many records were new.
    """
    with database_errors(ledger, "storing job results"), ledger.engine.begin() as connection:
        return store_records_in(connection, job_id, records)


def store_records_in(connection: Connection, job_id: str, records: Sequence[StoredRecord]) -> int:
    """``store_records`` inside the caller's transaction (the runner marks the task collected in the same one)."""
    return store_job_records_in(connection, {job_id: records})


def store_job_records_in(connection: Connection, records_by_job: Mapping[str, Sequence[StoredRecord]]) -> int:
    """Store the records of several jobs in the caller's transaction: one insert, one progress update.

    The runner collects every finished task of every job it owns in one tick; one statement for
    all of them costs a round trip where one per job cost one each.

    Args:
        connection: A connection inside a transaction.
        records_by_job: Each job's ``(record_key, coin, position, status, record)`` tuples.

    Returns:
        How many records were new, over all the jobs.
    """
    now = utc_now()
    rows = [
        {
            "job_id": job_id,
            "record_key": record_key,
            "coin": coin,
            "position": position,
            "status": status,
            "record": json_safe(record),
            "stored_at": now,
        }
        for job_id, records in records_by_job.items()
        for record_key, coin, position, status, record in records
    ]
    new = insert_new(connection, RESULTS, rows, ("job_id", "record_key"))
    if new:
        # Correlated with the updated row: each job counts its own coins.
        done = select(func.count(func.distinct(RESULTS.c.coin))).where(RESULTS.c.job_id == JOBS.c.id).scalar_subquery()
        job_ids = sorted({row["job_id"] for row in rows})
        connection.execute(update(JOBS).where(JOBS.c.id.in_(job_ids)).values(done=done))
    return new


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: JSON has neither, and PostgreSQL refuses them.

    (A backtest's scaled error is NaN on flat prices, for one.)
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _job_row(connection: Connection, job_id: str, key_id: int) -> Row[Any]:
    row = connection.execute(_JOB_OF_KEY, {"job_id": job_id, "key_id": key_id}).first()
    if row is None:
        raise UnknownJobError(f"no job {job_id!r} for this API key; GET /v1/jobs lists yours")
    return row


def _document(row: Row[Any]) -> dict[str, Any]:
    end = row.finished_at or utc_now()
    return {
        "job_id": row.id,
        "kind": row.kind,
        "status": row.status,
        "request": row.request,
        "progress": {"done": row.done, "total": row.total},
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "seconds": round(max((end - row.created_at).total_seconds(), 0.0), 3),
        "error": row.error,
        "status_url": status_url(row.id),
        "results": None,
        "failures": None,
    }


def _results(connection: Connection, job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for status, record in connection.execute(_RECORDS, {"job_id": job_id}):
        (results if status == "ok" else failures).append(record)
    return results, failures


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")
