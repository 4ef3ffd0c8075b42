"""What a daily cycle and a replay share: the checked request, the forecast-and-record step, the report.

A cycle and a replay day do the same thing with different data: forecast every
coin with every model through ``CryptoManager.send_tasks`` (on the configured
engine), record the ``ok`` forecasts in the ledger, and keep every failure
with its reason. Writes are idempotent (the ledger's unique keys), so a step
repeated after an interruption adds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import get_settings

if TYPE_CHECKING:
    from ..ledger import Ledger
    from ..manager import CryptoManager

__all__ = [
    "PipelinePlan",
    "PipelineReport",
    "Failure",
    "plan_pipeline",
    "forecast_and_record",
    "data_path",
    "finishing_run",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelinePlan:
    """A checked request: what every day of a cycle or replay forecasts.

    Attributes:
        models: Resolved model names, ``naive`` first (the benchmark every score compares with).
        horizon: Days each forecast covers.
        levels: Interval levels in percent, ascending.
        params: The parameters given per model (what the tasks receive).
        model_params: Every model's full parameters, defaults included: what the ledger's
            ``params_hash`` is taken of, so a changed default is a different forecast, never a clash.
        coins: Coin names, or None for every coin of the data.
    """

    models: list[str]
    horizon: int
    levels: tuple[int | float, ...]
    params: dict[str, dict[str, Any]]
    model_params: dict[str, dict[str, Any]]
    coins: list[str] | None = None

    def parameters(self, **extra: Any) -> dict[str, Any]:
        """The run's ``parameters`` column: the plan, JSON-safe, plus ``extra``."""
        return {
            "models": self.models,
            "horizon": self.horizon,
            "levels": list(self.levels),
            "params": self.model_params,
            "coins": self.coins,
            **extra,
        }


def plan_pipeline(
    models: str | Sequence[str] | None = None,
    horizon: int | None = None,
    levels: Any = None,
    params: dict[str, dict[str, Any]] | None = None,
    coins: Sequence[str] | None = None,
) -> PipelinePlan:
    """Check a request before anything runs; None takes the ``CRYPTO_ML_PIPELINE_*`` setting.

    Args:
        models: Model names (or one comma-separated string); ``naive`` is added when missing.
        horizon: Days ahead, >= 1.
        levels: Interval levels in percent (a sequence or ``"80,95"``).
        params: ``{model: {parameter: value}}``.
        coins: Coin names; None means every coin.

    Raises:
        UnknownModelError: a model is not registered.
        InvalidParameterError: a bad horizon or level, or a parameter a model does not take.
    """
    from ..evaluation.backtest import validate_request
    from ..models import get_model
    from ..models.base import validate_levels

    settings = get_settings()
    names, horizon, _, _, resolved = validate_request(
        models if models is not None else settings.pipeline_models,
        horizon if horizon is not None else settings.pipeline_horizon,
        1,
        None,
        params,
    )
    checked_levels = validate_levels(levels if levels is not None else settings.pipeline_levels)
    model_params = {name: get_model(name, **resolved.get(name, {})).get_params() for name in names}
    return PipelinePlan(
        models=names,
        horizon=horizon,
        levels=checked_levels,
        params=resolved,
        model_params=model_params,
        coins=list(coins) if coins is not None else None,
    )


@dataclass
class Failure:
    """Something that did not happen for one coin (or exchange): the step, the reason, and for a replay the days."""

    stage: str  # "fetch", "forecast" or "score"
    coin: str
    model: str | None
    error_type: str
    error: str
    days: list[str] = field(default_factory=list)


