"""Engines: the local process pool, and choosing an engine."""

from __future__ import annotations

import pytest

from crypto_ml.engines import LocalEngine, resolve_engine
from crypto_ml.exceptions import EngineError, InvalidParameterError

import jobs

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens on port 1


def run(engine, payloads):
    return dict(engine.map(jobs.square, payloads))


def test_local_engine_returns_every_result_by_index():
    outcomes = run(LocalEngine(workers=2), [{"x": x} for x in range(20)])
    assert sorted(outcomes) == list(range(20))
    assert all(outcomes[i]["square"] == i * i for i in range(20))
    assert len({o["pid"] for o in outcomes.values()}) <= 2


def test_a_raising_task_is_reported_and_the_others_complete():
    outcomes = run(LocalEngine(workers=2), [{"x": 1}, {"x": 2, "fail": True}, {"x": 3}])
    assert isinstance(outcomes[1], ValueError) and "asked to fail on 2" in str(outcomes[1])
    assert outcomes[0]["square"] == 1 and outcomes[2]["square"] == 9


def test_a_dying_process_loses_only_its_own_task(caplog):
    payloads = [{"x": x} for x in range(8)]
    payloads[3]["die"] = True
    outcomes = run(LocalEngine(workers=2), payloads)
    assert sorted(outcomes) == list(range(8))
    assert isinstance(outcomes[3], EngineError) and "died" in str(outcomes[3])
    assert all(outcomes[i]["square"] == i * i for i in range(8) if i != 3)
    assert any("rerunning" in r.message for r in caplog.records)


def test_empty_map_yields_nothing():
    assert run(LocalEngine(workers=1), []) == {}


@pytest.mark.parametrize("workers", [0, -2, 1.5])
def test_bad_worker_count(workers):
    with pytest.raises(InvalidParameterError, match="workers must be an integer >= 1"):
        LocalEngine(workers=workers)


def test_resolve_local_says_why():
    engine = resolve_engine("local", workers=3)
    assert isinstance(engine, LocalEngine) and engine.workers == 3
    assert engine.reason == "local engine requested"


def test_resolve_unknown_engine_lists_valid_ones():
    with pytest.raises(InvalidParameterError, match="unknown engine 'spark'; valid engines are: auto, local, celery"):
        resolve_engine("spark")


def test_auto_falls_back_to_local_and_says_why(monkeypatch):
    monkeypatch.setenv("CRYPTO_ML_BROKER_URL", CLOSED_BROKER)
    engine = resolve_engine("auto")
    assert engine.name == "local"
    assert "no celery worker answered on amqp://guest:**@127.0.0.1:1//" in engine.reason


def test_celery_never_falls_back(monkeypatch):
    monkeypatch.setenv("CRYPTO_ML_BROKER_URL", CLOSED_BROKER)
    with pytest.raises(EngineError, match=r"no celery worker answered .* start one with `celery -A crypto_ml worker`"):
        resolve_engine("celery")


def test_engine_instance_passes_through():
    engine = LocalEngine(workers=1)
    assert resolve_engine(engine) is engine
