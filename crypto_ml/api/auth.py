"""The ``Authorization: Bearer <key>`` dependency every ``/v1`` route takes, with the key's rate limit.

A missing, malformed, unknown or revoked key is a 401 with ``WWW-Authenticate:
Bearer`` (RFC 6750); the body says which, never echoing the key. The key is
read from the header only: a key in a query string would land in access logs
and proxies' logs. Each authenticated request then counts against the key's
requests per minute (``limits.RateLimiter``): over it, 429 with ``Retry-After``.

Each API process remembers a key it has authenticated for ``AUTH_CACHE_SECONDS``
(``KeyCache``), so a client polling a job costs one database read per request,
not two. The price: **a revoked key keeps working for up to that long** on a
process that saw it just before (``crypto-ml apikey revoke`` runs in another
process and cannot tell the API). Submitting a job still checks the key's row,
so a revoked key starts no new job at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .keys import MAX_SECRET_LENGTH, ApiKey, authenticate, hash_secret

if TYPE_CHECKING:
    from ..ledger.database import Ledger
    from .limits import RateLimiter

__all__ = [
    "bearer_scheme",
    "require_key",
    "Caller",
    "BEARER_CHALLENGE",
    "AUTH_CACHE_SECONDS",
    "KeyCache",
    "authenticate_cached",
]

#: Seconds an API process trusts a key it authenticated, without asking the database again: a revoked
#: key stops working within this long. Short enough for revocation, long enough that a client polling
#: twice a second is read from the database once in ten requests.
AUTH_CACHE_SECONDS = 5.0

#: Keys a process remembers at most; past that the memory is simply cleared (only a flood of distinct
#: valid keys gets there).
AUTH_CACHE_MAX_KEYS = 10_000

#: The challenge a 401 carries (RFC 6750 section 3).
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crypto-ml"'}

#: The OpenAPI security scheme "bearer"; auto_error=False so that a missing header is our 401, not FastAPI's 403.
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="API key",
    description="An API key from `crypto-ml apikey create`.",
    auto_error=False,
)


class KeyCache:
    """Keys authenticated recently by this process, by the sha256 of their secret (never the secret itself).

    Only keys that authenticated are remembered: an unknown key is looked up every time, so a key
    created a moment ago works at once.

    Args:
        ttl: Seconds a key is trusted after it was read from the database.
        clock: Monotonic seconds; tests pass a fake one.
    """

    def __init__(self, ttl: float = AUTH_CACHE_SECONDS, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._keys: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiKey | None:
        """The key remembered under this secret hash, if read less than ``ttl`` seconds ago."""
        found = self._keys.get(digest)
        if found is None or self.clock() >= found[0]:
            return None
        return found[1]

    def put(self, digest: str, key: ApiKey) -> None:
        """Remember ``key`` under its secret's hash for ``ttl`` seconds."""
        with self._lock:
            if len(self._keys) >= AUTH_CACHE_MAX_KEYS:
                self._keys.clear()
            self._keys[digest] = (self.clock() + self.ttl, key)


def authenticate_cached(ledger: Ledger, secret: str, cache: KeyCache | None) -> ApiKey | None:
    """``keys.authenticate``, answered from ``cache`` when it read the key less than its ``ttl`` ago.

    Args:
        ledger: The open ledger.
        secret: The key as the client sent it.
        cache: This process's cache; None asks the database every time.

    Returns:
        The active key, or None (unknown, malformed, or revoked more than ``cache.ttl`` seconds ago).
    """
    if cache is None or not isinstance(secret, str) or len(secret) > MAX_SECRET_LENGTH:
        return authenticate(ledger, secret)  # refuses what it must without a lookup
    digest = hash_secret(secret)
    key = cache.get(digest)
    if key is None:
        key = authenticate(ledger, secret)
        if key is not None:
            cache.put(digest, key)
    return key


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers=BEARER_CHALLENGE)


def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> ApiKey:
    """The caller's API key, checked, and its request counted against its rate limit.

    A plain function: FastAPI runs it in the thread pool, so the database lookup does not block the event loop.
    The key is read from the database at most every ``AUTH_CACHE_SECONDS`` per process (``KeyCache``).

    Raises:
        HTTPException: 401 for a missing, unknown or revoked key; 429 (with ``Retry-After``) over the rate limit.
    """
    if credentials is None:
        header = request.headers.get("authorization")
        if header is None:
            raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        raise _unauthorized("malformed Authorization header: send 'Authorization: Bearer <key>'")
    state = request.app.state
    key = authenticate_cached(state.ledger, credentials.credentials, getattr(state, "key_cache", None))
    if key is None:
        raise _unauthorized("unknown or revoked API key; `crypto-ml apikey create` makes a new one")
    request.state.api_key = key
    limiter: RateLimiter = request.app.state.limiter
    limit = key.requests_per_minute or request.app.state.settings.api_requests_per_minute
    # The display prefix too: ids restart at 1 in every database, and two deployments may share one Redis.
    decision = limiter.hit(f"{key.prefix}:{key.id}", limit)
    if not decision.allowed:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"API key {key.name!r} is over its limit of {limit} requests per minute; "
            f"retry in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
        )
    return key


#: A route parameter ``key: Caller`` is the authenticated caller's key.
Caller = Annotated[ApiKey, Depends(require_key)]
