"""The price store: closed daily candles from exchanges, kept as long-format Parquet under one folder.

Layout::

    STORE/
      manifest.json                       the commit point: every live file, its sha256, rows and dates
      binance/BTC-USDT/2024-3f2a9c1e07b4.parquet
      binance/BTC-USDT/2025-8d1e55a0c2f9.parquet
      binance/ETH-USDT/...

Each file holds one symbol's candles for one calendar year, with the columns
``exchange, symbol, date, open, high, low, close, volume, fetched_at``. A
daily fetch rewrites only the current year's file of each symbol; a candle
changed upstream rewrites only its year.

**Atomic writes.** File names carry a prefix of their content's sha256, so a
new version never overwrites the old one. A write puts the new files in place
(temporary name, fsync, rename), then replaces ``manifest.json`` the same way:
that rename is the commit. Readers read only what the manifest lists, so a
process killed at any moment leaves the store as it was before that symbol's
write, or with the write complete, never half-written. Files the manifest no
longer lists (superseded, or left by a killed write) are removed by the next
write. A lock file keeps two writers from interleaving.

Reading verifies every file against the manifest's sha256; a mismatch raises
:class:`~crypto_ml.exceptions.PriceStoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import PriceStoreError
from .files import write_atomic

if TYPE_CHECKING:
    import pyarrow as pa

    from .exchange import Candles

__all__ = ["PriceStore", "WriteSummary", "MANIFEST", "STORE_FORMAT", "is_price_store"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: The manifest's ``format``: a folder whose manifest says this is a price store.
STORE_FORMAT = "crypto_ml.price_store"
_VERSION = 1
_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_LOCK = ".lock"
# Hex digits of the sha256 kept in a file name: enough that two versions of one year never collide.
_NAME_HASH = 12


def is_price_store(path: Path) -> bool:
    """Whether ``path`` is a folder with a price-store manifest."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == STORE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _symbol_folder(symbol: str) -> str:
    """A file-system-safe folder name for a unified symbol: ``BTC/USDT`` -> ``BTC-USDT``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", symbol.replace("/", "-"))


@dataclass
class WriteSummary:
    """What one symbol's write changed: rows added, rows replaced (changed upstream) and files rewritten."""

    new_rows: int = 0
    replaced_rows: int = 0
    files_written: int = 0


