"""The celery engine against the real RabbitMQ and Redis, with real worker processes."""

from __future__ import annotations

import collections
import shutil
import subprocess
import time

import numpy as np
import pytest

from crypto_ml.data_loader import CryptoLoader
from crypto_ml.engines import resolve_engine
from crypto_ml.engines.celery import CeleryEngine, ping_workers, queue_for_payload, task_label, to_json_safe
from crypto_ml.manager import CryptoManager
from crypto_ml.synthetic import generate_dataset

from conftest import skip_or_fail

pytestmark = pytest.mark.broker

# Each task of this model takes about a second: long enough to kill a worker mid-task. On log prices,
# so that no coin of the slow batch is refused for a fit that would cross zero.
SLOW = {"model": "svr_poly", "params": {"C": 1000.0, "epsilon": 0.01, "log_prices": True}}


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory):
    return generate_dataset(12, tmp_path_factory.mktemp("slow") / "coins", seed=11, min_points=1000, max_points=1000)


def start_slow_batch(loader: CryptoLoader):
    """Send the SLOW model over every coin of ``loader`` from a thread, one coin per task.

    Returns:
        The producer thread and a dict whose ``"run"`` holds the ForecastRun once it finishes.
    """
    import threading

    outcome: dict = {}

    def produce():
        engine = CeleryEngine(workers=2, timeout=300)
        outcome["run"] = CryptoManager(loader, engine=engine, batch_size=1).send_tasks(
            SLOW["model"], params=SLOW["params"], verbose=False
        )

    producer = threading.Thread(target=produce)
    producer.start()
    return producer, outcome


def wait_until_busy(nodes: list[str], timeout: float = 60.0) -> bool:
    """Wait until one of ``nodes`` is running a task; False if none did within ``timeout`` seconds."""
    from crypto_ml.celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = app.control.inspect(destination=nodes, timeout=1.0).active() or {}
        if any(active.get(node) for node in nodes):
            return True
    return False


def assert_every_coin_once(run) -> None:
    counts = collections.Counter(r.coin for r in run)
    assert len(counts) == 12 and set(counts.values()) == {1}
    assert not run.failed, [(r.coin, r.error) for r in run.failed]


def task_totals(nodes: list[str]) -> dict[str, int]:
    """Tasks each node has run so far, from `celery inspect stats`."""
    from crypto_ml.celery_app import app

    stats = app.control.inspect(destination=nodes, timeout=2.0).stats() or {}
    return {node: sum(stats.get(node, {}).get("total", {}).values()) for node in nodes}


def test_json_safe_payloads():
    payload = {"series": [{"prices": np.array([1.0, 2.0]), "n": np.int64(3)}], "h": np.float64(1.5)}
    assert to_json_safe(payload) == {"series": [{"prices": [1.0, 2.0], "n": 3}], "h": 1.5}


def test_light_and_heavy_models_go_to_their_own_queues(monkeypatch):
    from crypto_ml.models import registry

    assert queue_for_payload({"model": "linear"}) == "crypto_ml.light"
    monkeypatch.setattr(registry, "HEAVY_MODELS", frozenset({"linear"}))
    assert queue_for_payload({"model": "linear"}) == "crypto_ml.heavy"


def test_celery_and_local_give_the_same_forecasts(start_worker, synth_dir):
    start_worker("same", concurrency=2)
    loader = CryptoLoader(synth_dir)
    for model in ("drift", "svr_rbf"):
        local = CryptoManager(loader, engine="local").send_tasks(model, horizon=10, verbose=False)
        remote = CryptoManager(loader, engine=CeleryEngine()).send_tasks(model, horizon=10, verbose=False)
        assert remote.engine == "celery" and not remote.failed
        assert [r.coin for r in remote] == [r.coin for r in local]
        assert [r.forecast for r in remote] == [r.forecast for r in local]
        assert [r.dates for r in remote] == [r.dates for r in local]
        # The workers' records carry the 80% and 95% bounds, equal to the local ones.
        assert all(sorted(r.intervals) == ["hi_80", "hi_95", "lo_80", "lo_95"] for r in remote)
        assert [r.intervals for r in remote] == [r.intervals for r in local]
    by_reference = CryptoManager(loader, engine=CeleryEngine()).send_tasks(
        "drift", horizon=10, verbose=False, transfer="reference"
    )
    local = CryptoManager(loader, engine="local").send_tasks("drift", horizon=10, verbose=False)
    assert by_reference.transfer == "reference"
    assert [r.forecast for r in by_reference] == [r.forecast for r in local]


def test_auto_picks_celery_when_a_worker_answers(start_worker):
    worker = start_worker("auto")
    engine = resolve_engine("auto")
    assert engine.name == "celery"
    assert "celery worker(s) answered" in engine.reason
    assert worker.node in ping_workers()


def test_a_batch_is_spread_over_two_workers(start_worker, synth_dir):
    w1, w2 = start_worker("spread1"), start_worker("spread2")
    before = task_totals([w1.node, w2.node])
    run = CryptoManager(CryptoLoader(synth_dir), engine=CeleryEngine(workers=2), batch_size=1).send_tasks(
        "svr_rbf", verbose=False
    )
    assert len(run.ok) == 12
    after = task_totals([w1.node, w2.node])
    done = {node: after[node] - before[node] for node in after}
    assert sum(done.values()) >= 12  # more only if an earlier run left messages queued
    assert all(count > 0 for count in done.values()), done


