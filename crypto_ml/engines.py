"""Execution engines: where a batch of tasks runs.

An engine maps a plain, importable task function (see ``forecasting``) over a
list of JSON-safe payloads and yields ``(index, result)`` pairs as they
complete. A payload that cannot run as a whole (its process died, it timed
out) yields ``(index, exception)`` instead, so the caller can report the
coins it carried and keep every other result.

``local`` runs a process pool on this machine; ``celery`` sends the same
function to workers over the broker. Both give the same results for the same
inputs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .deep import mark_pool_process
from .exceptions import EngineError, InvalidParameterError

__all__ = ["Engine", "LocalEngine", "resolve_engine", "ENGINE_NAMES"]

log = logging.getLogger(__name__)

ENGINE_NAMES = ("auto", "local", "celery")

TaskFunction = Callable[[dict[str, Any]], Any]
TaskOutcome = tuple[int, Any]


class Engine:
    """Interface of an execution engine."""

    name: str = ""
    #: Parallel task slots, used to size batches.
    slots: int = 1
    #: Why this engine was chosen (set by ``resolve_engine``), shown to the user.
    reason: str = ""

    def map(self, function: TaskFunction, payloads: list[dict[str, Any]]) -> Iterator[TaskOutcome]:
        """Run ``function`` on every payload; yield ``(index, result or exception)`` as each completes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever the engine holds (pools, connections)."""


class LocalEngine(Engine):
    """A process pool on this machine, one process per core by default.

    Processes start through a fork server: forking the caller directly is
    unsafe once it has threads (a progress bar, TensorFlow, a broker client).

    Args:
        workers: Number of processes; None uses every core.
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidParameterError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.slots = self.workers

    def map(self, function: TaskFunction, payloads: list[dict[str, Any]]) -> Iterator[TaskOutcome]:
        if not payloads:
            return
        unfinished = yield from self._run_pool(function, payloads, list(range(len(payloads))), self.workers)
        if unfinished:
            # A process died (segfault, out of memory) and took the pool with it.
            # Rerun what was left one payload per process, so only the payload
            # that kills its process is lost.
            log.warning("a local worker process died; rerunning %d unfinished task(s) one by one", len(unfinished))
            for index in unfinished:
                for lost in (yield from self._run_pool(function, payloads, [index], 1)):
                    yield (
                        lost,
                        EngineError(
                            f"the process running task {lost} died (crash or out of memory); "
                            "its series were not forecast"
                        ),
                    )

    @staticmethod
    def _run_pool(
        function: TaskFunction, payloads: list[dict[str, Any]], indices: list[int], workers: int
    ) -> Generator[TaskOutcome, None, list[int]]:
        """Run ``payloads[indices]`` in a fresh pool; return the indices a dead process left unfinished."""
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        unfinished: list[int] = []
        with ProcessPoolExecutor(
            max_workers=min(workers, len(indices)), mp_context=context, initializer=mark_pool_process
        ) as pool:
            futures = {pool.submit(function, payloads[index]): index for index in indices}
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
        return sorted(unfinished)


def resolve_engine(name: str | Engine | None = None, *, workers: int | None = None) -> Engine:
    """Turn an engine name (or None for the configured one) into an engine.

    ``auto`` uses ``celery`` when a worker answers on the configured broker
    within ``probe_timeout`` seconds, and ``local`` otherwise; the returned
    engine's ``reason`` says which and why. ``celery`` never falls back.

    Raises:
        InvalidParameterError: an unknown engine name.
        EngineError: ``celery`` was asked for and no worker answers.
    """
    if isinstance(name, Engine):
        return name
    from .config import get_settings

    settings = get_settings()
    choice = (name or settings.engine).strip().lower()
    if choice not in ENGINE_NAMES:
        raise InvalidParameterError(f"unknown engine {name!r}; valid engines are: {', '.join(ENGINE_NAMES)}")
    if choice == "local":
        engine: Engine = LocalEngine(workers or settings.workers)
        engine.reason = "local engine requested"
        return engine
    try:
        from .celery_engine import CeleryEngine, ping_workers
    except ImportError as exc:
        if choice == "celery":
            raise EngineError(f"the celery engine is not available: {exc}; install crypto-ml with celery") from exc
        engine = LocalEngine(workers or settings.workers)
        engine.reason = f"auto: celery engine unavailable ({exc}); using local"
        return engine
    answering = ping_workers(timeout=settings.probe_timeout)
    if choice == "celery":
        if not answering:
            raise EngineError(
                f"no celery worker answered on {_redact(settings.broker_url)} within {settings.probe_timeout:g}s; "
                "start one with `celery -A crypto_ml worker` or use --engine local"
            )
        engine = CeleryEngine(workers=sum(answering.values()))
        engine.reason = f"celery engine requested; {len(answering)} worker(s) answering"
        return engine
    if answering:
        engine = CeleryEngine(workers=sum(answering.values()))
        engine.reason = f"auto: {len(answering)} celery worker(s) answered on {_redact(settings.broker_url)}"
        return engine
    engine = LocalEngine(workers or settings.workers)
    engine.reason = (
        f"auto: no celery worker answered on {_redact(settings.broker_url)} within {settings.probe_timeout:g}s; "
        f"using local engine with {engine.workers} process(es)"
    )
    return engine


def _redact(url: str) -> str:
    """A broker URL with its password hidden, for messages and logs."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)
