"""crypto_ml: horizontally scalable cryptocurrency price forecasting.

``import crypto_ml`` stays light: the loader, manager, models and the Celery
app are imported on first access, so the command line and the producer never
pay for TensorFlow or Celery unless they use them. ``celery -A crypto_ml``
finds the app through the lazy ``app`` attribute.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["CryptoLoader", "CryptoManager", "get_model", "available_models", "app", "__version__"]

_LAZY = {
    "CryptoLoader": "crypto_ml.data",
    "CryptoManager": "crypto_ml.manager",
    "get_model": "crypto_ml.models",
    "available_models": "crypto_ml.models",
    "app": "crypto_ml.celery_app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crypto_ml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
