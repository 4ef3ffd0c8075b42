"""Removing stale entries: another format version, unused for :data:`PRUNE_AFTER_DAYS` days, or abandoned builds."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .entry import _PREFIX, _discard, _is_entry_name

__all__ = ["prune", "PRUNE_AFTER_DAYS"]

logger = logging.getLogger(__name__)

#: Entries not opened for this long are removed after a build: a dataset that is
#: served is opened at least whenever a worker process starts, and rebuilding a
#: forgotten one costs one parse.
PRUNE_AFTER_DAYS = 14
#: A temporary build folder older than this belongs to a process that died mid-build.
_ABANDONED_BUILD_SECONDS = 3600


def prune(cache_dir: str | os.PathLike[str], *, keep: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove stale entries: another format version, unused for :data:`PRUNE_AFTER_DAYS`, or abandoned builds.

    A process that still maps a removed entry keeps reading it (the files live
    until unmapped); the next process rebuilds it.

    Returns:
        The folders removed.
    """
    root = Path(cache_dir)
    now = time.time() if now is None else now
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path == keep:
            continue
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        name = path.name
        if not path.is_dir():
            # The lock of an entry that was never built (the data did not match its hash, say).
            orphan = name.endswith(".lock") and not (root / name[1 : -len(".lock")]).exists()
            if orphan and age > _ABANDONED_BUILD_SECONDS:
                path.unlink(missing_ok=True)
            continue
        stale = (
            (name.startswith((".tmp-", ".trash-")) and age > _ABANDONED_BUILD_SECONDS)
            or (_is_entry_name(name) and not name.startswith(_PREFIX))
            or (name.startswith(_PREFIX) and age > PRUNE_AFTER_DAYS * 86400)
        )
        if stale:
            _discard(path)
            removed.append(path)
            lock = root / f".{name}.lock"
            if _is_entry_name(name):
                lock.unlink(missing_ok=True)
    return removed


def _prune_quietly(root: Path, keep: Path) -> None:
    try:
        removed = prune(root, keep=keep)
    except OSError as exc:
        logger.debug("could not prune the dataset cache %s: %s", root, exc)
        return
    if removed:
        logger.info("removed %d stale dataset cache entr(ies) from %s", len(removed), root)
