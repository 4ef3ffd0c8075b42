"""overhead: the broker's floor — a task that does nothing, timed through RabbitMQ and Redis.

``crypto_ml.noop`` returns its payload. Sent one at a time and waited for,
it measures the round trip (producer → RabbitMQ → worker → Redis →
producer); sent all at once and then gathered, the most tasks per second the
broker, backend and a two-process worker can carry; sent in chunks (Celery's
``chunks``: many calls per message), the most items per second when messages
are amortised — what batching several series per task buys. No forecast
through the celery engine can beat these figures.
"""

from __future__ import annotations

import time

from .harness import Options, Report, median, percentile, rate

NAME = "overhead"
TITLE = "no-op task round trip and throughput over the configured broker and backend"

#: Figures measured on the 2-core development machine, for comparison (issue 7).
REFERENCE = {"round_trip_ms": 1.5, "tasks_per_s": 1200, "chunked_items_per_s": 64000}


def run(
    options: Options,
    *,
    round_trips: int | None = None,
    tasks: int | None = None,
    chunk_items: int | None = None,
    chunk_size: int = 1000,
    concurrency: int = 2,
) -> Report:
    """Time no-op tasks through a worker this benchmark starts and stops.

    Args:
        options: The run's options.
        round_trips: Sequential send-and-wait round trips; None: 200 (50 with ``--quick``).
        tasks: No-ops sent at once, then gathered; None: 2,000 (500 with ``--quick``).
        chunk_items: Items sent in chunks; None: 100,000 (20,000 with ``--quick``).
        chunk_size: Items per chunk message.
        concurrency: Pool processes of the worker.
    """
    from celery.canvas import chunks

    from crypto_ml.celery_app import LIGHT_QUEUE, app

    from .workers import BenchWorker, broker_problem, check_queue

    round_trips = round_trips or (50 if options.quick else 200)
    tasks = tasks or (500 if options.quick else 2000)
    chunk_items = chunk_items or (20_000 if options.quick else 100_000)
    report = Report(
        NAME,
        TITLE,
        options,
        {
            "round_trips": round_trips,
            "tasks": tasks,
            "chunk_items": chunk_items,
            "chunk_size": chunk_size,
            "worker_concurrency": concurrency,
            "queue": LIGHT_QUEUE,
            "reference_2_cores": REFERENCE,
        },
    )
    report.set_columns(("measure", "measure"), ("value", "value"), ("unit", "unit"), ("reference", "reference here"))
    problem = broker_problem()
    if problem:
        return report.skip(problem)
    check_queue(report, LIGHT_QUEUE)

    def noop(payload=None):
        return app.send_task("crypto_ml.noop", args=[payload], queue=LIGHT_QUEUE)

    with BenchWorker("overhead", LIGHT_QUEUE, concurrency, options.out / "logs") as worker:
        report.parameters["worker"] = worker.node
        ours = _round_trips_and_throughput(noop, round_trips, tasks)
        report.add_row(
            measure="round trip, median", value=ours["median_ms"], unit="ms", reference=REFERENCE["round_trip_ms"]
        )
        report.add_row(measure="round trip, p95", value=ours["p95_ms"], unit="ms")
        report.add_row(measure="send rate (producer only)", value=ours["send_per_s"], unit="tasks/s")
        report.add_row(
            measure="throughput, one message per task",
            value=ours["tasks_per_s"],
            unit="tasks/s",
            reference=REFERENCE["tasks_per_s"],
        )

        # Celery's chunks: each message runs chunk_size calls of the task inside the worker.
        items_args = [(i,) for i in range(chunk_items)]
        start = time.perf_counter()
        result = chunks(app.signature("crypto_ml.noop"), items_args, chunk_size).apply_async(queue=LIGHT_QUEUE)
        gathered = result.join_native(timeout=300)
        seconds = time.perf_counter() - start
        items = sum(len(part) for part in gathered)
        report.add_row(
            measure=f"throughput, chunked ({chunk_size:,} items/message)",
            value=rate(items, seconds),
            unit="items/s",
            reference=REFERENCE["chunked_items_per_s"],
        )

    # The same no-op on a stock Celery app (benchmarks/stock_celery.py): what crypto_ml's settings cost.
    from .stock_celery import STOCK_QUEUE
    from .stock_celery import app as stock_app

    check_queue(report, STOCK_QUEUE)
    with BenchWorker(
        "overhead-stock", STOCK_QUEUE, concurrency, options.out / "logs", app="benchmarks.stock_celery"
    ) as worker:
        report.parameters["stock_worker"] = worker.node
        stock = _round_trips_and_throughput(
            lambda: stock_app.send_task("crypto_ml_bench.noop", args=[None], queue=STOCK_QUEUE), round_trips, tasks
        )
    report.add_row(
        measure="stock Celery: round trip, median",
        value=stock["median_ms"],
        unit="ms",
        reference=REFERENCE["round_trip_ms"],
    )
    report.add_row(
        measure="stock Celery: throughput, one message per task",
        value=stock["tasks_per_s"],
        unit="tasks/s",
        reference=REFERENCE["tasks_per_s"],
    )
    report.extra["stock"] = stock
    report.note(
        f"crypto_ml's settings ÷ stock Celery (JSON only), same broker and backend, same run: round trip "
        f"{ours['median_ms'] / stock['median_ms']:.2f}×, throughput {ours['tasks_per_s'] / stock['tasks_per_s']:.2f}×; "
        "the difference is late acks, one prefetched message per process, task events for Flower and "
        "the STARTED state (an extra backend write per task)"
    )
    report.note("reference: measured on the 2-core development machine (issue 7); compare on the same machine only")
    return report


def _round_trips_and_throughput(send, round_trips: int, tasks: int) -> dict[str, float]:
    """Sequential round trips (median, p95 in ms), then ``tasks`` sent at once and gathered (tasks/s).

    Args:
        send: Sends one no-op and returns its AsyncResult.
    """
    from celery.result import ResultSet

    for _ in range(20):  # connections, pools and the first-task import are not the floor
        send().get(timeout=30)
    trips = []
    for _ in range(round_trips):
        start = time.perf_counter()
        send().get(timeout=30)
        trips.append(time.perf_counter() - start)
    start = time.perf_counter()
    sent = [send() for _ in range(tasks)]
    sent_at = time.perf_counter()
    ResultSet(sent).join_native(timeout=300)
    done = time.perf_counter()
    return {
        "median_ms": 1e3 * median(trips),
        "p95_ms": 1e3 * percentile(trips, 95),
        "send_per_s": rate(tasks, sent_at - start),
        "tasks_per_s": rate(tasks, done - start),
    }