@dataclass
class PipelineReport:
    """What one cycle or replay did; ``to_dict`` is the run's ``summary`` and the Celery task's result."""

    kind: str
    run_id: int | None = None
    data: str = ""
    database: str = ""
    models: list[str] = field(default_factory=list)
    horizon: int = 0
    levels: list[int | float] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    coins: list[str] = field(default_factory=list)
    forecasts_inserted: int = 0
    forecasts_existing: int = 0
    scored: int = 0
    waiting: int = 0
    missing_actual: int = 0
    fetched_rows: int | None = None
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "running"

    def __post_init__(self) -> None:
        # Not a field: asdict (the run's JSON summary) leaves it out. (stage, coin, model, error type) -> entry.
        self._failure_index: dict[tuple[str, str, str | None, str], Failure] = {
            (f.stage, f.coin, f.model, f.error_type): f for f in self.failures
        }

    @property
    def failed_coins(self) -> list[str]:
        """Coins with at least one failure, in first-seen order."""
        return list(dict.fromkeys(failure.coin for failure in self.failures))

    def add_failure(
        self, stage: str, coin: str, model: str | None, error_type: str, error: str, day: str | None = None
    ) -> None:
        """Record a failure; the same kind of failure on several days of a replay is one entry listing the days.

        Entries are matched by stage, coin, model and error type, not by message: a young coin's
        "needs 20 points, the series has 7" grows by a point a day. The entry keeps the latest message.
        """
        key = (stage, coin, model, error_type)
        failure = self._failure_index.get(key)
        if failure is None:
            failure = self._failure_index[key] = Failure(stage, coin, model, error_type, error)
            self.failures.append(failure)
        failure.error = error
        if day is not None:
            failure.days.append(day)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: lists, numbers and strings only."""
        document = asdict(self)
        document["failed_coins"] = self.failed_coins
        return document


def data_path(data: str | Path | None) -> Path:
    """The dataset a cycle reads: ``data``, else ``CRYPTO_ML_DATA_DIR``, else the price store once
    ``crypto-ml data fetch`` has filled it, else the bundled sample."""
    from ..data.store import is_price_store

    settings = get_settings()
    if data is not None:
        return Path(data).expanduser()
    if settings.data_dir is not None:
        return settings.resolved_data_dir()
    store = Path(settings.price_store).expanduser()
    if is_price_store(store):
        return store
    return settings.resolved_data_dir()


def forecast_and_record(
    manager: CryptoManager,
    ledger: Ledger,
    run_id: int,
    plan: PipelinePlan,
    report: PipelineReport,
    day: str | None = None,
) -> None:
    """Forecast every coin with each model on the manager's data and record the forecasts in the ledger.

    Each model's forecasts are written as soon as they are back, so an interruption
    loses at most the model in flight, and a rerun writes only what is missing.
    Failed coins go into ``report.failures`` with their reasons.
    """
    from ..ledger import record_forecasts

    for model in plan.models:
        run = manager.send_tasks(
            model,
            plan.coins,
            plan.horizon,
            plan.params.get(model),
            levels=plan.levels,
            verbose=False,
            progress=False,
        )
        counts = record_forecasts(ledger, run_id, [result.to_record() for result in run], plan.model_params)
        report.forecasts_inserted += counts.inserted
        report.forecasts_existing += counts.existing
        for result in run:
            if result.coin not in report.coins:
                report.coins.append(result.coin)
            if not result.ok:
                report.add_failure(
                    "forecast", result.coin, model, result.error_type or "Error", result.error or "", day=day
                )
            elif result.last_date and result.last_date not in report.days and day is None:
                report.days.append(result.last_date)
        log.info(
            "%s: %d of %d coins forecast, %d forecast rows new, %d already recorded",
            model,
            len(run.ok),
            len(run),
            counts.inserted,
            counts.existing,
        )


@contextlib.contextmanager
def finishing_run(ledger: Any, run_id: int, report: PipelineReport, started: float) -> Iterator[None]:
    """Mark the run "ok" with the report as its summary when the block ends, or "failed" when it raises.

    Marking a failure is best effort: the database may be what failed, and the
    block's own error is the one raised. ``started`` is the ``time.perf_counter()``
    the report's seconds count from.
    """
    from ..ledger import finish_run

    try:
        yield
    except BaseException as exc:
        report.status = "failed"
        report.seconds = round(time.perf_counter() - started, 3)
        try:
            finish_run(ledger, run_id, "failed", {**report.to_dict(), "error": f"{type(exc).__name__}: {exc}"})
        except Exception as marking:  # noqa: BLE001 - best effort; one line, the CLI prints no tracebacks
            log.warning("could not mark run %s as failed (%s: %s)", run_id, type(marking).__name__, marking)
        raise
    report.status = "ok"
    report.seconds = round(time.perf_counter() - started, 3)
    finish_run(ledger, run_id, "ok", report.to_dict())
