"""crypto_ml.api.cli: ``crypto-ml apikey create|list|revoke`` as a user runs them, and ``crypto-ml serve``'s errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from crypto_ml.api.keys import authenticate, hash_secret
from crypto_ml.api.schema import ApiKeyRow
from crypto_ml.ledger import open_ledger

pytestmark = pytest.mark.api


def crypto_ml(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m crypto_ml ARGS`` in a fresh process, as the ``crypto-ml`` script runs."""
    done = subprocess.run(
        [sys.executable, "-m", "crypto_ml", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_apikey_create_prints_the_key_once_and_stores_only_its_hash(api_database):
    done = crypto_ml(
        "apikey", "create", "--name", "ci-bot", "--max-jobs", "2", "--rpm", "30", "--database", api_database
    )

    secret = done.stdout.strip()
    assert secret.startswith("cml_") and len(secret) > 40 and "\n" not in secret  # alone on stdout: KEY=$(...)
    assert secret not in done.stderr and "not shown again" in done.stderr
    with open_ledger(api_database) as ledger:
        with ledger.engine.connect() as connection:
            rows = connection.execute(select(ApiKeyRow.__table__)).mappings().all()
        assert len(rows) == 1
        row = rows[0]
        assert row["key_hash"] == hash_secret(secret)
        assert secret not in [str(value) for value in row.values()]  # the key itself is nowhere in the row
        assert (row["name"], row["max_concurrent_jobs"], row["requests_per_minute"]) == ("ci-bot", 2, 30)
        assert authenticate(ledger, secret).name == "ci-bot"

    listing = crypto_ml("apikey", "list", "--database", api_database).stdout
    assert "ci-bot" in listing and row["prefix"] in listing and "active" in listing
    assert secret not in listing


def test_apikey_revoke_stops_the_key_and_list_shows_it(api_database):
    secret = crypto_ml("apikey", "create", "--name", "old", "--database", api_database).stdout.strip()
    crypto_ml("apikey", "create", "--name", "new", "--database", api_database)

    done = crypto_ml("apikey", "revoke", "old", "--database", api_database)

    assert "revoked API key 'old'" in done.stdout
    with open_ledger(api_database) as ledger:
        assert authenticate(ledger, secret) is None
    listing = crypto_ml("apikey", "list", "--database", api_database).stdout
    assert "revoked" in listing and "new" in listing


def test_apikey_mistakes_are_one_line_and_exit_2(api_database):
    crypto_ml("apikey", "create", "--name", "dup", "--database", api_database)
    again = crypto_ml("apikey", "create", "--name", "dup", "--database", api_database, check=False)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    unknown = crypto_ml("apikey", "revoke", "nobody", "--database", api_database, check=False)
    assert unknown.returncode == 2 and "apikey list" in unknown.stderr and "Traceback" not in unknown.stderr
    unusable = crypto_ml("apikey", "list", "--database", "mysql://nobody@127.0.0.1/db", check=False)
    assert unusable.returncode == 2 and "Traceback" not in unusable.stderr


def test_apikey_never_loads_fastapi(api_database):
    code = (
        "import sys\n"
        "from crypto_ml.cli import cli\n"
        f"cli(['apikey', 'list', '--database', {api_database!r}], standalone_mode=False)\n"
        "heavy = sorted(name for name in ('fastapi', 'uvicorn', 'starlette') if name in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_importing_crypto_ml_loads_no_part_of_the_api():
    code = (
        "import sys, crypto_ml\n"
        "assert not [m for m in sys.modules if m.startswith('crypto_ml.api')]\n"
        "import crypto_ml.cli\n"  # registers serve and apikey: their module only, no web framework
        "assert not [m for m in sys.modules if m.startswith(('fastapi', 'uvicorn', 'starlette', 'sqlalchemy'))]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_serve_with_an_unusable_database_says_so_and_exits_2(tmp_path):
    done = crypto_ml("serve", "--port", "1", "--database", "mysql://nobody@127.0.0.1/db", check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "mysql" in done.stderr.lower()


def test_serve_help_lists_its_options():
    text = crypto_ml("serve", "--help").stdout
    for option in ("--host", "--port", "--workers", "--database"):
        assert option in text


def test_serve_without_the_api_extra_names_the_pip_install(tmp_path):
    # A fresh process whose import of uvicorn fails, as on an install without the extra.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "uvicorn.py").write_text("raise ImportError('no uvicorn here', name='uvicorn')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    done = subprocess.run(
        [sys.executable, "-m", "crypto_ml", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "pip install 'crypto-ml[api]'" in done.stderr and "uvicorn" in done.stderr
