"""The Celery app: its settings, its refusal of pickle, and Flower in front of it."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from crypto_ml.celery_app import HEAVY_QUEUE, LIGHT_QUEUE, PIPELINE_QUEUE, app, pipeline_crontab

from workers import free_port, start_flower


def test_json_only_both_ways():
    assert app.conf.accept_content == ["json"]
    assert app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"


def test_settings_that_keep_work_safe_under_load():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.result_expires and conf.worker_max_memory_per_child
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert conf.broker_connection_retry_on_startup and conf.broker_connection_max_retries is None
    assert {q.name for q in conf.task_queues} == {LIGHT_QUEUE, HEAVY_QUEUE, PIPELINE_QUEUE}


def test_celery_dash_a_finds_the_app():
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "crypto_ml", "report"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "crypto_ml.tasks" in done.stdout and "results:redis://" in done.stdout


def test_import_crypto_ml_is_light():
    code = (
        "import sys, time; t = time.perf_counter(); import crypto_ml; "
        "print(time.perf_counter() - t, 'tensorflow' in sys.modules, 'celery' in sys.modules)"
    )
    seconds, tf, celery = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert float(seconds) < 1.0 and tf == "False" and celery == "False"


class Exploit:
    """Unpickling this runs a shell command: what an attacker would publish."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.broker
def test_a_pickled_message_is_refused_and_the_worker_stays_up(start_worker, tmp_path):
    from kombu import Connection, Producer

    worker = start_worker("pickle")
    marker = tmp_path / "pwned"
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": "crypto_ml.noop",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
    }
    body = ((Exploit(str(marker)),), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    with Connection(app.conf.broker_url) as connection:
        Producer(connection.default_channel).publish(
            body, routing_key=LIGHT_QUEUE, serializer="pickle", headers=headers
        )
    assert pickle.dumps(Exploit("x"))  # the payload is a real, working pickle

    deadline = time.monotonic() + 15
    while "untrusted content" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Refusing to deserialize untrusted content of type pickle" in worker.log()
    assert not marker.exists(), "the pickled payload ran on the worker"
    assert worker.alive()
    result = app.send_task("crypto_ml.noop", args=[{"still": "up"}], queue=LIGHT_QUEUE)
    assert result.get(timeout=30) == {"still": "up"}


@pytest.mark.parametrize(("value", "expected"), [("0", "None"), ("2500", "2560000")])
def test_worker_memory_limit_comes_from_settings(value, expected):
    code = "from crypto_ml.celery_app import app; print(app.conf.worker_max_memory_per_child)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CRYPTO_ML_WORKER_MAX_MEMORY_MB": value},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


@pytest.mark.broker
def test_a_pool_process_over_the_memory_limit_says_so_before_it_is_replaced(start_worker):
    # 1 MB: every process is over it after any task, as one that read a big dataset would be.
    worker = start_worker("memlimit", queues=LIGHT_QUEUE, env={"CRYPTO_ML_WORKER_MAX_MEMORY_MB": "1"})
    for n in range(2):
        assert app.send_task("crypto_ml.noop", args=[{"n": n}], queue=LIGHT_QUEUE).get(timeout=30) == {"n": n}
    deadline = time.monotonic() + 15
    while worker.log().count("over CRYPTO_ML_WORKER_MAX_MEMORY_MB=1") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    warnings = [line for line in worker.log().splitlines() if "over CRYPTO_ML_WORKER_MAX_MEMORY_MB=1" in line]
    assert len(warnings) == 2, worker.log()[-3000:]
    assert "raise CRYPTO_ML_WORKER_MAX_MEMORY_MB" in warnings[0]
    # Each task ran in a new process: the cost the warning is there to explain.
    pids = {line.split("pool process ")[1].split()[0] for line in warnings}
    assert len(pids) == 2


