"""The local engine: small work in this process, the rest on a warm pool that loses only the task whose process dies."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from crypto_ml.data_loader import CryptoLoader
from crypto_ml.engines import LocalEngine
from crypto_ml.engines.local import MODEL_SECONDS_PER_SERIES, SHARED_PRICES_MIN_BYTES, estimate_work
from crypto_ml.exceptions import EngineError, InvalidParameterError
from crypto_ml.forecasting import forecast_batch
from crypto_ml.manager import CryptoManager

import jobs


def run(engine, payloads, function=jobs.square):
    return dict(engine.map(function, payloads))


def batches(model, n_series, per_batch, **extra):
    """``jobs.where`` payloads for ``model``: the engine estimates their cost from the model and the series."""
    coins = [f"coin{i}" for i in range(n_series)]
    return [
        {"model": model, **extra, "series": [{"coin": coin} for coin in coins[start : start + per_batch]]}
        for start in range(0, n_series, per_batch)
    ]


def pids(outcomes):
    return {record["pid"] for records in outcomes.values() for record in records}


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def engine():
    engine = LocalEngine(workers=2)
    yield engine
    engine.close()


# --- the pool ---


def test_local_engine_returns_every_result_by_index(engine):
    outcomes = run(engine, [{"x": x} for x in range(20)])
    assert sorted(outcomes) == list(range(20))
    assert all(outcomes[i]["square"] == i * i for i in range(20))
    assert len({o["pid"] for o in outcomes.values()}) <= 2
    assert os.getpid() not in {o["pid"] for o in outcomes.values()}  # no model named: the pool


def test_a_raising_task_is_reported_and_the_others_complete(engine):
    outcomes = run(engine, [{"x": 1}, {"x": 2, "fail": True}, {"x": 3}])
    assert isinstance(outcomes[1], ValueError) and "asked to fail on 2" in str(outcomes[1])
    assert outcomes[0]["square"] == 1 and outcomes[2]["square"] == 9


def test_a_dying_process_loses_only_its_own_task(caplog, engine):
    payloads = [{"x": x} for x in range(8)]
    payloads[3]["die"] = True
    outcomes = run(engine, payloads)
    assert sorted(outcomes) == list(range(8))
    assert isinstance(outcomes[3], EngineError) and "died" in str(outcomes[3])
    assert all(outcomes[i]["square"] == i * i for i in range(8) if i != 3)
    assert any("rerunning" in r.message for r in caplog.records)
    # The broken pool was dropped: the next call gets a working one.
    again = run(engine, [{"x": x} for x in range(4)])
    assert all(again[i]["square"] == i * i for i in range(4))


def test_the_pool_stays_warm_across_calls_until_close(engine):
    first = run(engine, [{"x": x} for x in range(20)])
    second = run(engine, [{"x": x} for x in range(20)])
    before = {o["pid"] for o in first.values()}
    assert {o["pid"] for o in second.values()} <= before  # the same processes: no new pool
    assert all(alive(pid) for pid in before)
    engine.close()
    assert not any(alive(pid) for pid in before)
    third = run(engine, [{"x": x} for x in range(4)])  # a closed engine starts a new pool when asked
    assert not {o["pid"] for o in third.values()} & before


def test_closing_the_manager_stops_the_pool(synth_dir):
    engine = LocalEngine(workers=2, in_process=False)
    with CryptoManager(CryptoLoader(synth_dir), engine=engine) as manager:
        _, records, _ = manager.dispatch(jobs.where, {"model": "naive"}, label="naive")
        used = {found["pid"] for found in (r[0] for r in records.values())}
        assert os.getpid() not in used and all(alive(pid) for pid in used)
    assert not any(alive(pid) for pid in used)


def test_empty_map_yields_nothing():
    assert run(LocalEngine(workers=1), []) == {}


@pytest.mark.parametrize("workers", [0, -2, 1.5])
def test_bad_worker_count(workers):
    with pytest.raises(InvalidParameterError, match="workers must be an integer >= 1"):
        LocalEngine(workers=workers)


# --- in this process, below the threshold ---


def test_cheap_work_runs_in_this_process_and_says_why(caplog, engine):
    caplog.set_level(logging.INFO, logger="crypto_ml.engines.local")
    outcomes = run(engine, batches("naive", 40, 10), jobs.where)
    assert sorted(outcomes) == [0, 1, 2, 3]
    assert pids(outcomes) == {os.getpid()}
    assert engine.last_plan.startswith("in-process: naive on 40 series")
    assert any(r.message.startswith("local engine: in-process: naive on 40 series") for r in caplog.records)


def test_expensive_work_goes_to_the_pool(engine):
    outcomes = run(engine, batches("arima", 1000, 250), jobs.where)
    assert os.getpid() not in pids(outcomes)
    assert engine.last_plan.startswith("pool of 2 process(es): arima on 1,000 series")


def test_a_backtest_counts_every_window(engine):
    """One series is cheap; the same series refitted in 3,000 windows is not."""
    assert pids(run(engine, batches("linear", 1, 1, windows=1), jobs.where)) == {os.getpid()}
    assert os.getpid() not in pids(run(engine, batches("linear", 1, 1, models=["naive"], windows=3000), jobs.where))


@pytest.mark.parametrize("model", ["lstm", "lstm+conformal", "deep_predict", "naive+conformal", "no_such_model"])
def test_deep_and_unknown_models_never_run_in_this_process(model):
    engine = LocalEngine(workers=1, in_process=True)  # even when asked to
    try:
        outcomes = run(engine, batches(model, 1, 1), jobs.where)
    finally:
        engine.close()
    assert os.getpid() not in pids(outcomes)
    assert "always runs in the pool" in engine.last_plan


def test_one_process_runs_known_models_here():
    """A one-process pool divides no work: it would only add its start and transfer."""
    engine = LocalEngine(workers=1)
    assert pids(run(engine, batches("svr_rbf", 100, 25), jobs.where)) == {os.getpid()}
    assert "one process divides no work" in engine.last_plan


def test_the_estimate_scales_with_series_length_and_models():
    short = {"model": "linear", "series": [{"coin": "a", "prices": np.ones(500)}]}
    backtest = {"models": ["naive", "linear"], "windows": 10, "series": [{"coin": "a"}, {"coin": "b"}]}
    seconds, count, models = estimate_work([short, backtest])
    linear, naive = MODEL_SECONDS_PER_SERIES["linear"], MODEL_SECONDS_PER_SERIES["naive"]
    assert seconds == pytest.approx(linear / 2 + 2 * 10 * (naive + linear))
    assert count == 3 and models == ["linear", "naive"]
    assert estimate_work([short, {"series": [{"coin": "c"}]}]) is None  # a payload naming no model


# --- the same results both ways ---


def test_a_raising_batch_fails_alone_in_this_process_too(engine):
    payloads = batches("naive", 9, 3, fail_on=["coin4"])
    outcomes = run(engine, payloads, jobs.where)
    assert pids({i: outcomes[i] for i in (0, 2)}) == {os.getpid()}
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "asked to fail on coin4"


def test_a_task_writing_into_its_payload_does_not_reach_the_caller():
    prices = np.arange(1.0, 11.0)
    payload = {"model": "naive", "scribble": True, "series": [{"coin": "a", "prices": prices}]}
    assert pids(run(LocalEngine(workers=2, in_process=True), [payload], jobs.where)) == {os.getpid()}
    np.testing.assert_array_equal(prices, np.arange(1.0, 11.0))


@pytest.mark.parametrize("model", ["naive", "linear", "ewma"])
def test_forecasts_are_identical_in_this_process_and_in_the_pool(model):
    rng = np.random.default_rng(3)
    series = [
        {"coin": f"c{i}", "prices": 100 * np.exp(np.cumsum(rng.normal(0, 0.03, 200))), "last_date": "2024-03-01"}
        for i in range(12)
    ]
    series[5]["prices"] = series[5]["prices"][:1]  # too short: a failed record, the same both ways
    payloads = [{"model": model, "horizon": 5, "params": {}, "series": series[i : i + 4]} for i in range(0, 12, 4)]
    here = LocalEngine(workers=2, in_process=True)
    pool = LocalEngine(workers=2, in_process=False)
    try:
        assert run(here, payloads, forecast_batch) == run(pool, payloads, forecast_batch)
    finally:
        pool.close()
    assert here.last_plan.startswith("in-process") and pool.last_plan.startswith("pool")


# --- prices through a shared file ---


def price_payloads(n_series, points=1000, per_batch=50, **extra):
    rng = np.random.default_rng(11)
    series = [{"coin": f"c{i}", "prices": rng.uniform(1, 2, points)} for i in range(n_series)]
    return [{"model": "naive", **extra, "series": series[i : i + per_batch]} for i in range(0, n_series, per_batch)]


def test_big_calls_send_prices_through_one_shared_file_removed_after_the_call():
    payloads = price_payloads(200, scribble=True)  # 1.6 MB of prices
    assert sum(i["prices"].nbytes for p in payloads for i in p["series"]) > SHARED_PRICES_MIN_BYTES
    before = [i["prices"].copy() for p in payloads for i in p["series"]]
    engine = LocalEngine(workers=2, in_process=False)
    try:
        outcomes = run(engine, payloads, jobs.price_sums)
    finally:
        engine.close()
    records = [r for index in sorted(outcomes) for r in outcomes[index]]
    # Every series arrived whole and in place, and the task could write into its own copy (scribble)...
    assert [r["sum"] for r in records] == pytest.approx([float(np.sum(p)) for p in before], rel=1e-15)
    # ...without reaching the caller's arrays.
    for after, original in zip((i["prices"] for p in payloads for i in p["series"]), before, strict=True):
        np.testing.assert_array_equal(after, original)
    seen = {path for r in records for path in r["files"] if f"-{os.getpid()}-" in path}
    assert len(seen) == 1, "one shared file for the whole call"
    assert not any(os.path.exists(path) for path in seen), "removed when the call ended"


def test_small_calls_pickle_their_prices():
    engine = LocalEngine(workers=2, in_process=False)
    try:
        outcomes = run(engine, price_payloads(10), jobs.price_sums)
    finally:
        engine.close()
    assert not [path for rs in outcomes.values() for r in rs for path in r["files"] if f"-{os.getpid()}-" in path]


def test_a_call_stopped_early_removes_its_shared_file():
    engine = LocalEngine(workers=2, in_process=False)
    try:
        outcomes = engine.map(jobs.price_sums, price_payloads(400))
        _, first = next(outcomes)
        (path,) = {p for p in first[0]["files"] if f"-{os.getpid()}-" in p}
        outcomes.close()  # the caller stops: an error, Ctrl-C
        assert not os.path.exists(path)
    finally:
        engine.close()


def test_shared_prices_give_the_same_forecasts_as_this_process():
    rng = np.random.default_rng(5)
    series = [
        {"coin": f"c{i}", "prices": 100 * np.exp(np.cumsum(rng.normal(0, 0.03, 1000))), "last_date": "2024-03-01"}
        for i in range(160)
    ]
    series.append({"coin": "listed", "prices": [1.0, 2.0, 3.0], "last_date": "2024-03-01"})  # not an array: pickled
    task = {"model": "linear", "horizon": 5, "params": {}}
    payloads = [{**task, "series": series[i : i + 40]} for i in range(0, 161, 40)]
    pool = LocalEngine(workers=2, in_process=False)
    try:
        assert run(LocalEngine(workers=2, in_process=True), payloads, forecast_batch) == run(
            pool, payloads, forecast_batch
        )
    finally:
        pool.close()


def test_the_manager_records_the_same_failures_both_ways(synth_dir):
    def records(engine):
        with CryptoManager(CryptoLoader(synth_dir), engine=engine, batch_size=3) as manager:
            coins = manager.loader.get_crypto_names()
            _, found, _ = manager.dispatch(jobs.where, {"model": "naive", "fail_on": [coins[4]]}, label="naive")
        return coins, {coin: [{k: v for k, v in r.items() if k != "pid"} for r in rs] for coin, rs in found.items()}

    coins, here = records(LocalEngine(workers=2, in_process=True))
    _, pool = records(LocalEngine(workers=2, in_process=False))
    assert here == pool
    failed = {coin for coin, rs in here.items() if rs[0].get("status") == "failed"}
    assert failed == set(coins[3:6])  # the batch holding coins[4], and only it
    assert here[coins[4]][0]["error_type"] == "ValueError"
