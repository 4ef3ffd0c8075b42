"""crypto_ml.api.health over HTTP: /healthz always answers; /readyz says 503 and names what is down."""

from __future__ import annotations

import httpx
import pytest

from crypto_ml.engines.celery import ping_workers

pytestmark = [pytest.mark.api, pytest.mark.broker]


@pytest.fixture(scope="module")
def server(module_api_server, synth_dir, module_start_worker):
    # module_start_worker only checks RabbitMQ and Redis here: workers are started by the test that needs one.
    return module_api_server(data_dir=synth_dir)


def test_healthz_answers_without_a_key(server):
    response = httpx.get(f"{server.url}/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_503_naming_the_workers_when_none_answers(server):
    assert not ping_workers(timeout=1.0), "a worker from elsewhere answers on this broker; run under flock"
    response = httpx.get(f"{server.url}/readyz", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["workers"]
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    assert "no worker answered" in body["checks"]["workers"]


def test_readyz_is_200_once_a_worker_answers(server, start_worker):
    start_worker("api-health")
    response = httpx.get(f"{server.url}/readyz", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "workers": "ok"},
        "down": [],
        "workers": body["workers"],
    }
    assert body["workers"] >= 1


def test_readyz_names_a_broker_that_is_down_without_its_password(module_api_server, synth_dir):
    server = module_api_server(data_dir=synth_dir, env={"CRYPTO_ML_BROKER_URL": "amqp://guest:s3cret-pw@127.0.0.1:1//"})
    response = httpx.get(f"{server.url}/readyz", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker", "workers"]
    assert "127.0.0.1:1" in body["checks"]["broker"]
    assert "s3cret-pw" not in response.text
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, only not ready
