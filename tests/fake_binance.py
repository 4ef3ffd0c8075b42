"""A local HTTP server that answers like Binance's public spot REST API, for tests that must not reach the internet.

It serves the four endpoints ``crypto-ml data fetch`` uses, in the documented
format (developers.binance.com, "Spot API > General endpoints / Market data"):

* ``GET /api/v3/time`` -> ``{"serverTime": ms}``;
* ``GET /api/v3/exchangeInfo`` -> ``{"timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols": [...]}``;
* ``GET /api/v3/klines?symbol=&interval=1d&startTime=&endTime=&limit=`` -> a list of 12-element arrays
  ``[open time, "open", "high", "low", "close", "volume", close time, "quote volume", trades,
  "taker buy base", "taker buy quote", "0"]``, prices as strings, at most ``limit`` (default 500,
  at most 1000) candles from ``startTime``, the still-open current day included, as Binance does;
* ``GET /api/v3/ticker/24hr`` -> the 24-hour statistics of every symbol (``quoteVolume`` ranks them).

Unknown symbols get Binance's ``400 {"code": -1121, "msg": "Invalid symbol."}``.

The server's clock is ``server.now`` (a UTC datetime the test sets), never the
machine's, so a test can move the exchange a day on. Candles are a
deterministic random walk per symbol, so two servers with the same listings
serve the same history. A test scripts faults with :meth:`FakeBinance.fail`:
status codes with headers (429/418 with ``Retry-After``), HTML pages, malformed
or truncated JSON, slow answers (timeouts) and dropped connections (resets).
Every request is logged in ``server.requests``.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DAY_MS = 86_400_000
DEFAULT_LIMIT, MAX_LIMIT = 500, 1000


def day_ms(day: str) -> int:
    """Milliseconds since the epoch of an ISO day's midnight UTC."""
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass
class Listing:
    """One trading pair: its history starts at ``listed`` (ISO day); ``gaps`` are days with no candle."""

    base: str
    quote: str
    listed: str
    start_price: float = 100.0
    volume: float = 1_000_000.0
    gaps: tuple[str, ...] = ()
    status: str = "TRADING"

    @property
    def id(self) -> str:
        return f"{self.base}{self.quote}"


@dataclass
class Fault:
    """A scripted misbehaviour for requests to ``path`` (and ``symbol``, when given), used ``times`` times.

    ``kind`` is ``status`` (answer ``status`` with ``body`` and ``headers``), ``reset``
    (close the connection without an answer), ``slow`` (wait ``delay`` seconds, then answer normally)
    or ``rewrite`` (answer normally after ``rewrite`` changed the decoded payload).
    """

    path: str
    kind: str = "status"
    symbol: str | None = None
    status: int = 500
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    rewrite: object = None
    times: int = 1
    after: int = 0  # let this many matching requests through first


