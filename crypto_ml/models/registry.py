"""The one table of forecasting models, by name.

Entries are ``"module:Class"`` strings imported on first use, so that listing
or dispatching models never imports scikit-learn, let alone TensorFlow, in the
producer. Deep models (issue: LSTM) register here the same way.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from ..exceptions import InvalidParameterError, UnknownModelError
from .base import Forecaster

__all__ = ["MODEL_REGISTRY", "ALIASES", "HEAVY_MODELS", "available_models", "get_model_class", "get_model", "resolve_name"]

MODEL_REGISTRY: dict[str, str] = {
    "naive": "crypto_ml.models.baseline:NaiveModel",
    "drift": "crypto_ml.models.baseline:DriftModel",
    "linear": "crypto_ml.models.linear:LinearModel",
    "svr_linear": "crypto_ml.models.svr:LinearSVRModel",
    "svr_rbf": "crypto_ml.models.svr:RbfSVRModel",
    "svr_poly": "crypto_ml.models.svr:PolySVRModel",
    "lstm": "crypto_ml.models.lstm:LSTMModel",
}

# Models that hold a deep-learning framework: routed to the heavy queue.
HEAVY_MODELS: frozenset[str] = frozenset({"lstm"})

# Other names users may know a model by; they resolve to a registry name.
ALIASES: dict[str, str] = {"deep_predict": "lstm"}  # the seed's name for its LSTM


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODEL_REGISTRY)


def resolve_name(name: str) -> str:
    """The registry name for ``name`` or one of its aliases.

    Raises:
        UnknownModelError: the name is not registered; the message lists the valid names.
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODEL_REGISTRY:
        close = difflib.get_close_matches(key, list(MODEL_REGISTRY) + list(ALIASES), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}; valid models are: {', '.join(available_models())}.{hint}"
        )
    return key


def get_model_class(name: str) -> type[Forecaster]:
    """Import and return the class registered under ``name``."""
    module_name, _, class_name = MODEL_REGISTRY[resolve_name(name)].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_model(name: str, **params: Any) -> Forecaster:
    """Build a model by name.

    Args:
        name: A registered model name (see ``available_models()``).
        **params: Keyword arguments for the model's constructor.

    Returns:
        An unfitted model.

    Raises:
        UnknownModelError: ``name`` is not registered.
        InvalidParameterError: a parameter the model does not accept.
    """
    cls = get_model_class(name)
    valid = cls.param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        accepted = ", ".join(valid) if valid else "no parameters"
        raise InvalidParameterError(f"model {cls.name!r} does not accept {', '.join(unknown)}; it accepts: {accepted}")
    return cls(**params)
