"""A named lock with an expiry, kept in the ledger's database: one pipeline cycle at a time.

Two beats started by mistake, or a manual run during a scheduled one, race
for the same row. Taking it is one atomic statement::

    INSERT INTO locks ... ON CONFLICT (name) DO UPDATE SET holder = ..., ...
        WHERE locks.expires_at < now

It inserts the row when nobody holds the lock, takes it over when the holder's
lock expired (a crashed cycle), and changes nothing otherwise; whether it
returns the row says which. PostgreSQL serialises the conflicting statements on
the row; SQLite lets one writer in at a time. Releasing deletes the row only if
this holder still has it, so a cycle that outlived its lock never releases the
lock of the cycle that took it over.

Expiry is compared with the clock of the process asking, in UTC: the hosts'
clocks must agree to well within the expiry (NTP does; the default is an hour).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..exceptions import InvalidParameterError, PipelineBusyError
from .database import Ledger, database_errors
from .schema import Lock, utc_now

__all__ = ["cycle_lock", "acquire_lock", "release_lock", "HeldLock", "default_holder"]

log = logging.getLogger(__name__)

LOCKS: Table = Lock.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class HeldLock:
    """A lock this process holds: its name, who holds it (us) and until when."""

    name: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime


def default_holder() -> str:
    """``host:pid:random``: names the process in a busy message, and is never shared by two acquisitions."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lock(ledger: Ledger, name: str, *, holder: str | None = None, seconds: float) -> HeldLock:
    """Take the lock ``name`` for ``seconds``, or fail at once if someone else holds it unexpired.

    A holder that already has the lock takes it again with a new expiry: a
    redelivered cycle task names itself by its task id, the same as the
    delivery whose worker died holding it.

    Raises:
        PipelineBusyError: another holder has it; the message names the holder and when its lock expires.
        InvalidParameterError: ``seconds`` is not positive.
    """
    if not seconds > 0:
        raise InvalidParameterError(f"a lock must expire after a positive number of seconds, got {seconds!r}")
    holder = holder or default_holder()
    now = utc_now()
    expires_at = now + dt.timedelta(seconds=seconds)
    row = {"name": name, "holder": holder, "acquired_at": now, "expires_at": expires_at}
    dialect: Any = postgresql if ledger.backend == "postgresql" else sqlite
    statement = dialect.insert(LOCKS).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=[LOCKS.c.name],
        set_={
            "holder": statement.excluded.holder,
            "acquired_at": statement.excluded.acquired_at,
            "expires_at": statement.excluded.expires_at,
        },
        # Taken over once expired; and retaken by its own holder: a Celery task redelivered after its
        # worker died holds it under the same task id, and must not wait out the expiry (an hour).
        where=(LOCKS.c.expires_at < now) | (LOCKS.c.holder == statement.excluded.holder),
    ).returning(LOCKS.c.holder)
    with database_errors(ledger, f"taking lock {name!r}"), ledger.engine.begin() as connection:
        # A row comes back only if the statement inserted or took over (the driver's rowcount is not reliable here).
        taken = connection.execute(statement).one_or_none() is not None
        if not taken:
            current = connection.execute(
                select(LOCKS.c.holder, LOCKS.c.acquired_at, LOCKS.c.expires_at).where(LOCKS.c.name == name)
            ).one_or_none()
    if not taken:
        if current is None:  # released between our statement and our look; the next try will get it
            raise PipelineBusyError(f"lock {name!r} was busy and has just been released; try again")
        raise PipelineBusyError(
            f"lock {name!r} is held by {current.holder} since {current.acquired_at:%Y-%m-%d %H:%M:%S} UTC, until "
            f"{current.expires_at:%Y-%m-%d %H:%M:%S} UTC: another cycle is running; wait for it to finish "
            "(or for the lock to expire, if it crashed)"
        )
    log.info("took lock %r as %s until %s", name, holder, expires_at)
    return HeldLock(name=name, holder=holder, acquired_at=now, expires_at=expires_at)


def release_lock(ledger: Ledger, lock: HeldLock) -> bool:
    """Release ``lock`` if its holder still has it; returns False when it had expired and someone else took it."""
    with database_errors(ledger, f"releasing lock {lock.name!r}"), ledger.engine.begin() as connection:
        released = (
            connection.execute(delete(LOCKS).where(LOCKS.c.name == lock.name, LOCKS.c.holder == lock.holder)).rowcount
            == 1
        )
    if not released:
        log.warning(
            "lock %r expired at %s while %s held it, and was taken over; another cycle may have run alongside",
            lock.name,
            lock.expires_at,
            lock.holder,
        )
    return released


@contextmanager
def cycle_lock(
    ledger: Ledger, name: str, *, holder: str | None = None, seconds: float | None = None
) -> Iterator[HeldLock]:
    """Hold the lock ``name`` for the block; release it at the end, whether the block raised or not.

    Args:
        ledger: The open ledger whose ``locks`` table holds it.
        name: What is locked, e.g. ``"pipeline:<data identity>"``.
        holder: Who holds it, for the busy message; default ``host:pid:random``.
        seconds: The lock expires this long after it was taken, so a crashed
            holder cannot block later cycles for ever; default
            ``CRYPTO_ML_PIPELINE_LOCK_SECONDS``.

    Yields:
        The held lock.

    Raises:
        PipelineBusyError: someone else holds it unexpired.
    """
    if seconds is None:
        from ..config import get_settings

        seconds = get_settings().pipeline_lock_seconds
    lock = acquire_lock(ledger, name, holder=holder, seconds=seconds)
    try:
        yield lock
    finally:
        release_lock(ledger, lock)
