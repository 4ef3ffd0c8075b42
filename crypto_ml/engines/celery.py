"""The celery engine: the same task functions, run by workers over the broker."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from kombu.utils.url import maybe_sanitize_url

from ..exceptions import EngineError
from .base import Engine, TaskFunction, TaskOutcome

__all__ = ["CeleryEngine", "ping_workers", "queue_for_payload", "task_error", "task_label", "to_json_safe"]

log = logging.getLogger(__name__)


def ping_workers(timeout: float = 1.0, broker_url: str | None = None) -> dict[str, int]:
    """Workers answering on the broker, with their pool sizes.

    Args:
        timeout: Seconds to wait for the broker and for the workers' replies.
        broker_url: The broker to ask; None uses ``CRYPTO_ML_BROKER_URL``.

    Returns:
        ``{node name: processes}``; empty when the broker or every worker is silent.
    """
    from ..celery_app import app
    from ..config import get_settings

    url = broker_url or get_settings().broker_url
    try:
        with app.connection_for_write(url) as connection:
            # Fail fast when the broker is down instead of retrying for minutes.
            connection.ensure_connection(max_retries=1, timeout=timeout)
            stats = app.control.inspect(timeout=timeout, connection=connection).stats() or {}
    except Exception as exc:  # noqa: BLE001 - any broker error means "no worker"
        log.info("no broker at %s: %s", maybe_sanitize_url(url), exc)
        return {}
    return {node: int(info.get("pool", {}).get("max-concurrency", 1)) for node, info in stats.items()}


def queue_for_payload(payload: dict[str, Any]) -> str:
    """The queue a payload belongs on: heavy models go to their own worker pool.

    A payload with several ``models`` (a backtest) is heavy if any of them is:
    a light worker may not have the deep-learning libraries at all.
    """
    from ..celery_app import HEAVY_QUEUE, LIGHT_QUEUE
    from ..models.registry import is_heavy

    names = [name for name in (*(payload.get("models") or []), payload.get("model")) if name]
    return HEAVY_QUEUE if any(is_heavy(name) for name in names) else LIGHT_QUEUE


def to_json_safe(value: Any) -> Any:
    """Arrays to lists and numpy scalars to Python numbers, recursively."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: to_json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(item) for item in value]
    return value


class CeleryEngine(Engine):
    """Sends each payload as one task and yields results as workers finish them.

    Args:
        workers: Total worker processes answering (sizes batches); None asks the broker.
        timeout: Seconds to wait for the whole map before reporting the
            unfinished payloads as timed out; None uses ``CRYPTO_ML_TASK_TIMEOUT``.
    """

    name = "celery"

    def __init__(self, workers: int | None = None, timeout: float | None = None) -> None:
        from ..config import get_settings

        if workers is None:
            workers = sum(ping_workers(get_settings().probe_timeout).values())
        self.slots = max(int(workers or 1), 1)
        self.timeout = timeout or get_settings().task_timeout

    def map(self, function: TaskFunction, payloads: list[dict[str, Any]]) -> Iterator[TaskOutcome]:
        from celery.exceptions import TimeoutError as CeleryTimeoutError
        from celery.result import ResultSet

        from ..celery_app import app

        if not payloads:
            return
        task_name = f"crypto_ml.{function.__name__}"
        sent = [
            app.send_task(
                task_name,
                args=[to_json_safe(payload)],
                queue=queue_for_payload(payload),
                shadow=task_label(function.__name__, payload),
            )
            for payload in payloads
        ]
        index_of = {result.id: index for index, result in enumerate(sent)}
        pending = set(index_of)
        try:
            for task_id, meta in ResultSet(sent).iter_native(timeout=self.timeout, interval=0.05):
                if task_id not in pending:
                    continue
                pending.discard(task_id)
                if meta.get("status") == "SUCCESS":
                    yield index_of[task_id], _records(meta["result"], task_id, index_of[task_id])
                else:
                    yield index_of[task_id], task_error(meta)
        except CeleryTimeoutError:
            for task_id in pending:
                app.control.revoke(task_id)
                yield (
                    index_of[task_id],
                    EngineError(
                        f"task {task_id} did not finish within {self.timeout:g}s; "
                        "raise CRYPTO_ML_TASK_TIMEOUT or add workers"
                    ),
                )


def task_label(function: str, payload: dict[str, Any]) -> str:
    """A task's name in Flower and the worker logs: what it runs and which coins it holds.

    ``forecast_batch[svr_rbf: bitcoin … +24 coins]``, so an operator can tell which
    coins a stuck task holds (Celery's ``shadow``).
    """
    models = payload.get("models") or [payload.get("model")]
    model = ",".join(str(name) for name in models if name) or "?"
    coins = [str(item.get("coin")) for item in payload.get("series") or []]
    if not coins:
        return f"{function}[{model}]"
    rest = f" … +{len(coins) - 1} coin{'s' if len(coins) > 2 else ''}" if len(coins) > 1 else ""
    return f"{function}[{model}: {coins[0]}{rest}]"


def _records(result: Any, task_id: str, index: int) -> Any:
    """A batch task's records without the ``node`` each carries, logging that node (see ``crypto_ml.tasks``)."""
    if not isinstance(result, list):
        return result
    nodes = {record.pop("node", None) for record in result if isinstance(record, dict)}
    nodes.discard(None)  # a worker of an older release adds no node
    if nodes:
        log.info("batch %d (task %s) ran on %s", index, task_id, ", ".join(sorted(nodes)))
    return result


def task_error(meta: dict[str, Any]) -> EngineError:
    """A task-level failure (the whole batch raised, or it was revoked) as an exception naming the cause.

    ``meta`` is the result backend's: its ``result`` is the exception itself when Celery decoded it,
    or the JSON form ``{"exc_type", "exc_message"}`` when it did not.
    """
    result = meta.get("result")
    if isinstance(result, BaseException):
        message = f"{type(result).__name__}: {result}"
    elif isinstance(result, dict) and "exc_type" in result:
        message = f"{result['exc_type']}: {result.get('exc_message')}"
    else:
        message = str(result)
    return EngineError(f"task {meta.get('status', 'FAILURE').lower()}: {message}")
