"""The daily pipeline: fetch new candles, forecast, record in the ledger, score what matured.

* ``cycle``: :func:`run_cycle`, one cycle (``crypto-ml pipeline run``, the Celery task ``crypto_ml.pipeline_cycle``).
* ``replay``: :func:`replay`, the cycles over history, each day seeing only its past (``crypto-ml pipeline replay``).
* ``steps``: what both share: the checked request, the forecast-and-record step, the report.
* ``cli``: the ``crypto-ml pipeline`` commands.

Light to import: ``crypto-ml`` attaches the ``pipeline`` commands on every
start, so the ledger (SQLAlchemy) and the models load only when a pipeline runs.
"""

from __future__ import annotations

from .cycle import run_cycle
from .replay import replay
from .steps import PipelineReport

__all__ = ["run_cycle", "replay", "PipelineReport"]
