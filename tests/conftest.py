"""Shared fixtures: isolated settings, generated datasets, the real dataset, live services."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from crypto_ml.config import Settings, get_settings

REAL_DATA_DIR = Path(
    os.environ.get("CRYPTO_ML_REAL_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "top100-2017"
)
#: Set by .ci/run: a missing service or dataset fails the test instead of skipping it.
REQUIRE_SERVICES = os.environ.get("CRYPTO_ML_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip on a user's machine; fail in CI, where the service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CRYPTO_ML_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item):
    """Tests marked ``deep`` need the deep extra; without it they skip (or fail in CI)."""
    if item.get_closest_marker("deep"):
        import importlib.util

        missing = [name for name in ("keras", "tensorflow") if importlib.util.find_spec(name) is None]
        if missing:
            skip_or_fail(f"{', '.join(missing)} not installed; install the deep extra: pip install -e '.[deep]'")


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path):
    """Every test starts from the documented defaults, whatever the developer's shell exports,
    and never writes models, datasets or prices into the developer's own folders."""
    for field in Settings.model_fields:
        monkeypatch.delenv(f"CRYPTO_ML_{field.upper()}", raising=False)
    monkeypatch.setenv("CRYPTO_ML_MODEL_STORE", str(tmp_path / "model-store"))
    # Workers started by a test inherit these: datasets they cache, and frames sent by reference,
    # stay in the test's own folder, never in the developer's ~/.cache.
    monkeypatch.setenv("CRYPTO_ML_CACHE_DIR", str(tmp_path / "dataset-cache"))
    monkeypatch.setenv("CRYPTO_ML_PRICE_STORE", str(tmp_path / "price-store"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DATA_DIR / "Bitcoin.csv").is_file():
        skip_or_fail(f"the real top-100 dataset is not at {REAL_DATA_DIR}; set CRYPTO_ML_REAL_DATA to its folder")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Twelve generated coins in CoinMarketCap format (read-only for tests)."""
    from crypto_ml.synthetic import generate_dataset

    return generate_dataset(12, tmp_path_factory.mktemp("synth") / "coins", seed=7, min_points=60, max_points=400)


def services_down_reason() -> str | None:
    """Why RabbitMQ or Redis cannot be used, or None when both answer."""
    from kombu import Connection

    settings = get_settings()
    try:
        with Connection(settings.broker_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"RabbitMQ is not reachable at {settings.broker_url.split('@')[-1]} ({exc})"
    try:
        import redis

        redis.Redis.from_url(settings.result_backend, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis is not reachable at {settings.result_backend} ({exc})"
    return None


@pytest.fixture
def services():
    """RabbitMQ and Redis, live; skips (or fails under CRYPTO_ML_REQUIRE_SERVICES=1) when they are not."""
    reason = services_down_reason()
    if reason:
        skip_or_fail(reason)


@contextmanager
def worker_starter(log_dir: Path) -> Iterator[Any]:
    """A function that starts real worker nodes logging into ``log_dir``; each one started is stopped on exit.

    ``start(name, concurrency=, queues=, wait=, env=)``: ``wait=False`` returns at once (start a server
    meanwhile, then ``wait_for_nodes``).
    """
    from workers import WorkerProcess, wait_for_nodes

    started: list[WorkerProcess] = []

    def start(
        name: str = "w", *, concurrency: int = 1, queues: str | None = None, wait: bool = True, env: dict | None = None
    ) -> WorkerProcess:
        worker = WorkerProcess(name, log_dir, concurrency=concurrency, queues=queues, env=env).start()
        started.append(worker)
        if wait:
            try:
                wait_for_nodes([worker.node])
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n--- worker log ---\n{worker.log()[-3000:]}") from None
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def start_worker(services, tmp_path):
    """Start real worker nodes; every one started is stopped at the end of the test."""
    with worker_starter(tmp_path) as start:
        yield start


@pytest.fixture
def coins(tmp_path) -> Path:
    """A clean folder: three well-formed coins, names with spaces and hyphens (tests/test_data_*.py)."""
    from data_helpers import daily_rows, write_coin

    folder = tmp_path / "coins"
    write_coin(folder, "Bitcoin", daily_rows(30, start_price=3000.0))
    write_coin(folder, "Bitcoin Cash", daily_rows(20, start_price=300.0))
    write_coin(folder, "I-O Coin", daily_rows(10, start_price=0.5))
    return folder


# --- PostgreSQL, for the ledger's tests ------------------------------------------------------------

#: The server the ledger's tests create their databases on (trust auth, as on the development and CI
#: machines); each test gets a fresh database there, dropped afterwards.
POSTGRES_HOST = os.environ.get("CRYPTO_ML_TEST_POSTGRES_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("CRYPTO_ML_TEST_POSTGRES_PORT", "5432"))
POSTGRES_USERS = ("postgres", "root")


def postgres_admin():
    """An autocommit psycopg connection to the `test` database, or the reason there is none."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed; install the test extra: pip install -e '.[test]'"
    reason = f"PostgreSQL is not reachable at {POSTGRES_HOST}:{POSTGRES_PORT}"
    if not port_open(POSTGRES_HOST, POSTGRES_PORT):
        return None, reason
    for user in POSTGRES_USERS:
        try:
            connection = psycopg.connect(
                host=POSTGRES_HOST, port=POSTGRES_PORT, dbname="test", user=user, autocommit=True, connect_timeout=5
            )
        except psycopg.Error as exc:
            reason = f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} refused user {user!r} on database 'test' ({exc})"
            continue
        return (connection, user), None
    return None, reason


