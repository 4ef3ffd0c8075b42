"""Prices by reference: a worker reads the producer's dataset itself, once per process, and checks its hash.

The payload names a dataset (path, date filters, sha256) and each series only
its coin. A worker whose copy hashes differently fails loudly instead of
forecasting other data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import DataFormatError

__all__ = ["dataset_reference", "load_series", "load_dated_series"]


def dataset_reference(loader: Any) -> dict[str, Any]:
    """What a worker needs to read the same data as ``loader``: path, filters and content hash."""
    return {
        "path": str(Path(loader.data_path).resolve()),
        "max_points": loader.max_points,
        "from_date": loader.from_date.date().isoformat() if loader.from_date is not None else None,
        "to_date": loader.to_date.date().isoformat() if loader.to_date is not None else None,
        "sha256": loader.data_hash(),
    }


# Loaders kept by this process, so a worker parses a dataset once, not once per task.
_LOADERS: dict[tuple[Any, ...], Any] = {}
_MAX_CACHED_LOADERS = 4


def load_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, str]:
    """Prices and last date of ``coin`` from a referenced dataset.

    The producer's path is used when this machine has it; otherwise this
    worker's ``CRYPTO_ML_DATA_DIR``. Either way the content must hash the same.

    Raises:
        DataFormatError: the data is missing here or differs from the producer's.
        UnknownCoinError: no such coin in the dataset.
    """
    dates, prices = _reference_series(reference, coin)
    return prices, str(dates[-1].astype("datetime64[D]"))


def load_dated_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, list[str]]:
    """Prices of ``coin`` from a referenced dataset and the ISO date of every price (backtests date their windows).

    Raises:
        DataFormatError: the data is missing here or differs from the producer's.
        UnknownCoinError: no such coin in the dataset.
    """
    dates, prices = _reference_series(reference, coin)
    return prices, np.datetime_as_string(dates, unit="D").tolist()


def _reference_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, np.ndarray]:
    """``coin``'s dates and prices from the referenced dataset, read once per process and checked against its hash."""
    from .config import get_settings
    from .data import CryptoLoader

    path = Path(reference["path"])
    if not path.exists():
        path = get_settings().resolved_data_dir()
    key = (
        str(path),
        reference.get("max_points"),
        reference.get("from_date"),
        reference.get("to_date"),
        reference.get("sha256"),
    )
    loader = _LOADERS.get(key)
    if loader is None:
        if not path.exists():
            raise DataFormatError(
                f"this worker cannot read the producer's data at {reference['path']}; mount it there, "
                "set CRYPTO_ML_DATA_DIR on the worker, or send prices inline (--transfer inline)"
            )
        loader = CryptoLoader(
            path,
            max_points=reference.get("max_points"),
            from_date=reference.get("from_date"),
            to_date=reference.get("to_date"),
        )
        expected = reference.get("sha256")
        if expected and loader.data_hash() != expected:
            raise DataFormatError(
                f"this worker's data at {path} differs from the producer's (sha256 {loader.data_hash()[:12]} "
                f"!= {expected[:12]}); point CRYPTO_ML_DATA_DIR at the same files or use --transfer inline"
            )
        if len(_LOADERS) >= _MAX_CACHED_LOADERS:
            _LOADERS.clear()
        _LOADERS[key] = loader
    dates, prices = loader.get_dated_prices(coin)
    if not prices.size:
        raise DataFormatError(f"{coin} has no prices in the selected date range")
    return dates, prices