class FakeBinance(ThreadingHTTPServer):
    """Binance's public spot API on 127.0.0.1; use as a context manager, or ``start()``/``stop()``."""

    daemon_threads = True

    def __init__(self, listings: list[Listing], now: datetime) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.listings = {listing.id: listing for listing in listings}
        self.now = now
        self.faults: list[Fault] = []
        self.requests: list[tuple[float, str, dict[str, str]]] = []
        # Upstream corrections: (symbol id, ISO day) -> close to serve instead of the walk's.
        self.corrections: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeBinance:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-binance", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (a timeout under test, a killed fetch) or a reset we made
        # ourselves: expected here, so no traceback on stderr. Anything else is still printed.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def fail(self, path: str, **kwargs: object) -> Fault:
        """Script a fault (see :class:`Fault`) and return it."""
        fault = Fault(path=path, **kwargs)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def requested(self, path: str, symbol: str | None = None) -> list[dict[str, str]]:
        """The query of every request to ``path`` (and ``symbol``) so far."""
        return [
            query for _, p, query in self.requests if p == path and (symbol is None or query.get("symbol") == symbol)
        ]

    # --- the data ---

    def now_ms(self) -> int:
        return int(self.now.timestamp() * 1000)

    def klines(self, listing: Listing, start_ms: int | None, end_ms: int | None, limit: int) -> list[list]:
        """The candles Binance would return: open times from ``start_ms`` up to the current (open) day."""
        now = self.now_ms()
        first = day_ms(listing.listed)
        current_open = now - now % DAY_MS
        start = first if start_ms is None else max(first, start_ms + (-start_ms) % DAY_MS)
        stop = current_open if end_ms is None else min(current_open, end_ms)
        gaps = {day_ms(day) for day in listing.gaps}
        rows = []
        open_ms = start
        while open_ms <= stop and len(rows) < limit:
            if open_ms not in gaps:
                rows.append(self._candle(listing, open_ms, now))
            open_ms += DAY_MS
        return rows

    def _candle(self, listing: Listing, open_ms: int, now: int) -> list:
        day_index = (open_ms - day_ms(listing.listed)) // DAY_MS
        # A deterministic walk: the close of day i depends only on the symbol and i.
        close = listing.start_price * math.exp(0.03 * math.sin(day_index * 0.7 + len(listing.base)) + 0.001 * day_index)
        open_price = listing.start_price * math.exp(
            0.03 * math.sin((day_index - 1) * 0.7 + len(listing.base)) + 0.001 * (day_index - 1)
        )
        is_open = open_ms + DAY_MS > now
        if is_open:
            # The open day's "close" is the last trade so far: it moves with the clock.
            close *= 1 + (now - open_ms) / DAY_MS * 0.01
        day = datetime.fromtimestamp(open_ms / 1000, tz=UTC).date().isoformat()
        close_text = self.corrections.get((listing.id, day), f"{close:.8f}")
        high = max(open_price, float(close_text)) * 1.01
        low = min(open_price, float(close_text)) * 0.99
        volume = listing.volume / listing.start_price
        return [
            open_ms,
            f"{open_price:.8f}",
            f"{high:.8f}",
            f"{low:.8f}",
            close_text,
            f"{volume:.8f}",
            open_ms + DAY_MS - 1,
            f"{listing.volume:.8f}",
            1000,
            f"{volume / 2:.8f}",
            f"{listing.volume / 2:.8f}",
            "0",
        ]

    def exchange_info(self) -> dict:
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [_symbol_info(listing) for listing in self.listings.values()],
        }

    def tickers(self) -> list[dict]:
        rows = []
        for listing in self.listings.values():
            last = self.klines(listing, self.now_ms() - DAY_MS, None, 2)
            price = last[-1][4] if last else "0"
            rows.append(
                {
                    "symbol": listing.id,
                    "priceChange": "0",
                    "priceChangePercent": "0",
                    "weightedAvgPrice": price,
                    "prevClosePrice": price,
                    "lastPrice": price,
                    "lastQty": "1",
                    "bidPrice": price,
                    "bidQty": "1",
                    "askPrice": price,
                    "askQty": "1",
                    "openPrice": price,
                    "highPrice": price,
                    "lowPrice": price,
                    "volume": f"{listing.volume / listing.start_price:.8f}",
                    "quoteVolume": f"{listing.volume:.8f}",
                    "openTime": self.now_ms() - DAY_MS,
                    "closeTime": self.now_ms(),
                    "firstId": 1,
                    "lastId": 2,
                    "count": 2,
                }
            )
        return rows

    def _take_fault(self, path: str, symbol: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path != path or fault.times <= 0 or (fault.symbol is not None and fault.symbol != symbol):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                return fault
        return None


def _symbol_info(listing: Listing) -> dict:
    return {
        "symbol": listing.id,
        "status": listing.status,
        "baseAsset": listing.base,
        "baseAssetPrecision": 8,
        "quoteAsset": listing.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.00000100",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.00000100",
            },
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


class _Handler(BaseHTTPRequestHandler):
    server: FakeBinance
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean; server.requests has every request

    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        self.server.requests.append((time.monotonic(), parsed.path, query))
        fault = self.server._take_fault(parsed.path, query.get("symbol"))
        if fault is not None and fault.kind == "reset":
            # An abortive close (RST), like a proxy dropping the connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "status":
            content_type = "text/html" if fault.body.lstrip().startswith("<") else "application/json"
            self._send(fault.status, fault.body, content_type, fault.headers)
            return
        status, payload = self._answer(parsed.path, query)
        if fault is not None and fault.kind == "rewrite" and callable(fault.rewrite):
            payload = fault.rewrite(payload)
        body = payload if isinstance(payload, str) else json.dumps(payload)
        self._send(status, body, "application/json", {})

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, object]:
        server = self.server
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/time":
            return 200, {"serverTime": server.now_ms()}
        if path == "/api/v3/exchangeInfo":
            return 200, server.exchange_info()
        if path == "/api/v3/ticker/24hr":
            return 200, server.tickers()
        if path == "/api/v3/klines":
            listing = server.listings.get(query.get("symbol", ""))
            if listing is None or listing.status != "TRADING":
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            if query.get("interval") != "1d":
                return 400, {"code": -1120, "msg": "Invalid interval."}
            limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
            return 200, server.klines(listing, start, end, limit)
        return 404, {"code": -1, "msg": f"no such endpoint {path}"}

    def _send(self, status: int, body: str, content_type: str, headers: dict[str, str]) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def serve_forever_from_cli() -> None:  # pragma: no cover - a manual aid: python -m tests.fake_binance
    """Run a server with two listings until interrupted, printing its URL (for trying the CLI by hand)."""
    now = datetime.now(UTC)
    with FakeBinance(
        [Listing("BTC", "USDT", "2017-08-17", 4000.0, 5e9), Listing("ETH", "USDT", "2017-08-17", 300.0, 2e9)], now
    ) as server:
        print(server.url, flush=True)
        while True:
            time.sleep(timedelta(hours=1).total_seconds())


if __name__ == "__main__":  # pragma: no cover
    serve_forever_from_cli()
