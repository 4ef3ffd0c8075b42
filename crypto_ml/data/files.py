"""Durable file writes shared by the price store, DataFrames written for workers, and the dataset cache.

A reader must see a file's old version or its new one, never part of it, even
when the writer is killed or the machine loses power: write a temporary file
beside it, fsync it, rename it over the target, fsync the folder.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never part of it."""
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)
