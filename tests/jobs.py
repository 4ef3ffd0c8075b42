"""Importable task functions for engine tests, so real pool processes and workers can run them."""

from __future__ import annotations

import os


def square(payload: dict) -> dict:
    """Square ``x``; raise when asked to; kill the whole process when asked to."""
    if payload.get("die"):
        os._exit(17)  # what a segfault or the OOM killer looks like to the pool
    if payload.get("fail"):
        raise ValueError(f"asked to fail on {payload['x']}")
    return {"x": payload["x"], "square": payload["x"] ** 2, "pid": os.getpid()}
