"""Prices by reference: a worker reads the producer's dataset itself, once per host, and checks its hash.

The payload names a dataset (path, date filters, sha256) and each series only
its coin. A worker whose copy hashes differently fails loudly instead of
forecasting other data.

The first process that needs a dataset parses it into the shared cache
(:mod:`crypto_ml.data.cache`, under ``CRYPTO_ML_CACHE_DIR``); every other pool
process, on this host or one sharing the volume, maps that entry instead of
parsing the file again. The entry is found by the reference's sha256, so a
process that maps it needs neither the file nor its hash. A coin the entry does
not know, a reference without a hash, or a dataset that cannot be cached goes
through the loader as before.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .exceptions import CryptoMLError, DataFormatError

if TYPE_CHECKING:
    from .data.cache import CachedDataset

__all__ = ["dataset_reference", "load_series", "load_dated_series"]

logger = logging.getLogger(__name__)


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
# Cached datasets this process has mapped (or built), by sha256; None: it cannot be cached, use the loader.
_DATASETS: dict[str, CachedDataset | None] = {}


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
    """``coin``'s dates and prices from the referenced dataset: from the shared cache, else read and checked once."""
    found = _cached_series(reference, coin)
    if found is None:
        dates, prices = _loader(reference).get_dated_prices(coin)
    else:
        from .data.cache import select

        dates, prices = select(
            *found, reference.get("max_points"), reference.get("from_date"), reference.get("to_date")
        )
    if not prices.size:
        raise DataFormatError(f"{coin} has no prices in the selected date range")
    return dates, prices


def _cached_series(reference: dict[str, Any], coin: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``coin``'s whole series from the shared cache; None when the loader must answer (unknown coin, no cache)."""
    from .data.cache import Uncacheable, open_dataset
    from .data.schema import normalize_name

    sha256 = reference.get("sha256")
    if not sha256 or not isinstance(coin, str):
        return None
    if sha256 not in _DATASETS:
        from .config import get_settings

        cache_dir = Path(os.path.expanduser(get_settings().cache_dir))
        path = _local_path(reference)
        from .data import CryptoLoader

        loader = None
        if path.exists():
            try:
                loader = CryptoLoader(path)
            except CryptoMLError:
                return None  # not a dataset: the loader path raises it, word for word
        try:
            # The hash is checked on a loader of its own: it runs in a thread beside the parse.
            dataset = open_dataset(sha256, cache_dir, loader, verify=lambda: _check_hash(CryptoLoader(path), reference))
        except Uncacheable as exc:
            logger.info("dataset %s is read without the cache: %s", sha256[:12], exc)
            dataset = None
        except CryptoMLError:
            # The file cannot be read, or is not the producer's: the loader raises it, as before.
            dataset = None
        if dataset is None and loader is None:
            return None  # neither an entry nor the file: the loader path says why
        if len(_DATASETS) >= _MAX_CACHED_LOADERS:
            _DATASETS.clear()
        _DATASETS[sha256] = dataset
    dataset = _DATASETS[sha256]
    return None if dataset is None else dataset.dated_prices(normalize_name(coin))


def _local_path(reference: dict[str, Any]) -> Path:
    """The producer's path when this machine has it, else this worker's ``CRYPTO_ML_DATA_DIR``."""
    from .config import get_settings

    path = Path(reference["path"])
    return path if path.exists() else get_settings().resolved_data_dir()


def _check_hash(loader: Any, reference: dict[str, Any]) -> None:
    expected = reference.get("sha256")
    actual = loader.data_hash()
    if expected and actual != expected:
        raise DataFormatError(
            f"this worker's data at {loader.data_path} differs from the producer's (sha256 {actual[:12]} "
            f"!= {expected[:12]}); point CRYPTO_ML_DATA_DIR at the same files or use --transfer inline"
        )


def _loader(reference: dict[str, Any]) -> Any:
    """The loader of the referenced dataset with its selection, made and hash-checked once per process."""
    from .data import CryptoLoader

    path = _local_path(reference)
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
        _check_hash(loader, reference)
        if len(_LOADERS) >= _MAX_CACHED_LOADERS:
            _LOADERS.clear()
        _LOADERS[key] = loader
    return loader