@pytest.mark.broker
@pytest.mark.slow
def test_flower_lists_workers_behind_basic_auth(start_worker, tmp_path):
    w1, w2 = start_worker("flower1"), start_worker("flower2")
    port = free_port()
    user, password = "ops", uuid.uuid4().hex
    flower = start_flower(tmp_path / "flower.log", port, user, password)
    url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                pytest.fail("flower answered without credentials")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
                time.sleep(0.5)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        deadline = time.monotonic() + 60
        while True:
            workers = json.loads(urllib.request.urlopen(request, timeout=15).read())
            if {w1.node, w2.node} <= set(workers) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert {w1.node, w2.node} <= set(workers)
        wrong = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"ops:x").decode()})
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(wrong, timeout=5)
        assert denied.value.code == 401
    finally:
        os.killpg(flower.pid, 15)
        flower.wait(20)


def test_each_queue_has_its_own_exchange_and_key():
    # A bare Queue(name) shares the first queue's exchange: a message for one pool would be copied into the other.
    for queue in app.conf.task_queues:
        assert queue.exchange.name == queue.name and queue.routing_key == queue.name
        assert queue.exchange.type == "direct"


# --- the daily pipeline: its queue, its schedule, its task ------------------------------


def test_the_pipeline_cycle_goes_to_its_own_queue_on_a_daily_utc_schedule():
    assert app.conf.task_routes["crypto_ml.pipeline_cycle"] == {"queue": PIPELINE_QUEUE}
    assert app.conf.timezone == "UTC" and app.conf.enable_utc
    [entry] = app.conf.beat_schedule.values()
    assert entry["task"] == "crypto_ml.pipeline_cycle" and entry["options"]["queue"] == PIPELINE_QUEUE
    # CRYPTO_ML_PIPELINE_SCHEDULE's default, 30 0 * * *: 00:30 UTC every day.
    schedule = entry["schedule"]
    assert schedule.minute == {30} and schedule.hour == {0} and len(schedule.day_of_week) == 7
    import crypto_ml.tasks  # noqa: F401 - registers the tasks, as a worker does

    assert "crypto_ml.pipeline_cycle" in app.tasks


def test_the_schedule_comes_from_the_environment():
    code = "from crypto_ml.celery_app import app; s = app.conf.beat_schedule['pipeline-cycle']['schedule']; print(s)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CRYPTO_ML_PIPELINE_SCHEDULE": "*/5 6-18 * * mon-fri"},
    )
    assert done.returncode == 0, done.stderr
    assert "*/5 6-18 * * mon-fri" in done.stdout


@pytest.mark.parametrize("expression", ["30 0 * *", "99 0 * * *", "30 25 * * *", "0 0 * * funday", "every day"])
def test_a_bad_schedule_names_the_variable(expression):
    from crypto_ml.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="CRYPTO_ML_PIPELINE_SCHEDULE"):
        pipeline_crontab(expression)


@pytest.mark.parametrize("expression", ["30 0 * *", "every day at noon", "30 0 * * * *"])
def test_a_schedule_that_is_not_five_fields_is_refused_with_the_settings(monkeypatch, expression):
    from crypto_ml.config import get_settings
    from crypto_ml.exceptions import InvalidParameterError

    monkeypatch.setenv("CRYPTO_ML_PIPELINE_SCHEDULE", expression)
    get_settings.cache_clear()
    with pytest.raises(InvalidParameterError, match="CRYPTO_ML_PIPELINE_SCHEDULE"):
        get_settings()


def test_the_pipeline_task_runs_a_cycle_and_returns_json(synth_dir, tmp_path):
    import json

    from crypto_ml.tasks import pipeline_cycle

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    payload = {"data": str(synth_dir), "models": "naive", "horizon": 2, "engine": "local", "database_url": url}
    result = pipeline_cycle.apply(args=[payload]).get()
    assert json.loads(json.dumps(result)) == result
    assert result["status"] == "ok" and result["forecasts_inserted"] == 12 * 2 and result["run_id"] == 1
    again = pipeline_cycle.apply(args=[payload]).get()
    assert again["forecasts_inserted"] == 0 and again["forecasts_existing"] == 12 * 2