class PriceStore:
    """A folder of daily candles with a manifest; created on the first write.

    Args:
        root: The store's folder.

    Raises:
        PriceStoreError: ``root`` exists but is a file, or a folder with a manifest that is not a price store's.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.expanduser(root))
        if self.root.exists() and not self.root.is_dir():
            raise PriceStoreError(f"--store {str(self.root)!r} is a file; give a folder (it is created if missing)")
        manifest = self.root / MANIFEST
        if manifest.exists() and not is_price_store(self.root):
            raise PriceStoreError(
                f"{manifest} exists but is not a crypto_ml price store's manifest; "
                "pick an empty or new folder for --store"
            )

    def __repr__(self) -> str:
        return f"PriceStore({str(self.root)!r})"

    # --- the manifest ---

    def manifest(self) -> dict[str, Any]:
        """The committed manifest; an empty one for a store nothing was written to yet."""
        path = self.root / MANIFEST
        if not path.exists():
            return {"format": STORE_FORMAT, "version": _VERSION, "updated_at": None, "files": []}
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PriceStoreError(f"{path} cannot be read ({exc}); restore it, or fetch into a new --store") from None
        if manifest.get("version") != _VERSION:
            raise PriceStoreError(
                f"{path} is version {manifest.get('version')!r}; this crypto_ml reads version "
                f"{_VERSION}: upgrade crypto_ml, or fetch into a new --store"
            )
        return manifest

    def entries(self, exchange: str | None = None, symbol: str | None = None) -> list[dict[str, Any]]:
        """Manifest entries, optionally of one exchange and symbol, oldest year first."""
        return sorted(
            (
                entry
                for entry in self.manifest()["files"]
                if (exchange is None or entry["exchange"] == exchange) and (symbol is None or entry["symbol"] == symbol)
            ),
            key=lambda entry: (entry["exchange"], entry["symbol"], entry["year"]),
        )

    def data_hash(self) -> str:
        """sha256 of the live files' names and hashes: equal stores hash equal, any changed candle changes it."""
        listing = sorted(f"{entry['path']}:{entry['sha256']}" for entry in self.manifest()["files"])
        return hashlib.sha256("\n".join(listing).encode()).hexdigest()

    def covered_since(self, exchange: str, symbol: str) -> str | None:
        """The earliest ``--since`` ever fetched for ``symbol`` (ISO day), or None if it never was.

        A fetch from a later day only needs what is new; one from an earlier day backfills.
        """
        return self.manifest().get("coverage", {}).get(f"{exchange} {symbol}")

    # --- reading ---

    def _read_file(self, entry: dict[str, Any]) -> pa.Table:
        import pyarrow.parquet as pq

        path = self.root / entry["path"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PriceStoreError(
                f"{path} is listed in {self.root / MANIFEST} but cannot be read ({exc.strerror}); "
                "fetch again into a new --store, or restore the file"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise PriceStoreError(
                f"{path} changed since it was written (sha256 {digest[:12]} != manifest's "
                f"{entry['sha256'][:12]}); restore it, or delete the store and fetch again"
            )
        return pq.read_table(io.BytesIO(data))

    def read(self, exchange: str | None = None, symbol: str | None = None) -> pa.Table:
        """Every stored candle (of one exchange and symbol, when given), each file checked against its hash.

        Raises:
            PriceStoreError: a listed file is missing or changed.
        """
        import pyarrow as pa

        tables = [self._read_file(entry) for entry in self.entries(exchange, symbol)]
        if not tables:
            return _empty_table()
        return pa.concat_tables(tables)

    # --- writing ---

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(
        self, exchange: str, symbol: str, candles: Candles, since: str, fetched_at: datetime | None = None
    ) -> WriteSummary:
        """Merge ``candles`` into the store, committing this symbol's new files in one manifest rename.

        ``since`` is the first day that was asked for (ISO): the store records the
        earliest one, so a later fetch knows the history before the first candle was
        already asked for. A day already stored with the same values is left alone
        (its file is not rewritten). A day whose values changed upstream is replaced, and each
        replacement is logged at WARNING with the old and new close.

        Returns:
            What changed.
        """
        import pyarrow as pa

        fetched_at = fetched_at or datetime.now(UTC)
        summary = WriteSummary()
        with self._locked():
            manifest = self.manifest()
            coverage = dict(manifest.get("coverage", {}))
            key = f"{exchange} {symbol}"
            covered = min(since, coverage.get(key, since))
            live = {entry["path"]: entry for entry in manifest["files"]}
            years = candles.day.astype("datetime64[Y]").astype(int) + 1970
            replaced: list[dict[str, Any]] = []
            added: list[dict[str, Any]] = []
            for year in np.unique(years):
                mask = years == year
                old_entry = next(
                    (
                        entry
                        for entry in live.values()
                        if entry["exchange"] == exchange and entry["symbol"] == symbol and entry["year"] == int(year)
                    ),
                    None,
                )
                old = self._read_file(old_entry).to_pydict() if old_entry else None
                merged, new_rows, changed = self._merge(exchange, symbol, old, candles, mask, fetched_at)
                if not new_rows and not changed:
                    continue
                table = pa.table(merged, schema=_schema())
                sink = io.BytesIO()
                import pyarrow.parquet as pq

                pq.write_table(table, sink, compression="zstd")
                data = sink.getvalue()
                digest = hashlib.sha256(data).hexdigest()
                relative = (
                    f"{_symbol_folder(exchange)}/{_symbol_folder(symbol)}/{int(year)}-{digest[:_NAME_HASH]}.parquet"
                )
                target = self.root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, data)
                days = merged["date"]
                added.append(
                    {
                        "path": relative,
                        "exchange": exchange,
                        "symbol": symbol,
                        "year": int(year),
                        "sha256": digest,
                        "rows": len(days),
                        "first": min(days).isoformat(),
                        "last": max(days).isoformat(),
                    }
                )
                if old_entry:
                    replaced.append(old_entry)
                summary.new_rows += new_rows
                summary.replaced_rows += changed
                summary.files_written += 1
            if not added and coverage.get(key) == covered:
                return summary
            coverage[key] = covered
            for entry in replaced:
                live.pop(entry["path"])
            for entry in added:
                live[entry["path"]] = entry
            manifest = {
                "format": STORE_FORMAT,
                "version": _VERSION,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": sorted(live.values(), key=lambda e: (e["exchange"], e["symbol"], e["year"])),
                "coverage": dict(sorted(coverage.items())),
            }
            write_atomic(self.root / MANIFEST, json.dumps(manifest, indent=1).encode())
            self._remove_unlisted(exchange, symbol, {entry["path"] for entry in manifest["files"]})
        return summary

    def _merge(
        self,
        exchange: str,
        symbol: str,
        old: dict[str, list] | None,
        candles: Candles,
        mask: np.ndarray,
        fetched_at: datetime,
    ) -> tuple[dict[str, list], int, int]:
        """One year's rows: the stored ones, updated by ``candles[mask]``; with counts of new and changed rows."""
        rows: dict[Any, dict[str, Any]] = {}
        if old:
            for i, day in enumerate(old["date"]):
                rows[day] = {name: old[name][i] for name in old}
        new_rows = changed = 0
        for row in np.flatnonzero(mask):
            day = candles.day[row].astype(object)
            values = {name: float(getattr(candles, name)[row]) for name in _PRICE_COLUMNS}
            stored = rows.get(day)
            if stored is not None:
                if all(stored[name] == values[name] for name in _PRICE_COLUMNS):
                    continue
                logger.warning(
                    "%s %s %s: changed upstream (close %r -> %r); the stored candle is replaced",
                    exchange,
                    symbol,
                    day,
                    stored["close"],
                    values["close"],
                )
                changed += 1
            else:
                new_rows += 1
            rows[day] = {"exchange": exchange, "symbol": symbol, "date": day, **values, "fetched_at": fetched_at}
        ordered = [rows[day] for day in sorted(rows)]
        return {name: [row[name] for row in ordered] for name in _schema().names}, new_rows, changed

    def _remove_unlisted(self, exchange: str, symbol: str, listed: set[str]) -> None:
        """Delete the symbol's files the manifest does not list, and a killed manifest write's temporary file.

        Unlisted are superseded versions and what a killed write of this symbol left.

        Only this symbol's folder is swept: a write of another symbol sweeps its own, so
        a fetch does not walk the whole store once per symbol.
        """
        folder = self.root / _symbol_folder(exchange) / _symbol_folder(symbol)
        for path in folder.iterdir() if folder.is_dir() else ():  # no folder: a symbol with no candle yet
            ours = path.suffix == ".parquet" or path.name.startswith(".tmp-")
            if ours and path.is_file() and path.relative_to(self.root).as_posix() not in listed:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for path in self.root.glob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("exchange", pa.string()),
            ("symbol", pa.string()),
            ("date", pa.date32()),
            *[(name, pa.float64()) for name in _PRICE_COLUMNS],
            ("fetched_at", pa.timestamp("ms", tz="UTC")),
        ]
    )


def _empty_table() -> pa.Table:
    return _schema().empty_table()
