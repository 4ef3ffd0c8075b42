"""Forecasting models, registered by name: ``get_model("linear").fit(y).predict(10)``."""

from .base import Forecaster
from .registry import ALIASES, MODEL_REGISTRY, available_models, get_model, get_model_class, resolve_name

__all__ = [
    "Forecaster",
    "MODEL_REGISTRY",
    "ALIASES",
    "available_models",
    "get_model",
    "get_model_class",
    "resolve_name",
]
