"""API keys and dashboard sessions, kept in the ledger's database as hashes only.

A key is ``cml_`` followed by 256 random bits (``secrets.token_urlsafe(32)``).
It is shown once, when it is created (``crypto-ml apikey create``); the
database keeps its sha256 and its first characters, so ``apikey list`` can show
which key is which without holding anything that authenticates.

A dashboard login trades the key for a session token in a cookie. The token
is random too, and stored only as a hash, so a copy of the database logs
nobody in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..exceptions import InvalidParameterError
from ..ledger.database import Ledger, database_errors
from ..ledger.schema import utc_now
from .schema import ApiKeyRow, ApiSession

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "hash_secret",
    "create_key",
    "revoke_key",
    "list_keys",
    "authenticate",
    "create_session",
    "session_key",
    "end_session",
]

#: Every key starts with this: a leaked key is recognisable (secret scanners match on such prefixes),
#: and a string without it is refused without a database lookup.
KEY_PREFIX = "cml_"

#: Characters of the key kept for display: the prefix and 8 random characters (48 bits), enough to
#: tell a user's keys apart, far too few to guess the rest.
DISPLAY_CHARS = 12

#: The longest key name (the column's width).
MAX_NAME_LENGTH = 100

#: Longer than any key or session token this module makes (4 + 43 characters): anything longer is
#: refused before it is hashed.
MAX_SECRET_LENGTH = 256

KEYS: Table = ApiKeyRow.__table__  # type: ignore[assignment]
SESSIONS: Table = ApiSession.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ApiKey:
    """An API key as the API sees it: who, since when, and its limits. Never the secret.

    Attributes:
        id: The key's row id (jobs belong to it).
        name: The name given at creation, unique.
        prefix: The key's first characters, for display.
        created_at: When it was created (UTC).
        revoked_at: When it was revoked; None while it is valid.
        max_concurrent_jobs: Jobs it may have queued or running at once; None uses
            ``api_max_concurrent_jobs``.
        requests_per_minute: Its request rate limit; None uses ``api_requests_per_minute``.
    """

    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    max_concurrent_jobs: int | None
    requests_per_minute: int | None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    """The sha256 hex digest of a key or session token: what the database stores instead of it.

    A plain fast hash is enough here, as for GitHub's tokens: the secrets are 256
    random bits, not passwords, so there is no dictionary to try and a slow hash
    (bcrypt, argon2) would only slow down every request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    ledger: Ledger, name: str, *, max_concurrent_jobs: int | None = None, requests_per_minute: int | None = None
) -> tuple[str, ApiKey]:
    """Create an API key named ``name``.

    Args:
        ledger: The open ledger (its database holds the keys).
        name: A unique name for the key: who or what uses it.
        max_concurrent_jobs: Its own limit on jobs queued or running at once; None uses the settings'.
        requests_per_minute: Its own request rate limit; None uses the settings'.

    Returns:
        The key itself (shown to the user once; it is not stored) and its stored description.

    Raises:
        InvalidParameterError: an empty or too long name, a name already used (revoked keys keep theirs),
            or a limit below 1.
    """
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidParameterError(
            f"an API key needs a name of 1 to {MAX_NAME_LENGTH} characters, got {name!r}; "
            "name it after who or what uses it, e.g. --name dashboard-team"
        )
    for option, value in (("max_concurrent_jobs", max_concurrent_jobs), ("requests_per_minute", requests_per_minute)):
        if value is not None and value < 1:
            raise InvalidParameterError(f"{option} must be at least 1, got {value!r}; leave it out to use the default")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = {
        "name": name,
        "prefix": secret[:DISPLAY_CHARS],
        "key_hash": hash_secret(secret),
        "created_at": utc_now(),
        "revoked_at": None,
        "max_concurrent_jobs": max_concurrent_jobs,
        "requests_per_minute": requests_per_minute,
    }
    key_id: int | None = None
    with database_errors(ledger, "creating an API key"):
        try:
            with ledger.engine.begin() as connection:
                if connection.execute(select(KEYS.c.id).where(KEYS.c.name == name)).first() is None:
                    key_id = int(connection.execute(insert(KEYS).returning(KEYS.c.id), row).scalar_one())
        except IntegrityError:
            pass  # another process created the name between the check and the insert
    if key_id is None:
        raise InvalidParameterError(
            f"an API key named {name!r} already exists (revoked keys keep their names); "
            "choose another name, or see them with `crypto-ml apikey list`"
        )
    return secret, _api_key({**row, "id": key_id})


