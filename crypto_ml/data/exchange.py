"""Daily candles from an exchange's public REST API, through ccxt.

ccxt gives one API over more than a hundred exchanges and spaces requests by
each exchange's rate limit. This module adds what a price history needs on
top of it:

* **closed candles only**, judged by the exchange's clock (its server time, or
  the ``Date`` of its answer where it has no time endpoint), so a skewed local
  clock can never let the still-open day in;
* **paging** through the exchange's per-request limit from ``since`` to the
  last closed day;
* **faults** handled the same way on every exchange: 429 and 418 wait for the
  ``Retry-After`` they carry (up to ``max_wait``); timeouts, resets and 5xx
  pages are retried with doubling backoff, a bounded number of times; anything
  that is not the exchange's documented JSON (an HTML page, malformed or
  truncated JSON) raises :class:`~crypto_ml.exceptions.ExchangeResponseError`
  naming the exchange, the symbol and the URL;
* **checked rows**: a non-positive or non-finite price, or a candle that is not
  a UTC day, raises :class:`~crypto_ml.exceptions.DataFormatError` naming the row.

ccxt is imported when an exchange is first made, so ``import crypto_ml`` stays light.
"""

from __future__ import annotations

import difflib
import email.utils
import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..exceptions import (
    DataFormatError,
    ExchangeError,
    ExchangeResponseError,
    ExchangeUnavailableError,
    InvalidParameterError,
    MissingDependencyError,
    UnknownSymbolError,
)

