"""A shared, read-only columnar cache of datasets: parsed once per cache folder, memory-mapped by every process.

A worker process given a dataset by reference used to read, check and group the
whole file before its first task; with N pool processes (or N workers on one
volume) that was N parses of the same bytes. Here the first process that needs a
dataset parses it once and writes each coin's dates and Close prices as plain
arrays; every other process maps those arrays instead, sharing one copy in the
page cache.

An entry is keyed by the dataset's sha256 (:meth:`CryptoLoader.data_hash`, the
reference's ``sha256``) and the format version, and holds the *whole* dataset,
unselected: ``max_points``, ``from_date`` and ``to_date`` are applied after
mapping (see :func:`select`), so references that differ only in their selection
share one entry. Layout, under ``CRYPTO_ML_CACHE_DIR``::

    v1-<sha256>/            one entry, never modified once renamed into place
        dates.npy           datetime64[ns], every loadable coin's dates, coin after coin, oldest first
        close.npy           float64, the matching Close prices
        offsets.npy         int64, len(coins) + 1: coin i is rows offsets[i]:offsets[i+1]
        manifest.json       format, sha256, coins, failures, and each file's size and CRC-32
    .v1-<sha256>.lock       flock'd while one process builds, so the others wait instead of parsing too
    .tmp-v1-<sha256>-<id>/  an entry being built

Only coins that load go in the arrays; a coin that fails is stored as its
error type and message and raises the same error on every read, as the loader
does. A name not in the dataset is not stored: the caller asks the loader, so an
unknown coin fails exactly as before.

Safety:

* **Atomic creation.** An entry is built in a temporary folder, every file is
  fsync'd, then the folder is renamed into place: a reader sees a complete entry
  or none. Two processes building at once both succeed; the one whose rename
  loses discards its copy and maps the winner's.
* **Verified on open.** Format version, key, every file's size and CRC-32 and the
  arrays' shapes are checked before an entry is used; a corrupt or incomplete
  entry is moved aside and rebuilt, never trusted.
* **Stale entries.** A changed dataset has another hash, hence another entry;
  entries of another format version, entries unused for
  :data:`PRUNE_AFTER_DAYS` days and abandoned builds are removed after each build.

The package, one module per part; imports run entry <- parse, pruning; all <- access:

* :mod:`~crypto_ml.data.cache.entry`: an entry's name, files and checks; mapping,
  publishing and discarding one (:class:`CachedDataset`, :func:`entry_path`).
* :mod:`~crypto_ml.data.cache.parse`: a loader's dataset as an entry's arrays.
* :mod:`~crypto_ml.data.cache.lock`: the build lock.
* :mod:`~crypto_ml.data.cache.pruning`: removing stale entries (:func:`prune`).
* :mod:`~crypto_ml.data.cache.access`: :func:`open_dataset` and :func:`select`.
"""

from .access import open_dataset, select
from .entry import FORMAT_VERSION, CachedDataset, entry_path
from .parse import Uncacheable
from .pruning import PRUNE_AFTER_DAYS, prune

__all__ = [
    "CachedDataset",
    "open_dataset",
    "entry_path",
    "prune",
    "select",
    "FORMAT_VERSION",
    "PRUNE_AFTER_DAYS",
    "Uncacheable",
]
