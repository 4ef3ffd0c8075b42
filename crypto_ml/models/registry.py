"""The one table of forecasting models, by name.

Entries are ``"module:Class"`` strings imported on first use, so that listing
or dispatching models never imports scikit-learn, let alone TensorFlow,
statsforecast or arch, in the producer. A model module imports its heavy
library inside ``fit``, never at the top.

Any model can be wrapped in the conformal calibration layer by appending
``+conformal`` to its name: ``linear+conformal`` is ``linear``'s point
forecast with intervals calibrated on its own rolling-origin errors
(``models.conformal``). Parameters given for such a name go to the base model,
except the calibration layer's own.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from typing import Any

from ..exceptions import InvalidParameterError, MissingDependencyError, UnknownModelError
from .base import Forecaster

__all__ = [
    "MODEL_REGISTRY",
    "ALIASES",
    "HEAVY_MODELS",
    "CONFORMAL_SUFFIX",
    "available_models",
    "get_model_class",
    "get_model",
    "resolve_name",
    "is_heavy",
    "base_name",
    "check_installed",
    "missing_extra",
]

MODEL_REGISTRY: dict[str, str] = {
    "naive": "crypto_ml.models.baseline:NaiveModel",
    "drift": "crypto_ml.models.baseline:DriftModel",
    "linear": "crypto_ml.models.linear:LinearModel",
    "svr_linear": "crypto_ml.models.svr:LinearSVRModel",
    "svr_rbf": "crypto_ml.models.svr:RbfSVRModel",
    "svr_poly": "crypto_ml.models.svr:PolySVRModel",
    "lstm": "crypto_ml.models.lstm:LSTMModel",
    "ewma": "crypto_ml.models.volatility:EWMAModel",
    "garch": "crypto_ml.models.garch:GARCHModel",
    "ets": "crypto_ml.models.statistical:ETSModel",
    "theta": "crypto_ml.models.statistical:ThetaModel",
    "arima": "crypto_ml.models.statistical:ARIMAModel",
}

#: Appended to any registered name, wraps that model in the conformal calibration layer.
CONFORMAL_SUFFIX = "+conformal"
_CONFORMAL_CLASS = "crypto_ml.models.conformal:ConformalModel"

# Models that hold a deep-learning framework: routed to the heavy queue.
HEAVY_MODELS: frozenset[str] = frozenset({"lstm"})

# Other names users may know a model by; they resolve to a registry name.
ALIASES: dict[str, str] = {"deep_predict": "lstm"}  # the seed's name for its LSTM


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODEL_REGISTRY)


def base_name(name: str) -> str:
    """The registered model under a name: ``"lstm+conformal"`` -> ``"lstm"``, ``"linear"`` -> ``"linear"``."""
    key = resolve_name(name)
    return key[: -len(CONFORMAL_SUFFIX)] if key.endswith(CONFORMAL_SUFFIX) else key


def is_heavy(name: str) -> bool:
    """Whether the model (or the model a calibration layer wraps) holds a deep-learning framework.

    Never raises: routing a payload is no place to reject a name (the producer already did).
    """
    key = str(name).strip().lower().removesuffix(CONFORMAL_SUFFIX)
    return ALIASES.get(key, key) in HEAVY_MODELS


def resolve_name(name: str) -> str:
    """The registry name for ``name`` or one of its aliases; ``<name>+conformal`` for a calibrated model.

    Raises:
        UnknownModelError: the name is not registered; the message lists the valid names.
    """
    key = str(name).strip().lower()
    if key.endswith(CONFORMAL_SUFFIX) and key != CONFORMAL_SUFFIX:
        return resolve_name(key[: -len(CONFORMAL_SUFFIX)].strip()) + CONFORMAL_SUFFIX
    key = ALIASES.get(key, key)
    if key not in MODEL_REGISTRY:
        close = difflib.get_close_matches(key, list(MODEL_REGISTRY) + list(ALIASES), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}; valid models are: {', '.join(available_models())}, and any of them "
            f"with {CONFORMAL_SUFFIX} for calibrated intervals (e.g. linear{CONFORMAL_SUFFIX}).{hint}"
        )
    return key


def _import(entry: str) -> type[Forecaster]:
    module_name, _, class_name = entry.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_model_class(name: str) -> type[Forecaster]:
    """Import and return the class registered under ``name`` (``ConformalModel`` for a ``+conformal`` name)."""
    key = resolve_name(name)
    if key.endswith(CONFORMAL_SUFFIX):
        return _import(_CONFORMAL_CLASS)
    return _import(MODEL_REGISTRY[key])


def missing_extra(name: str) -> str | None:
    """The pip extra ``name`` needs and this install lacks, or None when it can run here."""
    cls = get_model_class(base_name(name))
    missing = [module for module in cls.requires if importlib.util.find_spec(module) is None]
    return (cls.extra or "?") if missing else None


def check_installed(name: str) -> None:
    """Refuse, before any work, a model whose optional dependency is not installed in this process.

    Raises:
        MissingDependencyError: the message names the extra and the pip command that installs it.
    """
    extra = missing_extra(name)
    if extra is not None:
        cls = get_model_class(base_name(name))
        raise MissingDependencyError(
            f"model {resolve_name(name)!r} needs {', '.join(cls.requires)}, which this install lacks; "
            f"install the '{extra}' extra: pip install 'crypto-ml[{extra}]'"
        )


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
    key = resolve_name(name)
    if key.endswith(CONFORMAL_SUFFIX):
        from .conformal import ConformalModel

        return ConformalModel.wrapping(base_name(key), **params)
    cls = get_model_class(key)
    valid = cls.param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        accepted = ", ".join(valid) if valid else "no parameters"
        raise InvalidParameterError(f"model {cls.name!r} does not accept {', '.join(unknown)}; it accepts: {accepted}")
    return cls(**params)
