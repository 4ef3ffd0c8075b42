"""Tests for crypto_ml.data.exchange against a local server that answers like Binance's public API (no network)."""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from crypto_ml.data.exchange import DAY_MS, ExchangeSource, RetryPolicy
from crypto_ml.exceptions import (
    DataFormatError,
    ExchangeResponseError,
    ExchangeUnavailableError,
    InvalidParameterError,
    UnknownSymbolError,
)

from conftest import skip_or_fail
from fake_binance import FakeBinance, Listing, day_ms

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def needs_ccxt():
    """These tests drive ccxt; without the exchanges extra they skip (fail under CRYPTO_ML_REQUIRE_SERVICES=1)."""
    if importlib.util.find_spec("ccxt") is None:
        skip_or_fail("ccxt is not installed; install the exchanges extra: pip install -e '.[exchanges]'")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse, and fail the test for, any connection to a host that is not this machine: none is ever needed."""
    import ipaddress
    import socket

    connect, attempts = socket.socket.connect, []

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
            attempts.append(address[0])  # ccxt turns the refusal into a NetworkError: record it to fail loudly
            raise ConnectionRefusedError(f"a test tried to reach {address[0]}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    assert not attempts, f"the test tried to leave this machine: {attempts}"


@pytest.fixture
def server():
    listings = [
        Listing("BTC", "USDT", "2021-01-01", 30_000.0, 9e9),
        Listing("ETH", "USDT", "2023-06-01", 2_000.0, 5e9),
        Listing("DOGE", "USDT", "2023-01-01", 0.1, 1e9),
        Listing("LUNA", "USDT", "2022-01-01", status="BREAK"),
    ]
    with FakeBinance(listings, NOW) as fake:
        yield fake


class Sleeps(list):
    """Records the waits asked for instead of sleeping, so fault tests take milliseconds."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def source(server, **kwargs):
    kwargs.setdefault("retry", RetryPolicy(backoff=0.5, max_backoff=4.0))
    kwargs.setdefault("sleep", Sleeps())
    return ExchangeSource("binance", api_url=server.url, **kwargs)


