"""Helpers shared by the ledger's tests (tests/test_ledger_*.py): price histories and forecast records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from crypto_ml.forecasting import forecast_series
from crypto_ml.records import forecast_dates

START = np.datetime64("2024-01-01", "D")


def price_history(days: int, *, seed: int = 0, start: np.datetime64 = START) -> tuple[np.ndarray, np.ndarray]:
    """``days`` consecutive daily dates (datetime64[D]) and a positive random-walk price on each."""
    rng = np.random.default_rng(seed)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, days)))
    return start + np.arange(days), prices


def iso(day: np.datetime64) -> str:
    return str(np.datetime64(day, "D"))


def real_records(
    histories: dict[str, tuple[np.ndarray, np.ndarray]],
    models: tuple[str, ...],
    origin: int,
    *,
    horizon: int = 5,
    levels: tuple[int, ...] = (80, 95),
    params_by_model: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The records ``forecast_series`` makes for every coin and model, fitted on prices[:origin + 1]."""
    records = []
    for coin, (dates, prices) in histories.items():
        for model in models:
            params = (params_by_model or {}).get(model)
            records.append(
                forecast_series(coin, prices[: origin + 1], model, horizon, params, iso(dates[origin]), levels)
            )
    for record in records:
        assert record["status"] == "ok", record
    return records


def synthetic_records(
    coins: int, models: tuple[str, ...], horizon: int, origin: str = "2024-01-01", *, seed: int = 0
) -> list[dict[str, Any]]:
    """Well-formed "ok" records with random points and 80 %/95 % intervals, without fitting anything (fast)."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(coins):
        for model in models:
            point = rng.uniform(1.0, 100.0, horizon)
            records.append(
                {
                    "coin": f"coin-{index:03d}",
                    "model": model,
                    "status": "ok",
                    "forecast": point.tolist(),
                    "levels": [80, 95],
                    "lo_80": (point * 0.9).tolist(),
                    "hi_80": (point * 1.1).tolist(),
                    "lo_95": (point * 0.8).tolist(),
                    "hi_95": (point * 1.25).tolist(),
                    "dates": forecast_dates(origin, horizon),
                    "last_date": origin,
                }
            )
    return records


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
