"""The forecast ledger: every forecast the pipeline issues, and how it scored, in a real database.

* ``database``: ``open_ledger`` (SQLite beside the model store by default,
  PostgreSQL for clusters), schema upgrades through Alembic migrations.
* ``schema``: the tables (runs, forecasts, forecast_intervals, scores,
  interval_scores, locks).
* ``recording``: runs, and forecast records written in batches, idempotently:
  the same forecast recorded twice is one row.
* ``scoring``: scores every forecast whose target date has an actual price,
  step by step, with the backtest's own per-step metrics.
* ``lock``: a lock with an expiry in the database, so one pipeline cycle runs at a time.
* ``latest``: the newest forecast of a coin and model, with its actuals once scored (``GET /v1/forecasts/latest``).
* ``report``: rolling per-model accuracy, coverage and drift alerts; ``prometheus``: the same as metrics.
* ``cli``: ``crypto-ml ledger report`` and ``serve-metrics``.

The names below are loaded on first use: the CLI imports ``crypto_ml.ledger.cli``
at every start, and SQLAlchemy (half a second) should load only for a command
that opens the ledger. ``import crypto_ml`` never imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database import Ledger, open_ledger, table_counts
    from .latest import latest_forecast
    from .lock import HeldLock, cycle_lock
    from .recording import RecordCounts, finish_run, params_hash, record_forecasts, start_run
    from .report import DriftAlert, LedgerReport, ledger_report
    from .scoring import ScoreCounts, score_matured

#: Public name -> the module that defines it.
_EXPORTS = {
    "open_ledger": "database",
    "Ledger": "database",
    "table_counts": "database",
    "start_run": "recording",
    "finish_run": "recording",
    "record_forecasts": "recording",
    "RecordCounts": "recording",
    "params_hash": "recording",
    "score_matured": "scoring",
    "ScoreCounts": "scoring",
    "cycle_lock": "lock",
    "HeldLock": "lock",
    "ledger_report": "report",
    "LedgerReport": "report",
    "DriftAlert": "report",
    "latest_forecast": "latest",
}

__all__ = [
    "open_ledger",
    "Ledger",
    "table_counts",
    "start_run",
    "finish_run",
    "record_forecasts",
    "RecordCounts",
    "params_hash",
    "score_matured",
    "ScoreCounts",
    "cycle_lock",
    "HeldLock",
    "ledger_report",
    "LedgerReport",
    "DriftAlert",
    "latest_forecast",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
