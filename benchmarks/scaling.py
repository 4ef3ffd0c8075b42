"""scaling: the same LSTM training batch on one worker process, then on two.

A heavy worker is started with ``-c 1``, warmed (TensorFlow imported in its
pool process), and trains a batch of coins through ``CryptoManager.train``;
then the same with ``-c 2``. Each pool process uses one TensorFlow thread, so
on a machine with two free cores the second process should nearly double the
throughput: the target is a speedup of at least 1.7×.

The same fits then run in plain processes side by side, without Celery:
what the machine itself gives two processes, so a miss can be told apart
from the worker's own overhead.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from .harness import Options, Report, rate
from .lstm import bare_parallel_fits, dataset, deep_problem, fit_seconds, lstm_params, pick_coins, warm_up

NAME = "scaling"
TITLE = "LSTM training batch through a heavy worker: 1 vs 2 pool processes"

SPEEDUP = 1.7


def run(
    options: Options, *, coins: int | None = None, epochs: int | None = None, processes: tuple[int, ...] = (1, 2)
) -> Report:
    """Time one training batch per pool size.

    Args:
        options: The run's options.
        coins: Coins in the batch; None: 8 (4 with ``--quick``).
        epochs: Training epochs; None: 5 (1 with ``--quick``).
        processes: Pool sizes to compare; the first is the baseline.
    """
    from crypto_ml.celery_app import HEAVY_QUEUE
    from crypto_ml.data_loader import CryptoLoader
    from crypto_ml.engines.celery import CeleryEngine
    from crypto_ml.manager import CryptoManager
    from crypto_ml.models.lstm import LSTMModel

    from .workers import BenchWorker, broker_problem, check_queue

    coins = coins or (4 if options.quick else 8)
    epochs = epochs or (1 if options.quick else 5)
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
            "processes": list(processes),
            "queue": HEAVY_QUEUE,
            "dataset": str(path),
            "source": source,
        },
    )
    report.set_columns(
        ("way", "way"),
        ("processes", "processes"),
        ("seconds", "batch seconds"),
        ("coins_per_s", "coins/s"),
        ("fit_s", "mean fit_seconds"),
        ("speedup", "speedup"),
        ("efficiency", "efficiency"),
    )
    problem = deep_problem() or broker_problem()
    if problem:
        return report.skip(problem)
    check_queue(report, HEAVY_QUEUE)

    loader = CryptoLoader(path)
    picked, _ = pick_coins(loader, coins + max(processes), LSTMModel(**params).min_points)
    warm_coins, batch = picked[coins:], picked[:coins]
    report.parameters["batch_coins"] = batch
    baseline = None
    for count in processes:
        with (
            BenchWorker(f"scaling{count}", HEAVY_QUEUE, count, options.out / "logs") as worker,
            tempfile.TemporaryDirectory(prefix="bench-store-") as store,
        ):
            manager = CryptoManager(loader, engine=CeleryEngine(workers=count))
            warm_up(manager, worker, warm_coins[:count], lstm_params(1), store)
            start = time.perf_counter()
            trained = manager.train("lstm", coins=batch, params=params, store=store, progress=False)
            seconds = time.perf_counter() - start
        fits = fit_seconds(trained)
        baseline = baseline or seconds
        report.add_row(
            way="celery worker",
            processes=count,
            seconds=seconds,
            coins_per_s=rate(len(fits), seconds),
            fit_s=statistics.mean(fits) if fits else None,
            speedup=baseline / seconds,
            efficiency=baseline / seconds / (count / processes[0]),
            trained=len(fits),
        )
    celery_rows = list(report.rows)
    speedup = celery_rows[-1]["speedup"]

    # The machine's own ceiling: the same fits in plain processes side by side, no broker, no worker.
    series = [loader.get_prices(coin) for coin in batch]
    bare_baseline = None
    for count in processes:
        bare = bare_parallel_fits([series[i::count] for i in range(count)], params)
        bare_baseline = bare_baseline or bare["seconds"]
        report.add_row(
            way="bare Keras processes",
            processes=count,
            seconds=bare["seconds"],
            coins_per_s=rate(len(bare["fit_s"]), bare["seconds"]),
            fit_s=statistics.mean(bare["fit_s"]),
            speedup=bare_baseline / bare["seconds"],
            efficiency=bare_baseline / bare["seconds"] / (count / processes[0]),
        )
    ceiling = report.rows[-1]["speedup"]

    report.target(f"speedup, {processes[-1]} vs {processes[0]} process(es)", speedup, ">=", SPEEDUP)
    report.extra["bare_speedup"] = ceiling
    report.note(f"batch: {', '.join(batch)} ({source}); each pool process warmed first (TensorFlow imported)")
    report.note(
        f"bare Keras processes (one TensorFlow thread each, started together after warming, a new model "
        f"per fit) reach {ceiling:.2f}× with {processes[-1]} processes: what this machine gives; the "
        f"worker pool reaches {speedup / ceiling:.0%} of that"
    )
    for way, rows in (("celery worker", celery_rows), ("bare Keras", report.rows[len(celery_rows) :])):
        if len(rows) > 1 and rows[0]["fit_s"] and rows[-1]["fit_s"]:
            report.note(
                f"{way}: a fit takes {rows[-1]['fit_s'] / rows[0]['fit_s']:.2f}× as long with "
                f"{processes[-1]} processes sharing the cores (contention for the cores' shared "
                "resources and other load)"
            )
    return report
