"""Execution engines: where a batch of tasks runs.

An engine maps a plain, importable task function (see ``forecasting``) over a
list of JSON-safe payloads and yields ``(index, result)`` pairs as they
complete. A payload that cannot run as a whole (its process died, it timed
out) yields ``(index, exception)`` instead, so the caller can report the
coins it carried and keep every other result.

``local`` runs a process pool on this machine; ``celery`` sends the same
function to workers over the broker. Both give the same results for the same
inputs.

The package's imports run one way: ``base`` (the interface) <- ``local`` and
``celery`` (the engines) <- ``choice`` (``resolve_engine``), which imports the
celery engine only when it is asked for, so ``import crypto_ml`` stays light.
"""

from __future__ import annotations

from .base import Engine
from .choice import ENGINE_NAMES, resolve_engine
from .local import LocalEngine

__all__ = ["Engine", "LocalEngine", "resolve_engine", "ENGINE_NAMES"]
