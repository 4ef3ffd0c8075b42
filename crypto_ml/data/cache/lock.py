"""The build lock: while one process parses a dataset, the others wait for its entry instead of parsing too."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: How long a process waits for another one's build before building its own copy
#: (the rename still keeps exactly one); longer than any parse seen, 10M rows: ~4 s.
_LOCK_WAIT_SECONDS = 600.0


class _build_lock:
    """An exclusive flock on ``path`` for one build, so the other processes wait and then map its result.

    Only an optimisation: where flock is unavailable (Windows, some network
    volumes) or the wait runs past :data:`_LOCK_WAIT_SECONDS`, the process builds
    anyway and the atomic rename keeps one entry. The kernel releases the lock of
    a process that dies mid-build.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> _build_lock:
        try:
            import fcntl

            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except (ImportError, OSError):
            return self
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    logger.warning("waited %.0f s for another build of %s; building too", _LOCK_WAIT_SECONDS, self.path)
                    return self
                time.sleep(0.02)
            except OSError:
                return self  # no locking on this volume

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