def revoke_key(ledger: Ledger, name_or_prefix: str) -> ApiKey:
    """Revoke the active key with this name or display prefix; its dashboard sessions end with it.

    Returns:
        The key, now revoked.

    Raises:
        InvalidParameterError: no active key has that name or prefix, or the prefix names several.
    """
    value = (name_or_prefix or "").strip()
    now = utc_now()
    with database_errors(ledger, "revoking an API key"), ledger.engine.begin() as connection:
        active = KEYS.c.revoked_at.is_(None)
        rows = connection.execute(select(KEYS).where(active, KEYS.c.name == value)).all()
        if not rows:
            rows = connection.execute(select(KEYS).where(active, KEYS.c.prefix == value)).all()
        if len(rows) == 1:
            key_id = rows[0].id
            connection.execute(update(KEYS).where(KEYS.c.id == key_id).values(revoked_at=now))
            connection.execute(delete(SESSIONS).where(SESSIONS.c.api_key_id == key_id))
    if not rows:
        raise InvalidParameterError(
            f"no active API key named {value!r} or starting {value!r}; `crypto-ml apikey list` shows them"
        )
    if len(rows) > 1:
        raise InvalidParameterError(
            f"{len(rows)} active API keys start with {value!r}; revoke one by its name (`crypto-ml apikey list`)"
        )
    return _api_key({**rows[0]._mapping, "revoked_at": now})


def list_keys(ledger: Ledger) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    with database_errors(ledger, "listing API keys"), ledger.reading(autocommit=True) as connection:
        return [_api_key(row._mapping) for row in connection.execute(select(KEYS).order_by(KEYS.c.id))]


def authenticate(ledger: Ledger, secret: str) -> ApiKey | None:
    """The active key whose secret this is, or None (unknown, revoked or malformed).

    The lookup is by the secret's hash, so it needs no constant-time comparison:
    timing can at most reveal a prefix of a hash, which says nothing about
    another secret with that prefix.
    """
    if not isinstance(secret, str) or not secret.startswith(KEY_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    query = select(KEYS).where(KEYS.c.key_hash == hash_secret(secret), KEYS.c.revoked_at.is_(None))
    with database_errors(ledger, "checking an API key"), ledger.reading(autocommit=True) as connection:
        row = connection.execute(query).first()
    return None if row is None else _api_key(row._mapping)


def create_session(ledger: Ledger, key: ApiKey, hours: float) -> str:
    """Start a dashboard session for ``key``, valid ``hours``; returns its token (the cookie's value).

    Only the token's hash is stored. Sessions that expired are deleted on the way.

    Raises:
        InvalidParameterError: ``hours`` is not positive.
    """
    if not hours > 0:
        raise InvalidParameterError(f"a session must last a positive number of hours, got {hours!r}")
    token = secrets.token_urlsafe(32)
    now = utc_now()
    row = {
        "token_hash": hash_secret(token),
        "api_key_id": key.id,
        "created_at": now,
        "expires_at": now + dt.timedelta(hours=hours),
    }
    with database_errors(ledger, "starting a dashboard session"), ledger.engine.begin() as connection:
        connection.execute(delete(SESSIONS).where(SESSIONS.c.expires_at < now))
        connection.execute(insert(SESSIONS), row)
    return token


def session_key(ledger: Ledger, token: str) -> ApiKey | None:
    """The key a session token logged in with; None when the session is unknown or expired or the key revoked."""
    if not isinstance(token, str) or not token or len(token) > MAX_SECRET_LENGTH:
        return None
    query = (
        select(KEYS)
        .join(SESSIONS, SESSIONS.c.api_key_id == KEYS.c.id)
        .where(
            SESSIONS.c.token_hash == hash_secret(token),
            SESSIONS.c.expires_at > utc_now(),
            KEYS.c.revoked_at.is_(None),
        )
    )
    with database_errors(ledger, "checking a dashboard session"), ledger.reading(autocommit=True) as connection:
        row = connection.execute(query).first()
    return None if row is None else _api_key(row._mapping)


def end_session(ledger: Ledger, token: str) -> None:
    """End a dashboard session (logout); an unknown token is no error."""
    if not isinstance(token, str) or not token:
        return
    with database_errors(ledger, "ending a dashboard session"), ledger.engine.begin() as connection:
        connection.execute(delete(SESSIONS).where(SESSIONS.c.token_hash == hash_secret(token)))


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=int(row["id"]),
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        max_concurrent_jobs=row["max_concurrent_jobs"],
        requests_per_minute=row["requests_per_minute"],
    )
