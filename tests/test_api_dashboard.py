"""crypto_ml.api.dashboard: signing in, the pages, the forecast form; then the whole way in a real browser.

The first tests talk to the real app (``create_app``, without its job runner)
in-process, on a SQLite ledger and a generated dataset. The last one starts
``crypto-ml serve``, a real worker, and Debian's chromium driven by Playwright:
it signs in, starts a forecast with the form, watches it finish and checks the
fan chart, at desktop and at phone width, and saves screenshots of both.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import warnings
from pathlib import Path

import pytest

from crypto_ml.config import get_settings
from crypto_ml.synthetic import generate_dataset

from api_helpers import create_api_key
from conftest import skip_or_fail

pytest.importorskip("fastapi")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(os.environ.get("CRYPTO_ML_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")
SESSION_COOKIE = "crypto_ml_session"


# --- the app in-process ----------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Three generated coins with 150 daily prices each, ending 2017-09-22."""
    return generate_dataset(3, tmp_path / "coins", seed=3, min_points=150, max_points=150)


@pytest.fixture
def site(tmp_path, dataset, monkeypatch):
    """The API app (no job runner) on a fresh SQLite ledger and ``dataset``; yields (client, ledger)."""
    with warnings.catch_warnings():
        # Starlette's TestClient warns, once, on import that it wants httpx2; it works with httpx.
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from crypto_ml.api.app import create_app

    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(dataset))
    monkeypatch.setenv("CRYPTO_ML_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    get_settings.cache_clear()
    with TestClient(create_app(start_runner=False), follow_redirects=False) as client:
        yield client, client.app.state.ledger


def _sign_in(client, ledger, name: str = "alice") -> str:
    """Create a key, sign in with it; returns the key (the client now holds the session cookie)."""
    from crypto_ml.api.keys import create_key

    secret, _key = create_key(ledger, name)
    response = client.post("/dashboard/login", data={"api_key": secret})
    assert response.status_code == 303, response.text
    return secret


def _key_id(ledger, name: str) -> int:
    from crypto_ml.api.keys import list_keys

    return next(key.id for key in list_keys(ledger) if key.name == name)


def _use_token(client, token: str) -> None:
    """Send ``token`` as the session cookie from now on (as a browser that kept an old cookie would)."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, token)


def test_without_a_session_every_page_asks_to_sign_in(site):
    client, _ledger = site
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'name="api_key"' in page.text and "Start a forecast" not in page.text
    for path in ("/dashboard/jobs/0123456789abcdef", "/dashboard/coins/bitonyx"):
        response = client.get(path)
        assert response.status_code == 401 and 'name="api_key"' in response.text, path
    response = client.get("/dashboard/jobs.json")
    assert response.status_code == 401 and response.json() == {"detail": "not signed in to the dashboard"}
    response = client.post("/dashboard/forecasts", data={"coins_text": "bitonyx"})
    assert response.status_code == 401 and 'name="api_key"' in response.text


def test_a_wrong_key_gets_the_form_again_with_401_and_no_cookie(site):
    client, ledger = site
    _sign_in(client, ledger)
    client.cookies.clear()
    for wrong in ("cml_not-a-key", "", "x" * 5000):
        response = client.post("/dashboard/login", data={"api_key": wrong})
        assert response.status_code == 401
        assert "That API key is not valid" in response.text and 'name="api_key"' in response.text
        assert "set-cookie" not in response.headers
        if wrong:
            assert wrong not in response.text


def test_signing_in_sets_a_strict_http_only_cookie_and_signing_out_ends_the_session(site):
    client, ledger = site
    secret = _sign_in(client, ledger)
    token = client.cookies[SESSION_COOKIE]
    assert token and token != secret
    # The flags, as the browser receives them: a fresh login to read the header itself.
    response = client.post("/dashboard/login", data={"api_key": secret})
    cookie = response.headers["set-cookie"]
    assert response.headers["location"] == "/dashboard"
    assert re.search(r"HttpOnly", cookie, re.I) and re.search(r"SameSite=strict", cookie, re.I)
    assert "Path=/" in cookie and "Secure" not in cookie  # plain http here: a Secure cookie would never come back
    page = client.get("/dashboard")
    assert page.status_code == 200 and "Start a forecast" in page.text and "alice" in page.text
    assert secret not in page.text
    # Signing in again replaced the first session: its token no longer signs anyone in.
    second = client.cookies[SESSION_COOKIE]
    assert second != token
    _use_token(client, token)
    assert 'name="api_key"' in client.get("/dashboard").text
    _use_token(client, second)

    token = client.cookies[SESSION_COOKIE]
    response = client.post("/dashboard/logout")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard?signed_out=1"
    deleted = response.headers["set-cookie"]
    assert deleted.startswith(f'{SESSION_COOKIE}=""') and "Max-Age=0" in deleted
    client.cookies.clear()
    assert "You are signed out." in client.get("/dashboard?signed_out=1").text
    # The token itself is dead on the server, not only forgotten by the browser.
    _use_token(client, token)
    page = client.get("/dashboard")
    assert 'name="api_key"' in page.text and "Start a forecast" not in page.text


def test_pages_escape_what_they_show_and_allow_only_their_own_scripts(site):
    client, ledger = site
    _sign_in(client, ledger, name="<b>eve</b>")
    page = client.get("/dashboard")
    assert "&lt;b&gt;eve&lt;/b&gt;" in page.text and "<b>eve</b>" not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    # Everything the page loads comes from this server: no CDN, no remote font.
    assert not re.search(r'(src|href)="(https?:)?//', page.text)


def test_the_static_files_are_served_and_nothing_else(site):
    client, _ledger = site
    from crypto_ml.api.dashboard import static_url

    for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")):
        response = client.get(static_url(name))
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert "immutable" in response.headers["cache-control"]
    for path in (
        "/dashboard/static/missing.css",
        "/dashboard/static/..%2Fdashboard.py",
        "/dashboard/static/.hidden.js",
    ):
        assert client.get(path).status_code == 404, path


def test_the_form_says_what_is_wrong_with_422(site):
    client, ledger = site
    _sign_in(client, ledger)
    response = client.post(
        "/dashboard/forecasts", data={"coins_text": "bitonyx, nosuchcoin", "model": "naive", "horizon": "5"}
    )
    assert response.status_code == 422
    assert "The forecast was not started" in response.text and "nosuchcoin" in response.text
    assert 'value="bitonyx, nosuchcoin"' in response.text  # what was typed stays in the form
    response = client.post("/dashboard/forecasts", data={"coins": "bitonyx", "model": "nosuchmodel"})
    assert response.status_code == 422 and "unknown model" in response.text
    response = client.post("/dashboard/forecasts", data={"coins": "bitonyx", "levels": "80, 120"})
    assert response.status_code == 422 and "levels:" in response.text
    response = client.post("/dashboard/forecasts", data={"model": "naive"})
    assert response.status_code == 422 and "choose at least one coin" in response.text


def test_a_valid_form_queues_a_job_that_only_its_key_can_see(site):
    client, ledger = site
    _sign_in(client, ledger)
    response = client.post(
        "/dashboard/forecasts",
        data={
            "coins": ["bitonyx", "sorrel_pay"],
            "coins_text": "Bitonyx",
            "model": "naive",
            "horizon": "5",
            "levels": "80 %, 95",
        },
    )
    assert response.status_code == 303
    job_id = response.headers["location"].rsplit("/", 1)[1]
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200
    assert f'data-job-id="{job_id}"' in page.text and "0 / 2" in page.text  # bitonyx typed twice is one coin
    from crypto_ml.api.jobs import job_document

    request = job_document(ledger, job_id, _key_id(ledger, "alice"))["request"]
    assert request["coins"] == ["bitonyx", "sorrel_pay"] and request["levels"] == [80.0, 95.0]
    assert request["model"] == "naive" and request["horizon"] == 5
    [progress] = client.get(f"/dashboard/jobs.json?job={job_id}").json()["jobs"]
    assert progress | {"created_at": None} == {
        "job_id": job_id,
        "kind": "forecast",
        "status": "queued",
        "done": 0,
        "total": 2,
        "created_at": None,
        "finished_at": None,
        "seconds": progress["seconds"],
        "error": None,
    }
    assert [job["job_id"] for job in client.get("/dashboard/jobs.json").json()["jobs"]] == [job_id]
    assert f'href="/dashboard/jobs/{job_id}"' in client.get("/dashboard").text

    client.cookies.clear()
    _sign_in(client, ledger, name="bob")
    assert client.get(f"/dashboard/jobs/{job_id}").status_code == 404
    assert client.get(f"/dashboard/jobs.json?job={job_id}").status_code == 404
    assert client.get("/dashboard/jobs.json").json() == {"jobs": []}


def test_a_backtest_job_from_the_api_shows_its_progress_too(site):
    from crypto_ml.api.keys import authenticate
    from crypto_ml.api.routes import submit_backtest

    client, ledger = site
    secret = _sign_in(client, ledger)
    request = {"coins": ["sorrel_pay", "bitonyx"], "models": ["naive", "drift"], "horizon": 3, "windows": 2}
    job_id = submit_backtest(request, authenticate(ledger, secret), ledger, None)
    page = client.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200
    assert "Backtest" in page.text and "naive, drift" in page.text and "0 / 2" in page.text
    assert "naive, drift" in client.get("/dashboard").text


def _record_overconfident_naive(ledger, dataset: Path, coin: str, origins: int = 40) -> dt.date:
    """Naive one-day forecasts of ``coin`` from each of the last ``origins`` days but one, with intervals
    so narrow they miss nearly every price, recorded and scored; returns the last origin."""
    from crypto_ml.data import CryptoLoader
    from crypto_ml.ledger import finish_run, record_forecasts, score_matured, start_run

    loader = CryptoLoader(dataset)
    dates, prices = loader.get_dated_prices(coin)
    days = dates.astype("datetime64[D]").astype(str)
    records = []
    for index in range(len(days) - origins - 1, len(days) - 1):
        point = float(prices[index])
        records.append(
            {
                "coin": coin,
                "model": "naive",
                "status": "ok",
                "forecast": [point],
                "dates": [days[index + 1]],
                "last_date": days[index],
                "levels": [80, 95],
                "lo_80": [point * 0.9999],
                "hi_80": [point * 1.0001],
                "lo_95": [point * 0.9998],
                "hi_95": [point * 1.0002],
            }
        )
    run = start_run(ledger, "test", {"models": ["naive"]})
    record_forecasts(ledger, run, records, {})
    counts = score_matured(ledger, loader)
    finish_run(ledger, run, "ok")
    assert counts.scored == origins
    return dt.date.fromisoformat(days[-2])


def test_the_ledger_shows_accuracy_drift_and_each_coins_latest_forecast_with_actuals(site, dataset):
    client, ledger = site
    _sign_in(client, ledger)
    assert "No scored forecasts yet" in client.get("/dashboard").text
    origin = _record_overconfident_naive(ledger, dataset, "bitonyx")

    page = client.get("/dashboard").text
    table = page[page.index('id="accuracy"') : page.index('id="coins-list"')]
    assert "No scored forecasts yet" not in table
    assert re.search(r'<tr class="flagged">\s*<th scope="row">naive</th>\s*<td class="num">30</td>', table), table
    # 30: the report's window is the last 30 target dates. The intervals held no price: coverage 0 %, flagged.
    assert '<span class="flag">drift</span> naive: 80 % coverage 0.0 % over 30 days, below 75 %' in table

    page = client.get("/dashboard/coins/bitonyx?model=naive")
    assert page.status_code == 200
    assert f"from {origin.isoformat()}" in page.text
    # history, forecast, a band per level and the actual price: in the wide chart and in the phone's.
    names = re.findall(r'<g class="series" data-series="([\w-]+)"', page.text)
    assert names == ["band-95", "band-80", "history", "forecast", "actual"] * 2
    assert "and the actual prices since" in page.text

    page = client.get("/dashboard/coins/bitonyx?model=linear")
    assert page.status_code == 200 and "No forecast in the ledger yet" in page.text
    assert "<svg" not in page.text
    assert client.get("/dashboard/coins/nosuchcoin").status_code == 404
    assert client.get("/dashboard/coins/bitonyx?model=nosuchmodel").status_code == 404


# --- the whole way, in a browser -------------------------------------------------------------------


def _launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _no_horizontal_overflow(page) -> tuple[int, int]:
    widths = page.evaluate("[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways at {page.viewport_size}: {widths}"
    return widths


@pytest.mark.browser
@pytest.mark.api
@pytest.mark.broker
@pytest.mark.slow
def test_a_forecast_from_the_form_to_its_fan_chart_in_chromium(
    api_server, api_database, start_worker, tmp_path, monkeypatch
):
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        skip_or_fail("Debian's chromium is not installed: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed; install the test extra: pip install -e '.[test]'")
    started = time.monotonic()
    levels = (80, 95)
    dataset = generate_dataset(4, tmp_path / "coins", seed=11, min_points=200, max_points=200)
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(dataset))  # the worker reads the same coins as the server
    start_worker("dashboard")
    server = api_server(data_dir=dataset)
    key = create_api_key(api_database, "browser")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = {name: ARTIFACTS / f"dashboard-{name}.png" for name in ("desktop", "phone", "home-desktop", "home-phone")}

    with sync_playwright() as playwright:
        browser = _launch_chromium(playwright)
        try:
            desktop = browser.new_context(viewport={"width": 1280, "height": 900})
            page = desktop.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))

            # Not signed in: the form. A wrong key: the form again, 401, and a message.
            page.goto(f"{server.url}/dashboard")
            assert page.locator("#api_key").is_visible()
            page.fill("#api_key", "cml_wrong")
            with page.expect_response(lambda r: r.url.endswith("/dashboard/login")) as answer:
                page.click("button[type=submit]")
            assert answer.value.status == 401
            assert "That API key is not valid" in page.locator(".alert-error").inner_text()

            page.fill("#api_key", key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/dashboard")
            assert page.locator("h2", has_text="Start a forecast").is_visible()
            errors.clear()  # the console's record of the 401 above; from here on, no page may log an error

            coins = page.locator("#coins option").all_inner_texts()
            assert len(coins) == 4
            page.select_option("#coins", coins[:2])
            page.select_option("#model", "naive")
            page.fill("#horizon", "14")
            page.fill("#levels", ", ".join(str(level) for level in levels))
            page.click("#forecast-form button[type=submit]")
            page.wait_for_url(re.compile(r".*/dashboard/jobs/[0-9a-f]{32}$"))
            job_url = page.url

            # The script polls the job's progress, and reloads the page when it ends: the chart appears.
            page.wait_for_selector(".chart-wide svg", timeout=30_000)
            job = page.locator("section.job-page")
            assert job.get_attribute("data-status") == "succeeded"
            assert job.locator("[data-role=count]").inner_text() == "2 / 2"
            assert job.locator("progress").evaluate("bar => [bar.value, bar.max]") == [2, 2]

            chart = page.locator(".chart-wide svg")
            series = chart.locator("g.series")
            names = [series.nth(i).get_attribute("data-series") for i in range(series.count())]
            # The forecasts start at the data's end: no actuals yet, so history + forecast + a band per level.
            assert names == ["band-95", "band-80", "history", "forecast"]
            assert series.count() == 2 + len(levels)
            assert chart.get_attribute("role") == "img"
            assert chart.bounding_box()["width"] > 600

            page.select_option("#coin", coins[1])
            page.wait_for_url(re.compile(rf".*\?coin={re.escape(coins[1])}$"))
            assert page.locator("#chart-title").inner_text() == coins[1]
            assert page.locator(".chart-wide svg g.series").count() == 2 + len(levels)
            _no_horizontal_overflow(page)
            page.screenshot(path=str(shots["desktop"]), full_page=True)
            page.goto(f"{server.url}/dashboard")
            listed = page.locator(f"[data-job-id='{job_url.rsplit('/', 1)[1]}']")
            assert listed.get_attribute("data-status") == "succeeded" and "2 / 2" in listed.inner_text()
            page.screenshot(path=str(shots["home-desktop"]), full_page=True)
            assert errors == []

            # A phone: one column, the compact chart, nothing wider than the screen.
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, device_scale_factor=2, storage_state=desktop.storage_state()
            )
            small = phone.new_page()
            small.goto(f"{server.url}/dashboard")
            _no_horizontal_overflow(small)
            small.screenshot(path=str(shots["home-phone"]), full_page=True)
            small.goto(job_url)
            assert not page.locator(".chart-compact svg").is_visible()  # the desktop shows the wide one only
            compact = small.locator(".chart-compact svg")
            assert compact.is_visible() and not small.locator(".chart-wide svg").is_visible()
            assert compact.locator("g.series").count() == 2 + len(levels)
            assert compact.bounding_box()["width"] <= 390
            _no_horizontal_overflow(small)
            small.screenshot(path=str(shots["phone"]), full_page=True)

            # Signing out ends the session: the job's page asks to sign in again.
            page.click("text=Sign out")
            page.wait_for_url(re.compile(r".*/dashboard\?signed_out=1$"))
            assert page.locator("#api_key").is_visible()
            answer = page.goto(job_url)
            assert answer.status == 401 and page.locator("#api_key").is_visible()
        finally:
            browser.close()
    for name, path in shots.items():
        assert path.stat().st_size > 10_000, path
        print(f"dashboard screenshot ({name}): {path}")
    print(f"browser test took {time.monotonic() - started:.1f}s")
