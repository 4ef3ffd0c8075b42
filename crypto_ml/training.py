"""Plain functions behind the ``train`` task and forecasting from the model store.

Like ``forecasting``, payloads and records are JSON-safe, failures are
per-coin records, and series arrive inline or by dataset reference.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .exceptions import CryptoMLError, IncompatibleModelError
from .model_store import ModelStore
from .models import Forecaster, get_model
from .models.base import DEFAULT_LEVELS, Forecast, build_forecast, validate_horizon, validate_levels, validate_prices
from .models.intervals import empirical_intervals
from .models.registry import check_installed
from .records import failure_record, forecast_dates
from .references import load_series

__all__ = ["train_series", "train_batch", "forecast_from_store", "series_sha256"]

log = logging.getLogger(__name__)

# Stored models this process has loaded, most recent last: predicting many
# coins from the store loads each model once per worker process, not per task.
_CACHE: OrderedDict[tuple[str, str], tuple[Forecaster, dict[str, Any]]] = OrderedDict()
_CACHE_SIZE = 64


def series_sha256(prices: Any) -> str:
    """A fingerprint of the exact prices a model saw."""
    return hashlib.sha256(np.ascontiguousarray(prices, dtype=np.float64).tobytes()).hexdigest()


def _store(payload: dict[str, Any]) -> ModelStore:
    """The producer's store when this machine has it, else this worker's CRYPTO_ML_MODEL_STORE."""
    path = payload.get("store")
    return ModelStore(path if path and Path(path).exists() else None)


def _series(payload: dict[str, Any], item: dict[str, Any]) -> tuple[Any, str | None]:
    if "prices" in item:
        return item["prices"], item.get("last_date")
    return load_series(payload["data"], item["coin"])


def train_series(
    store: ModelStore, coin: str, prices: Any, model: str, params: dict[str, Any], last_date: str | None = None
) -> dict[str, Any]:
    """Fit ``model`` on one coin and store it; a record with the model id, or a failure record.

    A model whose extra this worker lacks fails with ``MissingDependencyError`` naming the extra.
    """
    try:
        check_installed(model)  # this worker may lack an extra the producer has, or the reverse
        y = np.asarray(prices, dtype=np.float64)
        clock = time.perf_counter()
        estimator = get_model(model, **params).fit(y)
        seconds = time.perf_counter() - clock
        metrics = {"fit_seconds": round(seconds, 4), **estimator.training_metrics()}
        data = {"n_obs": int(y.size), "last_date": last_date, "series_sha256": series_sha256(y)}
        model_id = store.save(estimator, coin=coin, data=data, metrics=metrics)
    except CryptoMLError as exc:
        return failure_record(coin, model, exc)
    except Exception as exc:  # one coin's failure must not sink the batch
        log.warning("unexpected error training %s on %s", model, coin, exc_info=True)
        return failure_record(coin, model, exc)
    return {
        "coin": coin,
        "model": model,
        "status": "ok",
        "model_id": model_id,
        "n_obs": int(y.size),
        "last_date": last_date,
        "metrics": metrics,
    }


def train_batch(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Train and store one model per series.

    Args:
        payload: ``{"model", "params", "store", "series": [...]}`` (+ ``"data"`` for references).

    Returns:
        One record per series: ``{"coin", "model", "status", "model_id", "metrics", ...}``.
    """
    store = _store(payload)
    records = []
    for item in payload["series"]:
        try:
            prices, last_date = _series(payload, item)
        except CryptoMLError as exc:
            records.append(failure_record(item["coin"], payload["model"], exc))
            continue
        records.append(
            train_series(store, item["coin"], prices, payload["model"], payload.get("params") or {}, last_date)
        )
    return records


def _load_cached(store: ModelStore, model_id: str) -> tuple[Forecaster, dict[str, Any]]:
    key = (str(store.root), model_id)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    loaded = store.load(model_id)
    _CACHE[key] = loaded
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return loaded


