"""One cache entry on disk: its name, its files, how it is checked and mapped, published and discarded.

An entry is a folder ``v<FORMAT_VERSION>-<sha256>`` holding ``dates.npy``,
``close.npy``, ``offsets.npy`` and ``manifest.json`` (see :mod:`crypto_ml.data.cache`).
:class:`CachedDataset` is an entry mapped read-only (or a build kept in memory
when it cannot be written); ``_Arrays`` is what a build hands over to be written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import shutil
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import exceptions
from ..files import fsync_dir

__all__ = ["CachedDataset", "entry_path", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

#: Bumped whenever the files or their meaning change: an entry of another version is never read.
FORMAT_VERSION = 1
_PREFIX = f"v{FORMAT_VERSION}-"
#: Each array file, its dtype and what its length is.
_ARRAYS = {"dates": "datetime64[ns]", "close": "float64", "offsets": "int64"}


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


@dataclass
class _Arrays:
    """A parsed dataset, the fields of :class:`CachedDataset` before they are written as an entry."""

    names: list[str]
    failures: dict[str, tuple[str, str]]
    offsets: np.ndarray
    dates: np.ndarray
    close: np.ndarray


def entry_path(cache_dir: str | os.PathLike[str], sha256: str) -> Path:
    """The folder of the entry for dataset ``sha256`` (whether or not it exists)."""
    return Path(cache_dir) / f"{_PREFIX}{sha256}"


def _is_entry_name(name: str) -> bool:
    version, _, key = name.partition("-")
    return version[:1] == "v" and version[1:].isdigit() and len(key) == 64


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


# --- writing ---


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
