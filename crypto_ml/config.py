"""Settings: one object, read once from ``CRYPTO_ML_*`` environment variables.

Precedence is CLI flag > environment > the default written here. Docker and
Kubernetes only ever set environment variables. Every default is defined once,
below, with the reason for it.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .exceptions import InvalidParameterError

__all__ = ["Settings", "get_settings", "bundled_data_dir"]

ENGINE_NAMES = ("auto", "local", "celery")
#: One cron field: numbers, names (mon, jan), ranges, lists and steps; the values are checked by Celery.
CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-]+")


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
    # dataset the workers read themselves; auto: by reference for datasets bigger
    # than reference_threshold_mb, where JSON-encoding every price for celery, or
    # reading every coin in the producer for the local engine's processes, would
    # cost more than the workers mapping the shared dataset cache (DataFrames in
    # memory stay inline on the local engine).
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
    # The forecast ledger's database (SQLAlchemy URL). None: a SQLite file, ledger.sqlite, beside the
    # model store, so a laptop needs no server; clusters point every process at one PostgreSQL,
    # postgresql+psycopg://user:password@host/db (the `postgres` extra installs the driver).
    database_url: str | None = None
    # Seconds a pipeline cycle's lock holds before another cycle may take it over: longer than any
    # cycle runs (a day's forecasts take minutes), short enough that a crashed cycle's lock does not
    # block the next day's (the schedule is daily).
    pipeline_lock_seconds: float = Field(default=3600.0, gt=0)
    # When `celery -A crypto_ml beat` starts the daily cycle: cron (minute hour day month weekday), UTC.
    # 00:30 UTC: exchanges close the daily candle at 00:00 UTC, and half an hour lets the last trades settle.
    pipeline_schedule: str = "30 0 * * *"
    # The cycle's models, comma-separated (naive is always added, the benchmark every score compares with):
    # `crypto-ml backtest`'s default set, built in (no extra to install), so a backtest with its defaults
    # checks the same models the ledger scores; ewma is the forecast default (calibrated intervals).
    pipeline_models: str = "naive,drift,ewma"
    # Days each cycle forecasts: `forecast`'s and `backtest`'s default horizon, so the numbers compare.
    pipeline_horizon: int = Field(default=10, ge=1)
    # Interval levels (percent) the cycle records and scores: the models' default 80 and 95.
    pipeline_levels: str = "80,95"
    # `crypto-ml ledger report` flags a model whose rolling coverage at a level leaves nominal ± this many
    # percentage points. 5: over a 30-day window of a few coins x 10 steps the sampling error of an 80 %
    # coverage is about 2 points, so a calibrated model stays inside, and a miss of 5 is the size the
    # README's backtest calls mis-calibrated (ewma's 80 % held 77 %, which is fine).
    ledger_coverage_band: float = Field(default=5.0, gt=0, lt=100)
    # ... and a model whose rolling MAE relative to naive (on the same forecasts) rises above this: no model
    # beats the random walk by much on daily crypto prices, so 10 % worse than naive is a model gone wrong,
    # not noise (the backtest's models sit within a few percent of naive).
    ledger_mae_threshold: float = Field(default=1.10, gt=0)
    # `crypto-ml serve` (crypto_ml.api). The largest request body accepted, in bytes: a forecast request is
    # a few hundred bytes, even one naming all 100 coins is under 4 KB; 64 KB leaves room for long lists
    # of coins and parameters, and refuses (413) anything that could only be a mistake or an attack.
    api_max_body_bytes: int = Field(default=65_536, ge=1_024)
    # Jobs one API key may have queued or running at once (429 past it); `apikey create --max-jobs` overrides it.
    api_max_concurrent_jobs: int = Field(default=4, ge=1)
    # Requests one API key may make a minute, every /v1 route counted (429 with Retry-After past it);
    # `apikey create --rpm` overrides it. 600: a dashboard polling every second, with room to spare.
    api_requests_per_minute: int = Field(default=600, ge=1)
    # Seconds an API process's claim on a job lasts without a heartbeat: when it dies, another process (or the
    # same one restarted) takes the job over after this, finds its tasks by id and collects what finished.
    api_job_lease_seconds: float = Field(default=15.0, gt=0)
    # The longest GET /v1/jobs/{id}?wait=... may hold a request, in seconds (behind a proxy, keep it under
    # the proxy's read timeout: nginx's default is 60 s).
    api_max_wait_seconds: float = Field(default=55.0, ge=0)
    # Origins allowed to call the API from a browser (comma-separated, CORS); empty: CORS is off, and
    # only the dashboard, served by the API itself, can call it from a browser.
    api_cors_origins: str = ""
    # PostgreSQL connections each API process keeps open, and how many more it may open at a peak (closed
    # when returned). FastAPI runs routes in 40 threads; connections opened and closed per request cost
    # PostgreSQL a backend process each (measured: 0.4-0.7 cores at 100 req/s), so a pool is kept. Every
    # API process of every replica may hold pool + overflow at once: keep processes x replicas x that
    # under PostgreSQL's max_connections (100 by default) with room for the workers and the pipeline.
    api_db_pool_size: int = Field(default=10, ge=1)
    api_db_max_overflow: int = Field(default=10, ge=0)
    # Hours a dashboard login lasts.
    api_session_hours: float = Field(default=12.0, gt=0)
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

    @field_validator("pipeline_schedule")
    @classmethod
    def _five_cron_fields(cls, value: str) -> str:
        # Only the shape here: celery_app parses each field (importing Celery in every process that reads
        # settings would cost every CLI command), and names this variable when a field is out of range.
        fields = value.split()
        if len(fields) != 5 or not all(CRON_FIELD.fullmatch(field) for field in fields):
            raise ValueError(
                "not a 5-field cron expression (minute hour day-of-month month day-of-week, UTC), e.g. '30 0 * * *'"
            )
        return " ".join(fields)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def resolved_data_dir(self) -> Path:
        """The data path to read: ``data_dir`` if set, else the bundled sample."""
        return Path(os.path.expanduser(self.data_dir)) if self.data_dir else bundled_data_dir()

    def resolved_database_url(self) -> str:
        """The ledger's database URL: ``database_url`` if set, else a SQLite file beside the model store."""
        if self.database_url:
            return self.database_url
        store = Path(os.path.expanduser(self.model_store))
        return f"sqlite:///{store.parent / 'ledger.sqlite'}"


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
