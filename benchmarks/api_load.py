"""api_load: the HTTP API under 10, 50 and 100 concurrent users, against its latency targets.

The benchmark starts everything it measures on this machine, at loopback
addresses only: a fresh PostgreSQL database (created and dropped here; a
SQLite file when no PostgreSQL answers), ``crypto-ml serve`` on 127.0.0.1
with its own uvicorn processes, and a light Celery worker of its own. It
creates an API key whose limits are far above the load, so nothing is
throttled, then runs one phase per number of users.

Each simulated user is a coroutine of one ``asyncio`` client (an ``httpx``
client, so one connection, per user): it submits a small forecast job (one coin of the
bundled sample, ``naive``, h=10), polls ``GET /v1/jobs/{id}`` every 0.5 s
until the job is finished, and starts over, for a fixed time (20 s); then
it stops submitting and follows its last job to the end (the drain). Users
start spread over the first poll interval, as real ones would, not in
lockstep.

Per phase it reports requests/s, p50/p95/p99 latency of the submit and of
the status calls, the jobs' end-to-end time as the client saw it, errors by
status code, and from the database afterwards: jobs submitted, completed,
lost (never finished, or finished without a result) and duplicated (more
than one ``job_results`` row for the job's one coin). CPU seconds are taken
from ``/proc`` (psutil) over each process tree during the loaded window:
the API server, the Celery worker, PostgreSQL, RabbitMQ and Redis, and this
client, against the whole machine's busy time, so the bottleneck can be
named. The client's own event-loop lag is measured too: on a small machine
the client shares the cores with the server, and a late client inflates
every latency it records.

Targets (issue 15): submit p99 <= 100 ms and status p99 <= 50 ms at 100
users; zero lost and zero duplicated jobs.

Run it alone with other sizes::

    python -m benchmarks.api_load --users 10,50,100 --duration 20 --server-workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import Options, Report, percentile
from .workers import GroupProcess

NAME = "api_load"
TITLE = "HTTP API under N concurrent users: submit and status latency, job end-to-end, lost and duplicated jobs"

#: Latency targets at the largest number of users, in milliseconds (issue 15).
SUBMIT_P99_MS = 100.0
STATUS_P99_MS = 50.0
#: Concurrent users per phase, full and --quick.
USERS = (10, 50, 100)
QUICK_USERS = (2, 5)
#: Seconds each phase submits jobs for, full and --quick; then users only follow their last job.
DURATION = 20.0
QUICK_DURATION = 3.0
#: Seconds a user may follow its last job after the phase; a job still running then counts as unfinished.
DRAIN = 30.0
#: Seconds between a user's status calls, as a polite client polls.
POLL_INTERVAL = 0.5
#: The job each user submits: small, so the figures are the API's and not the models'.
MODEL = "naive"
HORIZON = 10
#: Job statuses after which a job changes no more (crypto_ml.api.jobs.TERMINAL).
TERMINAL = ("succeeded", "failed", "cancelled")
#: A PostgreSQL URL on which this benchmark may CREATE and DROP a database of its own.
POSTGRES_ADMIN_ENV = "CRYPTO_ML_BENCH_POSTGRES"
POSTGRES_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Seconds of untimed load before the first phase, so every API process has loaded the coin list and
#: the model registry and opened its database connections (a cold process's first submit takes ~0.5 s).
WARM_UP = 3.0
#: Seconds the API is watched at rest: its job runners poll the database even when nobody calls.
IDLE = 5.0
#: Process names of the services, for their CPU time (every session's: they may serve others too).
SERVICE_PROCESSES = {"postgresql": ("postgres",), "rabbitmq": ("beam.smp",), "redis": ("redis-server",)}


# --- processes and their CPU -------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, those that exited included.

    A child that exited and was waited for adds its time (and its own children's) to its parent's
    ``children_user``/``children_system``; a live one is counted by itself. Summing both over the live
    tree counts every process once: PostgreSQL's per-connection backends come and go during a phase.
    Returns 0 if the process is gone.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, in MiB."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total / 2**20


def named_cpu_seconds(names: Sequence[str]) -> float:
    """CPU seconds of the process trees on this machine whose root has one of these names (a service's)."""
    import psutil

    roots = []
    for process in psutil.process_iter(["name", "ppid"]):
        if process.info["name"] in names:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if psutil.Process(process.info["ppid"]).name() not in names:
                    roots.append(process.pid)
    return sum(tree_cpu_seconds(pid) for pid in roots)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (summed over cores)."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclass
class CpuSnapshot:
    """CPU seconds so far of each part of the system under load."""

    at: float
    parts: dict[str, float]

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSnapshot:
        parts = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
        for name, names in SERVICE_PROCESSES.items():
            parts[name] = named_cpu_seconds(names)
        parts["client"] = time.process_time()
        parts["machine"] = machine_busy_seconds()
        return cls(time.perf_counter(), parts)

    def since(self, start: CpuSnapshot) -> dict[str, float]:
        """CPU seconds each part used between ``start`` and this snapshot."""
        return {name: self.parts[name] - start.parts.get(name, 0.0) for name in self.parts}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess(GroupProcess):
    """``crypto-ml serve`` on 127.0.0.1 in its own process group; a context manager that always stops it.

    Args:
        workers: uvicorn worker processes (``--workers``).
        log_path: Where its output goes.
        env: The server's environment.
    """

    #: uvicorn's graceful shutdown waits for open requests (a long poll lasts at most a few seconds here).
    stop_timeout = 20.0

    def __init__(self, workers: int, log_path: Path, env: dict[str, str]) -> None:
        super().__init__(log_path, env)
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ApiProcess:
        """Start the server and wait until ``/healthz`` answers 200.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds (its log's tail says why).
        """
        import httpx

        command = [sys.executable, "-m", "crypto_ml", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        process = self.launch(command)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.stop()
                raise RuntimeError(f"crypto-ml serve exited with {process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"crypto-ml serve did not answer /healthz within {timeout:.0f}s: {self.log_tail()}")


# --- the database ----------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(folder: Path) -> Iterator[tuple[str, str]]:
    """A fresh, empty ledger database for the run, removed afterwards: ``(SQLAlchemy URL, description)``.

    PostgreSQL (the deployed database) when the admin URL in ``CRYPTO_ML_BENCH_POSTGRES`` (default:
    ``postgres`` on 127.0.0.1:5432) answers; otherwise a SQLite file in ``folder``, which the report says.
    """
    admin_url = os.environ.get(POSTGRES_ADMIN_ENV) or POSTGRES_ADMIN_DEFAULT
    admin = None
    reason = ""
    try:
        import psycopg

        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except ImportError:
        reason = "psycopg is not installed (pip install -e '.[postgres]')"
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        reason = " ".join(str(exc).split())[:200]
    if admin is None:
        path = folder / f"api-load-{uuid.uuid4().hex[:8]}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield f"sqlite:///{path}", f"SQLite {path} (no PostgreSQL: {reason})"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    info = admin.info
    name = f"crypto_ml_bench_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            user = f"{info.user}:{info.password}@" if info.password else f"{info.user}@"
            url = f"postgresql+psycopg://{user}{info.host}:{info.port}/{name}"
            yield url, f"PostgreSQL {admin.info.server_version // 10000} at {info.host}:{info.port}, database {name}"
        finally:
            # FORCE: the server's pooled connections may still be open if it was killed (PostgreSQL 13+).
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_check(url: str, job_ids: Sequence[str], wait: float, known: set[str]) -> dict[str, Any]:
    """What the database holds for these jobs, once every one is finished or ``wait`` seconds passed.

    Args:
        url: The benchmark's database.
        job_ids: The jobs whose submit was accepted (202) in this phase.
        wait: Seconds to wait for the last ones to finish.
        known: Every job id any accepted submit of the run has returned so far, this phase's included.

    Returns:
        ``jobs`` (in the database), ``finished``, ``succeeded``, ``missing`` (submitted, not in the
        database), ``unfinished``, ``without_result`` (finished, no job_results row), ``duplicated``
        (more than one row for a job: each job has one coin), ``result_rows``, and ``unacknowledged``
        (jobs in the database that no accepted submit returned: a submit that failed for the client
        after the server had queued its job).
    """
    from sqlalchemy import text

    from crypto_ml.ledger import open_ledger

    wanted = set(job_ids)
    query = text(
        "SELECT j.id, j.status, COUNT(r.id) AS n_rows, COUNT(DISTINCT r.record_key) AS n_keys "
        "FROM jobs j LEFT JOIN job_results r ON r.job_id = j.id GROUP BY j.id, j.status"
    )
    with open_ledger(url, upgrade=False) as ledger:
        deadline = time.monotonic() + wait
        while True:
            with ledger.reading() as connection:
                rows = {row.id: row for row in connection.execute(query)}
            pending = [i for i in wanted if i in rows and rows[i].status not in TERMINAL]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    ours = [rows[i] for i in wanted if i in rows]
    return {
        "jobs": len(ours),
        "finished": sum(1 for row in ours if row.status in TERMINAL),
        "succeeded": sum(1 for row in ours if row.status == "succeeded"),
        "missing": len(wanted - set(rows)),
        "unfinished": sum(1 for row in ours if row.status not in TERMINAL),
        "without_result": sum(1 for row in ours if row.status == "succeeded" and row.n_rows == 0),
        "duplicated": sum(1 for row in ours if row.n_rows > 1 or row.n_rows != row.n_keys),
        "result_rows": sum(int(row.n_rows) for row in ours),
        "unacknowledged": len(set(rows) - known),
    }


# --- the load ------------------------------------------------------------------------------


@dataclass
class PhaseRecord:
    """What the client saw in one phase; times are ``time.perf_counter()`` seconds."""

    users: int
    start: float = 0.0
    end: float = 0.0
    #: (started at, seconds, HTTP status or exception name) per call.
    submits: list[tuple[float, float, str]] = field(default_factory=list)
    statuses: list[tuple[float, float, str]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    #: job id -> (final status, end-to-end seconds seen by the client, the server's own "seconds").
    finished: dict[str, tuple[str, float, float | None]] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)
    #: CPU counters when the users start and when they stop submitting (the drain is not measured).
    cpu_start: CpuSnapshot | None = None
    cpu_end: CpuSnapshot | None = None

    def in_window(self, calls: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
        """The calls started while the phase was submitting (the drain's are excluded)."""
        return [call for call in calls if self.start <= call[0] < self.end]


async def _user(
    client: Any,
    body: dict[str, Any],
    record: PhaseRecord,
    delay: float,
    stop_at: float,
    give_up_at: float,
) -> None:
    """One simulated user: submit, poll until finished, repeat until ``stop_at``; follow the last job to the end."""
    import httpx

    await asyncio.sleep(delay)
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            response = await client.post("/v1/forecasts", json=body)
        except httpx.HTTPError as exc:
            record.submits.append((started, time.perf_counter() - started, type(exc).__name__))
            await asyncio.sleep(POLL_INTERVAL)
            continue
        record.submits.append((started, time.perf_counter() - started, str(response.status_code)))
        if response.status_code != 202:
            # A throttled client waits as told; anything else is retried after a poll interval.
            retry_after = response.headers.get("Retry-After", "")
            await asyncio.sleep(float(retry_after) if retry_after.isdigit() else POLL_INTERVAL)
            continue
        job_id = response.json()["job_id"]
        record.accepted.append(job_id)
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if time.perf_counter() > give_up_at:
                record.unfinished.append(job_id)
                return
            polled = time.perf_counter()
            try:
                response = await client.get(f"/v1/jobs/{job_id}")
            except httpx.HTTPError as exc:
                record.statuses.append((polled, time.perf_counter() - polled, type(exc).__name__))
                continue
            record.statuses.append((polled, time.perf_counter() - polled, str(response.status_code)))
            if response.status_code != 200:
                continue
            document = response.json()
            if document["status"] in TERMINAL:
                record.finished[job_id] = (document["status"], time.perf_counter() - started, document.get("seconds"))
                break


async def _window(record: PhaseRecord, pids: dict[str, int], tick: float = 0.05) -> None:
    """Measure the loaded window: the event loop's lag while it lasts, the CPU counters when it ends.

    The lag (how late the client's loop wakes up) is the client's own share of every latency it measures.
    """
    while time.perf_counter() < record.end:
        before = time.perf_counter()
        await asyncio.sleep(min(tick, max(record.end - before, 0.0)))
        record.loop_lag.append(max(time.perf_counter() - before - tick, 0.0))
    # In a thread: reading every process's counters takes milliseconds, which the calls still in flight
    # would otherwise count as latency.
    record.cpu_end = await asyncio.to_thread(CpuSnapshot.take, pids)


async def run_phase(
    url: str, key: str, coins: Sequence[str], users: int, duration: float, drain: float, pids: dict[str, int]
) -> PhaseRecord:
    """``users`` simulated users against the API at ``url`` for ``duration`` seconds, then the drain.

    Args:
        url: The API's base URL.
        key: The API key.
        coins: Coins to submit, one per job, user ``i`` taking ``coins[i % len(coins)]``.
        users: Concurrent users.
        duration: Seconds the users submit jobs for (the loaded window).
        drain: Seconds they may then follow their last job.
        pids: Process trees whose CPU is measured over the loaded window, by name.
    """
    import httpx

    record = PhaseRecord(users)
    # One client, so one keep-alive connection, per user, as separate people would have: a single
    # shared pool of 100 connections costs the client more CPU per request the more connections it holds.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {key}"}
    generator = random.Random(users)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=httpx.Timeout(30.0))
            )
            for _ in range(users)
        ]
        record.cpu_start = CpuSnapshot.take(pids)
        record.start = time.perf_counter()
        record.end = record.start + duration
        give_up_at = record.end + drain
        tasks = [
            _user(
                client,
                {"coins": [coins[index % len(coins)]], "model": MODEL, "horizon": HORIZON},
                record,
                generator.uniform(0, POLL_INTERVAL),
                record.end,
                give_up_at,
            )
            for index, client in enumerate(clients)
        ]
        await asyncio.gather(_window(record, pids), *tasks)
    return record


def _event_loop_runner() -> asyncio.Runner:
    """uvloop when installed (uvicorn[standard] brings it): the client should be as light as it can be."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


# --- the report ------------------------------------------------------------------------------


def _ms(values: Sequence[float], q: float) -> float:
    return 1000 * percentile(values, q)


def _errors(calls: Sequence[tuple[float, float, str]]) -> Counter[str]:
    return Counter(outcome for _, _, outcome in calls if not outcome.startswith("2"))


def phase_row(
    record: PhaseRecord, checked: dict[str, Any], server_workers: int, idle_cores: float = 0.0
) -> dict[str, Any]:
    """One table row: the client's figures and the CPU per part over the loaded window, the database's counts.

    Args:
        record: What the client saw, with the CPU counters at the window's start and end.
        checked: ``database_check``'s counts for the phase's jobs.
        server_workers: The API's uvicorn processes.
        idle_cores: Cores the API used at rest; what it used above that is charged to the requests.
    """
    assert record.cpu_start is not None and record.cpu_end is not None
    cpu = record.cpu_end.since(record.cpu_start)
    seconds = record.cpu_end.at - record.cpu_start.at
    services = cpu["api"] + cpu["workers"] + cpu["postgresql"] + cpu["rabbitmq"] + cpu["redis"] + cpu["client"]
    submits, statuses = record.in_window(record.submits), record.in_window(record.statuses)
    requests = len(submits) + len(statuses)
    errors = _errors(record.submits) + _errors(record.statuses)
    finished = list(record.finished.values())
    ok_calls = [c for c in submits if c[2].startswith("2")], [c for c in statuses if c[2].startswith("2")]
    requests_per_s = requests / seconds if seconds else math.nan
    api_cores = cpu["api"] / seconds
    return {
        "server_workers": server_workers,
        "users": record.users,
        "seconds": seconds,
        "requests_in_drain": len(record.submits) + len(record.statuses) - requests,
        "requests": requests,
        "requests_per_s": requests_per_s,
        "submit_p50_ms": _ms([c[1] for c in ok_calls[0]], 50),
        "submit_p95_ms": _ms([c[1] for c in ok_calls[0]], 95),
        "submit_p99_ms": _ms([c[1] for c in ok_calls[0]], 99),
        "status_p50_ms": _ms([c[1] for c in ok_calls[1]], 50),
        "status_p95_ms": _ms([c[1] for c in ok_calls[1]], 95),
        "status_p99_ms": _ms([c[1] for c in ok_calls[1]], 99),
        "job_p50_s": percentile([f[1] for f in finished], 50),
        "job_p95_s": percentile([f[1] for f in finished], 95),
        "job_server_p50_s": percentile([f[2] for f in finished if f[2] is not None], 50),
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
        "jobs_submitted": len(record.accepted),
        "jobs_completed": sum(1 for f in finished if f[0] == "succeeded"),
        "jobs_failed": sum(1 for f in finished if f[0] != "succeeded"),
        "jobs_unfinished_client": len(record.unfinished),
        "jobs_lost": checked["missing"] + checked["unfinished"] + checked["without_result"],
        "jobs_duplicated": checked["duplicated"],
        "database": checked,
        "api_cpu_ms_per_request": 1000 * cpu["api"] / requests if requests else math.nan,
        "api_marginal_cpu_ms_per_request": 1000 * (api_cores - idle_cores) / requests_per_s if requests else math.nan,
        "api_cores": api_cores,
        "api_idle_cores": idle_cores,
        "workers_cores": cpu["workers"] / seconds,
        "postgresql_cores": cpu["postgresql"] / seconds,
        "broker_cores": (cpu["rabbitmq"] + cpu["redis"]) / seconds,
        "client_cores": cpu["client"] / seconds,
        "machine_cores": cpu["machine"] / seconds,
        "other_cores": max(0.0, cpu["machine"] - services) / seconds,
        "cpu_seconds": cpu,
        "client_loop_lag_p99_ms": _ms(record.loop_lag, 99),
    }


#: The Markdown table's columns: (row key, header, format).
MARKDOWN_COLUMNS = (
    ("server_workers", "API procs", "{:d}"),
    ("users", "users", "{:d}"),
    ("requests_per_s", "req/s", "{:.0f}"),
    ("submit_p50_ms", "submit p50 ms", "{:.1f}"),
    ("submit_p95_ms", "submit p95 ms", "{:.1f}"),
    ("submit_p99_ms", "submit p99 ms", "{:.1f}"),
    ("status_p50_ms", "status p50 ms", "{:.1f}"),
    ("status_p95_ms", "status p95 ms", "{:.1f}"),
    ("status_p99_ms", "status p99 ms", "{:.1f}"),
    ("job_p50_s", "job p50 s", "{:.2f}"),
    ("job_p95_s", "job p95 s", "{:.2f}"),
    ("job_server_p50_s", "job p50 s (server)", "{:.2f}"),
    ("errors_text", "errors", "{}"),
    ("jobs_submitted", "jobs submitted", "{:d}"),
    ("jobs_completed", "completed", "{:d}"),
    ("jobs_lost", "lost", "{:d}"),
    ("jobs_duplicated", "duplicated", "{:d}"),
    ("api_cpu_ms_per_request", "API CPU ms/req", "{:.2f}"),
    ("api_marginal_cpu_ms_per_request", "API CPU ms/req above idle", "{:.2f}"),
    ("api_cores", "API cores", "{:.2f}"),
    ("api_idle_cores", "API idle cores", "{:.2f}"),
    ("workers_cores", "workers cores", "{:.2f}"),
    ("postgresql_cores", "PostgreSQL cores", "{:.2f}"),
    ("broker_cores", "RabbitMQ+Redis cores", "{:.2f}"),
    ("client_cores", "client cores", "{:.2f}"),
    ("machine_cores", "machine busy cores", "{:.2f}"),
    ("client_loop_lag_p99_ms", "client lag p99 ms", "{:.1f}"),
)


def _cell(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a GitHub Markdown table (errors as ``status×count``, ``0`` for none)."""
    lines = [
        "| " + " | ".join(header for _, header, _ in MARKDOWN_COLUMNS) + " |",
        "|" + "|".join("---:" for _ in MARKDOWN_COLUMNS) + "|",
    ]
    for row in rows:
        errors = row.get("errors_by_status") or {}
        cells = {**row, "errors_text": ", ".join(f"{k}×{v}" for k, v in sorted(errors.items())) or "0"}
        lines.append("| " + " | ".join(_cell(cells.get(key), fmt) for key, _, fmt in MARKDOWN_COLUMNS) + " |")
    return "\n".join(lines)


def bottleneck(row: dict[str, Any], cores: int) -> str:
    """One sentence naming where the time went in the busiest phase."""
    parts = {
        "the API server": row["api_cores"],
        "the Celery worker": row["workers_cores"],
        "PostgreSQL": row["postgresql_cores"],
        "RabbitMQ and Redis": row["broker_cores"],
        "the load client": row["client_cores"],
        "other processes": row["other_cores"],
    }
    largest = max(parts, key=lambda name: parts[name])
    busy = row["machine_cores"] / cores
    shares = ", ".join(f"{name} {value:.2f}" for name, value in parts.items())
    verdict = (
        f"the machine's {cores} cores were {busy:.0%} busy, so CPU is the limit and {largest} takes the most of it"
        if busy >= 0.85
        else f"the machine's {cores} cores were {busy:.0%} busy, so the limit is not this machine's CPU but a wait "
        f"(database round trips, jobs queued in the API's job runner); {largest} used the most CPU"
    )
    return (
        f"{row['users']} users, {row['server_workers']} API process(es): {verdict}. Cores used: {shares}; "
        f"the API spent {row['api_cpu_ms_per_request']:.2f} ms of CPU per request, "
        f"{row['api_marginal_cpu_ms_per_request']:.2f} ms above its {row['api_idle_cores']:.2f} idle cores"
    )


# --- the benchmark ----------------------------------------------------------------------------


def _idle_cores(pids: dict[str, int], seconds: float) -> float:
    """Cores the API's process tree uses with no request at all (its job runners' polling)."""
    start = CpuSnapshot.take(pids)
    time.sleep(seconds)
    end = CpuSnapshot.take(pids)
    return end.since(start)["api"] / (end.at - start.at)


def _sample_coins(data_dir: Path) -> list[str]:
    from crypto_ml.data import CryptoLoader

    return list(CryptoLoader(data_dir).get_crypto_names())


def _missing_requirement() -> str | None:
    """Why this benchmark cannot run here (a missing package), or None."""
    for module, extra in (("fastapi", "api"), ("uvicorn", "api"), ("httpx", "test"), ("psutil", "bench")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed: pip install -e '.[{extra}]'"
    try:
        import crypto_ml.api.app
        import crypto_ml.api.keys  # noqa: F401
    except ImportError as exc:
        return f"the API is not importable here: {exc}"
    return None


def run(
    options: Options,
    *,
    users: Sequence[int] | None = None,
    duration: float | None = None,
    drain: float = DRAIN,
    server_workers: Sequence[int] = (2,),
    concurrency: int = 2,
) -> Report:
    """Load the API with simulated users, one phase per entry of ``users``, for each server size.

    Args:
        options: The run's options.
        users: Concurrent users per phase; None: 10, 50, 100 (2, 5 with ``--quick``).
        duration: Seconds each phase submits jobs for; None: 20 (3 with ``--quick``).
        drain: Seconds users may follow their last job after that.
        server_workers: uvicorn processes (``crypto-ml serve --workers``); one server per entry.
        concurrency: Pool processes of the Celery worker.
    """
    from crypto_ml.celery_app import LIGHT_QUEUE
    from crypto_ml.config import bundled_data_dir

    from .workers import BenchWorker, broker_problem, check_queue

    users = list(users or (QUICK_USERS if options.quick else USERS))
    duration = duration or (QUICK_DURATION if options.quick else DURATION)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    report = Report(
        NAME,
        TITLE,
        options,
        {
            "users": users,
            "phase_seconds": duration,
            "drain_seconds": drain,
            "poll_interval_s": POLL_INTERVAL,
            "job": {"coins": 1, "model": MODEL, "horizon": HORIZON},
            "server_workers": list(server_workers),
            "worker_concurrency": concurrency,
            "queue": LIGHT_QUEUE,
            "cores": cores,
        },
    )
    report.set_columns(
        ("server_workers", "API procs"),
        ("users", "users"),
        ("requests_per_s", "req/s"),
        ("submit_p50_ms", "submit p50 ms"),
        ("submit_p99_ms", "submit p99 ms"),
        ("status_p50_ms", "status p50 ms"),
        ("status_p99_ms", "status p99 ms"),
        ("job_p50_s", "job p50 s"),
        ("job_p95_s", "job p95 s"),
        ("errors", "errors"),
        ("jobs_submitted", "jobs"),
        ("jobs_lost", "lost"),
        ("jobs_duplicated", "dup"),
        ("api_cpu_ms_per_request", "API CPU ms/req"),
        ("api_cores", "API cores"),
        ("workers_cores", "worker cores"),
        ("postgresql_cores", "PG cores"),
        ("machine_cores", "busy cores"),
    )
    problem = _missing_requirement() or broker_problem()
    if problem:
        return report.skip(problem)
    check_queue(report, LIGHT_QUEUE)
    data_dir = bundled_data_dir()
    coins = _sample_coins(data_dir)
    logs = options.out / "logs"
    # Pinned for the server and the worker alike: the worker reads the prices the server names by reference.
    shared_env = {"CRYPTO_ML_DATA_DIR": str(data_dir)}
    with bench_database(options.out) as (database_url, database_text):
        report.parameters["database"] = database_text
        report.note(f"database: {database_text}")
        from crypto_ml.api.keys import create_key
        from crypto_ml.ledger import open_ledger

        with open_ledger(database_url) as ledger:
            # Far above the load, so the figures are the API's and not its throttle's.
            key, _ = create_key(ledger, "api-load", max_concurrent_jobs=10 * max(users), requests_per_minute=1_000_000)
        server_env = {**os.environ, **shared_env, "CRYPTO_ML_DATABASE_URL": database_url}
        with BenchWorker("api-load", LIGHT_QUEUE, concurrency, logs, env=shared_env) as worker:
            report.parameters["worker"] = worker.node
            accepted: set[str] = set()
            for processes in server_workers:
                log_path = logs / f"api-load-server-{processes}.log"
                with ApiProcess(processes, log_path, server_env) as server:
                    assert server.process is not None and worker.process is not None  # both started
                    pids = {"api": server.process.pid, "workers": worker.process.pid}
                    _load_one_server(report, server, pids, key, coins, users, duration, drain, database_url, accepted)
    _finish(report, cores, max(users))
    return report


def _load_one_server(
    report: Report,
    server: ApiProcess,
    pids: dict[str, int],
    key: str,
    coins: Sequence[str],
    users: Sequence[int],
    duration: float,
    drain: float,
    database_url: str,
    accepted: set[str],
) -> None:
    """The phases against one running server: at rest, a warm-up, then one row per number of users.

    ``accepted`` collects every job id a submit returned, across servers, so the database check can
    tell a job no client heard of from one of an earlier phase.
    """
    processes = server.workers
    assert server.process is not None
    facts: dict[str, Any] = {"rss_mib_after_start": tree_rss_mib(server.process.pid)}
    idle_cores = _idle_cores(pids, IDLE)
    facts["idle_cores"] = idle_cores
    with _event_loop_runner() as runner:
        warm = runner.run(run_phase(server.url, key, coins, 2 * processes, WARM_UP, drain, pids))
    accepted.update(warm.accepted)
    # A cold process's first submit loads the coin list and the model registry: reported, not timed.
    facts["warm_up_submit_max_ms"] = 1000 * max((call[1] for call in warm.submits), default=math.nan)
    for count in users:
        with _event_loop_runner() as runner:
            record = runner.run(run_phase(server.url, key, coins, count, duration, drain, pids))
        accepted.update(record.accepted)
        checked = database_check(database_url, record.accepted, wait=drain, known=accepted)
        row = phase_row(record, checked, processes, idle_cores)
        row["api_rss_mib"] = tree_rss_mib(server.process.pid)
        report.add_row(**row)
    facts["rss_mib_after_load"] = tree_rss_mib(server.process.pid)
    # uvicorn's access log is on, as deployed: a line per request is part of the API's CPU.
    facts["access_log_lines"] = sum(1 for line in server.log_tail(10**9).splitlines() if '"GET /v1/jobs/' in line)
    report.extra.setdefault("servers", {})[str(processes)] = facts


def _finish(report: Report, cores: int, most_users: int) -> None:
    """Targets, the Markdown table and the bottleneck, from the rows."""
    if not report.rows:
        return
    busiest = [row for row in report.rows if row["users"] == most_users]
    for row in busiest:
        where = f"at {most_users} users, {row['server_workers']} API process(es)"
        report.target(f"submit p99 {where}", row["submit_p99_ms"], "<=", SUBMIT_P99_MS, " ms")
        report.target(f"status p99 {where}", row["status_p99_ms"], "<=", STATUS_P99_MS, " ms")
    report.target("jobs lost", float(sum(row["jobs_lost"] for row in report.rows)), "<=", 0, "")
    report.target("jobs duplicated", float(sum(row["jobs_duplicated"] for row in report.rows)), "<=", 0, "")
    for row in busiest:
        report.note(bottleneck(row, cores))
    lag = max(row["client_loop_lag_p99_ms"] for row in busiest)
    report.note(
        f"the load client shares the machine: its event loop woke up to {lag:.1f} ms late (p99) at "
        f"{most_users} users, which is part of every latency above"
    )
    table = markdown_table(report.rows)
    report.extra["markdown"] = table
    report.options.out.mkdir(parents=True, exist_ok=True)
    (report.options.out / f"{NAME}.md").write_text(table + "\n")
    report.options.console.print(table, markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.api_load``: this benchmark alone, with sizes of your choosing."""
    import logging

    from rich.console import Console

    from .harness import DEFAULT_OUT, machine_line

    parser = argparse.ArgumentParser(prog="python -m benchmarks.api_load", description=TITLE)
    parser.add_argument("--users", default=",".join(map(str, USERS)), help="users per phase (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per phase (default: %(default)s)")
    parser.add_argument("--drain", type=float, default=DRAIN, help="seconds to follow the last jobs")
    parser.add_argument("--server-workers", default="2", help="uvicorn processes, one server each: 1,2")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery pool processes (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(f"[bold]machine[/]: {machine_line()}", highlight=False)
    options = Options(out=args.out, console=console)
    report = run(
        options,
        users=[int(n) for n in args.users.split(",")],
        duration=args.duration,
        drain=args.drain,
        server_workers=[int(n) for n in args.server_workers.split(",")],
        concurrency=args.concurrency,
    )
    report.show(console)
    console.print(f"written: {report.write()}")
    return 1 if report.error else 0


if __name__ == "__main__":
    sys.exit(main())
