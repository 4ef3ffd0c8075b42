"""Replay the daily cycle over history: each day forecasts, records and scores with only the prices up to it.

On day D every coin is forecast from its prices up to and including D (origin
D, targets D+1 ... D+h), exactly what a backtest whose cutoff falls on D fits
on (``prices[:cutoff]``), so the ledger's forecasts equal ``crypto-ml
backtest``'s for the same origins, and its scores, averaged over an origin's
steps, equal the backtest window's metrics: both come from
``crypto_ml.evaluation.metrics``. Scoring on day D sees prices up to D only,
as the live cycle would have.

A replay takes no cycle lock: every write is idempotent, so a replay beside a
cycle (or a second replay) can only find rows already there. Interrupted, it
is simply run again; the days already done add nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..exceptions import InvalidParameterError
from .steps import PipelineReport, data_path, finishing_run, forecast_and_record, plan_pipeline

__all__ = ["replay", "replay_days"]

log = logging.getLogger(__name__)


def replay_days(from_date: str | date, to_date: str | date) -> list[date]:
    """Every day from ``from_date`` to ``to_date``, both included.

    Raises:
        InvalidParameterError: a date that is not ISO (YYYY-MM-DD), or ``from_date`` after ``to_date``.
    """
    first, last = _day(from_date, "--from"), _day(to_date, "--to")
    if first > last:
        raise InvalidParameterError(f"--from {first} is after --to {last}; give the earlier day first")
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _day(value: str | date, option: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidParameterError(f"{option} {value!r} is not a date; use YYYY-MM-DD, such as 2018-01-31") from None


def replay(
    data: str | Path | None,
    from_date: str | date,
    to_date: str | date,
    models: str | Sequence[str] | None = None,
    horizon: int | None = None,
    levels: Any = None,
    engine: str | None = None,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    coins: Sequence[str] | None = None,
    database_url: str | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    on_day: Callable[[date, int, int], None] | None = None,
) -> PipelineReport:
    """Simulate the daily cycles from ``from_date`` to ``to_date`` into the ledger.

    Args:
        data: The dataset; None: ``CRYPTO_ML_DATA_DIR`` (or the price store, or the bundled sample).
        from_date, to_date: The first and last origin day (ISO dates or ``date``), both included.
        models, horizon, levels, params, coins, engine, workers, batch_size: As for ``run_cycle``;
            None takes the ``CRYPTO_ML_PIPELINE_*`` settings.
        database_url: The ledger; None: ``CRYPTO_ML_DATABASE_URL`` or the SQLite file beside the model store.
        on_day: Called after each day with ``(day, days done, days in all)``, for a progress bar.

    Returns:
        The report. A coin with no prices by a day, or too few for a model, fails on that
        day; each such failure is one entry listing its days.

    Raises:
        UnknownModelError, InvalidParameterError: a bad request (nothing ran).
        LedgerError: the ledger's database cannot be used.
        DataFormatError: the data cannot be read at all.
    """
    from ..data import CryptoLoader
    from ..ledger import open_ledger, score_matured, start_run
    from ..manager import CryptoManager

    clock = time.perf_counter()
    days = replay_days(from_date, to_date)
    plan = plan_pipeline(models, horizon, levels, params, coins)
    path = data_path(data)
    loader = CryptoLoader(path)
    report = PipelineReport(
        kind="replay",
        data=str(path),
        models=plan.models,
        horizon=plan.horizon,
        levels=list(plan.levels),
        days=[day.isoformat() for day in days],
    )
    with open_ledger(database_url) as ledger:
        report.database = ledger.url
        parameters = plan.parameters(data=str(path), engine=engine, from_date=str(days[0]), to_date=str(days[-1]))
        run_id = start_run(ledger, "replay", parameters, data_hash=loader.data_hash())
        report.run_id = run_id
        with (
            finishing_run(ledger, run_id, report, clock),
            CryptoManager(loader, engine=engine, workers=workers, batch_size=batch_size) as manager,
        ):
            for done, day in enumerate(days, start=1):
                # The day as the live cycle saw it: no price after it, to forecast or to score.
                seen = loader.until(day)
                manager.use_data(seen)
                forecast_and_record(manager, ledger, run_id, plan, report, day=day.isoformat())
                scores = score_matured(ledger, seen, as_of=day)
                report.scored += scores.scored
                report.waiting, report.missing_actual = scores.waiting, scores.missing_actual
                if on_day is not None:
                    on_day(day, done, len(days))
    log.info(
        "replay %s..%s: %d forecast rows new, %d already recorded, %d scored in %.1f s",
        days[0],
        days[-1],
        report.forecasts_inserted,
        report.forecasts_existing,
        report.scored,
        report.seconds,
    )
    return report
