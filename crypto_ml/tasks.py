"""Celery tasks: thin wrappers that call plain functions with JSON payloads.

Each batch task returns the plain function's records with one key added,
``node``, the worker node that ran it: the producer logs it per batch and drops
it (Celery's result keeps no worker name unless ``result_extended`` stores every
payload a second time). The result stays a list of records, so producers and
workers of different releases still understand each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import evaluation, forecasting, training
from .celery_app import app
from .config import get_settings

if TYPE_CHECKING:
    from celery import Task

__all__ = ["forecast_batch", "train_batch", "backtest_batch", "pipeline_cycle", "noop"]


def _from_node(task: Task, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for record in records:
        record["node"] = task.request.hostname
    return records


@app.task(name="crypto_ml.forecast_batch", bind=True)
def forecast_batch(self: Task, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Forecast a batch of series; see ``crypto_ml.forecasting.forecast_batch``."""
    return _from_node(self, forecasting.forecast_batch(payload))


@app.task(name="crypto_ml.train_batch", bind=True)
def train_batch(self: Task, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Train and store models; see ``crypto_ml.training.train_batch``."""
    return _from_node(self, training.train_batch(payload))


@app.task(name="crypto_ml.backtest_batch", bind=True)
def backtest_batch(self: Task, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Backtest a batch of series; see ``crypto_ml.evaluation.backtest_batch``."""
    return _from_node(self, evaluation.backtest_batch(payload))


#: The keyword arguments a ``crypto_ml.pipeline_cycle`` payload may carry (``run_cycle``'s, JSON-safe).
PIPELINE_PAYLOAD_KEYS = frozenset(
    {
        "data",
        "models",
        "horizon",
        "levels",
        "params",
        "coins",
        "engine",
        "database_url",
        "fetch",
        "workers",
        "batch_size",
    }
)


# A cycle may run as long as its lock lasts (CRYPTO_ML_PIPELINE_LOCK_SECONDS); past that another cycle may take
# the lock over, so this one is stopped. The forecasting tasks it sends keep their own, shorter limits.
@app.task(
    name="crypto_ml.pipeline_cycle",
    bind=True,
    soft_time_limit=get_settings().pipeline_lock_seconds,
    time_limit=get_settings().pipeline_lock_seconds + 60,
)
def pipeline_cycle(self: Task, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """One daily cycle (``crypto_ml.pipeline.run_cycle``); beat sends it with no payload, so settings decide.

    Args:
        payload: ``run_cycle``'s keyword arguments (``data``, ``models``, ``horizon``, ...), JSON-safe;
            None: every default.

    Returns:
        The cycle's report (``PipelineReport.to_dict()``) with ``node``; when another cycle holds the lock,
        ``{"status": "busy", "error": ..., "node": ...}``: nothing ran, and a busy cycle is not an error to retry.
    """
    from .exceptions import InvalidParameterError, PipelineBusyError
    from .pipeline import run_cycle

    arguments = dict(payload or {})
    unknown = sorted(set(arguments) - PIPELINE_PAYLOAD_KEYS)
    if unknown:
        raise InvalidParameterError(
            f"unknown pipeline_cycle payload keys {unknown}; use {sorted(PIPELINE_PAYLOAD_KEYS)}"
        )
    try:
        # The task id alone names the lock's holder: a redelivery of this very cycle (its worker died
        # holding the lock) runs on another host under the same id, and retakes the lock at once.
        report = run_cycle(**arguments, holder=f"celery-task:{self.request.id}")
    except PipelineBusyError as exc:
        return {"status": "busy", "error": str(exc), "node": self.request.hostname}
    return {**report.to_dict(), "node": self.request.hostname}


@app.task(name="crypto_ml.noop")
def noop(payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Return the payload unchanged: measures the broker round trip in benchmarks and health checks."""
    return payload