def closed_days(server, symbol_id, since="1970-01-01"):
    """Every closed day the server has for a symbol, by its own clock."""
    listing = server.listings[symbol_id]
    return [
        np.datetime64(row[0] // DAY_MS, "D")
        for row in server.klines(listing, day_ms(since), None, 10**6)
        if row[0] + DAY_MS <= server.now_ms()
    ]


def test_api_url_moves_every_endpoint_on_the_public_origin_and_nothing_else(server):
    exchange = source(server)
    api = exchange.client.urls["api"]
    assert api["public"] == f"{server.url}/api/v3"
    assert api["sapi"] == f"{server.url}/sapi/v1"
    assert api["v1"] == f"{server.url}/api/v1"
    # Futures hosts are not ours to move: they stay what ccxt has (and are never asked, spot only).
    assert api["fapiPublic"] == __import__("ccxt").binance().urls["api"]["fapiPublic"]


def test_bad_exchange_and_url_are_refused_with_the_fix():
    with pytest.raises(InvalidParameterError, match=r"unknown exchange 'binanse'.*binance"):
        ExchangeSource("binanse")
    with pytest.raises(InvalidParameterError, match="must be an http"):
        ExchangeSource("binance", api_url="ftp://mirror")


def test_server_time_is_the_exchanges_clock_not_ours(server):
    assert source(server).server_time_ms() == server.now_ms()
    assert abs(server.now_ms() - time.time() * 1000) > DAY_MS  # the fake exchange lives in 2024


def test_every_closed_candle_once_across_pages_and_never_the_open_one(server):
    exchange = source(server)
    candles = exchange.closed_candles("BTC/USDT", 0, server.now_ms())
    expected = closed_days(server, "BTCUSDT")
    assert len(expected) == 1164 and candles.pages == 2  # Binance's 1000-candle page, twice
    assert candles.day.tolist() == expected
    assert candles.day[-1] == np.datetime64("2024-03-09")  # 2024-03-10 is still open on the exchange's clock
    starts = [int(q["startTime"]) for q in server.requested("/api/v3/klines", "BTCUSDT")]
    assert starts == [0, day_ms("2021-01-01") + 1000 * DAY_MS]
    assert np.all(candles.close > 0) and np.all(candles.high >= candles.low)


def test_a_day_is_closed_at_midnight_by_the_exchanges_clock(server):
    exchange = source(server)
    server.now = datetime(2024, 3, 10, 23, 59, 59, tzinfo=UTC)
    assert exchange.closed_candles("ETH/USDT", day_ms("2024-03-01"), server.now_ms()).day[-1] == np.datetime64(
        "2024-03-09"
    )
    server.now = datetime(2024, 3, 11, 0, 0, 0, tzinfo=UTC)
    assert exchange.closed_candles("ETH/USDT", day_ms("2024-03-01"), server.now_ms()).day[-1] == np.datetime64(
        "2024-03-10"
    )


def test_429_waits_for_retry_after_then_continues(server):
    sleeps = Sleeps()
    exchange = source(server, sleep=sleeps)
    server.fail(
        "/api/v3/klines",
        symbol="BTCUSDT",
        status=429,
        headers={"Retry-After": "7"},
        after=1,
        body='{"code":-1003,"msg":"Too much request weight used"}',
    )
    candles = exchange.closed_candles("BTC/USDT", 0, server.now_ms())
    assert sleeps == [7.0]
    assert candles.day.tolist() == closed_days(server, "BTCUSDT")  # the page after the wait, not skipped
    assert len(server.requested("/api/v3/klines", "BTCUSDT")) == 3


def test_retry_after_is_really_waited(server):
    exchange = source(server, sleep=time.sleep)
    server.fail("/api/v3/klines", status=429, headers={"Retry-After": "1"}, body='{"code":-1003,"msg":"slow down"}')
    started = time.monotonic()
    exchange.closed_candles("ETH/USDT", 0, server.now_ms())
    assert time.monotonic() - started >= 1.0
    first, second = [stamp for stamp, path, _ in server.requests if path == "/api/v3/klines"][:2]
    assert second - first >= 1.0


def test_a_418_ban_past_the_longest_wait_stops_everything_and_says_when_to_rerun(server):
    exchange = source(server, retry=RetryPolicy(max_wait=600))
    server.fail(
        "/api/v3/klines",
        status=418,
        headers={"Retry-After": "7200"},
        body='{"code":-1003,"msg":"Way too much request weight used; IP banned until 1710079200000."}',
    )
    with pytest.raises(ExchangeUnavailableError, match=r"HTTP 418.*7200 s.*run it again after") as caught:
        exchange.closed_candles("BTC/USDT", 0, server.now_ms())
    assert caught.value.stop_all is True
    assert server.url in str(caught.value)


def test_timeouts_are_retried_with_doubling_backoff_then_given_up(server):
    sleeps = Sleeps()
    exchange = source(server, timeout=0.2, sleep=sleeps, retry=RetryPolicy(attempts=3, backoff=0.5))
    server.fail("/api/v3/klines", kind="slow", delay=0.6, times=2)
    assert len(exchange.closed_candles("ETH/USDT", 0, server.now_ms())) == len(closed_days(server, "ETHUSDT"))
    assert sleeps == [0.5, 1.0]
    server.fail("/api/v3/klines", kind="slow", delay=0.6, times=3)
    with pytest.raises(
        ExchangeUnavailableError,
        match=r"failed .* for ETH/USDT 3 times \(no answer within 0.2 s\) "
        r"at http://127\.0\.0\.1:\d+/api/v3/klines",
    ):
        exchange.closed_candles("ETH/USDT", 0, server.now_ms())


def test_connection_resets_and_5xx_pages_are_retried(server):
    sleeps = Sleeps()
    exchange = source(server, sleep=sleeps)
    server.fail("/api/v3/klines", kind="reset", times=2)
    server.fail("/api/v3/klines", status=502, body="<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert len(exchange.closed_candles("ETH/USDT", 0, server.now_ms())) == len(closed_days(server, "ETHUSDT"))
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_persistent_html_5xx_page_is_named_in_the_error(server):
    exchange = source(server, retry=RetryPolicy(attempts=2, backoff=0))
    server.fail("/api/v3/klines", status=503, body="<html>Service Unavailable</html>", times=2)
    with pytest.raises(ExchangeUnavailableError, match="HTTP 503 with an HTML page"):
        exchange.closed_candles("ETH/USDT", 0, server.now_ms())


@pytest.mark.parametrize(
    "fault, kind",
    [
        ({"status": 200, "body": "<!DOCTYPE html><html><title>Down for maintenance</title></html>"}, "an HTML page"),
        ({"status": 403, "body": "<html><body>Request blocked</body></html>"}, "an HTML page"),
        (
            {"kind": "rewrite", "rewrite": lambda payload: __import__("json").dumps(payload)[:40]},
            "malformed or partial JSON",
        ),
        ({"status": 200, "body": "Gateway says no"}, "a non-JSON answer"),
    ],
)
def test_answers_that_are_not_the_documented_json_raise_a_typed_error(server, fault, kind):
    exchange = source(server)
    exchange.markets()
    server.fail("/api/v3/klines", **fault)
    with pytest.raises(ExchangeResponseError) as caught:
        exchange.closed_candles("ETH/USDT", 0, server.now_ms())
    message = str(caught.value)
    assert kind in message and "binance" in message and "ETH/USDT" in message
    assert f"{server.url}/api/v3/klines?" in message and "symbol=ETHUSDT" in message


def test_unknown_and_delisted_symbols_are_refused_by_name(server):
    exchange = source(server)
    with pytest.raises(UnknownSymbolError, match=r"does not list 'BTC/USD'.*did you mean BTC/USDT"):
        exchange.check_symbol("BTC/USD")
    with pytest.raises(UnknownSymbolError, match="LUNA/USDT as not trading"):
        exchange.check_symbol("LUNA/USDT")
    assert exchange.check_symbol("eth/usdt") == "ETH/USDT"


@pytest.mark.parametrize("bad", ["0", "-1.5", "NaN"])
def test_a_non_positive_or_nan_price_is_rejected_with_the_row_named(server, bad):
    exchange = source(server)

    def spoil(rows):
        rows[3][4] = bad
        return rows

    server.fail("/api/v3/klines", kind="rewrite", rewrite=spoil)
    with pytest.raises(DataFormatError, match=r"binance ETH/USDT 2023-06-04: close=\S+ is not a positive price"):
        exchange.closed_candles("ETH/USDT", 0, server.now_ms())


def test_top_pairs_are_ranked_by_quote_volume_among_active_ones(server):
    exchange = source(server)
    assert exchange.top_symbols(2, "usdt") == ["BTC/USDT", "ETH/USDT"]
    assert exchange.top_symbols(10, "USDT") == ["BTC/USDT", "ETH/USDT", "DOGE/USDT"]  # LUNA is not trading
    with pytest.raises(InvalidParameterError, match="no active pair against 'EUR'"):
        exchange.top_symbols(3, "EUR")


def test_the_open_day_is_excluded_even_when_the_local_clock_runs_ahead(server):
    """Our clock says 2026; had it judged, the exchange's open 2024-03-10 would look closed."""
    exchange = source(server)
    server.now = NOW + timedelta(hours=11, minutes=59)
    days = exchange.closed_candles("DOGE/USDT", day_ms("2024-03-01"), exchange.server_time_ms()).day
    assert np.datetime64("2024-03-10") not in days and days[-1] == np.datetime64("2024-03-09")
