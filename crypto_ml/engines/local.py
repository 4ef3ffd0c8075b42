"""The local engine: a warm process pool on this machine, or this process when the work is too small for one.

Starting processes and pickling series to them costs a fixed amount per call
and a little per series. For cheap models (``naive`` takes microseconds a
series) that costs more than the work itself, so below a threshold the engine
runs the payloads right here, one after the other, with the same results and
the same per-payload failures as the pool. The threshold compares an
estimate of the work (``MODEL_SECONDS_PER_SERIES`` times the series, scaled by
their length) with the pool's own cost (``POOL_START_SECONDS`` when no pool is
warm, ``TRANSFER_SECONDS_PER_SERIES`` and ``TASK_SECONDS``), every number
measured on the development machine. Above it the payloads go to a pool that
stays warm for the engine's next call until ``close()``.

Prices do not travel through the pool's pipe. Before a call, every series'
prices are written once into one file in shared memory (``/dev/shm``, or the
temporary directory when that is missing or too small); each payload carries
only where its series lie in that file, and a pool process maps it and copies
out its series. Pickling an array, pushing it through the pipe and unpickling
it cost about 28 µs per 1,000-point series, most of it on the two ends' CPUs;
the mapping costs a copy (about 1 µs). The file is removed when the call ends.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..deep import mark_pool_process
from ..exceptions import EngineError, InvalidParameterError
from ..models.registry import is_heavy
from .base import Engine, TaskFunction, TaskOutcome

__all__ = ["LocalEngine", "MODEL_SECONDS_PER_SERIES", "SharedSlice", "estimate_work"]

log = logging.getLogger(__name__)

# Where every number below comes from: one-off timing scripts run on the 2-core development
# machine (AMD EPYC, Python 3.11, numpy 2.4, scikit-learn 1.9; load average about 1.5) on
# 2026-11-26, on the peer benchmark's series shape: random walks of ~1,000 points (log
# returns with sd 0.03), h=10, 80/95 % intervals, one thread, best of 3 runs of 200 series
# (20 for the expensive models). ``arima`` is benchmarks/README.md's 0.15-0.5 s a series.
# They are estimates for a threshold, not promises: a slower machine scales work and
# overhead alike, so the decision barely moves.

#: Seconds of one thread to fit one ~1,000-point series and forecast it (``forecast_series``).
#: A model not in this table (``+conformal`` names, the LSTM, a test model) counts as
#: expensive: its payloads always go to the pool.
MODEL_SECONDS_PER_SERIES: dict[str, float] = {
    # cheap: numpy only
    "naive": 0.000_26,
    "drift": 0.000_21,
    "linear": 0.000_42,
    "ewma": 0.003_1,
    # expensive: scikit-learn, statsforecast, arch
    "svr_linear": 0.078,
    "svr_rbf": 0.14,
    "svr_poly": 1.06,
    "garch": 0.059,
    "ets": 0.030,
    "theta": 0.098,
    "arima": 0.3,
}
#: The series length the table was measured at; a series' cost is taken as linear in its length.
REFERENCE_POINTS = 1000
#: Starting the pool: two processes forked from a warm fork server, each importing numpy and
#: crypto_ml.forecasting, until both first results are back (0.34-0.53 s measured).
POOL_START_SECONDS = 0.4
#: Sending one ~1,000-point series to a warm pool process and its forecast record back:
#: 26-30 µs for the series (pickle, pipe, unpickle), 9 µs for the record.
TRANSFER_SECONDS_PER_SERIES = 0.000_04
#: One payload's round trip through a warm pool (submit, result, wake-ups), empty payload: 0.19 ms.
TASK_SECONDS = 0.000_2
#: Calls whose prices take fewer bytes than this pickle them: a shared file costs a create, a
#: write, a map and an unlink (about 0.2 ms), as much as pickling 1 MB of prices.
SHARED_PRICES_MIN_BYTES = 1 << 20


def estimate_work(payloads: list[dict[str, Any]]) -> tuple[float, int, list[str]] | None:
    """Single-thread seconds the payloads' work would take, their series and model names.

    A backtest payload (``windows``) fits every model once per window. Series
    without inline prices (sent by reference) count as ``REFERENCE_POINTS`` long.

    Returns:
        ``(seconds, series, models)``, or None when a payload's cost is unknown
        (no model named, a model outside ``MODEL_SECONDS_PER_SERIES``) or a model
        is deep: those always run in the pool.
    """
    seconds, count = 0.0, 0
    names: list[str] = []
    for payload in payloads:
        models = [str(name) for name in (*(payload.get("models") or []), payload.get("model")) if name]
        if not models or any(is_heavy(name) or name not in MODEL_SECONDS_PER_SERIES for name in models):
            return None
        per_series = sum(MODEL_SECONDS_PER_SERIES[name] for name in models) * int(payload.get("windows") or 1)
        points = sum(_points(item) for item in payload.get("series") or [])
        seconds += per_series * points / REFERENCE_POINTS
        count += len(payload.get("series") or [])
        names.extend(name for name in models if name not in names)
    return seconds, count, names


def _points(item: Any) -> int:
    prices = item.get("prices") if isinstance(item, dict) else None
    return len(prices) if prices is not None else REFERENCE_POINTS


class LocalEngine(Engine):
    """A process pool on this machine, one process per core by default; this process for small work.

    Processes start through a fork server: forking the caller directly is
    unsafe once it has threads (a progress bar, TensorFlow, a broker client).
    The pool starts on the first call that needs it and stays warm for the
    next ones until ``close()`` (or the engine is garbage-collected, or the
    interpreter exits).

    A call whose estimated work (``estimate_work``) is less than the pool
    would cost it runs in this process instead; so does any known, non-deep
    model with ``workers=1``, where a pool only adds cost. Deep models never do:
    importing TensorFlow here would break every later fork. ``last_plan`` says
    how the last call ran and why.

    Args:
        workers: Number of processes; None uses every core.
        in_process: None decides per call by the estimate; False always uses the
            pool; True runs every payload whose cost is known here (deep and
            unknown models still go to the pool).
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, in_process: bool | None = None) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidParameterError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.slots = self.workers
        self.in_process = in_process
        #: How the last ``map`` ran and why, one line (also logged).
        self.last_plan = ""
        self._pool: ProcessPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None

    def map(self, function: TaskFunction, payloads: list[dict[str, Any]]) -> Iterator[TaskOutcome]:
        if not payloads:
            return
        here, self.last_plan = self._plan(payloads)
        log.info("local engine: %s", self.last_plan)
        if here:
            yield from _run_here(function, payloads)
            return
        with _shared_prices(payloads) as (sent, shared):
            if shared:
                function = functools.partial(_with_shared_prices, function)
            unfinished = yield from self._run_pool(function, sent)
            if unfinished:
                # A process died (segfault, out of memory) and took the pool with it.
                # Rerun what was left one payload per process, so only the payload
                # that kills its process is lost.
                log.warning("a local worker process died; rerunning %d unfinished task(s) one by one", len(unfinished))
                for index in unfinished:
                    for lost in (yield from _run_alone(function, sent, index)):
                        yield (
                            lost,
                            EngineError(
                                f"the process running task {lost} died (crash or out of memory); "
                                "its series were not forecast"
                            ),
                        )

    def close(self) -> None:
        """Stop the warm pool's processes; a later ``map`` starts a new pool."""
        pool, self._pool = self._pool, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _plan(self, payloads: list[dict[str, Any]]) -> tuple[bool, str]:
        """Whether to run here, and the one line saying why."""
        estimate = estimate_work(payloads)
        pool = f"pool of {self.workers} process(es)" + (" (warm)" if self._pool is not None else "")
        if estimate is None:
            return False, f"{pool}: a model that is deep or not in the cost table always runs in the pool"
        work, count, models = estimate
        what = f"{','.join(models)} on {count:,} series"
        if self.in_process is not None:
            return self.in_process, f"{'in-process' if self.in_process else pool}: {what}, as configured"
        # The pool costs its start (unless warm) plus transfer, and divides the work:
        # it wins once work * (1 - 1/workers) exceeds that cost. One process never divides it.
        start = 0.0 if self._pool is not None else POOL_START_SECONDS
        overhead = start + TASK_SECONDS * len(payloads) + TRANSFER_SECONDS_PER_SERIES * count
        saved = work * (1 - 1 / self.workers)
        cost = f"≈{work:.3g}s of work; {self.workers} processes would save ≈{saved:.3g}s"
        cost += f" for ≈{overhead:.3g}s of start and transfer"
        if saved <= overhead:
            return True, f"in-process: {what}, " + ("one process divides no work" if self.workers == 1 else cost)
        return False, f"{pool}: {what}, {cost}"

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = _new_pool(self.workers)
            # Shut the processes down with the engine, or at interpreter exit at the latest.
            self._finalizer = weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool

    def _run_pool(
        self, function: TaskFunction, payloads: list[dict[str, Any]]
    ) -> Generator[TaskOutcome, None, list[int]]:
        """Run every payload on the warm pool; return the indices a dead process left unfinished.

        A dead process breaks the whole pool: it is dropped, and the next call starts a new one.
        """
        try:
            futures = {self._executor().submit(function, payload): index for index, payload in enumerate(payloads)}
        except BrokenProcessPool:  # a process of the warm pool died between calls (the OOM killer)
            self.close()
            futures = {self._executor().submit(function, payload): index for index, payload in enumerate(payloads)}
        unfinished = yield from _gather(futures)
        if unfinished:
            self.close()
        return unfinished


