"""crypto_ml.ledger.latest: the newest forecast of a coin and model, as recorded, with its actuals once scored."""

from __future__ import annotations

import numpy as np

from crypto_ml.exceptions import UnknownCoinError
from crypto_ml.ledger import record_forecasts, score_matured, start_run
from crypto_ml.ledger.latest import latest_forecast

from ledger_helpers import iso, price_history, real_records


def record(ledger, records, params_by_model=None):
    return record_forecasts(ledger, start_run(ledger, "test", {}), records, params_by_model or {})


def prices_from(histories):
    def prices(coin):
        if coin not in histories:
            raise UnknownCoinError(f"no coin {coin!r}")
        return histories[coin]

    return prices


def test_an_empty_ledger_has_no_latest_forecast(ledger):
    assert latest_forecast(ledger, "bitcoin", "ewma") is None


def test_the_newest_origin_is_returned_exactly_as_recorded(ledger):
    histories = {"bitcoin": price_history(60, seed=1), "ethereum": price_history(60, seed=2)}
    older = real_records(histories, ("naive", "drift"), origin=30, horizon=5)
    newer = real_records(histories, ("naive", "drift"), origin=40, horizon=5)
    record(ledger, older + newer)

    found = latest_forecast(ledger, "bitcoin", "drift")

    expected = next(r for r in newer if r["coin"] == "bitcoin" and r["model"] == "drift")
    assert found["origin_date"] == iso(histories["bitcoin"][0][40])
    assert found["dates"] == expected["dates"]
    assert found["forecast"] == expected["forecast"]
    assert found["levels"] == [80, 95]
    for level in (80, 95):
        assert found[f"lo_{level}"] == expected[f"lo_{level}"]
        assert found[f"hi_{level}"] == expected[f"hi_{level}"]
    assert found["actuals"] == [None] * 5
    assert found["scored"] == 0
    assert (found["coin"], found["model"]) == ("bitcoin", "drift")
    assert latest_forecast(ledger, "bitcoin", "ewma") is None
    assert latest_forecast(ledger, "dogecoin", "drift") is None


def test_actuals_appear_once_the_steps_are_scored(ledger):
    dates, prices = price_history(50, seed=3)
    records = real_records({"bitcoin": (dates, prices)}, ("naive",), origin=45, horizon=8)
    record(ledger, records)
    # Prices up to day 49: steps 1-4 (days 46-49) have actuals, steps 5-8 do not yet.
    score_matured(ledger, prices_from({"bitcoin": (dates, prices)}))

    found = latest_forecast(ledger, "bitcoin", "naive")

    assert found["actuals"][:4] == [float(p) for p in prices[46:50]]
    assert found["actuals"][4:] == [None] * 4
    assert found["scored"] == 4


def test_of_two_parameter_sets_at_one_origin_the_last_recorded_wins(ledger):
    histories = {"bitcoin": price_history(60, seed=4)}
    first = real_records(histories, ("ewma",), origin=50, horizon=3, params_by_model={"ewma": {"decay": 0.9}})
    second = real_records(histories, ("ewma",), origin=50, horizon=3, params_by_model={"ewma": {"decay": 0.97}})
    record(ledger, first, {"ewma": {"decay": 0.9}})
    record(ledger, second, {"ewma": {"decay": 0.97}})

    found = latest_forecast(ledger, "bitcoin", "ewma")

    assert np.allclose(found["forecast"], second[0]["forecast"])
    assert found["hi_95"] == second[0]["hi_95"]
    assert found["hi_95"] != first[0]["hi_95"]
