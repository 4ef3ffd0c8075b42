"""The dashboard: a few server-rendered pages on the API's own app, signed in with an API key.

Routes (all under ``/dashboard``, none in the OpenAPI schema):

* ``GET /dashboard``: the sign-in form without a session; with one, the coins,
  the ledger's per-model accuracy and drift flags, the caller's jobs with live
  progress, and a form that starts a forecast.
* ``POST /dashboard/login`` (form field ``api_key``) sets the session cookie;
  ``POST /dashboard/logout`` ends the session.
* ``POST /dashboard/forecasts``: the form's forecast, validated exactly as
  ``POST /v1/forecasts`` validates it (``routes.submit_forecast``).
* ``GET /dashboard/jobs/{id}``: a job's progress; once it succeeded, a fan chart
  per coin over the coin's recent prices.
* ``GET /dashboard/coins/{coin}?model=``: the ledger's latest forecast of a coin.
* ``GET /dashboard/jobs.json``: progress for ``static/dashboard.js``, which polls it.
* ``GET /dashboard/static/{name}``: the stylesheet and the script; nothing is
  loaded from anywhere else.

The key is typed once; the browser then holds only a random session token in
an HttpOnly, SameSite=Strict cookie (the database keeps its hash, as it does
for keys). SameSite=Strict is the forms' CSRF defence: a page on another site
cannot make the browser send the cookie with a POST. Every page carries a
Content-Security-Policy that allows only this origin's script and styles, so
even markup that slipped past Jinja's autoescaping could not run a script.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import threading
import time
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from ..config import get_settings
from ..exceptions import CryptoMLError, TooManyJobsError, UnknownJobError
from . import jobs, keys
from .fan_chart import fan_chart_svg

__all__ = ["router", "SESSION_COOKIE", "HISTORY_DAYS"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboard", include_in_schema=False)

#: The cookie that carries the session token (never the key itself).
SESSION_COOKIE = "crypto_ml_session"

#: Days of prices drawn before a forecast's origin: enough to see the trend the forecast continues,
#: few enough that a ten-day fan stays wide enough to read.
HISTORY_DAYS = 90

#: Jobs the dashboard lists (the newest); older ones stay reachable through GET /v1/jobs.
JOBS_SHOWN = 20

#: Longest text accepted as a key: real ones are 47 characters; anything much longer is not a key,
#: and is refused without a database lookup.
MAX_KEY_LENGTH = 200

#: Seconds a dataset loader is reused: the daily pipeline appends prices, and a dashboard that runs
#: for weeks must see them, but re-reading every coin file on every page would be wasteful.
LOADER_SECONDS = 600.0

#: The viewBox of the chart shown on narrow screens (the CSS switches at 560 px): about the phone's own
#: width in CSS pixels, so the 12-unit labels are drawn at about 12 px.
COMPACT_WIDTH = 360
COMPACT_HEIGHT = 300

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

#: Sent with every page: scripts, styles, forms and fetches of this origin only; no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show the caller's own jobs: never kept by a shared cache or the back-forward cache after sign-out.
    "Cache-Control": "no-store",
}


# --- rendering -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The templates' environment: autoescaped, undefined names an error rather than empty text."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["static_url"] = static_url
    environment.filters["when"] = format_when
    environment.filters["percent"] = format_percent
    environment.filters["number"] = format_number
    environment.filters["ratio"] = format_ratio
    return environment


@cache
def static_url(name: str) -> str:
    """The URL of a static file, with a hash of its content so a new version is never read from a cache."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]
    return f"/dashboard/static/{name}?v={digest}"


def render(template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """A template as an HTML response with the dashboard's security headers."""
    html = _environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def format_when(value: str | dt.datetime | None) -> str:
    """A timestamp as "26 Nov 21:58 UTC"; empty for None."""
    if value is None:
        return ""
    stamp = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC)
    return f"{stamp.day} {stamp:%b %H:%M} UTC"


def format_percent(value: float | None) -> str:
    """A fraction as "81.2 %"; a dash when missing."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value) * 100:.1f} %"


def format_ratio(value: float | None) -> str:
    """A ratio such as a relative MAE with two decimals ("0.97"); a dash when missing."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.2f}"