def _new_pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    # Processes start on demand, so a call with fewer payloads than workers starts fewer.
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=mark_pool_process)


def _gather(futures: dict[Future[Any], int]) -> Generator[TaskOutcome, None, list[int]]:
    """Yield each future's outcome as it completes; return the indices whose process died."""
    unfinished: list[int] = []
    try:
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                unfinished.append(index)
                continue
            except Exception as exc:  # noqa: BLE001 - a failed task loses its batch, not the run
                log.warning("local task %d failed: %s: %s", index, type(exc).__name__, exc)
                yield index, exc
                continue
            yield index, result
    finally:
        # A caller that stops early (an error, Ctrl-C) leaves nothing queued on the warm pool.
        for future in futures:
            future.cancel()
    return sorted(unfinished)


def _run_alone(
    function: TaskFunction, payloads: list[dict[str, Any]], index: int
) -> Generator[TaskOutcome, None, list[int]]:
    """Run one payload in a fresh one-process pool; return ``[index]`` if its process died."""
    with _new_pool(1) as pool:
        return (yield from _gather({pool.submit(function, payloads[index]): index}))


@dataclass(frozen=True)
class SharedSlice:
    """Where one series' prices lie in a call's shared file: float64 values ``[start, start + length)``."""

    path: str
    start: int
    length: int


