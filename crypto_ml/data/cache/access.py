"""Opening a cached dataset (map its entry, or build it once under the lock) and selecting a coin's rows."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .entry import CachedDataset, _in_memory, _open_entry, _publish, entry_path
from .lock import _build_lock
from .parse import _build
from .pruning import _prune_quietly

if TYPE_CHECKING:
    from ..loader import CryptoLoader

__all__ = ["open_dataset", "select"]

logger = logging.getLogger(__name__)


def open_dataset(
    sha256: str,
    cache_dir: str | os.PathLike[str],
    loader: CryptoLoader | None = None,
    verify: Callable[[], None] | None = None,
) -> CachedDataset | None:
    """The cached dataset ``sha256``: mapped from its entry, or built from ``loader`` first.

    Args:
        sha256: The dataset's content hash (a reference's ``sha256``).
        cache_dir: The cache folder (``CRYPTO_ML_CACHE_DIR``); created if needed.
        loader: A loader of the whole dataset (no selection), used only when the
            entry is missing or invalid. None: only map an existing entry.
        verify: Called (in a thread, while the dataset is parsed) before a build is
            kept; it raises when ``loader``'s data is not ``sha256``, and the error
            propagates. Without it, the caller vouches for the data.

    Returns:
        The dataset, or None when there is no valid entry and no ``loader``.

    Raises:
        CryptoMLError: ``verify`` raised, or the dataset as a whole cannot be read
            (the loader's own error, as its first coin would raise it).
        Uncacheable: a coin failed with an error that cannot be stored faithfully.
    """
    root = Path(cache_dir)
    target = entry_path(root, sha256)
    found = _open_entry(target, sha256)
    if found is not None or loader is None:
        return found
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("cannot create the dataset cache %s (%s); this process parses the dataset alone", root, exc)
        return _in_memory(sha256, _build(loader, verify))
    with _build_lock(root / f".{target.name}.lock"):
        found = _open_entry(target, sha256)  # built by the process that held the lock
        if found is not None:
            return found
        start = time.perf_counter()
        arrays = _build(loader, verify)
        parsed = time.perf_counter()
        try:
            published = _publish(root, target, sha256, arrays)
        except OSError as exc:
            logger.warning("cannot write the dataset cache entry %s (%s); using this process's copy", target, exc)
            return _in_memory(sha256, arrays)
        logger.info(
            "dataset cache entry %s: %d coins, %d rows; parsed in %.2f s, written in %.2f s",
            target.name,
            len(arrays.names),
            len(arrays.close),
            parsed - start,
            time.perf_counter() - parsed,
        )
    _prune_quietly(root, keep=target)
    return published


def select(
    dates: np.ndarray, prices: np.ndarray, max_points: int | None, from_date: Any, to_date: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The rows :meth:`CryptoLoader.get_dated_prices` keeps for this selection, as writable copies.

    Dates are sorted and unique (the loader guarantees it for every coin), so
    the date bounds are a binary search and the point limit a slice, as the
    loader does for a clean coin.

    Raises:
        InvalidParameterError: a bad selection, with the loader's message.
    """
    from ..loader import check_selection, selected_rows

    low, high = selected_rows(dates, *check_selection(max_points, from_date, to_date))
    return np.array(dates[low:high], order="C"), np.array(prices[low:high], order="C")
