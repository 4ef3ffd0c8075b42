"""What a job stores for each of its coins: the records of a finished task, as the CLI's ``--out`` holds them.

The job runner (``runner``) hands each collected task here: a task's records
become one ``StoredRecord`` per forecast (keyed by coin) or per backtest window
(keyed by coin, model and window), each with its place in the request; a task
that failed as a whole, or left a coin out, becomes a failure record per coin,
with the reason.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import EngineError
from ..records import failure_record
from .jobs import POSITION_STRIDE, StoredRecord

__all__ = ["batch_records", "coin_records", "failure_label"]


def failure_label(kind: str, task: dict[str, Any]) -> str:
    """The model name(s) a failure record carries, as the CLI labels them."""
    return str(task["model"]) if kind == "forecast" else ",".join(task["models"])


def batch_records(
    kind: str,
    task: dict[str, Any],
    coins: list[str],
    positions: list[int],
    outcome: list[dict[str, Any]] | BaseException,
    manager: Any,
) -> list[StoredRecord]:
    """One finished task's records to store: its coins' records, or a failure per coin.

    Args:
        kind: ``"forecast"`` or ``"backtest"``.
        task: The job's checked task keys (``CryptoManager.forecast_task``/``backtest_task``).
        coins: The task's coins, and ``positions`` their places in the request.
        outcome: The task's records, or the exception it ended with.
        manager: The ``CryptoManager`` that dates and orders backtest records.
    """
    by_coin: dict[str, list[dict[str, Any]]] = {}
    if isinstance(outcome, BaseException):
        reason: BaseException | str = outcome
    elif not isinstance(outcome, list):
        reason = EngineError(f"the task returned {type(outcome).__name__}, not a list of records")
    else:
        reason = "the task returned no record for this coin"
        for record in outcome:
            record.pop("node", None)  # which worker ran it: the engine logs it, the CLI's records lack it
            by_coin.setdefault(str(record.get("coin")), []).append(record)
    label = failure_label(kind, task)
    stored: list[StoredRecord] = []
    for coin, position in zip(coins, positions, strict=True):
        found = by_coin.get(coin) or [failure_record(coin, label, reason)]
        stored.extend(coin_records(kind, task, coin, position, found, manager))
    return stored


def coin_records(
    kind: str, task: dict[str, Any], coin: str, position: int, found: list[dict[str, Any]], manager: Any
) -> list[StoredRecord]:
    """A coin's records as the CLI's ``--out`` JSON holds them, with their keys and positions."""
    if kind == "forecast":
        from ..results import CoinForecast

        record = CoinForecast.from_record(found[0]).to_record()
        return [(coin, coin, position * POSITION_STRIDE, record["status"], record)]
    records = manager.backtest_records(coin, found, task)
    return [
        (
            f"{coin}|{record.get('model')}|{record.get('window')}",
            coin,
            position * POSITION_STRIDE + index,
            "ok" if record.get("status", "ok") == "ok" else "failed",
            record,
        )
        for index, record in enumerate(records)
    ]
