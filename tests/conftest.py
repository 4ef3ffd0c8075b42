"""Shared fixtures: isolated settings, generated datasets, the real dataset, live services."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from crypto_ml.config import Settings, get_settings

REAL_DATA_DIR = Path(
    os.environ.get("CRYPTO_ML_REAL_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "top100-2017"
)
#: Set by .ci/run: a missing service or dataset fails the test instead of skipping it.
REQUIRE_SERVICES = os.environ.get("CRYPTO_ML_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip on a user's machine; fail in CI, where the service must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CRYPTO_ML_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch):
    """Every test starts from the documented defaults, whatever the developer's shell exports."""
    for field in Settings.model_fields:
        monkeypatch.delenv(f"CRYPTO_ML_{field.upper()}", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DATA_DIR / "Bitcoin.csv").is_file():
        skip_or_fail(f"the real top-100 dataset is not at {REAL_DATA_DIR}; set CRYPTO_ML_REAL_DATA to its folder")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Twelve generated coins in CoinMarketCap format (read-only for tests)."""
    from crypto_ml.synthetic import generate_dataset

    return generate_dataset(12, tmp_path_factory.mktemp("synth") / "coins", seed=7, min_points=60, max_points=400)
