"""``create_app()``: the FastAPI application ``crypto-ml serve`` runs.

What it puts around the routers:

* a lifespan that opens the ledger (upgrading its schema) and starts this
  process's ``JobRunner``, and stops both on shutdown;
* a body-size limit: a ``Content-Length`` over ``api_max_body_bytes`` is a
  413 before the body is read, and a chunked body is counted as it arrives;
* CORS only when ``api_cors_origins`` lists origins (off by default: browsers
  then refuse cross-origin reads, and the dashboard is same-origin);
* error handlers: every 4xx and 5xx is JSON ``{"detail": ...}``; 422 lists
  ``{"loc", "msg", "type"}`` per problem as FastAPI does, without echoing the
  input; an unexpected error is logged here with its traceback and answered
  with a line that says where to look, never the traceback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings, get_settings
from ..exceptions import CryptoMLError, LedgerError, TooManyJobsError, UnknownJobError

__all__ = ["create_app", "create_served_app", "BodySizeLimit", "API_TITLE"]

log = logging.getLogger(__name__)

API_TITLE = "crypto-ml"

#: Test each pooled connection as it is taken (one ``;`` round trip). Kept: after a PostgreSQL restart
#: no request meets a dead connection. Measured at 100 users, turning it off saved about 4 % of the
#: API's CPU per request, within the run-to-run noise; the auth cache already halved the takes per request.
API_PRE_PING = True


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a body without ``Content-Length`` grows past the limit.

    An HTTPException, so that whoever is reading the body (FastAPI re-raises those as they are)
    lets it through to the error handlers, which answer 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=_too_large(max_bytes))


class BodySizeLimit:
    """ASGI middleware: refuse request bodies larger than ``max_bytes`` with 413.

    Args:
        app: The application it wraps.
        max_bytes: The largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                too_large = False  # h11/httptools reject a malformed Content-Length before we see it
            if too_large:
                await self._refuse(send)
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": _too_large(self.max_bytes)},
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            headers={"Connection": "close"},
        )
        await response({"type": "http"}, _no_receive, send)


def _too_large(max_bytes: int) -> str:
    return f"the request body is larger than {max_bytes} bytes (CRYPTO_ML_API_MAX_BODY_BYTES)"


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse never reads the request
    return {"type": "http.disconnect"}


def _validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's error entries without ``input``/``ctx``/``url``: the field and the reason, nothing echoed back."""
    cleaned = []
    for error in errors:
        loc = [part if isinstance(part, (str, int)) else str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "invalid"))
        cleaned.append({"loc": loc, "msg": message, "type": str(error.get("type", "value_error"))})
    return cleaned


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(TooManyJobsError)
    async def too_many_jobs(request: Request, exc: TooManyJobsError) -> JSONResponse:
        retry_after = max(1, round(exc.retry_after))
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(retry_after)})

    @app.exception_handler(UnknownJobError)
    async def unknown_job(request: Request, exc: UnknownJobError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(LedgerError)
    async def database_down(request: Request, exc: LedgerError) -> JSONResponse:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(CryptoMLError)
    async def request_error(request: Request, exc: CryptoMLError) -> JSONResponse:
        # The package's own errors name the bad value and the fix: a request problem, said as such.
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        log.error("%s %s failed (error %s)", request.method, request.url.path, reference, exc_info=exc)
        return JSONResponse(
            {"detail": f"internal error {reference}; the server's log has the details"}, status_code=500
        )


def _setup_logging(settings: Settings) -> None:
    """Log crypto_ml's messages to stderr (or the log file) unless the CLI did (uvicorn's worker processes)."""
    logger = logging.getLogger("crypto_ml")
    if logger.handlers:
        return
    target = settings.log_file
    handler = logging.FileHandler(target, encoding="utf-8") if target else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False


def _dashboard_router() -> Any:
    """The dashboard's router, or None when this install has no dashboard module."""
    import importlib.util

    if importlib.util.find_spec(f"{__package__}.dashboard") is None:
        return None
    from . import dashboard

    return dashboard


def create_app(settings: Settings | None = None, *, start_runner: bool = True) -> FastAPI:
    """The API application.

    Args:
        settings: The settings; None reads them from the environment (``get_settings``).
        start_runner: Start this process's ``JobRunner`` in the lifespan; False serves requests only
            (jobs are then planned by another API process once their lease lapses).

    Returns:
        The FastAPI app; uvicorn runs it with ``factory=True`` (``crypto-ml serve``).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from ..ledger.database import open_ledger
        from .auth import AUTH_CACHE_SECONDS, KeyCache
        from .limits import RateLimiter

        ledger = open_ledger(
            settings.resolved_database_url(),
            pool_size=settings.api_db_pool_size,
            max_overflow=settings.api_db_max_overflow,
            pre_ping=API_PRE_PING,
        )
        app.state.ledger = ledger
        app.state.limiter = RateLimiter(settings.result_backend)
        app.state.key_cache = KeyCache(AUTH_CACHE_SECONDS)
        app.state.runner = None
        if start_runner:
            from .runner import JobRunner

            app.state.runner = JobRunner(ledger).start()
        log.info("API serving the ledger at %s", ledger.url)
        try:
            yield
        finally:
            if app.state.runner is not None:
                app.state.runner.stop()
            app.state.limiter.close()
            ledger.close()

    from . import health, routes

    app = FastAPI(
        title=API_TITLE,
        summary="Forecast jobs on crypto-ml's workers: submit, follow, fetch; the ledger's latest forecasts.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    _install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(health.router)
    dashboard = _dashboard_router()
    if dashboard is not None:
        app.include_router(dashboard.router)
        install = getattr(dashboard, "install", None)
        if callable(install):
            install(app)
    origins = [origin.strip() for origin in settings.api_cors_origins.split(",") if origin.strip()]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location", "Retry-After"],
        )
    # Added last: the outermost layer, so an oversized body is refused before anything reads it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    return app


def create_served_app() -> FastAPI:
    """``create_app()`` as ``crypto-ml serve`` runs it, in each uvicorn process: crypto_ml's own log messages
    configured first (level and file from the settings), as the CLI configures them.

    A separate factory so that building the app in a test or another program leaves that program's logging alone.
    """
    settings = get_settings()
    _setup_logging(settings)
    return create_app(settings)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crypto-ml")
    except PackageNotFoundError:
        return "0"
