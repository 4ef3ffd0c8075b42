"""The job runner: one thread per API process that plans, sends, collects and resumes jobs.

A job's whole state is in the database (``jobs``, ``job_tasks``,
``job_results``); the runner only moves it along. Each tick it:

1. heartbeats the active jobs it owns, every third of ``api_job_lease_seconds``;
2. claims active jobs whose owner's heartbeat is older than the lease: their
   process died (or was stopped), and this one carries on;
3. plans each queued job it owns (``CryptoManager.plan``): the coins that
   cannot be loaded become failure records at once, every batch becomes a
   ``job_tasks`` row with its own task id (``<job id>.<batch index>``) and its
   JSON payload, all in one transaction with the job going ``running``;
4. sends every planned task under that id, then marks it sent: a process that
   dies in between sends it again after a restart, under the same id, and the
   result is stored once all the same;
5. collects: asks the result backend for all its sent tasks at once (one Redis
   ``MGET``), turns each finished one into records, exactly as the CLI writes
   them, and stores them, marking the task collected in the same transaction;
6. marks a job whose tasks are all collected ``succeeded``.

Exactly once is the database's doing: ``job_results`` is unique per (job,
record key), so a task collected twice, by a restarted process or two
processes that both thought they owned the job, stores its records once. A
database or broker failure in a tick is logged and the tick retried; it never
ends the thread.

A heartbeat is compared with the clock of the process asking, in UTC: the API
hosts' clocks must agree to well within the lease (NTP does; the default lease
is 15 s).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row, Table, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..exceptions import CryptoMLError, EngineError, LedgerError
from ..ledger.database import Ledger
from ..ledger.lock import default_holder
from ..ledger.schema import utc_now
from ..records import failure_record
from .jobs import ACTIVE, POSITION_STRIDE, StoredRecord, store_records_in
from .schema import Job, JobTask

__all__ = ["JobRunner", "TASK_FUNCTIONS", "MANAGER_MAX_AGE_SECONDS"]

log = logging.getLogger(__name__)

JOBS: Table = Job.__table__  # type: ignore[assignment]
TASKS: Table = JobTask.__table__  # type: ignore[assignment]

#: The batch task each kind of job runs (``crypto_ml.<name>`` on the workers).
TASK_FUNCTIONS = {"forecast": "forecast_batch", "backtest": "backtest_batch"}

#: Seconds a runner's manager is used before a fresh one replaces it: it caches the dataset's prices
#: (a pipeline updates them daily) and the number of workers answering (batches are sized to it).
MANAGER_MAX_AGE_SECONDS = 60.0

#: Seconds a runner waits after a failed tick: the database or the broker is down, and asking
#: ten times a second would only flood the log.
RETRY_SECONDS = 2.0

#: Task ids asked of the result backend per request.
FETCH_CHUNK = 1_000

#: Celery's ready states: the task will not change any more.
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def _infrastructure_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "the database or the broker is unreachable now", not "this job is wrong"."""
    from kombu.exceptions import OperationalError as BrokerError

    errors: tuple[type[BaseException], ...] = (SQLAlchemyError, LedgerError, BrokerError, OSError)
    try:
        import redis.exceptions
    except ImportError:
        return errors
    return (*errors, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class JobRunner:
    """Moves this process's jobs from queued to finished, and takes over those of dead processes.

    Args:
        ledger: The open ledger holding the jobs.
        owner: This runner's name in ``jobs.owner``; None: ``host:pid:random``, never shared.
        poll_interval: Seconds between ticks when nothing wakes it.
        manager_factory: Builds the ``CryptoManager`` that plans the tasks; None:
            ``CryptoManager(engine="celery")`` on the settings' dataset. One is reused for
            ``MANAGER_MAX_AGE_SECONDS``.

    Use ``start()`` once, ``wake()`` when a job was created, ``stop()`` at shutdown.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        owner: str | None = None,
        poll_interval: float = 0.1,
        manager_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.ledger = ledger
        self.owner = owner or default_holder()
        self.poll_interval = poll_interval
        self._manager_factory = manager_factory
        self._manager: Any = None
        self._manager_built = 0.0
        # Each owned job's checked task keys (model, horizon, ...), built from its request once.
        self._tasks: dict[str, dict[str, Any]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_heartbeat = float("-inf")
        self._errors = _infrastructure_errors()

    def start(self) -> JobRunner:
        """Start the runner's thread (a daemon: it never keeps the process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="crypto-ml-job-runner", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        """Tick now rather than after ``poll_interval``: a job was just created."""
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        """Stop the thread, and hand this runner's active jobs over to any other runner at once.

        Their owner is cleared, so another process (or this one restarted) claims them on
        its next tick instead of waiting for the lease to lapse.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("job runner %s did not stop within %gs; its jobs are taken over later", self.owner, timeout)
                return
        try:
            with self.ledger.engine.begin() as connection:
                released = connection.execute(
                    update(JOBS).where(JOBS.c.owner == self.owner, JOBS.c.status.in_(ACTIVE)).values(owner=None)
                ).rowcount
            if released:
                log.info("job runner %s released %d active job(s)", self.owner, released)
        except SQLAlchemyError as exc:
            log.warning("job runner %s could not release its jobs (%s); they are taken over later", self.owner, exc)
        if self._manager is not None:
            self._manager.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = self.poll_interval
            try:
                self.tick()
            except self._errors as exc:
                wait = max(wait, RETRY_SECONDS)
                log.warning("job runner %s: %s; retrying in %gs", self.owner, " ".join(str(exc).split())[:500], wait)
            except Exception:
                wait = max(wait, RETRY_SECONDS)
                log.exception("job runner %s: unexpected error; retrying in %gs", self.owner, wait)
            self._wake.wait(wait)
            self._wake.clear()

    def tick(self) -> None:
        """One pass: heartbeat, claim, plan, send, collect, finish (see the module's docstring).

        The thread calls it; a test may call it directly instead of starting the thread.
        """
        from ..config import get_settings

        lease = get_settings().api_job_lease_seconds
        self._heartbeat(lease)
        self._claim(lease)
        jobs = self._owned_jobs()
        self._tasks = {job_id: task for job_id, task in self._tasks.items() if job_id in {job.id for job in jobs}}
        running: list[Row[Any]] = []
        for job in jobs:
            if self._stopping.is_set():
                return
            self._heartbeat(lease)  # planning a big job takes a while
            if job.status == "queued" and not self._plan(job):
                continue
            running.append(job)
        if not running:
            return
        by_id = {job.id: job for job in running}
        self._send_planned(by_id)
        self._collect(by_id)
        self._finish(list(by_id))

    # --- ownership ---------------------------------------------------------------------------------

    def _heartbeat(self, lease: float) -> None:
        if time.monotonic() - self._last_heartbeat < lease / 3:
            return
        with self.ledger.engine.begin() as connection:
            connection.execute(
                update(JOBS).where(JOBS.c.owner == self.owner, JOBS.c.status.in_(ACTIVE)).values(heartbeat_at=utc_now())
            )
        self._last_heartbeat = time.monotonic()

    def _claim(self, lease: float) -> None:
        """Take over active jobs whose owner stopped heartbeating (or released them)."""
        now = utc_now()
        orphaned = or_(
            JOBS.c.owner.is_(None), JOBS.c.heartbeat_at.is_(None), JOBS.c.heartbeat_at < now - _seconds(lease)
        )
        candidates = select(JOBS.c.id, JOBS.c.owner).where(
            JOBS.c.status.in_(ACTIVE), or_(JOBS.c.owner.is_(None), JOBS.c.owner != self.owner), orphaned
        )
        with self.ledger.reading() as connection:
            found = connection.execute(candidates).all()
        for job_id, previous in found:
            # Claimed only if still orphaned: of two runners racing for it, the second updates nothing.
            with self.ledger.engine.begin() as connection:
                claimed = connection.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE), orphaned)
                    .values(owner=self.owner, heartbeat_at=now)
                ).rowcount
            if claimed == 1:
                log.warning("job runner %s took over job %s from %s", self.owner, job_id, previous or "nobody")

    def _owned_jobs(self) -> list[Any]:
        query = (
            select(JOBS.c.id, JOBS.c.kind, JOBS.c.status, JOBS.c.request)
            .where(JOBS.c.owner == self.owner, JOBS.c.status.in_(ACTIVE))
            .order_by(JOBS.c.created_at)
        )
        with self.ledger.reading() as connection:
            return list(connection.execute(query).all())

    # --- planning -----------------------------------------------------------------------------------

    def _manager_now(self) -> Any:
        """The manager planning and converting records; a fresh one every ``MANAGER_MAX_AGE_SECONDS``."""
        if self._manager is None or time.monotonic() - self._manager_built > MANAGER_MAX_AGE_SECONDS:
            if self._manager_factory is not None:
                manager = self._manager_factory()
            else:
                from ..manager import CryptoManager

                manager = CryptoManager(engine="celery")
            if self._manager is not None and self._manager is not manager:
                self._manager.close()
            self._manager, self._manager_built = manager, time.monotonic()
        return self._manager

    def _task_of(self, job: Row[Any]) -> dict[str, Any]:
        """The job's checked task keys, from its stored request (as ``send_tasks``/``backtest`` check them)."""
        task = self._tasks.get(job.id)
        if task is None:
            request = job.request
            manager = self._manager_now()
            if job.kind == "forecast":
                task = manager.forecast_task(
                    request.get("model"),
                    request.get("horizon", 10),
                    request.get("params"),
                    levels=request.get("levels"),
                    from_store=bool(request.get("from_store")),
                )
            else:
                task = manager.backtest_task(
                    request["models"],
                    request.get("horizon", 10),
                    request.get("windows", 30),
                    request.get("step"),
                    request.get("params"),
                    levels=request.get("levels"),
                )
            self._tasks[job.id] = task
        return task

    def _plan(self, job: Row[Any]) -> bool:
        """Plan a queued job; False when it failed (or is no longer this runner's to plan)."""
        from ..engines.celery import to_json_safe

        try:
            task = self._task_of(job)
            manager = self._manager_now()
            coins = job.request.get("coins")
            plan = manager.plan(task, None if coins in (None, "all") else coins, label=_label(job.kind, task))
        except self._errors:
            raise
        except CryptoMLError as exc:
            self._fail(job.id, str(exc))
            return False
        except Exception as exc:
            log.exception("job %s could not be planned", job.id)
            self._fail(job.id, f"the job could not be planned: {type(exc).__name__}: {exc}")
            return False
        position = {coin: index for index, coin in enumerate(plan.coins)}
        early: list[StoredRecord] = []
        for coin, found in plan.records.items():
            early.extend(self._stored(job.kind, task, coin, position.get(coin, len(position)), found))
        tasks = [
            {
                "task_id": f"{job.id}.{index}",
                "job_id": job.id,
                "batch_index": index,
                "coins": [item["coin"] for item in payload["series"]],
                "positions": [position[item["coin"]] for item in payload["series"]],
                "payload": to_json_safe(payload),
                "state": "planned",
            }
            for index, payload in enumerate(plan.payloads)
        ]
        with self.ledger.engine.begin() as connection:
            # The transition first: it locks the job's row, so a runner that lost the job meanwhile stops here.
            planned = connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job.id, JOBS.c.status == "queued", JOBS.c.owner == self.owner)
                .values(status="running", started_at=utc_now(), total=len(plan.coins), transfer=plan.transfer)
            ).rowcount
            if planned != 1:
                return False  # nothing was written: the job was cancelled, or another runner has it
            if tasks:
                connection.execute(insert(TASKS), tasks)
            store_records_in(connection, job.id, early)
        log.info("job %s: %d coins in %d tasks (%s)", job.id, len(plan.coins), len(tasks), plan.transfer)
        return True

    def _fail(self, job_id: str, error: str) -> None:
        log.warning("job %s failed: %s", job_id, error)
        with self.ledger.engine.begin() as connection:
            connection.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE))
                .values(status="failed", error=error, finished_at=utc_now())
            )

    # --- sending and collecting ---------------------------------------------------------------------

    def _send_planned(self, jobs: dict[str, Row[Any]]) -> None:
        """Send the tasks planned and not yet sent (new ones, or ones a dead process never sent)."""
        from ..celery_app import app
        from ..engines.celery import queue_for_payload, task_label

        query = (
            select(TASKS.c.task_id, TASKS.c.job_id, TASKS.c.payload)
            .where(TASKS.c.job_id.in_(list(jobs)), TASKS.c.state == "planned")
            .order_by(TASKS.c.job_id, TASKS.c.batch_index)
        )
        with self.ledger.reading() as connection:
            planned = connection.execute(query).all()
        if not planned:
            return
        for task_id, job_id, payload in planned:
            function = TASK_FUNCTIONS[jobs[job_id].kind]
            app.send_task(
                f"crypto_ml.{function}",
                args=[payload],
                task_id=task_id,
                queue=queue_for_payload(payload),
                shadow=task_label(function, payload),
            )
            with self.ledger.engine.begin() as connection:
                connection.execute(
                    update(TASKS)
                    .where(TASKS.c.task_id == task_id, TASKS.c.state == "planned")
                    .values(state="sent", sent_at=utc_now())
                )

    def _collect(self, jobs: dict[str, Row[Any]]) -> None:
        """Store the records of every sent task that finished (or ran out of time), each task once."""
        from ..config import get_settings
        from ..engines.celery import task_error

        query = select(TASKS.c.task_id, TASKS.c.job_id, TASKS.c.coins, TASKS.c.positions, TASKS.c.sent_at).where(
            TASKS.c.job_id.in_(list(jobs)), TASKS.c.state == "sent"
        )
        with self.ledger.reading() as connection:
            sent = connection.execute(query).all()
        if not sent:
            return
        metas = self._task_metas([row.task_id for row in sent])
        timeout = get_settings().task_timeout
        overdue_before = utc_now() - _seconds(timeout)
        tasks: dict[str, dict[str, Any] | None] = {}
        for row in sent:
            job = jobs[row.job_id]
            if row.job_id not in tasks:
                tasks[row.job_id] = self._collectable_task(job)
            task = tasks[row.job_id]
            if task is None:
                continue
            meta = metas.get(row.task_id)
            status = (meta or {}).get("status")
            if status == "SUCCESS":
                outcome: list[dict[str, Any]] | BaseException = meta["result"]  # type: ignore[index]
            elif status in READY_STATES:
                outcome = task_error(meta)  # type: ignore[arg-type]
            elif row.sent_at is not None and row.sent_at < overdue_before:
                from ..celery_app import app

                app.control.revoke(row.task_id)
                outcome = EngineError(
                    f"task {row.task_id} did not finish within {timeout:g}s; "
                    "raise CRYPTO_ML_TASK_TIMEOUT or add workers"
                )
            else:
                continue
            try:
                records = self._batch_records(job.kind, task, row.coins, row.positions, outcome)
            except self._errors:
                raise
            except Exception as exc:  # a record this version cannot read: the batch's coins fail, not the job
                log.exception("job %s: the records of task %s could not be read", job.id, row.task_id)
                records = self._batch_records(job.kind, task, row.coins, row.positions, exc)
            with self.ledger.engine.begin() as connection:
                store_records_in(connection, job.id, records)
                connection.execute(
                    update(TASKS)
                    .where(TASKS.c.task_id == row.task_id, TASKS.c.state == "sent")
                    .values(state="collected", collected_at=utc_now())
                )

    def _task_metas(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The result backend's meta (status, result) of each task it has; many at once where it can."""
        from ..celery_app import app

        backend = app.backend
        metas: dict[str, dict[str, Any]] = {}
        if hasattr(backend, "mget") and hasattr(backend, "get_key_for_task"):  # Redis and other key-value stores
            for start in range(0, len(task_ids), FETCH_CHUNK):
                chunk = list(task_ids[start : start + FETCH_CHUNK])
                values = backend.mget([backend.get_key_for_task(task_id) for task_id in chunk])
                for task_id, value in zip(chunk, values, strict=True):
                    if value is not None:
                        metas[task_id] = backend.decode_result(value)
            return metas
        for task_id in task_ids:
            metas[task_id] = backend.get_task_meta(task_id)
        return metas

    def _collectable_task(self, job: Row[Any]) -> dict[str, Any] | None:
        """The job's task keys for reading its records; None to leave the job until a later tick (or failed).

        No worker answering is no reason to fail a job whose results may be waiting in the backend:
        it is retried. A request this version refuses (a model since removed) fails the job.
        """
        try:
            return self._task_of(job)
        except self._errors:
            raise
        except EngineError as exc:
            log.warning("job %s waits: %s", job.id, exc)
        except CryptoMLError as exc:
            self._fail(job.id, str(exc))
        return None

    def _batch_records(
        self,
        kind: str,
        task: dict[str, Any],
        coins: list[str],
        positions: list[int],
        outcome: list[dict[str, Any]] | BaseException,
    ) -> list[StoredRecord]:
        """One finished task's records to store: its coins' records, or a failure per coin."""
        by_coin: dict[str, list[dict[str, Any]]] = {}
        if isinstance(outcome, BaseException):
            reason: BaseException | str = outcome
        elif not isinstance(outcome, list):
            reason = EngineError(f"the task returned {type(outcome).__name__}, not a list of records")
        else:
            reason = "the task returned no record for this coin"
            for record in outcome:
                record.pop("node", None)  # which worker ran it: the engine logs it, the CLI's records lack it
                by_coin.setdefault(str(record.get("coin")), []).append(record)
        label = _label(kind, task)
        stored: list[StoredRecord] = []
        for coin, position in zip(coins, positions, strict=True):
            found = by_coin.get(coin) or [failure_record(coin, label, reason)]
            stored.extend(self._stored(kind, task, coin, position, found))
        return stored

    def _stored(
        self, kind: str, task: dict[str, Any], coin: str, position: int, found: list[dict[str, Any]]
    ) -> list[StoredRecord]:
        """A coin's records as the CLI's ``--out`` JSON holds them, with their keys and positions."""
        if kind == "forecast":
            from ..results import CoinForecast

            record = CoinForecast.from_record(found[0]).to_record()
            return [(coin, coin, position * POSITION_STRIDE, record["status"], record)]
        records = self._manager_now().backtest_records(coin, found, task)
        return [
            (
                f"{coin}|{record.get('model')}|{record.get('window')}",
                coin,
                position * POSITION_STRIDE + index,
                "ok" if record.get("status", "ok") == "ok" else "failed",
                record,
            )
            for index, record in enumerate(records)
        ]

    def _finish(self, job_ids: Sequence[str]) -> None:
        """Mark ``succeeded`` each running job with every task collected (its every coin has records)."""
        with self.ledger.reading() as connection:
            pending = set(
                connection.execute(
                    select(TASKS.c.job_id)
                    .where(TASKS.c.job_id.in_(job_ids), TASKS.c.state != "collected")
                    .group_by(TASKS.c.job_id)
                ).scalars()
            )
        finished = [job_id for job_id in job_ids if job_id not in pending]
        if not finished:
            return
        with self.ledger.engine.begin() as connection:
            connection.execute(
                update(JOBS)
                .where(JOBS.c.id.in_(finished), JOBS.c.status == "running")
                .values(status="succeeded", finished_at=utc_now())
            )
        for job_id in finished:
            self._tasks.pop(job_id, None)
        log.info("job(s) %s succeeded", ", ".join(finished))


def _label(kind: str, task: dict[str, Any]) -> str:
    """The model name(s) a failure record carries, as the CLI labels them."""
    return str(task["model"]) if kind == "forecast" else ",".join(task["models"])


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)
