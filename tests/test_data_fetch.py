"""`crypto-ml data fetch` end to end, against a local server that answers like Binance (no network).

The fetch runs as users run it, a real ``crypto-ml`` subprocess, so killing it is a real SIGKILL.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from crypto_ml.data import CryptoLoader
from crypto_ml.data.store import PriceStore

from conftest import skip_or_fail
from fake_binance import DAY_MS, FakeBinance, Listing, day_ms

NOW = datetime(2024, 3, 10, 15, 30, tzinfo=UTC)
SINCE = "2019-06-01"


def listings():
    return [
        Listing("BTC", "USDT", "2019-01-01", 35_000.0, 9e9),
        Listing("ETH", "USDT", "2022-03-01", 2_500.0, 5e9),
        Listing("SOL", "USDT", "2022-01-01", 100.0, 2e9, gaps=("2023-02-10", "2023-02-11")),
    ]


@pytest.fixture(autouse=True)
def needs_ccxt():
    """These tests drive ccxt; without the exchanges extra they skip (fail under CRYPTO_ML_REQUIRE_SERVICES=1)."""
    if importlib.util.find_spec("ccxt") is None:
        skip_or_fail("ccxt is not installed; install the exchanges extra: pip install -e '.[exchanges]'")


@pytest.fixture
def server():
    with FakeBinance(listings(), NOW) as fake:
        yield fake


def fetch(server, store, *extra: str, symbols: str = "BTC/USDT,ETH/USDT", wait: bool = True):
    args = [
        sys.executable,
        "-m",
        "crypto_ml",
        "data",
        "fetch",
        "--exchange",
        "binance",
        "--api-url",
        server.url,
        "--since",
        SINCE,
        "--store",
        str(store),
    ]
    if symbols:
        args += ["--symbols", symbols]
    env = {**os.environ, "CRYPTO_ML_FETCH_BACKOFF": "0.01", "CRYPTO_ML_LOG_LEVEL": "INFO"}
    if not wait:
        return subprocess.Popen([*args, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run([*args, *extra], env=env, capture_output=True, text=True, timeout=120)


def expected_closed(server, symbol_id: str) -> list[np.datetime64]:
    listing = server.listings[symbol_id]
    rows = server.klines(listing, day_ms(SINCE), None, 10**6)
    return [np.datetime64(r[0] // DAY_MS, "D") for r in rows if r[0] + DAY_MS <= server.now_ms()]


def stored(store, symbol: str) -> pd.DataFrame:
    table = PriceStore(store).read("binance", symbol)
    return table.drop(["fetched_at"]).to_pandas()


def test_fetch_stores_every_closed_candle_once_then_only_what_is_new(server, tmp_path):
    store = tmp_path / "prices"
    done = fetch(server, store)
    assert done.returncode == 0, done.stderr
    for symbol, symbol_id in (("BTC/USDT", "BTCUSDT"), ("ETH/USDT", "ETHUSDT")):
        frame = stored(store, symbol)
        days = frame["date"].astype("datetime64[s]").to_numpy().astype("datetime64[D]").tolist()
        assert days == expected_closed(server, symbol_id)  # every closed day, once, in order
        assert days[-1] == np.datetime64("2024-03-09")  # 2024-03-10 is open on the exchange's clock
    assert "BTC/USDT" in done.stdout and "2 of 2 symbols ok" in done.stdout
    first_manifest = (store / "manifest.json").read_text()

    again = fetch(server, store)
    assert again.returncode == 0 and "0 new rows" in again.stdout
    assert (store / "manifest.json").read_text() == first_manifest  # nothing rewritten

    server.now += timedelta(days=1)
    later = fetch(server, store)
    assert later.returncode == 0 and "2 new rows" in later.stdout
    for symbol in ("BTC/USDT", "ETH/USDT"):
        assert stored(store, symbol)["date"].iloc[-1] == pd.Timestamp("2024-03-10").date()
    # An incremental fetch asks only for the last stored days, in one page per symbol.
    last_btc = server.requested("/api/v3/klines", "BTCUSDT")[-1]
    assert int(last_btc["startTime"]) == day_ms("2024-03-08")


def test_a_fetch_killed_at_any_moment_then_rerun_ends_as_an_uninterrupted_one(server, tmp_path):
    reference = tmp_path / "reference"
    assert fetch(server, reference, symbols="BTC/USDT,ETH/USDT,SOL/USDT").returncode == 0
    store = tmp_path / "killed"
    slow = server.fail("/api/v3/klines", kind="slow", delay=0.25, times=10**6)
    for moment in (0.4, 0.9, 1.4, 1.9, 2.6):
        process = fetch(server, store, symbols="BTC/USDT,ETH/USDT,SOL/USDT", wait=False)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        if (store / "manifest.json").exists():
            PriceStore(store).read()  # whatever was committed reads back, every hash matching
    slow.times = 0
    done = fetch(server, store, symbols="BTC/USDT,ETH/USDT,SOL/USDT")
    assert done.returncode == 0, done.stderr
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        assert stored(store, symbol).equals(stored(reference, symbol))
    parquet = {p.relative_to(store).as_posix() for p in store.rglob("*.parquet")}
    assert parquet == {entry["path"] for entry in PriceStore(store).entries()}  # no orphan left
    assert not list(store.rglob(".tmp-*"))


def test_one_bad_symbol_fails_alone_with_exit_1(server, tmp_path):
    done = fetch(server, tmp_path / "s", symbols="BTC/USDT,DOGE/USDT,ETH/USDT")
    assert done.returncode == 1
    assert "failed DOGE/USDT: UnknownSymbolError: binance does not list 'DOGE/USDT'" in done.stdout
    assert len(stored(tmp_path / "s", "ETH/USDT")) == len(expected_closed(server, "ETHUSDT"))
    assert "Traceback" not in done.stderr


def test_faults_midway_are_waited_out_or_retried_and_nothing_is_lost(server, tmp_path):
    server.fail(
        "/api/v3/klines",
        symbol="BTCUSDT",
        status=429,
        headers={"Retry-After": "1"},
        after=1,
        body='{"code":-1003,"msg":"Too much request weight used"}',
    )
    server.fail("/api/v3/klines", symbol="ETHUSDT", kind="reset")
    server.fail("/api/v3/klines", symbol="ETHUSDT", status=502, body="<html>502 Bad Gateway</html>")
    done = fetch(server, tmp_path / "s")
    assert done.returncode == 0, done.stderr
    assert "HTTP 429" in done.stderr and "waiting 1.0 s as told (Retry-After)" in done.stderr
    assert "retry 1 of 4" in done.stderr
    for symbol, symbol_id in (("BTC/USDT", "BTCUSDT"), ("ETH/USDT", "ETHUSDT")):
        assert len(stored(tmp_path / "s", symbol)) == len(expected_closed(server, symbol_id))


def test_an_html_page_fails_the_symbol_with_the_exchange_symbol_and_url(server, tmp_path):
    server.fail("/api/v3/klines", symbol="ETHUSDT", status=200, body="<html><title>Maintenance</title></html>")
    done = fetch(server, tmp_path / "s")
    assert done.returncode == 1
    assert "failed ETH/USDT: ExchangeResponseError: binance answered daily candles" in done.stdout
    assert f"{server.url}/api/v3/klines?" in done.stdout.replace("\n", "")
    assert len(stored(tmp_path / "s", "BTC/USDT")) == len(expected_closed(server, "BTCUSDT"))
    assert PriceStore(tmp_path / "s").entries(symbol="ETH/USDT") == []  # nothing half-written


def test_gaps_are_reported_and_never_filled(server, tmp_path):
    done = fetch(server, tmp_path / "s", symbols="SOL/USDT")
    assert done.returncode == 0
    assert "1 (2 d)" in done.stdout  # one gap of two days in the summary table
    report = CryptoLoader(tmp_path / "s").report()
    assert [(c.name, c.gaps, c.missing_days) for c in report.coins] == [("sol/usdt", 1, 2)]
    assert len(stored(tmp_path / "s", "SOL/USDT")) == len(expected_closed(server, "SOLUSDT"))


def test_the_progress_bar_shows_symbols_and_pages(server, tmp_path):
    done = fetch(server, tmp_path / "s", "--progress")
    assert done.returncode == 0, done.stderr
    assert "symbols" in done.stderr and "2/2" in done.stderr and "new" in done.stderr


def test_the_api_url_can_come_from_the_environment(server, tmp_path):
    args = [sys.executable, "-m", "crypto_ml", "data", "fetch", "--symbols", "ETH/USDT", "--store", str(tmp_path / "s")]
    env = {**os.environ, "CRYPTO_ML_EXCHANGE_API_URL": server.url, "CRYPTO_ML_FETCH_BACKOFF": "0"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(stored(tmp_path / "s", "ETH/USDT")) == len(server.klines(server.listings["ETHUSDT"], 0, None, 10**6)) - 1


def test_top_pairs_by_volume(server, tmp_path):
    done = fetch(server, tmp_path / "s", "--top", "2", "--quote", "USDT", symbols="")
    assert done.returncode == 0, done.stderr
    assert {e["symbol"] for e in PriceStore(tmp_path / "s").entries()} == {"BTC/USDT", "ETH/USDT"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--top", "2"), "give either --symbols"),
        (("--since", "01/02/2022"), "--since '01/02/2022' is not a date"),
        (("--exchange", "binanse"), "unknown exchange 'binanse'"),
        (("--api-url", "mirror.local"), "must be an http(s) URL"),
    ],
)
def test_bad_requests_exit_2_with_one_line(server, tmp_path, extra, message):
    done = fetch(server, tmp_path / "s", *extra)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr


def test_an_exchange_that_does_not_answer_is_exit_1_after_bounded_retries(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there

    class Nowhere:
        url = f"http://127.0.0.1:{port}"

    done = fetch(Nowhere, tmp_path / "s", "--timeout", "1")
    assert done.returncode == 1
    assert "failed its server time 5 times (connection reset or refused)" in done.stderr


def test_forecast_and_backtest_read_the_store_on_the_local_engine(server, tmp_path):
    store = tmp_path / "prices"
    assert fetch(server, store).returncode == 0
    args = [sys.executable, "-m", "crypto_ml"]
    out = tmp_path / "f.csv"
    done = subprocess.run(
        [*args, "forecast", "--engine", "local", "--data", str(store), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert set(frame["coin"]) == {"btc/usdt", "eth/usdt"} and (frame["status"] == "ok").all()
    assert set(frame["last_date"]) == {"2024-03-09"}
    done = subprocess.run(
        [*args, "backtest", "--engine", "local", "--data", str(store), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "btc/usdt" in done.stdout or "2 coins" in done.stdout + done.stderr


@pytest.mark.broker
def test_forecast_and_backtest_read_the_store_on_celery_workers_by_reference(server, tmp_path, start_worker):
    from crypto_ml.manager import CryptoManager

    store = tmp_path / "prices"
    assert fetch(server, store).returncode == 0
    start_worker("store1")
    loader = CryptoLoader(store)
    local = CryptoManager(loader, engine="local", workers=1).send_tasks("ewma", verbose=False)
    remote = CryptoManager(CryptoLoader(store), engine="celery").send_tasks("ewma", verbose=False, transfer="reference")
    assert remote.transfer == "reference" and remote.engine == "celery"
    assert [r.to_record() for r in remote] == [r.to_record() for r in local]
    backtest = CryptoManager(CryptoLoader(store), engine="celery").backtest("ewma", windows=3, transfer="reference")
    assert not backtest.failed and {r["coin"] for r in backtest.records} == {"btc/usdt", "eth/usdt"}
