"""lstm: the seed's LSTM trained through a heavy-queue worker, against a bare ``model.fit``, and from the store.

In one run, on the same coins and the same parameters (fixed epochs, so runs
compare):

* training through ``CryptoManager.train`` on a heavy worker with one
  process: per coin, the worker's own ``fit_seconds`` metric and the
  end-to-end time (wall time of ``train`` ÷ coins; one process, so coins run
  one after the other);
* a bare ``model.fit`` of the same network on the same windows, in a fresh
  process configured like a pool process (one TensorFlow thread) after
  TensorFlow is warm: the worker may add at most 10%;
* forecasting from the store (``send_tasks(from_store=True)``) against
  training on every request (``send_tasks`` without a store), per coin: at
  least 50× cheaper;
* the pool process's resident memory (``VmRSS``) after its first LSTM task
  and after 200: growth under 10%, at most 1.2 GB.

The TensorFlow import (seconds, ~850 MB) is paid by a warm-up task before
anything is timed. Data: the real top-100 dataset when present, otherwise
generated series.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from .data import describe, real_dataset, synthetic_dataset
from .harness import Options, Report

NAME = "lstm"
TITLE = "LSTM training through a heavy worker vs bare model.fit; from-store forecasts vs training per request; RSS"

WORKER_VS_BARE = 1.1
STORE_VS_TRAIN = 50.0
RSS_GROWTH_PERCENT = 10.0
RSS_LIMIT_GB = 1.2


def deep_problem() -> str | None:
    """Why the LSTM cannot run here, or None."""
    missing = [name for name in ("keras", "tensorflow") if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed: pip install -e '.[deep]'" if missing else None


def lstm_params(epochs: int) -> dict[str, Any]:
    """Model parameters with a fixed number of epochs: patience = epochs, so early stopping never cuts a run short."""
    return {"epochs": epochs, "patience": epochs, "seed": 0}


def dataset(options: Options) -> tuple[Path, str]:
    """The real dataset if present, else 100 generated coins of 300-1,700 days; and which it is."""
    real = real_dataset()
    if real is not None:
        return real, "real top-100 dataset"
    return synthetic_dataset(options, 100, min_points=300, max_points=1700), "generated (real dataset absent)"


def pick_coins(loader: Any, count: int, min_points: int) -> tuple[list[str], list[str]]:
    """The ``count`` longest coins (timing: about 1,550 windows each on the real data) and every usable coin."""
    lengths = {}
    for name in loader.get_crypto_names():
        try:
            lengths[name] = len(loader.get_df(name))
        except Exception:  # noqa: BLE001 - an unloadable coin is simply not used
            continue
    usable = sorted(name for name, n in lengths.items() if n >= min_points)
    longest = sorted(usable, key=lambda name: (-lengths[name], name))
    return longest[:count], usable


def warm_up(manager: Any, worker: Any, coins: list[str], params: dict[str, Any], store: str, rounds: int = 3) -> int:
    """Train until every pool process has imported TensorFlow (its RSS passes 400 MB); return tasks run.

    Each process imports TensorFlow on its first deep task; that cost is real
    but paid once per process, and is not what the timed figures measure.
    """
    from .workers import rss_kib

    tasks = 0
    for _ in range(rounds):
        run = manager.train("lstm", coins=coins, params=params, store=store, progress=False)
        tasks += len(run.records)
        if all(rss_kib(pid).get("rss", 0) > 400_000 for pid in worker.pool_pids()):
            break
    return tasks


def fit_seconds(run: Any) -> list[float]:
    """The worker-side ``fit_seconds`` of every coin a ``TrainRun`` trained."""
    return [r["metrics"]["fit_seconds"] for r in run.records if r.get("status") == "ok"]


# Set in processes started by bare_parallel_fits: they all start timing at once.
_start_together: Any = None


def _init_parallel(barrier: Any) -> None:
    from crypto_ml.deep import mark_pool_process

    global _start_together
    _start_together = barrier
    mark_pool_process()


def _bare_fits(payload: dict[str, Any]) -> list[dict[str, float]]:
    """Build and ``fit`` the model on each series' windows with Keras directly; seconds per step.

    Runs in a fresh process marked as a pool process, so TensorFlow gets one
    thread, as in the worker. One untimed fit warms TensorFlow first.
    """
    return _timed_bare_fits(payload)["timings"]


def _timed_bare_fits(payload: dict[str, Any]) -> dict[str, Any]:
    """:func:`_bare_fits`, plus the wall-clock start (after the warm-up) and end, comparable across processes."""
    from crypto_ml.models.lstm import LSTMModel, make_windows

    params = payload["params"]
    template = LSTMModel(**params)
    fit_args = {
        "epochs": template.epochs,
        "batch_size": template.batch_size,
        "validation_split": template.validation_split,
        "shuffle": True,
        "verbose": 0,
    }
    first = np.asarray(payload["series"][0], dtype=np.float64)
    X, target = make_windows(first, template.window)
    template.build().fit(X, target, **{**fit_args, "epochs": 1})  # TensorFlow warm: import, kernels, tracing
    if _start_together is not None:
        _start_together.wait(timeout=600)
    started = time.time()
    timings = []
    for prices in payload["series"]:
        X, target = make_windows(np.asarray(prices, dtype=np.float64), template.window)
        start = time.perf_counter()
        model = LSTMModel(**params).build()
        built = time.perf_counter()
        model.fit(X, target, **fit_args)
        done = time.perf_counter()
        timings.append({"windows": len(X), "build_s": built - start, "fit_s": done - built})
    return {"timings": timings, "start": started, "end": time.time()}


def bare_fits(series: list[np.ndarray], params: dict[str, Any], *, one_thread: bool = True) -> list[dict[str, float]]:
    """``_bare_fits`` in a fresh process (this process never imports TensorFlow).

    Args:
        series: Prices of each coin.
        params: LSTM parameters.
        one_thread: Configure the process as a pool process (one TensorFlow
            thread, like the worker's); False leaves TensorFlow's default (every core).
    """
    from crypto_ml.deep import mark_pool_process

    initializer = mark_pool_process if one_thread else None
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=initializer) as pool:
        return pool.submit(_bare_fits, {"series": [s.tolist() for s in series], "params": params}).result()


def bare_parallel_fits(parts: list[list[np.ndarray]], params: dict[str, Any]) -> dict[str, Any]:
    """``_bare_fits`` in ``len(parts)`` fresh one-thread processes at once, one part each: no Celery at all.

    What the machine itself gives N processes training side by side, to set
    a worker pool's scaling against. Each process warms TensorFlow, then all
    start timing together.

    Returns:
        ``{"seconds": wall time from the common start to the last fit's end,
        "fit_s": every fit's seconds}``.
    """
    context = get_context("spawn")
    barrier = context.Barrier(len(parts))
    with ProcessPoolExecutor(len(parts), mp_context=context, initializer=_init_parallel, initargs=(barrier,)) as pool:
        futures = [
            pool.submit(_timed_bare_fits, {"series": [s.tolist() for s in part], "params": params}) for part in parts
        ]
        results = [future.result() for future in futures]
    return {
        "seconds": max(r["end"] for r in results) - min(r["start"] for r in results),
        "fit_s": [t["fit_s"] for r in results for t in r["timings"]],
    }


def run(
    options: Options,
    *,
    coins: int | None = None,
    epochs: int | None = None,
    memory_tasks: int | None = None,
    memory_epochs: int = 1,
) -> Report:
    """Run every LSTM measurement on one heavy worker with one process.

    Args:
        options: The run's options.
        coins: Coins timed; None: 8 (2 with ``--quick``).
        epochs: Training epochs for the timed runs; None: 5 (2 with ``--quick``).
        memory_tasks: LSTM tasks before the second RSS reading; None: 200 (12 with ``--quick``).
        memory_epochs: Epochs of the extra training tasks that bring the count to
            ``memory_tasks``; memory grows with the models built, not their epochs.
    """
    from crypto_ml.celery_app import HEAVY_QUEUE
    from crypto_ml.data_loader import CryptoLoader
    from crypto_ml.engines.celery import CeleryEngine
    from crypto_ml.manager import CryptoManager
    from crypto_ml.models.lstm import LSTMModel

    from .workers import BenchWorker, broker_problem, check_queue, rss_kib

    coins = coins or (2 if options.quick else 8)
    epochs = epochs or (2 if options.quick else 5)
    memory_tasks = memory_tasks or (12 if options.quick else 200)
    params = lstm_params(epochs)
    path, source = dataset(options)
    report = Report(
        NAME,
        TITLE,
        options,
        {
            "coins": coins,
            "epochs": epochs,
            "params": params,
            "memory_tasks": memory_tasks,
            "memory_epochs": memory_epochs,
            "worker_concurrency": 1,
            "queue": HEAVY_QUEUE,
            "dataset": describe(path, source=source),
        },
    )
    report.set_columns(("measure", "measure"), ("per_coin_s", "per coin s"), ("ratio", "ratio"), ("detail", "detail"))
    problem = deep_problem() or broker_problem()
    if problem:
        return report.skip(problem)
    check_queue(report, HEAVY_QUEUE)

    loader = CryptoLoader(path)
    template = LSTMModel(**params)
    timed, usable = pick_coins(loader, coins + 1, template.min_points)
    warm_coin, timed = timed[-1], timed[:-1]  # the warm-up coin is never timed
    report.parameters["timed_coins"] = timed
    series = [loader.get_prices(coin) for coin in timed]

    with (
        BenchWorker("lstm", HEAVY_QUEUE, 1, options.out / "logs") as worker,
        tempfile.TemporaryDirectory(prefix="bench-store-") as store,
    ):
        report.parameters["worker"] = worker.node
        manager = CryptoManager(loader, engine=CeleryEngine(workers=1))
        tasks = warm_up(manager, worker, [warm_coin], lstm_params(1), store)
        pid = worker.pool_pids()[0]
        rss_first = rss_kib(pid)

        start = time.perf_counter()
        trained = manager.train("lstm", coins=timed, params=params, store=store, progress=False)
        train_e2e = (time.perf_counter() - start) / len(timed)
        tasks += len(timed)
        worker_fit = fit_seconds(trained)

        stored = []
        for _ in range(2):  # first: each model is loaded from disk; second: the process has it cached
            start = time.perf_counter()
            run = manager.send_tasks(
                "lstm",
                coins=timed,
                horizon=10,
                params=params,
                from_store=True,
                store=store,
                verbose=False,
                progress=False,
            )
            stored.append(((time.perf_counter() - start) / len(timed), len(run.ok)))
            tasks += len(timed)
        start = time.perf_counter()
        per_request = manager.send_tasks("lstm", coins=timed, horizon=10, params=params, verbose=False, progress=False)
        request_e2e = (time.perf_counter() - start) / len(timed)
        tasks += len(timed)

        memory_params = lstm_params(memory_epochs)
        position = 0
        for _ in range(memory_tasks):  # bounded: each round adds at least one task
            if tasks >= memory_tasks:
                break
            chunk = [usable[(position + i) % len(usable)] for i in range(min(memory_tasks - tasks, len(usable)))]
            position += len(chunk)
            tasks += len(manager.train("lstm", coins=chunk, params=memory_params, store=store, progress=False).records)
        pids_after = worker.pool_pids()
        rss_last = rss_kib(pid) if pid in pids_after else {}

    bare = bare_fits(series, params)
    threaded = bare_fits(series, params, one_thread=False)
    bare_total = [b["build_s"] + b["fit_s"] for b in bare]
    bare_per_coin = statistics.mean(bare_total)
    fit_per_coin = statistics.mean(worker_fit) if worker_fit else float("nan")
    windows = statistics.mean(b["windows"] for b in bare)
    report.add_row(
        measure="bare: build + model.fit (1 TF thread)",
        per_coin_s=bare_per_coin,
        ratio=1.0,
        detail=f"{windows:,.0f} windows, {epochs} epochs; fit alone {statistics.mean(b['fit_s'] for b in bare):.2f} s",
    )
    threaded_per_coin = statistics.mean(b["build_s"] + b["fit_s"] for b in threaded)
    report.add_row(
        measure="bare, TensorFlow's default threads",
        per_coin_s=threaded_per_coin,
        ratio=threaded_per_coin / bare_per_coin,
        detail="information: one coin's latency with every core, what -c 1 gives up",
    )
    report.add_row(
        measure="worker: fit_seconds metric",
        per_coin_s=fit_per_coin,
        ratio=fit_per_coin / bare_per_coin,
        detail=f"{len(worker_fit)}/{len(timed)} trained",
    )
    report.add_row(
        measure="worker: train end to end",
        per_coin_s=train_e2e,
        ratio=train_e2e / bare_per_coin,
        detail="train() wall ÷ coins: load, broker, fit, save to store",
    )
    report.add_row(
        measure="train per request (send_tasks)",
        per_coin_s=request_e2e,
        detail=f"fit + forecast, {len(per_request.ok)}/{len(timed)} ok",
    )
    for label, (seconds, ok) in zip(
        ("from store, first (loads model)", "from store, cached model"), stored, strict=True
    ):
        report.add_row(
            measure=label,
            per_coin_s=seconds,
            ratio=request_e2e / seconds,
            detail=f"ratio = train per request ÷ this; {ok}/{len(timed)} ok",
        )
    report.target("worker fit_seconds ÷ bare fit", fit_per_coin / bare_per_coin, "<=", WORKER_VS_BARE)
    report.target("worker end to end ÷ bare fit", train_e2e / bare_per_coin, "<=", WORKER_VS_BARE)
    # Steady state is the target: a pool process loads each coin's model once and keeps it.
    report.target("train per request ÷ from store (cached)", request_e2e / stored[1][0], ">=", STORE_VS_TRAIN)
    report.note(
        f"the first from-store request per process and coin also loads the model from disk "
        f"({stored[0][0] - stored[1][0]:.2f} s more per coin): {request_e2e / stored[0][0]:.0f}× cheaper "
        "than training then"
    )

    first_mb = rss_first.get("rss", 0) / 1024
    report.extra["rss_kib"] = {
        "pid": pid,
        "after_1": rss_first,
        "after_n": rss_last,
        "tasks": tasks,
        "pool_pids_after": pids_after,
    }
    if rss_last:
        last_mb = rss_last["rss"] / 1024
        report.add_row(measure="pool process RSS after 1 LSTM task", detail=f"{first_mb:,.0f} MB")
        report.add_row(
            measure=f"pool process RSS after {tasks} LSTM tasks",
            detail=f"{last_mb:,.0f} MB (peak {rss_last.get('peak', 0) / 1024:,.0f} MB)",
        )
        report.target(
            f"RSS growth, 1 → {tasks} tasks", 100 * (last_mb - first_mb) / first_mb, "<", RSS_GROWTH_PERCENT, unit="%"
        )
        report.target(f"RSS after {tasks} tasks", last_mb / 1024, "<=", RSS_LIMIT_GB, unit=" GB")
    else:
        report.note(
            f"[red]the pool process {pid} was replaced[/] before the last RSS reading "
            f"(pool now {pids_after}): it grew past worker_max_memory_per_child"
        )
        report.target(f"RSS growth, 1 → {tasks} tasks", None, "<", RSS_GROWTH_PERCENT, unit="%")
    report.note(
        f"timed coins: {', '.join(timed)} ({source}); warm-up coin {warm_coin}; "
        f"memory tasks after the timed ones train with epochs={memory_epochs}"
    )
    return report