@contextlib.contextmanager
def _shared_prices(payloads: list[dict[str, Any]]) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """The payloads with each series' prices moved into one shared file, and whether they were.

    Prices that are not a 1-D float64 array, or a call with less than
    ``SHARED_PRICES_MIN_BYTES`` of them, stay in the payloads (pickled as
    before); so does everything when no directory has room for the file.
    The file is removed when the block ends, however it ends.
    """
    arrays = [
        item["prices"]
        for payload in payloads
        for item in payload.get("series") or []
        if isinstance(item, dict) and _shareable(item.get("prices"))
    ]
    size = sum(array.nbytes for array in arrays)
    path = _shared_file(size) if size >= SHARED_PRICES_MIN_BYTES else None
    if path is None:
        yield payloads, False
        return
    try:
        with open(path, "wb") as out:
            for array in arrays:
                out.write(np.ascontiguousarray(array).data)
    except OSError as exc:  # the directory filled up between the check and the write
        log.info("prices go pickled to the pool: could not write %s (%s)", path, exc)
        _remove(path)
        yield payloads, False
        return
    try:
        yield _with_slices(payloads, path), True
    finally:
        _remove(path)


def _shareable(prices: Any) -> bool:
    return isinstance(prices, np.ndarray) and prices.ndim == 1 and prices.dtype == np.float64


def _shared_file(size: int) -> str | None:
    """A new file name for ``size`` bytes in shared memory, or on the temporary disk; None if neither has room.

    A container's /dev/shm is often 64 MB: a call too big for it uses the
    temporary directory, whose pages stay in the page cache all the same.
    """
    for folder in ("/dev/shm", tempfile.gettempdir()):
        try:
            room = shutil.disk_usage(folder).free
        except OSError:
            continue
        if room > 2 * size and os.access(folder, os.W_OK):
            return os.path.join(folder, f"crypto_ml-prices-{os.getpid()}-{uuid.uuid4().hex}.f64")
    return None


def _with_slices(payloads: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """Copies of the payloads whose shareable prices are replaced by their ``SharedSlice``, in file order."""
    start = 0
    sent = []
    for payload in payloads:
        series = payload.get("series")
        if not series:
            sent.append(payload)
            continue
        items = []
        for item in series:
            if isinstance(item, dict) and _shareable(item.get("prices")):
                length = len(item["prices"])
                item = {**item, "prices": SharedSlice(path, start, length)}
                start += length
            items.append(item)
        sent.append({**payload, "series": items})
    return sent


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# The shared file this pool process mapped last: a call's payloads all name the same one.
_MAPPED: dict[str, np.ndarray] = {}


def _with_shared_prices(function: TaskFunction, payload: dict[str, Any]) -> Any:
    """Run ``function`` (in a pool process) on the payload with its series' prices read from the shared file."""
    series = payload.get("series") or []
    items = []
    for item in series:
        if isinstance(item, dict) and isinstance(item.get("prices"), SharedSlice):
            where = item["prices"]
            values = _MAPPED.get(where.path)
            if values is None:
                _MAPPED.clear()  # the last call's file: removed by now, unmapped here
                values = _MAPPED[where.path] = np.memmap(where.path, dtype=np.float64, mode="r")
            # A private, writable copy, as unpickling gave: the model may not write into the shared file.
            item = {**item, "prices": np.array(values[where.start : where.start + where.length])}
        items.append(item)
    return function({**payload, "series": items})


def _run_here(function: TaskFunction, payloads: list[dict[str, Any]]) -> Iterator[TaskOutcome]:
    """Run each payload in this process, in order, failing only the payload that raises (as the pool does)."""
    for index, payload in enumerate(payloads):
        try:
            # A pool process gets a pickled copy: a task that writes into its arrays must not reach the caller's.
            result = function(_private_copy(payload))
        except Exception as exc:  # noqa: BLE001 - a failed task loses its batch, not the run
            log.warning("local task %d failed: %s: %s", index, type(exc).__name__, exc)
            yield index, exc
            continue
        yield index, result


def _private_copy(value: Any) -> Any:
    """Dicts, lists and arrays copied (what pickling to a pool process gives), other values shared."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {key: _private_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_private_copy(item) for item in value]
    return value
