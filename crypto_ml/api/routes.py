"""The ``/v1`` router: submit forecast and backtest jobs, follow and cancel them, and read what the API knows.

Every route takes ``auth.require_key``: a Bearer API key, counted against its
rate limit. A job belongs to the key that submitted it; another key's job is a
404, as an unknown one is, so ids cannot be probed. Handlers that touch the
database are plain functions, which FastAPI runs in its thread pool; the
long-poll of ``GET /v1/jobs/{id}?wait=`` is a coroutine that sleeps between
reads, so a waiting client holds no thread.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from ..config import get_settings
from ..exceptions import CryptoMLError, InvalidParameterError, UnknownJobError
from . import jobs
from .auth import Caller, require_key
from .keys import ApiKey
from .payloads import (
    BacktestRequest,
    CoinList,
    ForecastRequest,
    InvalidRequest,
    JobAccepted,
    JobDocument,
    JobList,
    LatestForecast,
    Message,
    ModelList,
    check_backtest,
    check_forecast,
    coin_reports,
    known_coins,
)

if TYPE_CHECKING:
    from ..ledger.database import Ledger
    from .runner import JobRunner

__all__ = ["router", "submit_forecast", "submit_backtest", "model_catalogue", "LONG_POLL_INTERVAL"]

log = logging.getLogger(__name__)

#: Seconds between database reads while a ``?wait=`` long-poll waits: a job's end is seen within
#: a quarter second, and 100 waiting clients cost 400 cheap primary-key reads a second.
LONG_POLL_INTERVAL = 0.25

#: The most jobs one page of ``GET /v1/jobs`` lists.
MAX_PAGE = 100

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Message, "description": "Missing, unknown or revoked API key."},
    429: {"model": Message, "description": "Over the key's requests per minute; see Retry-After."},
}

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=_ERRORS)


# --- submitting: shared with the dashboard's form ---------------------------------------------------


def _parsed(model: type[BaseModel], payload: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(payload, model):
        return payload
    try:
        return model.model_validate(dict(payload))
    except ValidationError as exc:
        raise InvalidRequest(
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None


def _submit(
    kind: str, request: dict[str, Any], total: int, key: ApiKey, ledger: Ledger, runner: JobRunner | None
) -> str:
    settings = get_settings()
    owner = runner.owner if runner is not None else None
    job_id = jobs.create_job(
        ledger,
        key,
        kind,
        request,
        total,
        # No runner here (a script): the job waits for its lease to lapse, then any API process takes it over.
        owner=owner or "",
        max_active=key.max_concurrent_jobs or settings.api_max_concurrent_jobs,
    )
    if runner is not None:
        runner.wake()
    log.info("job %s: %s of %d coins for key %r", job_id, kind, total, key.name)
    return job_id


def submit_forecast(
    payload: ForecastRequest | Mapping[str, Any], key: ApiKey, ledger: Ledger, runner: JobRunner | None
) -> str:
    """Check a forecast request and queue it as a job of ``key``: what ``POST /v1/forecasts`` does.

    Blocking (the database, and the coin list on first use): call it from a thread, not the event loop.

    Args:
        payload: The request, parsed or as a mapping of its fields.
        key: The key the job belongs to.
        ledger: The open ledger.
        runner: This process's job runner, woken to plan the job at once; None leaves the job for
            whichever runner takes it over when its lease lapses.

    Returns:
        The job id.

    Raises:
        InvalidRequest: the request is wrong; its ``errors`` name each field and reason.
        TooManyJobsError: the key has its limit of jobs queued or running.
    """
    checked, total = check_forecast(_parsed(ForecastRequest, payload), known_coins)
    return _submit("forecast", checked, total, key, ledger, runner)


def submit_backtest(
    payload: BacktestRequest | Mapping[str, Any], key: ApiKey, ledger: Ledger, runner: JobRunner | None
) -> str:
    """``submit_forecast`` for a backtest (``POST /v1/backtests``); the same arguments and errors."""
    checked, total = check_backtest(_parsed(BacktestRequest, payload), known_coins)
    return _submit("backtest", checked, total, key, ledger, runner)


def _accepted(job_id: str, response: Response) -> JobAccepted:
    url = f"/v1/jobs/{job_id}"
    response.headers["Location"] = url
    return JobAccepted(job_id=job_id, status_url=url)


_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": Message, "description": "The body is larger than CRYPTO_ML_API_MAX_BODY_BYTES."},
    429: {
        "model": Message,
        "description": "Over the key's requests per minute, or its concurrent jobs; see Retry-After.",
    },
}


@router.post(
    "/forecasts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=_SUBMIT_RESPONSES,
    summary="Queue a forecast of one model over coins",
)
def post_forecast(body: ForecastRequest, request: Request, response: Response, key: Caller) -> JobAccepted:
    """Checks the request against the model registry and the dataset, queues a job and answers at once:
    follow it at ``status_url``."""
    state = request.app.state
    return _accepted(submit_forecast(body, key, state.ledger, state.runner), response)


@router.post(
    "/backtests",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=_SUBMIT_RESPONSES,
    summary="Queue rolling-origin backtests of models over coins",
)
def post_backtest(body: BacktestRequest, request: Request, response: Response, key: Caller) -> JobAccepted:
    """As ``POST /v1/forecasts``; the records are the CLI's ``crypto-ml backtest --out`` records."""
    state = request.app.state
    return _accepted(submit_backtest(body, key, state.ledger, state.runner), response)


# --- following jobs --------------------------------------------------------------------------------


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id!r} for this API key")


