"""A real ``crypto-ml serve`` process for the API's tests, and the helpers around it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["free_port", "ApiServer", "create_api_key", "create_api_keys", "bearer"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bearer(key: str) -> dict[str, str]:
    """The ``Authorization`` header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


class ApiServer:
    """``python -m crypto_ml serve`` on 127.0.0.1, in its own process group so it can be killed whole.

    Args:
        log_dir: Where the server's output (stdout and stderr together) goes, as ``api-PORT.log``.
        env: Variables added to (or overriding) this process's environment.
        workers: uvicorn worker processes.
        port: The port; a free one when None. Pass the port of a killed server to restart it in its place.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        process: The ``Popen`` of the server once started.
    """

    def __init__(
        self, log_dir: Path, *, env: dict[str, str] | None = None, workers: int = 1, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_dir) / f"api-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 30) -> ApiServer:
        """Start the server and wait until ``/healthz`` answers 200.

        Raises:
            AssertionError: The server exited, or did not answer within ``timeout`` seconds (its log is in the message).
        """
        command = [
            sys.executable,
            "-m",
            "crypto_ml",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"crypto-ml serve exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"crypto-ml serve did not answer /healthz within {timeout:.0f}s:\n{self.log()[-4000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server and every uvicorn worker at once (SIGKILL: as a crash would)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            if sig == signal.SIGKILL:
                self.process.wait(10)
                self._close_log()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL if it does not exit in time."""
        if self.process is None:
            return
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Worker processes of --workers N may outlive the parent for a moment: end the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def create_api_keys(database_url: str, limits_by_name: dict[str, dict[str, int]]) -> dict[str, str]:
    """Create several API keys at once (one database connection): ``{name: limits}`` -> ``{name: secret}``."""
    from crypto_ml.api.keys import create_key
    from crypto_ml.ledger import open_ledger

    with open_ledger(database_url) as ledger:
        return {name: create_key(ledger, name, **limits)[0] for name, limits in limits_by_name.items()}


def create_api_key(database_url: str, name: str = "test", **limits) -> str:
    """Create an API key in the database at ``database_url`` (in-process) and return the secret.

    Args:
        database_url: The ledger database the server uses.
        name: The key's name (unique).
        **limits: ``max_concurrent_jobs`` and/or ``requests_per_minute``.
    """
    from crypto_ml.api.keys import create_key
    from crypto_ml.ledger import open_ledger

    with open_ledger(database_url) as ledger:
        secret, _key = create_key(ledger, name, **limits)
    return secret
