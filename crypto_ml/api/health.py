"""``/healthz`` (liveness) and ``/readyz`` (readiness), without authentication, for load balancers and Kubernetes.

Liveness only says the process answers: restarting an API because the
database is down would not bring the database back. Readiness checks what a
job needs: the database, the broker, and at least one worker answering a
ping; a 503 names what is down, so the probe's log says where to look.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from .payloads import Readiness

__all__ = ["router", "READY_TIMEOUT_SECONDS"]

#: Seconds each readiness check may take: under Kubernetes' default probe timeout (1 s) would be
#: too tight for a worker ping, so probes should set timeoutSeconds >= 5.
READY_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something a job needs is down; `down` names it."}},
    summary="Readiness: the database, the broker and at least one worker answer",
)
def readyz(request: Request) -> Any:
    checks = {
        "database": _check_database(request),
        "broker": _check_broker(request),
    }
    workers = 0
    if checks["broker"] == "ok":
        from ..engines.celery import ping_workers

        workers = len(ping_workers(timeout=READY_TIMEOUT_SECONDS / 2, broker_url=request.app.state.settings.broker_url))
        checks["workers"] = "ok" if workers else "no worker answered a ping; start one: celery -A crypto_ml worker"
    else:
        checks["workers"] = "unknown: the broker is down"
    down = [name for name, outcome in checks.items() if outcome != "ok"]
    body = {"status": "unavailable" if down else "ready", "checks": checks, "down": down, "workers": workers}
    return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE if down else status.HTTP_200_OK)


def _check_database(request: Request) -> str:
    from sqlalchemy import text

    try:
        with request.app.state.ledger.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"the database does not answer: {type(exc).__name__}"
    return "ok"


def _check_broker(request: Request) -> str:
    from kombu import Connection

    from ..ledger.database import mask_url

    url = request.app.state.settings.broker_url
    try:
        with Connection(url, connect_timeout=READY_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, timeout=READY_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001
        return f"the broker at {mask_url(url).split('@')[-1]} does not answer: {type(exc).__name__}"
    return "ok"
