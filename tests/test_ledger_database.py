"""crypto_ml.ledger.database: opening, migrating, and what a bad or unreachable URL says."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from crypto_ml.exceptions import InvalidParameterError, LedgerError
from crypto_ml.ledger import open_ledger, start_run, table_counts
from crypto_ml.ledger.database import mask_url
from crypto_ml.ledger.schema import Base

TABLES = {"runs", "forecasts", "forecast_intervals", "scores", "interval_scores", "locks"}
#: The HTTP API's tables (crypto_ml.api.schema, migration 0002), in the same database.
API_TABLES = {"api_keys", "api_sessions", "jobs", "job_tasks", "job_results"}
#: The newest migration.
HEAD = "0002"


def test_open_creates_the_tables_empty(ledger):
    names = set(inspect(ledger.engine).get_table_names())
    assert names == TABLES | API_TABLES | {"alembic_version"}
    assert table_counts(ledger) == dict.fromkeys(TABLES | API_TABLES, 0)
    assert ledger.backend in ("sqlite", "postgresql")


def test_forecasts_have_their_unique_key_and_indexes(ledger):
    inspector = inspect(ledger.engine)
    unique = {c["name"]: c["column_names"] for c in inspector.get_unique_constraints("forecasts")}
    assert unique == {"uq_forecasts_key": ["coin", "model", "params_hash", "origin_date", "step"]}
    indexes = {index["name"]: index["column_names"] for index in inspector.get_indexes("forecasts")}
    assert indexes["ix_forecasts_target_date"] == ["target_date"]
    assert indexes["ix_forecasts_model_origin_date"] == ["model", "origin_date"]


def test_the_migrations_create_exactly_the_schema_of_the_models(ledger):
    """schema.py and migrations/versions describe the same tables: autogenerate finds nothing to change."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with ledger.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_opening_again_is_idempotent(ledger_url):
    with open_ledger(ledger_url) as first, first.engine.connect() as connection:
        connection.execute(text("INSERT INTO locks VALUES ('kept', 'me', '2024-01-01', '2024-01-02')"))
        connection.commit()
    with open_ledger(ledger_url) as second, second.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        assert connection.execute(text("SELECT name FROM locks")).scalars().all() == ["kept"]


def test_processes_opening_a_new_ledger_at_once_all_succeed(ledger_url):
    """Every worker of a cluster may open the ledger at the same moment: they take turns migrating."""
    script = (
        "import sys, time; from crypto_ml.ledger import open_ledger; start = float(sys.argv[2])\n"
        "time.sleep(max(0.0, start - time.time())); open_ledger(sys.argv[1]).close(); print('opened')"
    )
    start = time.time() + 3.0
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, ledger_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err[-2000:] for _, err in outcomes]
    with open_ledger(ledger_url, upgrade=False) as ledger, ledger.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
        assert set(inspect(connection).get_table_names()) >= TABLES


def test_threads_opening_a_new_ledger_at_once_all_succeed(ledger_url):
    """An API server opens the ledger from several threads: Alembic's globals must not be shared by two upgrades."""
    import threading

    barrier, errors = threading.Barrier(4), []

    def open_it():
        barrier.wait()
        try:
            open_ledger(ledger_url).close()
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with open_ledger(ledger_url, upgrade=False) as ledger, ledger.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]


def test_sqlite_is_configured_for_concurrent_use(tmp_path):
    with open_ledger(f"sqlite:///{tmp_path / 'new' / 'folder' / 'ledger.sqlite'}") as ledger:
        assert (tmp_path / "new" / "folder" / "ledger.sqlite").is_file()
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_an_in_memory_sqlite_ledger_works(tmp_path):
    with open_ledger("sqlite://") as ledger:
        assert table_counts(ledger)["forecasts"] == 0


def test_the_default_is_a_sqlite_file_beside_the_model_store(tmp_path):
    # conftest points CRYPTO_ML_MODEL_STORE at tmp_path/model-store.
    with open_ledger() as ledger:
        assert ledger.backend == "sqlite"
        assert (tmp_path / "ledger.sqlite").is_file()


