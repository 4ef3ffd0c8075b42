"""The API's request and response bodies, and the checks a request passes before a job is created.

Pydantic checks types and ranges (FastAPI answers 422 on its own); ``check_forecast``
and ``check_backtest`` then check what only the package knows: model names and
parameters against the registry, interval levels, and coin names against the
dataset. Either way a bad request is a 422 whose ``detail`` names the field
(``loc``) and the reason (``msg``), as FastAPI spells it, and nothing is queued.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from ..config import get_settings
from ..exceptions import CryptoMLError

__all__ = [
    "MAX_HORIZON",
    "ForecastRequest",
    "BacktestRequest",
    "JobAccepted",
    "Progress",
    "JobDocument",
    "JobList",
    "CoinInfo",
    "CoinList",
    "ModelInfo",
    "ModelList",
    "LatestForecast",
    "Message",
    "Readiness",
    "InvalidRequest",
    "check_forecast",
    "check_backtest",
    "known_coins",
    "coin_reports",
]

#: The longest horizon a request may ask for: a year of daily steps. Longer forecasts say
#: nothing (every interval spans orders of magnitude) and only cost worker time.
MAX_HORIZON = 365

#: Coins one request may name: a list longer than any dataset is a mistake or an attack,
#: and it would be checked name by name.
MAX_COINS = 10_000


class InvalidRequest(RequestValidationError):
    """A request that passed pydantic but not the package's checks: answered as FastAPI answers a bad body.

    Args:
        errors: FastAPI-style entries ``{"loc": ("body", field), "msg": reason, "type": kind}``;
            ``errors()`` returns them.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)

    def __str__(self) -> str:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in self.errors())


def _error(field: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ("body", field), "msg": message, "type": kind}


# --- requests --------------------------------------------------------------------------------------


class ForecastRequest(BaseModel):
    """``POST /v1/forecasts``: one model over many coins, like ``crypto-ml forecast``."""

    model_config = ConfigDict(extra="forbid")

    coins: list[str] | Literal["all"] | None = Field(
        default=None, max_length=MAX_COINS, description='Coin names; omitted, null or "all" means every coin.'
    )
    model: str | None = Field(default=None, description="A registered model (GET /v1/models); default the server's.")
    horizon: int = Field(default=10, ge=1, le=MAX_HORIZON, description="Days to forecast.")
    levels: list[float] | None = Field(default=None, max_length=20, description="Interval levels in percent, (0, 100).")
    params: dict[str, Any] = Field(default_factory=dict, description="The model's constructor parameters.")
    from_store: bool = Field(default=False, description="Forecast with stored models instead of fitting.")


class BacktestRequest(BaseModel):
    """``POST /v1/backtests``: rolling-origin backtests of models over coins, like ``crypto-ml backtest``."""

    model_config = ConfigDict(extra="forbid")

    coins: list[str] | Literal["all"] | None = Field(default=None, max_length=MAX_COINS)
    models: list[str] | str = Field(description="Model names, or one comma-separated string; naive is always added.")
    horizon: int = Field(default=10, ge=1, le=MAX_HORIZON)
    windows: int = Field(default=30, ge=1, le=1_000, description="Backtest windows per coin.")
    step: int | None = Field(default=None, ge=1, description="Days between cutoffs; default the horizon.")
    levels: list[float] | None = Field(default=None, max_length=20)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="{model: {parameter: value}}.")


# --- responses -------------------------------------------------------------------------------------


class JobAccepted(BaseModel):
    """A job was queued: poll ``status_url`` (also the ``Location`` header)."""

    job_id: str
    status_url: str


class Progress(BaseModel):
    done: int = Field(description="Coins with results stored.")
    total: int = Field(description="Coins in the job.")


