"""Plain forecasting functions: what a worker runs, with no Celery in sight.

Payloads and results are JSON-safe dicts (lists, numbers, strings, ISO dates),
so the same function runs in the local process pool and behind the broker.
A failure on one series becomes a ``failed`` record; it never raises out of a
batch.

Prices travel in one of two ways. *Inline*: each series carries its prices.
*By reference*: the payload names a dataset and each series only its coin
(``references``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .exceptions import CryptoMLError
from .models import get_model
from .models.base import validate_horizon
from .records import failure_record, forecast_dates
from .references import dataset_reference, load_series

__all__ = ["forecast_series", "forecast_batch"]

log = logging.getLogger(__name__)


def forecast_series(
    coin: str,
    prices: Any,
    model: str,
    horizon: int,
    params: dict[str, Any] | None = None,
    last_date: str | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on one price series and forecast ``horizon`` steps.

    Args:
        coin: The coin's name, echoed in the record.
        prices: 1-D prices, oldest first (list or ndarray).
        model: A registered model name.
        horizon: Steps ahead to forecast.
        params: Model constructor arguments.
        last_date: ISO date of the last price, used to date the forecast.

    Returns:
        ``{"coin", "model", "status": "ok", "forecast", "dates", "last_date",
        "last_price", "n_obs"}``, or a failure record (``status: "failed"``,
        ``error_type``, ``error``). Never raises for a bad series.
    """
    try:
        horizon = validate_horizon(horizon)
        estimator = get_model(model, **(params or {}))
        y = np.asarray(prices, dtype=np.float64)
        forecast = estimator.fit(y).predict(horizon)
        if not np.all(np.isfinite(forecast)):
            raise CryptoMLError(f"{model} produced a non-finite forecast for {coin}")
    except CryptoMLError as exc:
        return failure_record(coin, model, exc)
    except Exception as exc:  # noqa: BLE001 - one coin's failure must not sink the batch
        log.warning("unexpected error forecasting %s with %s", coin, model, exc_info=True)
        return failure_record(coin, model, exc)
    return {
        "coin": coin,
        "model": model,
        "status": "ok",
        "forecast": forecast.tolist(),
        "dates": forecast_dates(last_date, horizon),
        "last_date": last_date,
        "last_price": float(y[-1]),
        "n_obs": int(y.size),
    }


def forecast_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Forecast every series of a batch with one model.

    Args:
        payload: ``{"model": str, "horizon": int, "params": dict, "series": [...]}``
            where each series is ``{"coin", "prices", "last_date"}`` (inline), or
            just ``{"coin"}`` when the payload also has ``"data"``: a dataset
            reference from ``dataset_reference``. With ``"from_store": true`` the
            stored models in ``"store"`` forecast instead of fitting
            (``training.forecast_from_store``).

    Returns:
        One record per series, in the payload's order (see ``forecast_series``).
    """
    if payload.get("from_store"):
        from .training import forecast_from_store

        return forecast_from_store(payload)
    model = payload["model"]
    horizon = payload["horizon"]
    params = payload.get("params") or {}
    records = []
    for item in payload["series"]:
        if "prices" in item:
            prices, last_date = item["prices"], item.get("last_date")
        else:
            try:
                prices, last_date = load_series(payload["data"], item["coin"])
            except CryptoMLError as exc:
                records.append(failure_record(item["coin"], model, exc))
                continue
        records.append(forecast_series(item["coin"], prices, model, horizon, params, last_date))
    return records
