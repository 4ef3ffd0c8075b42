"""One daily cycle: fetch new candles, forecast every coin with every model, record, score.

``crypto-ml pipeline run`` and the Celery task ``crypto_ml.pipeline_cycle``
(started daily by ``celery -A crypto_ml beat``) both call :func:`run_cycle`.

Every step can be repeated: the price store's fetch adds only what is new,
the ledger's unique key (coin, model, params hash, origin date, step) makes a
forecast recorded twice one row, and scoring fills in only what has no score.
So a cycle interrupted at any point (a killed worker, a lost database) and run
again completes without duplicates. The cycle lock in the ledger keeps two
cycles over the same data from running at once (two beats by mistake, a manual
run during a scheduled one): the second raises ``PipelineBusyError``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import get_settings
from ..exceptions import CryptoMLError, InvalidParameterError
from .steps import PipelineReport, data_path, finishing_run, forecast_and_record, plan_pipeline

__all__ = ["run_cycle", "lock_name"]

log = logging.getLogger(__name__)


#: The ledger's locks.name column holds this many characters.
_LOCK_NAME_CHARS = 200


def lock_name(path: Path) -> str:
    """The cycle lock's name for a dataset: one cycle at a time per data, whatever the ledger holds.

    The path itself, readable in the table; a path too long for the column is named by its hash.
    """
    name = f"pipeline:{path.resolve()}"
    if len(name) <= _LOCK_NAME_CHARS:
        return name
    return f"pipeline:sha256:{hashlib.sha256(str(path.resolve()).encode()).hexdigest()}"


def run_cycle(
    data: str | Path | None = None,
    *,
    models: str | Sequence[str] | None = None,
    horizon: int | None = None,
    levels: Any = None,
    params: dict[str, dict[str, Any]] | None = None,
    coins: Sequence[str] | None = None,
    engine: str | None = None,
    database_url: str | None = None,
    fetch: bool | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    holder: str | None = None,
) -> PipelineReport:
    """Run one cycle: fetch (for a price store), forecast, record, score; each step idempotent.

    Args:
        data: The dataset; None: ``CRYPTO_ML_DATA_DIR``, else the price store once fetched
            into (``CRYPTO_ML_PRICE_STORE``), else the bundled sample.
        models: Model names (comma-separated or a sequence); None: ``CRYPTO_ML_PIPELINE_MODELS``.
            ``naive`` is always added, as backtests do.
        horizon: Days ahead; None: ``CRYPTO_ML_PIPELINE_HORIZON``.
        levels: Interval levels in percent; None: ``CRYPTO_ML_PIPELINE_LEVELS``.
        params: ``{model: {parameter: value}}``.
        coins: Coin names; None: every coin.
        engine: ``auto``, ``local`` or ``celery``; None: ``CRYPTO_ML_ENGINE``.
        database_url: The ledger; None: ``CRYPTO_ML_DATABASE_URL`` or the SQLite file beside the model store.
        fetch: Fetch new candles first; None fetches exactly when the data is a price store
            (a plain dataset has nothing to fetch into); True with a plain dataset is an error.
        workers, batch_size: As for ``CryptoManager``.
        holder: Who holds the cycle lock, for the message another cycle gets; None: host and process.

    Returns:
        The report: run id, coins, forecasts recorded (new and already there), scores, failures.
        Coins that failed are in ``failures`` with the step and the reason; the cycle goes on without them.

    Raises:
        PipelineBusyError: another cycle over the same data holds the lock.
        UnknownModelError, InvalidParameterError: a bad request, e.g. ``fetch=True`` without a price
            store (nothing ran).
        LedgerError: the ledger's database cannot be used.
        DataFormatError: the data cannot be read at all.
    """
    from ..data import CryptoLoader
    from ..data.store import is_price_store
    from ..ledger import cycle_lock, open_ledger, score_matured, start_run
    from ..manager import CryptoManager

    clock = time.perf_counter()
    plan = plan_pipeline(models, horizon, levels, params, coins)
    path = data_path(data)
    if fetch and not is_price_store(path):
        raise InvalidParameterError(
            f"--fetch needs a price store, and {path} is not one; fetch into one with `crypto-ml data fetch "
            "--store DIR`, pass it as --data, or leave --fetch out"
        )
    settings = get_settings()
    report = PipelineReport(
        kind="pipeline", data=str(path), models=plan.models, horizon=plan.horizon, levels=list(plan.levels)
    )
    with open_ledger(database_url) as ledger:
        report.database = ledger.url
        with cycle_lock(ledger, lock_name(path), holder=holder, seconds=settings.pipeline_lock_seconds):
            if fetch if fetch is not None else is_price_store(path):
                fetch_new_candles(path, report)
            loader = CryptoLoader(path)
            run_id = start_run(
                ledger, "pipeline", plan.parameters(data=str(path), engine=engine), data_hash=loader.data_hash()
            )
            report.run_id = run_id
            with finishing_run(ledger, run_id, report, clock):
                with CryptoManager(loader, engine=engine, workers=workers, batch_size=batch_size) as manager:
                    forecast_and_record(manager, ledger, run_id, plan, report)
                scores = score_matured(ledger, loader)
                report.scored, report.waiting, report.missing_actual = (
                    scores.scored,
                    scores.waiting,
                    scores.missing_actual,
                )
    log.info(
        "pipeline run %s: %d forecast rows new, %d already recorded, %d scored in %.1f s",
        report.run_id,
        report.forecasts_inserted,
        report.forecasts_existing,
        report.scored,
        report.seconds,
    )
    return report


def fetch_new_candles(store: Path, report: PipelineReport) -> None:
    """Bring every symbol the price store holds up to date; a failure is recorded, and the cycle
    goes on with the candles already stored.

    Each symbol is fetched from its own earliest ``--since``, so a symbol fetched from a
    given day is never backfilled here (``crypto-ml data fetch --since`` does that).
    """
    from ..data.exchange import RetryPolicy
    from ..data.fetch import fetch_prices
    from ..data.store import PriceStore

    settings = get_settings()
    price_store = PriceStore(store)
    groups: dict[tuple[str, str | None], set[str]] = {}
    for stored in price_store.entries():
        exchange, symbol = stored["exchange"], stored["symbol"]
        groups.setdefault((exchange, price_store.covered_since(exchange, symbol)), set()).add(symbol)
    retry = RetryPolicy(
        attempts=settings.fetch_retries, backoff=settings.fetch_backoff, max_wait=settings.fetch_max_wait
    )
    report.fetched_rows = 0
    for (exchange, since), symbols in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        try:
            fetched = fetch_prices(
                exchange,
                store,
                symbols=sorted(symbols),
                since=since,
                api_url=settings.exchange_api_url,
                timeout=settings.fetch_timeout,
                retry=retry,
            )
        except CryptoMLError as exc:  # the exchange could not be asked at all: forecast what is stored
            log.warning("fetch from %s failed: %s", exchange, exc)
            for symbol in sorted(symbols):
                report.add_failure("fetch", symbol, None, type(exc).__name__, str(exc))
            continue
        report.fetched_rows += sum(entry.new_rows for entry in fetched.symbols)
        for entry in fetched.failed:
            report.add_failure("fetch", entry.symbol, None, entry.error_type or "Error", entry.error or "")
