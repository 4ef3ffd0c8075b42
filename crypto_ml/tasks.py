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

if TYPE_CHECKING:
    from celery import Task

__all__ = ["forecast_batch", "train_batch", "backtest_batch", "noop"]


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


@app.task(name="crypto_ml.noop")
def noop(payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Return the payload unchanged: measures the broker round trip in benchmarks and health checks."""
    return payload
