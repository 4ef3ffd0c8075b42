"""dispatch: 10,000 series of about 1,000 points through ``CryptoManager.send_tasks``, three ways, end to end.

1. the local engine with two processes, transfer left to ``auto`` (by reference for
   a file this big: its processes map the shared dataset cache), with this
   dataset's cache entry removed first, so the one parse is included;
2. the celery engine with one worker of two processes, transfer left to ``auto``
   (by reference for a dataset this big: the report says what it picked), once
   with cold worker processes and an empty dataset cache (the first process
   parses the dataset into ``CRYPTO_ML_CACHE_DIR``, the other maps it) and once
   warm (they kept it);
3. the seed's shape: one task per series with its prices inline
   (``batch_size=1``, ``transfer="inline"``), on the first 1,000 series.

Every figure is the wall time of ``send_tasks`` from a fresh loader, so the
producer's reading of the data is included. The producer's share is measured
by timing the loader's calls during the same run (reading the file, cutting
each coin's series, hashing the file for a reference); the rest is transfer
and compute. Model ``linear``, horizon 10.
"""

from __future__ import annotations

import contextlib
import gc
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crypto_ml.data_loader import CryptoLoader

from .data import describe, synthetic_dataset
from .harness import Options, Report, rate

NAME = "dispatch"
TITLE = "series/s through send_tasks, end to end: local engine vs celery engine vs the seed's one-task-per-series"

CELERY_VS_LOCAL = 0.7
CELERY_VS_SEED = 10.0
# Reading the 10,000-series file peaks at about 2.1 GB in a pool process; with
# the default 1,500 MB limit Celery replaces the process after every task, and
# each task reads the file again (0.58x local, measured). A deployment serving
# a dataset this big raises the limit the same way.
WORKER_MAX_MEMORY_MB = 4000


class TimedLoader(CryptoLoader):
    """A ``CryptoLoader`` that adds up the seconds the producer spends in it, by kind of work.

    ``read``: listing the coins (for a long-format file, only its symbol
    column is read); ``series``: cutting out each coin's dates and prices (the first one
    converts and checks a long-format file as a whole); ``hash``: hashing the
    file for a dataset reference.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = {"read": 0.0, "series": 0.0, "hash": 0.0}

    @contextlib.contextmanager
    def _timed(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - start

    def get_crypto_names(self) -> list[str]:
        with self._timed("read"):
            return super().get_crypto_names()

    def get_dated_prices(self, name: str):
        with self._timed("series"):
            return super().get_dated_prices(name)

    def data_hash(self) -> str:
        with self._timed("hash"):
            return super().data_hash()


def _forget_cached(path: Path) -> None:
    """Remove ``path``'s entry from the default dataset cache, if it has one."""
    import os

    from crypto_ml.config import get_settings
    from crypto_ml.data import CryptoLoader
    from crypto_ml.data.cache import entry_path

    entry = entry_path(Path(os.path.expanduser(get_settings().cache_dir)), CryptoLoader(path).data_hash())
    shutil.rmtree(entry, ignore_errors=True)


