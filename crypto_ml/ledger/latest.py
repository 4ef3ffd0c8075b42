"""The newest forecast the ledger holds for one coin and model, with its actuals where they are scored.

What ``GET /v1/forecasts/latest`` returns and the dashboard draws as a fan chart:
the forecast issued from the latest origin date, step by step, in the shape of a
forecast record (``forecast``, ``dates``, ``levels``, ``lo_<L>``/``hi_<L>``), plus
``actuals`` (None for a step not scored yet).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, func, select

from .database import Ledger, database_errors
from .schema import ForecastInterval, ForecastStep, Score

__all__ = ["latest_forecast"]

FORECASTS: Table = ForecastStep.__table__  # type: ignore[assignment]
INTERVALS: Table = ForecastInterval.__table__  # type: ignore[assignment]
SCORES: Table = Score.__table__  # type: ignore[assignment]


def latest_forecast(ledger: Ledger, coin: str, model: str) -> dict[str, Any] | None:
    """The forecast of ``coin`` by ``model`` from the newest origin date in the ledger.

    When several parameter sets forecast from that date, the one recorded last is returned.

    Args:
        ledger: The open ledger.
        coin: The coin's normalised name (``crypto_ml.data.normalize_name``), as the ledger stores it.
        model: The model's registry name (``crypto_ml.models.resolve_name``).

    Returns:
        None when the ledger holds no forecast of that coin and model; otherwise
        ``{"coin", "model", "params_hash", "origin_date", "recorded_at", "run_id", "dates", "forecast",
        "levels", "lo_<L>", "hi_<L>" (per level), "actuals", "scored"}``: dates ISO, one entry per step,
        ``actuals`` None where the step has no score yet, ``scored`` the number of scored steps.

    Raises:
        LedgerError: the database cannot be read.
    """
    from ..models.base import level_label

    with database_errors(ledger, "reading the latest forecast"), ledger.reading() as connection:
        newest = connection.execute(
            select(FORECASTS.c.origin_date, FORECASTS.c.params_hash)
            .where(FORECASTS.c.coin == coin, FORECASTS.c.model == model)
            .order_by(FORECASTS.c.origin_date.desc(), FORECASTS.c.recorded_at.desc(), FORECASTS.c.id.desc())
            .limit(1)
        ).first()
        if newest is None:
            return None
        origin_date, hash_ = newest
        steps = connection.execute(
            select(
                FORECASTS.c.id,
                FORECASTS.c.step,
                FORECASTS.c.target_date,
                FORECASTS.c.point,
                FORECASTS.c.run_id,
                FORECASTS.c.recorded_at,
                SCORES.c.actual,
            )
            .outerjoin(SCORES, SCORES.c.forecast_id == FORECASTS.c.id)
            .where(
                FORECASTS.c.coin == coin,
                FORECASTS.c.model == model,
                FORECASTS.c.params_hash == hash_,
                FORECASTS.c.origin_date == origin_date,
            )
            .order_by(FORECASTS.c.step)
        ).all()
        ids = [row.id for row in steps]
        bounds = connection.execute(
            select(INTERVALS.c.forecast_id, INTERVALS.c.level, INTERVALS.c.lower, INTERVALS.c.upper).where(
                INTERVALS.c.forecast_id.in_(ids)
            )
        ).all()
        recorded_at = connection.execute(
            select(func.max(FORECASTS.c.recorded_at)).where(FORECASTS.c.id.in_(ids))
        ).scalar_one()
    position = {forecast_id: index for index, forecast_id in enumerate(ids)}
    by_level: dict[float, tuple[list[float | None], list[float | None]]] = {}
    for forecast_id, level, lower, upper in bounds:
        lows, highs = by_level.setdefault(float(level), ([None] * len(ids), [None] * len(ids)))
        lows[position[forecast_id]] = float(lower)
        highs[position[forecast_id]] = float(upper)
    levels = sorted(by_level)
    result: dict[str, Any] = {
        "coin": coin,
        "model": model,
        "params_hash": hash_,
        "origin_date": origin_date.isoformat(),
        "recorded_at": recorded_at.isoformat() if recorded_at is not None else None,
        "run_id": steps[0].run_id,
        "dates": [row.target_date.isoformat() for row in steps],
        "forecast": [float(row.point) for row in steps],
        "levels": [int(level) if level.is_integer() else level for level in levels],
    }
    for level in levels:
        label = level_label(level)
        result[f"lo_{label}"], result[f"hi_{label}"] = by_level[level]
    actuals = [float(row.actual) if row.actual is not None else None for row in steps]
    result["actuals"] = actuals
    result["scored"] = sum(value is not None for value in actuals)
    return result
