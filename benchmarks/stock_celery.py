"""A stock Celery app for the overhead benchmark: crypto_ml's broker and backend, none of its settings.

Only JSON is set, as it must be for a fair comparison (pickle is faster and
unsafe). What crypto_ml adds on top -- late acks, one message per process,
task events for Flower, the STARTED state, time limits, its own exchanges --
is what the overhead benchmark's "stock Celery" rows leave out, so the
difference between the two is the cost of those settings.

Run as ``celery -A benchmarks.stock_celery worker`` from the repository root.
"""

from __future__ import annotations

from celery import Celery

from crypto_ml.config import get_settings

#: Its own queue, so it never takes crypto_ml's tasks or leaves messages in its queues.
STOCK_QUEUE = "crypto_ml_bench.stock"

_settings = get_settings()
app = Celery("crypto_ml_bench_stock", broker=_settings.broker_url, backend=_settings.result_backend)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_default_queue=STOCK_QUEUE,
)


@app.task(name="crypto_ml_bench.noop")
def noop(payload=None):
    """Return the payload: the same no-op as ``crypto_ml.noop``."""
    return payload