class JobDocument(BaseModel):
    """A job: its status and progress; when it has ended, its records, as the CLI's ``--out`` JSON holds them."""

    job_id: str
    kind: Literal["forecast", "backtest"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    request: dict[str, Any]
    progress: Progress
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    error: str | None = None
    status_url: str
    results: list[dict[str, Any]] | None = None
    failures: list[dict[str, Any]] | None = None


class JobList(BaseModel):
    """A page of the caller's jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    jobs: list[JobDocument]
    next_cursor: str | None


class CoinInfo(BaseModel):
    coin: str
    rows: int
    first_date: str | None
    last_date: str | None


class CoinList(BaseModel):
    coins: list[CoinInfo]


class ModelInfo(BaseModel):
    name: str
    description: str
    interval_method: str
    extra: str | None = Field(description="The pip extra the model needs, or null when built in.")
    installed: bool = Field(description="Whether this API's install has the extra (workers may differ).")
    params: dict[str, Any] = Field(description="Constructor parameters and their defaults.")


class ModelList(BaseModel):
    models: list[ModelInfo]
    default: str


class LatestForecast(BaseModel):
    """The ledger's newest forecast of a coin by a model (``crypto_ml.ledger.latest.latest_forecast``);
    ``lo_<L>``/``hi_<L>`` per level are extra keys."""

    model_config = ConfigDict(extra="allow")

    coin: str
    model: str
    params_hash: str
    origin_date: str
    recorded_at: str | None
    run_id: int
    dates: list[str]
    forecast: list[float]
    levels: list[float]
    actuals: list[float | None]
    scored: int


class Message(BaseModel):
    """An error: what went wrong and what to do."""

    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description='"ok", or why that dependency is down.')
    down: list[str]
    workers: int = Field(description="Worker nodes that answered a ping.")


# --- the checks ------------------------------------------------------------------------------------


def check_forecast(request: ForecastRequest, coin_names: Callable[[], Sequence[str]]) -> tuple[dict[str, Any], int]:
    """Check a forecast request against the registry and the dataset; return it normalised.

    Args:
        request: The parsed body.
        coin_names: Returns the dataset's coin names (normalised); called only when needed.

    Returns:
        ``(request, total)``: the normalised request a job stores (``coins`` as a list of normalised
        names, ``model`` resolved, ``horizon``, ``levels``, ``params``, ``from_store``) and its number of coins.

    Raises:
        InvalidRequest: every problem found, each naming its field.
    """
    from ..models import get_model, resolve_name
    from ..models.base import validate_levels

    errors: list[dict[str, Any]] = []
    model = None
    try:
        model = resolve_name(request.model if request.model is not None else get_settings().model)
    except CryptoMLError as exc:
        errors.append(_error("model", str(exc)))
    if model is not None:
        try:
            get_model(model, **request.params)
        except CryptoMLError as exc:
            errors.append(_error("params", str(exc)))
        except TypeError as exc:  # a model constructor that refuses a value's type
            errors.append(_error("params", f"bad parameters for {model!r}: {exc}"))
    levels: list[float] = []
    try:
        levels = list(validate_levels(request.levels))
    except CryptoMLError as exc:
        errors.append(_error("levels", str(exc)))
    coins = _check_coins(request.coins, coin_names, errors)
    if errors:
        raise InvalidRequest(errors)
    normalised = {
        "coins": coins,
        "model": model,
        "horizon": request.horizon,
        "levels": levels,
        "params": dict(request.params),
        "from_store": request.from_store,
    }
    return normalised, len(coins)


def check_backtest(request: BacktestRequest, coin_names: Callable[[], Sequence[str]]) -> tuple[dict[str, Any], int]:
    """Check a backtest request as ``crypto-ml backtest`` does; return it normalised.

    Returns:
        ``(request, total)``: ``coins``, ``models`` (with the benchmark), ``horizon``, ``windows``,
        ``step`` (resolved), ``params`` (by resolved model), ``levels``; and the number of coins.

    Raises:
        InvalidRequest: every problem found, each naming its field.
    """
    from ..evaluation import validate_request
    from ..models import resolve_name
    from ..models.base import validate_levels

    errors: list[dict[str, Any]] = []
    names = request.models
    if isinstance(names, str):
        names = [name for name in names.split(",") if name.strip()]
    if not names:
        errors.append(_error("models", 'no models to backtest; name at least one, e.g. ["drift", "linear"]'))
    unknown = []
    for name in names:
        try:
            resolve_name(name)
        except CryptoMLError as exc:
            unknown.append(str(exc))
    if unknown:
        errors.append(_error("models", unknown[0] if len(unknown) == 1 else "; ".join(unknown)))
    levels: list[float] = []
    try:
        levels = list(validate_levels(request.levels))
    except CryptoMLError as exc:
        errors.append(_error("levels", str(exc)))
    checked: tuple[Any, ...] = ()
    if names and not unknown:
        try:
            checked = validate_request(names, request.horizon, request.windows, request.step, request.params)
        except CryptoMLError as exc:
            # Models, horizon, windows and step passed above and in pydantic: what is left is the parameters.
            errors.append(_error("params", str(exc)))
    coins = _check_coins(request.coins, coin_names, errors)
    if errors:
        raise InvalidRequest(errors)
    models, horizon, windows, step, params = checked
    normalised = {
        "coins": coins,
        "models": models,
        "horizon": horizon,
        "windows": windows,
        "step": step,
        "params": params,
        "levels": levels,
    }
    return normalised, len(coins)


def _check_coins(
    requested: list[str] | str | None, coin_names: Callable[[], Sequence[str]], errors: list[dict[str, Any]]
) -> list[str]:
    """The requested coins, normalised, in request order without repeats (every coin for None/"all")."""
    from ..data import normalize_name

    try:
        known = coin_names()
    except CryptoMLError as exc:
        errors.append(_error("coins", f"the dataset cannot be read: {exc}", "dataset_error"))
        return []
    if requested is None or requested == "all":
        if not known:
            errors.append(_error("coins", "the dataset holds no coins; set CRYPTO_ML_DATA_DIR on the server"))
        return list(known)
    if not requested:
        errors.append(_error("coins", 'give at least one coin, or "all"'))
        return []
    ordered = list(dict.fromkeys(normalize_name(name) for name in requested))
    known_set = set(known)
    unknown = [name for name in ordered if name not in known_set]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        errors.append(
            _error("coins", f"unknown coins: {shown}; GET /v1/coins lists the dataset's coins", "unknown_coin")
        )
    return ordered


# --- the dataset, cached per process ---------------------------------------------------------------

#: Seconds a coin report (rows, dates) is reused: a file that grows in place leaves the folder's mtime
#: as it was, so the report is also refreshed this often; names only change with the folder.
REPORT_TTL_SECONDS = 300.0

_cache_lock = threading.Lock()
_names_cache: dict[tuple[str, float], list[str]] = {}
_reports_cache: dict[tuple[str, float, int], list[dict[str, Any]]] = {}


def _dataset_signature() -> tuple[str, float]:
    """The data path and its modification time: a coin file added or replaced changes the folder's mtime."""
    path = get_settings().resolved_data_dir()
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = -1.0
    return str(Path(path).resolve()), mtime


def known_coins() -> list[str]:
    """The dataset's coin names (normalised), read once per process and data-folder change.

    Raises:
        DataFormatError: the dataset cannot be read.
    """
    from ..data import CryptoLoader

    signature = _dataset_signature()
    with _cache_lock:
        cached = _names_cache.get(signature)
    if cached is None:
        cached = CryptoLoader().get_crypto_names()
        with _cache_lock:
            _names_cache.clear()
            _names_cache[signature] = cached
    return list(cached)


def coin_reports() -> list[dict[str, Any]]:
    """Each coin's rows and first and last dates (``CryptoLoader.report``, cached like ``known_coins``, and for
    at most ``REPORT_TTL_SECONDS``).

    A coin that cannot be loaded is listed with 0 rows: ``GET /v1/coins`` names what a request may name.
    """
    from ..data import CryptoLoader

    signature = (*_dataset_signature(), int(time.monotonic() // REPORT_TTL_SECONDS))
    with _cache_lock:
        cached = _reports_cache.get(signature)
    if cached is None:
        report = CryptoLoader().report()
        seen: dict[str, dict[str, Any]] = {}
        for coin in report.coins:
            seen.setdefault(
                coin.name,
                {"coin": coin.name, "rows": coin.rows, "first_date": coin.first_date, "last_date": coin.last_date},
            )
        cached = sorted(seen.values(), key=lambda entry: entry["coin"])
        with _cache_lock:
            _reports_cache.clear()
            _reports_cache[signature] = cached
    return [dict(entry) for entry in cached]