__all__ = ["RetryPolicy", "ExchangeSource", "Candles", "DAY_MS", "day_of"]

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
# When ccxt does not know an exchange's page size, ask for what most accept.
_DEFAULT_PAGE = 500
# How much of a bad answer an error quotes: enough to recognise an HTML page or a cut-off body.
_SNIPPET = 80


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up on one request.

    Attributes:
        attempts: Tries per request for timeouts, resets and 5xx answers (the first included).
        backoff: Seconds before the first retry; each retry doubles it, up to ``max_backoff``.
        max_backoff: The longest wait between two retries.
        max_wait: The longest ``Retry-After`` honoured. Binance answers 418 with bans of
            minutes to days; waiting days inside a fetch helps nobody, so past this the
            fetch stops and says when to run again.
        rate_limited: How many 429/418 waits one request may take before it gives up.
    """

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_wait: float = 600.0
    rate_limited: int = 10


@dataclass
class Candles:
    """Closed daily candles of one symbol, oldest first: ``day`` is ``datetime64[D]``, prices are float64."""

    day: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    pages: int = 0

    def __len__(self) -> int:
        return len(self.day)


def day_of(milliseconds: int) -> np.datetime64:
    """The UTC day that starts at ``milliseconds`` since the epoch."""
    return np.datetime64(int(milliseconds // DAY_MS), "D")


def _import_ccxt() -> Any:
    try:
        import ccxt
    except ImportError:
        raise MissingDependencyError(
            "fetching from exchanges needs ccxt; install it with: pip install 'crypto-ml[exchanges]'"
        ) from None
    return ccxt


def _replace_origin(urls: Any, old: str, new: str) -> Any:
    """``urls`` (ccxt's nested ``urls['api']``) with every URL on origin ``old`` moved to ``new``."""
    if isinstance(urls, str):
        return new + urls[len(old) :] if urls == old or urls.startswith(old + "/") else urls
    if isinstance(urls, dict):
        return {key: _replace_origin(value, old, new) for key, value in urls.items()}
    return urls


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class ExchangeSource:
    """One exchange's public market data, with the retries and checks a price store needs.

    Args:
        exchange: A ccxt exchange id, such as ``"binance"``.
        api_url: Replaces the exchange's public REST origin in every endpoint on it
            (for Binance, ``https://api.binance.com``): a mirror, a proxy, or a local
            test server. None keeps the exchange's own.
        timeout: Seconds before one request is abandoned (and retried).
        retry: The retry policy.
        sleep: How to wait (tests pass a recorder; the default sleeps).

    Raises:
        InvalidParameterError: ``exchange`` is not a ccxt exchange id, or ``api_url`` is not an http(s) URL.
        MissingDependencyError: ccxt is not installed.
    """

    def __init__(
        self,
        exchange: str,
        *,
        api_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        ccxt = _import_ccxt()
        if not isinstance(exchange, str) or exchange not in ccxt.exchanges:
            close = difflib.get_close_matches(str(exchange).lower(), ccxt.exchanges, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see ccxt.exchanges for the list"
            raise InvalidParameterError(f"unknown exchange {exchange!r}{hint}")
        if timeout <= 0:
            raise InvalidParameterError(f"timeout={timeout!r} must be a positive number of seconds")
        self.id = exchange
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._ccxt = ccxt
        options: dict[str, Any] = {"defaultType": "spot"}
        client = getattr(ccxt, exchange)({"enableRateLimit": True, "timeout": int(timeout * 1000)})
        # Spot markets only: Binance would otherwise also load its futures hosts
        # (fapi, dapi), which --api-url does not cover and prices never need.
        if isinstance(client.options.get("fetchMarkets"), dict) and "types" in client.options["fetchMarkets"]:
            options["fetchMarkets"] = {**client.options["fetchMarkets"], "types": ["spot"]}
        client.options.update(options)
        if api_url is not None:
            parts = urlsplit(api_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidParameterError(
                    f"--api-url {api_url!r} must be an http(s) URL such as http://127.0.0.1:8080"
                )
            api = client.urls["api"]
            public = (
                api
                if isinstance(api, str)
                else api.get("public")
                or api.get("rest")
                or next(value for value in api.values() if isinstance(value, str))
            )
            client.urls["api"] = _replace_origin(api, _origin(public), api_url.rstrip("/"))
        # ccxt keeps no status code; we need it to tell a 5xx (retry) from a 4xx (don't).
        self.last_status: int | None = None
        original = client.on_rest_response

        def remember_status(code, reason, url, method, headers, body, *rest):
            self.last_status = int(code)
            return original(code, reason, url, method, headers, body, *rest)

        client.on_rest_response = remember_status
        original_fetch = client.fetch

        def fetch_fresh(url, method="GET", headers=None, body=None):
            # What a failed request leaves behind must be its own, not the previous request's.
            self.last_status = None
            client.last_http_response = None
            client.last_response_headers = None
            return original_fetch(url, method, headers, body)

        client.fetch = fetch_fresh
        self.client = client
        features = (getattr(client, "features", None) or {}).get("spot") or {}
        self.page_size = int((features.get("fetchOHLCV") or {}).get("limit") or _DEFAULT_PAGE)

    def __repr__(self) -> str:
        return f"ExchangeSource({self.id!r})"

    # --- requests, with the fault handling every call shares ---

    def _call(self, what: str, symbol: str | None, request: Callable[[], Any]) -> Any:
        """Run one ccxt request, waiting out rate limits and retrying transient faults."""
        ccxt = self._ccxt
        failures = waits = 0
        while True:
            self.client.last_request_url = None
            try:
                result = request()
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                waits += 1
                delay = self._retry_after()
                rate_status = self.last_status or "429/418"
                if delay is None:
                    delay = min(self.retry.backoff * 2 ** (waits - 1), self.retry.max_backoff)
                if delay > self.retry.max_wait or waits > self.retry.rate_limited:
                    error = ExchangeUnavailableError(
                        f"{self.id} refused {what}{self._for(symbol)} with HTTP {rate_status} and asked us to wait "
                        f"{delay:.0f} s ({waits} rate-limit answers so far); that is past "
                        f"CRYPTO_ML_FETCH_MAX_WAIT={self.retry.max_wait:.0f} s, so the fetch stops: run it again "
                        f"after {_clock_after(delay)} ({self._url()})"
                    )
                    # A ban is per IP address: asking for the next symbol would only lengthen it.
                    error.stop_all = True  # type: ignore[attr-defined]
                    raise error from exc
                logger.warning(
                    "%s: HTTP %s on %s%s; waiting %.1f s as told (Retry-After), then continuing",
                    self.id,
                    rate_status,
                    what,
                    self._for(symbol),
                    delay,
                )
                self._sleep(delay)
                continue
            except ccxt.BadSymbol as exc:
                raise UnknownSymbolError(
                    f"{self.id} does not list {symbol!r} ({exc}); check the symbol, or whether it was delisted"
                ) from None
            except ccxt.NetworkError as exc:  # timeouts, resets, 5xx pages (ccxt's ExchangeNotAvailable)
                status = self.last_status
                if status is not None and 400 <= status < 500 and status != 408:
                    raise self._bad_answer(what, symbol, status) from None
                failures += 1
                cause = self._cause(exc)
                if failures >= self.retry.attempts:
                    raise ExchangeUnavailableError(
                        f"{self.id} failed {what}{self._for(symbol)} {failures} times ({cause}) at {self._url()}; "
                        "check the connection or --api-url, or run it again later"
                    ) from None
                delay = min(self.retry.backoff * 2 ** (failures - 1), self.retry.max_backoff)
                logger.warning(
                    "%s: %s on %s%s; retry %d of %d in %.1f s",
                    self.id,
                    cause,
                    what,
                    self._for(symbol),
                    failures,
                    self.retry.attempts - 1,
                    delay,
                )
                self._sleep(delay)
                continue
            except ccxt.ExchangeError as exc:
                if self.last_status is not None and not _is_json(self.client.last_http_response):
                    raise self._bad_answer(what, symbol, self.last_status) from None
                raise ExchangeError(f"{self.id} refused {what}{self._for(symbol)}: {exc} ({self._url()})") from None
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                # ccxt parsed something that was not the documented payload.
                raise self._bad_answer(what, symbol, self.last_status, detail=f"{type(exc).__name__}: {exc}") from None
            if self.client.last_http_response is not None and not _is_json(self.client.last_http_response):
                raise self._bad_answer(what, symbol, self.last_status)
            return result

    def _retry_after(self) -> float | None:
        headers = self.client.last_response_headers or {}
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            try:  # the HTTP-date form
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            return max(0.0, (when - datetime.now(UTC)).total_seconds())

    def _bad_answer(self, what: str, symbol: str | None, status: int | None, detail: str = "") -> ExchangeResponseError:
        body = self.client.last_http_response or ""
        kind = (
            "an HTML page"
            if body.lstrip()[:1] == "<"
            else ("malformed or partial JSON" if body.lstrip()[:1] in "[{" else "a non-JSON answer")
        )
        snippet = " ".join(body.split())[:_SNIPPET]
        status_text = f"HTTP {status} with " if status else ""
        extra = f"; {detail}" if detail else ""
        return ExchangeResponseError(
            f"{self.id} answered {what}{self._for(symbol)} with {status_text}{kind} ({snippet!r}{extra}) at "
            f"{self._url()}; this is not its documented API: check --api-url, a proxy in between, or run it again"
        )

    def _cause(self, exc: Exception) -> str:
        if isinstance(exc, self._ccxt.RequestTimeout) and self.last_status is None:
            return f"no answer within {self.client.timeout / 1000:g} s"
        if self.last_status is not None:
            body = self.client.last_http_response or ""
            return f"HTTP {self.last_status}" + (" with an HTML page" if body.lstrip()[:1] == "<" else "")
        return "connection reset or refused"

    def _url(self) -> str:
        return self.client.last_request_url or self.client.urls.get("api", {}).get("public", self.id)

    @staticmethod
    def _for(symbol: str | None) -> str:
        return f" for {symbol}" if symbol else ""

    # --- what the fetch needs ---

    def server_time_ms(self) -> int:
        """The exchange's clock in ms: its time endpoint, or the ``Date`` header of a market-data answer.

        Raises:
            ExchangeError: the exchange gives neither.
        """
        if self.client.has.get("fetchTime"):
            value = self._call("its server time", None, self.client.fetch_time)
            if isinstance(value, (int, float)) and value > 0:
                return int(value)
            raise self._bad_answer("its server time", None, self.last_status, detail=f"serverTime={value!r}")
        self.markets()
        headers = self.client.last_response_headers or {}
        date = headers.get("Date") if hasattr(headers, "get") else None
        if date:
            return int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
        raise ExchangeError(
            f"{self.id} tells neither its server time nor a Date header, so closed candles "
            "cannot be told from the open one; use another exchange"
        )

    def markets(self) -> dict[str, Any]:
        """The exchange's spot markets by unified symbol (``BTC/USDT``), loaded once."""
        if not self.client.markets:
            self._call("its market list", None, self.client.load_markets)
            if not isinstance(self.client.markets, dict) or not self.client.markets:
                raise self._bad_answer("its market list", None, self.last_status, detail="no markets")
        return self.client.markets

    def check_symbol(self, symbol: str) -> str:
        """``symbol`` as the exchange spells it.

        Raises:
            UnknownSymbolError: the exchange does not list it, or lists it as inactive (delisted).
        """
        markets = self.markets()
        market = markets.get(symbol) or markets.get(symbol.upper())
        if market is None:
            close = difflib.get_close_matches(symbol.upper(), list(markets), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownSymbolError(f"{self.id} does not list {symbol!r}{hint}")
        if market.get("active") is False:
            raise UnknownSymbolError(
                f"{self.id} lists {market['symbol']} as not trading (delisted or suspended); "
                "its history cannot be fetched"
            )
        return market["symbol"]

    def top_symbols(self, count: int, quote: str) -> list[str]:
        """The ``count`` active spot pairs against ``quote`` with the largest 24-hour quote volume.

        Raises:
            InvalidParameterError: ``count`` < 1, or no active pair trades against ``quote``.
        """
        if count < 1:
            raise InvalidParameterError(f"--top {count} must be at least 1")
        quote = quote.upper()
        candidates = [
            symbol
            for symbol, market in self.markets().items()
            if market.get("quote") == quote and market.get("spot", True) and market.get("active") is not False
        ]
        if not candidates:
            raise InvalidParameterError(f"{self.id} has no active pair against {quote!r}; pick another --quote")
        tickers = self._call(f"its 24-hour tickers against {quote}", None, self.client.fetch_tickers)

        def volume(symbol: str) -> float:
            value = (tickers.get(symbol) or {}).get("quoteVolume")
            return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0

        return sorted(candidates, key=lambda symbol: (-volume(symbol), symbol))[:count]

    def closed_candles(
        self, symbol: str, since_ms: int, now_ms: int, on_page: Callable[[int], None] | None = None
    ) -> Candles:
        """Every daily candle of ``symbol`` opening at or after ``since_ms`` and closed by ``now_ms``.

        Args:
            symbol: A unified symbol the exchange lists.
            since_ms: The first open time wanted (ms since the epoch).
            now_ms: The exchange's clock: a candle is closed once its day has ended by it.
            on_page: Called with the number of candles after each page.

        Raises:
            UnknownSymbolError: the exchange refuses the symbol.
            ExchangeResponseError, ExchangeUnavailableError: see the module docstring.
            DataFormatError: a candle with a bad price or time; the message names it.
        """
        current_open = now_ms - now_ms % DAY_MS
        rows: list[list[float]] = []
        pages = 0
        since = since_ms
        while since < current_open:

            def request(start: int = since) -> Any:
                return self.client.fetch_ohlcv(symbol, "1d", since=start, limit=self.page_size)

            page = self._call(f"daily candles since {day_of(since)}", symbol, request)
            pages += 1
            if not isinstance(page, list):
                raise self._bad_answer("daily candles", symbol, self.last_status, detail=f"got {type(page).__name__}")
            checked = [self._check_row(symbol, row) for row in page]
            if on_page is not None:
                on_page(len(checked))
            if not checked:
                break
            if checked[0][0] < since or any(b[0] <= a[0] for a, b in itertools.pairwise(checked)):
                raise self._bad_answer(
                    "daily candles",
                    symbol,
                    self.last_status,
                    detail="candles out of order or before the requested start",
                )
            rows.extend(row for row in checked if row[0] + DAY_MS <= now_ms)
            since = int(checked[-1][0]) + DAY_MS
        values = np.array(rows, dtype=np.float64).reshape(-1, 6)
        return Candles(
            day=(values[:, 0].astype(np.int64) // DAY_MS).astype("datetime64[D]"),
            open=values[:, 1],
            high=values[:, 2],
            low=values[:, 3],
            close=values[:, 4],
            volume=values[:, 5],
            pages=pages,
        )

    def _check_row(self, symbol: str, row: Any) -> list[float]:
        if not isinstance(row, (list, tuple)) or len(row) < 6 or not isinstance(row[0], (int, float)):
            raise self._bad_answer("daily candles", symbol, self.last_status, detail=f"a candle reads {row!r}")
        stamp = int(row[0])
        day = day_of(stamp)
        if stamp % DAY_MS:
            raise DataFormatError(
                f"{self.id} {symbol}: the candle at {stamp} ms does not open at midnight UTC, so it "
                "is not a daily close; this exchange's daily candles cannot be stored"
            )
        values = []
        for name, value in zip(("open", "high", "low", "close", "volume"), row[1:6], strict=True):
            number = float(value) if isinstance(value, (int, float)) else math.nan
            if not math.isfinite(number) or number < 0 or (number == 0 and name != "volume"):
                what = "a volume" if name == "volume" else "a positive price"
                raise DataFormatError(
                    f"{self.id} {symbol} {day}: {name}={value!r} is not {what}; the candle is "
                    "rejected, and nothing of this fetch is stored for the symbol"
                )
            values.append(number)
        return [float(stamp), *values]


def _is_json(body: str | None) -> bool:
    if body is None or body == "":
        return True  # nothing to judge; ccxt raised or returned on its own terms
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _clock_after(seconds: float) -> str:
    when = datetime.now(UTC).timestamp() + seconds
    return datetime.fromtimestamp(when, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
