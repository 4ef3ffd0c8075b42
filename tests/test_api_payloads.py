"""crypto_ml.api.payloads: what a request must be before a job is created, and what a bad one is told."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from crypto_ml.api.payloads import (
    MAX_HORIZON,
    BacktestRequest,
    ForecastRequest,
    InvalidRequest,
    check_backtest,
    check_forecast,
    coin_reports,
    known_coins,
)
from crypto_ml.config import get_settings

from data_helpers import daily_rows, write_coin

COINS = ["bitcoin", "bitcoin_cash", "ethereum"]


def names() -> list[str]:
    return list(COINS)


def problems(excinfo) -> dict[str, str]:
    """{field: message} of an InvalidRequest."""
    return {error["loc"][-1]: error["msg"] for error in excinfo.value.errors()}


def test_a_forecast_request_is_normalised():
    request, total = check_forecast(
        ForecastRequest(coins=["Bitcoin", "bitcoin", "Ethereum"], model="Deep_Predict", levels=[95, 80.0]), names
    )
    assert request == {
        "coins": ["bitcoin", "ethereum"],
        "model": "lstm",
        "horizon": 10,
        "levels": [80, 95],
        "params": {},
        "from_store": False,
    }
    assert total == 2


@pytest.mark.parametrize("coins", [None, "all"])
def test_no_coins_or_all_means_every_coin(coins):
    request, total = check_forecast(ForecastRequest(coins=coins), names)
    assert request["coins"] == COINS and total == 3
    assert request["model"] == get_settings().model


def test_unknown_model_names_the_field_and_the_valid_models():
    with pytest.raises(InvalidRequest) as excinfo:
        check_forecast(ForecastRequest(model="prophet"), names)
    found = problems(excinfo)
    assert list(found) == ["model"]
    assert "unknown model 'prophet'" in found["model"] and "ewma" in found["model"]
    assert excinfo.value.errors()[0]["loc"] == ("body", "model")


def test_a_parameter_the_model_does_not_take_is_refused():
    with pytest.raises(InvalidRequest) as excinfo:
        check_forecast(ForecastRequest(model="ewma", params={"bogus": 1}), names)
    assert "does not accept bogus" in problems(excinfo)["params"]


def test_unknown_coins_are_named_and_every_problem_is_reported_at_once():
    with pytest.raises(InvalidRequest) as excinfo:
        check_forecast(ForecastRequest(coins=["bitcoin", "Dogecoin", "nocoin"], levels=[80, 150]), names)
    found = problems(excinfo)
    assert set(found) == {"coins", "levels"}
    assert "'dogecoin'" in found["coins"] and "'nocoin'" in found["coins"] and "'bitcoin'" not in found["coins"]
    assert "GET /v1/coins" in found["coins"]
    assert "150" in found["levels"]


def test_an_empty_coin_list_is_refused():
    with pytest.raises(InvalidRequest) as excinfo:
        check_forecast(ForecastRequest(coins=[]), names)
    assert "at least one coin" in problems(excinfo)["coins"]


def test_invalid_request_is_answered_as_fastapi_answers_a_bad_body():
    error = InvalidRequest([{"loc": ("body", "coins"), "msg": "unknown coins: 'x'", "type": "unknown_coin"}])
    assert isinstance(error, RequestValidationError)
    assert str(error) == "body.coins: unknown coins: 'x'"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"horizon": 0}, "horizon"),
        ({"horizon": MAX_HORIZON + 1}, "horizon"),
        ({"horizon": "ten"}, "horizon"),
        ({"coins": "bitcoin"}, "coins"),
        ({"levels": "80"}, "levels"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_types_and_ranges_are_pydantic_errors_on_the_field(body, field):
    with pytest.raises(ValidationError) as excinfo:
        ForecastRequest.model_validate(body)
    assert any(field in error["loc"] for error in excinfo.value.errors())


def test_a_backtest_request_is_normalised_as_the_cli_does():
    request, total = check_backtest(
        BacktestRequest(coins=["Ethereum"], models="drift, linear", horizon=5, windows=3, params={"linear": {}}), names
    )
    assert request == {
        "coins": ["ethereum"],
        "models": ["naive", "drift", "linear"],
        "horizon": 5,
        "windows": 3,
        "step": 5,
        "params": {"linear": {}},
        "levels": [80, 95],
    }
    assert total == 1


def test_backtest_problems_name_their_fields():
    with pytest.raises(InvalidRequest) as excinfo:
        check_backtest(BacktestRequest(coins=["x"], models=["drift", "nosuch"]), names)
    found = problems(excinfo)
    assert "unknown model 'nosuch'" in found["models"] and "'x'" in found["coins"]
    with pytest.raises(InvalidRequest) as excinfo:
        check_backtest(BacktestRequest(models=["drift"], params={"linear": {"a": 1}}), names)
    assert "not among the models" in problems(excinfo)["params"]
    with pytest.raises(InvalidRequest) as excinfo:
        check_backtest(BacktestRequest(models=""), names)
    assert "no models" in problems(excinfo)["models"]


def test_the_coin_list_follows_the_data_folder(tmp_path, monkeypatch):
    folder = tmp_path / "coins"
    write_coin(folder, "Bitcoin", daily_rows(30))
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(folder))
    get_settings.cache_clear()
    assert known_coins() == ["bitcoin"]
    assert coin_reports() == [{"coin": "bitcoin", "rows": 30, "first_date": "2017-08-24", "last_date": "2017-09-22"}]
    write_coin(folder, "Bitcoin Cash", daily_rows(20))  # the folder changes: the cache follows
    assert known_coins() == ["bitcoin", "bitcoin_cash"]
    assert [entry["coin"] for entry in coin_reports()] == ["bitcoin", "bitcoin_cash"]
