"""crypto_ml.ledger.scoring: each matured step scored once, with the backtest's own per-step metrics."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from sqlalchemy import select

from crypto_ml.evaluation.metrics import coverage, mae, winkler_score
from crypto_ml.exceptions import UnknownCoinError
from crypto_ml.ledger import record_forecasts, score_matured, start_run, table_counts
from crypto_ml.ledger.schema import ForecastInterval, ForecastStep, IntervalScore, Score

from ledger_helpers import day, iso, price_history, real_records

ORIGIN = day("2024-01-01")


def record(ledger, records, params_by_model=None):
    return record_forecasts(ledger, start_run(ledger, "test", {}), records, params_by_model or {})


def hand_record(coin="Handcoin", origin="2024-01-01"):
    """Three steps with an 80 % interval, from 2024-01-02 to 2024-01-04."""
    return {
        "coin": coin,
        "model": "naive",
        "status": "ok",
        "forecast": [10.0, 20.0, 30.0],
        "levels": [80],
        "lo_80": [9.0, 15.0, 20.0],
        "hi_80": [11.0, 25.0, 28.0],
        "dates": ["2024-01-02", "2024-01-03", "2024-01-04"],
        "last_date": origin,
    }


def prices_from(table):
    """A price source from {coin: {iso date: price}}; an unknown coin raises UnknownCoinError, as a loader does."""

    def prices(coin):
        if coin not in table:
            raise UnknownCoinError(f"no coin {coin!r}")
        days = sorted(table[coin])
        return np.array(days, dtype="datetime64[D]"), np.array([table[coin][d] for d in days])

    return prices


def scored_rows(ledger):
    """Every scored step by (coin, model, origin, step): point, actual, abs_error, {level: (inside, interval_score)}."""
    with ledger.engine.connect() as connection:
        steps = connection.execute(
            select(ForecastStep.__table__, Score.actual, Score.abs_error).join(
                Score, Score.forecast_id == ForecastStep.id
            )
        ).mappings()
        result = {}
        by_id = {}
        for row in steps:
            key = (row["coin"], row["model"], row["origin_date"], row["step"])
            result[key] = {"point": row["point"], "actual": row["actual"], "abs_error": row["abs_error"], "levels": {}}
            by_id[row["id"]] = key
        for row in connection.execute(select(IntervalScore.__table__)).mappings():
            result[by_id[row["forecast_id"]]]["levels"][row["level"]] = (row["inside"], row["interval_score"])
    return result


def test_scores_match_hand_computed_numbers(ledger):
    record(ledger, [hand_record()])
    prices = prices_from({"Handcoin": {"2024-01-01": 10.0, "2024-01-02": 12.0, "2024-01-03": 20.0, "2024-01-04": 35.0}})
    counts = score_matured(ledger, prices)
    assert (counts.scored, counts.waiting, counts.missing_actual, counts.non_positive_actual) == (3, 0, 0, 0)
    rows = scored_rows(ledger)
    steps = [rows[("Handcoin", "naive", ORIGIN, step)] for step in (1, 2, 3)]
    assert [s["actual"] for s in steps] == [12.0, 20.0, 35.0]
    assert [s["abs_error"] for s in steps] == [2.0, 0.0, 5.0]
    # 80 %: alpha = 0.2, so a miss costs 2 / 0.2 = 10 times its distance outside, on log prices.
    expected = [
        (False, math.log(11) - math.log(9) + 10 * (math.log(12) - math.log(11))),  # above the interval
        (True, math.log(25) - math.log(15)),  # inside: the width alone
        (False, math.log(28) - math.log(20) + 10 * (math.log(35) - math.log(28))),  # above
    ]
    for step, (inside, score) in zip(steps, expected, strict=True):
        assert step["levels"][80.0][0] is inside
        assert step["levels"][80.0][1] == pytest.approx(score, rel=1e-12)


def test_a_price_below_the_interval_is_penalised_too(ledger):
    record(ledger, [hand_record()])
    score_matured(ledger, prices_from({"Handcoin": {"2024-01-02": 8.0}}))
    (step,) = scored_rows(ledger).values()
    assert step["levels"][80.0] == (False, pytest.approx(math.log(11 / 9) + 10 * math.log(9 / 8), rel=1e-12))


def test_the_ledgers_mean_scores_equal_the_backtests_window_metrics(ledger):
    """One computation, used by both: averaging a window's per-step scores gives mae, coverage and winkler_score."""
    histories = {f"coin {seed}": price_history(160, seed=seed) for seed in range(4)}
    origins = (100, 110, 130)
    for origin in origins:
        record(ledger, real_records(histories, ("naive", "ewma"), origin, horizon=10), {})
    counts = score_matured(ledger, lambda coin: histories[coin])
    assert counts.scored == 4 * 2 * 3 * 10
    windows = defaultdict(list)
    for (coin, model, origin, step), row in scored_rows(ledger).items():
        windows[(coin, model, origin)].append((step, row))
    assert len(windows) == 24
    records = {
        (r["coin"], r["model"], r["last_date"]): r
        for origin in origins
        for r in real_records(histories, ("naive", "ewma"), origin, horizon=10)
    }
    for (coin, model, origin_date), steps in windows.items():
        steps = [row for _, row in sorted(steps, key=lambda pair: pair[0])]
        dates, prices = histories[coin]
        cutoff = int(np.searchsorted(dates, np.datetime64(origin_date))) + 1
        actual = prices[cutoff : cutoff + 10]  # the backtest's window: the 10 prices after the origin
        forecast = records[(coin, model, str(origin_date))]
        assert np.mean([s["abs_error"] for s in steps]) == pytest.approx(mae(actual, forecast["forecast"]), rel=1e-12)
        for level in (80, 95):
            lo, hi = forecast[f"lo_{level}"], forecast[f"hi_{level}"]
            inside = [s["levels"][float(level)][0] for s in steps]
            scores = [s["levels"][float(level)][1] for s in steps]
            assert np.mean(inside) == pytest.approx(coverage(actual, lo, hi), rel=1e-12)
            assert np.mean(scores) == pytest.approx(winkler_score(actual, lo, hi, level), rel=1e-12)


