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
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import shutil
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import exceptions
from .files import fsync_dir

if TYPE_CHECKING:
    from .loader import CryptoLoader

__all__ = ["CachedDataset", "open_dataset", "entry_path", "prune", "select", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

#: Bumped whenever the files or their meaning change: an entry of another version is never read.
FORMAT_VERSION = 1
_PREFIX = f"v{FORMAT_VERSION}-"
#: Each array file, its dtype and what its length is.
_ARRAYS = {"dates": "datetime64[ns]", "close": "float64", "offsets": "int64"}
#: Entries not opened for this long are removed after a build: a dataset that is
#: served is opened at least whenever a worker process starts, and rebuilding a
#: forgotten one costs one parse.
PRUNE_AFTER_DAYS = 14
#: A temporary build folder older than this belongs to a process that died mid-build.
_ABANDONED_BUILD_SECONDS = 3600
#: How long a process waits for another one's build before building its own copy
#: (the rename still keeps exactly one); longer than any parse seen, 10M rows: ~4 s.
_LOCK_WAIT_SECONDS = 600.0


class _Uncacheable(Exception):
    """The dataset cannot be stored as arrays faithfully (an unexpected error type); the caller uses the loader."""


@dataclass
class CachedDataset:
    """One dataset's loadable coins as flat arrays, memory-mapped from a cache entry (or in memory).

    Attributes:
        sha256: The dataset's content hash, the entry's key.
        path: The entry's folder; None when it could not be written and the arrays are this process's own.
        names: The coins whose series are stored, in ``offsets`` order.
        failures: ``{coin: (error type name, message)}`` for coins that fail to load.
        offsets: Coin ``i`` is rows ``offsets[i]:offsets[i + 1]`` of ``dates`` and ``close``.
        dates: datetime64[ns] midnights, each coin oldest first (read-only).
        close: float64 Close prices (read-only).
        built: Whether this process parsed the dataset (False: it mapped another process's entry).
    """

    sha256: str
    path: Path | None
    names: list[str]
    failures: dict[str, tuple[str, str]]
    offsets: np.ndarray
    dates: np.ndarray
    close: np.ndarray
    built: bool
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {name: i for i, name in enumerate(self.names)}

    def dated_prices(self, coin: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``coin``'s dates and prices, all of them, as read-only views; None when the coin is not in the dataset.

        ``coin`` is a normalised name (see :func:`~crypto_ml.data.schema.normalize_name`).

        Raises:
            DataFormatError: the coin is in the dataset but cannot be loaded (the
                same type and message as :meth:`CryptoLoader.get_dated_prices`).
        """
        number = self._index.get(coin)
        if number is None:
            failure = self.failures.get(coin)
            if failure is None:
                return None
            raise _error_class(failure[0])(failure[1])
        low, high = int(self.offsets[number]), int(self.offsets[number + 1])
        return self.dates[low:high], self.close[low:high]


def entry_path(cache_dir: str | os.PathLike[str], sha256: str) -> Path:
    """The folder of the entry for dataset ``sha256`` (whether or not it exists)."""
    return Path(cache_dir) / f"{_PREFIX}{sha256}"


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
        _Uncacheable: a coin failed with an error that cannot be stored faithfully.
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
    from .loader import check_selection, selected_rows

    low, high = selected_rows(dates, *check_selection(max_points, from_date, to_date))
    return np.array(dates[low:high], order="C"), np.array(prices[low:high], order="C")


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


# --- reading ---


def _open_entry(path: Path, sha256: str, check_content: bool = True) -> CachedDataset | None:
    """The entry at ``path`` mapped read-only, or None when it is missing; an invalid one is moved aside."""
    if not path.is_dir():
        return None
    try:
        dataset = _map_entry(path, sha256, check_content)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("dataset cache entry %s is invalid (%s); rebuilding it", path, exc)
        _discard(path)
        return None
    with contextlib.suppress(OSError):  # a read-only volume: the entry is still good
        os.utime(path)  # last use, for prune()
    return dataset


def _map_entry(path: Path, sha256: str, check_content: bool = True) -> CachedDataset:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT_VERSION or manifest.get("sha256") != sha256:
        raise ValueError(f"format {manifest.get('format')!r} / key {str(manifest.get('sha256'))[:12]} not ours")
    names = manifest["coins"]
    rows = int(manifest["rows"])
    arrays = {}
    for name, dtype in _ARRAYS.items():
        file = path / f"{name}.npy"
        expected = manifest["files"][file.name]
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise ValueError(f"{file.name} has {size} bytes, the manifest says {expected['bytes']}")
        array = np.load(file, mmap_mode="r", allow_pickle=False)
        length = len(names) + 1 if name == "offsets" else rows
        if array.dtype != np.dtype(dtype) or array.shape != (length,):
            raise ValueError(f"{file.name} is {array.dtype}{array.shape}, expected {dtype}({length},)")
        if check_content and _crc(file) != expected["crc32"]:
            raise ValueError(f"{file.name} does not match its CRC-32")
        arrays[name] = array
    offsets = np.asarray(arrays["offsets"])
    if len(offsets) and (offsets[0] != 0 or offsets[-1] != rows or np.any(np.diff(offsets) < 0)):
        raise ValueError("offsets.npy is not a partition of the rows")
    failures = {coin: (kind, message) for coin, (kind, message) in manifest["failures"].items()}
    for kind, _ in failures.values():
        _error_class(kind)
    return CachedDataset(sha256, path, names, failures, offsets, arrays["dates"], arrays["close"], built=False)


def _crc(path: Path) -> int:
    """CRC-32 of a file: catches a truncated, zeroed or bit-flipped array at several GB/s.

    Read through a mapping, not into bytes: the pages are the ones the arrays
    map anyway, and nothing is copied.
    """
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return zlib.crc32(b"")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return zlib.crc32(view)


def _error_class(name: str) -> type[exceptions.CryptoMLError]:
    cls = getattr(exceptions, name, None)
    if not (isinstance(cls, type) and issubclass(cls, exceptions.CryptoMLError)):
        raise TypeError(f"{name!r} is not a crypto_ml error")
    return cls


# --- building ---


@dataclass
class _Arrays:
    names: list[str]
    failures: dict[str, tuple[str, str]]
    offsets: np.ndarray
    dates: np.ndarray
    close: np.ndarray


def _build(loader: CryptoLoader, verify: Callable[[], None] | None) -> _Arrays:
    """Parse the whole dataset through ``loader``, while ``verify`` hashes the file in a thread."""
    problem: list[BaseException] = []

    def check() -> None:
        try:
            verify()  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - handed to the building thread below
            problem.append(exc)

    checker = threading.Thread(target=check, name="crypto-ml-dataset-hash") if verify is not None else None
    if checker is not None:
        checker.start()
    try:
        arrays = _parse(loader)
    except BaseException:
        if checker is not None:
            checker.join()
            if problem:  # the data is not the producer's: that is what the caller must hear
                raise problem[0] from None
        raise
    if checker is not None:
        checker.join()
        if problem:
            raise problem[0]
    return arrays


def _parse(loader: CryptoLoader) -> _Arrays:
    """Every coin's dates and prices, exactly as ``loader`` returns them: by the quick path when it applies."""
    quick = _parse_simple_parquet(loader)
    return quick if quick is not None else _parse_each_coin(loader)


def _parse_simple_parquet(loader: CryptoLoader) -> _Arrays | None:
    """A Parquet long table whose every coin the loader would slice untouched, read in three columns; else None.

    The loader converts and checks all of a file's columns, but only Date and
    Close reach a forecast, and the other columns can change nothing but a coin's
    cleanliness: a float column only through an infinite value, which its Parquet
    statistics rule out without reading it. So when every other numeric column
    is a float column whose statistics are finite, and each coin is one run of
    rows with valid dates strictly rising and positive Close prices (the
    loader's own conversions decide what is valid), the coins are exactly these
    slices. Anything else (one row group without statistics, a coin in several
    runs or newest first, a bad row) returns None and the loader does the work.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .long_table import _parquet_column, _parquet_layout, _read_parquet
    from .parsing import _arrow_floats, _parse_dates
    from .schema import NUMERIC_COLUMNS

    path = loader.data_path
    if path is None or not path.is_file() or not path.name.lower().endswith(".parquet"):
        return None
    try:
        schema, fields = _parquet_layout(path, path.name)
        metadata = pq.ParquetFile(str(path)).metadata
        others = [fields[name] for name in NUMERIC_COLUMNS if name != "Close" and name in fields]
        if not pa.types.is_floating(schema.field(fields["Close"]).type):
            return None
        for name in others:
            if not pa.types.is_floating(schema.field(name).type) or not _finite_statistics(metadata, name):
                return None
        table = _read_parquet(path, path.name, [fields["symbol"], fields["Date"], fields["Close"]], schema)
    except exceptions.CryptoMLError:
        return None  # the loader raises it, word for word
    if table.num_rows == 0:
        return None
    runs = _symbol_runs(_parquet_column(table, fields["symbol"], schema.field(fields["symbol"]).type))
    if runs is None:
        return None
    starts, run_ids, names = runs
    stops = np.append(starts[1:], table.num_rows)
    one_run_each = len(run_ids) == len(names) and run_ids.min() >= 0 and len(np.unique(run_ids)) == len(names)
    if not one_run_each:
        return None
    dates, excel = _parse_dates(_parquet_column(table, fields["Date"], schema.field(fields["Date"]).type))
    close, junk = _arrow_floats(table.column(fields["Close"]))
    del table
    change = starts[1:]
    # Everything the loader flags in Date or Close: NaT, Excel serials, a missing, non-positive or infinite Close.
    if np.isnat(dates).any() or excel.any() or junk.any() or not (close > 0).all():
        return None
    steps = np.diff(dates.view(np.int64))
    steps[change - 1] = 1  # a step from one coin to the next is not a coin's step
    if not (steps > 0).all():
        return None
    order = np.argsort(run_ids)  # coins in name order, each one run of rows, oldest first
    lengths = (stops - starts)[order]
    return _Arrays(
        names=names,
        failures={},
        offsets=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        dates=np.concatenate([dates[starts[i] : stops[i]] for i in order]),
        close=np.concatenate([close[starts[i] : stops[i]] for i in order]),
    )


def _symbol_runs(symbols: Any) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """The runs of rows with one coin: their first rows, their coin numbers and the coin names; None if not simple.

    The same numbers and names as :func:`~crypto_ml.data.long_table._symbol_ids`
    gives the rows, computed from each run's first row only: rows with the same
    dictionary index hold the same symbol. A column that is not dictionary
    encoded or has nulls returns None.
    """
    import pyarrow as pa

    from .long_table import _symbol_ids

    chunks = symbols.chunks if isinstance(symbols, pa.ChunkedArray) else None
    if not chunks or symbols.null_count or not all(pa.types.is_dictionary(chunk.type) for chunk in chunks):
        return None
    heads, offset = [], 0
    for chunk in chunks:
        if len(chunk):
            indices = chunk.indices.to_numpy(zero_copy_only=False)
            heads.append(np.concatenate(([0], np.flatnonzero(indices[1:] != indices[:-1]) + 1)) + offset)
        offset += len(chunk)
    if not heads:
        return None
    first_rows = np.concatenate(heads)
    head_ids, names = _symbol_ids(symbols.take(pa.array(first_rows)))
    # A run split by a row group boundary, or one coin spelt two ways in a row, is one run.
    keep = np.concatenate(([True], head_ids[1:] != head_ids[:-1]))
    return first_rows[keep], head_ids[keep], names


def _finite_statistics(metadata: Any, column: str) -> bool:
    """Whether every row group's statistics of ``column`` prove it holds no infinite value."""
    position = metadata.schema.names.index(column) if column in metadata.schema.names else None
    if position is None:
        return False
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(position)
        stats = chunk.statistics
        if stats is None:
            return False
        if not stats.has_min_max:
            if stats.has_null_count and stats.null_count == chunk.num_values:
                continue  # nothing but nulls
            return False
        if not (np.isfinite(stats.min) and np.isfinite(stats.max)):
            return False
    return True


def _parse_each_coin(loader: CryptoLoader) -> _Arrays:
    """Every coin through the loader's public API, so the cache holds exactly what it would return."""
    names: list[str] = []
    failures: dict[str, tuple[str, str]] = {}
    dates: list[np.ndarray] = []
    close: list[np.ndarray] = []
    for name in loader.get_crypto_names():
        try:
            coin_dates, coin_close = loader.get_dated_prices(name)
        except exceptions.CryptoMLError as exc:
            kind = type(exc).__name__
            if getattr(exceptions, kind, None) is not type(exc) or isinstance(exc, KeyError):
                # Re-raised from a name and a message, it must be the same class with the same str().
                raise _Uncacheable(f"{name}: {kind}") from exc
            failures[name] = (kind, str(exc))
            continue
        names.append(name)
        dates.append(coin_dates)
        close.append(coin_close)
    lengths = np.fromiter((len(d) for d in dates), dtype=np.int64, count=len(dates))
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return _Arrays(
        names=names,
        failures=failures,
        offsets=offsets,
        dates=np.concatenate(dates) if dates else np.zeros(0, dtype="datetime64[ns]"),
        close=np.concatenate(close) if close else np.zeros(0, dtype=np.float64),
    )


def _in_memory(sha256: str, arrays: _Arrays) -> CachedDataset:
    return CachedDataset(
        sha256, None, arrays.names, arrays.failures, arrays.offsets, arrays.dates, arrays.close, built=True
    )


def _publish(root: Path, target: Path, sha256: str, arrays: _Arrays) -> CachedDataset:
    """Write the entry in a temporary folder, fsync it, rename it into place; map whichever entry won."""
    temporary = root / f".tmp-{target.name}-{uuid.uuid4().hex}"
    temporary.mkdir()
    try:
        files = {}
        for name in _ARRAYS:
            file = temporary / f"{name}.npy"
            with open(file, "wb") as handle:
                np.save(handle, np.ascontiguousarray(getattr(arrays, name)), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            files[file.name] = {"bytes": file.stat().st_size, "crc32": _crc(file)}
        manifest = {
            "format": FORMAT_VERSION,
            "sha256": sha256,
            "rows": len(arrays.close),
            "coins": arrays.names,
            "failures": {coin: list(failure) for coin, failure in arrays.failures.items()},
            "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with open(temporary / "manifest.json", "w", encoding="utf-8") as handle:
            json.dump(manifest, handle)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(temporary)
        won = _rename_into_place(temporary, target)
    except BaseException:
        _discard(temporary)
        raise
    if not won:
        _discard(temporary)
    # The winner just wrote and checked these files; the CRC pass is for entries written by others.
    found = _open_entry(target, sha256, check_content=not won)
    if found is None:  # removed between the rename and here (a prune elsewhere): use what was just parsed
        return _in_memory(sha256, arrays)
    found.built = won
    return found


def _rename_into_place(temporary: Path, target: Path) -> bool:
    """Rename the built folder to ``target``; False when another process's entry is already there."""
    for _ in range(2):
        try:
            os.rename(temporary, target)
        except OSError:
            if not target.exists():
                raise
            if _open_entry(target, target.name[len(_PREFIX) :]) is not None:
                return False  # a valid entry won the race
            continue  # it was invalid and has been moved aside: try again
        fsync_dir(target.parent)
        return True
    return False


def _discard(path: Path) -> None:
    """Move ``path`` aside with one atomic rename (readers never see it half-deleted), then delete it."""
    trash = path.parent / f".trash-{uuid.uuid4().hex}"
    try:
        os.rename(path, trash)
    except OSError:
        trash = path  # already gone, or another process moved it first
    shutil.rmtree(trash, ignore_errors=True)


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


def _is_entry_name(name: str) -> bool:
    version, _, key = name.partition("-")
    return version[:1] == "v" and version[1:].isdigit() and len(key) == 64


def _prune_quietly(root: Path, keep: Path) -> None:
    try:
        removed = prune(root, keep=keep)
    except OSError as exc:
        logger.debug("could not prune the dataset cache %s: %s", root, exc)
        return
    if removed:
        logger.info("removed %d stale dataset cache entr(ies) from %s", len(removed), root)
