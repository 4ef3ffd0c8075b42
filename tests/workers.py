"""Real ``celery -A crypto_ml worker`` processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path


class WorkerProcess:
    """One worker node in its own process group, so it can be killed whole, as a crash would.

    Args:
        name: Node name prefix; a random suffix keeps concurrent test runs apart.
        log_dir: Where the worker's output goes.
        concurrency: Prefork processes.
        queues: Comma-separated queues; None consumes all of crypto_ml's.
        env: Extra environment variables.
        prefix: A command that runs the worker elsewhere, e.g. ``ip netns exec HOST`` (tests/netbed.py).
    """

    def __init__(
        self,
        name: str,
        log_dir: Path,
        concurrency: int = 1,
        queues: str | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.node = f"{name}-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
        self.log_path = log_dir / f"{self.node.split('@')[0]}.log"
        self.concurrency = concurrency
        self.queues = queues
        self.env = {**os.environ, **(env or {})}
        self.prefix = list(prefix or [])
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        command = [
            *self.prefix,
            sys.executable,
            "-m",
            "celery",
            "-A",
            "crypto_ml",
            "worker",
            "-n",
            self.node,
            "-c",
            str(self.concurrency),
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        if self.queues:
            command += ["-Q", self.queues]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the main process and every pool child at once."""
        if self.alive():
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


def wait_for_nodes(nodes: list[str], timeout: float = 60.0) -> dict[str, int]:
    """Wait until every node answers; return the answering nodes and their pool sizes."""
    from crypto_ml.engines.celery import ping_workers

    deadline = time.monotonic() + timeout
    answering: dict[str, int] = {}
    while time.monotonic() < deadline:
        answering = ping_workers(timeout=1.0)
        if all(node in answering for node in nodes):
            return {node: answering[node] for node in nodes}
        time.sleep(0.5)
    raise TimeoutError(f"workers {nodes} did not answer within {timeout:.0f}s; answering: {sorted(answering)}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_flower(log_path: Path, port: int, user: str, password: str, env: dict[str, str] | None = None):
    """``celery -A crypto_ml flower`` on 127.0.0.1:``port`` behind basic auth, in its own process group.

    Its output goes to ``log_path``; ``env`` adds to (or overrides) this process's environment.
    """
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "crypto_ml", "flower", f"--port={port}", "--address=127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FLOWER_BASIC_AUTH": f"{user}:{password}", **(env or {})},
            start_new_session=True,
        )