def test_task_labels_name_the_model_and_the_coins_a_task_holds():
    series = [{"coin": coin} for coin in ("bitcoin", "ethereum", "ripple")]
    assert task_label("forecast_batch", {"model": "svr_rbf", "series": series}) == (
        "forecast_batch[svr_rbf: bitcoin … +2 coins]"
    )
    assert task_label("backtest_batch", {"models": ["naive", "ewma"], "series": series[:2]}) == (
        "backtest_batch[naive,ewma: bitcoin … +1 coin]"
    )
    assert task_label("train_batch", {"model": "lstm", "series": series[:1]}) == "train_batch[lstm: bitcoin]"


def test_operators_see_the_coins_of_each_task_and_the_node_that_ran_it(start_worker, synth_dir, caplog):
    import logging

    worker = start_worker("labels")
    with caplog.at_level(logging.INFO, logger="crypto_ml.engines"):
        run = CryptoManager(CryptoLoader(synth_dir), engine=CeleryEngine(workers=1), batch_size=4).send_tasks(
            "naive", verbose=False
        )
    assert len(run.ok) == 12
    ran_on = [r.getMessage() for r in caplog.records if "ran on" in r.getMessage()]
    assert len(ran_on) == 3 and all(message.endswith(f"ran on {worker.node}") for message in ran_on)
    names = sorted(run.results[i].coin for i in range(0, 12, 4))
    log = worker.log()
    for first in names:
        assert f"forecast_batch[naive: {first} … +3 coins]" in log, log[-2000:]


def test_a_bad_coin_fails_alone_through_the_broker(start_worker, synth_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(synth_dir, folder)
    (folder / "Tiny.csv").write_text('Date,Open,High,Low,Close,Volume,Market Cap\n"Sep 22, 2017",1,1,1,1.5,-,-\n')
    start_worker("bad")
    run = CryptoManager(CryptoLoader(folder), engine=CeleryEngine(), batch_size=3).send_tasks("drift", verbose=False)
    assert [r.coin for r in run.failed] == ["tiny"] and run["tiny"].error_type == "SeriesTooShortError"
    assert len(run.ok) == 12


@pytest.mark.slow
def test_killing_a_worker_mid_batch_loses_nothing(start_worker, slow_dir):
    """SIGKILL one worker's whole process group while it runs tasks: acks_late gets them redelivered."""
    survivor, victim = start_worker("survivor"), start_worker("victim")
    loader = CryptoLoader(slow_dir)
    producer, outcome = start_slow_batch(loader)
    if not wait_until_busy([victim.node]):
        pytest.fail("the victim worker never started a task")
    victim.kill_group()
    producer.join(300)
    assert not producer.is_alive(), "results did not arrive after the worker was killed"

    run = outcome["run"]
    assert_every_coin_once(run)
    assert survivor.alive() and not victim.alive()
    expected = CryptoManager(loader, engine="local").send_tasks(SLOW["model"], params=SLOW["params"], verbose=False)
    assert [r.forecast for r in run] == [r.forecast for r in expected]


def test_timeout_is_reported_per_coin_not_raised(start_worker, slow_dir):
    worker = start_worker("slowpoke")
    engine = CeleryEngine(workers=1, timeout=0.5)
    run = CryptoManager(CryptoLoader(slow_dir), engine=engine, batch_size=6).send_tasks(
        SLOW["model"], params=SLOW["params"], verbose=False
    )
    assert len(run) == 12
    assert {r.error_type for r in run.failed} == {"EngineError"}
    assert all("did not finish within 0.5s" in r.error for r in run.failed)
    # The timed-out tasks were revoked; let this worker discard them so they
    # cannot land on the workers of later tests.
    wait_until_idle([worker.node])


def queued_messages(queue: str = "crypto_ml.light") -> int:
    from crypto_ml.celery_app import app

    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=queue, passive=True).message_count


def wait_until_idle(nodes: list[str], timeout: float = 60.0) -> None:
    from crypto_ml.celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with app.connection_for_write() as connection:  # a fresh one: the pooled one may predate a broker restart
                inspect = app.control.inspect(destination=nodes, timeout=1.0, connection=connection)
                busy = any((inspect.active() or {}).values()) or any((inspect.reserved() or {}).values())
            if not busy and queued_messages() == 0:
                return
        except OSError:  # the broker is still coming back
            pass
        time.sleep(0.5)
    raise AssertionError(f"{nodes} still busy after {timeout:.0f}s")


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_broker_restart_mid_batch_loses_nothing(start_worker, slow_dir):
    """Stop and start RabbitMQ while workers hold tasks: durable queues and acks_late bring every result home."""
    if shutil.which("rabbitmqctl") is None or rabbitmqctl("status").returncode != 0:
        skip_or_fail("rabbitmqctl is not available to this user, so the broker cannot be restarted")
    w1, w2 = start_worker("restart1"), start_worker("restart2")
    producer, outcome = start_slow_batch(CryptoLoader(slow_dir))
    wait_until_busy([w1.node, w2.node])  # restart the broker mid-batch, or at worst at its start
    try:
        assert rabbitmqctl("stop_app").returncode == 0
        time.sleep(3)
    finally:
        started = rabbitmqctl("start_app")
    assert started.returncode == 0, started.stderr
    producer.join(300)
    assert not producer.is_alive(), "results did not arrive after the broker restart"
    assert_every_coin_once(outcome["run"])
    assert w1.alive() and w2.alive()
    wait_until_idle([w1.node, w2.node], timeout=120)