def format_number(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; a dash when missing."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.{digits}g}"


# --- the request's context -------------------------------------------------------------------------


def _ledger(request: Request) -> Any:
    return request.app.state.ledger


def _settings(request: Request) -> Any:
    """The app's settings (``create_app`` may be given its own), else the environment's."""
    return getattr(request.app.state, "settings", None) or get_settings()


def _session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token if token and len(token) <= MAX_KEY_LENGTH else None


def session_key(request: Request) -> keys.ApiKey | None:
    """The API key the request's session cookie belongs to; None without a valid, unexpired session."""
    token = _session_token(request)
    return keys.session_key(_ledger(request), token) if token else None


def _login_page(*, status: int = 200, error: str | None = None, notice: str | None = None) -> HTMLResponse:
    return render("login.html", status=status, error=error, notice=notice, key=None)


_loaders: dict[str, tuple[float, Any]] = {}
_loaders_lock = threading.Lock()


def _loader() -> Any:
    """The dataset's ``CryptoLoader``, shared by requests for ``LOADER_SECONDS`` (it caches parsed coins)."""
    from ..data import CryptoLoader

    path = str(get_settings().resolved_data_dir())
    now = time.monotonic()
    with _loaders_lock:
        cached = _loaders.get(path)
        if cached is None or now - cached[0] > LOADER_SECONDS:
            cached = (now, CryptoLoader(path))
            _loaders[path] = cached
        return cached[1]


def _coins() -> tuple[list[str], str | None]:
    """The dataset's coin names, or an empty list and why there are none."""
    try:
        from .payloads import known_coins

        return list(known_coins()), None
    except CryptoMLError as exc:
        return [], str(exc)


def _models() -> list[dict[str, Any]]:
    """The registry's models (name, description, installed), as ``GET /v1/models`` lists them."""
    from .routes import model_catalogue

    return list(model_catalogue())


# --- signing in and out ----------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def home(request: Request, signed_out: str | None = None) -> HTMLResponse:
    """The sign-in form, or the dashboard itself for a signed-in caller."""
    key = session_key(request)
    if key is None:
        return _login_page(notice="You are signed out." if signed_out else None)
    return _home_page(request, key)


@router.post("/login", response_model=None)
def login(request: Request, api_key: str = Form("")) -> Response:
    """Exchange an API key for a session cookie; a bad key gets the form again, with 401."""
    secret = api_key.strip()
    ledger = _ledger(request)
    key = keys.authenticate(ledger, secret) if secret and len(secret) <= MAX_KEY_LENGTH else None
    if key is None:
        # One message for unknown, revoked and malformed keys: the form must not tell which keys exist.
        return _login_page(
            status=401,
            error="That API key is not valid: it is unknown or revoked. "
            "`crypto-ml apikey create --name NAME` makes a new one.",
        )
    previous = _session_token(request)
    if previous:  # signing in again replaces the session instead of leaving the old token alive
        keys.end_session(ledger, previous)
    hours = _settings(request).api_session_hours
    token = keys.create_session(ledger, key, hours)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("dashboard: key %r signed in", key.name)
    return response


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    """End the session (in the database, not only in the browser) and return to the sign-in form."""
    token = _session_token(request)
    if token:
        keys.end_session(_ledger(request), token)
    response = RedirectResponse("/dashboard?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- the dashboard page ----------------------------------------------------------------------------


def _accuracy(ledger: Any) -> dict[str, Any]:
    """The ledger report's rows for the page: per model, scored steps, MAE vs naive, coverage per level, alerts."""
    from ..ledger import ledger_report
    from ..models.base import level_label

    try:
        report = ledger_report(ledger)
    except CryptoMLError as exc:
        return {"error": str(exc), "rows": [], "levels": [], "window": None, "alerts": []}
    flagged = {alert.model for alert in report.alerts}
    rows = []
    for row in report.table.to_dict("records"):
        rows.append(
            {
                "model": row["model"],
                "scored": int(row.get("scored") or 0),
                "relative_mae": row.get("relative_mae"),
                "coverage": [row.get(f"coverage_{level_label(level)}") for level in report.levels],
                "flagged": row["model"] in flagged,
            }
        )
    return {
        "error": None,
        "rows": rows,
        "levels": [level_label(level) for level in report.levels],
        "window": report.window,
        # Under the table, in full: beside each row, sentences this long would make a phone's table rows tall.
        "alerts": [alert.message for alert in report.alerts],
    }


def _home_page(
    request: Request,
    key: keys.ApiKey,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    errors: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    ledger = _ledger(request)
    coins, coins_error = _coins()
    job_list, _cursor = jobs.list_jobs(ledger, key.id, limit=JOBS_SHOWN)
    settings = _settings(request)
    return render(
        "home.html",
        status=status,
        headers=headers,
        key=key,
        coins=coins,
        coins_error=coins_error,
        models=_models(),
        accuracy=_accuracy(ledger),
        jobs=job_list,
        form=form or {"coins": [], "coins_text": "", "model": settings.model, "horizon": "10", "levels": "80, 95"},
        errors=errors or [],
    )


def _split_names(text: str) -> list[str]:
    return [name.strip() for name in re.split(r"[,\n;]+", text) if name.strip()]


def _error_text(error: dict[str, Any]) -> str:
    """A validation error as one line: the field ("coins", "levels") and the reason."""
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = location[0] if location else "request"
    return f"{field}: {error.get('msg', 'invalid')}"


@router.post("/forecasts", response_model=None)
def start_forecast(
    request: Request,
    coins: list[str] = Form(default_factory=list),  # noqa: B008 - FastAPI's way of declaring a form field
    coins_text: str = Form(""),
    model: str = Form(""),
    horizon: str = Form("10"),
    levels: str = Form(""),
) -> Response:
    """Start a forecast from the form: validated as ``POST /v1/forecasts`` is, then off to the job's page."""
    key = session_key(request)
    if key is None:
        return _login_page(status=401, error="Your session ended; sign in again to start a forecast.")
    from .routes import submit_forecast

    form = {"coins": coins, "coins_text": coins_text, "model": model, "horizon": horizon, "levels": levels}
    typed = _split_names(coins_text)
    names = list(dict.fromkeys([*coins, *typed]))
    if not names:
        return _home_page(request, key, status=422, form=form, errors=["coins: choose at least one coin, or type all"])
    payload: dict[str, Any] = {
        "coins": "all" if [name.lower() for name in names] == ["all"] else names,
        "model": model.strip() or None,
        "horizon": horizon.strip() or 10,
        # "80, 95", "80 95" and "80 %, 95 %" all mean [80, 95]; the API's own check judges the numbers.
        "levels": [part for part in re.split(r"[,;\s%]+", levels) if part] or None,
    }
    try:
        job_id = submit_forecast(payload, key, _ledger(request), getattr(request.app.state, "runner", None))
    except RequestValidationError as exc:
        messages = [_error_text(error) for error in exc.errors()]
        return _home_page(request, key, status=422, form=form, errors=messages)
    except TooManyJobsError as exc:
        retry = max(1, math.ceil(exc.retry_after))
        return _home_page(request, key, status=429, form=form, errors=[str(exc)], headers={"Retry-After": str(retry)})
    return RedirectResponse(f"/dashboard/jobs/{job_id}", status_code=303)


# --- jobs ------------------------------------------------------------------------------------------


def _progress(document: dict[str, Any]) -> dict[str, Any]:
    """The fields the script needs to draw a job's progress."""
    return {
        "job_id": document["job_id"],
        "kind": document["kind"],
        "status": document["status"],
        "done": document["progress"]["done"],
        "total": document["progress"]["total"],
        "created_at": document.get("created_at"),
        "finished_at": document.get("finished_at"),
        "seconds": document.get("seconds"),
        "error": document.get("error"),
    }


@router.get("/jobs.json", response_model=None)
def jobs_json(request: Request, job: str | None = None) -> JSONResponse:
    """Progress of one job (``?job=ID``) or of the caller's newest jobs; 401 without a session."""
    key = session_key(request)
    headers = {"Cache-Control": "no-store"}
    if key is None:
        return JSONResponse({"detail": "not signed in to the dashboard"}, status_code=401, headers=headers)
    ledger = _ledger(request)
    if job is not None:
        try:
            documents = [jobs.job_document(ledger, job, key.id, with_results=False)]
        except UnknownJobError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404, headers=headers)
    else:
        documents, _cursor = jobs.list_jobs(ledger, key.id, limit=JOBS_SHOWN)
    return JSONResponse({"jobs": [_progress(document) for document in documents]}, headers=headers)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, coin: str | None = None) -> HTMLResponse:
    """A job's progress; a fan chart per coin once a forecast job has results."""
    key = session_key(request)
    if key is None:
        return _login_page(status=401, error="Sign in to see this job.")
    try:
        document = jobs.job_document(_ledger(request), job_id, key.id)
    except UnknownJobError:
        return render("missing.html", status=404, key=key, what="job", message=f"No job {job_id!r} for this key.")
    results = [record for record in document.get("results") or [] if record.get("status") == "ok"]
    chart = None
    chosen = None
    if document["kind"] == "forecast" and results:
        by_coin = {record["coin"]: record for record in results}
        chosen = coin if coin in by_coin else results[0]["coin"]
        chart = _chart(by_coin[chosen], title=f"{chosen} – {by_coin[chosen].get('model', '')} forecast")
    return render(
        "job.html",
        key=key,
        job=document,
        results=results,
        failures=document.get("failures") or [],
        chosen=chosen,
        chart=chart,
    )


# --- coins and their latest forecast ---------------------------------------------------------------


@router.get("/coins/{coin}", response_class=HTMLResponse)
def coin_page(request: Request, coin: str, model: str | None = None) -> HTMLResponse:
    """The ledger's latest forecast of ``coin`` by ``model`` (default: the configured model) as a fan chart."""
    key = session_key(request)
    if key is None:
        return _login_page(status=401, error="Sign in to see this coin.")
    from ..data import normalize_name
    from ..ledger.latest import latest_forecast
    from ..models.registry import resolve_name

    name = normalize_name(coin)
    coins, _error = _coins()
    if name not in coins:
        return render("missing.html", status=404, key=key, what="coin", message=f"{coin!r} is not in the dataset.")
    models = _models()
    try:
        chosen_model = resolve_name(model or _settings(request).model)
    except CryptoMLError as exc:
        return render("missing.html", status=404, key=key, what="model", message=str(exc))
    latest = latest_forecast(_ledger(request), name, chosen_model)
    chart = None
    if latest is not None:
        chart = _chart(latest, title=f"{name} – {chosen_model} forecast from {latest['origin_date']}")
    return render("coin.html", key=key, coin=name, model=chosen_model, models=models, latest=latest, chart=chart)


# --- the fan chart ---------------------------------------------------------------------------------


def _chart(record: dict[str, Any], *, title: str) -> dict[str, Any]:
    """A forecast record (a job's or the ledger's) drawn over the coin's recent prices.

    The history is the ``HISTORY_DAYS`` days up to the forecast's origin; the actuals are
    the dataset's prices on the target dates (the ledger's scored actuals where the
    dataset has none), so a forecast made in the past shows how it turned out.
    """
    from ..models.base import level_label

    coin = record["coin"]
    dates = list(record.get("dates") or [])
    point = list(record.get("forecast") or [])
    origin = record.get("last_date") or record.get("origin_date")
    history_dates: list[Any] = []
    history_prices: list[float] = []
    by_date: dict[str, float] = {}
    note = None
    try:
        all_dates, all_prices = _loader().get_dated_prices(coin)
        days = all_dates.astype("datetime64[D]").astype(str)
        end = len(days) if origin is None else int((days <= str(origin)[:10]).sum())
        start = max(0, end - HISTORY_DAYS)
        history_dates = [str(day) for day in days[start:end]]
        history_prices = [float(price) for price in all_prices[start:end]]
        wanted = set(dates)
        by_date = {
            str(day): float(price) for day, price in zip(days[end:], all_prices[end:], strict=False) if day in wanted
        }
    except CryptoMLError as exc:
        note = f"The dataset's prices of {coin} cannot be read here: {exc}"
    if not dates and history_dates:
        # A forecast without dates (its origin unknown) continues the series day by day.
        last = dt.date.fromisoformat(history_dates[-1])
        dates = [(last + dt.timedelta(days=step + 1)).isoformat() for step in range(len(point))]
    ledger_actuals = record.get("actuals") or [None] * len(dates)
    actual_dates, actual_prices = [], []
    for day, scored in zip(dates, ledger_actuals, strict=False):
        value = by_date.get(day, scored)
        if value is not None:
            actual_dates.append(day)
            actual_prices.append(value)
    levels = list(record.get("levels") or [])
    bands = {}
    for level in levels:
        label = level_label(level)
        if f"lo_{label}" in record and f"hi_{label}" in record:
            bands[float(level)] = (record[f"lo_{label}"], record[f"hi_{label}"])
    arguments = (history_dates, history_prices, dates, point, bands, actual_dates, actual_prices)
    svg = fan_chart_svg(*arguments, title=title)
    # A phone shows the chart at half the width: drawn on a narrower canvas, its labels keep a readable size.
    compact_svg = fan_chart_svg(*arguments, width=COMPACT_WIDTH, height=COMPACT_HEIGHT, title=title)
    rows = []
    for index, day in enumerate(dates):
        rows.append(
            {
                "date": day,
                "point": point[index] if index < len(point) else None,
                "bands": [
                    (bands[float(level)][0][index], bands[float(level)][1][index])
                    if float(level) in bands and index < len(bands[float(level)][0])
                    else (None, None)
                    for level in levels
                ],
                "actual": by_date.get(day, ledger_actuals[index] if index < len(ledger_actuals) else None),
            }
        )
    return {
        "svg": svg,
        "compact_svg": compact_svg,
        "series": svg.count('class="series"'),
        "history_days": len(history_dates),
        "has_actual": bool(actual_dates),
        "levels": [level_label(level) for level in levels],
        "rows": rows,
        "note": note,
        "last_price": history_prices[-1] if history_prices else record.get("last_price"),
    }


# --- static files ----------------------------------------------------------------------------------


@router.get("/static/{name}", response_model=None)
def static_file(name: str) -> Response:
    """The dashboard's stylesheet and script, served by the API itself (no CDN); only the files that exist."""
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return JSONResponse({"detail": "no such file"}, status_code=404)
    # The URLs carry a hash of the content (static_url), so a year's caching never serves a stale file.
    return FileResponse(
        path,
        media_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
    )
