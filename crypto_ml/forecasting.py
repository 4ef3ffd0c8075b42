"""Plain forecasting functions: what a worker runs, with no Celery in sight.

Payloads and results are JSON-safe dicts (lists, numbers, strings, ISO dates),
so the same function runs in the local process pool and behind the broker.
A failure on one series becomes a ``failed`` record; it never raises out of a
batch.

Prices travel in one of two ways. *Inline*: each series carries its prices.
*By reference*: the payload names a dataset (path, date filters, sha256) and
each series only its coin; the worker reads the dataset once per process and
checks that its copy hashes the same as the producer's, so a worker with
different files fails loudly instead of forecasting other data.
"""

from __future__ import annotations

import functools
import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import CryptoMLError, DataFormatError
from .models import get_model
from .models.base import validate_horizon

__all__ = ["forecast_series", "forecast_batch", "failure_record", "forecast_dates", "dataset_reference", "load_series",
           "load_dated_series"]

log = logging.getLogger(__name__)


def forecast_dates(last_date: str | None, horizon: int) -> list[str] | None:
    """ISO dates of the ``horizon`` days after ``last_date`` (crypto trades every day)."""
    if not last_date:
        return None
    return list(_dates_after(last_date, horizon))  # a fresh list: callers own their records


@functools.lru_cache(maxsize=4096)
def _dates_after(last_date: str, horizon: int) -> tuple[str, ...]:
    # Most coins of a batch end on the same day; building the dates once per day saves ~15% of a naive forecast.
    start = date.fromisoformat(last_date)
    return tuple((start + timedelta(days=step)).isoformat() for step in range(1, horizon + 1))


def failure_record(coin: str, model: str, error: BaseException | str, error_type: str | None = None) -> dict[str, Any]:
    """The record of a coin that could not be forecast, with the reason."""
    return {
        "coin": coin,
        "model": model,
        "status": "failed",
        "error_type": error_type or type(error).__name__,
        "error": str(error),
    }


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


def dataset_reference(loader: Any) -> dict[str, Any]:
    """What a worker needs to read the same data as ``loader``: path, filters and content hash."""
    return {
        "path": str(Path(loader.data_path).resolve()),
        "max_points": loader.max_points,
        "from_date": loader.from_date.date().isoformat() if loader.from_date is not None else None,
        "to_date": loader.to_date.date().isoformat() if loader.to_date is not None else None,
        "sha256": loader.data_hash(),
    }


# Loaders kept by this process, so a worker parses a dataset once, not once per task.
_LOADERS: dict[tuple[Any, ...], Any] = {}
_MAX_CACHED_LOADERS = 4


def load_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, str]:
    """Prices and last date of ``coin`` from a referenced dataset.

    The producer's path is used when this machine has it; otherwise this
    worker's ``CRYPTO_ML_DATA_DIR``. Either way the content must hash the same.

    Raises:
        DataFormatError: the data is missing here or differs from the producer's.
        UnknownCoinError: no such coin in the dataset.
    """
    dates, prices = _reference_series(reference, coin)
    return prices, str(dates[-1].astype("datetime64[D]"))


def load_dated_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, list[str]]:
    """Prices of ``coin`` from a referenced dataset and the ISO date of every price (backtests date their windows).

    Raises:
        DataFormatError: the data is missing here or differs from the producer's.
        UnknownCoinError: no such coin in the dataset.
    """
    dates, prices = _reference_series(reference, coin)
    return prices, np.datetime_as_string(dates, unit="D").tolist()


def _reference_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, np.ndarray]:
    """``coin``'s dates and prices from the referenced dataset, read once per process and checked against its hash."""
    from .config import get_settings
    from .data_loader import CryptoLoader

    path = Path(reference["path"])
    if not path.exists():
        path = get_settings().resolved_data_dir()
    key = (str(path), reference.get("max_points"), reference.get("from_date"), reference.get("to_date"),
           reference.get("sha256"))
    loader = _LOADERS.get(key)
    if loader is None:
        if not path.exists():
            raise DataFormatError(
                f"this worker cannot read the producer's data at {reference['path']}; mount it there, "
                "set CRYPTO_ML_DATA_DIR on the worker, or send prices inline (--transfer inline)"
            )
        loader = CryptoLoader(path, max_points=reference.get("max_points"),
                              from_date=reference.get("from_date"), to_date=reference.get("to_date"))
        expected = reference.get("sha256")
        if expected and loader.data_hash() != expected:
            raise DataFormatError(
                f"this worker's data at {path} differs from the producer's (sha256 {loader.data_hash()[:12]} "
                f"!= {expected[:12]}); point CRYPTO_ML_DATA_DIR at the same files or use --transfer inline"
            )
        if len(_LOADERS) >= _MAX_CACHED_LOADERS:
            _LOADERS.clear()
        _LOADERS[key] = loader
    dates, prices = loader.get_dated_prices(coin)
    if not prices.size:
        raise DataFormatError(f"{coin} has no prices in the selected date range")
    return dates, prices
