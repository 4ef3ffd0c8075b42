"""Celery workers that a benchmark starts, measures and always stops.

Each worker is a real ``celery -A crypto_ml worker`` in its own process group
(the approach of ``tests/workers.py``), with a unique node name, so stopping
it signals the main process and every pool child at once and nothing
outlives the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["GroupProcess", "BenchWorker", "broker_problem", "check_queue", "queue_state", "rss_kib", "stop_group"]


def rss_kib(pid: int) -> dict[str, int]:
    """Resident memory of a process from ``/proc/<pid>/status``: ``{"rss": VmRSS, "peak": VmHWM}`` in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values["rss" if key == "VmRSS" else "peak"] = int(rest.split()[0])
    return values


def broker_problem(timeout: float = 3.0) -> str | None:
    """Why the configured broker or result backend cannot be used, or None when both answer."""
    from kombu.utils.url import maybe_sanitize_url

    from crypto_ml.celery_app import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means "no broker"
        hint = ""
        if "vhost" in str(exc):
            # The benchmarks README suggests a vhost of their own on a shared broker.
            hint = (
                "; create it with `rabbitmqctl add_vhost NAME && "
                "rabbitmqctl set_permissions -p NAME USER '.*' '.*' '.*'`"
            )
        return f"no broker at {maybe_sanitize_url(app.conf.broker_url)}: {exc}{hint}"
    try:
        app.backend.client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"no result backend at {maybe_sanitize_url(app.conf.result_backend)}: {exc}"
    return None


def queue_state(queue: str) -> dict[str, int]:
    """Messages waiting in ``queue`` and consumers attached to it (0, 0 when it does not exist yet).

    Consumers present before a benchmark starts its own worker belong to
    someone else: they would take a share of the benchmark's tasks.
    """
    from crypto_ml.celery_app import app

    with app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            _, messages, consumers = channel.queue_declare(queue=queue, passive=True)
        except Exception:  # noqa: BLE001 - a passive declare of a missing queue closes the channel
            return {"messages": 0, "consumers": 0}
        finally:
            with contextlib.suppress(Exception):  # already closed by the broker
                channel.close()
    return {"messages": int(messages), "consumers": int(consumers)}


def check_queue(report: Any, queue: str) -> dict[str, int]:
    """Record ``queue``'s state in the report, with a warning for what would skew the figures.

    Other consumers take a share of the benchmark's tasks; waiting messages (an
    interrupted run's, say) run before them.
    """
    state = queue_state(queue)
    report.extra.setdefault("queues_before", {})[queue] = state
    if state["consumers"]:
        report.note(
            f"[yellow]{state['consumers']} other consumer(s) on {queue}[/]: they take a share of the "
            "tasks; use a broker (vhost) of your own for clean figures"
        )
    if state["messages"]:
        report.note(
            f"[yellow]{state['messages']} message(s) were already waiting on {queue}[/] and ran first "
            f"(an interrupted run?); `celery -A crypto_ml purge -Q {queue}` clears them"
        )
    return state


class GroupProcess:
    """A command in its own process group, its output in a log file; a context manager that always stops it.

    Subclasses build the command and call ``launch`` in their ``start``, then wait until it answers.
    """

    #: Seconds ``stop`` waits for a graceful exit before SIGKILL.
    stop_timeout = 30.0

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen | None = None
        self._log: Any = None

    def start(self, timeout: float = 60.0) -> Any:
        """Start it and wait until it answers; raise ``RuntimeError`` with the log's tail if it does not."""
        raise NotImplementedError

    def launch(self, command: list[str]) -> subprocess.Popen:
        """Start ``command`` with ``env``, its output appended to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        return self.process

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL to the whole group, so no child is left."""
        if self.process is not None:
            stop_group(self.process, self.stop_timeout if timeout is None else timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class BenchWorker(GroupProcess):
    """One ``celery -A crypto_ml worker`` node for a benchmark; a context manager that always stops it.

    Args:
        label: Part of the node name (``bench-<label>-<random>@<host>``).
        queue: The queue it consumes.
        concurrency: Prefork pool processes.
        log_dir: Where its log goes (``<node>.log``).
        env: Extra environment variables for the worker.
        app: The Celery app (``-A``); only the overhead benchmark's stock baseline uses another.
    """

    def __init__(
        self,
        label: str,
        queue: str,
        concurrency: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
        app: str = "crypto_ml",
    ) -> None:
        self.node = f"bench-{label}-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
        super().__init__(Path(log_dir) / f"{self.node.split('@')[0]}.log", {**os.environ, **(env or {})})
        self.queue = queue
        self.concurrency = concurrency
        self.app = app

    def start(self, timeout: float = 90.0) -> BenchWorker:
        """Start the worker and wait until it answers a ping.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds (the log's tail says why).
        """
        from crypto_ml.engines.celery import ping_workers

        # WARNING is Celery's default level, as in the documented deployment: INFO
        # would add a log line per task to every figure.
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app,
            "worker",
            "-n",
            self.node,
            "-c",
            str(self.concurrency),
            "-Q",
            self.queue,
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ]
        process = self.launch(command)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.stop()
                raise RuntimeError(f"worker {self.node} exited with {process.returncode}: {self.log_tail()}")
            if self.node in ping_workers(timeout=1.0):
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"worker {self.node} did not answer within {timeout:.0f}s: {self.log_tail()}")

    def stats(self) -> dict[str, Any]:
        """``celery inspect stats`` for this node alone (empty if it does not answer)."""
        from crypto_ml.celery_app import app

        return (app.control.inspect(destination=[self.node], timeout=2.0).stats() or {}).get(self.node, {})

    def pool_pids(self) -> list[int]:
        """Process ids of the pool children: where the tasks run and the memory grows."""
        return [int(pid) for pid in self.stats().get("pool", {}).get("processes", [])]


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to a process started with ``start_new_session`` (a graceful shutdown), up to ``timeout``
    seconds, then SIGKILL to its whole group: no child that outlived its parent is left running."""
    pgid = process.pid  # start_new_session: the group id is the main process's id
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
