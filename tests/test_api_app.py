"""crypto_ml.api.app: the application around the routes, configured from settings, under ``--workers 2``;
and the Done-when run: a forecast over the real 100 coins submitted and fetched over HTTP."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from sqlalchemy import func, select

from crypto_ml.api.app import create_app
from crypto_ml.api.schema import JobResult
from crypto_ml.config import Settings
from crypto_ml.data import CryptoLoader
from crypto_ml.ledger import open_ledger

from api_helpers import bearer, create_api_key
from workers import wait_for_nodes

ALLOWED = "https://dash.example"


@pytest.fixture(scope="module")
def module_workers(module_start_worker):
    return module_start_worker("api-app", concurrency=4, wait=False)  # waited for once a server is up


@pytest.fixture(scope="module")
def configured(module_api_server, module_api_database, module_workers, synth_dir):
    """Two API processes, CORS for two origins, a 2 KiB body limit."""
    server = module_api_server(
        data_dir=synth_dir,
        workers=2,
        env={"CRYPTO_ML_API_CORS_ORIGINS": f"{ALLOWED}, https://ops.example", "CRYPTO_ML_API_MAX_BODY_BYTES": "2048"},
    )
    key = create_api_key(module_api_database, "app", max_concurrent_jobs=20, requests_per_minute=100_000)
    wait_for_nodes([module_workers.node])
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=120) as client:
        yield client


def wait_until_ended(client: httpx.Client, job_id: str, limit: float = 120) -> dict:
    deadline = time.monotonic() + limit
    while True:
        document = client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        if document["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return document


@pytest.mark.api
@pytest.mark.broker
def test_cors_answers_only_the_configured_origins(configured):
    allowed = configured.get("/v1/models", headers={"Origin": ALLOWED})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    preflight = configured.options(
        "/v1/forecasts",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    other = configured.get("/v1/models", headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


@pytest.mark.api
@pytest.mark.broker
def test_the_body_limit_comes_from_the_settings(configured):
    coins = CryptoLoader.__name__  # any string: the size is what matters
    too_big = configured.post("/v1/forecasts", json={"coins": [coins] * 200})  # ~3 kB
    assert too_big.status_code == 413
    assert "2048 bytes" in too_big.json()["detail"]
    small = configured.post("/v1/forecasts", json={"coins": "all", "model": "naive", "horizon": 2})
    assert small.status_code == 202, small.text


@pytest.mark.api
@pytest.mark.broker
def test_two_api_processes_collect_every_job_once(configured, module_api_database, synth_dir):
    coins = CryptoLoader(synth_dir).get_crypto_names()
    job_ids = []
    for index in range(6):
        response = configured.post("/v1/forecasts", json={"coins": coins[index:], "model": "drift", "horizon": 3})
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["job_id"])
    for index, job_id in enumerate(job_ids):
        document = wait_until_ended(configured, job_id)
        assert document["status"] == "succeeded", document
        assert [r["coin"] for r in document["results"] + document["failures"]] == coins[index:]
    with open_ledger(module_api_database) as ledger, ledger.engine.connect() as connection:
        rows = dict(
            connection.execute(
                select(JobResult.job_id, func.count()).where(JobResult.job_id.in_(job_ids)).group_by(JobResult.job_id)
            ).all()
        )
    assert rows == {job_id: len(coins) - index for index, job_id in enumerate(job_ids)}


@pytest.mark.api
@pytest.mark.broker
@pytest.mark.realdata
@pytest.mark.slow
def test_a_forecast_over_the_real_100_coins_returns_100_results_over_http(
    module_api_server, module_api_database, module_workers, real_data_dir
):
    server = module_api_server(data_dir=real_data_dir)
    key = create_api_key(module_api_database, "realdata")
    wait_for_nodes([module_workers.node])
    names = CryptoLoader(real_data_dir).get_crypto_names()
    assert len(names) == 100
    with httpx.Client(base_url=server.url, headers=bearer(key), timeout=120) as client:
        coins = client.get("/v1/coins").json()["coins"]
        assert [coin["coin"] for coin in coins] == names
        response = client.post("/v1/forecasts", json={"coins": "all", "horizon": 10})
        assert response.status_code == 202, response.text
        document = wait_until_ended(client, response.json()["job_id"], limit=300)

    assert document["status"] == "succeeded", document["error"]
    records = document["results"] + document["failures"]
    assert len(records) == 100
    assert sorted(record["coin"] for record in records) == names  # every coin exactly once
    assert document["progress"] == {"done": 100, "total": 100}
    assert all(record["status"] == "ok" for record in document["results"])
    assert len(document["results"]) >= 90, [(f["coin"], f.get("error")) for f in document["failures"]]
    for record in document["results"]:
        assert len(record["forecast"]) == 10 and record["lo_95"][0] <= record["forecast"][0] <= record["hi_95"][0]


# --- in-process: what cannot be provoked from outside -------------------------------------------------


def test_an_unexpected_error_is_a_500_that_holds_no_traceback(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}"), start_runner=False)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the secret internals")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logger = logging.getLogger("crypto_ml.api.app")
    logger.addHandler(handler)
    try:
        response = asyncio.run(call())
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail.startswith("internal error ") and "server's log" in detail
    assert "secret internals" not in response.text and "Traceback" not in response.text
    reference = detail.split()[2].rstrip(";")
    mine = [record for record in logged if reference in record.getMessage()]
    assert mine and mine[0].exc_info is not None  # the details are in the server's log


def test_the_dashboard_router_is_included_when_present(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}"), start_runner=False)
    assert app.url_path_for("home") == "/dashboard"
    assert app.url_path_for("post_forecast") == "/v1/forecasts"
    assert app.url_path_for("readyz") == "/readyz"
