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

from crypto_ml.celery_app import HEAVY_QUEUE, LIGHT_QUEUE, app

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
    assert {q.name for q in conf.task_queues} == {LIGHT_QUEUE, HEAVY_QUEUE}


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
