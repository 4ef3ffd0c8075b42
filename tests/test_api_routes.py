"""crypto_ml.api.routes (with auth and limits) over HTTP: a real ``crypto-ml serve``, real workers, RabbitMQ,
Redis and PostgreSQL. One server and one worker serve the whole module."""

from __future__ import annotations

import datetime as dt
import time
from types import SimpleNamespace

import httpx
import pytest

from crypto_ml.api.keys import revoke_key
from crypto_ml.data import CryptoLoader
from crypto_ml.forecasting import forecast_series
from crypto_ml.ledger import open_ledger, record_forecasts, start_run
from crypto_ml.ledger.latest import latest_forecast
from crypto_ml.results import CoinForecast

from api_helpers import bearer, create_api_keys
from ledger_helpers import real_records
from workers import wait_for_nodes

pytestmark = [pytest.mark.api, pytest.mark.broker]

#: Keys of this module: name -> limits. High rpm where a test makes many requests, so only the
#: rate-limit test meets its limit.
KEYS = {
    "main": {"requests_per_minute": 100_000, "max_concurrent_jobs": 20},
    "other": {},
    "rpm": {"requests_per_minute": 3},
    "one-job": {"max_concurrent_jobs": 1},
    "pager": {"requests_per_minute": 100_000, "max_concurrent_jobs": 50},
    "revoked": {},
}


@pytest.fixture(scope="module")
def api(module_api_server, module_api_database, module_start_worker, synth_dir):
    worker = module_start_worker("api-routes", concurrency=2, wait=False)  # it boots while the server starts
    server = module_api_server(data_dir=synth_dir)
    keys = create_api_keys(module_api_database, KEYS)
    with open_ledger(module_api_database) as ledger:
        revoke_key(ledger, "revoked")
    wait_for_nodes([worker.node])
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield SimpleNamespace(
            server=server,
            client=client,
            keys=keys,
            database=module_api_database,
            data_dir=synth_dir,
            coins=CryptoLoader(synth_dir).get_crypto_names(),
        )


def as_key(api, name: str) -> dict[str, str]:
    return bearer(api.keys[name])


