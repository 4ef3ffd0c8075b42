"""crypto_ml.api.runner: jobs planned, sent, collected and resumed by the JobRunner, against real RabbitMQ,
Redis and ``celery -A crypto_ml worker`` processes, and the real database; and a real ``crypto-ml serve``
SIGKILLed mid-job, whose job the restarted server completes exactly once.

Every test here that starts workers runs under ``flock /tmp/broker.lock`` in shared environments (see
tests/workers.py): workers of two test runs on one vhost would take each other's tasks.
"""

from __future__ import annotations

import shutil
import time

import pytest
from sqlalchemy import func, select, text, update

from crypto_ml.api import jobs
from crypto_ml.api.keys import create_key
from crypto_ml.api.runner import JobRunner
from crypto_ml.api.schema import Job, JobResult, JobTask
from crypto_ml.config import get_settings
from crypto_ml.data_loader import CryptoLoader
from crypto_ml.engines.celery import CeleryEngine
from crypto_ml.ledger import open_ledger
from crypto_ml.manager import CryptoManager
from crypto_ml.synthetic import generate_dataset

JOBS = Job.__table__
TASKS = JobTask.__table__
RESULTS = JobResult.__table__

FORECAST = {"model": "ewma", "horizon": 5, "levels": [80.0, 95.0], "params": {}, "from_store": False}
TINY_CSV = 'Date,Open,High,Low,Close,Volume,Market Cap\n"Sep 22, 2017",1,1,1,1.5,-,-\n'
# About a second per coin: slow enough to cancel a job before most of its tasks run.
SLOW = {"model": "svr_poly", "params": {"C": 1000.0, "epsilon": 0.01, "log_prices": True}}


@pytest.fixture(scope="module")
def worker(module_start_worker):
    """One worker node of two processes, shared by the module's broker tests."""
    return module_start_worker("api-runner", concurrency=2)


@pytest.fixture
def mixed_dir(synth_dir, tmp_path):
    """The twelve synthetic coins and ``Tiny``, a coin with one price: too short to forecast."""
    folder = tmp_path / "mixed"
    shutil.copytree(synth_dir, folder)
    (folder / "Tiny.csv").write_text(TINY_CSV)
    return folder


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory):
    """Eight coins of a thousand prices: the SLOW model takes about a second on each."""
    return generate_dataset(8, tmp_path_factory.mktemp("slow") / "coins", seed=11, min_points=1000, max_points=1000)


def factory(folder, batch_size=2):
    """A manager on ``folder`` sending to the celery workers (two processes: no need to ask the broker)."""
    return lambda: CryptoManager(CryptoLoader(folder), engine=CeleryEngine(workers=2), batch_size=batch_size)


def submit(ledger, runner_or_owner, kind, request, total=None):
    key = create_key(ledger, f"key-{time.monotonic_ns()}")[1]
    owner = runner_or_owner if isinstance(runner_or_owner, str) else runner_or_owner.owner
    total = len(request["coins"]) if total is None else total
    return jobs.create_job(ledger, key, kind, request, total, owner=owner, max_active=100), key


def job_row(ledger, job_id):
    with ledger.reading() as connection:
        return connection.execute(select(JOBS).where(JOBS.c.id == job_id)).one()


