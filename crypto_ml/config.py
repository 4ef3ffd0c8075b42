"""Settings: one object, read once from ``CRYPTO_ML_*`` environment variables.

Precedence is CLI flag > environment > the default written here. Docker and
Kubernetes only ever set environment variables. Every default is defined once,
below, with the reason for it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .exceptions import InvalidParameterError

__all__ = ["Settings", "get_settings", "bundled_data_dir"]

ENGINE_NAMES = ("auto", "local", "celery")


def bundled_data_dir() -> Path:
    """Where the bundled sample dataset lives.

    An installed wheel carries it inside the package (``crypto_ml/sample_data``);
    a source checkout or editable install reads it from the repository's
    ``data/sample``, so there is only one copy in the tree.
    """
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "sample_data"
    if installed.is_dir():
        return installed
    return package_dir.parent / "data" / "sample"


class Settings(BaseSettings):
    """All of crypto_ml's settings. Each field is ``CRYPTO_ML_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CRYPTO_ML_", extra="ignore")

    # None means the bundled sample, so a fresh clone runs with nothing else.
    data_dir: Path | None = None
    # RabbitMQ's stock guest account only accepts connections from localhost,
    # so this default cannot leak into a deployment: compose and k8s set it from secrets.
    broker_url: str = "amqp://guest:guest@localhost:5672//"
    # Redis: results are small JSON documents read once; see README "Result backend".
    result_backend: str = "redis://localhost:6379/0"
    # auto: celery when a worker answers within probe_timeout, else local.
    engine: Literal["auto", "local", "celery"] = "auto"
    # Seconds `auto` waits for a worker to answer a ping before using local.
    probe_timeout: float = Field(default=1.0, gt=0)
    # Local engine processes; None means one per CPU core.
    workers: int | None = Field(default=None, ge=1)
    # Series per task; None sizes batches so every worker gets about four.
    batch_size: int | None = Field(default=None, ge=1)
    # How prices reach workers: inline in each task, or by reference to a
    # dataset the workers read themselves; auto: by reference only for celery
    # and datasets bigger than reference_threshold_mb, where JSON-encoding every
    # price would cost more than the forecasts.
    transfer: Literal["auto", "inline", "reference"] = "auto"
    reference_threshold_mb: float = Field(default=20.0, gt=0)
    # TensorFlow threads per process; None: 1 inside a worker pool process
    # (N processes already share N cores), TensorFlow's default elsewhere.
    tf_threads: int | None = Field(default=None, ge=1)
    # The model `forecast` and CryptoManager.send_tasks use when none is named: the one the
    # README's backtest supports (30 origins on the real dataset). Its 80 %/95 % intervals held
    # 77 %/95 % of the outcomes and scored about 5 % better than naive's empirical ones, significantly
    # across origins; no model's point forecast beat the random walk, and the seed's default,
    # linear, was the worst of all. `train` keeps the LSTM: the model worth storing.
    model: str = "ewma"
    # Where trained models are stored (directory); used by train / --from-store.
    model_store: Path = Path.home() / ".cache" / "crypto_ml" / "models"
    # A worker pool process is replaced after a task once its peak resident memory
    # passed this many MB; 0 never replaces it. Celery (billiard) compares the
    # *peak* (ru_maxrss on Linux), so a process that once read a dataset bigger
    # than this is replaced after every task and each task starts cold: raise it
    # for big datasets (the worker logs a warning when this happens).
    worker_max_memory_mb: int = Field(default=1500, ge=0)
    # Seconds to wait for one task's result before reporting its coins as timed out.
    task_timeout: float = Field(default=600.0, gt=0)
    # AMQP heartbeat, seconds: RabbitMQ drops a connection that sent nothing for about two of
    # these, and requeues its unacked tasks for other workers. Celery's default, 120 s (and
    # RabbitMQ's 60), kept a cut-off worker's tasks for ~3 minutes (measured: 172 s); 10 s
    # bounds it to ~30 s, for a heartbeat frame every 5 s per connection. 0 turns them off.
    broker_heartbeat: float = Field(default=10.0, ge=0)
    # Where workers keep datasets they were sent by reference, parsed once into memory-mappable
    # arrays keyed by the data's sha256: every other pool process (or worker on the same volume)
    # maps them instead of parsing the file again, so a new process starts warm (a 500 MB Parquet
    # file: seconds of parsing per process, versus milliseconds). Safe to delete at any time.
    cache_dir: Path = Path.home() / ".cache" / "crypto_ml" / "datasets"
    # Where `crypto-ml data fetch` keeps exchange candles (a price store folder).
    price_store: Path = Path.home() / ".cache" / "crypto_ml" / "prices"
    # Replaces the exchange's public REST origin (a mirror, a proxy, a local test server); None: the exchange's own.
    exchange_api_url: str | None = None
    # Seconds before one exchange request is abandoned and retried.
    fetch_timeout: float = Field(default=30.0, gt=0)
    # Tries per exchange request on timeouts, resets and 5xx pages, the first included.
    fetch_retries: int = Field(default=5, ge=1)
    # Seconds before the first retry; each retry doubles it, up to 30 s.
    fetch_backoff: float = Field(default=1.0, ge=0)
    # The longest Retry-After (429/418) a fetch waits out; a longer ban stops the fetch and says when to rerun.
    fetch_max_wait: float = Field(default=600.0, ge=0)
    # Library log level; logs go to stderr or log_file, never into the package.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_file: Path | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from .models.registry import resolve_name  # the registry table only: no model module is imported

        try:
            return resolve_name(value)
        except KeyError as exc:  # UnknownModelError; pydantic reports ValueErrors by field name
            raise ValueError(str(exc)) from None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def resolved_data_dir(self) -> Path:
        """The data path to read: ``data_dir`` if set, else the bundled sample."""
        return Path(os.path.expanduser(self.data_dir)) if self.data_dir else bundled_data_dir()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use.

    Raises:
        InvalidParameterError: a ``CRYPTO_ML_*`` variable holds a bad value; the
            message names the variable and what it accepts.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CRYPTO_ML_{'_'.join(str(part) for part in error['loc']).upper()}={error.get('input')!r}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidParameterError(f"bad setting in the environment: {problems}") from None
