"""``crypto-ml data fetch``: bring a price store up to date with an exchange's closed daily candles.

The first fetch of a symbol pulls its whole history from ``since``; later ones
pull from the last stored day on, re-reading the last ``overlap`` stored days
so that a late correction upstream is seen (and replaced, and logged). One
symbol's failure (unknown, delisted, a bad answer, a bad price) is recorded with
its reason and the others go on; a ban (418 past the longest wait) stops the
fetch, since every further request would lengthen it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import CryptoMLError, InvalidParameterError
from .exchange import DAY_MS, ExchangeSource, RetryPolicy
from .store import PriceStore

__all__ = ["SymbolFetch", "FetchReport", "fetch_prices", "parse_since"]

logger = logging.getLogger(__name__)

# Stored days re-read on every fetch: exchanges correct a candle now and then (a late trade,
# a fixed feed), almost always within a day or two; re-reading them costs nothing (same page).
DEFAULT_OVERLAP_DAYS = 2


@dataclass
class SymbolFetch:
    """One symbol's outcome: rows added and replaced, the stored date range, gaps, or the failure."""

    symbol: str
    status: str = "ok"
    new_rows: int = 0
    replaced_rows: int = 0
    pages: int = 0
    first: str | None = None
    last: str | None = None
    gaps: int = 0
    missing_days: int = 0
    error_type: str | None = None
    error: str | None = None


@dataclass
class FetchReport:
    """The whole fetch: the exchange, its clock, and one :class:`SymbolFetch` per symbol."""

    exchange: str
    store: str
    server_time: str
    symbols: list[SymbolFetch] = field(default_factory=list)

    @property
    def failed(self) -> list[SymbolFetch]:
        return [entry for entry in self.symbols if entry.status != "ok"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "store": self.store,
            "server_time": self.server_time,
            "symbols": [asdict(entry) for entry in self.symbols],
        }


def parse_since(value: str | None) -> int:
    """``--since`` (an ISO day) as ms since the epoch; None means the exchange's whole history.

    Raises:
        InvalidParameterError: not an ISO date such as 2017-08-01.
    """
    if value is None:
        return 0
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidParameterError(f"--since {value!r} is not a date; use YYYY-MM-DD, such as 2017-08-01") from None
    return int(day.timestamp() * 1000)


def _gaps(days: np.ndarray) -> tuple[int, int]:
    """Runs of missing days, and missing days in all, between the first and last of ``days`` (sorted)."""
    if len(days) < 2:
        return 0, 0
    steps = np.diff(days.astype("datetime64[D]").astype(np.int64))
    return int((steps > 1).sum()), int((steps[steps > 1] - 1).sum())


def _describe_stored(entry: SymbolFetch, stored: Any, exchange: str) -> None:
    """Fill ``entry``'s stored date range and gaps from the symbol's stored candles (an Arrow table)."""
    if not stored.num_rows:
        return
    days = stored.column("date").to_numpy().astype("datetime64[D]")
    entry.first, entry.last = str(days[0]), str(days[-1])
    entry.gaps, entry.missing_days = _gaps(days)
    if entry.gaps:
        logger.warning(
            "%s %s: %d gap(s), %d day(s) with no candle between %s and %s; they are not filled",
            exchange,
            entry.symbol,
            entry.gaps,
            entry.missing_days,
            entry.first,
            entry.last,
        )


def _day_number(day: str) -> int:
    """Days since the epoch of an ISO day."""
    return int(np.datetime64(day, "D").astype(np.int64))


