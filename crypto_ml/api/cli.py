"""``crypto-ml serve`` (the HTTP API on uvicorn) and ``crypto-ml apikey create|list|revoke``.

Light to import: ``crypto-ml`` attaches these commands on every start. ``serve``
loads FastAPI and uvicorn when it runs; ``apikey`` never loads them, only
SQLAlchemy for the keys' table.

Exit codes: 0 done; 2 a wrong request (an unusable database URL, a name already
taken, no such key), printed as one line by ``crypto-ml``'s error handling.
"""

from __future__ import annotations

import os

import click

from ..ledger.cli import database_option

__all__ = ["serve", "apikey", "DEFAULT_PORT"]

#: uvicorn's own default port; the compose file and the k8s manifests publish it.
DEFAULT_PORT = 8000


@click.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="The interface to listen on; 0.0.0.0 for every one."
)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes; each runs its own job runner, and a job is collected by one of them.",
)
@database_option
def serve(host: str, port: int, workers: int, database_url: str | None) -> None:
    """Serve the HTTP API (/v1, /healthz, /readyz, /docs) and the dashboard (/dashboard) with uvicorn.

    Keys come from `crypto-ml apikey create`; jobs run on the Celery workers (CRYPTO_ML_BROKER_URL).
    """
    from ..exceptions import MissingDependencyError

    try:
        import fastapi  # noqa: F401 - imported here only to fail early, with the fix, when the extra is missing
        import jinja2  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError(
            f"crypto-ml serve needs the api extra ({exc.name or exc} is not installed): pip install 'crypto-ml[api]'"
        ) from None

    from ..config import get_settings
    from ..ledger.database import open_ledger

    if database_url is not None:
        # uvicorn's worker processes build the app from the environment (factory=True): pass it on there.
        os.environ["CRYPTO_ML_DATABASE_URL"] = database_url
        get_settings.cache_clear()
    # Upgrade the schema once, here: a wrong URL fails now with one line, not in every worker.
    with open_ledger(get_settings().resolved_database_url()) as ledger:
        click.echo(f"crypto-ml API on http://{host}:{port} (ledger {ledger.url}, {workers} process(es))", err=True)
    uvicorn.run(
        "crypto_ml.api.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # The access log shows method, path and status: never headers, so never a key (keys are refused in
        # query strings for that reason).
        access_log=True,
        log_level="info",
        server_header=False,
    )


@click.group("apikey")
def apikey() -> None:
    """API keys for `crypto-ml serve`: a key is printed once, the database keeps only its hash."""


@apikey.command("create")
@click.option("--name", required=True, help="Who or what uses the key; unique.")
@click.option(
    "--max-jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs it may have queued or running at once [default: CRYPTO_ML_API_MAX_CONCURRENT_JOBS, 4].",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    default=None,
    help="Requests per minute [default: CRYPTO_ML_API_REQUESTS_PER_MINUTE, 600].",
)
@database_option
def create(name: str, max_jobs: int | None, rpm: int | None, database_url: str | None) -> None:
    """Create a key and print it, alone on stdout (KEY=$(crypto-ml apikey create --name ci)); it is not shown again."""
    from ..ledger.database import open_ledger
    from .keys import create_key

    with open_ledger(database_url) as ledger:
        secret, key = create_key(ledger, name, max_concurrent_jobs=max_jobs, requests_per_minute=rpm)
    click.echo(secret)
    click.echo(
        f"created API key {key.name!r} ({key.prefix}...); store it now: it is not shown again, "
        "the database holds only its hash",
        err=True,
    )


@apikey.command("list")
@database_option
def list_command(database_url: str | None) -> None:
    """List the keys: name, prefix, created, revoked, limits. Never the keys themselves."""
    from rich.markup import escape
    from rich.table import Table

    from ..cli import _console
    from ..ledger.database import open_ledger
    from .keys import list_keys

    with open_ledger(database_url) as ledger:
        found = list_keys(ledger)
    console = _console()
    if not found:
        console.print("no API keys; create one with `crypto-ml apikey create --name NAME`", markup=False)
        return
    table = Table(title="API keys", title_justify="left")
    for header in ("name", "prefix", "created", "status", "max jobs", "rpm"):
        table.add_column(header)
    for key in found:
        status = "active" if key.revoked_at is None else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(
            escape(key.name),
            key.prefix,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            status,
            str(key.max_concurrent_jobs or "default"),
            str(key.requests_per_minute or "default"),
        )
    console.print(table)


@apikey.command("revoke")
@click.argument("name_or_prefix")
@database_option
def revoke(name_or_prefix: str, database_url: str | None) -> None:
    """Revoke the active key with this name or prefix: it stops authenticating at once."""
    from ..ledger.database import open_ledger
    from .keys import revoke_key

    with open_ledger(database_url) as ledger:
        key = revoke_key(ledger, name_or_prefix)
    click.echo(f"revoked API key {key.name!r} ({key.prefix}...)")
