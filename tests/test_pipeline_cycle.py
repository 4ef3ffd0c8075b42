"""crypto_ml.pipeline.cycle and ``crypto-ml pipeline run``: one daily cycle, idempotent, one at a time.

Each ledger test runs on SQLite and on PostgreSQL (the ``ledger_url`` fixture).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from crypto_ml.data import CryptoLoader
from crypto_ml.exceptions import PipelineBusyError
from crypto_ml.pipeline import run_cycle
from crypto_ml.pipeline.cycle import lock_name

pytest.importorskip("sqlalchemy")

MODELS = "naive,ewma"
HORIZON = 3


def counts(url: str) -> dict[str, int]:
    from crypto_ml.ledger import open_ledger, table_counts

    with open_ledger(url) as ledger:
        return table_counts(ledger)


def long_csv(synth_dir: Path, path: Path, last_day: str) -> Path:
    """The synthetic coins up to ``last_day``, as one long-format CSV: the dataset as it stood that day."""
    loader = CryptoLoader(synth_dir, to_date=last_day)
    frames = []
    for coin in loader.get_crypto_names():
        frame = loader.get_df(coin)
        frames.append(pd.DataFrame({"symbol": coin, "date": frame["Date"].dt.date, "close": frame["Close"]}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def cycle(data: Path, url: str, **options):
    return run_cycle(data, **{"models": MODELS, "horizon": HORIZON, "engine": "local", "database_url": url, **options})


def test_a_daily_cycle_records_then_scores_what_matured(ledger_url, synth_dir, tmp_path):
    data = tmp_path / "prices.csv"
    coins = len(CryptoLoader(synth_dir).get_crypto_names())
    long_csv(synth_dir, data, "2017-09-20")
    first = cycle(data, ledger_url)
    assert first.status == "ok" and not first.failures and first.run_id is not None
    assert first.models == ["naive", "ewma"] and first.days == ["2017-09-20"]
    assert first.fetched_rows is None  # a plain dataset: nothing to fetch
    assert first.forecasts_inserted == coins * 2 * HORIZON and first.scored == 0
    assert first.waiting == coins * 2 * HORIZON

    # Two days later the data has two more prices: the new day's forecasts, and the steps that matured scored.
    long_csv(synth_dir, data, "2017-09-22")
    later = cycle(data, ledger_url)
    assert later.days == ["2017-09-22"] and later.forecasts_inserted == coins * 2 * HORIZON
    assert later.scored == coins * 2 * 2  # steps 1 and 2 of 2017-09-20's forecasts
    table = counts(ledger_url)
    assert table["forecasts"] == 2 * coins * 2 * HORIZON and table["scores"] == coins * 2 * 2
    assert table["interval_scores"] == table["scores"] * 2  # 80 % and 95 %


def test_the_same_day_twice_adds_nothing(ledger_url, synth_dir):
    first = cycle(synth_dir, ledger_url)
    before = counts(ledger_url)
    second = cycle(synth_dir, ledger_url)
    after = counts(ledger_url)
    assert first.forecasts_inserted > 0
    assert second.forecasts_inserted == 0 and second.forecasts_existing == first.forecasts_inserted
    assert second.scored == 0
    assert {**after, "runs": after["runs"] - 1} == before


def test_a_cycle_finding_the_lock_held_raises_busy_naming_the_holder(ledger_url, synth_dir):
    from crypto_ml.ledger import cycle_lock, open_ledger

    with (
        open_ledger(ledger_url) as ledger,
        cycle_lock(ledger, lock_name(synth_dir), holder="beat-1", seconds=60),
        pytest.raises(PipelineBusyError, match="beat-1"),
    ):
        cycle(synth_dir, ledger_url)
    assert counts(ledger_url)["runs"] == 0  # nothing ran
    assert cycle(synth_dir, ledger_url).status == "ok"  # released: the next cycle runs


def test_two_cycles_started_at_once_run_once(ledger_url, synth_dir):
    # Two processes, as two beats (or a manual run during a scheduled one) would be.
    counts(ledger_url)  # the schema exists, so both reach the lock at about the same moment
    args = [
        sys.executable,
        "-m",
        "crypto_ml",
        *run_args(synth_dir, ledger_url, "--models", "naive,drift,ewma,linear"),
    ]
    both = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((process.wait(120), process.communicate()) for process in both)
    (ok, (ok_out, _)), (busy, (_, busy_err)) = outcomes
    # The one that ran may have failed a coin (linear forecasts a negative price for one): 1, not busy.
    assert ok in (0, 1) and busy == 3, outcomes
    assert "forecast rows:" in ok_out and "is held by" in busy_err
    assert counts(ledger_url)["runs"] == 1


def test_a_lock_with_too_long_a_name_for_the_table_is_named_by_its_hash(tmp_path):
    deep = tmp_path / ("d" * 220)
    assert lock_name(tmp_path).endswith(str(tmp_path.resolve()))
    assert lock_name(deep).startswith("pipeline:sha256:") and len(lock_name(deep)) <= 200


# --- the command line ------------------------------------------------------------


def crypto_ml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crypto_ml", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def run_args(data: Path, url: str, *extra: str) -> list[str]:
    return [
        "pipeline",
        "run",
        "--data",
        str(data),
        "--database",
        url,
        "--models",
        MODELS,
        "--horizon",
        str(HORIZON),
        "--engine",
        "local",
        *extra,
    ]


def test_pipeline_run_end_to_end(ledger_url, synth_dir):
    coins = len(CryptoLoader(synth_dir).get_crypto_names())
    done = crypto_ml(*run_args(synth_dir, ledger_url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pipeline run 1" in done.stdout and f"{coins} coins x 2 model(s) (naive, ewma)" in done.stdout
    assert f"forecast rows: {coins * 2 * HORIZON} new, 0 already recorded" in done.stdout
    assert "origin 2017-09-22" in done.stdout and "no failures" in done.stdout
    again = crypto_ml(*run_args(synth_dir, ledger_url))
    assert again.returncode == 0 and f"0 new, {coins * 2 * HORIZON} already recorded" in again.stdout


def test_pipeline_run_takes_the_database_from_the_environment(synth_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'from-env.sqlite'}"
    args = ["pipeline", "run", "--data", str(synth_dir), "--models", "naive", "--engine", "local"]
    done = crypto_ml(*args, env={"CRYPTO_ML_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert counts(url)["runs"] == 1


def test_a_coin_that_fails_is_printed_with_its_reason_and_exit_1(ledger_url, coins):
    # The `coins` dataset has 30, 20 and 10 days; ewma needs 30 to warm up, naive forecasts all three.
    done = crypto_ml(*run_args(coins, ledger_url))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SeriesTooShortError" in done.stdout and "i-o_coin" in done.stdout.lower()
    assert "coin(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--models", "nosuch"), "nosuch"),
        (("--horizon", "0"), "horizon"),
        (("--levels", "150"), "150"),
        (("--param", "ewma.nosuch=1"), "nosuch"),
        (("--fetch",), "needs a price store"),
    ],
)
def test_bad_requests_exit_2_with_one_line(synth_dir, tmp_path, extra, message):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    done = crypto_ml(*run_args(synth_dir, url), *extra)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_bad_database_url_exits_2_naming_it_without_its_password(synth_dir):
    done = crypto_ml(*run_args(synth_dir, "nosuchdb://user:s3cret@host/db"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nosuchdb" in done.stderr and "s3cret" not in done.stderr


def test_pipeline_run_exits_3_while_another_cycle_holds_the_lock(ledger_url, synth_dir):
    from crypto_ml.ledger import cycle_lock, open_ledger

    with open_ledger(ledger_url) as ledger, cycle_lock(ledger, lock_name(synth_dir), holder="manual-run", seconds=60):
        done = crypto_ml(*run_args(synth_dir, ledger_url))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "busy" in done.stderr and "manual-run" in done.stderr


def test_pipeline_replay_end_to_end(ledger_url, synth_dir):
    args = ["pipeline", "replay", "--from", "2017-09-18", "--to", "2017-09-22", *run_args(synth_dir, ledger_url)[2:]]
    done = crypto_ml(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replay run 1" in done.stdout and "days 2017-09-18..2017-09-22" in done.stdout
    bad = crypto_ml("pipeline", "replay", "--from", "2017-09-22", "--to", "2017-09-18", "--data", str(synth_dir))
    assert bad.returncode == 2 and "after --to" in bad.stderr


# --- a price store: the cycle fetches first -------------------------------------------


@pytest.fixture
def binance():
    if importlib.util.find_spec("ccxt") is None:
        from conftest import skip_or_fail

        skip_or_fail("ccxt is not installed; install the exchanges extra: pip install -e '.[exchanges]'")
    from fake_binance import FakeBinance, Listing

    listings = [Listing("BTC", "USDT", "2023-01-01", 35_000.0, 9e9), Listing("ETH", "USDT", "2023-01-01", 2_500.0, 5e9)]
    with FakeBinance(listings, datetime(2024, 3, 10, 15, 30, tzinfo=UTC)) as fake:
        yield fake


def test_a_cycle_over_a_price_store_fetches_the_new_candles_first(ledger_url, binance, tmp_path, monkeypatch):
    store = tmp_path / "prices"
    fetched = crypto_ml(
        "data", "fetch", "--api-url", binance.url, "--symbols", "BTC/USDT,ETH/USDT", "--since", "2023-06-01",
        "--store", str(store),
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    monkeypatch.setenv("CRYPTO_ML_EXCHANGE_API_URL", binance.url)
    from crypto_ml.config import get_settings

    get_settings.cache_clear()
    first = cycle(store, ledger_url)
    assert first.fetched_rows == 0 and first.days == ["2024-03-09"] and not first.failures

    binance.now += timedelta(days=1)  # a day later, the exchange has closed 2024-03-10
    later = cycle(store, ledger_url)
    assert later.fetched_rows == 2 and later.days == ["2024-03-10"]
    assert later.scored == 2 * 2  # step 1 of yesterday's forecasts, two coins, two models
