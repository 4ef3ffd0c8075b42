"""crypto_ml.ledger.lock: one holder at a time, expiry, and a holder that releases only its own lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import select

from crypto_ml.exceptions import InvalidParameterError, PipelineBusyError
from crypto_ml.ledger import cycle_lock, open_ledger
from crypto_ml.ledger.lock import acquire_lock, release_lock
from crypto_ml.ledger.schema import Lock


def held(ledger):
    with ledger.engine.connect() as connection:
        return connection.execute(select(Lock.name, Lock.holder)).all()


def test_the_lock_is_held_for_the_block_and_released_after(ledger):
    with cycle_lock(ledger, "pipeline:data", holder="cycle-1", seconds=60) as lock:
        assert held(ledger) == [("pipeline:data", "cycle-1")]
        assert (lock.expires_at - lock.acquired_at).total_seconds() == pytest.approx(60)
    assert held(ledger) == []


def test_a_second_taker_is_told_who_holds_it_and_until_when(ledger):
    with cycle_lock(ledger, "pipeline:data", holder="beat-on-host-a", seconds=60) as lock:
        with pytest.raises(PipelineBusyError) as caught, cycle_lock(ledger, "pipeline:data", seconds=60):
            pytest.fail("a second holder got in")
        message = str(caught.value)
        assert "beat-on-host-a" in message
        assert f"{lock.expires_at:%Y-%m-%d %H:%M:%S} UTC" in message
        # Another name is another lock.
        with cycle_lock(ledger, "pipeline:other", seconds=60):
            pass
    assert held(ledger) == []


def test_the_lock_is_released_when_the_block_raises(ledger):
    with pytest.raises(RuntimeError, match="cycle crashed"), cycle_lock(ledger, "pipeline:data", seconds=60):
        raise RuntimeError("cycle crashed")
    with cycle_lock(ledger, "pipeline:data", seconds=60):
        pass


def test_an_expired_lock_is_taken_over_and_its_old_holder_releases_nothing(ledger):
    stale = acquire_lock(ledger, "pipeline:data", holder="crashed", seconds=0.2)
    with pytest.raises(PipelineBusyError, match="crashed"):
        acquire_lock(ledger, "pipeline:data", holder="early", seconds=60)
    time.sleep(0.4)
    fresh = acquire_lock(ledger, "pipeline:data", holder="next-day", seconds=60)
    assert held(ledger) == [("pipeline:data", "next-day")]
    # The crashed cycle comes back and releases: the lock it lost is not its to release.
    assert release_lock(ledger, stale) is False
    assert held(ledger) == [("pipeline:data", "next-day")]
    assert release_lock(ledger, fresh) is True
    assert held(ledger) == []


def test_its_own_holder_retakes_an_unexpired_lock_and_others_still_cannot(ledger):
    # A redelivered cycle task (its worker died holding the lock) names itself by the same task id.
    first = acquire_lock(ledger, "pipeline:data", holder="celery:task-1@w1", seconds=60)
    time.sleep(0.05)
    again = acquire_lock(ledger, "pipeline:data", holder="celery:task-1@w1", seconds=60)
    assert again.expires_at > first.expires_at
    with pytest.raises(PipelineBusyError, match="celery:task-1@w1"):
        acquire_lock(ledger, "pipeline:data", holder="celery:task-2@w2", seconds=60)
    assert release_lock(ledger, again) is True
    assert held(ledger) == []


def test_threads_racing_for_the_lock_let_exactly_one_in(ledger):
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def race(index: int) -> None:
        barrier.wait()
        try:
            acquire_lock(ledger, "pipeline:data", holder=f"thread-{index}", seconds=60)
            outcomes.append("won")
        except PipelineBusyError:
            outcomes.append("busy")

    threads = [threading.Thread(target=race, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["busy"] * 7 + ["won"]
    ((_, holder),) = held(ledger)
    assert holder.startswith("thread-")


RACER = """
import sys, time
from crypto_ml.exceptions import PipelineBusyError
from crypto_ml.ledger import cycle_lock, open_ledger
url, start = sys.argv[1], float(sys.argv[2])
with open_ledger(url) as ledger:
    time.sleep(max(0.0, start - time.time()))
    try:
        with cycle_lock(ledger, "pipeline:data", seconds=60):
            print("won", flush=True)
            time.sleep(2.0)  # still running while the others try
    except PipelineBusyError:
        print("busy", flush=True)
"""


def test_processes_racing_for_the_lock_let_exactly_one_in(ledger, ledger_url):
    """Two beats by mistake, or a manual run during a scheduled one: separate processes, the same database."""
    start = time.time() + 4.0  # every process has opened the ledger by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, ledger_url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outcomes]
    assert sorted(out.strip() for out, _ in outcomes) == ["busy", "busy", "busy", "won"]
    assert held(ledger) == []  # the winner released it


def test_the_expiry_defaults_to_the_setting(ledger, monkeypatch):
    from crypto_ml.config import get_settings

    monkeypatch.setenv("CRYPTO_ML_PIPELINE_LOCK_SECONDS", "90")
    get_settings.cache_clear()
    with cycle_lock(ledger, "pipeline:data") as lock:
        assert (lock.expires_at - lock.acquired_at).total_seconds() == pytest.approx(90)
        assert lock.holder  # host:pid:random by default


def test_a_lock_must_expire_after_a_positive_time(ledger):
    with pytest.raises(InvalidParameterError, match="positive"), cycle_lock(ledger, "pipeline:data", seconds=0):
        pass


def test_a_lock_taken_on_one_connection_is_seen_on_another(ledger_url):
    with open_ledger(ledger_url) as first, open_ledger(ledger_url) as second:
        with (
            cycle_lock(first, "pipeline:data", holder="first", seconds=60),
            pytest.raises(PipelineBusyError, match="first"),
        ):
            acquire_lock(second, "pipeline:data", seconds=60)
        with cycle_lock(second, "pipeline:data", seconds=60):
            pass