@router.get(
    "/jobs/{job_id}",
    response_model=JobDocument,
    responses={404: {"model": Message, "description": "No such job for this key."}},
    summary="A job's status, progress and, once ended, its results",
)
async def get_job(
    job_id: str,
    request: Request,
    key: Caller,
    wait: float = Query(
        0.0, ge=0, description="Seconds to wait for the job to end before answering (capped at the server's maximum)."
    ),
) -> Any:
    """The job document; with ``?wait=N`` the answer comes as soon as the job ends, or after N seconds."""
    ledger = request.app.state.ledger
    deadline = time.monotonic() + min(wait, get_settings().api_max_wait_seconds)
    while True:
        try:
            document = await run_in_threadpool(jobs.job_document, ledger, job_id, key.id)
        except UnknownJobError:
            raise _not_found(job_id) from None
        if document["status"] in jobs.TERMINAL or time.monotonic() >= deadline:
            return document
        await asyncio.sleep(min(LONG_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        if await request.is_disconnected():
            return document


@router.get("/jobs", response_model=JobList, summary="The caller's jobs, newest first, paged")
def list_jobs(
    request: Request,
    key: Caller,
    limit: int = Query(20, ge=1, le=MAX_PAGE, description="Jobs per page."),
    cursor: str | None = Query(None, max_length=64, description="The previous page's next_cursor."),
) -> JobList:
    """A page of jobs without their results; ``next_cursor`` is null on the last page."""
    try:
        documents, next_cursor = jobs.list_jobs(request.app.state.ledger, key.id, limit=limit, before=cursor)
    except InvalidParameterError as exc:  # the limit is checked above: what is left is a cursor not of this key
        raise InvalidRequest([{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]) from None
    return JobList.model_validate({"jobs": documents, "next_cursor": next_cursor})


@router.delete(
    "/jobs/{job_id}",
    response_model=JobDocument,
    responses={404: {"model": Message, "description": "No such job for this key."}},
    summary="Cancel a job and revoke its tasks",
)
def cancel_job(job_id: str, request: Request, key: Caller) -> Any:
    """An active job becomes ``cancelled`` and its tasks are revoked; an ended job is left as it is (idempotent)."""
    try:
        document, task_ids = jobs.cancel_job(request.app.state.ledger, job_id, key.id)
    except UnknownJobError:
        raise _not_found(job_id) from None
    if task_ids:
        _revoke(task_ids)
    return document


def _revoke(task_ids: list[str]) -> None:
    """Ask the workers to drop the tasks; a broker that does not answer leaves them to run, harmlessly."""
    from ..celery_app import app

    try:
        app.control.revoke(task_ids)
    except Exception as exc:  # noqa: BLE001 - the job is cancelled either way; its records are ignored
        log.warning("could not revoke %d tasks: %s", len(task_ids), exc)


# --- what the API knows ----------------------------------------------------------------------------


@router.get("/coins", response_model=CoinList, summary="The dataset's coins")
def list_coins(key: Caller) -> CoinList:
    """Each coin with its rows and its first and last dates."""
    return CoinList.model_validate({"coins": coin_reports()})


@functools.cache
def model_catalogue() -> list[dict[str, Any]]:
    """Every registered model: ``name``, ``description``, ``interval_method``, ``extra``, ``installed``, ``params``."""
    from ..models import available_models, get_model_class
    from ..models.registry import missing_extra

    catalogue: list[dict[str, Any]] = []
    for name in available_models():
        try:
            cls = get_model_class(name)
            missing = missing_extra(name)
            params = json.loads(json.dumps(cls().get_params(), default=str))
        except ImportError as exc:  # a broken install must not hide the other models
            catalogue.append(
                {
                    "name": name,
                    "description": f"cannot be imported here: {exc}",
                    "interval_method": "",
                    "extra": None,
                    "installed": False,
                    "params": {},
                }
            )
            continue
        catalogue.append(
            {
                "name": name,
                "description": cls.description,
                "interval_method": cls.interval_method,
                "extra": cls.extra,
                "installed": missing is None,
                "params": params,
            }
        )
    return catalogue


@router.get("/models", response_model=ModelList, summary="The registered models")
def list_models(key: Caller) -> ModelList:
    """What each model is, how it makes its intervals, the extra it needs and its parameters; ``default``
    is the model a forecast without ``model`` uses. Any name + ``+conformal`` is accepted too."""
    return ModelList.model_validate({"models": model_catalogue(), "default": get_settings().model})


@router.get(
    "/forecasts/latest",
    response_model=LatestForecast,
    responses={404: {"model": Message, "description": "The ledger holds no forecast of that coin and model."}},
    summary="The ledger's newest forecast of a coin",
)
def latest(
    request: Request,
    key: Caller,
    coin: str = Query(..., min_length=1, max_length=200, description="A coin name."),
    model: str | None = Query(None, max_length=100, description="A model name; default the server's model."),
) -> Any:
    """The forecast issued from the newest origin date, with its intervals and the actual prices scored so far."""
    from ..data import normalize_name
    from ..ledger.latest import latest_forecast
    from ..models import resolve_name

    try:
        name = resolve_name(model if model is not None else get_settings().model)
    except CryptoMLError as exc:
        raise InvalidRequest([{"loc": ("query", "model"), "msg": str(exc), "type": "value_error"}]) from None
    coin_name = normalize_name(coin)
    found = latest_forecast(request.app.state.ledger, coin_name, name)
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no forecast of {coin_name!r} by {name!r} in the ledger; `crypto-ml pipeline run` records them",
        )
    return found
