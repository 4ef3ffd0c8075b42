"""Celery tasks: thin wrappers that call plain functions with JSON payloads."""

from __future__ import annotations

from typing import Any

from . import evaluation, forecasting, training
from .celery_app import app

__all__ = ["forecast_batch", "train_batch", "backtest_batch", "noop"]


@app.task(name="crypto_ml.forecast_batch")
def forecast_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Forecast a batch of series; see ``crypto_ml.forecasting.forecast_batch``."""
    return forecasting.forecast_batch(payload)


@app.task(name="crypto_ml.train_batch")
def train_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Train and store models; see ``crypto_ml.training.train_batch``."""
    return training.train_batch(payload)


@app.task(name="crypto_ml.backtest_batch")
def backtest_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Backtest a batch of series; see ``crypto_ml.evaluation.backtest_batch``."""
    return evaluation.backtest_batch(payload)


@app.task(name="crypto_ml.noop")
def noop(payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Return the payload unchanged: measures the broker round trip in benchmarks and health checks."""
    return payload
