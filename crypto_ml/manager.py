"""CryptoManager: the producer that sends forecasting tasks and gathers a result per coin."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .config import get_settings
from .data_loader import CryptoLoader, normalize_name
from .engines import Engine, resolve_engine
from .exceptions import CryptoMLError, InvalidParameterError
from .forecasting import dataset_reference, failure_record, forecast_batch
from .models import get_model, resolve_name
from .models.base import validate_horizon
from .results import CoinForecast, ForecastRun

__all__ = ["CryptoManager"]

log = logging.getLogger(__name__)

# Batches per engine slot when batch_size is not set: enough that a slow batch
# does not leave other slots idle at the end, few enough that per-message
# overhead stays small next to the work.
BATCHES_PER_SLOT = 4

TRANSFER_MODES = ("auto", "inline", "reference")


class CryptoManager:
    """Dispatches one model over many coins through an engine.

    Args:
        loader: Where prices come from; None reads ``CRYPTO_ML_DATA_DIR`` or the bundled sample.
        engine: ``"auto"``, ``"local"``, ``"celery"``, an ``Engine``, or None for ``CRYPTO_ML_ENGINE``.
        batch_size: Series per task; None uses ``CRYPTO_ML_BATCH_SIZE`` or sizes batches to the engine.
        workers: Local engine processes; None uses every core.
    """

    def __init__(
        self,
        loader: CryptoLoader | None = None,
        engine: str | Engine | None = None,
        *,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.loader = loader if loader is not None else CryptoLoader()
        self._engine_spec = engine
        self._engine: Engine | None = None
        self.batch_size = batch_size
        self.workers = workers

    @property
    def engine(self) -> Engine:
        """The engine, resolved (and for ``auto``, probed) on first use."""
        if self._engine is None:
            self._engine = resolve_engine(self._engine_spec, workers=self.workers)
            log.info("engine: %s (%s)", self._engine.name, self._engine.reason)
        return self._engine

    def send_tasks(
        self,
        model: str = "linear",
        coins: Sequence[str] | None = None,
        horizon: int = 10,
        params: dict[str, Any] | None = None,
        *,
        verbose: bool = True,
        progress: bool | None = None,
        transfer: str | None = None,
    ) -> ForecastRun:
        """Forecast every coin (or the given ones) ``horizon`` steps ahead.

        Args:
            model: A registered model name.
            coins: Coin names; None means every coin the loader has.
            horizon: Steps ahead, >= 1.
            params: Model constructor arguments.
            verbose: Print one line per coin, as the seed did: ``bitcoin [[4952.28 5492.85 ...]]``.
            progress: Show a progress bar on stderr; None shows it when stderr is a terminal.
            transfer: ``"inline"`` sends prices in the tasks; ``"reference"`` sends the
                dataset's path and hash and workers read it themselves; ``"auto"`` (None:
                ``CRYPTO_ML_TRANSFER``) sends by reference only to celery workers and
                only for datasets over ``CRYPTO_ML_REFERENCE_THRESHOLD_MB``.

        Returns:
            A ``ForecastRun`` with one ``CoinForecast`` per coin, in the requested order.
            Coins that could not be loaded or forecast are ``failed`` with the reason.

        Raises:
            InvalidParameterError: ``horizon`` < 1, or a parameter the model does not accept.
            UnknownModelError: ``model`` is not registered.
            EngineError: the requested engine cannot run at all.
        """
        horizon = validate_horizon(horizon)
        model = resolve_name(model)
        params = dict(params or {})
        get_model(model, **params)  # rejects bad parameters before anything is sent
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        clock = time.perf_counter()

        ordered, records, transfer = self.dispatch(
            forecast_batch, {"model": model, "horizon": horizon, "params": params},
            coins, label=model, progress=progress, transfer=transfer)
        engine = self.engine
        results = [CoinForecast.from_record(records[coin][0]) for coin in ordered]
        run = ForecastRun(
            model=model,
            horizon=horizon,
            params=params,
            engine=engine.name,
            engine_reason=engine.reason,
            transfer=transfer,
            data_path=str(self.loader.data_path),
            results=results,
            started_at=started_at,
            seconds=round(time.perf_counter() - clock, 3),
        )
        if verbose:
            self.print_results(run)
        return run

    def dispatch(
        self,
        function: Callable[[dict[str, Any]], list[dict[str, Any]]],
        task: dict[str, Any],
        coins: Sequence[str] | None = None,
        *,
        label: str,
        progress: bool | None = None,
        transfer: str | None = None,
    ) -> tuple[list[str], dict[str, list[dict[str, Any]]], str]:
        """Run a batch task function over coins on the engine and gather its records by coin.

        The shared machinery of forecasting and backtesting: load (or reference)
        the data, cut it into batches, map ``function`` over them, and turn a
        batch that failed as a whole into a failure record per coin it carried.

        Args:
            function: A plain task function taking a payload with ``"series"`` and
                returning records that each name their ``"coin"``.
            task: Keys merged into every payload (model, horizon, params, ...).
            coins: Coin names; None means every coin the loader has.
            label: The model name(s) failure records carry.
            progress: Progress bar on stderr; None shows it when stderr is a terminal.
            transfer: ``inline``, ``reference`` or ``auto`` (see ``send_tasks``).

        Returns:
            The normalised coin names in request order, every coin's records, and the
            transfer mode used.
        """
        names = list(coins) if coins is not None else self.loader.get_crypto_names()
        ordered = list(dict.fromkeys(normalize_name(name) for name in names))
        engine = self.engine
        transfer = self._transfer_mode(transfer, engine)
        records: dict[str, list[dict[str, Any]]] = {}
        series: list[dict[str, Any]] = []
        extra = dict(task)
        if transfer == "reference":
            extra["data"] = dataset_reference(self.loader)
            series = [{"coin": coin} for coin in ordered]
        else:
            for name in dict.fromkeys(names):
                item = self._load_series(name, label)
                if "status" in item:
                    records[item["coin"]] = [item]
                else:
                    series.append(item)

        payloads = self._batches(series, engine.slots, extra)
        with _progress_bar(len(series), progress) as advance:
            for index, outcome in engine.map(function, payloads):
                batch = payloads[index]["series"]
                if isinstance(outcome, BaseException):
                    outcome = [failure_record(item["coin"], label, outcome) for item in batch]
                for record in outcome:
                    records.setdefault(record["coin"], []).append(record)
                advance(len(batch))
        return ordered, records, transfer

    def _load_series(self, name: str, model: str) -> dict[str, Any]:
        """A payload item for one coin, or its failure record if it cannot be loaded."""
        coin = normalize_name(name)
        try:
            frame = self.loader.get_df(name)
        except CryptoMLError as exc:
            return failure_record(coin, model, exc)
        except Exception as exc:  # noqa: BLE001 - one unreadable coin must not sink the batch
            log.warning("unexpected error loading %s", coin, exc_info=True)
            return failure_record(coin, model, exc)
        if frame.empty:
            return failure_record(coin, model, "no prices in the selected date range", "DataFormatError")
        return {
            "coin": coin,
            "prices": frame["Close"].to_numpy(dtype=np.float64),
            "last_date": frame["Date"].iloc[-1].date().isoformat(),
        }

    def _transfer_mode(self, requested: str | None, engine: Engine) -> str:
        """``inline`` or ``reference``, resolving ``auto`` by engine and data size."""
        settings = get_settings()
        mode = (requested or settings.transfer).strip().lower()
        if mode not in TRANSFER_MODES:
            raise InvalidParameterError(f"unknown transfer {requested!r}; use one of: {', '.join(TRANSFER_MODES)}")
        if mode != "auto":
            return mode
        # Local processes get arrays cheaply; only the broker pays for big inline payloads.
        if engine.name != "celery":
            return "inline"
        size_mb = _data_bytes(Path(self.loader.data_path)) / 1e6
        return "reference" if size_mb > settings.reference_threshold_mb else "inline"

    def _batches(self, series: list[dict[str, Any]], slots: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
        size = self.batch_size or get_settings().batch_size
        if size is None:
            size = max(1, math.ceil(len(series) / (max(slots, 1) * BATCHES_PER_SLOT)))
        return [
            {**extra, "series": series[start : start + size]}
            for start in range(0, len(series), size)
        ]

    @staticmethod
    def print_results(run: ForecastRun, file=None) -> None:
        """Print one line per coin in the seed's shape; failures say why."""
        out = file or sys.stdout
        for result in run:
            if result.ok:
                values = np.array2string(np.array([result.forecast]), max_line_width=1_000_000)
                print(f"{result.coin} {values}", file=out)
            else:
                print(f"{result.coin} FAILED {result.error_type}: {result.error}", file=out)


def _data_bytes(path: Path) -> int:
    """Bytes of a dataset on disk: the long-format file, or the folder's files."""
    if path.is_file():
        return path.stat().st_size
    return sum(entry.stat().st_size for entry in path.iterdir() if entry.is_file())


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool | None) -> Iterator[Any]:
    """A rich progress bar on stderr, advanced by the number of series done."""
    if enabled is None:
        enabled = sys.stderr.isatty() and total > 0
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("forecasting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("forecast", total=total)
        yield lambda n: bar.advance(task, n)