def test_scoring_twice_adds_nothing(ledger):
    histories = {"A": price_history(60, seed=3)}
    record(ledger, real_records(histories, ("naive",), origin=40, horizon=5))
    first = score_matured(ledger, lambda coin: histories[coin])
    before = table_counts(ledger)
    second = score_matured(ledger, lambda coin: histories[coin])
    assert (first.scored, second.scored) == (5, 0)
    assert table_counts(ledger) == before
    assert before["interval_scores"] == 10


def test_steps_wait_for_their_price_and_are_scored_when_it_arrives(ledger):
    dates, prices = price_history(30, seed=4)
    record(ledger, real_records({"A": (dates, prices)}, ("naive",), origin=26, horizon=5))
    # Prices up to day 28: steps 1 and 2 (days 27, 28) have matured; 3 to 5 wait.
    early = score_matured(ledger, lambda coin: (dates[:29], prices[:29]))
    assert (early.scored, early.waiting, early.missing_actual) == (2, 3, 0)
    later_dates = np.concatenate([dates, dates[-1] + np.arange(1, 4)])
    later_prices = np.concatenate([prices, [101.0, 102.0, 103.0]])
    late = score_matured(ledger, lambda coin: (later_dates, later_prices))
    assert (late.scored, late.waiting, late.missing_actual) == (3, 0, 0)
    assert table_counts(ledger)["scores"] == 5


def test_as_of_scores_only_the_days_up_to_it(ledger):
    dates, prices = price_history(40, seed=5)
    record(ledger, real_records({"A": (dates, prices)}, ("naive",), origin=20, horizon=5))
    counts = score_matured(ledger, lambda coin: (dates, prices), as_of=iso(dates[23]))
    assert (counts.scored, counts.waiting) == (3, 2)
    assert {key[3] for key in scored_rows(ledger)} == {1, 2, 3}


def test_a_gap_or_an_unknown_coin_is_missing_not_waiting(ledger):
    record(ledger, [hand_record("Gappy"), hand_record("Gone")])
    # 2024-01-03 is not in Gappy's history, though later days are; nan is no price either.
    prices = prices_from({"Gappy": {"2024-01-02": 12.0, "2024-01-04": float("nan"), "2024-01-05": 1.0}})
    counts = score_matured(ledger, prices)
    assert (counts.scored, counts.waiting, counts.missing_actual) == (1, 0, 2 + 3)
    assert [key[:2] for key in scored_rows(ledger)] == [("Gappy", "naive")]


def test_a_price_at_or_below_zero_gets_an_error_but_no_interval_score(ledger):
    record(ledger, [hand_record()])
    counts = score_matured(ledger, prices_from({"Handcoin": {"2024-01-02": 0.0, "2024-01-03": 20.0}}))
    assert (counts.scored, counts.non_positive_actual, counts.waiting) == (2, 1, 1)
    rows = scored_rows(ledger)
    assert rows[("Handcoin", "naive", ORIGIN, 1)]["abs_error"] == 10.0
    assert rows[("Handcoin", "naive", ORIGIN, 1)]["levels"] == {}
    assert rows[("Handcoin", "naive", ORIGIN, 2)]["levels"][80.0][0] is True
    assert score_matured(ledger, prices_from({"Handcoin": {"2024-01-02": 0.0, "2024-01-03": 20.0}})).scored == 0


def test_a_loader_is_a_price_source(ledger, synth_dir):
    from crypto_ml.data import CryptoLoader

    loader = CryptoLoader(synth_dir)
    coin = loader.get_crypto_names()[0]
    dates, prices = loader.get_dated_prices(coin)
    history = {coin: (dates.astype("datetime64[D]"), prices)}
    record(ledger, real_records(history, ("naive",), origin=dates.size - 8, horizon=5))
    counts = score_matured(ledger, loader)
    assert (counts.scored, counts.waiting) == (5, 0)
    assert sorted(row["actual"] for row in scored_rows(ledger).values()) == sorted(prices[-7:-2])


def test_scoring_spans_several_transactions(ledger, monkeypatch):
    from crypto_ml.ledger import scoring

    monkeypatch.setattr(scoring, "BATCH_ROWS", 7)  # fewer rows per transaction than one coin has
    histories = {f"c{seed}": price_history(50, seed=seed) for seed in range(3)}
    record(ledger, real_records(histories, ("naive", "ewma"), origin=30, horizon=5))
    counts = score_matured(ledger, lambda coin: histories[coin])
    assert counts.scored == 30
    assert table_counts(ledger)["interval_scores"] == 60
    with ledger.engine.connect() as connection:
        intervals = connection.execute(select(ForecastInterval.__table__)).all()
    assert len(intervals) == 60
