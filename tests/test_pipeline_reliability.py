"""Reliability of the pipeline against real failures: PostgreSQL restarted mid-write, a worker killed
mid-cycle, beat restarted. Each test ends with every forecast recorded exactly once (the same rows as an
uninterrupted run on a fresh database) and every matured one scored.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_pipeline_replay import ledger_table

from conftest import POSTGRES_HOST, POSTGRES_PORT, REQUIRE_SERVICES, postgres_admin, skip_or_fail

pytest.importorskip("sqlalchemy")

MODELS = ["naive", "ewma", "drift"]
HORIZON = 5
LEVELS = (80, 95)
FIRST_DAY, LAST_DAY = "2017-08-24", "2017-09-22"
DAYS = 30


def counts(url: str) -> dict[str, int]:
    from crypto_ml.ledger import open_ledger, table_counts

    with open_ledger(url) as ledger:
        return table_counts(ledger)


def run_statuses(url: str) -> list[str]:
    from sqlalchemy import select

    from crypto_ml.ledger import open_ledger
    from crypto_ml.ledger.schema import Run

    with open_ledger(url) as ledger, ledger.engine.connect() as connection:
        return [row.status for row in connection.execute(select(Run.status).order_by(Run.id))]


def assert_same_ledger(found: dict, expected: dict) -> None:
    """The same forecasts (keys), the same steps, bounds and scores, the same values."""
    assert found.keys() == expected.keys()
    for key, entry in expected.items():
        other = found[key]
        for field in ("point", "bounds", "abs_error", "inside", "interval_score"):
            assert other[field].keys() == entry[field].keys(), (key, field)
            for step, value in entry[field].items():
                assert other[field][step] == pytest.approx(value, rel=1e-12), (key, field, step)


# --- 1. PostgreSQL restarted mid-write -------------------------------------------------------------


def _cluster_version() -> str | None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return versions[-1] if versions else None


def _pg_ready() -> bool:
    done = subprocess.run(
        ["pg_isready", "-h", POSTGRES_HOST, "-p", str(POSTGRES_PORT)], capture_output=True, timeout=10
    )
    return done.returncode == 0


def _wait_pg_ready(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pg_ready():
            return
        time.sleep(0.2)
    raise AssertionError(f"PostgreSQL did not answer pg_isready within {timeout:.0f}s")


def _pg_ctl(action: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster_version(), "main", action, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def restartable_postgres():
    """Two fresh PostgreSQL databases on a server this test may restart; PostgreSQL is up again after it."""
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None or _cluster_version() is None:
        reason = "restarting PostgreSQL needs root and pg_ctlcluster (Debian's postgresql-common)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} (CRYPTO_ML_REQUIRE_SERVICES=1 makes this a failure)")
        pytest.skip(reason)
    admin, reason = postgres_admin()
    if admin is None:
        skip_or_fail(reason)
    connection, user = admin
    names = [f"crypto_ml_t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}" for name in names]
    finally:
        if not _pg_ready():
            _pg_ctl("start")
            _wait_pg_ready()
        # The admin connection above died with the restart: a new one drops the databases.
        admin, _ = postgres_admin()
        if admin is not None:
            with admin[0] as connection:
                for name in names:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _replay_command(data: Path, url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "crypto_ml",
        "pipeline",
        "replay",
        "--from",
        FIRST_DAY,
        "--to",
        LAST_DAY,
        "--models",
        ",".join(MODELS),
        "--horizon",
        str(HORIZON),
        "--levels",
        ",".join(str(level) for level in LEVELS),
        "--engine",
        "local",
        "--data",
        str(data),
        "--database",
        url,
    ]


@pytest.mark.slow
def test_postgresql_restarted_mid_replay_and_rerun_records_everything_once(restartable_postgres, synth_dir):
    """Restarts the real PostgreSQL server (root, pg_ctlcluster) while a replay records into it."""
    from crypto_ml.data import CryptoLoader

    victim_url, reference_url = restartable_postgres
    coins = CryptoLoader(synth_dir).get_crypto_names()
    expected_forecasts = len(coins) * len(MODELS) * DAYS * HORIZON
    matured = sum(DAYS - step for step in range(1, HORIZON + 1)) * len(coins) * len(MODELS)

    command = _replay_command(synth_dir, victim_url)
    victim = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and victim.poll() is None:
            try:
                seen = counts(victim_url)["forecasts"]
            except Exception:  # noqa: BLE001 - the schema may not exist yet
                seen = 0
            if seen >= expected_forecasts // 4:
                break
            time.sleep(0.02)
        assert victim.poll() is None, "the replay ended before PostgreSQL was restarted"
        restarted = _pg_ctl("restart", "-m", "fast")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        _wait_pg_ready()
        output = victim.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
        if not _pg_ready():
            _pg_ctl("start")
            _wait_pg_ready()
    assert 0 < seen < expected_forecasts
    # Either it lost its connection and said so in one line (exit 2: a LedgerError), or it reconnected.
    assert victim.returncode in (0, 2), output
    if victim.returncode == 2:
        # The last line names the step and the ledger (a warning that the run could not be marked failed,
        # with its traceback, may come before it).
        last = output.strip().splitlines()[-1]
        assert last.startswith("error:") and "in the ledger at" in last, output

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    reference = subprocess.run(_replay_command(synth_dir, reference_url), capture_output=True, text=True, timeout=180)
    assert reference.returncode == 0, reference.stdout + reference.stderr

    after, expected = counts(victim_url), counts(reference_url)
    assert after["forecasts"] == expected["forecasts"] == expected_forecasts
    assert after["forecast_intervals"] == expected["forecast_intervals"] == expected_forecasts * len(LEVELS)
    assert after["scores"] == expected["scores"] == matured
    assert after["interval_scores"] == expected["interval_scores"] == matured * len(LEVELS)
    assert_same_ledger(ledger_table(victim_url), ledger_table(reference_url))
    statuses = run_statuses(victim_url)
    assert statuses[-1] == "ok"
    if victim.returncode == 0:
        assert statuses == ["ok", "ok"]
    else:  # the interrupted run could not always mark itself failed: the database was what failed
        assert len(statuses) == 2 and statuses[0] in ("running", "failed")


# --- 2. A pipeline worker killed mid-cycle -----------------------------------------------------------

#: A vhost of its own: no other test's workers take these cycles, nor these workers theirs.
RELIABILITY_VHOST = "crypto_ml_reliability"
#: ARIMA (plus naive, always added) on 40 coins: a cycle of several seconds, recorded model by model.
CYCLE_MODELS = "arima"
CYCLE_HORIZON = 3


@pytest.fixture
def reliability_vhost(services):
    """The vhost's URL, its pipeline queue emptied of anything an earlier run left."""
    if shutil.which("rabbitmqctl") is None:
        skip_or_fail("rabbitmqctl is not available, so the reliability tests' vhost cannot be created")
    for command in (
        ["add_vhost", RELIABILITY_VHOST],
        ["set_permissions", "-p", RELIABILITY_VHOST, "guest", ".*", ".*", ".*"],
    ):
        done = subprocess.run(["rabbitmqctl", *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 and "already exists" not in done.stderr + done.stdout:
            skip_or_fail(f"rabbitmqctl {' '.join(command)} failed: {done.stderr.strip()}")
    subprocess.run(
        ["rabbitmqctl", "purge_queue", "-p", RELIABILITY_VHOST, "crypto_ml.pipeline"], capture_output=True, timeout=60
    )
    return f"amqp://guest:guest@localhost:5672/{RELIABILITY_VHOST}"


@pytest.fixture(scope="module")
def cycle_data(tmp_path_factory) -> Path:
    from crypto_ml.synthetic import generate_dataset

    return generate_dataset(40, tmp_path_factory.mktemp("cycle") / "coins", seed=11, min_points=200, max_points=400)


def _send_cycle(broker_url: str, payload: dict) -> str:
    """Send ``crypto_ml.pipeline_cycle`` as beat would, from another process on the test's vhost; its task id."""
    import json

    code = (
        "import json, sys; from crypto_ml.celery_app import app, PIPELINE_TASK; "
        "print(app.send_task(PIPELINE_TASK, args=[json.loads(sys.argv[1])]).id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CRYPTO_ML_BROKER_URL": broker_url},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _wait_ready(worker, timeout: float = 60.0) -> None:
    """Wait until the worker says it is ready (a ping would go to the default vhost, not this one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in worker.log():
            return
        assert worker.alive(), worker.log()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"worker {worker.node} not ready within {timeout:.0f}s\n{worker.log()[-3000:]}")


def _statuses_or_none(url: str) -> list[str]:
    try:
        return run_statuses(url)
    except Exception:  # noqa: BLE001 - the cycle creates the ledger
        return []


def _forecasts_or_zero(url: str) -> int:
    try:
        return counts(url)["forecasts"]
    except Exception:  # noqa: BLE001
        return 0


@pytest.mark.broker
@pytest.mark.slow
def test_a_pipeline_worker_killed_mid_cycle_is_redelivered_and_records_everything_once(
    reliability_vhost, start_worker, postgres_url, cycle_data, tmp_path
):
    from crypto_ml.celery_app import PIPELINE_QUEUE
    from crypto_ml.pipeline import run_cycle

    # The uninterrupted cycle, on a fresh database of its own.
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    payload = {
        "data": str(cycle_data),
        "models": CYCLE_MODELS,
        "horizon": CYCLE_HORIZON,
        "engine": "local",
        "workers": 1,
    }
    reference = run_cycle(**payload, database_url=reference_url)
    assert reference.status == "ok" and not reference.failures

    env = {"CRYPTO_ML_BROKER_URL": reliability_vhost, "CRYPTO_ML_ENGINE": "local"}
    first = start_worker("pipeline-victim", queues=PIPELINE_QUEUE, env=env, wait=False)
    _wait_ready(first)
    task_id = _send_cycle(reliability_vhost, {**payload, "database_url": postgres_url})
    seen, statuses = 0, []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        statuses = _statuses_or_none(postgres_url)
        seen = _forecasts_or_zero(postgres_url)
        if statuses == ["running"] and seen > 0:
            break
        time.sleep(0.05)
    first.kill_group()  # the main process and its pool child at once, as a crash would
    first.process.wait(10)
    assert statuses == ["running"] and 0 < seen < reference.forecasts_inserted, (statuses, seen, first.log()[-3000:])
    assert run_statuses(postgres_url) == ["running"], "the cycle finished before its worker was killed"

    second = start_worker("pipeline-heir", queues=PIPELINE_QUEUE, env=env, wait=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "ok" not in statuses:
        time.sleep(0.5)
        statuses = _statuses_or_none(postgres_url)
    assert statuses == ["running", "ok"], f"{statuses}\n--- new worker ---\n{second.log()[-3000:]}"
    assert task_id in second.log()  # the same task, redelivered, not a new one

    after, expected = counts(postgres_url), counts(reference_url)
    assert {**after, "runs": 0, "locks": 0} == {**expected, "runs": 0, "locks": 0}
    assert after["forecasts"] == reference.forecasts_inserted
    assert_same_ledger(ledger_table(postgres_url), ledger_table(reference_url))


# --- 3. Beat killed and restarted ----------------------------------------------------------------------


def _start_beat(log_path: Path, schedule: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "crypto_ml", "beat", "-s", str(schedule), "-l", "INFO"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )


def _kill(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.mark.broker
@pytest.mark.slow
def test_beat_killed_and_restarted_records_each_forecast_once(
    reliability_vhost, start_worker, postgres_url, synth_dir, tmp_path
):
    """Beat on a one-minute schedule, killed after its first cycle and restarted: about two minutes."""
    from crypto_ml.celery_app import PIPELINE_QUEUE
    from crypto_ml.pipeline import run_cycle

    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    reference = run_cycle(synth_dir, models="naive", horizon=2, engine="local", database_url=reference_url)
    assert reference.status == "ok" and reference.forecasts_inserted > 0

    env = {
        "CRYPTO_ML_BROKER_URL": reliability_vhost,
        "CRYPTO_ML_PIPELINE_SCHEDULE": "* * * * *",
        "CRYPTO_ML_DATABASE_URL": postgres_url,
        "CRYPTO_ML_DATA_DIR": str(synth_dir),
        "CRYPTO_ML_PIPELINE_MODELS": "naive",
        "CRYPTO_ML_PIPELINE_HORIZON": "2",
        "CRYPTO_ML_ENGINE": "local",
    }
    worker = start_worker("pipeline-beat", queues=PIPELINE_QUEUE, env=env, wait=False)
    schedule = tmp_path / "schedule"
    first_log, second_log = tmp_path / "beat-1.log", tmp_path / "beat-2.log"
    beat, statuses = _start_beat(first_log, schedule, env), []
    restarted = None
    try:
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline and "ok" not in statuses:
            time.sleep(0.5)
            statuses = _statuses_or_none(postgres_url)
        assert statuses == ["ok"], f"{statuses}\n--- beat ---\n{first_log.read_text()[-2000:]}\n{worker.log()[-3000:]}"
        _kill(beat)  # as a crash would: no shutdown, the schedule file as it was
        restarted = _start_beat(second_log, schedule, env)
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline and statuses.count("ok") < 2:
            time.sleep(0.5)
            statuses = _statuses_or_none(postgres_url)
        assert statuses.count("ok") >= 2 and set(statuses) == {"ok"}, (
            f"{statuses}\n--- beat ---\n{second_log.read_text()[-2000:]}\n{worker.log()[-3000:]}"
        )
        assert "Sending due task pipeline-cycle (crypto_ml.pipeline_cycle)" in second_log.read_text()
    finally:
        _kill(beat)
        _kill(restarted)

    after, expected = counts(postgres_url), counts(reference_url)
    assert {**after, "runs": 0, "locks": 0} == {**expected, "runs": 0, "locks": 0}
    assert_same_ledger(ledger_table(postgres_url), ledger_table(reference_url))


# --- The pipeline worker as compose runs it: the cycle's forecasts on other workers ---------------------


@pytest.mark.broker
@pytest.mark.slow
def test_a_pipeline_worker_sends_the_cycles_forecasts_to_the_forecasting_workers(
    reliability_vhost, start_worker, cycle_data, tmp_path
):
    """docker-compose's worker-pipeline runs with CRYPTO_ML_ENGINE=celery: its cycle waits on forecast tasks
    that a light worker runs, from inside a task of its own."""
    from crypto_ml.celery_app import LIGHT_QUEUE, PIPELINE_QUEUE
    from crypto_ml.pipeline import run_cycle

    payload = {"data": str(cycle_data), "models": "ewma", "horizon": CYCLE_HORIZON}
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    reference = run_cycle(**payload, engine="local", workers=1, database_url=reference_url)
    assert reference.status == "ok" and not reference.failures

    env = {"CRYPTO_ML_BROKER_URL": reliability_vhost, "CRYPTO_ML_ENGINE": "celery"}
    forecasting = start_worker("light-for-pipeline", queues=LIGHT_QUEUE, env=env, wait=False)
    pipeline = start_worker("pipeline-celery", queues=PIPELINE_QUEUE, env=env, wait=False)
    _wait_ready(forecasting)
    _wait_ready(pipeline)
    _send_cycle(reliability_vhost, {**payload, "database_url": ledger_url})
    statuses: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and statuses != ["ok"]:
        time.sleep(0.5)
        statuses = _statuses_or_none(ledger_url)
    assert statuses == ["ok"], f"{statuses}\n--- pipeline worker ---\n{pipeline.log()[-3000:]}"
    assert "forecast_batch[" in forecasting.log(), "the forecasts ran on the forecasting worker"
    assert counts(ledger_url)["forecasts"] == reference.forecasts_inserted
    assert_same_ledger(ledger_table(ledger_url), ledger_table(reference_url))
