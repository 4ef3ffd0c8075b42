"""CryptoManager: the producer that sends forecasting tasks and gathers a result per coin."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .config import get_settings
from .data import CryptoLoader, normalize_name
from .engines import Engine, resolve_engine
from .evaluation import BacktestRun, backtest_batch, coin_failures, date_windows, validate_request
from .exceptions import CryptoMLError, InvalidParameterError, ModelStoreError
from .forecasting import forecast_batch
from .model_store import ModelStore
from .models import get_model, resolve_name
from .models.base import validate_horizon, validate_levels
from .models.registry import check_installed, is_heavy
from .records import failure_record
from .references import dataset_reference
from .results import CoinForecast, ForecastRun, TrainRun
from .training import train_batch

__all__ = ["CryptoManager", "DispatchPlan"]

log = logging.getLogger(__name__)

# Batches per engine slot when batch_size is not set: enough that a slow batch
# does not leave other slots idle at the end, few enough that per-message
# overhead stays small next to the work.
BATCHES_PER_SLOT = 4

TRANSFER_MODES = ("auto", "inline", "reference")


@dataclass(frozen=True)
class DispatchPlan:
    """What ``CryptoManager.plan`` would send.

    Attributes:
        coins: The normalised coin names, in request order, without repeats.
        records: The failure record of each coin that could not be loaded, by coin.
        payloads: One task payload per batch, each with its ``"series"``.
        transfer: ``inline`` or ``reference``.
    """

    coins: list[str]
    records: dict[str, list[dict[str, Any]]]
    payloads: list[dict[str, Any]]
    transfer: str


class CryptoManager:
    """Dispatches one model over many coins through an engine.

    Args:
        loader: Where prices come from; None reads ``CRYPTO_ML_DATA_DIR`` or the bundled sample.
        engine: ``"auto"``, ``"local"``, ``"celery"``, an ``Engine``, or None for ``CRYPTO_ML_ENGINE``.
        batch_size: Series per task; None uses ``CRYPTO_ML_BATCH_SIZE`` or sizes batches to the engine.
        workers: Local engine processes; None uses every core.

    The local engine keeps its process pool warm between calls: ``close()`` (or
    ``with CryptoManager(...) as manager:``) stops it; otherwise it stops when
    the engine is garbage-collected or the interpreter exits.
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

    def close(self) -> None:
        """Release the engine's resources (the local engine's warm pool); a later call starts them again."""
        if self._engine is not None:
            self._engine.close()

    def __enter__(self) -> CryptoManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def use_data(self, data: Any) -> None:
        """Forecast other prices from now on: a long-format DataFrame (see ``CryptoLoader.from_frame``) or a path.

        Raises:
            DataFormatError: the data cannot be read; InvalidParameterError: it is neither.
        """
        import pandas as pd

        if isinstance(data, CryptoLoader):
            self.loader = data
        elif isinstance(data, pd.DataFrame):
            self.loader = CryptoLoader.from_frame(data)
        else:
            self.loader = CryptoLoader(data)

    @property
    def engine(self) -> Engine:
        """The engine, resolved (and for ``auto``, probed) on first use."""
        if self._engine is None:
            self._engine = resolve_engine(self._engine_spec, workers=self.workers)
            log.info("engine: %s (%s)", self._engine.name, self._engine.reason)
        return self._engine

    def send_tasks(
        self,
        model: str | None = None,
        coins: Sequence[str] | None = None,
        horizon: int = 10,
        params: dict[str, Any] | None = None,
        *,
        levels: Any = None,
        verbose: bool = True,
        progress: bool | None = None,
        transfer: str | None = None,
        from_store: bool = False,
        store: str | Path | None = None,
        data: Any = None,
    ) -> ForecastRun:
        """Forecast every coin (or the given ones) ``horizon`` steps ahead, with prediction intervals.

        Args:
            model: A registered model name; None uses ``CRYPTO_ML_MODEL`` (default ``ewma``).
            coins: Coin names; None means every coin the loader has.
            horizon: Steps ahead, >= 1.
            params: Model constructor arguments.
            levels: Interval levels in percent, e.g. ``(50, 80, 95)`` or ``"50,80,95"``;
                None means 80 and 95. Each result carries ``lo_<L>``/``hi_<L>`` bounds.
            verbose: Print one line per coin, as the seed did: ``bitcoin [[4952.28 5492.85 ...]]``.
            progress: Show a progress bar on stderr; None shows it when stderr is a terminal.
            transfer: ``"inline"`` sends prices in the tasks; ``"reference"`` sends the
                dataset's path and hash and workers read it themselves; ``"auto"`` (None:
                ``CRYPTO_ML_TRANSFER``) sends by reference only datasets over
                ``CRYPTO_ML_REFERENCE_THRESHOLD_MB``: to celery workers, and to the local
                engine when the data is a file (its processes map the shared dataset cache).
            from_store: Forecast with each coin's latest stored model (see ``train``)
                instead of fitting; ``params`` given must match the stored ones.
            store: The model store directory; None uses ``CRYPTO_ML_MODEL_STORE``.
            data: Other prices for this and later calls: a long-format pandas DataFrame
                (``symbol, date, close`` or ``unique_id, ds, y``; see ``CryptoLoader.from_frame``)
                or a dataset path. None keeps the manager's loader.

        Returns:
            A ``ForecastRun`` with one ``CoinForecast`` per coin, in the requested order.
            Coins that could not be loaded or forecast are ``failed`` with the reason.

        Raises:
            InvalidParameterError: ``horizon`` < 1, a level outside (0, 100), or a parameter the
                model does not accept.
            UnknownModelError: ``model`` is not registered.
            MissingDependencyError: on the local engine, the model's extra is not installed.
            EngineError: the requested engine cannot run at all.
        """
        if data is not None:
            self.use_data(data)
        task = self.forecast_task(model, horizon, params, levels=levels, from_store=from_store, store=store)
        model, horizon, params, levels = task["model"], task["horizon"], task["params"], task["levels"]
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        clock = time.perf_counter()
        ordered, records, transfer = self.dispatch(
            forecast_batch, task, coins, label=model, progress=progress, transfer=transfer
        )
        engine = self.engine
        results = [CoinForecast.from_record(records[coin][0]) for coin in ordered]
        run = ForecastRun(
            model=model,
            horizon=horizon,
            params=params,
            engine=engine.name,
            engine_reason=engine.reason,
            transfer=transfer,
            data_path=self.loader.source,
            results=results,
            started_at=started_at,
            seconds=round(time.perf_counter() - clock, 3),
            levels=list(levels),
        )
        if verbose:
            self.print_results(run)
        return run

    def forecast_task(
        self,
        model: str | None = None,
        horizon: int = 10,
        params: dict[str, Any] | None = None,
        *,
        levels: Any = None,
        from_store: bool = False,
        store: str | Path | None = None,
    ) -> dict[str, Any]:
        """The checked keys every forecast payload carries: ``model``, ``horizon``, ``params``, ``levels``
        (and ``from_store``, ``store``); the arguments are ``send_tasks``'s.

        Raises:
            InvalidParameterError, UnknownModelError, MissingDependencyError: as ``send_tasks``,
            before anything is sent.
        """
        horizon = validate_horizon(horizon)
        levels = validate_levels(levels)
        model = resolve_name(model if model is not None else get_settings().model)
        params = dict(params or {})
        get_model(model, **params)  # rejects bad parameters before anything is sent
        self._check_installed(model)
        task: dict[str, Any] = {"model": model, "horizon": horizon, "params": params, "levels": list(levels)}
        if from_store:
            task.update(from_store=True, store=str(ModelStore(store).root.resolve()))
        return task

    def train(
        self,
        model: str = "lstm",
        coins: Sequence[str] | None = None,
        params: dict[str, Any] | None = None,
        *,
        store: str | Path | None = None,
        progress: bool | None = None,
        transfer: str | None = None,
    ) -> TrainRun:
        """Train ``model`` on every coin (or the given ones) and save each to the model store.

        Args:
            model: A registered model name.
            coins: Coin names; None means every coin the loader has.
            params: Model constructor arguments.
            store: The model store directory; None uses ``CRYPTO_ML_MODEL_STORE``.
            progress: Progress bar on stderr; None shows it when stderr is a terminal.
            transfer: ``inline``, ``reference`` or ``auto`` (see ``send_tasks``).

        Returns:
            A ``TrainRun`` with one record per coin: the stored model's id and
            training metrics, or the reason it failed.

        Raises:
            UnknownModelError, InvalidParameterError, MissingDependencyError, EngineError: as ``send_tasks``.
        """
        model = resolve_name(model)
        params = dict(params or {})
        if not get_model(model, **params).storable:
            raise ModelStoreError(
                f"{model} cannot be trained into the model store: its fitted state is not plain "
                "data and the store never pickles; forecast it without --from-store"
            )
        self._check_installed(model)
        clock = time.perf_counter()
        store_root = ModelStore(store).root.resolve()
        # Workers on this machine must find it; a worker without it uses its own CRYPTO_ML_MODEL_STORE.
        store_root.mkdir(parents=True, exist_ok=True)
        ordered, records, transfer = self.dispatch(
            train_batch,
            {"model": model, "params": params, "store": str(store_root)},
            coins,
            label=model,
            progress=progress,
            transfer=transfer,
        )
        return TrainRun(
            model=model,
            params=params,
            store=str(store_root),
            engine=self.engine.name,
            engine_reason=self.engine.reason,
            records=[records[coin][0] for coin in ordered],
            seconds=round(time.perf_counter() - clock, 3),
        )

    def backtest(
        self,
        models: str | Sequence[str],
        horizon: int = 10,
        windows: int = 30,
        step: int | None = None,
        coins: Sequence[str] | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        *,
        progress: bool | None = None,
        transfer: str | None = None,
        levels: Any = None,
        data: Any = None,
    ) -> BacktestRun:
        """Walk-forward backtest of each model on every coin (or the given ones), against the random walk.

        Args:
            models: Model names, or one comma-separated string. ``naive`` is added
                when missing: it is the benchmark every summary compares with.
            horizon: Steps each window forecasts, >= 1.
            windows: Windows per coin, >= 1; a short coin uses the ones that fit. Thirty
                origins are about the fewest a Diebold-Mariano test across origins can use.
            step: Points between cutoffs; None uses ``horizon`` (test periods do not overlap).
            coins: Coin names; None means every coin the loader has.
            params: ``{model: {parameter: value}}`` constructor arguments.
            progress: Progress bar on stderr; None shows it when stderr is a terminal.
            transfer: ``inline``, ``reference`` or ``auto`` (see ``send_tasks``).
            levels: Interval levels in percent to score (a sequence or ``"80,95"``);
                None means ``DEFAULT_LEVELS`` (80, 95).

        Returns:
            A ``BacktestRun``: one record per (coin, model, window),
            coins in request order. A coin that could not be loaded or is too short
            for one window has one failed record per model, with the reason.

        Raises:
            UnknownModelError: a model is not registered (every name is checked before anything runs).
            InvalidParameterError: horizon, windows or step < 1, a level outside (0, 100), or a parameter
                a model does not accept.
            EngineError: the requested engine cannot run at all.
        """
        if data is not None:
            self.use_data(data)  # a DataFrame or a path, as in send_tasks
        task = self.backtest_task(models, horizon, windows, step, params, levels=levels)
        names, horizon, windows, step = task["models"], task["horizon"], task["windows"], task["step"]
        params = task["params"]
        levels = tuple(task["levels"])
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        clock = time.perf_counter()
        ordered, by_coin, transfer = self.dispatch(
            backtest_batch, task, coins, label=",".join(names), progress=progress, transfer=transfer
        )
        records = [record for coin in ordered for record in self.backtest_records(coin, by_coin.get(coin, []), task)]

        loader = self.loader
        engine = self.engine
        return BacktestRun(
            records=records,
            models=names,
            horizon=horizon,
            windows=windows,
            step=step,
            engine=engine.name,
            engine_reason=engine.reason,
            data_path=loader.source,
            data_hash=loader.data_hash(),
            seconds=round(time.perf_counter() - clock, 3),
            started_at=started_at,
            params={name: get_model(name, **params.get(name, {})).get_params() for name in names},
            coins=ordered,
            transfer=transfer,
            data_filters={
                "max_points": loader.max_points,
                "from_date": loader.from_date.date().isoformat() if loader.from_date is not None else None,
                "to_date": loader.to_date.date().isoformat() if loader.to_date is not None else None,
            },
            levels=levels,
        )

    def backtest_task(
        self,
        models: str | Sequence[str],
        horizon: int = 10,
        windows: int = 30,
        step: int | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        *,
        levels: Any = None,
    ) -> dict[str, Any]:
        """The checked keys every backtest payload carries (``models``, ``horizon``, ``windows``, ``step``,
        ``params``, ``levels``); the arguments are ``backtest``'s.

        Raises:
            UnknownModelError, InvalidParameterError, MissingDependencyError: as ``backtest``.
        """
        names, horizon, windows, step, params = validate_request(models, horizon, windows, step, params)
        levels = validate_levels(levels)
        for name in names:
            self._check_installed(name)
        return {
            "models": names,
            "horizon": horizon,
            "windows": windows,
            "step": step,
            "params": params,
            "levels": list(levels),
        }

    def backtest_records(
        self, coin: str, found: Sequence[dict[str, Any]], task: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One coin's backtest records as a ``BacktestRun`` holds them: dated, by model then window.

        A record without a window (the coin failed before a worker backtested it: unloadable,
        lost batch) becomes one failure record per model.
        """
        names = task["models"]
        records: list[dict[str, Any]] = []
        for record in found:
            if "window" in record:
                records.append(record)
            else:
                records.extend(coin_failures(coin, names, record["error"], task, record["error_type"]))
        if any(r.get("cutoff") and not r.get("cutoff_date") for r in records):
            # Inline payloads carry no dates; date the windows from the producer's copy of the data.
            try:
                date_windows(records, np.datetime_as_string(self.loader.get_dated_prices(coin)[0], unit="D").tolist())
            except CryptoMLError as exc:
                log.warning("cannot date the backtest windows of %s: %s", coin, exc)
        rank = {name: index for index, name in enumerate(names)}
        records.sort(key=lambda r: (rank.get(r["model"], len(rank)), r["window"] or 0))
        return records

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

        The shared machinery of forecasting and backtesting: ``plan`` the batches,
        map ``function`` over them, and turn a batch that failed as a whole into a
        failure record per coin it carried.

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
        plan = self.plan(task, coins, label=label, transfer=transfer)
        records = {coin: list(found) for coin, found in plan.records.items()}
        payloads = plan.payloads
        with _progress_bar(sum(len(payload["series"]) for payload in payloads), progress) as advance:
            for index, outcome in self.engine.map(function, payloads):
                batch = payloads[index]["series"]
                if isinstance(outcome, BaseException):
                    outcome = [failure_record(item["coin"], label, outcome) for item in batch]
                for record in outcome:
                    records.setdefault(record["coin"], []).append(record)
                advance(len(batch))
        return plan.coins, records, plan.transfer

    def plan(
        self, task: dict[str, Any], coins: Sequence[str] | None = None, *, label: str, transfer: str | None = None
    ) -> DispatchPlan:
        """The payloads that would carry ``task`` over ``coins``, without sending them.

        Loads each coin (or, by reference, names the dataset), records the coins that
        cannot be loaded as failures, and cuts the rest into batches sized to the engine.
        ``dispatch`` runs a plan at once; the HTTP API stores one and sends its payloads
        under task ids of its own, so that a restarted API finds them again.

        Args:
            task: Keys merged into every payload (model, horizon, params, ...).
            coins: Coin names; None means every coin the loader has.
            label: The model name(s) failure records carry.
            transfer: ``inline``, ``reference`` or ``auto`` (see ``send_tasks``).
        """
        names = list(coins) if coins is not None else self.loader.get_crypto_names()
        ordered = list(dict.fromkeys(normalize_name(name) for name in names))
        engine = self.engine
        transfer = self._transfer_mode(transfer, engine)
        records: dict[str, list[dict[str, Any]]] = {}
        series: list[dict[str, Any]] = []
        extra = dict(task)
        if transfer == "reference":
            # Workers read data by path and hash: prices only in this process's memory are written first.
            self.loader = self.loader.persist(get_settings().price_store / "frames")
            extra["data"] = dataset_reference(self.loader)
            series = [{"coin": coin} for coin in ordered]
        else:
            for name in dict.fromkeys(names):
                item = self._load_series(name, label)
                if "status" in item:
                    records[item["coin"]] = [item]
                else:
                    series.append(item)
        return DispatchPlan(ordered, records, self._batches(series, engine.slots, extra), transfer)

    def _check_installed(self, model: str) -> None:
        """Refuse a model whose extra is missing, when the tasks run in this environment.

        The local engine's processes share this install, so a missing extra would
        fail every coin alike: better one request error naming the extra. Celery
        workers may have extras this producer lacks, so they are not checked
        here; a worker without it fails each coin with the same message.
        """
        if self.engine.name == "local":
            check_installed(model)

    def _load_series(self, name: str, model: str) -> dict[str, Any]:
        """A payload item for one coin, or its failure record if it cannot be loaded."""
        coin = normalize_name(name)
        try:
            dates, prices = self.loader.get_dated_prices(name)
        except CryptoMLError as exc:
            return failure_record(coin, model, exc)
        except Exception as exc:
            log.warning("unexpected error loading %s", coin, exc_info=True)
            return failure_record(coin, model, exc)
        if not prices.size:
            return failure_record(coin, model, "no prices in the selected date range", "DataFormatError")
        return {"coin": coin, "prices": prices, "last_date": str(dates[-1].astype("datetime64[D]"))}

    def _transfer_mode(self, requested: str | None, engine: Engine) -> str:
        """``inline`` or ``reference``, resolving ``auto`` by engine and data size."""
        settings = get_settings()
        mode = (requested or settings.transfer).strip().lower()
        if mode not in TRANSFER_MODES:
            raise InvalidParameterError(f"unknown transfer {requested!r}; use one of: {', '.join(TRANSFER_MODES)}")
        if mode != "auto":
            return mode
        if engine.name not in ("celery", "local"):
            return "inline"
        if engine.name == "local" and self.loader.data_path is None:
            # Prices only in memory: writing them out first costs more than handing them to the pool.
            return "inline"
        # A big file: celery workers are spared JSON-encoding every price, and the local engine's
        # processes (and this one) map the shared dataset cache instead of this process reading
        # every coin first (10,000 coins of 1,000 days: 5.1-5.4 s against 6.4-7.2 s a call, cache
        # built included).
        size_mb = self.loader.size_bytes() / 1e6
        return "reference" if size_mb > settings.reference_threshold_mb else "inline"

    def _batches(self, series: list[dict[str, Any]], slots: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
        size = self.batch_size or get_settings().batch_size
        models = extra.get("models") or [extra.get("model")]
        if size is None and any(name and is_heavy(name) for name in models):
            # A deep fit takes seconds: one coin per task spreads them evenly and keeps each under the time limit.
            size = 1
        if size is None:
            size = max(1, math.ceil(len(series) / (max(slots, 1) * BATCHES_PER_SLOT)))
        return [{**extra, "series": series[start : start + size]} for start in range(0, len(series), size)]

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