def forecast_from_store(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Forecast each series with its stored model (the latest, or the id given per coin).

    A model that conditions on recent prices (the LSTM) forecasts from the
    current data's last window, so it serves newer data without retraining.
    Other models extrapolate their training series, so they are only used on
    the data they were trained on.

    Every record carries prediction intervals, as ``forecast_series``'s do. A
    stored model that extrapolates its training series gives its own
    ``predict_interval``. For a model forecasting from newer data, the
    intervals come from the *current* series (``empirical_intervals`` of its
    past k-day log returns around the point): the bounds then describe the
    data being forecast, recent days included, rather than the older series
    the model was trained on; and they are the intervals the same model
    fitted on this series now would give (its ``predict_interval`` spreads
    its training series' returns the same way).

    Args:
        payload: ``{"model", "horizon", "params", "levels"?, "store", "model_ids": {coin: id}?, "series": [...]}``.
    """
    store = _store(payload)
    model_name = payload["model"]
    records = []
    for item in payload["series"]:
        coin = item["coin"]
        try:
            check_installed(model_name)
            horizon = validate_horizon(payload["horizon"])
            levels = validate_levels(payload.get("levels") or DEFAULT_LEVELS)
            prices, last_date = _series(payload, item)
            y = np.asarray(prices, dtype=np.float64)
            model_id = (payload.get("model_ids") or {}).get(coin) or store.latest(model_name, coin)
            estimator, metadata = _load_cached(store, model_id)
            _check_request(model_id, metadata, payload.get("params") or {})
            if isinstance(estimator, _ForecastsFromRecent):
                forecast = _intervals_from_current(estimator, estimator.forecast_from, y, horizon, levels)
            elif metadata["data"].get("series_sha256") == series_sha256(y):
                forecast = estimator.predict_interval(horizon, levels)
            else:
                raise IncompatibleModelError(
                    f"{model_id} was trained on {coin} data up to {metadata['data'].get('last_date')}; "
                    f"the data now ends {last_date}. {model_name} extrapolates its training series, so retrain it"
                )
        except CryptoMLError as exc:
            records.append(failure_record(coin, model_name, exc))
            continue
        except Exception as exc:
            log.warning("unexpected error forecasting %s from the store", coin, exc_info=True)
            records.append(failure_record(coin, model_name, exc))
            continue
        records.append(
            {
                "coin": coin,
                "model": model_name,
                "status": "ok",
                **forecast.to_record(),
                "levels": list(forecast.levels),
                "dates": forecast_dates(last_date, horizon),
                "last_date": last_date,
                "last_price": float(y[-1]),
                "n_obs": int(y.size),
                "model_id": model_id,
            }
        )
    return records


@runtime_checkable
class _ForecastsFromRecent(Protocol):
    """A model that forecasts from any recent prices, not only from its training series (the LSTM)."""

    def forecast_from(self, recent: np.ndarray, h: int) -> np.ndarray: ...


def _intervals_from_current(
    estimator: Forecaster,
    forecast_from: Callable[[np.ndarray, int], np.ndarray],
    y: np.ndarray,
    horizon: int,
    levels: tuple,
) -> Forecast:
    """``forecast_from(y, horizon)`` with intervals spread from ``y``'s own k-day log returns (see above)."""
    y = validate_prices(y, 2, estimator.name)  # two prices: one observed return to spread
    # The point gets the checks predict() applies: finite and positive, or NonPositiveForecastError.
    point = estimator._checked_point(forecast_from(y, horizon), horizon)
    return build_forecast(estimator.name, point, empirical_intervals(np.log(y), point, levels), levels)


def _check_request(model_id: str, metadata: dict[str, Any], params: dict[str, Any]) -> None:
    """Parameters given with a from-store forecast must match the stored model's."""
    stored = metadata["params"]
    for key, value in params.items():
        if key in stored and _normal(stored[key]) != _normal(value):
            raise IncompatibleModelError(
                f"{model_id} was trained with {key}={stored[key]!r}, the request asks for {key}={value!r}; "
                "drop the parameter or retrain with it"
            )


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