def no_traceback(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text


def submit(api, key: str = "main", **body) -> str:
    response = api.client.post("/v1/forecasts", json={"model": "naive", "horizon": 3, **body}, headers=as_key(api, key))
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def wait_for(api, job_id: str, key: str = "main", seconds: float = 30) -> dict:
    response = api.client.get(f"/v1/jobs/{job_id}", params={"wait": seconds}, headers=as_key(api, key))
    assert response.status_code == 200, response.text
    return response.json()


# --- 401 ---------------------------------------------------------------------------------------------

V1_ROUTES = [
    ("GET", "/v1/coins"),
    ("GET", "/v1/models"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef"),
    ("POST", "/v1/forecasts"),
    ("POST", "/v1/backtests"),
    ("GET", "/v1/forecasts/latest?coin=bitcoin"),
]


def test_every_v1_route_refuses_a_missing_unknown_or_revoked_key(api):
    unknown = "cml_" + "A" * 43
    for method, path in V1_ROUTES:
        for headers, says in [
            ({}, "missing API key"),
            ({"Authorization": "Basic dXNlcjpwdw=="}, "malformed"),
            (bearer(unknown), "unknown or revoked"),
            (as_key(api, "revoked"), "unknown or revoked"),
        ]:
            response = api.client.request(method, path, headers=headers, json={"coins": ["x"]})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
            assert says in response.json()["detail"]
            assert unknown not in response.text and api.keys["revoked"] not in response.text


# --- a forecast, end to end ---------------------------------------------------------------------------


def test_a_forecast_job_returns_the_clis_records_and_the_long_poll_answers_when_it_ends(api):
    first, second, third = api.coins[0], api.coins[3], api.coins[1]
    # Spellings of three coins, as a user types them; the repeat is dropped.
    coins = [first.replace("_", " ").title(), second, third.upper(), first]
    response = api.client.post(
        "/v1/forecasts",
        json={"coins": coins, "model": "naive", "horizon": 5, "levels": [95, 50]},
        headers=as_key(api, "main"),
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["Location"] == accepted["status_url"] == f"/v1/jobs/{accepted['job_id']}"

    started = time.monotonic()
    document = wait_for(api, accepted["job_id"])
    answered_at = dt.datetime.now(dt.UTC)

    assert time.monotonic() - started < 30
    assert document["status"] == "succeeded", document
    assert document["progress"] == {"done": 3, "total": 3}
    ordered = [first, second, third]
    assert document["failures"] == []
    finished = dt.datetime.fromisoformat(document["finished_at"].replace("Z", "+00:00"))
    # The long-poll reads the job every 0.25 s: it answers right after the job ends, not at the timeout.
    assert (answered_at - finished).total_seconds() < 2.0
    assert document["seconds"] is not None and document["seconds"] >= 0
    # The same records as `crypto-ml forecast --out x.json` holds for these coins, in request order.
    loader = CryptoLoader(api.data_dir)
    expected = []
    for coin in ordered:
        dates, prices = loader.get_dated_prices(coin)
        record = forecast_series(coin, prices, "naive", 5, {}, str(dates[-1].astype("datetime64[D]")), (50, 95))
        expected.append(CoinForecast.from_record(record).to_record())
    assert [r["coin"] for r in document["results"]] == ordered
    for got, want in zip(document["results"], expected, strict=True):
        assert set(got) == set(want)
        assert got["forecast"] == pytest.approx(want["forecast"])
        assert got["lo_50"] == pytest.approx(want["lo_50"]) and got["hi_95"] == pytest.approx(want["hi_95"])
        assert got["dates"] == want["dates"]
    assert document["request"]["coins"] == ordered


def test_a_backtest_job_returns_its_window_records(api):
    response = api.client.post(
        "/v1/backtests",
        json={"coins": [api.coins[2]], "models": "drift", "horizon": 3, "windows": 2},
        headers=as_key(api, "main"),
    )
    assert response.status_code == 202, response.text
    document = wait_for(api, response.json()["job_id"])
    assert document["status"] == "succeeded", document
    assert document["kind"] == "backtest"
    records = document["results"] + document["failures"]
    # naive (the benchmark, always added) and drift, two windows each.
    assert sorted((r["model"], r["window"]) for r in records) == [
        ("drift", 1),
        ("drift", 2),
        ("naive", 1),
        ("naive", 2),
    ]


# --- 422 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field", "says"),
    [
        ("/v1/forecasts", {"model": "prophet"}, "model", "unknown model 'prophet'"),
        ("/v1/forecasts", {"model": "ewma", "params": {"bogus": 1}}, "params", "does not accept bogus"),
        ("/v1/forecasts", {"horizon": 0}, "horizon", "greater than or equal to 1"),
        ("/v1/forecasts", {"coins": ["quill", "dogecoin"]}, "coins", "unknown coins: 'dogecoin'"),
        ("/v1/forecasts", {"levels": [80, 100]}, "levels", "outside (0, 100)"),
        ("/v1/forecasts", {"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ("/v1/backtests", {"models": ["drift", "nosuch"]}, "models", "unknown model 'nosuch'"),
        ("/v1/backtests", {"models": ["drift"], "windows": 0}, "windows", "greater than or equal to 1"),
    ],
)
def test_bad_requests_are_422_naming_the_field_and_the_reason(api, path, body, field, says):
    response = api.client.post(path, json=body, headers=as_key(api, "main"))
    assert response.status_code == 422, response.text
    no_traceback(response)
    detail = response.json()["detail"]
    matching = [error for error in detail if error["loc"][-1] == field]
    assert matching, detail
    assert says in matching[0]["msg"]
    assert matching[0]["loc"][0] == "body"
    assert set(matching[0]) == {"loc", "msg", "type"}  # nothing of the input is echoed back


def test_a_body_that_is_not_json_is_422_without_a_traceback(api):
    response = api.client.post(
        "/v1/forecasts", content=b"{not json", headers={**as_key(api, "main"), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    no_traceback(response)
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_latest_with_an_unknown_model_is_422_on_the_query(api):
    response = api.client.get(
        "/v1/forecasts/latest", params={"coin": "x", "model": "nosuch"}, headers=as_key(api, "main")
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "model"]


# --- 404 ---------------------------------------------------------------------------------------------


def test_another_keys_job_and_an_unknown_job_are_404(api):
    job_id = submit(api, coins=[api.coins[4]])
    for method in ("GET", "DELETE"):
        response = api.client.request(method, f"/v1/jobs/{job_id}", headers=as_key(api, "other"))
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": f"no job {job_id!r} for this API key"}
        unknown = api.client.request(method, "/v1/jobs/ffffffffffffffffffffffffffffffff", headers=as_key(api, "main"))
        assert unknown.status_code == 404
    listed = api.client.get("/v1/jobs", headers=as_key(api, "other")).json()
    assert job_id not in [job["job_id"] for job in listed["jobs"]]
    assert wait_for(api, job_id)["status"] == "succeeded"  # the owner still sees it


# --- 429 ---------------------------------------------------------------------------------------------


def test_over_the_requests_per_minute_is_429_with_retry_after(api):
    if 60 - time.time() % 60 < 5:
        time.sleep(60 - time.time() % 60 + 0.1)  # four requests must fall in one window
    answers = [api.client.get("/v1/models", headers=as_key(api, "rpm")) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "3 requests per minute" in refused.json()["detail"]
    # Other keys are not affected.
    assert api.client.get("/v1/models", headers=as_key(api, "other")).status_code == 200


def test_over_the_concurrent_jobs_is_429_and_cancelling_frees_the_slot(api):
    first = submit(api, "one-job", coins="all", model="ewma", horizon=30)

    refused = api.client.post("/v1/forecasts", json={"model": "naive"}, headers=as_key(api, "one-job"))
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "limit" in refused.json()["detail"]

    cancelled = api.client.delete(f"/v1/jobs/{first}", headers=as_key(api, "one-job"))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = api.client.delete(f"/v1/jobs/{first}", headers=as_key(api, "one-job"))  # idempotent
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")

    second = submit(api, "one-job", coins=[api.coins[5]])
    assert wait_for(api, second, "one-job")["status"] == "succeeded"
    # The runner never brings a cancelled job back.
    document = api.client.get(f"/v1/jobs/{first}", headers=as_key(api, "one-job")).json()
    assert document["status"] == "cancelled"
    assert document["finished_at"] is not None


# --- listing -----------------------------------------------------------------------------------------


def test_jobs_are_listed_newest_first_a_page_at_a_time(api):
    submitted = [submit(api, "pager", coins=[coin]) for coin in api.coins[:5]]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/jobs", params=params, headers=as_key(api, "pager")).json()
        pages += 1
        assert len(page["jobs"]) <= 2
        assert all(job["results"] is None for job in page["jobs"])  # pages are light: no records
        seen += [job["job_id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert seen == submitted[::-1]
    assert pages == 3
    too_many = api.client.get("/v1/jobs", params={"limit": 1000}, headers=as_key(api, "pager"))
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["query", "limit"]
    unknown = api.client.get("/v1/jobs", params={"cursor": "f" * 32}, headers=as_key(api, "pager"))
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert "next_cursor" in unknown.json()["detail"][0]["msg"]


# --- what the API knows ------------------------------------------------------------------------------


def test_coins_and_models_are_listed(api):
    coins = api.client.get("/v1/coins", headers=as_key(api, "main")).json()["coins"]
    expected = CryptoLoader(api.data_dir).report().coins
    assert [c["coin"] for c in coins] == sorted(c.name for c in expected)
    first = next(c for c in expected if c.name == coins[0]["coin"])
    assert coins[0] == {
        "coin": first.name,
        "rows": first.rows,
        "first_date": first.first_date,
        "last_date": first.last_date,
    }

    models = api.client.get("/v1/models", headers=as_key(api, "main")).json()
    by_name = {m["name"]: m for m in models["models"]}
    assert {"naive", "drift", "ewma", "lstm"} <= set(by_name)
    assert by_name["naive"]["installed"] is True and by_name["naive"]["extra"] is None
    assert by_name["lstm"]["extra"] == "deep"
    assert "decay" in by_name["ewma"]["params"]
    assert models["default"] == "ewma"


def test_latest_forecast_reads_the_ledger(api, tmp_path):
    coin = api.coins[7]
    histories = {coin: CryptoLoader(api.data_dir).get_dated_prices(coin)}
    records = real_records(histories, ("naive",), origin=40, horizon=4)
    with open_ledger(api.database) as ledger:
        record_forecasts(ledger, start_run(ledger, "test", {}), records, {})
        expected = latest_forecast(ledger, coin, "naive")

    response = api.client.get(
        "/v1/forecasts/latest",
        params={"coin": coin.replace("_", " ").upper(), "model": "naive"},
        headers=as_key(api, "main"),
    )
    assert response.status_code == 200, response.text
    assert response.json() == expected
    assert response.json()["forecast"] == pytest.approx(records[0]["forecast"])

    missing = api.client.get("/v1/forecasts/latest", params={"coin": coin}, headers=as_key(api, "main"))
    assert missing.status_code == 404  # no ewma forecast (the default model) in the ledger
    assert f"no forecast of {coin!r} by 'ewma'" in missing.json()["detail"]


# --- the app around the routes ----------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(api):
    big = {"coins": ["quill"] * 20_000}  # ~110 kB, over the default 64 KiB
    response = api.client.post("/v1/forecasts", json=big, headers=as_key(api, "main"))
    assert response.status_code == 413
    assert "65536 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"coins": ['
        for _ in range(2_000):
            yield b'"quill", "quill", "quill", "quill", "quill", '
        yield b'"quill"]}'

    chunked = api.client.post(
        "/v1/forecasts", content=chunks(), headers={**as_key(api, "main"), "Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    no_traceback(chunked)


def test_cors_is_off_by_default(api):
    response = api.client.get("/v1/models", headers={**as_key(api, "main"), "Origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = api.client.options(
        "/v1/forecasts",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_the_openapi_schema_is_valid_and_every_v1_operation_needs_the_bearer_key(api):
    from openapi_spec_validator import validate

    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "API key",
        "description": "An API key from `crypto-ml apikey create`.",
    }
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    ]
    assert len(operations) >= 8
    for path, method, operation in operations:
        assert {"bearer": []} in operation.get("security", []), (path, method)
        assert "401" in operation["responses"], (path, method)
    assert not [path for path in schema["paths"] if path.startswith("/dashboard")]


def test_no_key_ever_reaches_the_servers_log(api):
    # Last in the module: every key above was sent in requests, accepted or refused.
    log = api.server.log()
    assert "POST /v1/forecasts" in log  # the access log is on
    for name, secret in api.keys.items():
        assert secret not in log, name
        assert secret[4:] not in log, name
