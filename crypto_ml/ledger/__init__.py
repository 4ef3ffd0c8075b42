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

Importing this package imports SQLAlchemy; ``import crypto_ml`` never does.
"""

from __future__ import annotations

from .database import Ledger, open_ledger, table_counts
from .lock import HeldLock, cycle_lock
from .recording import RecordCounts, finish_run, params_hash, record_forecasts, start_run
from .scoring import ScoreCounts, score_matured

__all__ = [
    "open_ledger",
    "Ledger",
    "start_run",
    "finish_run",
    "record_forecasts",
    "RecordCounts",
    "params_hash",
    "score_matured",
    "ScoreCounts",
    "cycle_lock",
    "HeldLock",
    "table_counts",
]
