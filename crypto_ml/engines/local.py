"""The local engine: a process pool on this machine."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Generator, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..deep import mark_pool_process
from ..exceptions import EngineError, InvalidParameterError
from .base import Engine, TaskFunction, TaskOutcome

__all__ = ["LocalEngine"]

log = logging.getLogger(__name__)


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
