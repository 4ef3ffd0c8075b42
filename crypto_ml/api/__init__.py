"""The HTTP API and its dashboard (``crypto-ml serve``).

* ``app``: ``create_app()``, the FastAPI application: lifespan, body-size limit, CORS, error handlers.
* ``routes``: the ``/v1`` router: forecast and backtest jobs, coins, models, the ledger's latest forecasts.
* ``health``: ``/healthz`` and ``/readyz``.
* ``auth``: the Bearer API-key dependency; ``limits``: per-key requests per minute.
* ``payloads``: request and response bodies, and the checks a request passes before it is queued.
* ``keys``: API keys and dashboard sessions, stored as hashes; ``schema``: the API's tables.
* ``jobs``: the job store; ``runner``: the thread that plans, sends, collects and resumes jobs;
  ``job_records``: what a finished task stores for each coin.
* ``dashboard``, ``fan_chart``, ``templates/``, ``static/``: the server-rendered dashboard.
* ``cli``: ``crypto-ml serve`` and ``crypto-ml apikey``.

Nothing here is imported by ``import crypto_ml``; FastAPI loads only when the app is
built (``create_app`` is loaded on first use), and ``crypto-ml apikey`` never loads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

#: Public name -> the module that defines it.
_EXPORTS = {"create_app": "app"}

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