@contextmanager
def fresh_postgres_database(prefix: str = "crypto_ml_t") -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped on exit.

    Skips (or fails under CRYPTO_ML_REQUIRE_SERVICES=1) when PostgreSQL does not answer.
    """
    import uuid

    admin, reason = postgres_admin()
    if admin is None:
        skip_or_fail(reason)
    connection, user = admin
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with connection:
        connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        finally:
            # FORCE: a test that failed mid-way may leave a connection open (PostgreSQL 13+).
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url():
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """A fresh ledger database: a SQLite file in the test's folder, then a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def ledger(ledger_url):
    """An open ledger on each database of ``ledger_url``, closed after the test."""
    from crypto_ml.ledger import open_ledger

    with open_ledger(ledger_url) as opened:
        yield opened


# --- The HTTP API (crypto-ml serve): its database, servers and workers -------------------------------


@pytest.fixture
def api_database():
    """A fresh PostgreSQL database for an API server of this test (the ledger's tables and the API's)."""
    with fresh_postgres_database("crypto_ml_api") as url:
        yield url


@pytest.fixture
def api_server(api_database, tmp_path):
    """Start ``crypto-ml serve`` processes on ``api_database``; every one started is stopped at the end.

    ``start(env=None, workers=1, *, data_dir=None, port=None, timeout=30) -> ApiServer``; ``data_dir`` becomes
    ``CRYPTO_ML_DATA_DIR``; ``port`` reuses a port (a restart after a kill).
    """
    from api_helpers import ApiServer

    servers: list[ApiServer] = []

    def start(
        env: dict[str, str] | None = None,
        workers: int = 1,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        timeout: float = 30,
    ) -> ApiServer:
        server_env = {"CRYPTO_ML_DATABASE_URL": api_database}
        if data_dir is not None:
            server_env["CRYPTO_ML_DATA_DIR"] = str(data_dir)
        server = ApiServer(tmp_path, env={**server_env, **(env or {})}, workers=workers, port=port)
        servers.append(server)
        return server.start(timeout)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def api_module_env(tmp_path_factory):
    """For a server and workers shared by a test module: the settings' defaults, and folders of the module's own.

    Module-scoped fixtures run before ``isolated_settings``, so this clears the developer's ``CRYPTO_ML_*``
    variables itself, for as long as the module runs; processes started meanwhile inherit that environment.
    """
    folder = tmp_path_factory.mktemp("api-module")
    with pytest.MonkeyPatch.context() as patch:
        for field in Settings.model_fields:
            patch.delenv(f"CRYPTO_ML_{field.upper()}", raising=False)
        patch.setenv("CRYPTO_ML_MODEL_STORE", str(folder / "model-store"))
        patch.setenv("CRYPTO_ML_CACHE_DIR", str(folder / "dataset-cache"))
        patch.setenv("CRYPTO_ML_PRICE_STORE", str(folder / "price-store"))
        get_settings.cache_clear()
        yield folder
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def module_api_database(api_module_env):
    """``api_database`` shared by a whole test module."""
    with fresh_postgres_database("crypto_ml_api") as url:
        yield url


@pytest.fixture(scope="module")
def module_start_worker(api_module_env):
    """``start_worker`` for a whole test module: the workers live until the module's last test ends."""
    reason = services_down_reason()
    if reason:
        skip_or_fail(reason)
    with worker_starter(api_module_env) as start:
        yield start


@pytest.fixture(scope="module")
def module_api_server(module_api_database, api_module_env):
    """``api_server`` for a whole test module, on ``module_api_database``."""
    from api_helpers import ApiServer

    servers: list[ApiServer] = []

    def start(
        env: dict[str, str] | None = None, workers: int = 1, *, data_dir: Path | None = None, timeout: float = 30
    ) -> ApiServer:
        server_env = {"CRYPTO_ML_DATABASE_URL": module_api_database}
        if data_dir is not None:
            server_env["CRYPTO_ML_DATA_DIR"] = str(data_dir)
        server = ApiServer(api_module_env, env={**server_env, **(env or {})}, workers=workers)
        servers.append(server)
        return server.start(timeout)

    yield start
    for server in servers:
        server.stop()