def fetch_prices(
    exchange: str,
    store: str | Path,
    *,
    symbols: list[str] | None = None,
    top: int | None = None,
    quote: str = "USDT",
    since: str | None = None,
    api_url: str | None = None,
    timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    full: bool = False,
    overlap: int = DEFAULT_OVERLAP_DAYS,
    progress: Callable[[str, str, int], None] | None = None,
) -> FetchReport:
    """Fetch closed daily candles of ``symbols`` (or the ``top`` pairs against ``quote``) into ``store``.

    Args:
        exchange: A ccxt exchange id.
        store: The price store's folder (created if missing).
        symbols: Unified symbols such as ``BTC/USDT``; exclusive with ``top``.
        top: Take the exchange's ``top`` most traded pairs against ``quote`` instead.
        quote: The quote currency for ``top``.
        since: The first day of a new symbol's history (ISO); None: all the exchange has.
        api_url: Replaces the exchange's public REST origin (a mirror, proxy or test server).
        timeout: Seconds per request.
        retry: Retries and waits; see :class:`~crypto_ml.data.exchange.RetryPolicy`.
        full: Re-read everything from ``since``, not only what is new, replacing what changed upstream.
        overlap: Stored days re-read on an incremental fetch.
        progress: Called with ``(event, symbol, count)``: ``("symbols", "", n)`` once, then
            ``("start", symbol, 0)``, ``("page", symbol, candles)`` and ``("done", symbol, new rows)``.

    Returns:
        The report; symbols that failed carry their error type and message.

    Raises:
        InvalidParameterError: a bad request (both or neither of symbols and top, a bad date, unknown exchange).
        ExchangeError: the exchange cannot be reached at all (its clock or market list), so no symbol can be.
    """
    if (symbols is None) == (top is None):
        raise InvalidParameterError("give either --symbols BTC/USDT,ETH/USDT or --top N, not both or neither")
    if symbols is not None and not symbols:
        raise InvalidParameterError("--symbols is empty; give pairs such as BTC/USDT,ETH/USDT")
    if overlap < 0:
        raise InvalidParameterError(f"overlap={overlap!r} must be >= 0 days")
    since_ms = parse_since(since)
    price_store = PriceStore(store)
    source = ExchangeSource(exchange, api_url=api_url, timeout=timeout, retry=retry)
    # One reading of the exchange's clock for the whole fetch: a day that closes while
    # we page is left for the next fetch rather than judged by two clocks.
    now_ms = source.server_time_ms()
    report = FetchReport(
        exchange=exchange,
        store=str(price_store.root),
        server_time=datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(),
    )
    wanted = source.top_symbols(top, quote) if top is not None else list(dict.fromkeys(symbols or []))
    notify = progress or (lambda event, symbol, count: None)
    notify("symbols", "", len(wanted))
    stop_reason: CryptoMLError | None = None
    for requested in wanted:
        entry = SymbolFetch(symbol=requested)
        report.symbols.append(entry)
        notify("start", requested, 0)
        if stop_reason is not None:
            entry.status, entry.error_type, entry.error = "failed", type(stop_reason).__name__, str(stop_reason)
            notify("done", requested, 0)
            continue
        try:
            symbol = source.check_symbol(requested)
            entry.symbol = symbol
            start = since_ms
            entries = price_store.entries(exchange, symbol)
            covered = price_store.covered_since(exchange, symbol)
            if entries and covered is not None and not full and since_ms // DAY_MS >= _day_number(covered):
                # Resume after the last stored day, re-reading the last `overlap` of them.
                start = max(since_ms, (_day_number(entries[-1]["last"]) + 1 - overlap) * DAY_MS)

            def on_page(count: int, name: str = requested) -> None:
                notify("page", name, count)

            candles = source.closed_candles(symbol, start, now_ms, on_page=on_page)
            entry.pages = candles.pages
            written = price_store.write(exchange, symbol, candles, since=str(np.datetime64(since_ms // DAY_MS, "D")))
            entry.new_rows, entry.replaced_rows = written.new_rows, written.replaced_rows
            _describe_stored(entry, price_store.read(exchange, symbol), exchange)
        except CryptoMLError as exc:
            entry.status, entry.error_type, entry.error = "failed", type(exc).__name__, str(exc)
            logger.warning("%s %s: %s", exchange, requested, exc)
            if getattr(exc, "stop_all", False):
                stop_reason = exc
        notify("done", requested, entry.new_rows)
    return report
