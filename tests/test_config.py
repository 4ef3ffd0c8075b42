"""Settings come from CRYPTO_ML_* variables, with documented defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from crypto_ml.config import Settings, bundled_data_dir, get_settings
from crypto_ml.exceptions import InvalidParameterError


def test_defaults():
    settings = Settings()
    assert settings.broker_url == "amqp://guest:guest@localhost:5672//"
    assert settings.result_backend == "redis://localhost:6379/0"
    assert settings.engine == "auto"
    assert settings.data_dir is None
    assert settings.resolved_data_dir() == bundled_data_dir()
    assert settings.model == "ewma"


def test_bundled_sample_is_there():
    assert len(list(bundled_data_dir().glob("*.csv"))) >= 5


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CRYPTO_ML_BROKER_URL", "amqp://u:p@rabbit:5672//")
    monkeypatch.setenv("CRYPTO_ML_RESULT_BACKEND", "redis://redis:6379/1")
    monkeypatch.setenv("CRYPTO_ML_ENGINE", "local")
    monkeypatch.setenv("CRYPTO_ML_MODEL_STORE", str(tmp_path / "models"))
    monkeypatch.setenv("CRYPTO_ML_BATCH_SIZE", "25")
    monkeypatch.setenv("CRYPTO_ML_LOG_LEVEL", "debug")
    monkeypatch.setenv("CRYPTO_ML_MODEL", "Deep_Predict")
    settings = get_settings()
    assert settings.model == "lstm"  # resolved like --model: any case, aliases
    assert settings.resolved_data_dir() == tmp_path
    assert settings.broker_url == "amqp://u:p@rabbit:5672//"
    assert settings.result_backend == "redis://redis:6379/1"
    assert settings.engine == "local"
    assert settings.model_store == Path(tmp_path / "models")
    assert settings.batch_size == 25
    assert settings.log_level == "DEBUG"


def test_settings_are_read_once(monkeypatch):
    first = get_settings()
    monkeypatch.setenv("CRYPTO_ML_ENGINE", "local")
    assert get_settings() is first


@pytest.mark.parametrize(
    "var, value",
    [
        ("CRYPTO_ML_ENGINE", "spark"),
        ("CRYPTO_ML_BATCH_SIZE", "0"),
        ("CRYPTO_ML_PROBE_TIMEOUT", "-1"),
        ("CRYPTO_ML_MODEL", "prophet"),
    ],
)
def test_bad_environment_values_are_rejected_by_name(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=var.removeprefix("CRYPTO_ML_").lower()):
        Settings()
    with pytest.raises(InvalidParameterError, match=f"bad setting in the environment: {var}='{value}'"):
        get_settings()