def test_the_environment_names_the_database(monkeypatch, tmp_path):
    from crypto_ml.config import get_settings

    path = tmp_path / "elsewhere" / "mine.sqlite"
    monkeypatch.setenv("CRYPTO_ML_DATABASE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()
    with open_ledger() as ledger:
        assert ledger.url == f"sqlite:///{path}"
    assert path.is_file()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("not a url", "not a SQLAlchemy URL"),
        ("mysql://admin:secret@db.example/ledger", "'mysql'"),
    ],
)
def test_a_bad_url_is_refused_with_the_password_masked(url, named):
    with pytest.raises(InvalidParameterError) as caught:
        open_ledger(url)
    message = str(caught.value)
    assert named in message
    assert "secret" not in message
    assert "postgresql+psycopg://" in message  # says what a good one looks like


def test_an_unreachable_database_is_a_ledger_error_with_the_password_masked():
    # Port 1 on localhost: nothing listens there, so the connection is refused at once.
    with pytest.raises(LedgerError) as caught:
        open_ledger("postgresql+psycopg://someone:secret@127.0.0.1:1/ledger")
    message = str(caught.value)
    assert "someone:***@127.0.0.1:1/ledger" in message
    assert "secret" not in message
    assert "CRYPTO_ML_DATABASE_URL" in message


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql+psycopg://me:p%40ss@host:5432/db") == "postgresql+psycopg://me:***@host:5432/db"
    assert mask_url("postgresql+psycopg://me@host/db") == "postgresql+psycopg://me@host/db"
    assert mask_url("sqlite:////tmp/ledger.sqlite") == "sqlite:////tmp/ledger.sqlite"


def test_importing_crypto_ml_or_its_cli_does_not_import_sqlalchemy():
    # The CLI attaches the ledger's and the pipeline's commands at every start; only a command that opens
    # the ledger may pay for SQLAlchemy (half a second).
    code = (
        "import sys, crypto_ml, crypto_ml.config, crypto_ml.exceptions, crypto_ml.cli, crypto_ml.ledger\n"
        "assert 'sqlalchemy' not in sys.modules and 'alembic' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_the_ledger_package_loads_each_public_name_from_its_module():
    import crypto_ml.ledger as package

    assert sorted(package.__all__) == sorted(package._EXPORTS)
    for name in package.__all__:
        assert getattr(package, name).__module__ == f"crypto_ml.ledger.{package._EXPORTS[name]}"


def test_a_reader_does_not_hold_up_a_writer(ledger):
    """On SQLite a writer's transaction takes the write lock; a reading one must not, or a report stalls a cycle."""
    with ledger.reading() as reader:
        assert reader.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
        assert reader.in_transaction()
        started = time.perf_counter()
        start_run(ledger, "pipeline", {})  # waits out the 30 s busy timeout if the reader holds the lock
        assert time.perf_counter() - started < 5.0


def test_the_pipeline_keeps_the_default_pool_and_a_server_sizes_its_own(postgres_url):
    """Unchanged for the pipeline (5 kept, pre-ping on); the HTTP API keeps more and may turn pre-ping off."""
    with open_ledger(postgres_url) as default:
        assert default.engine.pool.size() == 5 and default.engine.pool._pre_ping
    with open_ledger(postgres_url, pool_size=20, max_overflow=3, pre_ping=False) as sized:
        assert sized.engine.pool.size() == 20 and sized.engine.pool._max_overflow == 3
        assert not sized.engine.pool._pre_ping
        with sized.reading() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1


def test_an_autocommit_reader_runs_each_statement_on_its_own(ledger):
    """On PostgreSQL no transaction spans its statements (no BEGIN, no ROLLBACK on return: each sees what was
    committed before it), and the connection goes back to the pool as a plain one; on SQLite nothing changes."""
    postgres = ledger.backend == "postgresql"
    with ledger.reading(autocommit=True) as reader:
        assert reader.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
        if postgres:
            assert reader.connection.dbapi_connection.autocommit
            assert reader.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
        started = time.perf_counter()
        start_run(ledger, "pipeline", {})  # a reader never holds up a writer
        assert time.perf_counter() - started < 5.0
        # SQLite's read transaction keeps its snapshot, as a plain reader's does.
        assert reader.execute(text("SELECT count(*) FROM runs")).scalar_one() == (1 if postgres else 0)
    with ledger.reading() as reader:
        reader.execute(text("SELECT 1"))
        if postgres:
            assert not reader.connection.dbapi_connection.autocommit
