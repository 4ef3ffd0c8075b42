"""Plain forecasting functions: what a worker runs, with no Celery in sight.

Payloads and results are JSON-safe dicts (lists, numbers, strings, ISO dates),
so the same function runs in the local process pool and behind the broker.
A failure on one series becomes a ``failed`` record; it never raises out of a
batch.

Every forecast carries central prediction intervals next to its point
forecast: ``lo_<L>`` and ``hi_<L>`` lists for each level L (80 and 95 unless
the payload asks for others), from the model's ``predict_interval``.

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
from .models.base import DEFAULT_LEVELS, validate_horizon, validate_levels
from .models.registry import check_installed
from .records import failure_record, forecast_dates
from .references import load_series

__all__ = ["forecast_series", "forecast_batch"]

log = logging.getLogger(__name__)


def forecast_series(
    coin: str,
    prices: Any,
    model: str,
    horizon: int,
    params: dict[str, Any] | None = None,
    last_date: str | None = None,
    levels: Any = DEFAULT_LEVELS,
) -> dict[str, Any]:
    """Fit ``model`` on one price series and forecast ``horizon`` steps with prediction intervals.

    Args:
        coin: The coin's name, echoed in the record.
        prices: 1-D prices, oldest first (list or ndarray).
        model: A registered model name.
        horizon: Steps ahead to forecast.
        params: Model constructor arguments.
        last_date: ISO date of the last price, used to date the forecast.
        levels: Interval levels in percent, e.g. ``(80, 95)`` or ``"50,80,95"``.

    Returns:
        ``{"coin", "model", "status": "ok", "forecast", "levels", "lo_80", "hi_80",
        "lo_95", "hi_95", "dates", "last_date", "last_price", "n_obs"}`` (a
        ``lo_``/``hi_`` pair per level), or a failure record (``status: "failed"``,
        ``error_type``, ``error``). Never raises for a bad series. A model whose
        extra this worker lacks fails with ``MissingDependencyError`` naming it.
    """
    try:
        # A producer cannot tell which extras a remote worker has; this worker says so per coin.
        check_installed(model)
        horizon = validate_horizon(horizon)
        levels = validate_levels(levels)
        estimator = get_model(model, **(params or {}))
        y = np.asarray(prices, dtype=np.float64)
        # predict_interval checks the point and every bound are finite, positive and nested.
        forecast = estimator.fit(y).predict_interval(horizon, levels)
    except CryptoMLError as exc:
        return failure_record(coin, model, exc)
    except Exception as exc:  # one coin's failure must not sink the batch
        log.warning("unexpected error forecasting %s with %s", coin, model, exc_info=True)
        return failure_record(coin, model, exc)
    return {
        "coin": coin,
        "model": model,
        "status": "ok",
        **forecast.to_record(),
        "levels": list(forecast.levels),
        "dates": forecast_dates(last_date, horizon),
        "last_date": last_date,
        "last_price": float(y[-1]),
        "n_obs": int(y.size),
    }


def forecast_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Forecast every series of a batch with one model.

    Args:
        payload: ``{"model": str, "horizon": int, "params": dict, "levels": [80, 95]?, "series": [...]}``
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
    levels = payload.get("levels") or DEFAULT_LEVELS
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
        records.append(forecast_series(item["coin"], prices, model, horizon, params, last_date, levels))
    return records