def test_the_pipeline_task_reports_busy_instead_of_failing(synth_dir, tmp_path):
    from crypto_ml.ledger import cycle_lock, open_ledger
    from crypto_ml.pipeline.cycle import lock_name
    from crypto_ml.tasks import pipeline_cycle

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with open_ledger(url) as ledger, cycle_lock(ledger, lock_name(synth_dir), holder="other-beat", seconds=60):
        result = pipeline_cycle.apply(args=[{"data": str(synth_dir), "database_url": url}]).get()
    assert result["status"] == "busy" and "other-beat" in result["error"]


def test_the_pipeline_task_refuses_unknown_payload_keys():
    from crypto_ml.exceptions import InvalidParameterError
    from crypto_ml.tasks import pipeline_cycle

    with pytest.raises(InvalidParameterError, match="modles"):
        pipeline_cycle.apply(args=[{"modles": "naive"}]).get()


#: A vhost of its own: the beat test's cycles never reach another test's workers, nor the reverse.
PIPELINE_VHOST = "crypto_ml_pipeline"


@pytest.fixture
def pipeline_vhost(services):
    import shutil

    from conftest import skip_or_fail

    if shutil.which("rabbitmqctl") is None:
        skip_or_fail("rabbitmqctl is not available, so the beat test's vhost cannot be created")
    for command in (
        ["add_vhost", PIPELINE_VHOST],
        ["set_permissions", "-p", PIPELINE_VHOST, "guest", ".*", ".*", ".*"],
    ):
        done = subprocess.run(["rabbitmqctl", *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 and "already exists" not in done.stderr + done.stdout:
            skip_or_fail(f"rabbitmqctl {' '.join(command)} failed: {done.stderr.strip()}")
    return f"amqp://guest:guest@localhost:5672/{PIPELINE_VHOST}"


@pytest.mark.broker
@pytest.mark.slow
def test_beat_and_a_pipeline_worker_run_the_scheduled_cycle(pipeline_vhost, start_worker, synth_dir, tmp_path):
    from sqlalchemy import select

    from crypto_ml.ledger import open_ledger
    from crypto_ml.ledger.schema import Run

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    env = {
        "CRYPTO_ML_BROKER_URL": pipeline_vhost,
        # Every minute, the shortest a cron expression says: the first cycle starts at the next minute.
        "CRYPTO_ML_PIPELINE_SCHEDULE": "* * * * *",
        "CRYPTO_ML_DATABASE_URL": url,
        "CRYPTO_ML_DATA_DIR": str(synth_dir),
        "CRYPTO_ML_PIPELINE_MODELS": "naive",
        "CRYPTO_ML_PIPELINE_HORIZON": "2",
        "CRYPTO_ML_ENGINE": "local",
    }
    worker = start_worker("pipeline", queues=PIPELINE_QUEUE, env=env, wait=False)
    beat_log = tmp_path / "beat.log"
    with open(beat_log, "ab") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "crypto_ml", "beat", "-s", str(tmp_path / "schedule"), "-l", "INFO"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 150
        statuses: list[str] = []
        while time.monotonic() < deadline and "ok" not in statuses:
            time.sleep(1)
            try:
                with open_ledger(url) as ledger, ledger.engine.connect() as connection:
                    statuses = [row.status for row in connection.execute(select(Run.status))]
            except Exception:  # noqa: BLE001 - the first cycle creates the ledger
                statuses = []
        assert "ok" in statuses, (
            f"no cycle finished\n--- beat ---\n{beat_log.read_text()[-2000:]}\n--- worker ---\n{worker.log()[-3000:]}"
        )
        assert "Sending due task pipeline-cycle (crypto_ml.pipeline_cycle)" in beat_log.read_text()
        assert "crypto_ml.pipeline_cycle" in worker.log()
    finally:
        os.killpg(beat.pid, 15)
        beat.wait(20)
