"""The engine interface: map a plain task function over JSON-safe payloads, yielding results as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Engine", "TaskFunction", "TaskOutcome", "redact"]

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


def redact(url: str) -> str:
    """A broker URL with its password hidden, for messages and logs."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)
