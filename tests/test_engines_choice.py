"""Choosing an engine: local on request, celery only when a worker answers, and why in every case."""

from __future__ import annotations

import pytest

# The Celery app reads the broker URL once, at import: import it here, under the real settings, so
# the closed broker these tests set never becomes the app's default for the tests that follow.
import crypto_ml.celery_app  # noqa: F401
from crypto_ml.engines import LocalEngine, resolve_engine
from crypto_ml.exceptions import EngineError, InvalidParameterError

CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens on port 1


def test_resolve_local_says_why():
    engine = resolve_engine("local", workers=3)
    assert isinstance(engine, LocalEngine) and engine.workers == 3
    assert engine.reason == "local engine requested"


def test_resolve_unknown_engine_lists_valid_ones():
    with pytest.raises(InvalidParameterError, match="unknown engine 'spark'; valid engines are: auto, local, celery"):
        resolve_engine("spark")


def test_auto_falls_back_to_local_and_says_why(monkeypatch):
    monkeypatch.setenv("CRYPTO_ML_BROKER_URL", CLOSED_BROKER)
    engine = resolve_engine("auto")
    assert engine.name == "local"
    assert "no celery worker answered on amqp://guest:**@127.0.0.1:1//" in engine.reason


def test_celery_never_falls_back(monkeypatch):
    monkeypatch.setenv("CRYPTO_ML_BROKER_URL", CLOSED_BROKER)
    with pytest.raises(EngineError, match=r"no celery worker answered .* start one with `celery -A crypto_ml worker`"):
        resolve_engine("celery")


def test_engine_instance_passes_through():
    engine = LocalEngine(workers=1)
    assert resolve_engine(engine) is engine