def _send(
    path: Path, engine: Any, *, batch_size: int | None = None, transfer: str | None = None, horizon: int = 10
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One ``send_tasks`` from a fresh loader: its figures, and the forecasts by coin."""
    from crypto_ml.manager import CryptoManager

    loader = TimedLoader(path)
    manager = CryptoManager(loader, engine=engine, batch_size=batch_size)
    start = time.perf_counter()
    run = manager.send_tasks("linear", horizon=horizon, verbose=False, progress=False, transfer=transfer)
    seconds = time.perf_counter() - start
    load = sum(loader.seconds.values())
    figures = {
        "series": len(run),
        "ok": len(run.ok),
        "failed": len(run.failed),
        "transfer": run.transfer,
        "seconds": seconds,
        "producer_load_s": load,
        "rest_s": seconds - load,
        "load_split_s": {key: round(value, 3) for key, value in loader.seconds.items()},
        "series_per_s": rate(len(run.ok), seconds),
    }
    forecasts = {r.coin: np.asarray(r.forecast) for r in run.ok}
    del run, manager, loader
    gc.collect()  # a 10,000-series loader holds gigabytes; free it before the next way runs
    return figures, forecasts


def _tasks(n_series: int, slots: int, batch_size: int | None) -> int:
    """How many tasks the manager cut the series into (its rule: about four batches per slot)."""
    from crypto_ml.manager import BATCHES_PER_SLOT

    size = batch_size or max(1, math.ceil(n_series / (slots * BATCHES_PER_SLOT)))
    return math.ceil(n_series / size)


def run(
    options: Options,
    *,
    n_series: int | None = None,
    seed_series: int | None = None,
    workers: int = 2,
    horizon: int = 10,
) -> Report:
    """Run the three ways on the same data in one run and compare them.

    Args:
        options: The run's options.
        n_series: Series for the local and celery engines; None: 10,000 (1,000 with ``--quick``).
        seed_series: Series for the seed's shape; None: 1,000 (200 with ``--quick``).
        workers: Local engine processes, and the celery worker's pool processes.
        horizon: Steps forecast.
    """
    from crypto_ml.celery_app import LIGHT_QUEUE
    from crypto_ml.config import get_settings
    from crypto_ml.engines import LocalEngine
    from crypto_ml.engines.celery import CeleryEngine

    from .workers import BenchWorker, broker_problem, check_queue

    n_series = n_series or (1000 if options.quick else 10_000)
    seed_series = min(seed_series or (200 if options.quick else 1000), n_series)
    big = synthetic_dataset(options, n_series)
    small = synthetic_dataset(options, seed_series)  # the same series as big's first seed_series
    report = Report(
        NAME,
        TITLE,
        options,
        {
            "model": "linear",
            "horizon": horizon,
            "n_series": n_series,
            "seed_shape_series": seed_series,
            "local_workers": workers,
            "celery_worker_concurrency": workers,
            "reference_threshold_mb": get_settings().reference_threshold_mb,
            "dataset": describe(big),
            "seed_shape_dataset": describe(small),
        },
    )
    report.set_columns(
        ("way", "way"),
        ("transfer", "transfer"),
        ("series", "series"),
        ("tasks", "tasks"),
        ("seconds", "seconds"),
        ("producer_load_s", "producer load s"),
        ("rest_s", "rest s"),
        ("series_per_s", "series/s"),
        ("failed", "failed"),
    )

    # The local engine's processes use the default dataset cache (they inherit this process's
    # environment from the fork server, started before this benchmark may change it): remove this
    # dataset's entry there, so the local row pays the one parse as celery's cold row does.
    _forget_cached(big)
    local, local_forecasts = _send(big, LocalEngine(workers), horizon=horizon)
    report.add_row(way=f"local engine ×{workers}", tasks=_tasks(n_series, workers, None), **local)

    problem = broker_problem()
    if problem:
        report.skip(f"celery ways not run: {problem}")
        return report
    check_queue(report, LIGHT_QUEUE)
    # A dataset cache of the run's own, emptied first, so the cold run includes the one parse it saves the rest.
    dataset_cache = options.out / "dataset-cache"
    shutil.rmtree(dataset_cache, ignore_errors=True)
    memory_limit = {"CRYPTO_ML_WORKER_MAX_MEMORY_MB": str(WORKER_MAX_MEMORY_MB)}
    report.parameters["worker_env"] = memory_limit
    worker_env = {**memory_limit, "CRYPTO_ML_CACHE_DIR": str(dataset_cache)}
    with BenchWorker("dispatch", LIGHT_QUEUE, workers, options.out / "logs", env=worker_env) as worker:
        report.parameters["worker"] = worker.node
        pool_before = worker.pool_pids()
        engine = CeleryEngine(workers=workers)
        cold, cold_forecasts = _send(big, engine, horizon=horizon)
        report.add_row(way=f"celery ×{workers}, cold workers", tasks=_tasks(n_series, workers, None), **cold)
        warm, _ = _send(big, engine, horizon=horizon)
        report.add_row(way=f"celery ×{workers}, warm workers", tasks=_tasks(n_series, workers, None), **warm)
        seed, _ = _send(small, engine, batch_size=1, transfer="inline", horizon=horizon)
        report.add_row(way="seed shape: 1 series/task, inline", tasks=seed_series, **seed)
        pool_after = worker.pool_pids()
    entries = sorted(p.name for p in dataset_cache.iterdir() if p.is_dir()) if dataset_cache.is_dir() else []
    report.extra["dataset_cache_entries"] = entries
    report.note(
        f"worker dataset cache {dataset_cache}: empty before the cold run, {len(entries)} entr(ies) after "
        "(one parse by the first pool process, mapped by the other)"
    )
    shutil.rmtree(dataset_cache, ignore_errors=True)
    kept = sorted(pool_before) == sorted(pool_after)
    report.extra["pool_processes_kept"] = kept
    report.note(
        f"worker started with CRYPTO_ML_WORKER_MAX_MEMORY_MB={WORKER_MAX_MEMORY_MB} (the file's read peaks "
        "near 2.1 GB per process; the 1,500 MB default would replace each process after every task): "
        + (
            "the same pool processes ran every task"
            if kept
            else f"[yellow]pool processes were replaced[/] ({pool_before} -> {pool_after}): tasks restarted cold"
        )
    )

    # The same forecasts either way: a cheap check that the figures measure the same work.
    common = sorted(set(local_forecasts) & set(cold_forecasts))
    diff = max((float(np.max(np.abs(local_forecasts[c] - cold_forecasts[c]))) for c in common), default=math.nan)
    report.extra["celery_vs_local_max_abs_diff"] = diff
    report.note(f"celery and local forecasts agree on {len(common):,} series: max |Δ| = {diff:.3g}")

    report.note(
        f"transfer picked by auto for celery: {cold['transfer']} (dataset "
        f"{report.parameters['dataset']['megabytes']} MB, threshold "
        f"{report.parameters['reference_threshold_mb']:g} MB)"
    )
    report.note(f"producer load split (s), local: {local['load_split_s']}; celery cold: {cold['load_split_s']}")
    worker_read = cold["seconds"] - warm["seconds"]
    report.note(
        f"worker-side loading (cold − warm: one pool process parses the file into the dataset cache, the "
        f"other waits and maps it; each imports the model's libraries once, then keeps them): {worker_read:.1f} s"
    )
    versus_local = report.target(
        "celery (cold) ÷ local, series/s", cold["series_per_s"] / local["series_per_s"], ">=", CELERY_VS_LOCAL
    )
    report.target(
        "celery (warm) ÷ local, series/s", warm["series_per_s"] / local["series_per_s"], ">=", CELERY_VS_LOCAL
    )
    versus_seed = report.target(
        "celery (cold) ÷ seed shape, series/s", cold["series_per_s"] / seed["series_per_s"], ">=", CELERY_VS_SEED
    )
    report.target(
        "celery (warm) ÷ seed shape, series/s", warm["series_per_s"] / seed["series_per_s"], ">=", CELERY_VS_SEED
    )
    if versus_seed["met"] is False:
        per = 1e3 / n_series  # ms per series
        report.note(
            f"celery/seed missed: per series, celery (cold) takes {cold['seconds'] * per:.2f} ms = "
            f"{cold['producer_load_s'] * per:.2f} ms producer loading + {worker_read * per:.2f} ms worker "
            f"loading + {(cold['rest_s'] - worker_read) * per:.2f} ms forecasting and transfer; the seed shape "
            f"takes {1e3 * seed['seconds'] / seed_series:.2f} ms "
            f"({1e3 * seed['producer_load_s'] / seed_series:.2f} ms of it loading)"
        )
    if versus_local["met"] is False:
        report.note(
            f"celery/local missed: celery spends {cold['producer_load_s']:.1f} s in the producer and "
            f"{worker_read:.1f} s loading the dataset in the workers (one parse into the cache, then maps); "
            "local spends "
            f"{local['producer_load_s']:.1f} s loading and {local['rest_s']:.1f} s computing"
        )
    return report
