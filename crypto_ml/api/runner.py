"""The job runner: one thread per API process that plans, sends, collects and resumes jobs.

A job's whole state is in the database (``jobs``, ``job_tasks``,
``job_results``); the runner only moves it along. Each tick it works on all
the jobs it owns at once, a few statements per tick rather than per job or
per task (under load a tick carries dozens of jobs):

1. heartbeats the active jobs it owns, every third of ``api_job_lease_seconds``;
2. claims active jobs whose owner's heartbeat is older than the lease (their
   process died, or was stopped), scanning every ``CLAIM_INTERVAL_SECONDS``;
3. plans each queued job it owns (``CryptoManager.plan``): the coins that
   cannot be loaded become failure records at once, every batch becomes a
   ``job_tasks`` row with its own task id (``<job id>.<batch index>``) and its
   JSON payload; the tick's new jobs are stored in one transaction, going ``running``;
4. sends every planned task under that id, then marks them all sent: a process
   that dies in between sends them again after a restart, under the same ids,
   and the results are stored once all the same;
5. collects: asks the result backend for all its sent tasks at once (one Redis
   ``MGET``), turns each finished one into records, exactly as the CLI writes
   them, and stores them all, marking the tasks collected in the same transaction;
6. and, in that transaction still, marks ``succeeded`` the jobs whose tasks are all collected.

A runner that owns no active job sleeps until ``wake()`` (a job was submitted
to this process) or its next claim scan.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Table, case, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..exceptions import CryptoMLError, EngineError, LedgerError
from ..ledger.database import Ledger
from ..ledger.lock import default_holder
from ..ledger.schema import utc_now
from .job_records import batch_records, coin_records, failure_label
from .jobs import ACTIVE, StoredRecord, store_job_records_in
from .schema import Job, JobTask

if TYPE_CHECKING:
    from ..manager import DispatchPlan

__all__ = ["JobRunner", "TASK_FUNCTIONS", "MANAGER_MAX_AGE_SECONDS", "CLAIM_INTERVAL_SECONDS"]

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

#: Seconds between scans for orphaned jobs (at most a third of the lease): a job released by a
#: stopping process is taken over within about this long, and the scan, one query, is not repeated
#: on every tick under load. An idle runner sleeps this long between ticks unless ``wake()`` is called.
CLAIM_INTERVAL_SECONDS = 1.0


def _claim_interval(lease: float) -> float:
    return min(CLAIM_INTERVAL_SECONDS, lease / 3)


@dataclass(frozen=True)
class _Planned:
    """A queued job's plan, ready to be stored: its task rows and the records of coins that failed to load."""

    job: Row[Any]
    plan: DispatchPlan
    tasks: list[dict[str, Any]]
    early: list[StoredRecord]


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
        self._last_claim = float("-inf")
        # Whether the last tick found active jobs of this runner's: an idle runner ticks only when woken or
        # when a claim scan is due, so a process with no jobs costs the database nothing between scans.
        self._busy = False
        # Task ids and payloads this runner planned and has not yet marked sent, by job: sent from memory.
        self._unsent: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        # Owned running jobs known to have no planned-but-unsent task: the database is not asked again.
        self._all_sent: set[str] = set()
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
            # Cleared before the tick, not after the wait: a wake() during the tick is not lost.
            self._wake.clear()
            try:
                self.tick()
                wait = self.poll_interval if self._busy else self._until_claim()
            except self._errors as exc:
                wait = max(self.poll_interval, RETRY_SECONDS)
                log.warning("job runner %s: %s; retrying in %gs", self.owner, " ".join(str(exc).split())[:500], wait)
            except Exception:
                wait = max(self.poll_interval, RETRY_SECONDS)
                log.exception("job runner %s: unexpected error; retrying in %gs", self.owner, wait)
            self._wake.wait(wait)

    def tick(self) -> None:
        """One pass: heartbeat, claim (when due), plan, send, collect, finish (see the module's docstring).

        The thread calls it; a test may call it directly instead of starting the thread.
        """
        from ..config import get_settings

        lease = get_settings().api_job_lease_seconds
        self._heartbeat(lease)
        if time.monotonic() - self._last_claim >= _claim_interval(lease):
            self._claim(lease)
        jobs = self._owned_jobs()
        self._busy = bool(jobs)
        owned = {job.id for job in jobs}
        self._tasks = {job_id: task for job_id, task in self._tasks.items() if job_id in owned}
        self._unsent = {job_id: tasks for job_id, tasks in self._unsent.items() if job_id in owned}
        self._all_sent &= owned
        if not jobs:
            return
        running = [job for job in jobs if job.status == "running"]
        queued = [job for job in jobs if job.status == "queued"]
        if queued:
            running.extend(self._plan(queued, lease))
        if not running or self._stopping.is_set():
            return
        by_id = {job.id: job for job in running}
        self._send_planned(by_id)
        self._collect(by_id)

    # --- ownership ---------------------------------------------------------------------------------

    def _heartbeat(self, lease: float) -> None:
        if time.monotonic() - self._last_heartbeat < lease / 3:
            return
        with self.ledger.engine.begin() as connection:
            connection.execute(
                update(JOBS).where(JOBS.c.owner == self.owner, JOBS.c.status.in_(ACTIVE)).values(heartbeat_at=utc_now())
            )
        self._last_heartbeat = time.monotonic()

    def _until_claim(self) -> float:
        """Seconds an idle runner may sleep: until its next claim scan (``wake()`` ends the sleep sooner)."""
        from ..config import get_settings

        interval = _claim_interval(get_settings().api_job_lease_seconds)
        return max(self.poll_interval, interval - (time.monotonic() - self._last_claim))

    def _claim(self, lease: float) -> None:
        """Take over active jobs whose owner stopped heartbeating (or released them)."""
        self._last_claim = time.monotonic()
        now = utc_now()
        orphaned = or_(
            JOBS.c.owner.is_(None), JOBS.c.heartbeat_at.is_(None), JOBS.c.heartbeat_at < now - _seconds(lease)
        )
        candidates = select(JOBS.c.id, JOBS.c.owner).where(
            JOBS.c.status.in_(ACTIVE), or_(JOBS.c.owner.is_(None), JOBS.c.owner != self.owner), orphaned
        )
        with self.ledger.reading(autocommit=True) as connection:
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
        with self.ledger.reading(autocommit=True) as connection:
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

    def _plan(self, queued: Sequence[Row[Any]], lease: float) -> list[Row[Any]]:
        """Plan queued jobs, storing all of them in one transaction; returns those now running.

        A job that cannot be planned fails (with the reason); one cancelled or taken over meanwhile is left alone.
        """
        plans: list[_Planned] = []
        for job in queued:
            if self._stopping.is_set():
                break
            self._heartbeat(lease)  # planning a big job takes a while
            planned = self._plan_one(job)
            if planned is not None:
                plans.append(planned)
        if not plans:
            return []
        ids = sorted(planned.job.id for planned in plans)
        with self.ledger.engine.begin() as connection:
            # The transition first: it locks the jobs' rows, so a job another runner took (or a client
            # cancelled) meanwhile is not returned, and nothing of it is written.
            started = set(
                connection.execute(
                    update(JOBS)
                    .where(JOBS.c.id.in_(ids), JOBS.c.status == "queued", JOBS.c.owner == self.owner)
                    .values(
                        status="running",
                        started_at=utc_now(),
                        total=case({p.job.id: len(p.plan.coins) for p in plans}, value=JOBS.c.id),
                        transfer=case({p.job.id: p.plan.transfer for p in plans}, value=JOBS.c.id),
                    )
                    .returning(JOBS.c.id)
                ).scalars()
            )
            plans = [planned for planned in plans if planned.job.id in started]
            tasks = [task for planned in plans for task in planned.tasks]
            if tasks:
                connection.execute(insert(TASKS), tasks)
            store_job_records_in(connection, {planned.job.id: planned.early for planned in plans})
        for planned in plans:
            # Sent from memory this tick: reading the payloads back from the database would only cost time.
            self._unsent[planned.job.id] = [(task["task_id"], task["payload"]) for task in planned.tasks]
            # DEBUG: the submit already logged the job at INFO, and under load a line per job per step adds up.
            log.debug(
                "job %s: %d coins in %d tasks (%s)",
                planned.job.id,
                len(planned.plan.coins),
                len(planned.tasks),
                planned.plan.transfer,
            )
        return [planned.job for planned in plans]

    def _plan_one(self, job: Row[Any]) -> _Planned | None:
        """A queued job's plan, its task rows and its early failure records; None when it failed (and is marked so)."""
        from ..engines.celery import to_json_safe

        try:
            task = self._task_of(job)
            manager = self._manager_now()
            coins = job.request.get("coins")
            plan = manager.plan(task, None if coins in (None, "all") else coins, label=failure_label(job.kind, task))
        except self._errors:
            raise
        except CryptoMLError as exc:
            self._fail(job.id, str(exc))
            return None
        except Exception as exc:
            log.exception("job %s could not be planned", job.id)
            self._fail(job.id, f"the job could not be planned: {type(exc).__name__}: {exc}")
            return None
        position = {coin: index for index, coin in enumerate(plan.coins)}
        early: list[StoredRecord] = []
        for coin, found in plan.records.items():
            early.extend(coin_records(job.kind, task, coin, position.get(coin, len(position)), found, manager))
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
        return _Planned(job, plan, tasks, early)

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
        """Send the tasks planned and not yet sent (new ones, or ones a dead process never sent), then mark them
        sent, all in one statement.

        Sent before marked: a process that dies in between sends them again after a restart, under the same
        ids, and their records are stored once all the same. The database is asked only about jobs this
        runner did not plan itself and has not seen fully sent.
        """
        from ..celery_app import app
        from ..engines.celery import queue_for_payload, task_label

        pending: list[tuple[str, str, dict[str, Any]]] = [
            (task_id, job_id, payload) for job_id in jobs for task_id, payload in self._unsent.get(job_id, ())
        ]
        unknown = [job_id for job_id in jobs if job_id not in self._all_sent and job_id not in self._unsent]
        if unknown:
            query = (
                select(TASKS.c.task_id, TASKS.c.job_id, TASKS.c.payload)
                .where(TASKS.c.job_id.in_(unknown), TASKS.c.state == "planned")
                .order_by(TASKS.c.job_id, TASKS.c.batch_index)
            )
            with self.ledger.reading(autocommit=True) as connection:
                pending.extend((task_id, job_id, payload) for task_id, job_id, payload in connection.execute(query))
        if pending:
            # One producer (one broker channel) for the whole batch, not one acquired per task.
            with app.producer_or_acquire() as producer:
                for task_id, job_id, payload in pending:
                    function = TASK_FUNCTIONS[jobs[job_id].kind]
                    app.send_task(
                        f"crypto_ml.{function}",
                        args=[payload],
                        task_id=task_id,
                        queue=queue_for_payload(payload),
                        shadow=task_label(function, payload),
                        producer=producer,
                    )
            with self.ledger.engine.begin() as connection:
                connection.execute(
                    update(TASKS)
                    .where(TASKS.c.task_id.in_([task_id for task_id, _, _ in pending]), TASKS.c.state == "planned")
                    .values(state="sent", sent_at=utc_now())
                )
        self._all_sent.update(jobs)
        for job_id in jobs:
            self._unsent.pop(job_id, None)

    def _collect(self, jobs: dict[str, Row[Any]]) -> None:
        """Store the records of every sent task that finished (or ran out of time), each task once, and mark the
        jobs whose every task is collected ``succeeded``: one read, one backend request, one transaction."""
        from ..config import get_settings
        from ..engines.celery import task_error

        query = select(TASKS.c.task_id, TASKS.c.job_id, TASKS.c.coins, TASKS.c.positions, TASKS.c.sent_at).where(
            TASKS.c.job_id.in_(list(jobs)), TASKS.c.state == "sent"
        )
        with self.ledger.reading(autocommit=True) as connection:
            sent = connection.execute(query).all()
        metas = self._task_metas([row.task_id for row in sent]) if sent else {}
        timeout = get_settings().task_timeout
        overdue_before = utc_now() - _seconds(timeout)
        tasks: dict[str, dict[str, Any] | None] = {}
        records_by_job: dict[str, list[StoredRecord]] = {}
        collected: list[str] = []
        waiting: set[str] = set()  # jobs with a task still out
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
                waiting.add(row.job_id)
                continue
            try:
                records = batch_records(job.kind, task, row.coins, row.positions, outcome, self._manager_now())
            except self._errors:
                raise
            except Exception as exc:  # a record this version cannot read: the batch's coins fail, not the job
                log.exception("job %s: the records of task %s could not be read", job.id, row.task_id)
                records = batch_records(job.kind, task, row.coins, row.positions, exc, self._manager_now())
            records_by_job.setdefault(row.job_id, []).extend(records)
            collected.append(row.task_id)
        # Jobs left with nothing out: every task collected (or none planned), none unsent, none unreadable.
        finishable = [
            job_id
            for job_id in jobs
            if job_id not in waiting and job_id in self._all_sent and tasks.get(job_id, True) is not None
        ]
        if not collected and not finishable:
            return
        with self.ledger.engine.begin() as connection:
            store_job_records_in(connection, records_by_job)
            if collected:
                connection.execute(
                    update(TASKS)
                    .where(TASKS.c.task_id.in_(collected), TASKS.c.state == "sent")
                    .values(state="collected", collected_at=utc_now())
                )
            finished: list[str] = []
            if finishable:
                # Guarded by the tasks themselves: a job finishes only if none of its tasks is uncollected.
                outstanding = select(TASKS.c.task_id).where(TASKS.c.job_id == JOBS.c.id, TASKS.c.state != "collected")
                finished = list(
                    connection.execute(
                        update(JOBS)
                        .where(JOBS.c.id.in_(finishable), JOBS.c.status == "running", ~outstanding.exists())
                        .values(status="succeeded", finished_at=utc_now())
                        .returning(JOBS.c.id)
                    ).scalars()
                )
        for job_id in finished:
            self._tasks.pop(job_id, None)
        if finished:
            log.info("job(s) %s succeeded", ", ".join(finished))

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


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)