def run_until(runners, ledger, job_id, done=lambda row: row.status in jobs.TERMINAL, timeout=60.0):
    """Tick ``runners`` in turn until ``done(job row)``; returns the row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for runner in runners:
            runner.tick()
        row = job_row(ledger, job_id)
        if done(row):
            return row
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is still {row.status} ({row.done}/{row.total}) after {timeout:.0f}s")


def rows_per_key(ledger, job_id):
    with ledger.reading() as connection:
        return dict(
            connection.execute(
                select(RESULTS.c.record_key, func.count())
                .where(RESULTS.c.job_id == job_id)
                .group_by(RESULTS.c.record_key)
            ).all()
        )


# --- no workers needed ---------------------------------------------------------------------------------


def test_a_job_that_cannot_be_planned_fails_with_the_reason(ledger, synth_dir):
    runner = JobRunner(ledger, manager_factory=factory(synth_dir))
    job_id, key = submit(ledger, runner, "forecast", {**FORECAST, "model": "no_such_model", "coins": ["bitcoin"]})
    runner.tick()
    document = jobs.job_document(ledger, job_id, key.id)
    assert document["status"] == "failed" and "no_such_model" in document["error"]
    assert document["finished_at"] is not None and document["results"] == [] and document["failures"] == []


def test_the_thread_survives_a_database_failure_and_goes_on(ledger, synth_dir, monkeypatch, caplog):
    """A tick that fails on the database is logged and retried: the job is handled once the database is back."""
    monkeypatch.setattr("crypto_ml.api.runner.RETRY_SECONDS", 0.1)
    runner = JobRunner(ledger, manager_factory=factory(synth_dir), poll_interval=0.05)
    with ledger.engine.begin() as connection:
        connection.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
    try:
        runner.start()
        time.sleep(0.5)
        assert runner._thread.is_alive()
    finally:
        with ledger.engine.begin() as connection:
            connection.execute(text("ALTER TABLE jobs_away RENAME TO jobs"))
    job_id, _ = submit(ledger, runner, "forecast", {**FORECAST, "model": "no_such_model", "coins": ["bitcoin"]})
    runner.wake()
    deadline = time.monotonic() + 10
    while job_row(ledger, job_id).status != "failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    assert job_row(ledger, job_id).status == "failed"
    assert "jobs" in caplog.text and "retrying in" in caplog.text


def test_a_stopped_runner_hands_its_jobs_to_the_next_at_once(ledger, synth_dir):
    runner = JobRunner(ledger, manager_factory=factory(synth_dir))
    # Owned by the runner, not planned yet (never started here: with no worker, nothing may be sent).
    job_id, _ = submit(ledger, runner, "forecast", {**FORECAST, "coins": ["bitcoin"]})
    runner.stop()
    assert job_row(ledger, job_id).owner is None
    # The next runner claims it on its first tick, without waiting out the lease.
    other = JobRunner(ledger, manager_factory=factory(synth_dir))
    other._claim(get_settings().api_job_lease_seconds)
    assert job_row(ledger, job_id).owner == other.owner


def test_an_idle_runner_leaves_the_database_alone_until_woken(ledger, synth_dir, monkeypatch):
    """With no job of its own it sleeps until its next claim scan, not ``poll_interval``; ``wake()`` ticks at once."""
    from sqlalchemy import event

    monkeypatch.setattr("crypto_ml.api.runner.CLAIM_INTERVAL_SECONDS", 5.0)
    runner = JobRunner(ledger, manager_factory=factory(synth_dir), poll_interval=0.01).start()
    statements: list[str] = []

    def count(connection, cursor, statement, *args):
        statements.append(statement)

    try:
        time.sleep(0.1)  # its first tick: a claim scan and a look for its jobs
        event.listen(ledger.engine, "before_cursor_execute", count)
        time.sleep(0.5)  # fifty polls' worth
        idle = list(statements)
        job_id, _ = submit(ledger, runner, "forecast", {**FORECAST, "model": "no_such_model", "coins": ["bitcoin"]})
        runner.wake()
        deadline = time.monotonic() + 3  # before the next claim scan, 5 s after the first, would find it
        while job_row(ledger, job_id).status != "failed" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert job_row(ledger, job_id).status == "failed"
    finally:
        event.remove(ledger.engine, "before_cursor_execute", count)
        runner.stop()
    # At most the end of the first tick (SQLite counts its BEGIN): not three statements every 10 ms.
    assert len(idle) <= 3, idle


# --- with workers ---------------------------------------------------------------------------------------


@pytest.mark.broker
def test_a_forecast_job_gives_each_coin_once_as_the_local_engine_does(ledger, worker, mixed_dir):
    """Coins in request order; an unknown coin and a too-short one fail alone; the rest equal a local run."""
    names = CryptoLoader(mixed_dir).get_crypto_names()
    coins = [names[3], "Tiny", names[0], "no-such-coin", names[7], names[1], names[5]]
    runner = JobRunner(ledger, manager_factory=factory(mixed_dir)).start()
    try:
        job_id, key = submit(ledger, runner, "forecast", {**FORECAST, "coins": coins})
        runner.wake()
        deadline = time.monotonic() + 60
        while job_row(ledger, job_id).status not in jobs.TERMINAL and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    document = jobs.job_document(ledger, job_id, key.id)
    assert document["status"] == "succeeded", document["error"]
    assert document["progress"] == {"done": 7, "total": 7}
    local = CryptoManager(CryptoLoader(mixed_dir), engine="local").send_tasks(
        "ewma", coins=coins, horizon=5, levels=[80, 95], verbose=False, progress=False
    )
    expected = [result.to_record() for result in local.results]
    assert document["results"] == [record for record in expected if record["status"] == "ok"]
    assert document["failures"] == [record for record in expected if record["status"] == "failed"]
    assert [(r["coin"], r["error_type"]) for r in document["failures"]] == [
        ("tiny", "SeriesTooShortError"),
        ("no-such-coin", "UnknownCoinError"),
    ]
    assert rows_per_key(ledger, job_id) == {record["coin"]: 1 for record in expected}
    with ledger.reading() as connection:
        states = connection.execute(select(TASKS.c.state, TASKS.c.coins).where(TASKS.c.job_id == job_id)).all()
    assert {state for state, _ in states} == {"collected"}
    # Every coin that loaded went to a worker (Tiny too: its failure is the model's); the unknown one never did.
    assert sorted(coin for _, batch in states for coin in batch) == sorted(
        {r.coin for r in local.results} - {"no-such-coin"}
    )
    row = job_row(ledger, job_id)
    assert row.transfer == "inline" and row.owner == runner.owner  # stop() releases only active jobs

    # Collected again, as after a restart that found the tasks not marked collected: nothing is added.
    with ledger.engine.begin() as connection:
        connection.execute(update(TASKS).where(TASKS.c.job_id == job_id).values(state="sent"))
        connection.execute(update(JOBS).where(JOBS.c.id == job_id).values(status="running", owner="again"))
    again = JobRunner(ledger, owner="again", manager_factory=factory(mixed_dir))
    assert run_until([again], ledger, job_id).status == "succeeded"
    assert rows_per_key(ledger, job_id) == {record["coin"]: 1 for record in expected}
    assert jobs.job_document(ledger, job_id, key.id)["results"] == document["results"]


@pytest.mark.broker
def test_a_backtest_job_gives_the_records_of_a_local_backtest(postgres_url, worker, mixed_dir):
    names = CryptoLoader(mixed_dir).get_crypto_names()
    coins = [names[2], "Tiny", names[4]]
    request = {"coins": coins, "models": ["ewma"], "horizon": 3, "windows": 4, "step": None, "levels": [80.0]}
    with open_ledger(postgres_url) as ledger:
        runner = JobRunner(ledger, manager_factory=factory(mixed_dir, batch_size=1))
        job_id, key = submit(ledger, runner, "backtest", request)
        assert run_until([runner], ledger, job_id).status == "succeeded"
        document = jobs.job_document(ledger, job_id, key.id)
        local = CryptoManager(CryptoLoader(mixed_dir), engine="local").backtest(
            ["ewma"], horizon=3, windows=4, coins=coins, levels=[80], progress=False
        )
        expected = jobs.json_safe(local.records)
        assert document["results"] == [record for record in expected if record["status"] == "ok"]
        assert document["failures"] == [record for record in expected if record["status"] != "ok"]
        # Two models (naive is the benchmark) x four windows for each long coin; one failure per model for Tiny.
        assert len(document["results"]) == 16
        assert sorted((r["coin"], r["model"]) for r in document["failures"]) == [("tiny", "ewma"), ("tiny", "naive")]
        assert document["progress"] == {"done": 3, "total": 3}
        assert set(rows_per_key(ledger, job_id).values()) == {1}


@pytest.mark.broker
def test_cancelling_a_job_revokes_its_tasks_and_stops_collecting(postgres_url, worker, slow_dir):
    from crypto_ml.celery_app import app

    request = {**FORECAST, **SLOW, "coins": CryptoLoader(slow_dir).get_crypto_names()}
    with open_ledger(postgres_url) as ledger:
        runner = JobRunner(ledger, manager_factory=factory(slow_dir, batch_size=1))
        job_id, key = submit(ledger, runner, "forecast", request)
        runner.tick()  # planned and sent: eight tasks of about a second, two at a time
        document, task_ids = jobs.cancel_job(ledger, job_id, key.id)
        app.control.revoke(task_ids)
        assert document["status"] == "cancelled" and len(task_ids) == 8
        deadline = time.monotonic() + 30
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {task_id: app.AsyncResult(task_id).state for task_id in task_ids}
            if list(states.values()).count("REVOKED") >= 4:
                break
            time.sleep(0.1)
        # The two worker processes had started a task each at most; the others are revoked as the worker reaches them.
        assert list(states.values()).count("REVOKED") >= 4, states
        for _ in range(5):
            runner.tick()
        row = job_row(ledger, job_id)
        assert row.status == "cancelled" and row.done == 0 and rows_per_key(ledger, job_id) == {}


@pytest.mark.broker
def test_a_task_past_the_timeout_is_revoked_and_its_coins_fail_with_the_reason(
    postgres_url, worker, slow_dir, monkeypatch
):
    monkeypatch.setenv("CRYPTO_ML_TASK_TIMEOUT", "0.3")
    get_settings.cache_clear()
    coins = CryptoLoader(slow_dir).get_crypto_names()[:1]
    with open_ledger(postgres_url) as ledger:
        runner = JobRunner(ledger, manager_factory=factory(slow_dir, batch_size=1))
        job_id, key = submit(ledger, runner, "forecast", {**FORECAST, **SLOW, "coins": coins})
        assert run_until([runner], ledger, job_id, timeout=20).status == "succeeded"
        document = jobs.job_document(ledger, job_id, key.id)
    assert document["results"] == [] and [r["coin"] for r in document["failures"]] == coins
    assert {r["error_type"] for r in document["failures"]} == {"EngineError"}
    assert (
        f"task {job_id}.0 did not finish within 0.3s; raise CRYPTO_ML_TASK_TIMEOUT" in document["failures"][0]["error"]
    )


@pytest.mark.broker
def test_a_job_whose_owner_went_silent_is_taken_over_and_completed_once(postgres_url, worker, mixed_dir, monkeypatch):
    """The first runner plans, sends and collects part of a job, then stops (a crash): the second takes it over
    after the lease, sends again what the first seemed never to have sent, and every coin is stored once."""
    monkeypatch.setenv("CRYPTO_ML_API_JOB_LEASE_SECONDS", "1")
    get_settings.cache_clear()
    coins = CryptoLoader(mixed_dir).get_crypto_names()
    with open_ledger(postgres_url) as ledger:
        first = JobRunner(ledger, owner="first", manager_factory=factory(mixed_dir, batch_size=1))
        job_id, key = submit(ledger, first, "forecast", {**FORECAST, "coins": coins})
        run_until([first], ledger, job_id, done=lambda row: row.done >= 1)
        # It died after sending tasks but before marking two of them sent: the next owner sends them again.
        with ledger.engine.begin() as connection:
            connection.execute(
                update(TASKS).where(TASKS.c.job_id == job_id, TASKS.c.batch_index.in_([10, 11])).values(state="planned")
            )
        second = JobRunner(ledger, owner="second", manager_factory=factory(mixed_dir, batch_size=1))
        second.tick()
        assert job_row(ledger, job_id).owner == "first"  # its heartbeat is still fresh
        time.sleep(1.2)
        row = run_until([second], ledger, job_id)
        assert row.status == "succeeded" and row.owner == "second" and row.done == row.total == len(coins)
        first.tick()  # the old owner coming back finds nothing of its own
        assert job_row(ledger, job_id).owner == "second"
        assert rows_per_key(ledger, job_id) == dict.fromkeys(coins, 1)
        document = jobs.job_document(ledger, job_id, key.id)
        local = CryptoManager(CryptoLoader(mixed_dir), engine="local").send_tasks(
            "ewma", coins=coins, horizon=5, levels=[80, 95], verbose=False, progress=False
        )
        assert document["results"] == [r.to_record() for r in local.ok]
        assert [r["coin"] for r in document["failures"]] == ["tiny"]


# --- a real server, SIGKILLed mid-job ------------------------------------------------------------------

#: A third of a second or so per coin: a job of RESTART_COINS takes a few seconds on two worker processes.
RESTART_MODEL = {"model": "svr_poly", "params": {"C": 100.0, "log_prices": True}}
RESTART_COINS = 16


@pytest.mark.api
@pytest.mark.broker
@pytest.mark.slow
def test_a_server_killed_mid_job_is_restarted_and_the_job_completes_exactly_once(
    api_server, api_database, worker, tmp_path
):
    """SIGKILL the whole server (uvicorn and its runner) mid-job; a new server on the same database takes the
    job over once the lease lapses, collects what finished meanwhile and the rest, and stores each coin once."""
    import signal

    import httpx

    from api_helpers import bearer, create_api_key

    folder = generate_dataset(RESTART_COINS, tmp_path / "coins", seed=5, min_points=400, max_points=400)
    coins = CryptoLoader(folder).get_crypto_names()
    # A short lease, so the restarted server takes over within seconds; one coin per task, so progress moves
    # coin by coin and the kill lands between the first result and the last.
    env = {"CRYPTO_ML_API_JOB_LEASE_SECONDS": "3", "CRYPTO_ML_BATCH_SIZE": "1"}
    headers = bearer(create_api_key(api_database, "restart"))
    first = api_server(env, data_dir=folder)
    request = {**RESTART_MODEL, "coins": coins, "horizon": 5, "levels": [80, 95]}
    response = httpx.post(f"{first.url}/v1/forecasts", json=request, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    job_url = response.json()["status_url"]

    deadline = time.monotonic() + 60
    progress = {"done": 0, "total": 0}
    while time.monotonic() < deadline:
        progress = httpx.get(f"{first.url}{job_url}", headers=headers, timeout=10).json()["progress"]
        if progress["done"] >= 1:
            break
        time.sleep(0.05)
    assert 1 <= progress["done"] < progress["total"] == RESTART_COINS, progress
    first.kill(signal.SIGKILL)
    assert not first.alive()

    time.sleep(2)
    second = api_server(env, data_dir=folder)
    document: dict = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and document.get("status") not in jobs.TERMINAL:
        document = httpx.get(f"{second.url}{job_url}", params={"wait": 20}, headers=headers, timeout=40).json()
    assert document["status"] == "succeeded", document
    assert "took over job" in second.log()

    # Every coin once over HTTP, and once in the database.
    assert sorted(record["coin"] for record in document["results"] + document["failures"]) == sorted(coins)
    assert document["progress"] == {"done": RESTART_COINS, "total": RESTART_COINS}
    with open_ledger(api_database) as ledger:
        assert rows_per_key(ledger, document["job_id"]) == dict.fromkeys(coins, 1)
    local = CryptoManager(CryptoLoader(folder), engine="local").send_tasks(
        RESTART_MODEL["model"], coins=coins, horizon=5, levels=[80, 95], params=RESTART_MODEL["params"], verbose=False
    )
    assert document["results"] == [result.to_record() for result in local.ok]
    assert document["failures"] == [result.to_record() for result in local.failed] == []
