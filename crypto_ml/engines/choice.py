"""Choosing an engine: ``local``, ``celery``, or ``auto`` (celery when a worker answers, else local)."""

from __future__ import annotations

from ..exceptions import EngineError, InvalidParameterError
from .base import Engine, redact
from .local import LocalEngine

__all__ = ["ENGINE_NAMES", "resolve_engine"]

ENGINE_NAMES = ("auto", "local", "celery")


def resolve_engine(name: str | Engine | None = None, *, workers: int | None = None) -> Engine:
    """Turn an engine name (or None for the configured one) into an engine.

    ``auto`` uses ``celery`` when a worker answers on the configured broker
    within ``probe_timeout`` seconds, and ``local`` otherwise; the returned
    engine's ``reason`` says which and why. ``celery`` never falls back.

    Raises:
        InvalidParameterError: an unknown engine name.
        EngineError: ``celery`` was asked for and no worker answers.
    """
    if isinstance(name, Engine):
        return name
    from ..config import get_settings

    settings = get_settings()
    choice = (name or settings.engine).strip().lower()
    if choice not in ENGINE_NAMES:
        raise InvalidParameterError(f"unknown engine {name!r}; valid engines are: {', '.join(ENGINE_NAMES)}")
    if choice == "local":
        engine: Engine = LocalEngine(workers or settings.workers)
        engine.reason = "local engine requested"
        return engine
    try:
        from .celery import CeleryEngine, ping_workers
    except ImportError as exc:
        if choice == "celery":
            raise EngineError(f"the celery engine is not available: {exc}; install crypto-ml with celery") from exc
        engine = LocalEngine(workers or settings.workers)
        engine.reason = f"auto: celery engine unavailable ({exc}); using local"
        return engine
    answering = ping_workers(timeout=settings.probe_timeout)
    if choice == "celery":
        if not answering:
            raise EngineError(
                f"no celery worker answered on {redact(settings.broker_url)} within {settings.probe_timeout:g}s; "
                "start one with `celery -A crypto_ml worker` or use --engine local"
            )
        engine = CeleryEngine(workers=sum(answering.values()))
        engine.reason = f"celery engine requested; {len(answering)} worker(s) answering"
        return engine
    if answering:
        engine = CeleryEngine(workers=sum(answering.values()))
        engine.reason = f"auto: {len(answering)} celery worker(s) answered on {redact(settings.broker_url)}"
        return engine
    engine = LocalEngine(workers or settings.workers)
    engine.reason = (
        f"auto: no celery worker answered on {redact(settings.broker_url)} within {settings.probe_timeout:g}s; "
        f"using local engine with {engine.workers} process(es)"
    )
    return engine
