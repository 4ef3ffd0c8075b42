"""The local engine: a process pool that loses only the task whose process dies."""

from __future__ import annotations

import pytest

from crypto_ml.engines import LocalEngine
from crypto_ml.exceptions import EngineError, InvalidParameterError

import jobs


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
